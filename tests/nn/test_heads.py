"""NodeHead, GraphHead (every pooling) and masked_loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from graphattn.nn import GraphHead, NodeHead, masked_loss
from graphattn.nn.heads import POOLS


def head(pool, seed=0, **kwargs):
    torch.manual_seed(seed)
    return GraphHead(6, 3, pool=pool, heads=2, **kwargs).double().eval()


def batch_of(sizes, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(sum(sizes), 6, generator=g, dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return x, batch


@pytest.mark.parametrize("pool", POOLS)
def test_each_graph_pooled_alone_equals_its_row_in_the_batch(pool):
    m = head(pool)
    x, batch = batch_of([3, 1, 5])
    out = m(x, batch)
    assert out.shape == (3, 3)
    for b in range(3):
        torch.testing.assert_close(out[b:b + 1], m(x[batch == b]))


@pytest.mark.parametrize("pool", POOLS)
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_pooling_is_permutation_invariant(pool, seed):
    m = head(pool)
    x, _ = batch_of([7], seed)
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(m(x[perm]), m(x))


def test_poolings_compute_what_they_say():
    x, batch = batch_of([2, 3])
    for pool, ref in (("mean", x[:2].mean(0)), ("sum", x[:2].sum(0)),
                      ("max", x[:2].max(0).values)):
        m = head(pool, num_layers=1)
        torch.testing.assert_close(m(x, batch)[0], m.mlp(ref[None])[0])
    m = head("atomwise")  # the MLP on every node, then the sum
    torch.testing.assert_close(m(x, batch)[1], m.mlp(x[2:]).sum(0))
    m = head("cls", num_layers=1)
    pool = m.pooling
    q = pool.lin_query(pool.cls).view(2, 3)
    k, v = pool.lin_kv(x[:2]).view(2, 2, 2, 3).unbind(1)
    a = torch.softmax((k * q).sum(-1) / 3**0.5, 0)  # (2 nodes, 2 heads)
    ref = pool.cls + (a.unsqueeze(-1) * v).sum(0).reshape(6)
    torch.testing.assert_close(m(x, batch)[0], m.mlp(ref[None])[0])


@pytest.mark.parametrize("relu", [True, False])
def test_gru_readout_is_attentive_fps_molecule_readout(relu):
    # relu=True is PyG's AttentiveFP readout: sum -> ReLU, then per step GATConv((x, g))
    # over the node -> graph edges, ELU, GRUCell, ReLU; same weights, same numbers.
    # relu=False (the default, for signed layer-normed node features) drops the ReLUs.
    from torch_geometric.nn import GATConv, global_add_pool

    from graphattn.nn.heads import GRUReadout

    x, batch = batch_of([2, 3, 1])
    torch.manual_seed(0)
    r = GRUReadout(6, relu=relu).double()
    conv = GATConv(6, 6, add_self_loops=False, negative_slope=0.01).double()
    with torch.no_grad():
        conv.lin.weight.copy_(r.lin.weight)
        conv.att_src.copy_(r.att_node.view(1, 1, 6))
        conv.att_dst.copy_(r.att_graph.view(1, 1, 6))
        conv.bias.copy_(torch.randn(6))
        r.bias.copy_(conv.bias)
    act = torch.relu if relu else (lambda t: t)
    edge_index = torch.stack([torch.arange(6), batch])
    g = act(global_add_pool(x, batch))
    for _ in range(r.steps):
        g = act(r.gru(F.elu(conv((x, g), edge_index)), g))
    torch.testing.assert_close(r(x, batch, 3), g)
    assert r.steps == 2 and "steps=2" in repr(r)
    assert not head("gru").pooling.relu  # GraphHead's default


def test_gru_readout_keeps_the_sign_of_summed_features():
    # without the ReLU a graph whose summed features are all negative still has a state
    from graphattn.nn.heads import GRUReadout

    torch.manual_seed(0)
    x = -torch.rand(4, 6, dtype=torch.float64) - 1.0
    batch = torch.zeros(4, dtype=torch.long)
    with torch.no_grad():
        for relu in (True, False):
            r = GRUReadout(6, relu=relu).double()
            r.gru.weight_hh.zero_()
            r.gru.bias_hh.zero_()
            r.gru.bias_ih.fill_(50.0)  # update gate z = 1: the state passes unchanged
            g = r(x, batch, 1)
            expected = x.sum(0).relu() if relu else x.sum(0)
            torch.testing.assert_close(g[0], expected)


def test_empty_graph_in_a_batch_is_finite():
    x, batch = batch_of([2, 2])
    batch = batch.clone()
    batch[batch == 1] = 2  # graph 1 has no nodes
    for pool in POOLS:
        out = head(pool)(x, batch, num_graphs=3)
        assert out.shape == (3, 3) and torch.isfinite(out).all(), pool


def test_node_head_is_a_per_node_mlp():
    torch.manual_seed(0)
    m = NodeHead(6, 4, hidden_channels=5, num_layers=3).double()
    x, _ = batch_of([4])
    out = m(x)
    assert out.shape == (4, 4)
    torch.testing.assert_close(out[1:2], m(x[1:2]))


def test_bad_pool_is_refused():
    with pytest.raises(ValueError, match="pool"):
        GraphHead(4, 1, pool="median")


@pytest.mark.parametrize("kind", ["mse", "bce"])
def test_nan_targets_contribute_nothing_to_loss_or_gradient(kind):
    torch.manual_seed(0)
    pred = torch.randn(5, 3, requires_grad=True)
    target = torch.rand(5, 3).round() if kind == "bce" else torch.randn(5, 3)
    missing = torch.rand(5, 3) < 0.4
    target[missing] = float("nan")
    loss = masked_loss(pred, target, kind)
    loss.backward()
    assert torch.isfinite(loss)
    assert (pred.grad[missing] == 0).all() and (pred.grad[~missing] != 0).all()
    fn = F.mse_loss if kind == "mse" else F.binary_cross_entropy_with_logits
    torch.testing.assert_close(loss, fn(pred[~missing], target[~missing]))
    # changing the prediction at a missing label changes nothing
    pred2 = pred.detach().clone()
    pred2[missing] = 1e3
    torch.testing.assert_close(masked_loss(pred2, target, kind), loss.detach())


def test_cross_entropy_masks_nan_and_negative_labels():
    torch.manual_seed(0)
    pred = torch.randn(6, 4, requires_grad=True)
    target = torch.tensor([0, -1, 3, 2, -1, 1])
    loss = masked_loss(pred, target, "ce")
    loss.backward()
    keep = target >= 0
    torch.testing.assert_close(loss, F.cross_entropy(pred[keep], target[keep]))
    assert (pred.grad[~keep] == 0).all()
    ft = target.float()
    ft[~keep] = float("nan")
    torch.testing.assert_close(masked_loss(pred, ft, "ce"), loss)


def test_all_missing_gives_zero_loss_and_zero_gradient():
    pred = torch.randn(3, 2, requires_grad=True)
    loss = masked_loss(pred, torch.full((3, 2), float("nan")))
    loss.backward()
    assert loss.item() == 0.0 and (pred.grad == 0).all()


def test_masked_loss_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="shape"):
        masked_loss(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="class indices"):
        masked_loss(torch.zeros(3, 2), torch.zeros(3, 2), "ce")
    with pytest.raises(ValueError, match="kind"):
        masked_loss(torch.zeros(3), torch.zeros(3), "l1")


def test_node_head_on_a_large_graph_is_pygs_mlp_with_the_fast_dropout():
    from graphattn.nn import NodeHead
    from graphattn.nn.dropout import FAST_DROPOUT_NUMEL, dropout

    n = FAST_DROPOUT_NUMEL // 8 + 1  # [n, 8] hidden: the fast path
    x = torch.randn(n, 8)
    torch.manual_seed(0)
    head = NodeHead(8, 3, dropout=0.0).train()
    torch.testing.assert_close(head(x), head.mlp(x))  # no dropout: PyG's MLP exactly
    head.mlp.dropout = [0.5, 0.0]
    torch.manual_seed(1)
    out = head(x)
    torch.manual_seed(1)
    lin0, lin1 = head.mlp.lins
    expected = lin1(dropout(F.gelu(lin0(x)), 0.5))
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out, head.mlp.eval()(x))
