"""Random graphs and attention tensors through the picture code: empty graphs, self loops,
isolated nodes, repeated pairs, graphs above the summary threshold; scipy blocked."""

import sys
import tempfile

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphattn import viz


@pytest.mark.slow
@settings(max_examples=12, deadline=None)
@given(n=st.integers(1, 400), density=st.floats(0, 3), loops=st.booleans(),
       scores=st.booleans(), colors=st.booleans(), seed=st.integers(0, 2**16))
def test_any_graph_draws_without_scipy(n, density, loops, scores, colors, seed):
    g = torch.Generator().manual_seed(seed)
    e = int(n * density)
    edge_index = torch.randint(0, n, (2, e), generator=g)
    if loops:
        edge_index = torch.cat([edge_index, torch.arange(n).repeat(2, 1)], 1)
    pairs = torch.randint(0, n, (2, 2 * e + 1), generator=g)
    weights = [(pairs, torch.rand(pairs.size(1), 2, generator=g))]
    node, edge = viz.node_edge_scores(weights, edge_index, n)
    assert node.shape == (n,) and edge.shape == (edge_index.size(1),)
    assert bool(((node >= 0) & (node <= 1)).all()) and bool(((edge >= 0) & (edge <= 1)).all())
    saved = sys.modules.get("scipy", "absent")
    sys.modules["scipy"] = None  # any scipy import fails
    try:
        with tempfile.TemporaryDirectory() as d:
            path = viz.draw_graph_attention(
                edge_index, n, edge, f"{d}/g.png", max_nodes=100,
                node_scores=node if scores else None,
                node_color=torch.randint(0, 5, (n,), generator=g) if colors else None)
            with open(path, "rb") as f:
                assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    finally:
        if saved == "absent":
            del sys.modules["scipy"]
        else:
            sys.modules["scipy"] = saved
