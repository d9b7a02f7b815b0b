"""graphattn::dense_attention (torch custom operator): full dot attention in compiled and
exported graphs keeps the native dense kernel, with the values and gradients of the eager
and reference paths, and nothing crosses from one graph of a batch to another."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphattn.nn import GraphSelfAttention
from graphattn.nn.kernels import build, dispatch, ops
from tests.nn.kernels.test_native import dense_inputs, dense_reference

pytestmark = pytest.mark.skipif(not build.available(torch.float32, "dense"),
                                reason="the native dense kernel did not build")

op = torch.ops.graphattn.dense_attention.default


def op_inputs(sizes=(3, 0, 1, 17, 34, 5), heads_in_bias=None, seed=0):
    """dense_inputs with the edges in their given (unsorted) order and the batch vector."""
    sizes, st_, q, kv, eb, ab, _ = dense_inputs(sizes, seed=seed, heads_in_bias=heads_in_bias)
    sorted_edges = torch.stack([st_.src_long, st_.dst_long])
    ei = torch.empty_like(sorted_edges).index_copy_(1, st_.perm_long, sorted_edges)
    batch = torch.repeat_interleave(torch.arange(sizes.numel()), sizes)
    return sizes, st_, ei, batch, q, kv, eb, ab


@pytest.mark.parametrize("max_nodes", [256, 4])  # native kernel; bucketed inside the op
@pytest.mark.parametrize("heads_in_bias", [1, 2])
def test_operator_equals_dense_reference_and_its_gradients_check(max_nodes, heads_in_bias):
    """Edge bias in edge order, a padded attn_bias, an empty and a single-node graph."""
    sizes, st_, ei, batch, q, kv, eb, ab = op_inputs(heads_in_bias=heads_in_bias)
    out, _ = op(q, kv, eb, ab, ei, batch, max_nodes)
    ones = torch.ones(int((sizes * sizes).sum()), q.size(1), dtype=q.dtype)
    ref, _ = dense_reference(sizes, st_, q, kv, eb.index_select(0, st_.perm_long),
                             ab.expand(-1, q.size(1), -1, -1), ones)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    grads = torch.autograd.grad(out.square().sum(), [q, kv, eb, ab])
    refs = torch.autograd.grad(ref.square().sum(), [q, kv, eb, ab])
    for a, b in zip(grads, refs):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)

    small = op_inputs(sizes=(3, 0, 1, 6, 2), heads_in_bias=heads_in_bias)
    _, _, ei, batch, *tensors = small
    assert torch.autograd.gradcheck(lambda q, kv, eb, ab: op(q, kv, eb, ab, ei, batch,
                                                             max_nodes)[0],
                                    tensors, eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("max_nodes", [256, 2])
def test_operator_opcheck(with_bias, max_nodes):
    """torch.library.opcheck: schema, fake tensor and autograd registrations agree."""
    sizes, _, ei, batch, q, kv, eb, ab = op_inputs(sizes=(3, 0, 1, 5, 1))
    args = (q, kv, eb, ab, ei, batch, max_nodes) if with_bias else \
        (q, kv, None, None, None, batch, max_nodes)
    torch.library.opcheck(op, args, test_utils=("test_schema", "test_faketensor",
                                                "test_autograd_registration"))


def test_operator_takes_one_graph_and_no_nodes():
    """``batch=None`` is one graph; an empty batch gives an empty output."""
    _, st_, ei, _, q, kv, eb, ab = op_inputs(sizes=(6,))
    out, _ = op(q, kv, eb, ab, ei, None, 256)
    torch.testing.assert_close(out, op(q, kv, eb, ab, ei, torch.zeros(6, dtype=torch.long),
                                       256)[0])
    q0, kv0 = q[:0].detach().requires_grad_(), kv[:0].detach().requires_grad_()
    out0, _ = op(q0, kv0, None, None, None, torch.zeros(0, dtype=torch.long), 256)
    assert out0.shape == (0, *q.shape[1:])
    assert torch.autograd.grad(out0.sum(), q0)[0].shape == q0.shape


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(0, 9), min_size=2, max_size=5), data=st.data())
def test_no_leakage_across_graphs(sizes, data):
    """Changing the nodes, edge bias and attn_bias of one graph changes nothing of the
    others' outputs, on the native and on the bucketed path."""
    b = data.draw(st.sampled_from([i for i, n in enumerate(sizes) if n] or [None]))
    if b is None:
        return
    max_nodes = data.draw(st.sampled_from([256, 3]))
    sizes_t, _, ei, batch, q, kv, eb, ab = op_inputs(sizes=tuple(sizes), seed=len(sizes))
    mine = batch == b
    out, _ = op(q, kv, eb, ab, ei, batch, max_nodes)
    q2 = q.detach().clone()
    kv2 = kv.detach().clone()
    q2[mine] += 1.5
    kv2[mine] -= 2.0
    eb2 = torch.where(mine[ei[1]].unsqueeze(-1), eb.detach() + 3.0, eb.detach())
    ab2 = ab.detach().clone()
    ab2[b] += 1.0
    out2, _ = op(q2, kv2, eb2, ab2, ei, batch, max_nodes)
    assert torch.equal(out[~mine], out2[~mine])


def full_batch(sizes=(4, 7, 1, 5), dtype=torch.float64, seed=0):
    """A batch of graphs with edges inside each graph, edge features and an attn_bias."""
    g = torch.Generator().manual_seed(seed)
    sizes = torch.tensor(sizes)
    batch = torch.repeat_interleave(torch.arange(sizes.numel()), sizes)
    ptr = (sizes.cumsum(0) - sizes).tolist()
    ei = torch.cat([torch.randint(p, p + n, (2, 2 * n), generator=g)
                    for p, n in zip(ptr, sizes.tolist())], 1)
    x = torch.randn(batch.numel(), 6, generator=g, dtype=dtype, requires_grad=True)
    ea = torch.randn(ei.size(1), 3, generator=g, dtype=dtype)
    M = int(sizes.max())
    ab = torch.randn(sizes.numel(), M, M, generator=g, dtype=dtype, requires_grad=True)
    return x, ei, ea, batch, ab


def values_and_grads(f, m, x, ei, ea, batch, ab):
    out = f(x, ei, ea, batch=batch, attn_bias=ab)
    inputs = [x, *m.parameters()] + ([ab] if ab is not None else [])
    return out, torch.autograd.grad(out.square().sum(), inputs)


def assert_all_close(a, b, **kw):
    torch.testing.assert_close(a[0], b[0], **kw)
    for u, v in zip(a[1], b[1]):
        torch.testing.assert_close(u, v, **kw)


@pytest.mark.slow
def test_compiled_full_attention_keeps_the_operator_with_eager_and_reference_results(
        structures_built):
    """torch.compile(fullgraph=True): no graph break, the operator in the graph, values
    and gradients equal eager and reference ones, each graph sorted once (the cache is
    shared with the eager path). With an attn_bias too."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    x, ei, ea, batch, ab = full_batch()
    m = GraphSelfAttention(6, 4, heads=2, mask="full", edge_dim=3).double()
    explanation = torch._dynamo.explain(m)(x, ei, ea, batch=batch)
    assert explanation.graph_break_count == 0
    assert "graphattn.dense_attention" in "\n".join(str(g.graph) for g in explanation.graphs)
    compiled = torch.compile(m, fullgraph=True)
    for _ in range(2):
        got = values_and_grads(compiled, m, x, ei, ea, batch, None)
    eager = values_and_grads(m, m, x, ei, ea, batch, None)
    assert len(structures_built) == 1
    assert_all_close(got, eager)
    m.impl = "reference"
    assert_all_close(got, values_and_grads(m, m, x, ei, ea, batch, None))
    m.impl = "auto"
    explanation = torch._dynamo.explain(m)(x, ei, ea, batch=batch, attn_bias=ab)
    assert "graphattn.dense_attention" in "\n".join(str(g.graph) for g in explanation.graphs)
    got = values_and_grads(torch.compile(m), m, x, ei, ea, batch, ab)
    assert_all_close(got, values_and_grads(m, m, x, ei, ea, batch, ab))


@pytest.mark.slow
def test_exported_full_attention_keeps_the_operator_and_counts_graphs_at_run_time():
    """torch.export: the program calls the operator and equals eager, also on the same
    nodes split into other graphs, and with graphs over the native size limit (the
    bucketed kernels inside the operator)."""
    torch.manual_seed(0)
    x, ei, ea, batch, _ = full_batch()
    m = GraphSelfAttention(6, 4, heads=2, mask="full", edge_dim=3).double()
    program = torch.export.export(m, (x.detach(), ei, ea, batch))
    assert "graphattn.dense_attention" in str(program.graph)
    torch.testing.assert_close(program.module()(x, ei, ea, batch), m(x, ei, ea, batch))
    other = torch.tensor([0] * 11 + [1] * 6)  # graphs 0, 1 and 2, 3 merged
    torch.testing.assert_close(program.module()(x, ei, ea, other), m(x, ei, ea, other))
    monkeypatch = pytest.MonkeyPatch()
    with monkeypatch.context() as mp:  # the bucketed kernels inside the operator
        mp.setattr(dispatch, "NATIVE_FULL_MAX_NODES", 5)
        program = torch.export.export(m, (x.detach(), ei, ea, batch))
    torch.testing.assert_close(program.module()(x, ei, ea, batch), m(x, ei, ea, batch))
    torch.testing.assert_close(program.module()(x, ei, ea, other), m(x, ei, ea, other))


@pytest.mark.slow
def test_compiled_calls_left_to_the_eager_kernels_count_the_graphs():
    """The layer's guard is skipped while tracing: the calls that keep the graph break (additive
    score; returned weights) count the graphs themselves: eager values and weights."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    x, ei, ea, batch, _ = full_batch()
    for score in ("additive", "dot"):
        m = GraphSelfAttention(6, 4, heads=2, mask="full", score=score, edge_dim=3).double()
        out_c, (index_c, alpha_c) = torch.compile(m)(x, ei, ea, batch=batch,
                                                     return_attention_weights=True)
        out_e, (index_e, alpha_e) = m(x, ei, ea, batch=batch, return_attention_weights=True)
        torch.testing.assert_close(out_c, out_e)
        assert torch.equal(index_c, index_e)
        torch.testing.assert_close(alpha_c, alpha_e)


@pytest.mark.slow
def test_compiled_bfloat16_full_attention_widens_as_eager():
    """A bfloat16 model: the operator computes in float32 and returns bfloat16, as the
    eager path does (the layer's guard graph-breaks here, the operator still runs)."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    x, ei, ea, batch, ab = full_batch(dtype=torch.bfloat16)
    m = GraphSelfAttention(6, 4, heads=2, mask="full", edge_dim=3).bfloat16()
    eager = m(x, ei, ea, batch=batch, attn_bias=ab)
    explanation = torch._dynamo.explain(m)(x, ei, ea, batch=batch, attn_bias=ab)
    assert "graphattn.dense_attention" in "\n".join(str(g.graph) for g in explanation.graphs)
    out = torch.compile(m)(x, ei, ea, batch=batch, attn_bias=ab)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, eager, rtol=2e-2, atol=2e-2)


def test_route_under_tracing(monkeypatch):
    """The dense operator takes full dot attention without dropout or returned weights;
    those (data-dependent [P, H]) and the additive score keep the eager graph break."""
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: False)
    x = torch.randn(5, 6)
    for score, dropout, want_alpha, expected in (("dot", 0.0, False, "dense_op"),
                                                  ("dot", 0.0, True, "eager"),
                                                  ("dot", 0.3, False, "eager"),
                                                  ("additive", 0.0, False, "eager")):
        m = GraphSelfAttention(6, 4, heads=2, mask="full", score=score, dropout=dropout)
        assert dispatch.route(m._kernel_view(x, x), x, x, None, None, want_alpha) == expected
    m = GraphSelfAttention(6, 4, heads=2, mask="full", dropout=0.3).eval()
    assert dispatch.route(m._kernel_view(x, x), x, x, None, None) == "dense_op"
    assert ops.native_dense_available()


@pytest.mark.slow
def test_compiled_and_exported_full_attention_still_refuse_too_many_pairs():
    """The full-pairs guard runs inside the operator (and the eager route) when the layer
    skips it while tracing: the same ValueError, no silent giant buffer."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    x, ei, ea, batch, _ = full_batch()
    for kw in ({}, {"return_attention_weights": True}):  # the operator; the eager route
        m = GraphSelfAttention(6, 4, heads=2, mask="full", edge_dim=3).double()
        m.max_full_pairs = 10
        with pytest.raises(ValueError, match="more than max_full_pairs=10"):
            torch.compile(m)(x, ei, ea, batch=batch, **kw)
    program = torch.export.export(m, (x.detach(), ei, ea, batch))
    with pytest.raises(ValueError, match="more than max_full_pairs=10"):
        program.module()(x, ei, ea, batch)
