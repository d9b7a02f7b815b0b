"""GraphSelfAttention: equality with dense references, invariants, masking, gradients."""

from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from graphattn.nn import GraphSelfAttention, kernels
from graphattn.nn import functional as GF
from graphattn.nn.kernels.dispatch import route
from tests.strategies import batches, graphs, random_batch

MODES = [(m, s) for m in ("adjacency", "full") for s in ("dot", "additive")]


def layer(mask="adjacency", score="dot", in_channels=4, out_channels=3, heads=2, seed=0,
          **kwargs) -> GraphSelfAttention:
    torch.manual_seed(seed)
    kwargs.setdefault("add_self_loops", True)
    m = GraphSelfAttention(in_channels, out_channels, heads=heads, mask=mask, score=score,
                           **kwargs).double()
    if m.edge_bias is not None:  # make the learned "is an edge" bias matter in tests
        torch.nn.init.normal_(m.edge_bias)
    return m.eval()


def dense_scores(m: GraphSelfAttention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores ``[H, N, N]`` (target i, source j) and values ``[H, N, C]`` by the formula."""
    H, C = m.heads, m.out_channels
    q = m.lin_query(x).view(-1, H, C).transpose(0, 1)  # (H, N, C)
    k = m.lin_key(x).view(-1, H, C).transpose(0, 1)
    v = m.lin_value(x).view(-1, H, C).transpose(0, 1)
    if m.score == "dot":
        s = q @ k.transpose(1, 2) / C**0.5
    else:
        s = (F.leaky_relu(q[:, :, None] + k[:, None], m.negative_slope)
             * m.att.transpose(0, 1)[:, None]).sum(-1)
    return s, v


def finish(m, attn_out, x):
    """(H, N, C) attention output -> layer output (concat/mean + skip)."""
    out = attn_out.transpose(0, 1)
    out = out.reshape(out.size(0), -1) if m.concat else out.mean(1)
    return out + m.lin_skip(x) if m.lin_skip is not None else out


def dense_adjacency_reference(m, x, edge_index):
    """softmax(scores) with -inf where there is no edge j -> i; empty rows give 0."""
    n = x.size(0)
    s, v = dense_scores(m, x)
    allowed = torch.zeros(n, n, dtype=torch.bool)
    allowed[edge_index[1], edge_index[0]] = True
    if m.add_self_loops:
        allowed |= torch.eye(n, dtype=torch.bool)
    s = s.masked_fill(~allowed, float("-inf"))
    a = torch.softmax(s, -1).nan_to_num(0.0)
    return finish(m, a @ v, x)


def dense_full_reference(m, x, edge_index, batch, edge_attr=None):
    """Per graph: softmax(scores + edge bias) over all nodes of that graph."""
    outs = []
    for b in range(int(batch.max()) + 1):
        nodes = (batch == b).nonzero().flatten()
        xb = x[nodes]
        s, v = dense_scores(m, xb)
        if edge_index is not None:
            keep = (batch[edge_index[0]] == b)
            ei = edge_index[:, keep] - nodes[0]
            bias = m.edge_bias.view(1, -1).expand(ei.size(1), -1)
            if edge_attr is not None:
                bias = bias + m.lin_edge(edge_attr[keep])
            for e in range(ei.size(1)):  # duplicates add up
                s[:, ei[1, e], ei[0, e]] += bias[e]
        outs.append(finish(m, torch.softmax(s, -1) @ v, xb))
    return torch.cat(outs)


def simple_graph(n=7, seed=0, p=0.35):
    """No duplicate edges, no self loops, some isolated nodes."""
    g = torch.Generator().manual_seed(seed)
    adj = (torch.rand(n, n, generator=g) < p) & ~torch.eye(n, dtype=torch.bool)
    adj[:, -1] = False  # the last node has no in-neighbours
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    return x, adj.nonzero().t().contiguous()


# --- equality with the dense references -------------------------------------------------

@pytest.mark.parametrize("score", ["dot", "additive"])
@pytest.mark.parametrize("self_loops", [True, False])
@pytest.mark.parametrize("concat", [True, False])
def test_adjacency_equals_dense_reference(score, self_loops, concat):
    for seed in range(3):
        x, ei = simple_graph(seed=seed)
        m = layer("adjacency", score, add_self_loops=self_loops, concat=concat, seed=seed)
        torch.testing.assert_close(m(x, ei), dense_adjacency_reference(m, x, ei))


@pytest.mark.parametrize("score", ["dot", "additive"])
def test_full_equals_dense_per_graph(score):
    x, ei, batch, _ = random_batch([5, 1, 3, 6], seed=1)
    m = layer("full", score, edge_dim=2)
    ea = torch.randn(ei.size(1), 2, dtype=torch.float64)
    torch.testing.assert_close(m(x, ei, ea, batch=batch),
                               dense_full_reference(m, x, ei, batch, ea))
    # without edges: plain unmasked attention per graph
    torch.testing.assert_close(m(x, batch=batch), dense_full_reference(m, x, None, batch))


@pytest.mark.parametrize("mask,score", MODES)
def test_batch_equals_each_graph_alone(mask, score):
    x, ei, batch, sizes = random_batch([4, 6, 1, 5], seed=2)
    m = layer(mask, score)
    out = m(x, ei, batch=batch)
    start = 0
    for n in sizes:
        keep = (ei[0] >= start) & (ei[0] < start + n)
        alone = m(x[start:start + n], ei[:, keep] - start)
        torch.testing.assert_close(out[start:start + n], alone)
        start += n


def test_dot_adjacency_equals_transformer_conv_with_edge_features():
    """Drop-in: same weights, same numbers as PyG's TransformerConv (no self loops)."""
    from torch_geometric.nn import TransformerConv

    x, ei = simple_graph(n=9, seed=3)
    ea = torch.randn(ei.size(1), 3, dtype=torch.float64)
    m = layer("adjacency", "dot", edge_dim=3, add_self_loops=False)
    peer = TransformerConv(4, 3, heads=2, edge_dim=3).double().eval()
    for name in ("lin_query", "lin_key", "lin_value", "lin_edge", "lin_skip"):
        getattr(peer, name).load_state_dict(getattr(m, name).state_dict())
    torch.testing.assert_close(m(x, ei, ea), peer(x, ei, ea))


# --- invariants (property-based) --------------------------------------------------------

@pytest.mark.parametrize("mask,score", MODES)
@settings(max_examples=25, deadline=None)
@given(graph=graphs(), perm_seed=st.integers(0, 1000))
def test_permutation_equivariance(mask, score, graph, perm_seed):
    x, ei = graph
    n = x.size(0)
    m = layer(mask, score)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(perm_seed))
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(n)
    out = m(x, ei)
    out_perm = m(x[perm], inv[ei])
    assert out.shape == (n, 6)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out_perm, out[perm])


@pytest.mark.parametrize("mask,score", MODES)
@settings(max_examples=20, deadline=None)
@given(data=batches())
def test_no_leakage_across_graphs(mask, score, data):
    """Changing one graph of a batch never changes the outputs of another."""
    x, ei, batch, sizes = data
    m = layer(mask, score)
    out = m(x, ei, batch=batch)
    victim = int(torch.tensor(sizes).argmax())
    x2 = x.clone()
    x2[batch == victim] += 10.0
    out2 = m(x2, ei, batch=batch)
    others = batch != victim
    torch.testing.assert_close(out2[others], out[others])
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("score", ["dot", "additive"])
@settings(max_examples=25, deadline=None)
@given(graph=graphs(min_nodes=2), node=st.integers(0, 100))
def test_non_neighbours_cannot_change_output(score, graph, node):
    x, ei = graph
    n = x.size(0)
    target = node % n
    m = layer("adjacency", score)
    neighbours = set(ei[0, ei[1] == target].tolist()) | {target}
    outsiders = [j for j in range(n) if j not in neighbours]
    x2 = x.clone()
    x2[outsiders] = torch.randn(len(outsiders), x.size(1), dtype=x.dtype) * 5
    torch.testing.assert_close(m(x2, ei)[target], m(x, ei)[target])


def test_full_mode_edges_bias_but_do_not_restrict():
    x, ei = simple_graph(n=6, seed=4)
    m = layer("full", "dot")
    target = 5  # no in-neighbours, but full attention still sees every node
    x2 = x.clone()
    x2[0] += 3.0
    assert not torch.allclose(m(x2, ei)[target], m(x, ei)[target])
    assert not torch.allclose(m(x, ei), m(x))  # the edge bias changes the scores


@pytest.mark.parametrize("mask,score", MODES)
def test_no_nan_isolated_nodes_empty_graphs(mask, score):
    m = layer(mask, score, add_self_loops=False)
    x = torch.randn(5, 4, dtype=torch.float64)
    empty = torch.zeros(2, 0, dtype=torch.long)
    for ei in (empty, torch.tensor([[0], [1]])):
        out = m(x, ei)
        assert torch.isfinite(out).all()
    if mask == "adjacency":  # an isolated node without self loop: zero attention, skip only
        torch.testing.assert_close(m(x, empty), m.lin_skip(x))
    assert m(x[:0], empty).shape == (0, 6)  # zero nodes
    out = m(x[:1], empty)  # one node
    assert out.shape == (1, 6) and torch.isfinite(out).all()


@pytest.mark.parametrize("mask,score", MODES)
def test_gradcheck_float64(mask, score):
    x, ei, batch, _ = random_batch([3, 2], channels=3, seed=5)
    m = layer(mask, score, in_channels=3, out_channels=2, edge_dim=2)
    ea = torch.randn(ei.size(1), 2, dtype=torch.float64, requires_grad=True)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, ea: m(x, ei, ea, batch=batch), (x, ea))


# --- attention weights, biases, options ------------------------------------------------

@pytest.mark.parametrize("mask,score", MODES)
def test_attention_weights_sum_to_one_per_target(mask, score):
    x, ei, batch, sizes = random_batch([4, 3], seed=6)
    m = layer(mask, score)
    out, (index, alpha) = m(x, ei, batch=batch, return_attention_weights=True)
    assert alpha.shape == (index.size(1), 2)
    sums = torch.zeros(x.size(0), 2, dtype=alpha.dtype).index_add_(0, index[1], alpha)
    torch.testing.assert_close(sums, torch.ones_like(sums))
    if mask == "adjacency":  # given edges (no loops) first, then one loop per node
        no_loop = ei[:, ei[0] != ei[1]]
        assert torch.equal(index[:, :no_loop.size(1)], no_loop)
        assert torch.equal(index[:, no_loop.size(1):], torch.arange(7).repeat(2, 1))
    else:
        assert index.size(1) == sum(n * n for n in sizes)
        assert (batch[index[0]] == batch[index[1]]).all()
    assert torch.equal(m(x, ei, batch=batch, return_attention_weights=False), out)
    assert isinstance(m(x, ei, batch=batch, return_attention_weights=None), torch.Tensor)


def test_adjacency_attn_bias_shifts_scores():
    x, ei = simple_graph(n=6, seed=7)
    m = layer("adjacency", "dot")
    bias = torch.zeros(ei.size(1), dtype=torch.float64)
    torch.testing.assert_close(m(x, ei, attn_bias=bias), m(x, ei))
    bias[0] = -1e9  # effectively removes edge 0
    keep = torch.arange(ei.size(1)) != 0
    torch.testing.assert_close(m(x, ei, attn_bias=bias), m(x, ei[:, keep]))


def test_full_attn_bias_dense_layout():
    from torch_geometric.utils import to_dense_batch

    x, ei, batch, sizes = random_batch([3, 5], seed=8)
    m = layer("full", "dot", heads=2)
    _, mask = to_dense_batch(x, batch)
    bias = torch.randn(2, 2, 5, 5, dtype=torch.float64)
    out = m(x, batch=batch, attn_bias=bias)
    s, v = dense_scores(m, x[3:])  # second graph by hand
    ref = finish(m, torch.softmax(s + bias[1], -1) @ v, x[3:])
    torch.testing.assert_close(out[3:], ref)
    shared = torch.randn(2, 5, 5, dtype=torch.float64)  # one bias for all heads
    torch.testing.assert_close(m(x, batch=batch, attn_bias=shared),
                               m(x, batch=batch, attn_bias=shared[:, None].expand(-1, 2, -1, -1)))
    assert mask.sum() == 8


def test_bipartite_and_lazy_in_channels():
    torch.manual_seed(0)
    m = GraphSelfAttention((-1, -1), 4, heads=2, add_self_loops=True)
    x_src, x_dst = torch.randn(5, 3), torch.randn(2, 6)
    ei = torch.tensor([[0, 4, 2], [0, 1, 1]])
    out, (index, alpha) = m((x_src, x_dst), ei, return_attention_weights=True)
    assert out.shape == (2, 8)
    # PyG's GATConv rule: loops i -> i for i < min(N_s, N_t), after the other edges
    assert index.tolist() == [[4, 2, 0, 1], [1, 1, 0, 1]]
    assert m.lin_key.in_channels == 3 and m.lin_query.in_channels == 6


@pytest.mark.parametrize("score", ["dot", "additive"])
@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_bipartite_blocks_equal_full_graph(score, impl):
    """A NeighborSampler block (targets first among the sources) gives the full graph's
    outputs of its targets, with the same self-loop rule, on every path."""
    torch.manual_seed(3)
    x = torch.randn(9, 4, dtype=torch.float64)
    ei = torch.tensor([[1, 2, 3, 4, 0, 5, 6, 7, 8, 2], [0, 0, 1, 1, 2, 2, 3, 4, 4, 2]])
    m = layer("adjacency", score, add_self_loops=True, impl=impl)
    full = m(x, ei)
    targets = torch.tensor([0, 1, 2])  # in-edges of 0..2 come from 0..5: a block
    keep = torch.isin(ei[1], targets)
    block = m((x[:6], x[:3]), ei[:, keep])
    torch.testing.assert_close(block, full[targets], atol=1e-6, rtol=0)
    torch.testing.assert_close(m((x[:6], None), ei[:, keep], size=(6, 3)), block)


def test_default_self_loops_follow_score():
    assert not GraphSelfAttention(4, 2).add_self_loops  # TransformerConv
    assert GraphSelfAttention(4, 2, score="additive").add_self_loops  # GATConv
    assert GraphSelfAttention(4, 2, add_self_loops=True).add_self_loops


def test_out_of_range_is_value_and_index_error():
    m = GraphSelfAttention(4, 2)
    with pytest.raises(IndexError, match="valid indices"):
        m(torch.randn(3, 4), torch.tensor([[0, 3], [1, 2]]))
    with pytest.raises(ValueError, match="valid indices"):
        m(torch.randn(3, 4), torch.tensor([[0, 1], [1, -1]]))


@pytest.mark.parametrize("layout", [torch.sparse_coo, torch.sparse_csr, torch.sparse_csc])
def test_attention_weights_in_the_adjacency_layout(layout):
    x, ei = simple_graph(n=6, seed=2)
    m = layer("adjacency", "additive")
    adj = torch.sparse_coo_tensor(ei.flip(0), torch.ones(ei.size(1)), (6, 6)).coalesce()
    adj = adj.to_sparse(layout=layout)
    out, (w, alpha) = m(x, adj, return_attention_weights=True)
    assert w.layout == layout and tuple(w.shape) == (6, 6, 2)
    ref_out, (index, ref_alpha) = m(x, ei, return_attention_weights=True)
    torch.testing.assert_close(out, ref_out)
    dense = torch.zeros(6, 6, 2, dtype=alpha.dtype)
    dense[index[1], index[0]] = ref_alpha
    torch.testing.assert_close(w.to_dense(), dense)


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")  # torch's notice
def test_sparse_adjacency_input_equals_edge_index():
    x, ei = simple_graph(n=8, seed=9)
    m = layer("adjacency", "additive")
    adj_t = torch.sparse_coo_tensor(ei.flip(0), torch.ones(ei.size(1)), (8, 8),
                                    check_invariants=True)
    torch.testing.assert_close(m(x, adj_t), m(x, ei))
    torch.testing.assert_close(m(x, adj_t.coalesce().to_sparse_csr()), m(x, ei))


def test_reset_parameters_repr_and_dropout():
    m = GraphSelfAttention(4, 3, heads=2, mask="full", score="additive", edge_dim=2,
                           dropout=0.5)
    before = m.lin_query.weight.clone()
    m.reset_parameters()
    assert not torch.equal(before, m.lin_query.weight)
    assert repr(m) == ("GraphSelfAttention(4, 3, heads=2, mask='full', score='additive', "
                       "edge_dim=2)")
    x = torch.randn(6, 4)
    m.eval()
    torch.testing.assert_close(m(x), m(x))  # dropout only in training
    m.train()
    torch.manual_seed(0)
    a = m(x)
    torch.manual_seed(1)
    assert not torch.allclose(a, m(x))


def test_concat_false_averages_heads():
    x, ei = simple_graph(seed=10)
    m = layer("adjacency", "dot", concat=False, root_weight=False)
    out, _ = m(x, ei, return_attention_weights=True)
    assert out.shape == (7, 3)
    assert m.bias is not None and m.lin_skip is None


@pytest.mark.parametrize("mask,score", MODES)
def test_autocast_bfloat16_keeps_the_fused_kernels_in_float32(mask, score, monkeypatch):
    """Under CPU autocast the projections run in bfloat16 and the fused kernels compute in
    float32 (the native CSR kernel reads the bfloat16 rows, the others get them widened), not
    the (much slower) reference path: the output is within bfloat16's rounding of the float32
    layer's, and so are the gradients of a backward outside autocast."""
    x, ei, batch, _ = random_batch([6, 9], dtype=torch.float32, seed=3)
    ea = torch.randn(ei.size(1), 2)
    m = layer(mask, score, edge_dim=2).float().train()
    x32 = x.clone().requires_grad_(True)
    out32 = m(x32, ei, ea, batch=batch)
    g32 = torch.autograd.grad(out32.pow(2).sum(), [x32, *m.parameters()], allow_unused=True)

    def no_reference(*args, **kwargs):
        raise AssertionError("the reference path ran under autocast")

    monkeypatch.setattr(m, "propagate", no_reference)
    x16 = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16 = m(x16, ei, ea, batch=batch)
    bf16_rows = mask == "adjacency" and kernels.available(torch.bfloat16, "csr")
    assert out16.dtype == (torch.bfloat16 if bf16_rows else torch.float32)
    torch.testing.assert_close(out16.float(), out32, rtol=0.05, atol=0.05)
    g16 = torch.autograd.grad(out16.float().pow(2).sum(), [x16, *m.parameters()],
                              allow_unused=True)
    scale = max(b.abs().max().item() for b in g32 if b is not None)  # some are ~0 exactly
    for a, b in zip(g16, g32):
        if b is not None:
            torch.testing.assert_close(a, b, rtol=0.1, atol=0.02 * scale)


# --- attention over raw features (keys and values projected after the sum) -------------

def takes_raw(m: GraphSelfAttention, x: torch.Tensor, edge_attr=None) -> bool:
    """Whether a call of ``m`` on ``x`` runs the raw-feature kernel."""
    sizes = GF.graph_sizes(None, x.size(0)) if m.mask == "full" else None
    return not m._reference_only() and \
        route(m._kernel_view(x, x), x, x, edge_attr, sizes) == "raw"


def _reference_twin(m: GraphSelfAttention) -> GraphSelfAttention:
    ref = GraphSelfAttention(m.in_channels, m.out_channels, heads=m.heads, dropout=m.dropout,
                             root_weight=m.root_weight, bias=m.lin_key.bias is not None,
                             concat=m.concat, impl="reference").double()
    ref.load_state_dict(m.state_dict())
    return ref.train(m.training)


@pytest.mark.skipif(not kernels.available(), reason="the native kernel did not build")
@settings(max_examples=30, deadline=None)
@given(graph=graphs(channels=3), heads=st.integers(1, 3), out_channels=st.integers(2, 5),
       bias=st.booleans(), dropout=st.sampled_from([0.0, 0.4]), concat=st.booleans(),
       needs_grad=st.booleans(), seed=st.integers(0, 1000))
def test_raw_feature_attention_equals_reference(graph, heads, out_channels, bias, dropout,
                                                concat, needs_grad, seed):
    """On narrow features the fused path gathers [x_j, 1] and projects after the sum: the
    same outputs, attention weights and gradients (parameters and x) as the reference,
    dropped attention weights included (same random draws)."""
    x, ei = graph
    x = x.clone().requires_grad_(needs_grad)
    torch.manual_seed(seed)
    m = GraphSelfAttention(3, out_channels, heads=heads, dropout=dropout, bias=bias,
                           root_weight=False, concat=concat).double().train()
    assert takes_raw(m, x, None) == (3 + 1 <= (out_channels if needs_grad
                                                    else heads * out_channels))
    results = []
    for mod in (m, _reference_twin(m)):
        torch.manual_seed(seed)
        out, (index, alpha) = mod(x, ei, return_attention_weights=True)
        w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
        wrt = [*mod.parameters()] + ([x] if needs_grad else [])
        grads = torch.autograd.grad((out * w).sum(), wrt, allow_unused=True)
        results.append((out, index, alpha, grads))
    (out, index, alpha, grads), (out_r, index_r, alpha_r, grads_r) = results
    torch.testing.assert_close(out, out_r)
    assert torch.equal(index, index_r)
    torch.testing.assert_close(alpha, alpha_r)
    for g, g_r in zip(grads, grads_r):
        if g_r is None:
            assert g is None or not g.any()
        else:
            torch.testing.assert_close(g, g_r)


@pytest.mark.skipif(not kernels.available(), reason="the native kernel did not build")
def test_raw_feature_attention_gradcheck_float64():
    x, ei, _, _ = random_batch([5, 4], channels=2, seed=2)
    m = layer(in_channels=2, out_channels=3, heads=2, root_weight=False)
    x.requires_grad_(True)
    assert takes_raw(m, x, None)
    params = [m.lin_query.weight, m.lin_key.weight, m.lin_key.bias, m.lin_value.weight]
    assert torch.autograd.gradcheck(lambda x, *p: m(x, ei), (x, *params))


def test_raw_feature_attention_only_where_it_is_cheaper_and_exact():
    """Wide features, edge embeddings, the additive score, full attention and the reference
    implementation keep the key-value kernel."""
    x = torch.randn(6, 4, dtype=torch.float64)
    assert takes_raw(layer(in_channels=4, out_channels=3, heads=2), x, None) == \
        kernels.available()
    wide = torch.randn(6, 40, dtype=torch.float64)
    assert not takes_raw(layer(in_channels=40, out_channels=3, heads=2), wide, None)
    assert not takes_raw(layer(in_channels=4, out_channels=3, heads=2),
                         x.requires_grad_(True), None)  # needs a gradient: F + 1 > C
    ea = torch.randn(3, 2, dtype=torch.float64)
    assert not takes_raw(layer(edge_dim=2), x, ea)
    assert not takes_raw(layer(score="additive"), x, None)
    assert not takes_raw(layer(mask="full"), x, None)
    assert not takes_raw(layer(impl="reference"), x, None)


@pytest.mark.skipif(not kernels.available(torch.bfloat16), reason="no bfloat16 native kernel")
def test_raw_feature_attention_under_autocast_bfloat16():
    x, ei, _, _ = random_batch([6, 9], dtype=torch.float32, seed=4)
    m = layer(in_channels=4, out_channels=4, heads=2).float().train()
    assert takes_raw(m, x, None)
    out32 = m(x, ei)
    g32 = torch.autograd.grad(out32.pow(2).sum(), list(m.parameters()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16 = m(x, ei)
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16.float(), out32, rtol=0.05, atol=0.05)
    g16 = torch.autograd.grad(out16.float().pow(2).sum(), list(m.parameters()))
    scale = max(g.abs().max().item() for g in g32)
    for a, b in zip(g16, g32):
        torch.testing.assert_close(a, b, rtol=0.1, atol=0.03 * scale)


@pytest.mark.parametrize("mask", ["adjacency", "full"])
def test_nan_or_posinf_bias_is_a_clear_error(mask):
    x, ei = simple_graph(n=5, seed=1)
    m = layer(mask, "dot")
    shape = (ei.size(1),) if mask == "adjacency" else (1, 5, 5)
    for bad in (float("nan"), float("inf")):
        bias = torch.zeros(shape, dtype=torch.float64)
        bias.view(-1)[0] = bad
        with pytest.raises(ValueError, match="attn_bias contains NaN"):
            m(x, ei, attn_bias=bias)


def _paths():
    return [("reference", False), ("fused", False), ("fused", True)]


@pytest.mark.parametrize("score", ["dot", "additive"])
@pytest.mark.parametrize("impl,no_native", _paths())
def test_all_masked_adjacency_row_attends_to_nothing(score, impl, no_native):
    """Issue 22: -inf on all of a node's edges gave NaN rows. Masking by -inf now equals
    removing the masked edges, including a node that loses all of them."""
    x, ei = simple_graph(n=7, seed=4)
    m = layer("adjacency", score, add_self_loops=False, impl=impl)
    x = x.clone().requires_grad_()
    target = int(ei[1, 0])
    g = torch.Generator().manual_seed(0)
    bias = torch.randn(ei.size(1), generator=g, dtype=torch.float64)
    bias[torch.rand(ei.size(1), generator=g) < 0.3] = float("-inf")
    bias[ei[1] == target] = float("-inf")  # every in-edge of `target`
    with kernels.disabled() if no_native else contextlib.nullcontext():
        out, (index, alpha) = m(x, ei, attn_bias=bias, return_attention_weights=True)
        out.sum().backward()
        keep = ~torch.isneginf(bias)
        removed = m(x, ei[:, keep], attn_bias=bias[keep])
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    torch.testing.assert_close(out[target], m.lin_skip(x[target]))  # attention output 0
    assert (alpha[~keep] == 0).all()
    torch.testing.assert_close(out, removed)


@pytest.mark.parametrize("impl,no_native", _paths())
def test_all_masked_full_row_attends_to_nothing(impl, no_native):
    torch.manual_seed(0)
    x = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    batch = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    m = layer("full", "dot", impl=impl)
    bias = torch.zeros(2, 2, 4, 4, dtype=torch.float64)
    bias[1, 0, 2, :] = float("-inf")  # node 5 (graph 1, position 2), head 0: all masked
    bias[0, 1, 0, 1] = float("-inf")  # one pair of node 0, head 1
    with kernels.disabled() if no_native else contextlib.nullcontext():
        out = m(x, batch=batch, attn_bias=bias)
        out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    head0 = out[5, :3]  # concat: head 0's channels, attention output 0 plus the skip
    torch.testing.assert_close(head0, m.lin_skip(x[5])[:3])


@pytest.mark.slow
@pytest.mark.parametrize("mask", ["adjacency", "full"])
def test_compiled_masked_rows_attend_to_nothing_as_in_eager(mask):
    """A row whose pairs are all -inf gives 0 (never NaN) in compiled and exported layers
    too: the masking runs while tracing, only the data-dependent checks are left out."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    x = torch.randn(7, 4, dtype=torch.float64)
    m = layer(mask, "dot", add_self_loops=False)
    if mask == "full":
        ei, kw = None, {"batch": torch.tensor([0, 0, 0, 1, 1, 1, 1])}
        bias = torch.zeros(2, 2, 4, 4, dtype=torch.float64)
        bias[1, 0, 2, :] = float("-inf")  # node 5, head 0: all masked
        bias[0, 1, 0, 1] = float("-inf")
    else:
        ei, kw = simple_graph(n=7, seed=4)[1], {}
        bias = torch.randn(ei.size(1), dtype=torch.float64)
        bias[ei[1] == int(ei[1, 0])] = float("-inf")  # every in-edge of one target
    args = (x, ei) if ei is not None else (x,)
    expected = m(*args, attn_bias=bias, **kw)
    xc = x.clone().requires_grad_()
    got = torch.compile(m, fullgraph=True)(xc, *args[1:], attn_bias=bias, **kw)
    got.sum().backward()
    assert torch.isfinite(got).all() and torch.isfinite(xc.grad).all()
    torch.testing.assert_close(got, expected)
    if mask == "full":
        program = torch.export.export(m, args, {"attn_bias": bias, **kw})
        torch.testing.assert_close(program.module()(*args, attn_bias=bias, **kw), expected)


@pytest.mark.parametrize("mask", ["adjacency", "full"])
@pytest.mark.parametrize("score", ["dot", "additive"])
@pytest.mark.parametrize("edge_dim", [None, 3])
@pytest.mark.parametrize("impl,no_native", _paths())
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_layer_on_every_path(mask, score, edge_dim, impl, no_native, dtype):
    """Issue 22: model.bfloat16() raised a TypeError from the native kernel (full mode)."""
    torch.manual_seed(0)
    x = torch.randn(12, 4)
    ei = torch.cat([torch.randint(0, 5, (2, 15)), torch.randint(5, 12, (2, 25))], 1)
    ea = torch.randn(40, 3) if edge_dim else None
    batch = torch.tensor([0] * 5 + [1] * 7)
    m = GraphSelfAttention(4, 3, heads=2, mask=mask, score=score, edge_dim=edge_dim,
                           impl=impl, add_self_loops=True)
    kw = {"batch": batch} if mask == "full" else {}
    with kernels.disabled() if no_native else contextlib.nullcontext():
        expected = m(x, ei, ea, **kw)
        m = m.to(dtype)
        out = m(x.to(dtype), ei, ea.to(dtype) if ea is not None else None, **kw)
        out.float().sum().backward()
    assert out.dtype == dtype
    torch.testing.assert_close(out.float(), expected, atol=0.1, rtol=0.05)
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in m.parameters() if p.requires_grad)
