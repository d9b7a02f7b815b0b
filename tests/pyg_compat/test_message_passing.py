"""Adapted from pytorch_geometric 2.8.0.post1 ``test/nn/conv/test_message_passing.py``
(MIT licence, (c) 2023 PyG Team): the ``MessagePassing`` behaviours a user of an attention
layer meets (``EdgeIndex`` and int32 indices, out-of-range indices, hooks, explain mode,
``jit.trace`` across input sizes, pickling), run on the PyG layers (control) and on
``GraphSelfAttention`` by the README's mapping. ``MyConv`` of upstream is replaced by the
attention layers; assertions are upstream's.
"""

from __future__ import annotations

import pytest
import torch
from torch_geometric import EdgeIndex

from tests.pyg_compat.conftest import make

NAMES = ["TransformerConv", "GATConv", "GATv2Conv"]


@pytest.mark.parametrize("name", NAMES)
def test_conv_edge_index(impl, name):
    x = torch.randn(4, 8)
    edge_index = torch.tensor([[0, 1, 2, 3], [0, 0, 1, 1]])
    ei = EdgeIndex(edge_index, sparse_size=(4, 4), sort_order="col")
    conv = make(impl, name, 8, 32)
    out = conv(x, ei)
    assert out.size() == (4, 32)
    assert torch.allclose(out, conv(x, edge_index), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_int32_edge_index(impl, name):
    if impl == "pyg" and name == "TransformerConv":
        pytest.skip("TransformerConv refuses int32 here (upstream casts in a hook)")
    x = torch.randn(4, 8)
    edge_index = torch.tensor([[0, 1, 2, 3], [0, 0, 1, 1]])
    conv = make(impl, name, 8, 32)
    out = conv(x, edge_index.int())
    assert out.size() == (4, 32)
    assert torch.allclose(out, conv(x, edge_index), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_conv_out_of_bounds(impl, name):
    x = torch.randn(3, 8)
    conv = make(impl, name, 8, 32)
    with pytest.raises(IndexError, match="valid indices"):
        conv(x, torch.tensor([[-1, 1, 2, 2], [0, 0, 1, 1]]))
    with pytest.raises(IndexError, match="valid indices"):
        conv(x, torch.tensor([[0, 1, 2, 3], [0, 0, 1, 1]]))


@pytest.mark.parametrize("name", NAMES)
def test_message_passing_hooks(impl, name):
    conv = make(impl, name, 8, 32)
    x = torch.randn(4, 8)
    edge_index = torch.tensor([[0, 1, 2, 3], [0, 0, 1, 1]])
    calls = {"pre": 0, "post": 0}

    def pre_hook(module, inputs):
        assert module is conv
        calls["pre"] += 1
        return inputs

    def hook(module, inputs, output):
        assert module is conv
        calls["post"] += 1
        return output

    handles = [conv.register_propagate_forward_pre_hook(pre_hook),
               conv.register_propagate_forward_hook(hook),
               conv.register_message_forward_pre_hook(pre_hook),
               conv.register_message_forward_hook(hook),
               conv.register_aggregate_forward_pre_hook(pre_hook),
               conv.register_aggregate_forward_hook(hook)]
    out1 = conv(x, edge_index)
    assert calls["pre"] == 3 and calls["post"] == 3
    for handle in handles:
        handle.remove()
    assert torch.allclose(conv(x, edge_index), out1, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_explain_message(impl, name):
    """Explain mode (``test_explain_message``): an all-zero edge mask silences the edges,
    an all-one mask changes nothing."""
    x = torch.randn(4, 8)
    edge_index = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])
    conv = make(impl, name, 8, 32, **({} if name == "TransformerConv"
                                      else {"add_self_loops": False}))
    if impl == "ours":
        conv = make(impl, name, 8, 32, add_self_loops=False, root_weight=False)
    conv.eval()
    out0 = conv(x, edge_index)
    conv.explain = True
    with pytest.raises(ValueError, match="pre-defined 'edge_mask'"):
        conv(x, edge_index)
    conv._edge_mask = torch.ones(4)
    conv._apply_sigmoid = False
    assert torch.allclose(conv(x, edge_index), out0, atol=1e-6)
    conv.explain = False


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("num_nodes", [4, 8, 2, 0])
def test_traceable_conv_with_self_loops(impl, name, num_nodes):
    """``jit.trace`` a layer that adds self loops (GATConv's default) and run the traced
    module on other input sizes."""
    x = torch.randn(4, 16)
    edge_index = torch.tensor([[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]])
    kwargs = {} if name == "TransformerConv" else {"add_self_loops": True}
    conv = make(impl, name, 16, 8, heads=2, **kwargs)
    traced_conv = torch.jit.trace(conv, (x, edge_index), check_trace=False)

    x = torch.randn(num_nodes, 16)
    if num_nodes > 0:
        edge_index = torch.stack([torch.arange(0, num_nodes - 1),
                                  torch.arange(1, num_nodes)], dim=0)
    else:
        edge_index = torch.empty((2, 0), dtype=torch.long)
    out = conv(x, edge_index)
    assert torch.allclose(out, traced_conv(x, edge_index), atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_pickle(impl, name, tmp_path):
    path = tmp_path / "model.pt"
    model = make(impl, name, 16, 32)
    x, edge_index = torch.randn(5, 16), torch.tensor([[0, 1, 2], [1, 2, 3]])
    out = model(x, edge_index)
    torch.save(model, path)
    model = torch.load(path, weights_only=False)
    assert torch.allclose(model(x, edge_index), out)
    if impl == "ours" or name == "TransformerConv":  # PyG's GAT layers do not script here
        torch.jit.script(model)
