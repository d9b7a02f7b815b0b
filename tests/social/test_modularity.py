import networkx as nx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.utils import from_networkx

from graphattn.social import soft_modularity


def one_hot(labels: list[int], k: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(labels), k).double()


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 14), p=st.floats(0.1, 0.9), k=st.integers(1, 4),
       directed=st.booleans(), seed=st.integers(0, 10**6))
def test_one_hot_rows_give_networkx_modularity(n, p, k, directed, seed):
    G = nx.gnp_random_graph(n, p, seed=seed, directed=directed)
    if G.number_of_edges() == 0:
        return
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, k, (n,), generator=g).tolist()
    parts = [{i for i in range(n) if labels[i] == c} for c in range(k)]
    parts = [c for c in parts if c]
    q = soft_modularity(one_hot(labels, k), from_networkx(G).edge_index)
    assert q.item() == pytest.approx(nx.community.modularity(G, parts, weight=None), abs=1e-9)
    assert -0.5 - 1e-9 <= q.item() <= 1.0


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 12), e=st.integers(0, 40), k=st.integers(1, 4),
       seed=st.integers(0, 10**6))
def test_invariant_to_node_and_community_order(n, e, k, seed):
    g = torch.Generator().manual_seed(seed)
    prob = torch.rand(n, k, generator=g, dtype=torch.float64).softmax(-1)
    edge_index = torch.randint(0, n, (2, e), generator=g)
    weight = torch.rand(e, generator=g, dtype=torch.float64)
    q = soft_modularity(prob, edge_index, weight)
    nodes, comms = torch.randperm(n, generator=g), torch.randperm(k, generator=g)
    inverse = torch.empty_like(nodes)
    inverse[nodes] = torch.arange(n)
    moved = soft_modularity(prob[nodes][:, comms], inverse[edge_index], weight)
    assert torch.allclose(q, moved) and bool(torch.isfinite(q))
    # one community for everyone: nothing beyond chance
    assert abs(soft_modularity(torch.ones(n, 1, dtype=torch.float64), edge_index,
                               weight).item()) < 1e-12


def test_weights_count_like_networkx():
    G = nx.Graph([(0, 1, {"w": 3.0}), (1, 2, {"w": 1.0}), (2, 3, {"w": 3.0}),
                  (3, 0, {"w": 0.5})])
    data = from_networkx(G, group_edge_attrs=["w"])
    q = soft_modularity(one_hot([0, 0, 1, 1], 2), data.edge_index, data.edge_attr.view(-1))
    assert q.item() == pytest.approx(nx.community.modularity(G, [{0, 1}, {2, 3}], weight="w"))


def test_is_smooth_and_rewards_the_planted_split():
    # two triangles joined by one edge: the planted split beats a uniform assignment,
    # and the gradient of a soft assignment points towards it
    G = nx.Graph([(0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3), (2, 3)])
    ei = from_networkx(G).edge_index
    planted = one_hot([0, 0, 0, 1, 1, 1], 2)
    uniform = torch.full((6, 2), 0.5, dtype=torch.float64)
    assert soft_modularity(planted, ei) > 0.3 > soft_modularity(uniform, ei).abs()
    prob = (0.6 * planted + 0.4 * (1 - planted)).requires_grad_()
    torch.autograd.gradcheck(lambda s: soft_modularity(s, ei), (prob,))
    soft_modularity(prob, ei).backward()
    assert bool((prob.grad[planted.bool()] > prob.grad[~planted.bool()]).all())


def test_no_edges_is_zero_and_keeps_the_graph():
    prob = torch.rand(3, 2, requires_grad=True)
    q = soft_modularity(prob, torch.empty(2, 0, dtype=torch.long))
    assert q.item() == 0.0
    q.backward()
    assert torch.equal(prob.grad, torch.zeros(3, 2))


@pytest.mark.parametrize("prob, edge_index, weight, match", [
    (torch.rand(4), torch.tensor([[0], [1]]), None, "prob must be a float tensor"),
    (torch.rand(3, 2), torch.tensor([[0], [3]]), None, "target node 3 .* out of range"),
    (torch.rand(3, 2), torch.tensor([[0, 1], [1, 2]]), torch.ones(3), "edge_weight must have"),
    (torch.rand(3, 2), torch.tensor([[0, 1], [1, 2]]), -torch.ones(2), "non-negative"),
])
def test_bad_input_names_the_problem(prob, edge_index, weight, match):
    with pytest.raises(ValueError, match=match):
        soft_modularity(prob, edge_index, weight)
