"""GraphTransformer(graph_features=D) and GraphHead(extra_channels=D): molecule-level inputs."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Batch, Data

from graphattn import GraphTransformer
from graphattn.nn import GraphHead
from graphattn.nn.models import GraphTransformerConfig


def _graph(n: int, d: torch.Tensor) -> Data:
    ei = torch.stack([torch.arange(n - 1), torch.arange(1, n)])
    ei = torch.cat([ei, ei.flip(0)], 1)
    return Data(x=torch.randn(n, 5), edge_index=ei, descriptors=d.view(1, -1))


def test_descriptors_are_standardised_with_stored_statistics():
    torch.manual_seed(0)
    model = GraphTransformer(5, 8, 1, 1, task="graph", graph_features=3).eval()
    feats = torch.tensor([[1.0, 10.0, 7.0], [3.0, 30.0, 7.0]])
    model.fit_graph_features(feats)
    assert torch.allclose(model.graph_mean, torch.tensor([2.0, 20.0, 7.0]))
    assert torch.allclose(model.graph_std, torch.tensor([1.0, 10.0, 1.0]))  # constant: 1
    g = _graph(4, torch.tensor([2.0, 20.0, 7.0]))
    # a descriptor at the training mean reads as zeros: the same output as zeros after the mean
    seen = {}
    hook = model.head.mlp.register_forward_pre_hook(lambda m, a: seen.update(inp=a[0]))
    model(g)
    hook.remove()
    assert torch.allclose(seen["inp"][:, 8:], torch.zeros(1, 3))
    # a batch equals its graphs one by one; statistics travel in the state dict
    h = _graph(6, torch.tensor([100.0, -5.0, 7.0]))
    out = model(Batch.from_data_list([g, h]))
    assert torch.allclose(out, torch.cat([model(g), model(h)]), atol=1e-5)
    clone = GraphTransformer.from_config(model.config)
    clone.load_state_dict(model.state_dict())
    assert torch.allclose(clone.eval()(h), model(h))


def test_descriptors_change_the_prediction_and_are_required():
    torch.manual_seed(0)
    model = GraphTransformer(5, 8, 1, 1, task="graph", graph_features=2).eval()
    g = _graph(3, torch.tensor([0.0, 0.0]))
    h = g.clone()
    h.descriptors = torch.tensor([[2.0, -1.0]])
    assert not torch.allclose(model(g), model(h))
    with pytest.raises(ValueError, match="graph_features=2: pass data.descriptors"):
        model(Data(x=g.x, edge_index=g.edge_index))
    with pytest.raises(ValueError, match=r"shape \[num_graphs, graph_features=2\]"):
        model.fit_graph_features(torch.zeros(4, 3))


def test_old_configs_load_and_bad_options_are_named():
    old = GraphTransformer(5, 8, 1, 1, task="graph").config
    del old["graph_features"]  # a checkpoint written before the option
    model = GraphTransformer.from_config(old)
    assert model.cfg.graph_features == 0 and "graph_mean" not in model.state_dict()
    with pytest.raises(ValueError, match="graph_features must be >= 0 and needs task='graph'"):
        GraphTransformerConfig(5, 8, 1, 1, task="node", graph_features=3)
    with pytest.raises(ValueError, match="extra_channels must be >= 0"):
        GraphHead(8, 1, pool="atomwise", extra_channels=3)
    head = GraphHead(8, 1, pool="sum", extra_channels=2)
    with pytest.raises(ValueError, match=r"extra must have shape \[num_graphs=1"):
        head(torch.randn(3, 8))
