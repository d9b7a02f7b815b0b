"""The fused adjacency kernels equal the reference path: outputs and gradients, float32.

Every test runs twice: with the native C kernel (:mod:`graphattn.nn.kernels.native`, used where it
compiled and no edge features are given) and with the MKL sparse kernel alone."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphattn.nn import GraphSelfAttention
from graphattn.nn.kernels import build, structure
from graphattn.nn.kernels.csr_torch import segment_softmax, spmm
from graphattn.nn.kernels.dispatch import route
from graphattn.nn.kernels.structure import EdgeStructure
from tests.strategies import graphs

TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(autouse=True, params=["native", "mkl"])
def kernel(request, monkeypatch):
    if request.param == "native" and not build.available():
        pytest.skip("the native kernel did not build here")
    if request.param == "mkl":
        monkeypatch.setattr(build, "available", lambda dtype=None, kernel="csr": False)
    return request.param


def close(actual, expected):
    """Equal to 1e-5 relative to the tensor's scale: a parameter gradient sums over every
    edge, and summed in a different order two float32 results of size ~100 differ by ~1e-4
    (both differ from float64 by as much; checked on the hub graph below)."""
    scale = max(1.0, float(expected.detach().abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * scale)


def pair(seed=0, in_channels=5, **kwargs) -> tuple[GraphSelfAttention, GraphSelfAttention]:
    """The same layer twice: reference path and fused path."""
    torch.manual_seed(seed)
    ref = GraphSelfAttention(in_channels, 3, heads=2, impl="reference", **kwargs)
    fused = copy.deepcopy(ref)
    fused.impl = "fused"
    return ref, fused


def run(m, x, ei, edge_attr=None, attn_bias=None, seed=0):
    """Output, attention weights and gradients of x, edge_attr, attn_bias and every parameter
    for a fixed random linear function of the output."""
    x = x.detach().requires_grad_(True)
    inputs = [x]
    if edge_attr is not None:
        edge_attr = edge_attr.detach().requires_grad_(True)
        inputs.append(edge_attr)
    if attn_bias is not None:
        attn_bias = attn_bias.detach().requires_grad_(True)
        inputs.append(attn_bias)
    torch.manual_seed(seed)  # same dropout draws on both paths
    out, (index, alpha) = m(x, ei, edge_attr, attn_bias=attn_bias,
                            return_attention_weights=True)
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 1))
    params = [p for p in m.parameters() if p.requires_grad]
    grads = torch.autograd.grad((out * w).sum(), inputs + params, allow_unused=True)
    return out, index, alpha, grads


def assert_same(ref, fused, *args, **kwargs):
    out_r, index_r, alpha_r, grads_r = run(ref, *args, **kwargs)
    out_f, index_f, alpha_f, grads_f = run(fused, *args, **kwargs)
    close(out_f, out_r)
    assert torch.equal(index_f, index_r)
    close(alpha_f, alpha_r)
    assert len(grads_r) == len(grads_f)
    for g_r, g_f in zip(grads_r, grads_f):
        if g_r is None:
            assert g_f is None or not g_f.any()
        else:
            close(g_f, g_r)


def random_graph(n, e, seed, channels=5):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, generator=g), torch.randint(0, max(n, 1), (2, e), generator=g)


@pytest.mark.parametrize("score", ["dot", "additive"])
@pytest.mark.parametrize("edge_dim", [None, 4])
@pytest.mark.parametrize("self_loops", [True, False])
@pytest.mark.parametrize("bias", [None, 1, 2])
def test_fused_equals_reference(score, edge_dim, self_loops, bias):
    """Isolated nodes, duplicate edges and self loops (random multigraph), all options."""
    ref, fused = pair(score=score, edge_dim=edge_dim, add_self_loops=self_loops)
    x, ei = random_graph(40, 160, seed=1)
    ei[:, :5] = ei[:, 5:10]  # duplicates
    ei[1, ei[1] >= 35] = 0  # nodes 35..39 have no in-edges
    ea = torch.randn(ei.size(1), 4) if edge_dim else None
    ab = torch.randn(ei.size(1), 2)[:, :bias].squeeze(-1) if bias else None
    assert_same(ref, fused, x, ei, ea, ab)


@pytest.mark.parametrize("score", ["dot", "additive"])
def test_fused_dropout_and_mean_heads_equal_reference(score):
    ref, fused = pair(score=score, edge_dim=3, dropout=0.4, concat=False, root_weight=False)
    ref.train(), fused.train()
    x, ei = random_graph(30, 120, seed=2)
    assert_same(ref, fused, x, ei, torch.randn(120, 3))


@pytest.mark.parametrize("score", ["dot", "additive"])
def test_fused_hub_with_10k_neighbours(score):
    n = 10_050
    x, ei = random_graph(n, 2_000, seed=3)
    hub = torch.stack([torch.arange(1, 10_001), torch.zeros(10_000, dtype=torch.long)])
    ei = torch.cat([ei, hub], 1)
    ea = torch.randn(ei.size(1), 2)
    ref, fused = pair(score=score, edge_dim=2)
    assert_same(ref, fused, x, ei, ea)
    # in float32 the fused gradients are as close to float64 as the reference's
    exact = run(copy.deepcopy(ref).double(), x.double(), ei, ea.double())[3]
    for g_r, g_f, g_64 in zip(run(ref, x, ei, ea)[3], run(fused, x, ei, ea)[3], exact):
        if g_64 is not None:
            err_r, err_f = (g_r.double() - g_64).abs().max(), (g_f.double() - g_64).abs().max()
            assert err_f <= 2 * err_r + 1e-5 * max(1.0, float(g_64.abs().max()))


@pytest.mark.parametrize("score", ["dot", "additive"])
def test_fused_zero_edges_and_zero_nodes(score):
    for loops in (True, False):
        ref, fused = pair(score=score, edge_dim=2, add_self_loops=loops)
        empty = torch.zeros(2, 0, dtype=torch.long)
        for n in (0, 1, 6):
            x = torch.randn(n, 5)
            assert_same(ref, fused, x, empty, torch.zeros(0, 2), torch.zeros(0))
        if not loops:  # nothing to attend: the skip connection only
            x = torch.randn(6, 5)
            torch.testing.assert_close(fused(x, empty), fused.lin_skip(x))


def test_fused_bipartite_equals_reference():
    torch.manual_seed(0)
    ref = GraphSelfAttention((5, 7), 3, heads=2, impl="reference", edge_dim=2)
    fused = copy.deepcopy(ref)
    fused.impl = "fused"
    x_src, x_dst = torch.randn(9, 5), torch.randn(4, 7)
    ei = torch.stack([torch.randint(0, 9, (25,)), torch.randint(0, 4, (25,))])
    ea = torch.randn(25, 2)
    outs = [m((x_src, x_dst), ei, ea) for m in (ref, fused)]
    torch.testing.assert_close(outs[1], outs[0], **TOL)


@pytest.mark.parametrize("score", ["dot", "additive"])
@settings(max_examples=25, deadline=None)
@given(graph=graphs(channels=5), loops=st.booleans())
def test_fused_equals_reference_property(score, graph, loops):
    x, ei = graph
    ref, fused = pair(score=score, add_self_loops=loops)
    assert_same(ref, fused, x.float(), ei)


def uses_kernels(m: GraphSelfAttention, x: torch.Tensor) -> bool:
    """Whether a call of ``m`` on ``x`` runs a kernel (not the reference path)."""
    return not m._reference_only() and route(m._kernel_view(x, x), x, x, None, None) is not None


def test_auto_uses_fused_and_hooks_force_reference():
    ref, fused = pair()
    fused.impl = "auto"
    x, ei = random_graph(10, 30, seed=4)
    assert uses_kernels(fused, x)
    seen = []
    handle = fused.register_message_forward_hook(lambda m, inputs, out: seen.append(out.shape))
    assert not uses_kernels(fused, x)
    torch.testing.assert_close(fused(x, ei), ref(x, ei))
    assert seen and seen[0][1:] == (2, 3)  # the per-edge messages went through the hook
    handle.remove()
    fused.explain = True
    assert not uses_kernels(fused, x)


def test_segment_softmax_and_spmm_match_dense():
    """The building blocks against dense torch: duplicates add up, empty rows give 0."""
    ei = torch.tensor([[0, 2, 2, 1, 0], [1, 1, 1, 2, 1]])
    st_ = EdgeStructure(ei, 3, 4)
    s = torch.randn(2, 5)
    alpha = segment_softmax(s, st_)
    dense = torch.full((2, 4, 3), float("-inf"))
    for e, (j, i) in enumerate(zip(st_.src.tolist(), st_.dst.tolist())):
        dense[:, i, j] = torch.logaddexp(dense[:, i, j], s[:, e])
    probs = torch.softmax(dense, -1).nan_to_num(0.0)
    v = torch.randn(3, 6)
    out = spmm(st_, alpha, v)  # v shared by the heads
    torch.testing.assert_close(out, probs @ v)
    assert st_.crow.tolist() == [0, 0, 4, 5, 5]


def test_structure_cache_reuses_and_never_goes_stale():

    ref, fused = pair(edge_dim=2)
    x, ei = random_graph(12, 40, seed=5)
    ea = torch.randn(40, 2)
    structure.STRUCTURES.clear()
    built = []
    original = structure.EdgeStructure.__init__

    def counting(self, *args):
        built.append(1)
        original(self, *args)

    structure.EdgeStructure.__init__ = counting
    try:
        first = fused(x, ei, ea)
        torch.testing.assert_close(fused(x, ei, ea), first)  # the same tensor: no new sort
        assert len(built) == 1
        ei[:, :10] = ei[:, 10:20].flip(0)  # in place: the version counter changes
        torch.testing.assert_close(fused(x, ei, ea), ref(x, ei, ea), **TOL)
        assert len(built) == 2
        torch.testing.assert_close(fused(x, ei.clone(), ea), ref(x, ei, ea), **TOL)
        assert len(built) == 3  # another tensor with the same values: built again
        # edits the version counter does not see (issue 22): through numpy and .data
        for edit in (lambda t: t.numpy()[:, :5].__setitem__(..., t.numpy()[:, 20:25][::-1]),
                     lambda t: t.data[:, 5:10].copy_(t.data[:, 25:30].flip(0))):
            expected = len(built) + 1
            version = ei._version
            fused(x, ei, ea)
            edit(ei)
            assert ei._version == version  # invisible to the counter
            torch.testing.assert_close(fused(x, ei, ea), ref(x, ei, ea), **TOL)
            assert len(built) == expected
    finally:
        structure.EdgeStructure.__init__ = original
    n = len(structure.STRUCTURES._entries)
    del ei
    assert len(structure.STRUCTURES._entries) == n - 1  # freed with its tensor
