import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphattn import viz
from graphattn.chem import from_smiles
from graphattn.nn import GraphSelfAttention
from graphattn.nn.models import GraphTransformer

PNG = b"\x89PNG\r\n\x1a\n"


def _model(mask="adjacency", layers=2):
    torch.manual_seed(0)
    return GraphTransformer(49, 8, 1, layers, heads=2, mask=mask, task="graph", edge_dim=16)


@pytest.mark.parametrize("mask, per_layer", [("adjacency", 1), ("full", 1), ("hybrid", 2)])
def test_attention_weights_per_layer_and_hooks_removed(mask, per_layer):
    data = from_smiles("CC(=O)Nc1ccc(O)cc1")
    model = _model(mask)
    before = model(data)
    weights = viz.attention_weights(model, data)
    assert len(weights) == 2 * per_layer
    for index, alpha in weights:
        assert alpha.shape == (index.size(1), 2)
        # every target's weights sum to one per head
        sums = torch.zeros(data.num_nodes, 2).index_add_(0, index[1], alpha)
        assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    # the model is unchanged afterwards: same output, no hooks left
    assert torch.equal(model(data), before)
    assert all(not m._forward_hooks and not m._forward_pre_hooks
               for m in model.modules() if isinstance(m, GraphSelfAttention))


def test_attention_weights_of_positional_calls():
    class Positional(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = GraphSelfAttention(4, 3, heads=2, add_self_loops=True)

        def forward(self, data):
            return self.attn(data.x, data.edge_index, None, None, None, False)

    data = from_smiles("CCO")
    data.x = torch.randn(3, 4)
    (index, alpha), = viz.attention_weights(Positional(), data)
    assert index.size(1) == data.num_edges + 3  # edges then self loops


def test_attention_weights_needs_attention_layers():
    with pytest.raises(ValueError, match="no GraphSelfAttention"):
        viz.attention_weights(torch.nn.Linear(2, 2), None)


def test_node_edge_scores_by_hand():
    # path 0-1-2, one layer, one head: alpha given per pair (source, target)
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    index = torch.tensor([[0, 1, 1, 2, 0, 1, 2], [1, 0, 2, 1, 0, 1, 2]])
    alpha = torch.tensor([[0.5], [0.2], [0.1], [0.4], [0.8], [0.3], [0.6]])
    node, edge = viz.node_edge_scores([(index, alpha)], edge_index, 3)
    received = torch.tensor([0.5 + 0.8, 0.2 + 0.1 + 0.3, 0.4 + 0.6])  # by source
    expected = (received - received.min()) / (received.max() - received.min())
    assert torch.allclose(node, expected)
    pair = torch.tensor([0.7, 0.7, 0.5, 0.5])  # (0,1): .5+.2, (1,2): .1+.4
    assert torch.allclose(edge, (pair - 0.5) / 0.2)


def test_molecule_drawing_cairo_and_matplotlib_fallback(tmp_path, monkeypatch):
    from rdkit import Chem

    mol = Chem.MolFromSmiles("c1ccccc1O")
    node, bond = torch.linspace(0, 1, 7), torch.linspace(0, 1, 7)
    a = viz.draw_molecule_attention(mol, node, bond, tmp_path / "cairo.png", legend="phenol")
    from rdkit.Chem.Draw import rdMolDraw2D

    monkeypatch.delattr(rdMolDraw2D, "MolDraw2DCairo")
    b = viz.draw_molecule_attention(mol, node, bond, tmp_path / "mpl.png", legend="phenol")
    for path in (a, b):
        blob = open(path, "rb").read()
        assert blob[:8] == PNG and len(blob) > 5000


def test_graph_drawing_and_learning_curve(tmp_path):
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 0], [1, 0, 2, 1, 0, 2]])
    viz.draw_graph_attention(edge_index, 3, torch.tensor([1.0, 1, 0, 0, 0.5, 0.5]),
                             tmp_path / "g.png", node_color=torch.tensor([0, 1, 1]),
                             node_scores=torch.tensor([0.0, 0.5, 1.0]))
    history = [{"epoch": e, "train_loss": 1 / e, "val": {"loss": 2 / e, "rmse": 3 / e}}
               for e in range(1, 6)]
    viz.plot_learning_curve(history, tmp_path / "curve.png", monitor="rmse")
    for name in ("g.png", "curve.png"):
        blob = (tmp_path / name).read_bytes()
        assert blob[:8] == PNG and len(blob) > 5000


def _dense_scores(weights, edge_index, n):
    """The N^2 reference: one lookup table per layer."""
    node = torch.zeros(n, dtype=torch.float64)
    edge = torch.zeros(edge_index.size(1), dtype=torch.float64)
    for index, alpha in weights:
        a = alpha.double().mean(-1)
        node.index_add_(0, index[0], a)
        table = torch.zeros(n, n, dtype=torch.float64)
        table.index_put_((index[0], index[1]), a, accumulate=True)
        edge += table[edge_index[0], edge_index[1]] + table[edge_index[1], edge_index[0]]
    return viz._unit(node), viz._unit(edge)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 12), pairs=st.integers(0, 40), edges=st.integers(0, 30),
       layers=st.integers(0, 3), seed=st.integers(0, 2**16))
def test_sparse_scores_equal_the_dense_table(n, pairs, edges, layers, seed):
    g = torch.Generator().manual_seed(seed)
    edge_index = torch.randint(0, n, (2, edges), generator=g)
    weights = [(torch.randint(0, n, (2, pairs), generator=g),  # repeated pairs add up
                torch.rand(pairs, 2, generator=g)) for _ in range(layers)]
    node, edge = viz.node_edge_scores(weights, edge_index, n)
    ref_node, ref_edge = _dense_scores(weights, edge_index, n)
    assert torch.allclose(node, ref_node, atol=1e-6) and torch.allclose(edge, ref_edge, atol=1e-6)


def _big_graph(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    src, dst = torch.randint(0, n, (2, 4 * n), generator=g)
    return torch.stack([torch.cat([src, dst]), torch.cat([dst, src])]), g


def test_large_graph_is_a_summary_without_scipy(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)  # any scipy import fails
    n = 3000
    edge_index, g = _big_graph(n)
    node = torch.rand(n, generator=g)
    node[[7, 11]] = 2.0  # the two highest scores are always drawn
    edge = torch.rand(edge_index.size(1), generator=g)
    shown = viz._summary_nodes(edge_index, edge, node, n, top=5, neighbours=3)
    assert {7, 11} <= set(shown.tolist()) and len(shown) <= 5 * 4
    assert torch.equal(shown, shown.unique())
    for scores in (node, None):  # by score, and by degree without scores
        out = viz.draw_graph_attention(edge_index, n, edge, tmp_path / "big.png",
                                       node_color=torch.randint(0, 3, (n,), generator=g),
                                       node_scores=scores, title="sbm")
        blob = open(out, "rb").read()
        assert blob[:8] == PNG and len(blob) > 20_000


def test_strongest_neighbours_are_chosen():
    # star around 0 plus a pendant; edge scores rank the neighbours of 0
    edge_index = torch.tensor([[0, 0, 0, 0, 5], [1, 2, 3, 4, 6]])
    edge = torch.tensor([0.1, 0.9, 0.5, 0.8, 0.0])
    node = torch.tensor([1.0, 0, 0, 0, 0, 0, 0])
    shown = viz._summary_nodes(edge_index, edge, node, 7, top=1, neighbours=2)
    assert shown.tolist() == [0, 2, 4]


@pytest.mark.slow
def test_import_does_not_switch_the_matplotlib_backend():
    code = ("import matplotlib, sys; import graphattn.viz; "
            "print(matplotlib.rcParams._get_backend_or_none(), "
            "'matplotlib.pyplot' in sys.modules)")
    for backend in ("svg",):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, "MPLBACKEND": backend,
                                  "PYTHONPATH": os.getcwd()}, timeout=120)
        assert res.returncode == 0, res.stderr
        assert res.stdout.split() == [backend, "False"]


def test_cli_explains_a_graph_over_500_nodes_without_scipy(tmp_path, monkeypatch, capsys):
    from graphattn import cli

    monkeypatch.setitem(sys.modules, "scipy", None)
    out = tmp_path / "sbm"
    assert cli.main(["train", "--dataset", "sbm", "--num-nodes", "600", "--out", str(out),
                     "--epochs", "1", "--hidden", "8", "--layers", "1", "--heads", "2",
                     "--quiet"]) == 0
    png = tmp_path / "sbm.png"
    assert cli.main(["explain", "--checkpoint", str(out / "best.pt"), "--out", str(png)]) == 0
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 20_000
    assert cli.main(["explain", "--checkpoint", str(out / "best.pt"), "--out",
                     str(tmp_path / "sbm")]) == 2
    assert "must end with .png" in capsys.readouterr().err
