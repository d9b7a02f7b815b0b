"""The fused full-attention path (size buckets) equals the reference, float32."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings

from graphattn.nn import GraphSelfAttention
from graphattn.nn.kernels.dense_torch import Buckets
from tests.nn.kernels.test_csr_torch import close
from tests.strategies import batches, random_batch

SIZES = [5, 0, 1, 13, 3, 12, 7, 40, 2, 1]  # empty and single-node graphs, mixed sizes


def pair(score="dot", seed=0, **kwargs):
    torch.manual_seed(seed)
    ref = GraphSelfAttention(4, 3, heads=2, mask="full", score=score, impl="reference",
                             **kwargs)
    torch.nn.init.normal_(ref.edge_bias)  # make the "is an edge" bias matter
    fused = copy.deepcopy(ref)
    fused.impl = "fused"
    return ref, fused


def run(m, x, ei, batch, edge_attr=None, attn_bias=None, weights=True):
    leaves = [t.detach().requires_grad_(True) if t is not None else None
              for t in (x, edge_attr, attn_bias)]
    x, edge_attr, attn_bias = leaves
    torch.manual_seed(3)  # same dropout draws
    res = m(x, ei, edge_attr, batch=batch, attn_bias=attn_bias,
            return_attention_weights=weights)
    out, (index, alpha) = res if weights else (res, (None, None))
    w = torch.randn(out.shape, generator=torch.Generator().manual_seed(4))
    inputs = [t for t in leaves if t is not None] + list(m.parameters())
    grads = torch.autograd.grad((out * w).sum(), inputs, allow_unused=True)
    return out, index, alpha, grads


def assert_same(ref, fused, *args, weights=True, **kwargs):
    out_r, index_r, alpha_r, grads_r = run(ref, *args, weights=weights, **kwargs)
    out_f, index_f, alpha_f, grads_f = run(fused, *args, weights=weights, **kwargs)
    close(out_f, out_r)
    if weights:
        assert torch.equal(index_f, index_r)
        close(alpha_f, alpha_r)
    for g_r, g_f in zip(grads_r, grads_f):
        if g_r is None:
            assert g_f is None or not g_f.any()
        else:
            close(g_f, g_r)


@pytest.mark.parametrize("score", ["dot", "additive"])
@pytest.mark.parametrize("edge_dim", [None, 3])
@pytest.mark.parametrize("bias_heads", [None, 1, 2])
@pytest.mark.parametrize("weights", [True, False])
def test_full_fused_equals_reference(score, edge_dim, bias_heads, weights):
    x, ei, batch, sizes = random_batch(SIZES, seed=1, dtype=torch.float32)
    ref, fused = pair(score, edge_dim=edge_dim)
    ea = torch.randn(ei.size(1), 3) if edge_dim else None
    B, n = len(sizes), max(sizes)
    ab = None
    if bias_heads:
        ab = torch.randn(B, 2, n, n) if bias_heads == 2 else torch.randn(B, n, n)
    assert_same(ref, fused, x, ei, batch, ea, ab, weights=weights)


@pytest.mark.parametrize("score", ["dot", "additive"])
def test_full_fused_dropout_equals_reference(score):
    x, ei, batch, _ = random_batch(SIZES, seed=2, dtype=torch.float32)
    ref, fused = pair(score, edge_dim=3, dropout=0.3)
    ref.train(), fused.train()
    assert_same(ref, fused, x, ei, batch, torch.randn(ei.size(1), 3))


@pytest.mark.parametrize("score", ["dot", "additive"])
def test_full_fused_without_edges_batch_or_nodes(score):
    ref, fused = pair(score)
    x = torch.randn(9, 4)
    assert_same(ref, fused, x, None, None)  # one graph, no edges
    empty = torch.zeros(2, 0, dtype=torch.long)
    assert_same(ref, fused, x[:1], empty, None)  # one node
    out = fused(x[:0], empty)
    assert out.shape == (0, 6)


@pytest.mark.parametrize("score", ["dot", "additive"])
@settings(max_examples=20, deadline=None)
@given(data=batches())
def test_full_fused_equals_reference_property(score, data):
    x, ei, batch, _ = data
    ref, fused = pair(score)
    assert_same(ref, fused, x.float(), ei, batch)


def test_buckets_pad_little_and_split_large_buckets():
    sizes = torch.tensor([10, 40, 12, 0, 39, 11, 1])
    batch = torch.repeat_interleave(torch.arange(7), sizes)
    b = Buckets.build(sizes, batch, heads=2)
    assert b.n == [1, 12, 40]  # 10, 11, 12 share a bucket; 39, 40 another
    assert [g.tolist() for g in b.graphs] == [[6], [0, 2, 5], [1, 4]]
    assert b.slot.unique().numel() == int(sizes.sum())  # one slot per node
    split = Buckets.build(sizes, batch, heads=2, max_scores=2 * 2 * 40 * 40 - 1)
    assert split.n == [1, 12, 40, 40]  # the 40-bucket is split to respect the budget
