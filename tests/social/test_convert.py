import math

import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphattn.social import from_networkx, node_index, to_networkx


def people() -> nx.Graph:
    G = nx.Graph()
    G.add_node("ann", age=31, city="Oslo", pos=(0.5, 1.0), team="red")
    G.add_node("bob", age=25.5, city="Bergen", pos=(1.5, -1.0), team="blue")
    G.add_node("cy", age=40, city="Oslo", pos=(2.0, 0.0), team="red")
    G.add_edge("ann", "bob", weight=2.0)
    G.add_edge("bob", "cy", weight=0.5)
    return G


def edge_set(data) -> set[tuple[int, int]]:
    return set(map(tuple, data.edge_index.t().tolist()))


def test_attributes_become_columns_with_recorded_vocabulary():
    data = from_networkx(people(), label="team")
    spec = {e["attr"]: e for e in data.feature_spec}
    assert [e["attr"] for e in data.feature_spec] == ["age", "city", "pos"]  # sorted, no label
    assert spec["city"]["kind"] == "categorical" and spec["city"]["vocab"] == ["Bergen", "Oslo"]
    assert data.x.shape == (3, 1 + 2 + 2) and data.x.dtype == torch.float
    assert data.x[:, 0].tolist() == [31.0, 25.5, 40.0]
    assert data.x[:, 1:3].tolist() == [[0, 1], [1, 0], [0, 1]]
    assert data.x[:, 3:].tolist() == [[0.5, 1.0], [1.5, -1.0], [2.0, 0.0]]
    assert data.classes == ["blue", "red"] and data.y.tolist() == [1, 0, 1]


def test_features_select_and_order_columns():
    data = from_networkx(people(), features=["city", "age"])
    assert [e["attr"] for e in data.feature_spec] == ["city", "age"]
    assert data.x.shape == (3, 3) and data.x[:, 2].tolist() == [31.0, 25.5, 40.0]


def test_categorical_ints_and_fixed_vocab():
    data = from_networkx(people(), features=["city", "age"], categorical=["age"],
                         vocab={"city": ["Oslo", "Bergen", "Tromsø"]})
    assert data.feature_spec[0]["vocab"] == ["Oslo", "Bergen", "Tromsø"]
    assert data.x[:, :3].tolist() == [[1, 0, 0], [0, 1, 0], [1, 0, 0]]
    assert data.feature_spec[1]["vocab"] == [25.5, 31, 40]
    with pytest.raises(ValueError, match="'city'.*'Bergen'.*'bob'"):
        from_networkx(people(), features=["city"], vocab={"city": ["Oslo"]})


def test_node_id_mapping_and_round_trip():
    G = people()
    data = from_networkx(G, label="team", edge_weight="weight")
    assert data.node_ids == ["ann", "bob", "cy"]
    assert node_index(data) == {"ann": 0, "bob": 1, "cy": 2}
    H = to_networkx(data, label="team")
    assert not H.is_directed() and set(H.nodes) == set(G.nodes)
    assert {frozenset(e) for e in H.edges} == {frozenset(e) for e in G.edges}
    for u, v, w in G.edges(data="weight"):
        assert H.edges[u, v]["weight"] == w
    for v, d in G.nodes(data=True):
        h = H.nodes[v]
        assert h["team"] == d["team"] and h["city"] == d["city"]
        assert math.isclose(h["age"], d["age"]) and h["pos"] == list(d["pos"])


def test_undirected_gets_both_directions_and_self_loop_once():
    G = nx.Graph([(0, 1), (1, 2), (2, 2)])
    data = from_networkx(G)
    assert edge_set(data) == {(0, 1), (1, 0), (1, 2), (2, 1), (2, 2)}
    assert data.edge_index.size(1) == 5 and data.directed is False


def test_directed_keeps_direction_and_round_trips():
    G = nx.DiGraph()
    G.add_weighted_edges_from([("a", "b", 1.0), ("b", "c", 3.0), ("c", "a", 2.0)])
    data = from_networkx(G, edge_weight="weight")
    assert data.directed is True and data.edge_index.size(1) == 3
    assert edge_set(data) == {(0, 1), (1, 2), (2, 0)}
    assert data.edge_attr.shape == (3, 1)
    H = to_networkx(data)
    assert H.is_directed() and set(H.edges) == set(G.edges)
    assert all(H.edges[u, v]["weight"] == w for u, v, w in G.edges(data="weight"))


def test_edge_weights_follow_their_edges_in_both_directions():
    G = nx.Graph()
    G.add_edge(0, 1, w=1.0)
    G.add_edge(1, 2, w=5.0)
    data = from_networkx(G, edge_weight="w")
    got = {tuple(e): w for e, w in zip(data.edge_index.t().tolist(), data.edge_attr[:, 0].tolist())}
    assert got == {(0, 1): 1.0, (1, 0): 1.0, (1, 2): 5.0, (2, 1): 5.0}


def test_default_features_when_graph_has_none():
    G = nx.star_graph(3)  # centre 0 with degree 3, leaves degree 1
    deg = from_networkx(G)
    assert deg.feature_spec[0]["kind"] == "degree" and deg.x.shape == (4, 4)
    assert deg.x.argmax(1).tolist() == [3, 1, 1, 1]
    assert from_networkx(G, max_degree=2).x.argmax(1).tolist() == [2, 1, 1, 1]
    assert torch.equal(from_networkx(G, default_features="identity").x, torch.eye(4))
    assert torch.equal(from_networkx(G, default_features="constant").x, torch.ones(4, 1))
    assert from_networkx(G, default_features=None).x is None
    with pytest.raises(ValueError, match="default_features"):
        from_networkx(G, default_features="pagerank")


def test_degree_one_hot_is_capped_by_default():
    data = from_networkx(nx.star_graph(100))
    assert data.x.shape == (101, 64) and data.x[0, 63] == 1 and data.x[1, 1] == 1
    with pytest.raises(ValueError, match="max_degree"):
        from_networkx(nx.star_graph(3), max_degree=-1)


def test_multigraph_keeps_parallel_edges_with_their_weights():
    G = nx.MultiGraph()
    G.add_edge(0, 1, w=1.0)
    G.add_edge(0, 1, w=2.0)
    data = from_networkx(G, edge_weight="w")
    assert data.edge_index.size(1) == 4
    assert sorted(data.edge_attr[:, 0].tolist()) == [1.0, 1.0, 2.0, 2.0]


def test_directed_degree_features_use_in_degree():
    data = from_networkx(nx.DiGraph([(0, 1), (2, 1)]))
    assert data.x.argmax(1).tolist() == [0, 2, 0]


def test_numeric_and_float_labels():
    G = nx.path_graph(3)
    for v in G:
        G.nodes[v]["grade"], G.nodes[v]["score"] = [5, 7, 5][v], [0.5, 1.0, 2.5][v]
    data = from_networkx(G, label="grade")
    assert data.classes == [5, 7] and data.y.tolist() == [0, 1, 0]
    assert data.x[:, 0].tolist() == [0.5, 1.0, 2.5]  # the label is not a feature
    reg = from_networkx(G, label="score")
    assert reg.y.dtype == torch.float and reg.y.tolist() == [0.5, 1.0, 2.5]
    assert not hasattr(reg, "classes") or reg.classes is None
    fixed = from_networkx(G, label="grade", classes=[7, 5, 9])
    assert fixed.y.tolist() == [1, 0, 1]


def test_numpy_and_tensor_values():
    G = nx.path_graph(2)
    G.nodes[0].update(v=np.array([1.0, 2.0]), t=torch.tensor([3.0]), n=np.int64(4))
    G.nodes[1].update(v=np.array([5.0, 6.0]), t=torch.tensor([7.0]), n=np.float32(8.0))
    data = from_networkx(G, features=["v", "t", "n"])
    assert data.x.tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]


def test_missing_attribute_names_attribute_and_node():
    G = people()
    del G.nodes["cy"]["age"]
    with pytest.raises(ValueError, match=r"'age' is missing on node 'cy' \(1 of 3"):
        from_networkx(G)
    G.nodes["cy"]["age"] = None
    with pytest.raises(ValueError, match="'age' is missing on node 'cy'"):
        from_networkx(G, features=["age"])
    assert from_networkx(G, features=["city"]).x.shape == (3, 2)  # leaving it out works


def test_mixed_types_name_attribute_and_nodes():
    G = people()
    G.nodes["bob"]["city"] = 7
    with pytest.raises(ValueError, match=r"'city' mixes types.*'ann'.*'Oslo'.*'bob'.*7"):
        from_networkx(G)
    G = people()
    G.nodes["cy"]["team"] = 1
    with pytest.raises(ValueError, match="label attribute 'team' mixes types"):
        from_networkx(G, label="team")


def test_unknown_label_and_feature_attributes():
    with pytest.raises(ValueError, match=r"label attribute 'club' is on no node.*'age'"):
        from_networkx(people(), label="club")
    with pytest.raises(ValueError, match="feature attribute 'height' is on no node"):
        from_networkx(people(), features=["height"])
    with pytest.raises(ValueError, match="is the label"):
        from_networkx(people(), label="team", features=["team"])
    with pytest.raises(TypeError, match="list of attribute names"):
        from_networkx(people(), features="age")
    with pytest.raises(TypeError, match="networkx graph"):
        from_networkx([(0, 1)])


def test_bad_values_are_errors_not_nan():
    G = people()
    G.nodes["bob"]["age"] = float("nan")
    with pytest.raises(ValueError, match="'age' is NaN or inf on node 'bob'"):
        from_networkx(G)
    G = people()
    G.nodes["cy"]["pos"] = (1.0, 2.0, 3.0)
    with pytest.raises(ValueError, match="'pos' holds vectors of different lengths"):
        from_networkx(G)
    G = people()
    G.edges["ann", "bob"]["weight"] = "heavy"
    with pytest.raises(ValueError, match=r"'weight'.*\('ann', 'bob'\)"):
        from_networkx(G, edge_weight="weight")
    del G.edges["ann", "bob"]["weight"]
    with pytest.raises(ValueError, match="'weight' is missing on edge"):
        from_networkx(G, edge_weight="weight")


def test_unusable_attributes_are_skipped_with_warning_or_rejected_by_name():
    G = people()
    for v in G:
        G.nodes[v]["meta"] = {"k": v}
    with pytest.warns(UserWarning, match="'meta'.*skipped"):
        data = from_networkx(G, features=None)
    assert "meta" not in [e["attr"] for e in data.feature_spec]
    with pytest.raises(TypeError, match="'meta' holds dict"):
        from_networkx(G, features=["meta"])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 12), p=st.floats(0, 1), directed=st.booleans(), seed=st.integers(0, 999))
def test_round_trip_random_graphs(n, p, directed, seed):
    G = nx.gnp_random_graph(n, p, seed=seed, directed=directed)
    rng = np.random.default_rng(seed)
    G = nx.relabel_nodes(G, {v: f"n{v}" for v in G})
    for v in G:
        G.nodes[v]["kind"] = str(rng.choice(["a", "b", "c"]))
        G.nodes[v]["size"] = float(rng.integers(0, 10))
    for u, v in G.edges:
        G.edges[u, v]["weight"] = float(rng.integers(1, 5))
    data = from_networkx(G, label="kind", edge_weight="weight")
    expected_e = G.number_of_edges() * (1 if directed else 2)
    assert data.edge_index.size(1) == expected_e and data.num_nodes == n
    if not directed and n > 1:
        assert data.is_undirected()
    H = to_networkx(data, label="kind")
    assert H.is_directed() == directed and list(H.nodes) == list(G.nodes)
    assert nx.utils.edges_equal(H.edges(data="weight"), G.edges(data="weight"))
    assert dict(H.nodes(data="kind")) == dict(G.nodes(data="kind"))
    assert dict(H.nodes(data="size")) == dict(G.nodes(data="size"))
