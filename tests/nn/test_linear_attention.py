"""LinearGlobalAttention: equals its explicit O(N^2) formula, equivariant, no leakage."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphattn.nn.linear_attention import LinearGlobalAttention, feature_map
from tests.strategies import batches, graphs, random_batch


def layer(heads=2, concat=True, seed=0, **kwargs):
    torch.manual_seed(seed)
    return LinearGlobalAttention(4, 3, heads=heads, concat=concat, **kwargs).double().eval()


def explicit(m, x, batch):
    """alpha_ij = phi(q_i).phi(k_j) / sum_l phi(q_i).phi(k_l), built pair by pair per graph."""
    H, C = m.heads, m.out_channels
    q, k, v = m.lin_qkv(x).view(-1, 3, H, C).unbind(1)
    q, k = feature_map(q), feature_map(k)
    out = torch.zeros_like(v)
    for b in batch.unique():
        idx = (batch == b).nonzero().flatten()
        s = torch.einsum("ihc,jhc->hij", q[idx], k[idx])  # (H, n, n)
        a = s / s.sum(-1, keepdim=True)
        out[idx] = torch.einsum("hij,jhc->ihc", a, v[idx])
    out = out.reshape(x.size(0), -1) if m.concat else out.mean(1)
    return out + m.lin_skip(x)


@pytest.mark.parametrize("concat", [True, False])
@pytest.mark.parametrize("sizes", [[5, 1, 8, 3], [9]])  # padded path; one-graph path
def test_equals_explicit_quadratic_formula(concat, sizes):
    x, _, batch, _ = random_batch(sizes, seed=1)
    m = layer(concat=concat)
    torch.testing.assert_close(m(x, batch=batch), explicit(m, x, batch))
    if len(sizes) == 1:
        torch.testing.assert_close(m(x), explicit(m, x, batch))


def test_attention_weights_match_formula_and_sum_to_one():
    x, _, batch, sizes = random_batch([4, 3], seed=2)
    m = layer()
    out, (index, alpha) = m(x, batch=batch, return_attention_weights=True)
    assert index.size(1) == sum(n * n for n in sizes)
    assert (batch[index[0]] == batch[index[1]]).all()
    sums = torch.zeros(7, 2, dtype=alpha.dtype).index_add_(0, index[1], alpha)
    torch.testing.assert_close(sums, torch.ones_like(sums))
    H, C = 2, 3
    v = m.lin_qkv(x).view(-1, 3, H, C)[:, 2]
    msg = alpha[..., None] * v[index[0]]
    agg = torch.zeros(7, H, C, dtype=x.dtype).index_add_(0, index[1], msg)
    torch.testing.assert_close(out, agg.reshape(7, -1) + m.lin_skip(x))


@settings(max_examples=25, deadline=None)
@given(graph=graphs(), perm_seed=st.integers(0, 1000))
def test_permutation_equivariance(graph, perm_seed):
    x, ei = graph
    m = layer()
    perm = torch.randperm(x.size(0), generator=torch.Generator().manual_seed(perm_seed))
    out = m(x, ei)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(m(x[perm]), out[perm])


@settings(max_examples=20, deadline=None)
@given(data=batches())
def test_no_leakage_across_graphs(data):
    x, ei, batch, sizes = data
    m = layer()
    out = m(x, ei, batch=batch)
    victim = int(torch.tensor(sizes).argmax())
    x2 = x.clone()
    x2[batch == victim] *= -3.0
    others = batch != victim
    torch.testing.assert_close(m(x2, batch=batch)[others], out[others])


@pytest.mark.parametrize("sizes", [[3, 2], [5]])
def test_gradcheck_float64(sizes):
    x, _, batch, _ = random_batch(sizes, channels=4, seed=3)
    m = layer()
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: m(x, batch=batch), (x,))


def test_empty_graph_single_node_and_errors():
    m = layer()
    assert m(torch.zeros(0, 4, dtype=torch.float64)).shape == (0, 6)
    one = m(torch.randn(1, 4, dtype=torch.float64))
    assert torch.isfinite(one).all()
    with pytest.raises(ValueError, match="sorted"):
        m(torch.randn(4, 4, dtype=torch.float64), batch=torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match="in_channels=4"):
        m(torch.randn(4, 5, dtype=torch.float64))
    small = LinearGlobalAttention(4, 3, max_weight_pairs=10)
    with pytest.raises(ValueError, match="max_weight_pairs"):
        small(torch.randn(5, 4), return_attention_weights=True)


def test_large_graph_memory_stays_linear():
    """100k nodes in one graph: no N x N and no N x C x C tensor (would be 1.6 GB)."""
    torch.manual_seed(0)
    m = LinearGlobalAttention(16, 8, heads=4)
    x = torch.randn(100_000, 16)
    out = m(x)
    assert out.shape == (100_000, 32) and torch.isfinite(out).all()


def test_autocast_bfloat16_sums_one_graph_in_float32():
    """Under CPU autocast the projection runs in bfloat16 and the N-long sums of the
    one-graph path in float32: output and gradients within bfloat16's rounding of float32."""
    torch.manual_seed(0)
    m = LinearGlobalAttention(4, 3, heads=2).train()
    x = torch.randn(5000, 4)
    x32, x16 = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    out32 = m(x32)
    g32 = torch.autograd.grad(out32.pow(2).sum(), [x32, *m.parameters()])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16 = m(x16)
    assert out16.dtype == torch.float32
    torch.testing.assert_close(out16, out32, rtol=0.05, atol=0.05)
    scale = max(b.abs().max().item() for b in g32)
    for a, b in zip(torch.autograd.grad(out16.pow(2).sum(), [x16, *m.parameters()]), g32):
        torch.testing.assert_close(a, b, rtol=0.1, atol=0.02 * scale)
