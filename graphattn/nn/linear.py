"""The projection every graphattn layer uses: PyG's ``Linear`` with a faster backward for
narrow inputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn.dense.linear import Linear as PyGLinear

from graphattn.nn import functional as GF


class Linear(PyGLinear):
    """:class:`torch_geometric.nn.dense.linear.Linear` (lazy ``in_channels = -1`` included;
    initialised as :class:`torch.nn.Linear`) whose forward is
    :func:`graphattn.nn.functional.linear`: the same values, gradients and state dict, a
    faster weight gradient when the input has few features (raw node features).

    Shapes: ``[*, in_channels] -> [*, out_channels]``."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.jit.is_scripting():
            return F.linear(x, self.weight, self.bias)
        return GF.linear(x, self.weight, self.bias)
