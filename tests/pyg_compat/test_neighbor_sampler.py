"""Adapted from pytorch_geometric 2.8.0.post1 ``test/loader/test_neighbor_sampler.py``
(``test_neighbor_sampler_on_cora``; MIT licence, (c) 2023 PyG Team): layer-wise mini-batch
inference on bipartite blocks ``(x, x[:size[1]])`` gives the full-graph outputs of the
seed nodes. ``NeighborSampler`` / ``NeighborLoader`` need ``pyg-lib`` or ``torch-sparse``
(not installed here), so :func:`full_blocks` builds the blocks of
``NeighborSampler(sizes=[-1] * L)`` (targets first, then the new sources) and
:func:`torch_geometric.utils.k_hop_subgraph` the subgraph a full ``NeighborLoader`` batch
holds; a random graph replaces Cora (no download).
"""

from __future__ import annotations

import pytest
import torch
from torch_geometric.utils import erdos_renyi_graph, k_hop_subgraph

from tests.pyg_compat.conftest import make


def full_blocks(edge_index, seeds, num_layers):
    """``(n_id, adjs)`` as ``NeighborSampler(sizes=[-1] * num_layers)`` yields them."""
    n_id, adjs = seeds, []
    for _ in range(num_layers):
        e_id = torch.isin(edge_index[1], n_id).nonzero().flatten()
        src, dst = edge_index[:, e_id]
        new = src[~torch.isin(src, n_id)]
        new = new[torch.sort(torch.unique(new, return_inverse=True)[1])[1]].unique_consecutive()
        seen, order = set(n_id.tolist()), []
        for s in src.tolist():
            if s not in seen:
                seen.add(s)
                order.append(s)
        targets, n_id = n_id, torch.cat([n_id, torch.tensor(order, dtype=torch.long)])
        local = {n: i for i, n in enumerate(n_id.tolist())}
        block = torch.tensor([[local[s] for s in src.tolist()],
                              [local[d] for d in dst.tolist()]], dtype=torch.long)
        adjs.append((block.view(2, -1), e_id, (n_id.numel(), targets.numel())))
    return n_id, adjs[::-1]


class Net(torch.nn.Module):
    def __init__(self, impl, name, in_channels, out_channels):
        super().__init__()
        self.convs = torch.nn.ModuleList([
            make(impl, name, in_channels, 16, heads=2),
            make(impl, name, 32, 16, heads=2),
            make(impl, name, 32, out_channels, heads=2, concat=False)])

    def batch(self, x, adjs):
        for i, (edge_index, _, size) in enumerate(adjs):
            x_target = x[:size[1]]  # Target nodes are always placed first.
            x = self.convs[i]((x, x_target), edge_index)
        return x

    def full(self, x, edge_index):
        for conv in self.convs:
            x = conv(x, edge_index)
        return x


@pytest.mark.parametrize("name", ["GATConv", "GATv2Conv", "TransformerConv"])
def test_neighbor_sampler_layerwise(impl, name):
    torch.manual_seed(12345)
    num_nodes = 60
    edge_index = erdos_renyi_graph(num_nodes, 0.08)
    x = torch.randn(num_nodes, 8)
    model = Net(impl, name, 8, 4).eval()
    # the layout assumption of the test itself
    batch = torch.arange(10)
    n_id, adjs = full_blocks(edge_index, batch, 3)
    assert n_id.unique().size(0) == n_id.size(0)
    for block, _, size in adjs:
        assert int(block[0].max() + 1) <= size[0] and int(block[1].max() + 1) <= size[1]
        assert size[0] >= size[1]
    with torch.no_grad():
        out1 = model.batch(x[n_id], adjs)
        out2 = model.full(x, edge_index)[batch]
    assert torch.allclose(out1, out2, atol=1e-6)


@pytest.mark.parametrize("name", ["GATConv", "TransformerConv"])
def test_neighbor_loader_subgraph(impl, name):
    """A ``NeighborLoader`` batch with all neighbours: the 3-hop subgraph of the seeds."""
    torch.manual_seed(0)
    num_nodes = 60
    edge_index = erdos_renyi_graph(num_nodes, 0.08)
    x = torch.randn(num_nodes, 8)
    model = Net(impl, name, 8, 4).eval()
    seeds = torch.tensor([3, 7, 11])
    subset, sub_edge_index, mapping, _ = k_hop_subgraph(seeds, 3, edge_index,
                                                        relabel_nodes=True,
                                                        num_nodes=num_nodes)
    with torch.no_grad():
        out1 = model.full(x[subset], sub_edge_index)[mapping]
        out2 = model.full(x, edge_index)[seeds]
    assert torch.allclose(out1, out2, atol=1e-6)
