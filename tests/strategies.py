"""Hypothesis strategies and small graph builders shared by the tests."""

from __future__ import annotations

import torch
from hypothesis import strategies as st


@st.composite
def graphs(draw, min_nodes: int = 0, max_nodes: int = 9, max_edges: int = 30,
           channels: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """A random directed graph: isolated nodes, self loops and duplicate edges allowed."""
    n = draw(st.integers(min_nodes, max_nodes))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, channels, generator=g, dtype=torch.float64)
    e = draw(st.integers(0, max_edges)) if n > 0 else 0
    edge_index = torch.randint(0, max(n, 1), (2, e), generator=g)
    return x, edge_index


@st.composite
def batches(draw, max_graphs: int = 4, max_nodes: int = 7, channels: int = 4):
    """A batch of random graphs (some may be empty): x, edge_index, batch, sizes."""
    sizes = draw(st.lists(st.integers(0, max_nodes), min_size=1, max_size=max_graphs))
    if sizes[-1] == 0:  # a trailing empty graph is invisible in a batch vector
        sizes[-1] = 1
    seed = draw(st.integers(0, 2**31 - 1))
    return random_batch(sizes, channels, seed)


def random_batch(sizes: list[int], channels: int = 4, seed: int = 0, edges_per_node: int = 2,
                 dtype: torch.dtype = torch.float64):
    """Graphs of the given sizes batched PyG-style; edges stay inside each graph."""
    g = torch.Generator().manual_seed(seed)
    xs, eis, bs, start = [], [], [], 0
    for b, n in enumerate(sizes):
        xs.append(torch.randn(n, channels, generator=g, dtype=dtype))
        if n:
            eis.append(torch.randint(0, n, (2, edges_per_node * n), generator=g) + start)
        bs.append(torch.full((n,), b, dtype=torch.long))
        start += n
    edge_index = torch.cat(eis, 1) if eis else torch.zeros(2, 0, dtype=torch.long)
    return torch.cat(xs), edge_index, torch.cat(bs), sizes
