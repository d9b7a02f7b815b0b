import math

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.datasets import KarateClub
from torch_geometric.utils import coalesce

from graphattn.social import (
    LFR_MAX_NODES,
    SOCIAL_DATASETS,
    degree_corrected_sbm,
    karate_club,
    lfr_benchmark,
    pyg_social,
    split_masks,
    stochastic_block_model,
)


def assert_simple_undirected(data):
    ei = data.edge_index
    assert ei.dtype == torch.long and ei.size(0) == 2
    assert not bool((ei[0] == ei[1]).any()), "self loop"
    assert coalesce(ei, num_nodes=data.num_nodes).size(1) == ei.size(1), "duplicate edge"
    assert data.is_undirected()


def assert_masks(data):
    t, v, s = data.train_mask, data.val_mask, data.test_mask
    assert not bool((t & v).any() or (t & s).any() or (v & s).any())
    assert bool((t | v | s).all())


def same_graph(a, b) -> bool:
    return (torch.equal(a.edge_index, b.edge_index) and torch.equal(a.y, b.y)
            and torch.equal(a.x, b.x) and torch.equal(a.train_mask, b.train_mask))


def intra_fraction(data) -> float:
    ei = data.edge_index
    return float((data.y[ei[0]] == data.y[ei[1]]).double().mean())


# ---------------------------------------------------------------------------- karate

def test_karate_structure_matches_networkx_and_pyg():
    data = karate_club()
    assert data.num_nodes == 34 and data.edge_index.size(1) == 156  # 78 undirected edges
    assert_simple_undirected(data)
    ours = set(map(tuple, data.edge_index.t().tolist()))
    assert ours == set(map(tuple, KarateClub()[0].edge_index.t().tolist()))
    assert torch.equal(data.x, torch.eye(34))


def test_karate_faction_labels():
    data = karate_club("faction")
    assert data.classes == ["Mr. Hi", "Officer"]
    club = nx.get_node_attributes(nx.karate_club_graph(), "club")
    assert [data.classes[c] for c in data.y.tolist()] == [club[v] for v in range(34)]
    assert data.y.bincount().tolist() == [17, 17]
    assert data.y[0] == 0 and data.y[33] == 1  # Mr. Hi and the officer lead their sides
    assert data.train_mask.sum() == 2 and data.y[data.train_mask].sort().values.tolist() == [0, 1]


def test_karate_community_labels_and_pyg_style_split():
    data = karate_club("community")
    assert torch.equal(data.y, KarateClub()[0].y) and data.classes == [0, 1, 2, 3]
    assert data.y[data.train_mask].sort().values.tolist() == [0, 1, 2, 3]  # one per class
    assert_masks(data)
    assert karate_club("community", num_train_per_class=2).train_mask.sum() == 8


def test_karate_split_is_seeded_and_options():
    a, b = karate_club(seed=3), karate_club(seed=3)
    assert torch.equal(a.train_mask, b.train_mask) and torch.equal(a.val_mask, b.val_mask)
    assert any(not torch.equal(a.val_mask, karate_club(seed=s).val_mask) for s in range(4, 8))
    w = karate_club(weighted=True)
    assert w.edge_attr.shape == (156, 1)
    first = (w.edge_index[0] == 0) & (w.edge_index[1] == 1)
    assert w.edge_attr[first].item() == 4.0  # networkx's interaction count
    assert karate_club(features="degree").x.argmax(1)[33] == 17  # the officer has 17 friends
    with pytest.raises(ValueError, match="labels must be"):
        karate_club("club")


# ---------------------------------------------------------------------------- split_masks

@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=5),
       train=st.floats(0, 0.5), val=st.floats(0, 0.5), seed=st.integers(0, 99))
def test_split_masks_are_stratified_and_disjoint(sizes, train, val, seed):
    y = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    y = y[torch.randperm(y.numel(), generator=torch.Generator().manual_seed(seed))]
    tr, va, te = split_masks(y, train, val, seed)
    assert not bool((tr & va).any() or (tr & te).any() or (va & te).any())
    assert bool((tr | va | te).all())
    for c, n in enumerate(sizes):
        n_tr = int(tr[y == c].sum())
        assert n_tr == max(1, round(train * n))
        assert int(va[y == c].sum()) == min(round(val * n), n - n_tr)
    again = split_masks(y, train, val, seed)
    assert all(torch.equal(a, b) for a, b in zip((tr, va, te), again))


def test_split_masks_unlabelled_and_errors():
    y = torch.tensor([0, 0, -1, 1, 1, -1])
    tr, va, te = split_masks(y, 0.5, 0.5)
    assert not bool((tr | va | te)[y < 0].any()) and bool((tr | va | te)[y >= 0].all())
    with pytest.raises(ValueError, match="train \\+ val <= 1"):
        split_masks(y, 0.8, 0.5)
    with pytest.raises(ValueError, match="long tensor"):
        split_masks(y.float())


# ---------------------------------------------------------------------------- SBM

def test_sbm_is_seeded():
    a = stochastic_block_model(300, 3, 0.1, 0.01, seed=1)
    b = stochastic_block_model(300, 3, 0.1, 0.01, seed=1)
    c = stochastic_block_model(300, 3, 0.1, 0.01, seed=2)
    assert same_graph(a, b)
    assert not torch.equal(a.edge_index, c.edge_index) and not torch.equal(a.y, c.y)


def test_sbm_labels_are_the_planted_blocks():
    n, p_in, p_out = 2000, 0.02, 0.002
    data = stochastic_block_model(n, 4, p_in, p_out, seed=0)
    assert_simple_undirected(data)
    assert data.y.bincount().tolist() == [500] * 4 == data.block_sizes
    in_pairs, out_pairs = 4 * 500 * 499 / 2, (n * n - 4 * 500 ** 2) / 2
    e_in, e_out = p_in * in_pairs, p_out * out_pairs
    m = data.edge_index.size(1) / 2
    ei = data.edge_index
    m_in = float((data.y[ei[0]] == data.y[ei[1]]).sum()) / 2
    assert abs(m_in - e_in) < 5 * math.sqrt(e_in)  # binomial counts, 5 sigma
    assert abs(m - m_in - e_out) < 5 * math.sqrt(e_out)
    # within a block every pair is equally likely: degrees inside a block are Binomial
    same = (data.y[ei[0]] == data.y[ei[1]]).double()
    deg_in = torch.zeros(n, dtype=torch.float64).index_add_(0, ei[0], same)
    assert abs(float(deg_in.mean()) - p_in * 499) < 0.5
    assert abs(float(deg_in.var()) - 499 * p_in * (1 - p_in)) < 2.5


def test_sbm_avg_degree_and_mixing():
    data = stochastic_block_model(3000, 5, avg_degree=12, mixing=0.3, seed=4)
    assert abs(data.edge_index.size(1) / 3000 - 12) < 0.4
    assert abs(intra_fraction(data) - 0.7) < 0.02
    assert_masks(data)
    assert data.train_mask.sum() == 300 and data.val_mask.sum() == 300


def test_sbm_dense_extremes_are_exact():
    data = stochastic_block_model(60, 3, 1.0, 0.0, seed=0)  # three disjoint cliques of 20
    assert data.edge_index.size(1) == 3 * 20 * 19 and intra_fraction(data) == 1.0
    assert_simple_undirected(data)
    full = stochastic_block_model(30, 2, 1.0, 1.0, seed=0)
    assert full.edge_index.size(1) == 30 * 29
    empty = stochastic_block_model(30, 2, 0.0, 0.0, seed=0)
    assert empty.edge_index.shape == (2, 0)


def test_sbm_uneven_blocks_and_node_ids_are_shuffled():
    data = stochastic_block_model(100, p_in=0.2, p_out=0.01, block_sizes=[70, 20, 10], seed=0)
    assert data.y.bincount().tolist() == [70, 20, 10]
    assert not torch.equal(data.y, data.y.sort().values)


def test_sbm_features_are_noisy_one_hot_of_the_block():
    clean = stochastic_block_model(200, 4, 0.1, 0.01, feature_noise=0.0, seed=0)
    assert torch.equal(clean.x, torch.eye(4)[clean.y])
    wide = stochastic_block_model(200, 4, 0.1, 0.01, feature_dim=6, feature_noise=0.0, seed=0)
    assert wide.x.shape == (200, 6) and bool((wide.x[:, 4:] == 0).all())
    noisy = stochastic_block_model(4000, 2, 0.01, 0.001, feature_noise=1.0, seed=0)
    acc = float((noisy.x.argmax(1) == noisy.y).double().mean())
    assert abs(acc - 0.76) < 0.03  # Phi(1/sqrt 2): features alone are not enough
    # the graph helps: averaging features over neighbours separates the blocks far better
    ei = noisy.edge_index
    agg = noisy.x.clone().index_add_(0, ei[1], noisy.x[ei[0]])
    assert float((agg.argmax(1) == noisy.y).double().mean()) > acc + 0.1


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 30), min_size=1, max_size=6),
       p_in=st.floats(0, 1), p_out=st.floats(0, 1), seed=st.integers(0, 999))
def test_sbm_any_parameters_give_a_simple_graph_with_the_planted_blocks(sizes, p_in, p_out,
                                                                       seed):
    n = sum(sizes)
    if n < 2:
        return
    data = stochastic_block_model(n, p_in=p_in, p_out=p_out, block_sizes=sizes, seed=seed)
    assert_simple_undirected(data)
    assert_masks(data)
    assert data.y.bincount(minlength=len(sizes)).tolist() == sizes
    if p_in in (0.0, 1.0) and p_out in (0.0, 1.0):  # deterministic graphs come out exactly
        in_pairs = sum(s * (s - 1) // 2 for s in sizes)
        expected = p_in * in_pairs + p_out * (n * (n - 1) // 2 - in_pairs)
        assert data.edge_index.size(1) == 2 * expected
    assert same_graph(data, stochastic_block_model(n, p_in=p_in, p_out=p_out,
                                                   block_sizes=sizes, seed=seed))


def test_sbm_errors():
    with pytest.raises(ValueError, match="p_in must be a probability"):
        stochastic_block_model(100, 2, 1.5, 0.1)
    with pytest.raises(ValueError, match="give both p_in and p_out"):
        stochastic_block_model(100, 2, 0.5)
    with pytest.raises(ValueError, match="p_in must be a probability.*avg_degree"):
        stochastic_block_model(10, 5, avg_degree=50)
    with pytest.raises(ValueError, match="sum to num_nodes=10"):
        stochastic_block_model(10, block_sizes=[5, 4])
    with pytest.raises(ValueError, match="num_blocks"):
        stochastic_block_model(10, 11)
    with pytest.raises(ValueError, match="num_nodes"):
        stochastic_block_model(1)
    with pytest.raises(ValueError, match="feature_noise"):
        stochastic_block_model(10, 2, feature_noise=float("nan"))


# ---------------------------------------------------------------------------- LFR

def test_lfr_is_seeded():
    a = lfr_benchmark(300, seed=5)
    b = lfr_benchmark(300, seed=5)
    c = lfr_benchmark(300, seed=6)
    assert same_graph(a, b)
    assert not torch.equal(a.edge_index, c.edge_index)
    assert_simple_undirected(a)
    assert_masks(a)


def test_lfr_is_networkx_lfr_with_its_communities():
    data = lfr_benchmark(250, mu=0.1, seed=2, feature_noise=0.0)
    G = nx.LFR_benchmark_graph(250, 2.5, 1.5, 0.1, average_degree=10, max_degree=30,
                               min_community=28, max_community=125, seed=2)
    planted = {frozenset(G.nodes[v]["community"]) for v in G}
    ours = {frozenset((data.y == c).nonzero().flatten().tolist())
            for c in range(data.num_communities)}
    assert ours == planted
    edges = {frozenset(e) for e in G.edges if e[0] != e[1]}
    assert {frozenset(e) for e in data.edge_index.t().tolist()} == edges


@pytest.mark.parametrize("seed", [0, 1])
def test_small_lfr_has_the_requested_communities(seed):
    """Communities within [min_community, max_community], every node in exactly one; most
    edges inside them, fewer as mu grows (networkx meets mu only roughly: 0.28 for 0.2
    here, so the mixing is checked by order, not by value)."""
    n = 600
    graphs = [lfr_benchmark(n, mu=mu, average_degree=8, max_degree=20, min_community=40,
                            max_community=120, seed=seed) for mu in (0.1, 0.2, 0.3)]
    for data in graphs:
        sizes = torch.bincount(data.y)
        assert sizes.numel() == data.num_communities and int(sizes.sum()) == n
        assert int(sizes.min()) >= 40 and int(sizes.max()) <= 120
        assert_simple_undirected(data)
    mixing = [1 - intra_fraction(data) for data in graphs]
    assert mixing == sorted(mixing) and mixing[-1] < 0.5


def test_lfr_refuses_what_it_cannot_make():
    """Beyond LFR_MAX_NODES, or when networkx cannot place the communities: a ValueError
    naming the limit / the failure, never another model in its place."""
    with pytest.raises(ValueError, match=f"LFR_MAX_NODES={LFR_MAX_NODES:,}.*"
                                         "degree_corrected_sbm"):
        lfr_benchmark(LFR_MAX_NODES + 1)
    with pytest.raises(ValueError, match="LFR generator failed"):
        # ten communities of 500-2,000 members: networkx cannot sum the sizes to N
        lfr_benchmark(10_000, min_community=500, max_community=2000)


def test_fast_lfr_is_the_degree_corrected_model_with_a_deprecation_warning():
    kw = dict(mu=0.2, min_community=40, max_community=160, seed=3)
    with pytest.warns(DeprecationWarning, match="degree_corrected_sbm"):
        old = lfr_benchmark(800, method="fast", **kw)
    assert same_graph(old, degree_corrected_sbm(800, **kw))


def test_degree_corrected_sbm_is_the_graph_of_the_benchmark_rows():
    """The generator behind the social benchmark's former "LFR" rows (lfr_benchmark(...,
    method="fast") before it had its own name): the same graph for the same arguments (a
    fingerprint taken from the previous code)."""
    data = degree_corrected_sbm(3000, mu=0.2, average_degree=10.0, min_community=150,
                                max_community=600, seed=3)
    ei = data.edge_index
    assert ei.size(1) == 29714 and int((ei[0] * 7 + ei[1]).sum()) == 357219536
    assert torch.bincount(data.y).tolist() == [257, 214, 358, 357, 328, 381, 472, 219, 414]
    assert int(data.train_mask.sum()) == 300


def test_degree_corrected_sbm_is_seeded_and_follows_its_parameters():
    n, mu = 5000, 0.25
    data = degree_corrected_sbm(n, mu=mu, average_degree=12, seed=0)
    assert same_graph(data, degree_corrected_sbm(n, mu=mu, average_degree=12, seed=0))
    assert_simple_undirected(data)
    assert_masks(data)
    assert abs((1 - intra_fraction(data)) - mu) < 0.02
    assert abs(data.edge_index.size(1) / n - 12) < 0.6
    deg = torch.bincount(data.edge_index[0], minlength=n)
    assert int(deg.max()) <= 3 * 12 * 1.6  # a power law cut at max_degree (Poisson spread)
    assert float(deg.double().std()) > math.sqrt(12)  # broader than an SBM's Poisson degrees
    sizes = torch.bincount(data.y)
    min_c = math.ceil(0.75 * 36) + 1
    assert int(sizes.min()) >= min_c and int(sizes[:-1].max()) <= 5 * min_c
    assert sizes.numel() == data.num_communities


def test_degree_corrected_sbm_features_with_more_communities_than_dims():
    data = degree_corrected_sbm(2000, feature_dim=4, feature_noise=0.0, seed=1)
    assert data.num_communities > 4 and data.x.shape == (2000, 4)
    assert torch.allclose(data.x.norm(dim=1), torch.ones(2000))
    for c in range(3):
        rows = data.x[data.y == c]
        assert torch.equal(rows, rows[:1].expand_as(rows))


@pytest.mark.parametrize("make", [lfr_benchmark, degree_corrected_sbm])
def test_lfr_parameter_errors(make):
    with pytest.raises(ValueError, match="tau1 and tau2 must be > 1"):
        make(100, tau1=1.0)
    with pytest.raises(ValueError, match="mu must be in"):
        make(100, mu=1.5)
    with pytest.raises(ValueError, match="max_degree"):
        make(100, average_degree=200)
    with pytest.raises(ValueError, match="num_nodes"):
        make(1)


def test_lfr_method_must_be_networkx():
    with pytest.raises(ValueError, match="method must be 'networkx'"):
        lfr_benchmark(100, method="magic")


# ---------------------------------------------------------------------------- PyG social

def write_raw(path, num_nodes=12, num_classes=3, seed=0):
    """A tiny file in PyG's raw npz format: features, target, edges (one direction + loops)."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    edges = np.array([[i, (i + 1) % num_nodes] for i in range(num_nodes)]
                     + [[0, 0], [3, 3], [5, 4]], dtype=np.int64)
    np.savez(path, features=rng.normal(size=(num_nodes, 5)).astype(np.float32),
             target=np.arange(num_nodes) % num_classes, edges=edges)
    return edges


RAW = {"FacebookPagePage": "raw/facebook.npz", "LastFMAsia": "raw/lastfm_asia.npz",
       "GitHub": "raw/github.npz", "DeezerEurope": "raw/deezer_europe.npz",
       "Twitch-PT": "PT/raw/PT.npz"}


@pytest.mark.parametrize("name", list(RAW))
def test_pyg_social_reads_raw_files_without_download(name, tmp_path, monkeypatch):
    import torch_geometric.datasets as D

    cls = D.Twitch if name.startswith("Twitch") else getattr(D, name)

    def no_download(self):
        raise AssertionError("download attempted")

    monkeypatch.setattr(cls, "download", no_download)
    write_raw(tmp_path / RAW[name])
    data = pyg_social(name.lower(), tmp_path, train=0.25, val=0.25, seed=0)
    assert data.name == name and data.num_nodes == 12 and data.x.shape == (12, 5)
    assert_simple_undirected(data)  # loops dropped, (5, 4) duplicate of (4, 5) merged
    assert data.edge_index.size(1) == 2 * 12
    assert data.y.tolist() == [i % 3 for i in range(12)]
    assert_masks(data)
    assert data.train_mask.sum() == 3  # one of the four nodes of every class
    again = pyg_social(name, tmp_path, train=0.25, val=0.25, seed=0)
    assert torch.equal(again.train_mask, data.train_mask)


def test_pyg_social_names():
    assert "Twitch-EN" in SOCIAL_DATASETS and "FacebookPagePage" in SOCIAL_DATASETS
    with pytest.raises(ValueError, match="unknown social data set 'Cora'"):
        pyg_social("Cora", "/nonexistent")
