"""GraphTransformerLayer: the residual formula, every mode, equivariance, norm without leakage."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphattn.nn import GraphTransformerLayer
from tests.strategies import random_batch

MODES = [("adjacency", None, "softmax"), ("full", None, "softmax"), ("full", None, "linear")] + [
    ("hybrid", local, g) for local in ("attention", "gine", None) for g in ("softmax", "linear")]


def make(mask="hybrid", local="attention", g="softmax", norm="layer", seed=0, **kwargs):
    torch.manual_seed(seed)
    layer = GraphTransformerLayer(8, heads=2, mask=mask, local=local, global_attention=g,
                                  norm=norm, **kwargs).double()
    return layer.eval()


def inputs(sizes=(3, 5, 4), seed=0, edge_dim=None):
    x, edge_index, batch, _ = random_batch(list(sizes), channels=8, seed=seed)
    edge_attr = None if edge_dim is None else torch.randn(edge_index.size(1), edge_dim,
                                                          dtype=torch.float64)
    return x, edge_index, edge_attr, batch


@pytest.mark.parametrize("pre_norm", [True, False])
def test_hybrid_is_x_plus_local_plus_global_then_ffn(pre_norm):
    layer = make(norm="layer", pre_norm=pre_norm)
    x, ei, _, batch = inputs()
    n1, n2 = layer.norm1, layer.norm2
    h = n1(x) if pre_norm else x
    h = x + layer.local_attn(h, ei) + layer.global_attn(h, ei, batch=batch)
    h = h if pre_norm else n1(h)
    expected = h + layer.ffn(n2(h) if pre_norm else h)
    expected = expected if pre_norm else n2(expected)
    torch.testing.assert_close(layer(x, ei, batch=batch), expected)


@pytest.mark.parametrize("pre_norm", [True, False])
def test_gru_residual_is_attentive_fp_update_then_ffn(pre_norm):
    layer = make("adjacency", norm="layer", pre_norm=pre_norm, residual="gru")
    x, ei, _, _ = inputs()
    n1, n2 = layer.norm1, layer.norm2
    h = layer.gru(layer.local_attn(n1(x) if pre_norm else x, ei), x)
    h = h if pre_norm else n1(h)
    expected = h + layer.ffn(n2(h) if pre_norm else h)
    expected = expected if pre_norm else n2(expected)
    torch.testing.assert_close(layer(x, ei), expected)
    assert "residual='gru'" in repr(layer)


def test_adjacency_mode_has_no_global_branch_and_full_mode_no_local():
    assert make("adjacency").global_attn is None
    full = make("full")
    assert full.local_attn is None
    x, _, _, batch = inputs()
    # full mode needs no edges at all
    assert full(x, batch=batch).shape == x.shape


@pytest.mark.parametrize("mask,local,g", MODES)
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_node_outputs_are_permutation_equivariant(mask, local, g, seed):
    layer = make(mask, local, g, edge_dim=3)
    x, ei, ea, _ = inputs((6,), seed=seed, edge_dim=3)
    perm = torch.randperm(6, generator=torch.Generator().manual_seed(seed))
    inv = torch.argsort(perm)  # new index of old node
    out = layer(x, ei, ea)
    out_p = layer(x[perm], inv[ei], ea)
    torch.testing.assert_close(out_p, out[perm])


@pytest.mark.parametrize("norm", ["layer", "batch", None])
@pytest.mark.parametrize("mask,local,g", MODES)
def test_eval_output_of_a_batch_equals_each_graph_alone(mask, local, g, norm):
    layer = make(mask, local, g, norm=norm, edge_dim=3)
    if norm == "batch":  # non-trivial running statistics
        layer.train()
        for s in range(3):
            layer(*inputs(seed=s, edge_dim=3))
        layer.eval()
    x, ei, ea, batch = inputs(edge_dim=3)
    out = layer(x, ei, ea, batch)
    for b in range(3):
        nodes = (batch == b).nonzero().flatten()
        keep = batch[ei[0]] == b
        alone = layer(x[nodes], ei[:, keep] - nodes[0], ea[keep])
        torch.testing.assert_close(out[nodes], alone)


def test_batch_norm_uses_batch_statistics_only_in_training():
    layer = make("adjacency", norm="batch")
    x, ei, _, batch = inputs()
    nodes = batch == 0
    layer.train()
    leaks = layer(x, ei, batch=batch)[nodes]
    alone = layer(x[nodes], ei[:, nodes[ei[0]]], batch=batch[nodes])
    assert not torch.allclose(leaks, alone)  # training: statistics of the whole batch


def test_attn_bias_reaches_the_softmax_global_attention():
    layer = make("full")
    x, _, _, batch = inputs()
    bias = torch.zeros(3, 2, 5, 5, dtype=torch.float64)
    bias[0, :, 0, 1] = 50.0  # node 0 of graph 0 attends only to node 1
    assert not torch.allclose(layer(x, batch=batch), layer(x, batch=batch, attn_bias=bias))


def test_edge_features_reach_every_branch():
    x, ei, ea, batch = inputs(edge_dim=3)
    for local in ("attention", "gine"):
        layer = make("hybrid", local, edge_dim=3)
        a, b = layer(x, ei, ea, batch), layer(x, ei, ea + 1.0, batch)
        assert not torch.allclose(a, b)


@pytest.mark.parametrize("residual", ["add", "gru"])
def test_gradients_reach_every_parameter(residual):
    for mask, local, g in MODES:
        layer = make(mask, local, g, edge_dim=3, residual=residual).train()
        x, ei, ea, batch = inputs(edge_dim=3)
        layer(x, ei, ea, batch).pow(2).sum().backward()
        for name, p in layer.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, (mask, local, g, name)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="mask"):
        GraphTransformerLayer(8, mask="sparse")
    with pytest.raises(ValueError, match="multiple of heads"):
        GraphTransformerLayer(10, heads=4)
    with pytest.raises(ValueError, match="norm"):
        GraphTransformerLayer(8, norm="group")
    with pytest.raises(ValueError, match="residual"):
        GraphTransformerLayer(8, residual="highway")
    with pytest.raises(ValueError, match="global_attention"):
        GraphTransformerLayer(8, mask="full", global_attention="performer")
    layer = make("hybrid", "gine", edge_dim=3)
    x, ei, _, batch = inputs()
    with pytest.raises(ValueError, match="edge_attr"):
        layer(x, ei, batch=batch)
    with pytest.raises(ValueError, match="edge_index"):
        make("adjacency")(x)
    with pytest.raises(ValueError, match=r"\[num_nodes, 8\]"):
        make()(x[:, :4], ei)


def test_in_place_sums_leave_training_gradients_unchanged():
    """The layer adds its branches, dropout and residuals in place where nothing saved the
    tensor: gradients equal the out-of-place formula of the first test."""
    layer = make(g="linear").train()
    x, ei, _, batch = inputs()
    x.requires_grad_(True)
    n1, n2 = layer.norm1, layer.norm2
    h = x + layer.local_attn(n1(x), ei) + layer.global_attn(n1(x), ei, batch=batch)
    expected = h + layer.ffn(n2(h))
    g_expected = torch.autograd.grad(expected.pow(2).sum(), [x, *layer.parameters()])
    out = layer(x, ei, batch=batch)
    torch.testing.assert_close(out, expected)
    for a, b in zip(torch.autograd.grad(out.pow(2).sum(), [x, *layer.parameters()]),
                    g_expected):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("mask", ["adjacency", "hybrid"])
def test_large_inputs_take_the_fused_ffn_with_the_same_numbers_and_gradients(mask):
    """Above FAST_DROPOUT_NUMEL the FFN runs as one autograd Function (dropout and GELU
    gradients in place): outputs and gradients equal the Sequential's, dropout included."""
    from graphattn.nn.layer import FAST_DROPOUT_NUMEL

    torch.manual_seed(0)
    layer = GraphTransformerLayer(16, heads=2, mask=mask, global_attention="linear",
                                  dropout=0.3, ffn_ratio=4).train()
    n = FAST_DROPOUT_NUMEL // 64 + 1  # the FFN's [n, 64] hidden activation is large
    x = torch.randn(n, 16, requires_grad=True)
    ei = torch.randint(0, n, (2, 3 * n))
    params = [x, *layer.parameters()]
    torch.manual_seed(1)
    out = layer(x, ei)
    grads = torch.autograd.grad(out.pow(2).sum(), params)
    layer._feed_forward = layer.ffn  # the Sequential path, same random bits
    torch.manual_seed(1)
    ref = layer(x, ei)
    torch.testing.assert_close(out, ref)
    for a, b in zip(grads, torch.autograd.grad(ref.pow(2).sum(), params)):
        torch.testing.assert_close(a, b)


def test_large_inputs_under_autocast_train_through_the_sequential_ffn(monkeypatch):
    """Under CPU autocast the FFN of a large input is the Sequential (bfloat16 products, cast
    by torch), not the fused float32 Function; a backward outside autocast (the usual loop)
    gives float32 gradients close to the float32 layer's."""
    from graphattn.nn.layer import FAST_DROPOUT_NUMEL

    torch.manual_seed(0)
    layer = GraphTransformerLayer(16, heads=2, mask="hybrid", global_attention="linear",
                                  ffn_ratio=4).train()
    n = FAST_DROPOUT_NUMEL // 64 + 1
    x = torch.randn(n, 16)
    ei = torch.randint(0, n, (2, 3 * n))
    out32 = layer(x, ei)
    g32 = torch.autograd.grad(out32.pow(2).mean(), list(layer.parameters()))
    from graphattn.nn import layer as layer_module

    def not_fused(*args):
        raise AssertionError("the fused float32 FFN ran under autocast")

    monkeypatch.setattr(layer_module._FeedForward, "apply", not_fused)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out16 = layer(x, ei)
    torch.testing.assert_close(out16.float(), out32, rtol=0.05, atol=0.05)
    g16 = torch.autograd.grad(out16.float().pow(2).mean(), list(layer.parameters()))
    scale = max(b.abs().max().item() for b in g32)  # some are ~0 exactly
    for a, b in zip(g16, g32):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=0.1, atol=0.02 * scale)
