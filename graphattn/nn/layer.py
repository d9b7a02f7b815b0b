"""GraphTransformerLayer: graph self-attention + feed-forward, residual connections and norm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn import BatchNorm1d, Identity, LayerNorm, Linear, ReLU, Sequential
from torch_geometric.nn import GINConv, GINEConv

from graphattn.nn.attention import GraphSelfAttention
from graphattn.nn.dropout import FAST_DROPOUT_NUMEL, Dropout, apply_mask_, drop_, dropout
from graphattn.nn.linear_attention import LinearGlobalAttention

MASKS = ("adjacency", "full", "hybrid")
LOCALS = ("attention", "gine", None)
GLOBALS = ("softmax", "linear")
NORMS = ("layer", "batch", None)
RESIDUALS = ("add", "gru")


class _FeedForward(torch.autograd.Function):
    r"""The layer's FFN :math:`\mathbf{W}_2\,\mathrm{Dropout}(\mathrm{GELU}(\mathbf{W}_1
    \mathbf{h} + \mathbf{b}_1)) + \mathbf{b}_2` in training on large inputs, the numbers of
    the ``Sequential`` (same random bits), with a backward that runs dropout's and GELU's
    gradients in place on one ``[N, ratio * C]`` buffer instead of two new ones."""

    @staticmethod
    def forward(ctx, h, w1, b1, w2, b2, p: float):
        z = F.linear(h, w1, b1)  # (N, F)
        a = F.gelu(z)
        drop, scale = drop_(a, p) if p > 0 else (None, 1.0)
        ctx.save_for_backward(h, w1, w2, z, a, drop)
        ctx.scale = scale
        return F.linear(a, w2, b2)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        h, w1, w2, z, a, drop = ctx.saved_tensors
        g_w2, g_b2 = g.t() @ a, g.sum(0)
        ga = g @ w2  # (N, F)
        if drop is not None:
            apply_mask_(ga, drop, ctx.scale)
        torch.ops.aten.gelu_backward.grad_input(ga, z, grad_input=ga)  # in place
        g_h = ga @ w1 if ctx.needs_input_grad[0] else None
        return g_h, ga.t() @ h, ga.sum(0), g_w2, g_b2, None


def make_norm(norm: str | None, channels: int) -> torch.nn.Module:
    """``"layer"`` (per node), ``"batch"`` (over the nodes of a batch) or ``None``."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if norm == "layer":
        return LayerNorm(channels)
    if norm == "batch":
        return BatchNorm1d(channels)
    return Identity()


class GraphTransformerLayer(torch.nn.Module):
    r"""A transformer block on graphs: self-attention and a feed-forward network, each in a
    residual branch with normalisation.

    With pre-norm (the default) and :math:`\mathrm{A}` the attention of ``mask``:

    .. math::
        \mathbf{h} = \mathbf{x} + \mathrm{Dropout}\big(\mathrm{A}(\mathrm{Norm}_1(\mathbf{x}))
        \big), \qquad
        \mathbf{x}' = \mathbf{h} + \mathrm{Dropout}\big(\mathbf{W}_2\,\mathrm{GELU}
        (\mathbf{W}_1 \mathrm{Norm}_2(\mathbf{h}))\big)

    and with post-norm :math:`\mathbf{h} = \mathrm{Norm}_1(\mathbf{x} + \mathrm{A}(\mathbf{x}))`,
    :math:`\mathbf{x}' = \mathrm{Norm}_2(\mathbf{h} + \mathrm{FFN}(\mathbf{h}))`.

    With ``residual="gru"`` the attention branch updates each node through a gated
    recurrent unit instead of a sum (Attentive FP's node update), the attention output as
    the GRU's input and the node's state as its hidden state:
    :math:`\mathbf{h} = \mathrm{GRU}\big(\mathrm{Dropout}(\mathrm{A}(\mathrm{Norm}_1
    (\mathbf{x}))),\ \mathbf{x}\big)`; the feed-forward branch stays a sum.

    ``mask`` chooses :math:`\mathrm{A}`:

    * ``"adjacency"``: :class:`~graphattn.nn.GraphSelfAttention` over in-neighbours.
    * ``"full"``: global attention over every node of the same graph, either softmax
      (:class:`~graphattn.nn.GraphSelfAttention` with ``mask="full"``, edges and
      ``attn_bias`` bias its scores) or linear
      (:class:`~graphattn.nn.LinearGlobalAttention`, :math:`O(N)`, edges ignored), by
      ``global_attention``.
    * ``"hybrid"`` (the GraphGPS pattern): a local branch and the global branch, summed:
      :math:`\mathrm{A}(\mathbf{x}) = \mathrm{Local}(\mathbf{x}) + \mathrm{Global}(\mathbf{x})`,
      where the local branch is adjacency attention (``local="attention"``), GINE message
      passing (``local="gine"``; GIN when ``edge_dim`` is ``None``) or absent (``None``).

    ``norm="layer"`` normalises each node on its own; ``norm="batch"`` uses statistics over
    the nodes of the mini-batch in training and running statistics in evaluation, so a
    graph's output in eval mode does not depend on the other graphs of its batch.

    Args:
        channels (int): Node feature size, in and out; divisible by ``heads``.
        heads (int): Attention heads. (default: ``4``)
        mask (str): ``"adjacency"``, ``"full"`` or ``"hybrid"``. (default: ``"adjacency"``)
        score (str): ``"dot"`` or ``"additive"`` (softmax attentions). (default: ``"dot"``)
        local (str, optional): Local branch of ``"hybrid"``: ``"attention"``, ``"gine"`` or
            ``None``. (default: ``"attention"``)
        global_attention (str): ``"softmax"`` or ``"linear"``. (default: ``"softmax"``)
        edge_dim (int, optional): Edge feature size. (default: ``None``)
        dropout (float): Dropout on each residual branch and inside the FFN.
            (default: ``0.0``)
        attn_dropout (float): Dropout on attention weights. (default: ``0.0``)
        ffn_ratio (int): FFN hidden size over ``channels``. (default: ``2``)
        norm (str, optional): ``"layer"``, ``"batch"`` or ``None``. (default: ``"layer"``)
        pre_norm (bool): Normalise at the start of each branch (``True``) or after each
            residual sum. (default: ``True``)
        residual (str): How the attention branch joins the node's state: ``"add"`` (a sum)
            or ``"gru"`` (a :class:`torch.nn.GRUCell`: six more ``channels x channels``
            weight matrices). (default: ``"add"``)

    Shapes:
        - **input:** node features :math:`(N, F)` with :math:`F` = ``channels``, edge indices
          :math:`(2, E)` (needed unless ``mask="full"``), edge features :math:`(E, D)`
          *(optional)*, batch vector :math:`(N)` *(optional)*, ``attn_bias`` for the
          softmax global attention :math:`(B, [H,] N_{max}, N_{max})` or, with
          ``mask="adjacency"``, :math:`(E)` / :math:`(E, H)` *(optional)*.
        - **output:** node features :math:`(N, F)`.
    """

    def __init__(
        self,
        channels: int,
        heads: int = 4,
        mask: str = "adjacency",
        score: str = "dot",
        local: str | None = "attention",
        global_attention: str = "softmax",
        edge_dim: int | None = None,
        dropout: float = 0.0,
        attn_dropout: float = 0.0,
        ffn_ratio: int = 2,
        norm: str | None = "layer",
        pre_norm: bool = True,
        residual: str = "add",
    ) -> None:
        super().__init__()
        if residual not in RESIDUALS:
            raise ValueError(f"residual must be one of {RESIDUALS}, got {residual!r}")
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
        if local not in LOCALS:
            raise ValueError(f"local must be one of {LOCALS}, got {local!r}")
        if global_attention not in GLOBALS:
            raise ValueError(f"global_attention must be one of {GLOBALS}, "
                             f"got {global_attention!r}")
        if channels < 1 or heads < 1 or channels % heads:
            raise ValueError(f"channels must be a positive multiple of heads, got "
                             f"channels={channels}, heads={heads}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.channels, self.heads, self.mask, self.score = channels, heads, mask, score
        self.local, self.global_attention = local, global_attention
        self.edge_dim, self.dropout, self.norm, self.pre_norm = edge_dim, dropout, norm, pre_norm
        self.residual = residual
        C = channels // heads

        def softmax_attention(m: str) -> GraphSelfAttention:
            return GraphSelfAttention(channels, C, heads=heads, mask=m, score=score,
                                      edge_dim=edge_dim, dropout=attn_dropout, root_weight=False,
                                      add_self_loops=True)

        self.local_attn = self.global_attn = None
        if mask == "adjacency" or (mask == "hybrid" and local == "attention"):
            self.local_attn = softmax_attention("adjacency")
        elif mask == "hybrid" and local == "gine":
            mlp = Sequential(Linear(channels, channels), ReLU(), Linear(channels, channels))
            self.local_attn = GINEConv(mlp, edge_dim=edge_dim) if edge_dim else GINConv(mlp)
        if mask in ("full", "hybrid"):
            self.global_attn = (softmax_attention("full") if global_attention == "softmax"
                                else LinearGlobalAttention(channels, C, heads=heads,
                                                           dropout=attn_dropout,
                                                           root_weight=False))
        self.gru = torch.nn.GRUCell(channels, channels) if residual == "gru" else None
        self.norm1 = make_norm(norm, channels)
        self.norm2 = make_norm(norm, channels)
        # the GELU output is dropped in place (GELU's backward reads its input only)
        self.ffn = Sequential(Linear(channels, ffn_ratio * channels), torch.nn.GELU(),
                              Dropout(dropout, inplace=True),
                              Linear(ffn_ratio * channels, channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in (self.local_attn, self.global_attn, self.gru, self.norm1, self.norm2):
            if m is not None and hasattr(m, "reset_parameters"):
                m.reset_parameters()
        for m in self.ffn:
            if isinstance(m, Linear):
                m.reset_parameters()

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor | None = None,
        edge_attr: Tensor | None = None,
        batch: Tensor | None = None,
        attn_bias: Tensor | None = None,
    ) -> Tensor:
        """Attend and transform; see the class docstring for the shapes."""
        if not isinstance(x, Tensor) or x.dim() != 2 or x.size(1) != self.channels:
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape [num_nodes, {self.channels}], got {got}")
        if self.local_attn is not None and edge_index is None:
            raise ValueError(f"mask={self.mask!r} has a local branch and needs edge_index")
        if isinstance(self.local_attn, GINEConv) and edge_attr is None:
            raise ValueError("local='gine' was built with edge_dim and needs edge_attr")

        # Fresh tensors (made here, saved by no autograd node) are updated in place, so at
        # a million nodes each [N, C] sum, dropout and residual costs no new allocation
        # (for CPU tensors above 32 MB, allocations are page faults and zero-fills).
        h = self.norm1(x) if self.pre_norm else x
        out, fresh = None, False
        if self.global_attn is not None:  # first: LinearGlobalAttention's output is fresh
            out = self.global_attn(h, edge_index, edge_attr, batch=batch, attn_bias=attn_bias)
            fresh = isinstance(self.global_attn, LinearGlobalAttention)
        if self.local_attn is not None:
            if isinstance(self.local_attn, GraphSelfAttention):
                local_bias = attn_bias if self.mask == "adjacency" else None
                local = self.local_attn(h, edge_index, edge_attr, attn_bias=local_bias)
            elif isinstance(self.local_attn, GINEConv):
                local = self.local_attn(h, edge_index, edge_attr)
            else:
                local = self.local_attn(h, edge_index)
            if out is None:  # GraphSelfAttention's output is fresh when it adds its bias
                out = local
                fresh = isinstance(self.local_attn, GraphSelfAttention) and \
                    self.local_attn.bias is not None
            else:
                out, fresh = (out.add_(local) if fresh else out + local), True
        out = dropout(out, self.dropout, self.training, inplace=fresh)
        fresh = fresh or (self.training and self.dropout > 0)
        if self.gru is not None:
            x = self.gru(out, x)
        else:
            x = out.add_(x) if fresh else x + out
        if not self.pre_norm:
            x = self.norm1(x)

        h = self.norm2(x) if self.pre_norm else x
        out = dropout(self._feed_forward(h), self.dropout, self.training, inplace=True)
        x = out.add_(x)  # fresh: a Linear's output
        return x if self.pre_norm else self.norm2(x)

    def _feed_forward(self, h: Tensor) -> Tensor:
        """``self.ffn(h)``; by :class:`_FeedForward` in training on large inputs (not under
        autocast, whose casts the ``Sequential`` leaves to torch)."""
        lin1, lin2 = self.ffn[0], self.ffn[3]
        if (self.training and torch.is_grad_enabled() and h.is_floating_point()
                and not torch.is_autocast_enabled(h.device.type)
                and h.size(0) * lin1.out_features >= FAST_DROPOUT_NUMEL):
            return _FeedForward.apply(h, lin1.weight, lin1.bias, lin2.weight, lin2.bias,
                                      self.dropout)
        return self.ffn(h)

    def __repr__(self) -> str:
        extra = ", residual='gru'" if self.gru is not None else ""
        if self.mask == "hybrid":
            extra += f", local={self.local!r}"
        if self.mask != "adjacency":
            extra += f", global_attention={self.global_attention!r}"
        return (f"{self.__class__.__name__}({self.channels}, heads={self.heads}, "
                f"mask={self.mask!r}{extra}, norm={self.norm!r})")
