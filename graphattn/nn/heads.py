"""Output heads (a label per node, or pool and a label per graph) and a masked loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn import (
    MLP,
    AttentionalAggregation,
    global_add_pool,
    global_max_pool,
    global_mean_pool,
)
from torch_geometric.utils import softmax

POOLS = ("mean", "sum", "max", "attention", "cls")
LOSSES = ("mse", "bce", "ce")


def _mlp(in_channels: int, out_channels: int, hidden: int | None, num_layers: int,
         dropout: float) -> MLP:
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    hidden = hidden or in_channels
    # no batch norm: a node's (graph's) prediction never depends on its mini-batch
    return MLP([in_channels] + [hidden] * (num_layers - 1) + [out_channels], norm=None,
               dropout=dropout, act="gelu")


class NodeHead(torch.nn.Module):
    r"""An MLP applied to every node: :math:`\hat{\mathbf{y}}_i = \mathrm{MLP}(\mathbf{h}_i)`.

    Args:
        in_channels (int): Node feature size.
        out_channels (int): Outputs per node (classes or regression targets).
        hidden_channels (int, optional): MLP width. (default: ``in_channels``)
        num_layers (int): MLP layers, ``1`` is a linear map. (default: ``2``)
        dropout (float): Dropout between MLP layers. (default: ``0.0``)

    Shapes:
        - **input:** node features :math:`(N, F)`.
        - **output:** :math:`(N, \text{out\_channels})`.
    """

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int | None = None,
                 num_layers: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.mlp = _mlp(in_channels, out_channels, hidden_channels, num_layers, dropout)

    def reset_parameters(self) -> None:
        self.mlp.reset_parameters()

    def forward(self, x: Tensor, batch: Tensor | None = None) -> Tensor:
        return self.mlp(x)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.out_channels})"


class CLSPool(torch.nn.Module):
    r"""A learned virtual (CLS) node that attends to every node of its graph:

    .. math::
        \mathbf{g}_b = \mathbf{c} + \big\Vert_{h=1}^{H} \sum_{i \in b}
        \operatorname{softmax}_{i \in b}\Big(\frac{(\mathbf{W}^h_q\mathbf{c})^\top
        \mathbf{W}^h_k\mathbf{h}_i}{\sqrt{C}}\Big)\, \mathbf{W}^h_v \mathbf{h}_i

    A graph without nodes gets :math:`\mathbf{c}`.

    Shapes:
        - **input:** node features :math:`(N, F)`, batch vector :math:`(N)`.
        - **output:** graph features :math:`(B, F)`.
    """

    def __init__(self, channels: int, heads: int = 1) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels must be a multiple of heads, got {channels}, {heads}")
        self.channels, self.heads = channels, heads
        self.cls = Parameter(torch.empty(channels))
        self.lin_query = torch.nn.Linear(channels, channels)
        self.lin_kv = torch.nn.Linear(channels, 2 * channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.normal_(self.cls, std=0.02)
        self.lin_query.reset_parameters()
        self.lin_kv.reset_parameters()

    def forward(self, x: Tensor, batch: Tensor, size: int) -> Tensor:
        H, C = self.heads, self.channels // self.heads
        q = self.lin_query(self.cls).view(H, C)  # (H, C)
        k, v = self.lin_kv(x).view(-1, 2, H, C).unbind(1)  # (N, H, C) each
        alpha = softmax((k * q).sum(-1) / C**0.5, batch, num_nodes=size)  # (N, H)
        out = x.new_zeros(size, H, C).index_add_(0, batch, alpha.unsqueeze(-1) * v)
        return self.cls + out.view(size, H * C)


class GraphHead(torch.nn.Module):
    r"""Pool each graph's nodes into one vector, then an MLP:
    :math:`\hat{\mathbf{y}}_b = \mathrm{MLP}(\mathrm{pool}(\{\mathbf{h}_i : i \in b\}))`.

    Pooling: ``"mean"``, ``"sum"``, ``"max"``, ``"attention"`` (a learned gate,
    :class:`~torch_geometric.nn.aggr.AttentionalAggregation`) or ``"cls"`` (a learned
    virtual node attending to its graph's nodes, :class:`CLSPool`). Every pooling works
    graph by graph, so a graph's output never depends on the others of its batch.

    Args:
        in_channels (int): Node feature size.
        out_channels (int): Outputs per graph.
        pool (str): Pooling. (default: ``"mean"``)
        hidden_channels (int, optional): MLP width. (default: ``in_channels``)
        num_layers (int): MLP layers. (default: ``2``)
        dropout (float): Dropout between MLP layers. (default: ``0.0``)
        heads (int): Heads of ``"cls"`` pooling. (default: ``1``)

    Shapes:
        - **input:** node features :math:`(N, F)`, batch vector :math:`(N)` *(optional)*,
          ``num_graphs`` :math:`B` *(optional, else* ``batch.max() + 1`` *)*.
        - **output:** :math:`(B, \text{out\_channels})`.
    """

    def __init__(self, in_channels: int, out_channels: int, pool: str = "mean",
                 hidden_channels: int | None = None, num_layers: int = 2,
                 dropout: float = 0.0, heads: int = 1) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        self.in_channels, self.out_channels, self.pool = in_channels, out_channels, pool
        self.pooling = None
        if pool == "attention":
            self.pooling = AttentionalAggregation(torch.nn.Linear(in_channels, 1))
        elif pool == "cls":
            self.pooling = CLSPool(in_channels, heads)
        self.mlp = _mlp(in_channels, out_channels, hidden_channels, num_layers, dropout)

    def reset_parameters(self) -> None:
        if self.pooling is not None:
            self.pooling.reset_parameters()
        self.mlp.reset_parameters()

    def forward(self, x: Tensor, batch: Tensor | None = None,
                num_graphs: int | None = None) -> Tensor:
        if batch is None:
            batch = torch.zeros(x.size(0), dtype=torch.long, device=x.device)
        if num_graphs is None:
            num_graphs = int(batch.max()) + 1 if batch.numel() else 1
        if self.pool == "mean":
            g = global_mean_pool(x, batch, num_graphs)
        elif self.pool == "sum":
            g = global_add_pool(x, batch, num_graphs)
        elif self.pool == "max":
            g = global_max_pool(x, batch, num_graphs)
        elif self.pool == "attention":
            g = self.pooling(x, batch, dim_size=num_graphs)
        else:
            g = self.pooling(x, batch, num_graphs)
        return self.mlp(g)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"pool={self.pool!r})")


def masked_loss(pred: Tensor, target: Tensor, kind: str = "mse") -> Tensor:
    r"""Mean loss over the observed labels only; missing labels contribute nothing to the
    loss or its gradients (multi-task data sets where not every target is measured).

    Args:
        pred (Tensor): Predictions (raw logits for ``"bce"`` and ``"ce"``).
        target (Tensor): Labels, same shape as ``pred`` for ``"mse"`` / ``"bce"`` with
            ``NaN`` where missing; for ``"ce"`` class indices of shape ``pred.shape[:-1]``,
            missing as ``NaN`` (float targets) or a negative index (integer targets).
        kind (str): ``"mse"``, ``"bce"`` (binary cross-entropy with logits) or ``"ce"``
            (cross-entropy). (default: ``"mse"``)

    Returns:
        A scalar: the mean over observed entries, ``0`` (with zero gradients) when none is
        observed.
    """
    if kind not in LOSSES:
        raise ValueError(f"kind must be one of {LOSSES}, got {kind!r}")
    if not isinstance(pred, Tensor) or not isinstance(target, Tensor):
        raise TypeError("pred and target must be tensors")
    if kind == "ce":
        if target.shape != pred.shape[:-1]:
            raise ValueError(f"for kind='ce' target must have shape pred.shape[:-1] = "
                             f"{list(pred.shape[:-1])} (class indices), got {list(target.shape)}")
        observed = ~torch.isnan(target) if target.is_floating_point() else target >= 0
        if observed.any() and int(target[observed].max()) >= pred.size(-1):
            raise ValueError(f"target has class {int(target[observed].max())} but pred has "
                             f"{pred.size(-1)} classes")
        filled = torch.where(observed, target, torch.zeros_like(target)).long()
        per = F.cross_entropy(pred.reshape(-1, pred.size(-1)), filled.reshape(-1),
                              reduction="none").view(target.shape)
    else:
        if target.shape != pred.shape:
            raise ValueError(f"target must have the shape of pred {list(pred.shape)}, "
                             f"got {list(target.shape)}")
        target = target.to(pred.dtype)
        observed = ~torch.isnan(target)
        filled = torch.where(observed, target, torch.zeros_like(target))
        if kind == "mse":
            per = F.mse_loss(pred, filled, reduction="none")
        else:
            per = F.binary_cross_entropy_with_logits(pred, filled, reduction="none")
    per = torch.where(observed, per, torch.zeros_like(per))  # no gradient from missing labels
    return per.sum() / observed.sum().clamp(min=1)
