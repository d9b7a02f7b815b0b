"""graphattn::csr_attention (torch custom operator): compiled and exported graphs keep the
native kernel, with the values and gradients of eager calls (graphattn::dense_attention:
test_dense_op.py)."""

from __future__ import annotations

import pytest
import torch

from graphattn.nn import GraphSelfAttention, kernels

pytestmark = pytest.mark.skipif(not kernels.available(), reason="native kernels unavailable")


@pytest.mark.slow
@pytest.mark.parametrize("score,edge_dim,loops", [("dot", None, False), ("additive", 3, False),
                                                  ("dot", 2, False)])
def test_compiled_forward_and_backward_equal_eager(score, edge_dim, loops):
    torch._dynamo.reset()
    torch.manual_seed(0)
    x = torch.randn(12, 5, dtype=torch.float64, requires_grad=True)
    ei = torch.randint(0, 12, (2, 50))
    ea = torch.randn(50, edge_dim, dtype=torch.float64) if edge_dim else None
    bias = torch.randn(50, 2, dtype=torch.float64, requires_grad=True)
    m = GraphSelfAttention(5, 4, heads=2, score=score, edge_dim=edge_dim,
                           add_self_loops=loops).double()
    explanation = torch._dynamo.explain(m)(x, ei, ea, attn_bias=bias)
    assert explanation.graph_break_count == 0
    assert "graphattn.csr_attention" in "\n".join(str(g.graph) for g in explanation.graphs)
    compiled = torch.compile(m, fullgraph=True)
    outs = []
    for f in (m, compiled):
        out = f(x, ei, ea, attn_bias=bias)
        grads = torch.autograd.grad(out.square().sum(), [x, bias, *m.parameters()])
        outs.append((out, grads))
    torch.testing.assert_close(outs[0][0], outs[1][0])
    for a, b in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("edge_order", [True, False])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("loops", [0, 6])
def test_operator_opcheck(edge_order, with_bias, loops):
    """torch.library.opcheck: schema, fake tensor and autograd registrations agree, on
    given edges and on edges with self loops added."""
    from graphattn.nn.kernels.structure import with_self_loops

    torch.manual_seed(0)
    q = torch.randn(6, 2, 4, dtype=torch.float64, requires_grad=True)
    kv = torch.randn(7, 2, 2, 4, dtype=torch.float64, requires_grad=True)
    att = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    ei = torch.stack([torch.randint(0, 7, (20,)), torch.randint(0, 6, (20,))])
    ei[:, 0] = 3  # a given self loop, dropped when the operator adds its own
    looped, _, _ = with_self_loops(ei, 7, 6, loops)
    looped = looped if looped is not None else ei
    bias = torch.randn(looped.size(1), 2, dtype=torch.float64, requires_grad=True) \
        if with_bias else None
    torch.library.opcheck(torch.ops.graphattn.csr_attention.default,
                          (q, kv, None, att, bias, None, ei, loops, 7, 0.2, 0.5, edge_order),
                          test_utils=("test_schema", "test_faketensor",
                                      "test_autograd_registration"))


@pytest.mark.slow
def test_compiled_layer_with_self_loops_sorts_each_graph_once(structures_built):
    """The compiled layer adds self loops without a graph break and sorts each graph once
    (the structure is cached under the given edge_index); values, gradients and attention
    weights equal eager ones."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    x, ei = torch.randn(30, 5), torch.randint(0, 30, (2, 90))
    ei[:, :3] = torch.tensor([[4, 7, 9], [4, 7, 9]])  # given self loops, replaced
    m = GraphSelfAttention(5, 4, heads=2, score="additive", add_self_loops=True)
    assert torch._dynamo.explain(m)(x, ei).graph_break_count == 0
    compiled = torch.compile(m, fullgraph=True)
    for _ in range(3):
        out = compiled(x, ei)
        grads = torch.autograd.grad(out.square().sum(), [*m.parameters()])
    assert len(structures_built) == 1
    torch.testing.assert_close(out, m(x, ei))
    for a, b in zip(grads, torch.autograd.grad(m(x, ei).square().sum(), [*m.parameters()])):
        torch.testing.assert_close(a, b)
    out_c, (index_c, alpha_c) = torch.compile(m)(x, ei, return_attention_weights=True)
    out_e, (index_e, alpha_e) = m(x, ei, return_attention_weights=True)
    assert torch.equal(index_c, index_e)
    torch.testing.assert_close(alpha_c, alpha_e)


@pytest.mark.slow
def test_compiled_full_attention_with_weights_runs_the_eager_kernels_with_equal_results(
        monkeypatch):
    """Full mode returning its attention weights ([P, H]: a data-dependent size) runs the
    native dense kernel outside the compiled graph (not the reference path): same outputs,
    weights and gradients as eager."""
    from graphattn.nn.kernels import dispatch

    torch._dynamo.reset()
    calls, apply = [], dispatch.DenseAttention.apply
    monkeypatch.setattr(dispatch.DenseAttention, "apply",
                        lambda *a: calls.append(1) or apply(*a))
    torch.manual_seed(0)
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor([4, 7, 5]))
    x = torch.randn(16, 6, dtype=torch.float64, requires_grad=True)
    ei = torch.tensor([[0, 1, 4, 5, 11, 12], [1, 0, 5, 6, 12, 13]])
    ea = torch.randn(6, 2, dtype=torch.float64)
    m = GraphSelfAttention(6, 4, heads=2, mask="full", edge_dim=2).double()
    results = []
    for f in (m, torch.compile(m)):
        out, (index, alpha) = f(x, ei, ea, batch=batch, return_attention_weights=True)
        grads = torch.autograd.grad(out.square().sum(), [x, *m.parameters()])
        results.append((out, index, alpha, grads))
    assert len(calls) == 2
    for a, b in zip(results[0][:3], results[1][:3]):
        torch.testing.assert_close(a, b)
    for a, b in zip(results[0][3], results[1][3]):
        torch.testing.assert_close(a, b)
