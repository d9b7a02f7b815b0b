"""Encodings: SPD against networkx, RWSE/LapPE against PyG, batching, large-graph guards."""

from __future__ import annotations

import os

import networkx as nx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.data import Batch, Data
from torch_geometric.transforms import AddRandomWalkPE
from torch_geometric.utils import (
    coalesce,
    erdos_renyi_graph,
    to_undirected,
)

from graphattn.nn.encodings import (
    AdjacencyBias,
    DegreeEncoder,
    LaplacianPE,
    LapPEEncoder,
    RWSEEncoder,
    SparseRandomWalkPE,
    SPDBias,
    shortest_path_distance,
)
from tests.strategies import graphs


def nx_distance(edge_index, n, max_distance):
    G = nx.DiGraph()
    G.add_nodes_from(range(n))
    G.add_edges_from(edge_index.t().tolist())
    lengths = dict(nx.all_pairs_shortest_path_length(G))
    ref = torch.full((n, n), max_distance + 1, dtype=torch.long)
    for j, row in lengths.items():  # path j -> i is entry [i, j]
        for i, d in row.items():
            ref[i, j] = min(d, max_distance)
    return ref


@settings(max_examples=30, deadline=None)
@given(graph=graphs(min_nodes=1, max_nodes=12, max_edges=20),
       max_distance=st.integers(1, 6))
def test_shortest_path_distance_matches_networkx(graph, max_distance):
    _, edge_index = graph
    n = graph[0].size(0)
    dist = shortest_path_distance(edge_index, num_nodes=n, max_distance=max_distance)
    assert torch.equal(dist[0], nx_distance(edge_index, n, max_distance))


def test_batched_distances_are_each_graph_alone_padded_with_far():
    graphs_ = [erdos_renyi_graph(n, 0.3, directed=True) for n in (4, 7, 1, 5)]
    batch = Batch.from_data_list([Data(edge_index=e, num_nodes=n)
                                  for e, n in zip(graphs_, (4, 7, 1, 5))])
    dist = shortest_path_distance(batch.edge_index, batch.batch, max_distance=3)
    assert dist.shape == (4, 7, 7)
    for b, (e, n) in enumerate(zip(graphs_, (4, 7, 1, 5))):
        assert torch.equal(dist[b, :n, :n], nx_distance(e, n, 3))
        assert (dist[b, n:] == 4).all() and (dist[b, :, n:] == 4).all()


def test_spd_bias_is_the_embedding_of_the_distance_per_head():
    torch.manual_seed(0)
    bias = SPDBias(heads=3, max_distance=2)
    ei = torch.tensor([[0, 1, 2], [1, 2, 3]])  # a directed path and an isolated node 4
    out = bias(ei, num_nodes=5)
    assert out.shape == (1, 3, 5, 5)
    E = bias.emb.weight  # rows: 0, 1, 2 (clipped), 3 = far
    torch.testing.assert_close(out[0, :, 1, 0], E[1])
    torch.testing.assert_close(out[0, :, 3, 0], E[2])  # distance 3 clipped to 2
    torch.testing.assert_close(out[0, :, 0, 3], E[3])  # 3 -> 0 unreachable: far
    torch.testing.assert_close(out[0, :, 4, 4], E[0])


def test_adjacency_bias_weights_edges_per_head():
    bias = AdjacencyBias(heads=2)
    with torch.no_grad():
        bias.weight.copy_(torch.tensor([2.0, -1.0]))
    ei = torch.tensor([[0, 2], [1, 1]])
    batch = torch.tensor([0, 0, 0, 1])
    out = bias(ei, batch)
    assert out.shape == (2, 2, 3, 3)
    expected = torch.zeros(3, 3)
    expected[1, 0] = expected[1, 2] = 1.0  # target 1 from sources 0 and 2
    torch.testing.assert_close(out[0, 0], 2 * expected)
    torch.testing.assert_close(out[0, 1], -expected)
    assert (out[1] == 0).all()


def test_degree_encoder_clips_and_embeds_in_and_out_degree():
    torch.manual_seed(0)
    enc = DegreeEncoder(4, max_degree=2, directed=True)
    ei = torch.tensor([[0, 0, 0, 1], [1, 2, 3, 2]])  # out-degree of 0 is 3 -> clipped to 2
    out = enc(ei, 4)
    torch.testing.assert_close(out[0], enc.in_emb.weight[0] + enc.out_emb.weight[2])
    torch.testing.assert_close(out[2], enc.in_emb.weight[2] + enc.out_emb.weight[0])
    assert DegreeEncoder(4)(ei, 4).shape == (4, 4)


@settings(max_examples=20, deadline=None)
@given(graph=graphs(min_nodes=1, max_nodes=10, max_edges=25), steps=st.integers(1, 6))
def test_exact_rwse_matches_pyg_transform(graph, steps):
    x, ei = graph
    # without duplicate edges: PyG's dense path writes a duplicate once into A but counts it
    # twice in the degree, we count it twice in both (a multigraph walk)
    data = Data(edge_index=coalesce(ei, num_nodes=x.size(0)), num_nodes=x.size(0))
    ours = SparseRandomWalkPE(steps)(data.clone()).rwse
    pyg = AddRandomWalkPE(steps)(data.clone()).random_walk_pe
    torch.testing.assert_close(ours, pyg)


def test_exact_rwse_matches_pyg_sparse_path_on_a_larger_graph():
    torch.manual_seed(0)
    data = Data(edge_index=erdos_renyi_graph(2500, 3 / 2500), num_nodes=2500)  # PyG: sparse
    ours = SparseRandomWalkPE(5)(data.clone()).rwse
    pyg = AddRandomWalkPE(5)(data.clone()).random_walk_pe
    torch.testing.assert_close(ours, pyg)


def test_weighted_rwse_is_the_weighted_walk_and_sampling_estimates_it():
    torch.manual_seed(0)
    ei = to_undirected(erdos_renyi_graph(12, 0.3))
    w = torch.rand(ei.size(1)) + 0.1
    data = Data(edge_index=ei, edge_weight=w, num_nodes=12)
    W = torch.zeros(12, 12, dtype=torch.float64)
    W[ei[0], ei[1]] = w.double()
    P = W / W.sum(1, keepdim=True).clamp(min=1e-12)
    ref = torch.stack([torch.linalg.matrix_power(P, k).diagonal() for k in range(1, 5)], -1)
    exact = SparseRandomWalkPE(4)(data.clone()).rwse
    torch.testing.assert_close(exact, ref.float(), atol=1e-5, rtol=1e-5)
    sampled = SparseRandomWalkPE(4, method="sampled", num_walks=20_000, seed=1)(data.clone())
    assert (sampled.rwse - ref.float()).abs().max() < 0.03


def test_sampled_rwse_is_unbiased_seeded_and_cheap_on_100k_nodes():
    torch.manual_seed(0)
    data = Data(edge_index=erdos_renyi_graph(40, 0.1), num_nodes=40)
    exact = SparseRandomWalkPE(5)(data.clone()).rwse
    t = SparseRandomWalkPE(5, method="sampled", num_walks=8000, seed=3)
    a, b = t(data.clone()).rwse, t(data.clone()).rwse
    assert torch.equal(a, b)
    assert (a - exact).abs().max() < 0.03
    big = big_graph(degree=6)
    pe = SparseRandomWalkPE(4, method="sampled", num_walks=8)(big).rwse
    assert pe.shape == (100_000, 4) and pe[:, 0].eq(0).all()  # no self loops: no 1-step return
    assert pe[:, 1].mean() > 0  # two steps return along the same edge


def big_graph(degree: int, n: int = 100_000) -> Data:
    ei = torch.randint(0, n, (2, n * degree // 2), generator=torch.Generator().manual_seed(0))
    ei = ei[:, ei[0] != ei[1]]  # no self loops
    return Data(edge_index=torch.cat([ei, ei.flip(0)], 1), num_nodes=n)


def test_large_graph_refusals_name_the_size_and_the_alternative():
    big = big_graph(degree=20)
    with pytest.raises(ValueError, match=r"100,000-node.*method='sampled'"):
        SparseRandomWalkPE(8)(big.clone())
    with pytest.raises(ValueError, match=r"100,000-node.*max_nodes"):
        LaplacianPE(4)(big.clone())
    with pytest.raises(ValueError, match=r"100,000 nodes.*linear"):
        SPDBias(4)(big.edge_index, num_nodes=100_000)
    with pytest.raises(ValueError, match=r"100,000 nodes"):
        AdjacencyBias(4)(big.edge_index, num_nodes=100_000)


def path_graph(n):
    return to_undirected(torch.stack([torch.arange(n - 1), torch.arange(1, n)]))


def normalised_laplacian(edge_index, n):
    A = torch.zeros(n, n, dtype=torch.float64)
    A[edge_index[0], edge_index[1]] = 1.0
    d = A.sum(1).clamp(min=1) ** -0.5
    return torch.eye(n, dtype=torch.float64) - d[:, None] * A * d[None]


def test_laplacian_pe_gives_the_smallest_nontrivial_eigenvectors_up_to_sign():
    ei = path_graph(8)  # distinct eigenvalues: eigenvectors unique up to sign
    pe = LaplacianPE(3)(Data(edge_index=ei, num_nodes=8)).lappe.double()
    vals, vecs = torch.linalg.eigh(normalised_laplacian(ei, 8))
    for c in range(3):
        v = pe[:, c]
        torch.testing.assert_close(v.abs(), vecs[:, c + 1].abs(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(normalised_laplacian(ei, 8) @ v, vals[c + 1] * v,
                                   atol=1e-5, rtol=1e-5)


def test_laplacian_pe_matches_pyg_transform_up_to_sign():
    pytest.importorskip("scipy")  # PyG's transform needs scipy
    from torch_geometric.transforms import AddLaplacianEigenvectorPE

    data = Data(edge_index=path_graph(8), num_nodes=8)
    ours = LaplacianPE(3)(data.clone()).lappe
    pyg = AddLaplacianEigenvectorPE(3, is_undirected=True)(data.clone()).laplacian_eigenvector_pe
    torch.testing.assert_close(ours.abs(), pyg.abs().float(), atol=1e-5, rtol=1e-5)


def test_laplacian_pe_pads_small_graphs_so_they_batch():
    small = LaplacianPE(4)(Data(edge_index=path_graph(3), num_nodes=3)).lappe
    assert small.shape == (3, 4) and (small[:, 2:] == 0).all() and (small[:, :2] != 0).any()
    batch = Batch.from_data_list([LaplacianPE(4)(Data(edge_index=path_graph(6), num_nodes=6)),
                                  LaplacianPE(4)(Data(edge_index=path_graph(3), num_nodes=3))])
    assert batch.lappe.shape == (9, 4)


def test_signnet_lite_encoder_is_invariant_to_every_sign_flip():
    torch.manual_seed(0)
    enc = LapPEEncoder(4, 8).double()
    pe = torch.randn(10, 4, dtype=torch.float64)
    flips = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(enc(pe * flips), enc(pe))
    assert not torch.allclose(enc(pe), enc(pe.roll(1, 1)))  # still depends on the vectors


def test_flip_encoder_flips_per_graph_in_training_only():
    torch.manual_seed(0)
    enc = LapPEEncoder(3, 5, sign="flip")
    pe, batch = torch.randn(6, 3), torch.tensor([0, 0, 0, 1, 1, 1])
    enc.eval()
    torch.testing.assert_close(enc(pe, batch), enc.rho(pe))
    enc.train()
    outs = {tuple(enc(pe, batch)[0].round(decimals=5).tolist()) for _ in range(40)}
    assert len(outs) > 1
    W = enc.rho.weight
    for _ in range(5):  # each graph's eigenvectors flipped together
        z = enc(pe, batch) - enc.rho.bias
        signs = torch.linalg.lstsq(W, z.t()).solution.t() / pe  # recovered +-1 per entry
        assert torch.allclose(signs[:3], signs[:1].expand(3, -1), atol=1e-3)


def test_rwse_encoder_checks_its_input():
    enc = RWSEEncoder(4, 8)
    assert enc(torch.rand(5, 4)).shape == (5, 8)
    with pytest.raises(ValueError, match=r"\[num_nodes, 4\]"):
        enc(torch.rand(5, 3))


def test_duplicate_edges_are_a_multigraph_walk():
    ei = torch.tensor([[0, 0, 0, 1], [0, 0, 1, 0]])  # two loops and an edge at node 0
    pe = SparseRandomWalkPE(1)(Data(edge_index=ei, num_nodes=2)).rwse
    torch.testing.assert_close(pe[:, 0], torch.tensor([2 / 3, 0.0]))


@pytest.mark.parametrize("weighted", [False, True])
def test_dense_and_sparse_exact_rwse_agree(weighted):
    torch.manual_seed(0)
    ei = erdos_renyi_graph(60, 0.08)
    ei = torch.cat([ei, ei[:, :5]], 1)  # a few parallel edges
    data = Data(edge_index=ei, num_nodes=60)
    if weighted:
        data.edge_weight = torch.rand(ei.size(1)) + 0.1
    dense = SparseRandomWalkPE(8)(data.clone()).rwse  # 60 <= dense_max_nodes
    sparse = SparseRandomWalkPE(8, dense_max_nodes=0)(data.clone()).rwse
    assert dense.shape == (60, 8)
    torch.testing.assert_close(dense, sparse)


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads RSS from Linux /proc")
def test_exact_rwse_of_many_small_graphs_holds_no_memory():
    # torch's CSR @ CSR leaks ~40 kB per call: 400 molecules x 15 products grew RSS by ~250 MB
    def rss_mb():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096 / 2**20

    ring = to_undirected(torch.stack([torch.arange(12), (torch.arange(12) + 1) % 12]))
    pe = SparseRandomWalkPE(16)
    pe(Data(edge_index=ring, num_nodes=12))  # warm-up allocations
    before = rss_mb()
    for _ in range(400):
        out = pe(Data(edge_index=ring, num_nodes=12)).rwse
    assert rss_mb() - before < 40
    torch.testing.assert_close(out[:, 1], torch.full((12,), 0.5))  # back along the same edge
