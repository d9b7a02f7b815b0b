import pytest
import torch

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
