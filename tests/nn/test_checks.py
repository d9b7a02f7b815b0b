"""Bad input to the attention layer: a clear error at the boundary, naming the problem."""

from __future__ import annotations

import pytest
import torch

from graphattn.nn import GraphSelfAttention

X = torch.randn(4, 3)
EI = torch.tensor([[0, 1, 2], [1, 2, 3]])


@pytest.mark.parametrize("call, error, words", [
    (lambda m: m(torch.randn(4, 5), EI), ValueError, "5 features per node"),
    (lambda m: m(X, torch.tensor([[0, 1], [1, 9]])), ValueError, "target node 9"),
    (lambda m: m(X, torch.tensor([[0, -1], [1, 2]])), ValueError, "source node -1"),
    (lambda m: m(X, EI.float()), TypeError, "integer dtype"),
    (lambda m: m(X, EI.t().contiguous()), ValueError, "[2, num_edges]"),
    (lambda m: m(X, None), ValueError, "needs edge_index"),
    (lambda m: m(X.long(), EI), TypeError, "floating-point"),
    (lambda m: m(X[0], EI), ValueError, "[num_nodes, num_features]"),
    (lambda m: m(torch.tensor([[0.0, float("nan"), 0]] * 4), EI), ValueError, "NaN or inf"),
    (lambda m: m(X, EI, edge_attr=torch.randn(3, 2)), ValueError, "edge_dim=None"),
    (lambda m: m(X, EI, attn_bias=torch.randn(2)), ValueError, "attn_bias must have shape [3]"),
    (lambda m: m(X, EI, batch=torch.zeros(3, dtype=torch.long)), ValueError, "batch must be"),
    (lambda m: m("x", EI), TypeError, "must be a torch.Tensor"),
])
def test_adjacency_errors(call, error, words):
    m = GraphSelfAttention(3, 2)
    with pytest.raises(error) as info:
        call(m)
    assert words in str(info.value)


def test_full_mode_errors():
    m = GraphSelfAttention(3, 2, heads=2, mask="full", edge_dim=2)
    with pytest.raises(ValueError, match="different graphs"):
        m(X, EI, batch=torch.tensor([0, 0, 1, 1]))
    with pytest.raises(ValueError, match="sorted"):
        m(X, batch=torch.tensor([0, 1, 0, 1]))
    with pytest.raises(ValueError, match=r"edge_dim\] = \[3, 2\], got \[3, 5\]"):
        m(X, EI, edge_attr=torch.randn(3, 5))
    with pytest.raises(ValueError, match=r"\[2, 2, 2\] or \[2, 2, 2, 2\]"):
        m(X, batch=torch.tensor([0, 0, 1, 1]), attn_bias=torch.randn(2, 3, 3))
    with pytest.raises(ValueError, match="not a \\(source, target\\) pair"):
        m((X, X), EI)


def test_full_attention_memory_guard_names_the_graph_size():
    m = GraphSelfAttention(3, 2, heads=4, mask="full", max_full_pairs=1000)
    with pytest.raises(ValueError, match=r"largest graph: 20 nodes.*mask='adjacency'"):
        m(torch.randn(20, 3))
    assert m(torch.randn(15, 3)).shape == (15, 8)


@pytest.mark.parametrize("kwargs, words", [
    (dict(mask="dense"), "mask must be one of"),
    (dict(score="cosine"), "score must be one of"),
    (dict(dropout=1.5), "dropout"),
    (dict(heads=0), "heads and out_channels"),
    (dict(impl="fast"), "impl must be one of"),
])
def test_constructor_errors(kwargs, words):
    with pytest.raises(ValueError, match=words):
        GraphSelfAttention(3, 2, **kwargs)


def test_bipartite_full_is_refused():
    with pytest.raises(ValueError, match="bipartite"):
        GraphSelfAttention((3, 4), 2, mask="full")


def test_all_finite_is_exact_even_when_the_sum_overflows():
    from graphattn.nn._checks import all_finite

    assert all_finite(torch.full((4, 3), 3e38))  # the sum overflows to inf; entries are finite
    assert all_finite(torch.zeros(0, 3))
    for bad in (float("nan"), float("inf"), -float("inf")):
        x = torch.randn(5, 3)
        x[3, 1] = bad
        assert not all_finite(x)
    x = torch.randn(5, 3)
    x[0, 0], x[1, 0] = float("inf"), -float("inf")  # sum is NaN, not inf
    assert not all_finite(x)
    with pytest.raises(ValueError, match="first at node 2"):
        GraphSelfAttention(3, 2)(torch.tensor([[0.0] * 3, [1e38] * 3, [float("inf")] * 3]), EI)
