"""GraphTransformer: symmetry, no leakage across a batch, overfitting, gradients, config."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.data import Batch, Data
from torch_geometric.utils import erdos_renyi_graph, to_undirected

from graphattn.checkpoint import build_model, load_checkpoint, save_checkpoint
from graphattn.nn import GraphSelfAttention, GraphTransformer, LaplacianPE, SparseRandomWalkPE
from graphattn.nn.heads import POOLS
from graphattn.nn.models import MASKS, GraphTransformerConfig

ALL_ENCODINGS = ("degree", "rwse", "lappe", "spd", "adjacency")


def model(mask="hybrid", score="dot", task="node", pool="mean", encodings=ALL_ENCODINGS,
          norm="layer", global_attention="softmax", local="attention", seed=0, **kwargs):
    if mask == "adjacency" or global_attention == "linear":
        encodings = tuple(e for e in encodings if e not in ("spd", "adjacency"))
    torch.manual_seed(seed)
    m = GraphTransformer(5, 8, 3, num_layers=2, heads=2, mask=mask, score=score, task=task,
                         pool=pool, edge_dim=2, encodings=encodings, norm=norm,
                         global_attention=global_attention, local=local, walk_length=4,
                         lap_k=3, max_distance=3, **kwargs)
    return m.double().eval()


def graph(n, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    ei = to_undirected(torch.randint(0, n, (2, 2 * n), generator=g), num_nodes=n)
    ei = ei[:, ei[0] != ei[1]]
    data = Data(x=torch.randn(n, 5, generator=g, dtype=dtype), edge_index=ei,
                edge_attr=torch.randn(ei.size(1), 2, generator=g, dtype=dtype), num_nodes=n)
    data = SparseRandomWalkPE(4)(data)
    torch.manual_seed(seed)
    return LaplacianPE(3)(data)


def permute(data, perm):
    """The same graph with node ``perm[k]`` renamed ``k``."""
    inv = torch.argsort(perm)
    return Data(x=data.x[perm], edge_index=inv[data.edge_index], edge_attr=data.edge_attr,
                rwse=data.rwse[perm], lappe=data.lappe[perm], num_nodes=data.num_nodes)


CONFIGS = st.fixed_dictionaries(dict(
    mask=st.sampled_from(["adjacency", "full", "hybrid"]),
    score=st.sampled_from(["dot", "additive"]),
    pool=st.sampled_from(POOLS),
    encodings=st.lists(st.sampled_from(ALL_ENCODINGS), unique=True).map(tuple),
    norm=st.sampled_from(["layer", "batch", None]),
    global_attention=st.sampled_from(["softmax", "linear"]),
    local=st.sampled_from(["attention", "gine", None]),
    input_layer=st.sampled_from(["linear", "attention"]),
))


@settings(max_examples=25, deadline=None)
@given(config=CONFIGS, n=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_node_outputs_equivariant_and_graph_outputs_invariant(config, n, seed):
    data = graph(n, seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    node = model(task="node", **config)
    torch.testing.assert_close(node(permute(data, perm)), node(data)[perm])
    g = model(task="graph", **config)
    torch.testing.assert_close(g(permute(data, perm)), g(data))


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("mask,score", [(m, s) for m in ("adjacency", "full", "hybrid")
                                        for s in ("dot", "additive")])
def test_every_mask_score_and_pool_is_symmetric(mask, score, pool):
    data = graph(7, 1)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(1))
    m = model(mask, score, task="graph", pool=pool)
    torch.testing.assert_close(m(permute(data, perm)), m(data))


def train_batch_norm(m, data_list):
    m.train()
    with torch.no_grad():
        for _ in range(3):
            m(Batch.from_data_list(data_list))
    return m.eval()


@pytest.mark.parametrize("mask,g,norm,pool", [
    ("adjacency", "softmax", "batch", "mean"), ("full", "softmax", "batch", "cls"),
    ("hybrid", "softmax", "batch", "attention"), ("hybrid", "linear", "batch", "max"),
    ("hybrid", "softmax", "layer", "sum"), ("full", "linear", "layer", "cls"),
])
def test_batch_outputs_equal_each_graph_alone(mask, g, norm, pool):
    data_list = [graph(n, s) for s, n in enumerate((4, 1, 6, 3))]
    batch = Batch.from_data_list(data_list)
    for task in ("graph", "node"):
        m = model(mask, task=task, pool=pool, norm=norm, global_attention=g)
        if norm == "batch":
            train_batch_norm(m, data_list)
        out = m(batch)
        alone = torch.cat([m(d) for d in data_list])
        torch.testing.assert_close(out, alone)


def test_data_and_tensor_call_forms_agree_and_config_round_trips():
    data_list = [graph(n, s) for s, n in enumerate((4, 5))]
    batch = Batch.from_data_list(data_list)
    m = model(task="graph", pool="cls")
    out = m(batch)
    torch.testing.assert_close(m(batch.x, batch.edge_index, batch.edge_attr, batch.batch,
                                 rwse=batch.rwse, lappe=batch.lappe), out)
    config = json.loads(json.dumps(m.config))
    clone = GraphTransformer.from_config(config).double()
    clone.load_state_dict(m.state_dict())
    torch.testing.assert_close(clone.eval()(batch), out)
    assert clone.config == m.config


def every_parameter_has_a_gradient(m, data, target, loss_fn):
    m.zero_grad()
    loss_fn(m(data), target).backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, missing


GRAD_CONFIGS = [
    dict(mask="hybrid", local="attention", pool="cls", norm="batch"),
    dict(mask="hybrid", local="gine", pool="attention", global_attention="linear"),
    dict(mask="full", score="additive", pool="sum"),
    dict(mask="adjacency", pool="max", norm=None),
    dict(mask="full", pool="mean", pre_norm=False),
    dict(mask="hybrid", global_attention="linear", pool="mean", input_layer="attention"),
]


@pytest.mark.parametrize("config", GRAD_CONFIGS)
def test_gradients_reach_every_parameter(config):
    data_list = [graph(n, s) for s, n in enumerate((5, 6, 4))]
    batch = Batch.from_data_list(data_list)
    m = model(task="graph", **config).train()
    every_parameter_has_a_gradient(m, batch, torch.randn(3, 3, dtype=torch.float64),
                                   torch.nn.functional.mse_loss)
    m = model(task="node", **{k: v for k, v in config.items() if k != "pool"}).train()
    every_parameter_has_a_gradient(m, batch, torch.randint(0, 3, (15,)),
                                   torch.nn.functional.cross_entropy)


@pytest.fixture
def one_thread():
    """Hundreds of tiny training steps: on a busy 2-core machine a second intra-op thread
    only waits for the other core (10-50x slower); restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def fit(m, data, target, loss_fn, steps=150, lr=1e-2):
    opt = torch.optim.Adam(m.parameters(), lr=lr)
    m.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(m(data), target)
        loss.backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        return loss_fn(m(data), target).item()


def test_overfits_a_tiny_node_classification_set(one_thread):
    torch.manual_seed(0)
    n = 12
    ei = to_undirected(erdos_renyi_graph(n, 0.3))
    data = Data(x=torch.eye(n, 5, dtype=torch.float32) + 0.1 * torch.randn(n, 5),
                edge_index=ei, edge_attr=torch.randn(ei.size(1), 2), num_nodes=n)
    data = LaplacianPE(3)(SparseRandomWalkPE(4)(data))
    y = torch.randint(0, 3, (n,))
    m = model(task="node", local="gine").float()
    assert fit(m, data, y, torch.nn.functional.cross_entropy) < 0.05


def test_overfits_a_tiny_graph_regression_set(one_thread):
    data_list = [graph(n, s, torch.float32) for s, n in enumerate((3, 5, 4, 6, 7, 2))]
    batch = Batch.from_data_list(data_list)
    y = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    m = model(task="graph", pool="cls").float()
    assert fit(m, batch, y, torch.nn.functional.mse_loss, steps=200) < 0.01


def test_trains_under_bfloat16_autocast(one_thread):
    """Mixed precision on CPU (bfloat16 products, float32 attention kernels and weights):
    the large-graph configuration fits a small node classification set as in float32."""
    torch.manual_seed(0)
    n = 40
    ei = to_undirected(erdos_renyi_graph(n, 0.15))
    x, y = torch.randn(n, 6), torch.randint(0, 3, (n,))
    m = GraphTransformer(6, 16, 3, num_layers=2, mask="hybrid", global_attention="linear",
                         global_layers=1, dropout=0.1)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    for _ in range(150):
        opt.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(m(x, ei), y)
        loss.backward()
        opt.step()
    assert all(p.dtype == torch.float32 for p in m.parameters())
    m.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert (m(x, ei).argmax(-1) == y).float().mean() > 0.95


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="unknown encodings"):
        GraphTransformer(4, 8, 2, 1, encodings=("rwse", "wl"))
    with pytest.raises(ValueError, match="softmax global attention"):
        GraphTransformer(4, 8, 2, 1, mask="adjacency", encodings=("spd",))
    with pytest.raises(ValueError, match="softmax global attention"):
        GraphTransformer(4, 8, 2, 1, mask="full", global_attention="linear",
                         encodings=("adjacency",))
    with pytest.raises(ValueError, match="multiple of heads"):
        GraphTransformer(4, 10, 2, 1, heads=4)
    with pytest.raises(ValueError, match="task"):
        GraphTransformer(4, 8, 2, 1, task="edge")
    with pytest.raises(ValueError, match="input_layer"):
        GraphTransformer(4, 8, 2, 1, input_layer="mlp")
    with pytest.raises(ValueError, match="input_layer='attention' needs edge_index"):
        GraphTransformer(4, 8, 2, 1, mask="full", input_layer="attention")(torch.randn(3, 4))
    for bad in (dict(mask="adjacency", global_layers=1), dict(mask="hybrid", global_layers=3),
                dict(mask="hybrid", local="gine", global_layers=1),
                dict(mask="hybrid", global_layers=0)):
        with pytest.raises(ValueError, match="global_layers"):
            GraphTransformer(4, 8, 2, 2, **bad)
    m = GraphTransformer(5, 8, 2, 1, heads=2, encodings=("rwse",))
    data = graph(4, 0, torch.float32)
    with pytest.raises(ValueError, match="SparseRandomWalkPE"):
        m(data.x, data.edge_index)
    with pytest.raises(ValueError, match="in_channels=5"):
        m(data.x[:, :3], data.edge_index, rwse=data.rwse)
    with pytest.raises(ValueError, match="edge_dim=None"):
        m(data.x, data.edge_index, data.edge_attr, rwse=data.rwse)


def test_integer_features_are_accepted_and_a_string_encoding_is_one_name():
    m = GraphTransformer(3, 8, 2, 1, heads=2, edge_dim=3, encodings="degree")
    assert m.encodings == ("degree",)
    x = torch.randint(0, 2, (4, 3))
    ei = torch.tensor([[0, 1, 2], [1, 2, 3]])
    out = m(x, ei, torch.randint(0, 2, (3, 3)))
    assert out.shape == (4, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("mask", ["adjacency", "hybrid"])
def test_checkpointed_layers_give_the_same_outputs_and_gradients(mask):
    """Recomputed activations (dropout included: the RNG state is replayed) equal stored
    ones; evaluation never checkpoints."""
    g = torch.Generator().manual_seed(0)
    x, ei = torch.randn(30, 5, generator=g), torch.randint(0, 30, (2, 90), generator=g)
    results = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = GraphTransformer(5, 8, 3, num_layers=2, heads=2, mask=mask, dropout=0.3,
                                 global_attention="linear", checkpoint=ckpt)
        torch.manual_seed(1)
        out = model(x, ei)
        grads = torch.autograd.grad(out.pow(2).sum(), list(model.parameters()))
        results.append((out, grads))
    torch.testing.assert_close(results[1][0], results[0][0])
    for a, b in zip(results[1][1], results[0][1]):
        torch.testing.assert_close(a, b)
    assert model.config["checkpoint"] is True
    assert GraphTransformer.from_config(model.config).checkpoint


def test_global_layers_puts_the_global_branch_in_the_last_layers_only():
    """global_layers=1 of 3: two adjacency-attention layers, then one hybrid layer; rebuilt
    from its config; every parameter trained; an older config (no key) is global everywhere."""
    torch.manual_seed(0)
    m = GraphTransformer(5, 8, 3, num_layers=3, heads=2, mask="hybrid",
                         global_attention="linear", global_layers=1).double()
    assert [layer.mask for layer in m.layers] == ["adjacency", "adjacency", "hybrid"]
    assert [layer.global_attn is None for layer in m.layers] == [True, True, False]
    assert m.config["global_layers"] == 1
    clone = GraphTransformer.from_config(m.config).double()
    clone.load_state_dict(m.state_dict())
    g = graph(7, 0)
    data = Data(x=g.x, edge_index=g.edge_index)
    torch.testing.assert_close(clone(data), m(data))
    every_parameter_has_a_gradient(m, data, torch.randn(7, 3).double(),
                                   lambda out, t: (out - t).pow(2).mean())
    old = {k: v for k, v in m.config.items() if k != "global_layers"}  # an older checkpoint
    assert all(layer.global_attn is not None
               for layer in GraphTransformer.from_config(old).layers)


def test_attention_input_layer_is_adjacency_attention_over_the_raw_features():
    """input_layer="attention": the hidden vectors are a GraphSelfAttention of x (no skip),
    not a linear map of it; the rest of the model is unchanged, and the config rebuilds it."""
    torch.manual_seed(0)
    m = GraphTransformer(5, 8, 3, num_layers=2, heads=2, mask="hybrid",
                         global_attention="linear", global_layers=1,
                         input_layer="attention").double().eval()
    assert m.lin_in is None and m.attn_in.root_weight is False and m.attn_in.heads == 2
    data = graph(7, 1)
    h = m.attn_in(data.x, data.edge_index)
    for layer in m.layers:
        h = layer(h, data.edge_index)
    torch.testing.assert_close(m(data.x, data.edge_index), m.head(m.norm_out(h)))
    twin = GraphTransformer.from_config(m.config).double().eval()
    twin.load_state_dict(m.state_dict())
    torch.testing.assert_close(twin(data.x, data.edge_index), m(data.x, data.edge_index))


CONFIG_FIELDS = st.fixed_dictionaries({
    "in_channels": st.integers(1, 6), "hidden_channels": st.sampled_from([4, 8]),
    "out_channels": st.integers(1, 3), "num_layers": st.integers(1, 3)}, optional={
    "heads": st.sampled_from([1, 2, 4]), "mask": st.sampled_from(MASKS),
    "score": st.sampled_from(["dot", "additive"]), "task": st.sampled_from(["node", "graph"]),
    "pool": st.sampled_from(["mean", "sum", "max"]), "edge_dim": st.sampled_from([None, 2]),
    "encodings": st.lists(st.sampled_from(["degree", "rwse", "lappe"]), unique=True),
    "dropout": st.sampled_from([0.0, 0.25]), "norm": st.sampled_from(["layer", "batch", None]),
    "pre_norm": st.booleans(), "global_attention": st.sampled_from(["softmax", "linear"]),
    "local": st.sampled_from(["attention", "gine"]), "residual": st.sampled_from(["add", "gru"]),
    "input_layer": st.sampled_from(["linear", "attention"]), "checkpoint": st.booleans()})


@settings(max_examples=25, deadline=None)
@given(fields=CONFIG_FIELDS)
def test_config_round_trips_dict_to_config_to_model_to_dict(fields):
    """dict -> GraphTransformerConfig -> model -> config dict is the same dict (every field,
    defaults filled in, JSON-able), and from_config takes the config object or its dict."""
    cfg = GraphTransformerConfig.from_dict(fields)
    full = cfg.to_dict()
    assert list(full) == [f.name for f in GraphTransformerConfig.__dataclass_fields__.values()]
    assert {k: full[k] for k in fields} == fields
    m = GraphTransformer.from_config(cfg)
    assert m.cfg == cfg and m.config == full
    assert json.loads(json.dumps(m.config)) == full
    assert GraphTransformer.from_config(full).config == full
    kw = {k: v for k, v in fields.items() if k not in ("in_channels", "hidden_channels",
                                                       "out_channels", "num_layers")}
    direct = GraphTransformer(fields["in_channels"], fields["hidden_channels"],
                              fields["out_channels"], fields["num_layers"], **kw)
    assert direct.config == full


def test_signature_lists_every_option_with_its_default():
    """help() / inspect see the options of the config (the CLI looks parameters up there)."""
    import inspect

    params = inspect.signature(GraphTransformer).parameters
    fields = GraphTransformerConfig.__dataclass_fields__
    assert list(params) == list(fields)
    assert params["heads"].default == 4 and params["mask"].default == "adjacency"
    assert params["in_channels"].default is inspect.Parameter.empty


def test_unknown_options_and_incomplete_dicts_are_refused():
    with pytest.raises(TypeError, match="colour"):
        GraphTransformer(4, 8, 2, 1, colour="red")
    with pytest.raises(ValueError, match="unknown GraphTransformer options \\['colour'\\]"):
        GraphTransformer.from_config(dict(in_channels=4, hidden_channels=8, out_channels=2,
                                          num_layers=1, colour="red"))
    with pytest.raises(ValueError, match="missing \\['num_layers'\\]"):
        GraphTransformer.from_config(dict(in_channels=4, hidden_channels=8, out_channels=2))
    with pytest.raises(TypeError, match="got list"):
        GraphTransformer.from_config([4, 8, 2, 1])
    with pytest.raises(ValueError, match="mask must be one of"):
        GraphTransformerConfig(4, 8, 2, 1, mask="local")
    with pytest.raises(ValueError, match="multiple of heads"):
        GraphTransformerConfig(4, 8, 2, 1, heads=0)


def test_mask_has_one_meaning_across_the_layers():
    """mask names the set each node attends to: "adjacency" and "full" are the sets of
    GraphSelfAttention(mask=...), "hybrid" is both as two summed branches; a hybrid without
    its adjacency branch is "full" (stored so, with a DeprecationWarning)."""
    from graphattn.nn import GraphSelfAttention

    for mask in ("adjacency", "full", "hybrid"):
        (layer,) = GraphTransformer(4, 8, 2, 1, heads=2, mask=mask).layers
        masks = [m.mask for m in (layer.local_attn, layer.global_attn)
                 if isinstance(m, GraphSelfAttention)]
        assert masks == {"adjacency": ["adjacency"], "full": ["full"],
                         "hybrid": ["adjacency", "full"]}[mask]
    with pytest.warns(DeprecationWarning, match="mask='full'"):
        m = GraphTransformer(4, 8, 2, 1, heads=2, mask="hybrid", local=None)
    assert m.config["mask"] == "full" and m.layers[0].local_attn is None
    assert GraphTransformerConfig(4, 8, 2, 3, mask="hybrid", global_layers=1).layer_masks() \
        == ["adjacency", "adjacency", "hybrid"]


# A checkpoint as the code before GraphTransformerConfig wrote it: its config dict (every
# key, encodings as a list) and the names and shapes of its state dict.
OLD_CONFIG = {
    "in_channels": 5, "hidden_channels": 8, "out_channels": 2, "num_layers": 2, "heads": 2,
    "mask": "hybrid", "score": "dot", "task": "graph", "pool": "mean", "edge_dim": 3,
    "encodings": ["degree", "spd"], "dropout": 0.0, "attn_dropout": 0.0, "norm": "layer",
    "pre_norm": True, "global_attention": "softmax", "local": "attention", "ffn_ratio": 2,
    "head_layers": 2, "walk_length": 16, "lap_k": 8, "max_degree": 64, "max_distance": 8,
    "checkpoint": False, "global_layers": 1, "residual": "add", "input_layer": "linear"}
_ATTN = {"bias": (8,), "lin_query.weight": (8, 8), "lin_query.bias": (8,),
         "lin_key.weight": (8, 8), "lin_key.bias": (8,), "lin_value.weight": (8, 8),
         "lin_value.bias": (8,)}
_LAYER = {"norm1.weight": (8,), "norm1.bias": (8,), "norm2.weight": (8,), "norm2.bias": (8,),
          "ffn.0.weight": (16, 8), "ffn.0.bias": (16,), "ffn.3.weight": (8, 16),
          "ffn.3.bias": (8,)}
OLD_STATE = {
    "lin_in.weight": (8, 5), "lin_in.bias": (8,), "lin_edge.weight": (8, 3),
    "lin_edge.bias": (8,), "degree.in_emb.weight": (65, 8), "spd.emb.weight": (10, 2),
    **{f"layers.0.local_attn.{k}": v for k, v in _ATTN.items()},
    "layers.0.local_attn.lin_edge.weight": (8, 8),
    **{f"layers.0.{k}": v for k, v in _LAYER.items()},
    **{f"layers.1.local_attn.{k}": v for k, v in _ATTN.items()},
    "layers.1.local_attn.lin_edge.weight": (8, 8),
    "layers.1.global_attn.edge_bias": (2,),
    **{f"layers.1.global_attn.{k}": v for k, v in _ATTN.items()},
    "layers.1.global_attn.lin_edge.weight": (2, 8),
    **{f"layers.1.{k}": v for k, v in _LAYER.items()},
    "norm_out.weight": (8,), "norm_out.bias": (8,), "head.mlp.lins.0.weight": (8, 8),
    "head.mlp.lins.0.bias": (8,), "head.mlp.lins.1.weight": (2, 8),
    "head.mlp.lins.1.bias": (2,)}
# the old code's output for these weights and inputs (seeds 0 and 1 below)
OLD_OUTPUT = [[0.9428167343139648, -0.535334587097168],
              [0.7065104246139526, -0.19522428512573242]]


def test_a_checkpoint_of_the_old_format_loads_and_predicts_the_same(tmp_path):
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=g) * 0.5 for k, shape in OLD_STATE.items()}
    path = save_checkpoint(tmp_path / "old.pt", {
        "model_class": "graphattn.nn.models.GraphTransformer",
        "model_config": json.loads(json.dumps(OLD_CONFIG)), "model_state": state,
        "task": "graph"})
    m = build_model(load_checkpoint(path)).eval()
    assert m.config == {**OLD_CONFIG, "graph_features": 0}  # options added since: defaults
    g = torch.Generator().manual_seed(1)
    x, edge_attr = torch.randn(6, 5, generator=g), torch.randn(8, 3, generator=g)
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 4, 5, 3], [1, 0, 2, 1, 4, 3, 3, 5]])
    batch = torch.tensor([0, 0, 0, 1, 1, 1])
    with torch.no_grad():
        out = m(x, edge_index, edge_attr, batch)
    torch.testing.assert_close(out, torch.tensor(OLD_OUTPUT), atol=1e-4, rtol=1e-4)
    older = {k: v for k, v in OLD_CONFIG.items()  # before global_layers/residual/input_layer
             if k not in ("global_layers", "residual", "input_layer")}
    assert GraphTransformer.from_config(older).config == {
        **OLD_CONFIG, "global_layers": None, "graph_features": 0}


@pytest.mark.parametrize("mask", ["adjacency", "full", "hybrid"])
@pytest.mark.parametrize("edge_dim", [None, 3])
def test_bfloat16_model_runs_in_every_mode(mask, edge_dim):
    """Issue 22: model.bfloat16() in full and hybrid mode raised from the native kernel."""
    torch.manual_seed(0)
    x = torch.randn(20, 5)
    ei = torch.cat([torch.randint(0, 8, (2, 20)), torch.randint(8, 20, (2, 40))], 1)
    ea = torch.randn(60, 3) if edge_dim else None
    batch = torch.tensor([0] * 8 + [1] * 12)
    model = GraphTransformer(5, 16, 3, 2, mask=mask, edge_dim=edge_dim,
                             encodings=("degree",))
    expected = model(x, ei, ea, batch=batch)
    model = model.bfloat16()
    out = model(x.bfloat16(), ei, ea.bfloat16() if ea is not None else None, batch=batch)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    torch.testing.assert_close(out.float(), expected, atol=0.25, rtol=0.1)


@pytest.mark.parametrize("score", ["dot", "additive"])
def test_library_attention_keeps_self_loops(score):
    """GraphSelfAttention's default now follows the score (no loops for "dot", as
    TransformerConv); the library's own layers pass add_self_loops=True, so models and
    checkpoints of the current format compute what they did."""
    model = GraphTransformer(5, 16, 3, 2, score=score, input_layer="attention")
    layers = [m for m in model.modules() if isinstance(m, GraphSelfAttention)]
    assert layers and all(m.add_self_loops for m in layers)
