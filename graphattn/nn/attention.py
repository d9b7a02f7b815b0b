"""GraphSelfAttention: the one attention layer of graphattn (both masks, both scores)."""

# ruff: noqa: UP006, UP007, UP035, UP045  (typing.Optional/Tuple/Union: TorchScript reads the
# annotations of forward and message)


import typing
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks
from torch.nn.parameter import UninitializedParameter
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import glorot, zeros
from torch_geometric.typing import Adj
from torch_geometric.utils import scatter, softmax
from torch_geometric.utils.sparse import is_torch_sparse_tensor

from graphattn.nn import functional as GF

if typing.TYPE_CHECKING:
    from typing import overload
else:  # TorchScript's overloads (how PyG's conv layers script with two return types)
    from torch.jit import _overload_method as overload
from graphattn.nn import native, ops
from graphattn.nn._checks import check_inputs, check_layer_sizes
from graphattn.nn.dense_kernel import Buckets, full_attention
from graphattn.nn.native import DenseAttention, FullGraphs, NativeAttention
from graphattn.nn.sparse_kernel import STRUCTURES, EdgeStructure, SparseAttention

MASKS = ("adjacency", "full")
SCORES = ("dot", "additive")
IMPLS = ("auto", "reference", "fused")
# full attention of graphs up to this size runs in the native dense kernel (one thread per
# graph); batches with a larger graph use the bucketed kernels (torch's flash attention)
NATIVE_FULL_MAX_NODES = 256
# row widths of raw-feature attention (F + 1, zero-padded): the native kernel's unrolled sizes
RAW_WIDTHS = (8, 16, 32, 64)
_HOOKS = ("_propagate_forward_pre_hooks", "_propagate_forward_hooks",
          "_message_forward_pre_hooks", "_message_forward_hooks",
          "_aggregate_forward_pre_hooks", "_aggregate_forward_hooks")


class _Linear(Linear):
    """PyG's ``Linear`` (lazy ``in_channels`` included) through
    :func:`graphattn.nn.functional.linear`: the same values, gradients and state dict, a
    faster backward for narrow raw features."""

    def forward(self, x: Tensor) -> Tensor:
        if torch.jit.is_scripting():
            return F.linear(x, self.weight, self.bias)
        return GF.linear(x, self.weight, self.bias)


def _sparse_weights(index: Tensor, alpha: Tensor, n_dst: int, n_src: int,
                    layout: torch.layout) -> Tensor:
    """Attention weights ``alpha [P, H]`` of the pairs ``index [2, P]`` (source, target) as
    a sparse ``[N_t, N_s, H]`` tensor of ``layout`` (COO coalesced, CSR or CSC)."""
    shape = (n_dst, n_src, alpha.size(1))
    if layout == torch.sparse_coo:
        return torch.sparse_coo_tensor(index.flip(0), alpha, shape).coalesce()
    major, minor = (index[1], index[0]) if layout == torch.sparse_csr else (index[0], index[1])
    n_major = n_dst if layout == torch.sparse_csr else n_src
    order = torch.argsort(major * max(n_src, n_dst, 1) + minor)
    counts = torch.bincount(major, minlength=n_major)
    ptr = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
    make = torch.sparse_csr_tensor if layout == torch.sparse_csr else torch.sparse_csc_tensor
    return make(ptr, minor[order], alpha[order], shape)


class GraphSelfAttention(MessagePassing):
    r"""Multi-head graph self-attention, masked by adjacency or fully connected.

    Every node :math:`i` scores its relevance to the nodes :math:`j` it may attend to,
    normalises the scores with a softmax and sums their values:

    .. math::
        \mathbf{x}'_i = \mathbf{W}_s \mathbf{x}_i + \big\Vert_{h=1}^{H}
        \sum_{j \in \mathcal{A}(i)} \alpha^h_{ij}\, \mathbf{v}^h_{j},
        \qquad
        \alpha^h_{ij} = \operatorname{softmax}_{j \in \mathcal{A}(i)}
        \big( s^h_{ij} + b^h_{ij} \big)

    with :math:`\mathbf{q}^h_i = \mathbf{W}^h_q \mathbf{x}_i`,
    :math:`\mathbf{k}^h_j = \mathbf{W}^h_k \mathbf{x}_j`,
    :math:`\mathbf{v}^h_j = \mathbf{W}^h_v \mathbf{x}_j` and the score

    .. math::
        s^h_{ij} = \frac{\mathbf{q}^{h\top}_i \mathbf{k}^h_j}{\sqrt{C}}
        \quad (\texttt{score="dot"}), \qquad
        s^h_{ij} = \mathbf{a}^{h\top} \operatorname{LeakyReLU}
        (\mathbf{q}^h_i + \mathbf{k}^h_j)
        \quad (\texttt{score="additive"}).

    The attended set :math:`\mathcal{A}(i)` depends on ``mask``:

    * ``"adjacency"``: the in-neighbours of :math:`i` (edges :math:`j \to i`), plus
      :math:`i` itself when ``add_self_loops=True``. Cost :math:`O(E)`. With ``edge_dim``,
      an edge embedding :math:`\mathbf{e}^h_{ij} = \mathbf{W}^h_e \mathbf{e}_{ij}` is added to
      the key and the value of that edge (as in :class:`~torch_geometric.nn.TransformerConv`).
      A node that attends to nothing gets a zero attention output (never NaN).
    * ``"full"``: every node of the same graph (``batch`` tells the graphs of a
      mini-batch apart; nothing is attended across graphs). Cost :math:`O(\sum_b N_b^2)`.
      Edges, when given, do not restrict attention, they *bias* it:
      :math:`b^h_{ij} = \beta^h + \mathbf{w}^{h\top}_e \mathbf{e}_{ij}` for each edge
      :math:`j \to i` (a learned "is an edge" bias per head plus a learned projection of
      the edge features), and 0 for non-edges.

    In both modes an extra ``attn_bias`` may be added to the scores (e.g. a shortest-path
    bias, see :mod:`graphattn.nn.encodings`); ``-inf`` masks a pair out, and a node whose
    pairs are all masked attends to nothing (zero attention output, never NaN). NaN or
    ``+inf`` in ``attn_bias`` raise a ``ValueError``.

    Args:
        in_channels (int or tuple): Size of each input sample, or ``-1`` to infer it
            lazily. A tuple ``(source, target)`` gives bipartite sizes (adjacency mode).
        out_channels (int): Channels per head, :math:`C`.
        heads (int): Number of heads, :math:`H`. (default: ``1``)
        concat (bool): Concatenate the heads (output ``H * C``) or average them (output
            ``C``). (default: ``True``)
        mask (str): ``"adjacency"`` or ``"full"``. (default: ``"adjacency"``)
        score (str): ``"dot"`` or ``"additive"``. (default: ``"dot"``)
        edge_dim (int, optional): Edge feature size, ``-1`` to infer it lazily.
            (default: ``None``)
        dropout (float): Dropout on the attention weights. (default: ``0.0``)
        bias (bool): Learn additive biases in the projections. (default: ``True``)
        root_weight (bool): Add the skip :math:`\mathbf{W}_s \mathbf{x}_i`.
            (default: ``True``)
        add_self_loops (bool, optional): In adjacency mode, let each node attend to itself:
            existing self loops are removed and one loop :math:`i \to i` is appended *after*
            the given edges (the order PyG's explain machinery expects) for each
            :math:`i < \min(N_s, N_t)`, PyG's ``GATConv`` rule, so bipartite blocks whose
            targets are the first sources (NeighborSampler) attend as the full graph does.
            ``None`` resolves by ``score`` as the PyG layer it replaces: ``False`` for
            ``"dot"`` (``TransformerConv``), ``True`` for ``"additive"`` (``GATConv``). Set
            ``False`` for bipartite edge types of :func:`~torch_geometric.nn.to_hetero`.
            (default: ``None``)
        fill_value (float or Tensor or str): Edge features of the added self loops, as in
            ``GATConv``: a value, or how to reduce the node's incoming edge features
            (``"mean"``, ``"add"``, ``"max"``, ``"min"``, ``"mul"``). (default: ``"mean"``)
        residual (bool): Add ``GATConv``'s residual projection (no bias) of the target
            features to the output. (default: ``False``)
        negative_slope (float): LeakyReLU slope of the additive score. (default: ``0.2``)
        max_full_pairs (int): Memory guard of full attention: the largest number of
            scores :math:`H \sum_b N_b^2` one call may build. (default: ``2**28``)
        impl (str): ``"reference"``: gather -> segment softmax -> scatter through
            :meth:`propagate` (slow, obviously correct, per-edge messages visible to hooks).
            ``"fused"``: the fast kernels, proved equal to the reference by the tests:
            in adjacency mode the native C kernel (:mod:`graphattn.nn.native`, compiled on
            first use) or, without a C compiler, CSR sparse products with a
            hand-written backward (:mod:`graphattn.nn.sparse_kernel`); in full mode with
            the dot score the native dense kernel (one thread per graph, graphs of up to
            ``NATIVE_FULL_MAX_NODES = 256`` nodes) or size-bucketed dense attention
            (:mod:`graphattn.nn.dense_kernel`; torch's flash attention on large graphs); in
            full mode with the additive score the adjacency kernel over all pairs.
            ``"auto"``: ``"fused"`` on CPU for float32
            and float64 inputs. Either way the reference runs when PyG's explain mode is on,
            when message-passing hooks are registered (e.g. by
            :class:`~torch_geometric.explain.algorithm.AttentionExplainer`, which reads the
            weights of every edge) and while :func:`torch.compile` traces.
            (default: ``"auto"``)
        **kwargs: Passed to :class:`~torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** node features :math:`(N, F)` or :math:`((N_s, F_s), (N_t, F_t))`,
          edge indices :math:`(2, E)` or a sparse adjacency :math:`(N_t, N_s)` (``adj_t``,
          PyG's convention), edge features :math:`(E, D)` *(optional)*, batch vector
          :math:`(N)` *(optional, full mode)*, ``attn_bias`` :math:`(E)` / :math:`(E, H)` in
          adjacency mode or :math:`(B, N_{max}, N_{max})` / :math:`(B, H, N_{max}, N_{max})`
          in full mode *(optional)*.
        - **output:** node features :math:`(N_t, H C)` or :math:`(N_t, C)`; with
          ``return_attention_weights=True`` also ``(index, alpha)``: ``index`` :math:`(2, P)`
          the attended pairs (source, target) and ``alpha`` :math:`(P, H)` their weights.
          In adjacency mode the pairs are the given edges followed by the self loops.
    """

    _alpha: Optional[Tensor]

    def __init__(
        self,
        in_channels: int | tuple[int, int],
        out_channels: int,
        heads: int = 1,
        concat: bool = True,
        mask: str = "adjacency",
        score: str = "dot",
        edge_dim: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        root_weight: bool = True,
        add_self_loops: bool | None = None,
        negative_slope: float = 0.2,
        max_full_pairs: int = 2**28,
        impl: str = "auto",
        fill_value: float | Tensor | str = "mean",
        residual: bool = False,
        **kwargs,
    ) -> None:
        kwargs.setdefault("aggr", "add")
        super().__init__(node_dim=0, **kwargs)
        if mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {mask!r}")
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        if mask == "full" and isinstance(in_channels, (tuple, list)):
            raise ValueError("mask='full' attends within one node set: bipartite "
                             "in_channels (source, target) need mask='adjacency'")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        check_layer_sizes(heads, out_channels, dropout)

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.concat = concat
        self.mask = mask
        self.score = score
        self.edge_dim = edge_dim
        self.dropout = dropout
        self.root_weight = root_weight
        if add_self_loops is None:
            add_self_loops = score == "additive"
        self.add_self_loops = bool(add_self_loops)
        self.fill_value = fill_value
        self.residual = residual
        self.negative_slope = negative_slope
        self.max_full_pairs = max_full_pairs
        self.impl = impl
        self._alpha: Tensor | None = None

        src_channels, dst_channels = (
            tuple(in_channels) if isinstance(in_channels, (tuple, list))
            else (in_channels, in_channels))
        HC = heads * out_channels
        self.lin_query = _Linear(dst_channels, HC, bias=bias)
        self.lin_key = Linear(src_channels, HC, bias=bias)
        self.lin_value = Linear(src_channels, HC, bias=bias)
        # additive score vector a (one per head)
        self.att = Parameter(torch.empty(1, heads, out_channels)) if score == "additive" else None
        # adjacency: edge embedding added to keys and values; full: per-head score bias
        edge_out = HC if mask == "adjacency" else heads
        self.lin_edge = Linear(edge_dim, edge_out, bias=False) if edge_dim else None
        self.edge_bias = Parameter(torch.empty(heads)) if mask == "full" else None
        out_dim = HC if concat else out_channels
        self.lin_skip = _Linear(dst_channels, out_dim, bias=bias) if root_weight else None
        self.bias = Parameter(torch.empty(out_dim)) if bias and not root_weight else None
        self.lin_res = (Linear(dst_channels, out_dim, bias=False, weight_initializer="glorot")
                        if residual else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        for lin in (self.lin_query, self.lin_key, self.lin_value, self.lin_edge, self.lin_skip,
                    self.lin_res):
            if lin is not None:
                lin.reset_parameters()
        if self.att is not None:
            glorot(self.att)
        if self.edge_bias is not None:
            zeros(self.edge_bias)
        if self.bias is not None:
            zeros(self.bias)

    @overload
    def forward(
        self,
        x: Union[Tensor, Tuple[Tensor, Optional[Tensor]]],
        edge_index: Optional[Adj] = None,
        edge_attr: Optional[Tensor] = None,
        batch: Optional[Tensor] = None,
        attn_bias: Optional[Tensor] = None,
        return_attention_weights: None = None,
        size: Optional[Tuple[int, int]] = None,
    ) -> Tensor:
        pass

    @overload
    def forward(  # noqa: F811
        self,
        x: Union[Tensor, Tuple[Tensor, Optional[Tensor]]],
        edge_index: Optional[Adj] = None,
        edge_attr: Optional[Tensor] = None,
        batch: Optional[Tensor] = None,
        attn_bias: Optional[Tensor] = None,
        return_attention_weights: bool = None,
        size: Optional[Tuple[int, int]] = None,
    ) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        pass

    def forward(  # noqa: F811
        self,
        x: Union[Tensor, Tuple[Tensor, Optional[Tensor]]],
        edge_index: Optional[Adj] = None,
        edge_attr: Optional[Tensor] = None,
        batch: Optional[Tensor] = None,
        attn_bias: Optional[Tensor] = None,
        return_attention_weights: Optional[bool] = None,
        size: Optional[Tuple[int, int]] = None,
    ) -> Union[Tensor, Tuple[Tensor, Tuple[Tensor, Tensor]]]:
        """Attend; see the class docstring for the arguments and shapes. ``size`` is
        ``(N_s, N_t)`` (checked against the inputs; with ``x = (x_src, None)`` it gives
        ``N_t``). Under :func:`torch.jit.script` the layer runs its reference path
        (adjacency mode)."""
        if torch.jit.is_scripting():
            out, index, alpha = self._script_forward(x, edge_index, edge_attr, attn_bias,
                                                     size)
            if isinstance(return_attention_weights, bool):
                return out, (index, alpha)
            return out
        return self._forward(x, edge_index, edge_attr, batch, attn_bias,
                             return_attention_weights, size)

    def _script_forward(
        self,
        x: Union[Tensor, Tuple[Tensor, Optional[Tensor]]],
        edge_index: Optional[Adj],
        edge_attr: Optional[Tensor],
        attn_bias: Optional[Tensor],
        size: Optional[Tuple[int, int]],
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """The reference path in TorchScript: adjacency mode, ``[2, E]`` edge indices."""
        if self.mask != "adjacency" or not isinstance(edge_index, Tensor):
            raise RuntimeError("TorchScript runs GraphSelfAttention with mask='adjacency' "
                               "and a [2, E] edge_index")
        if isinstance(x, Tensor):
            x_src = x
            x_dst = x
        else:
            x_src = x[0]
            x_given = x[1]
            if x_given is None:
                n_dst = size[1] if size is not None else x_src.size(0)
                x_dst = x_src[:n_dst]
            else:
                x_dst = x_given
        edge_index = edge_index.long()
        H, C = self.heads, self.out_channels
        n_src, n_dst = x_src.size(0), x_dst.size(0)
        if attn_bias is not None and attn_bias.dim() == 1:
            attn_bias = attn_bias.unsqueeze(-1)
        if edge_attr is not None and edge_attr.dim() == 1:
            edge_attr = edge_attr.unsqueeze(-1)
        if self.add_self_loops:
            n = min(n_src, n_dst)
            keep = edge_index[0] != edge_index[1]
            if attn_bias is not None:
                attn_bias = torch.cat([attn_bias[keep],
                                       attn_bias.new_zeros(n, attn_bias.size(1))])
            edge_index = edge_index[:, keep]
            if edge_attr is not None:
                edge_attr = edge_attr[keep]
                edge_attr = torch.cat([edge_attr, self._loop_attr(edge_attr, edge_index[1],
                                                                  n_dst, n)])
            loops = torch.arange(n, device=edge_index.device).unsqueeze(0).repeat(2, 1)
            edge_index = torch.cat([edge_index, loops], 1)
        q = self.lin_query(x_dst).view(-1, H, C)
        k = self.lin_key(x_src).view(-1, H, C)
        v = self.lin_value(x_src).view(-1, H, C)
        edge_emb: Optional[Tensor] = None
        if self.lin_edge is not None and edge_attr is not None:
            edge_emb = self.lin_edge(edge_attr).view(-1, H, C)
        # propagate_type: (q: Tensor, k: Tensor, v: Tensor, edge_emb: Optional[Tensor],
        #                  score_bias: Optional[Tensor])
        out = self.propagate(edge_index, q=q, k=k, v=v, edge_emb=edge_emb,
                             score_bias=attn_bias, size=(n_src, n_dst))
        alpha = self._alpha
        self._alpha = None
        assert alpha is not None
        out = out.reshape(-1, H * C) if self.concat else out.mean(dim=1)
        if self.lin_skip is not None:
            out = out + self.lin_skip(x_dst)
        if self.lin_res is not None:
            out = out + self.lin_res(x_dst)
        if self.bias is not None:
            out = out + self.bias
        return out, edge_index, alpha

    @torch.jit.unused
    def _forward(self, x, edge_index, edge_attr, batch, attn_bias, return_attention_weights,
                 size):
        """The forward pass outside TorchScript (every mode and kernel)."""
        layout = edge_index.layout if isinstance(edge_index, Tensor) \
            and is_torch_sparse_tensor(edge_index) else None
        x_src, x_dst, edge_index, edge_attr = check_inputs(self, x, edge_index, edge_attr,
                                                           batch, attn_bias, size)
        H, C = self.heads, self.out_channels
        dead = None
        if attn_bias is not None and not (torch.compiler.is_compiling()
                                          or torch.jit.is_tracing()):
            attn_bias, dead = self._masked_bias(attn_bias, x_src, x_dst, edge_index, batch)
        if self._attends_raw(x_src, x_dst, edge_attr):
            out, index = self._adjacency_raw(x_src, x_dst, edge_index, attn_bias,
                                             bool(return_attention_weights))
        else:
            out, index = self._attend(x_src, x_dst, edge_index, edge_attr, batch, attn_bias,
                                      bool(return_attention_weights))
        alpha, self._alpha = self._alpha, None
        if dead is not None:  # (N_t, H): every score -inf, so the node attends to nothing
            out = out.masked_fill(dead.unsqueeze(-1), 0.0)
            if alpha is not None:
                alpha = alpha.masked_fill(dead[index[1]], 0.0)

        out = out.reshape(-1, H * C) if self.concat else out.mean(dim=1)  # (N_t, H*C | C)
        if self.lin_skip is not None:
            out = out + self.lin_skip(x_dst)
        if self.lin_res is not None:
            out = out + self.lin_res(x_dst)
        if self.bias is not None:
            out = out + self.bias
        if return_attention_weights:
            if layout is not None:  # the weights as a sparse [N_t, N_s, H] of that layout
                adj = _sparse_weights(index, alpha, x_dst.size(0), x_src.size(0), layout)
                return out, (adj, adj.values())
            return out, (index, alpha)
        return out

    def _masked_bias(self, attn_bias, x_src, x_dst, edge_index, batch):
        """Check ``attn_bias`` and make its ``-inf`` entries (masked pairs) safe.

        NaN or ``+inf`` raise a ``ValueError``. ``-inf`` is replaced by a large finite
        negative value (the weight of such a pair is still exactly 0 next to any finite
        score), and the ``(target, head)`` rows whose pairs are all ``-inf`` are returned
        as ``dead [N_t, H]``: they attend to nothing, so their attention output is 0 (as
        for a node without in-edges), never NaN. A self loop (bias 0) keeps a row alive.
        """
        if bool(torch.isnan(attn_bias).any()) or bool(torch.isposinf(attn_bias).any()):
            raise ValueError("attn_bias contains NaN or +inf; use -inf to mask a pair out")
        if not bool(torch.isneginf(attn_bias).any()):
            return attn_bias, None
        H, n_dst = self.heads, x_dst.size(0)
        live = ~torch.isneginf(attn_bias)
        if self.mask == "adjacency":  # [E] / [E, H] over the in-edges of each target
            live = live.view(live.size(0), -1).expand(-1, H).to(attn_bias.dtype)
            dst = edge_index[1]
            alive = live.new_zeros(n_dst, H).index_add_(0, dst, live) > 0
            alive[:self._num_loops(x_src, x_dst)] = True
            dead = ~alive
        else:  # [B, (H,) M, M]: target i of graph b over the sources j < N_b
            sizes = GF.graph_sizes(batch, n_dst).to(attn_bias.device)
            M = attn_bias.size(-1)
            valid = torch.arange(M, device=attn_bias.device) < sizes.view(-1, 1)  # (B, M)
            live4 = live if live.dim() == 4 else live.unsqueeze(1)
            alive = (live4 & valid[:, None, None, :]).any(-1)  # (B, H | 1, M)
            graph = torch.repeat_interleave(torch.arange(sizes.numel(),
                                                         device=sizes.device), sizes)
            pos = torch.arange(n_dst, device=sizes.device) - (sizes.cumsum(0) - sizes)[graph]
            dead = ~alive[graph, :, pos].expand(-1, H)  # (N, H)
        floor = torch.finfo(attn_bias.dtype).min / 4
        return attn_bias.masked_fill(torch.isneginf(attn_bias), floor), dead

    def _num_loops(self, x_src: Tensor, x_dst: Tensor) -> int:
        r"""How many self loops this call adds: :math:`\min(N_s, N_t)` in adjacency mode
        with ``add_self_loops`` (loops :math:`i \to i`, :math:`i <` that), else 0."""
        if not self.add_self_loops or self.mask != "adjacency":
            return 0
        if x_src is x_dst:
            return x_src.size(0)
        return min(x_src.size(0), x_dst.size(0))

    def _loop_attr(self, edge_attr: Tensor, dst: Tensor, n_dst: int, n: int) -> Tensor:
        """Edge features of ``n`` self loops by ``fill_value`` (``GATConv``'s rule): the
        reduction of each node's incoming edge features, or a given value; ``[n, D]``."""
        fill = self.fill_value
        if isinstance(fill, str):
            reduce = "sum" if fill == "add" else fill
            return scatter(edge_attr, dst, 0, dim_size=max(n_dst, n), reduce=reduce)[:n]
        if isinstance(fill, Tensor):
            return fill.to(edge_attr).expand(n, edge_attr.size(1))
        return edge_attr.new_full((n, edge_attr.size(1)), float(fill))

    def _attend(self, x_src, x_dst, edge_index, edge_attr, batch, attn_bias, want_alpha):
        """Project queries, keys and values, then attend: ``[N_t, H, C]`` and the pairs."""
        H, C = self.heads, self.out_channels
        q = self.lin_query(x_dst).view(-1, H, C)  # (N_t, H, C)
        kv = self._key_value(x_src)  # (N_s, 2, H, C)

        fused = self._fused(q)
        # bfloat16 / float16 projections (autocast): the native CSR kernel reads bfloat16 rows
        # itself (arithmetic in float32); for the other kernels they are widened to float32
        # and the scores, softmax and weighted sums run without autocast
        wide = fused and q.dtype in GF.LOW_PRECISION and not (
            self.mask == "adjacency" and native.available(q.dtype, "csr"))
        with GF.float32_region(q.device.type, wide):
            if wide:
                q, kv, edge_attr, attn_bias = GF.widen(q, kv, edge_attr, attn_bias)
            if self._compiled_native(q):
                out, index = self._adjacency_op(q, kv, x_src, x_dst, edge_index, edge_attr,
                                                attn_bias, want_alpha)
            elif self.mask == "adjacency" and fused:
                out, index = self._adjacency_fused(q, kv, x_src, x_dst, edge_index, edge_attr,
                                                   attn_bias, want_alpha)
            elif self.mask == "adjacency":
                out, index = self._adjacency(q, *kv.unbind(1), x_src, x_dst, edge_index,
                                             edge_attr, attn_bias)
            else:
                out, index = self._full(q, kv, edge_index, edge_attr, batch, attn_bias,
                                        want_alpha)
        if wide and x_dst.dtype in GF.LOW_PRECISION:  # a bfloat16 model: bfloat16 out
            out = out.to(x_dst.dtype)
        return out, index

    def _attends_raw(self, x_src: Tensor, x_dst: Tensor, edge_attr: Tensor | None) -> bool:
        r"""Whether this call takes :meth:`_adjacency_raw`: fused adjacency attention with the
        dot score, the native kernel, no edge embedding, no forward hooks on the projections
        (they are not called there), and source features narrow enough: :math:`F + 1 \le
        HC`, or :math:`F + 1 \le C` when they need a gradient (the source pass then gathers
        :math:`2H(F + 1)` instead of :math:`2HC` values per edge). The gathered row is
        :math:`F + 1` zero-padded to the next of ``RAW_WIDTHS``, so it can be wider than
        :math:`F + 1`; what the path always saves is the backward's pass over the sources
        when they need no gradient. Measured at 1M nodes / 10M edges, 4 heads of 8: with 4
        features its kernels take half the time of the key-value path; with 16 (rows padded
        to 32) the block-diagonal output product costs what the kernels save."""
        if self.mask != "adjacency" or self.score != "dot" or not self._fused(x_dst):
            return False
        if self.lin_edge is not None and edge_attr is not None:
            return False
        projections = (self.lin_query, self.lin_key, self.lin_value)
        if any(isinstance(lin.weight, UninitializedParameter) for lin in projections):
            return False
        if any(lin._forward_hooks or lin._forward_pre_hooks for lin in projections) or \
                _global_forward_hooks or _global_forward_pre_hooks:
            return False  # the hooks would not see the projections, which do not run
        cpu_autocast = torch.is_autocast_enabled("cpu")
        dtype = torch.get_autocast_dtype("cpu") if cpu_autocast else x_dst.dtype
        if not native.available(dtype, "csr"):
            return False
        width, C = x_src.size(1) + 1, self.out_channels
        return width <= C if x_src.requires_grad else width <= self.heads * C

    def _adjacency_raw(self, x_src, x_dst, edge_index, attn_bias, want_alpha):
        r""":meth:`_adjacency_fused` with the keys and values projected after the sum: the
        kernel gathers each source's raw features :math:`\tilde{\mathbf{x}}_j =
        [\mathbf{x}_j, 1]` (:math:`F + 1` values, one row for every head) instead of its
        keys and values (:math:`2HC`). Exact, since the projections are linear: with
        :math:`\tilde{\mathbf{W}}^h = [\mathbf{W}^h \,|\, \mathbf{b}^h]`,

        .. math::
            \mathbf{q}^{h\top}_i \mathbf{k}^h_j = (\tilde{\mathbf{W}}^{h\top}_k
            \mathbf{q}^h_i)^\top \tilde{\mathbf{x}}_j, \qquad
            \sum_j \alpha^h_{ij} \mathbf{v}^h_j = \tilde{\mathbf{W}}^h_v
            \sum_j \alpha^h_{ij} \tilde{\mathbf{x}}_j

        (the ones column carries the biases, dropped weights included). The query side is
        one product of ``x_dst`` with :math:`\tilde{\mathbf{W}}_k^\top \mathbf{W}_q`, and
        the backward skips the pass over the sources when ``x_src`` needs no gradient."""
        H, C = self.heads, self.out_channels
        F_src = x_src.size(1)
        P = next((w for w in RAW_WIDTHS if w > F_src), F_src + 1)  # zero-padded

        def augmented(lin: Linear) -> Tensor:  # [W | b | 0] per head: (H, C, P)
            bias = lin.bias if lin.bias is not None else lin.weight.new_zeros(H * C)
            pad = lin.weight.new_zeros(H * C, P - F_src - 1)
            return torch.cat([lin.weight, bias.unsqueeze(1), pad], 1).view(H, C, P)

        wk, wv, lq = augmented(self.lin_key), augmented(self.lin_value), self.lin_query
        scale = C ** -0.5
        w_q = torch.einsum("hcp,hcf->hpf", wk, lq.weight.view(H, C, -1)).reshape(H * P, -1)
        b_q = None
        if lq.bias is not None:
            b_q = torch.einsum("hcp,hc->hp", wk, lq.bias.view(H, C)).reshape(H * P) * scale
        q = GF.linear(x_dst, w_q * scale, b_q).view(-1, H, P)  # (N_t, H, P), scaled
        x_aug = torch.cat([x_src, x_src.new_ones(x_src.size(0), 1),
                           x_src.new_zeros(x_src.size(0), P - F_src - 1)], 1).to(q.dtype)
        agg, index = self._adjacency_fused(q, x_aug, x_src, x_dst, edge_index, None,
                                           attn_bias, want_alpha, scale=1.0)
        # (N_t, H * P) @ block-diagonal (H * P, H * C): every head's values at once
        w_out = torch.block_diag(*wv.transpose(1, 2).unbind(0)).to(agg.dtype)
        return (agg.reshape(-1, H * P) @ w_out).view(-1, H, C), index

    def _key_value(self, x: Tensor) -> Tensor:
        """Keys and values of the source nodes from one matrix product, ``[N_s, 2, H, C]``:
        the key and the value of a node side by side, so the fused kernel gathers one row
        per edge. (While the projections are still lazy, they run one by one.)"""
        lk, lv = self.lin_key, self.lin_value
        if any(isinstance(p, UninitializedParameter) for p in (lk.weight, lv.weight)):
            kv = torch.stack([lk(x), lv(x)], 1)
        else:
            bias = torch.cat([lk.bias, lv.bias]) if lk.bias is not None else None
            kv = GF.linear(x, torch.cat([lk.weight, lv.weight]), bias)
        return kv.view(-1, 2, self.heads, self.out_channels)

    def _adjacency(self, q, k, v, x_src, x_dst, edge_index, edge_attr, attn_bias):
        """Attention over in-neighbours (plus self loops): ``[N_t, H, C]`` and the pairs."""
        edge_index, edge_attr, attn_bias = self._add_loops(x_src, x_dst, edge_index, edge_attr,
                                                           attn_bias)
        edge_emb = None
        if self.lin_edge is not None and edge_attr is not None:
            edge_emb = self.lin_edge(edge_attr).view(-1, self.heads, self.out_channels)
        out = self.propagate(edge_index, q=q, k=k, v=v, edge_emb=edge_emb, score_bias=attn_bias,
                             size=(x_src.size(0), x_dst.size(0)))
        return out, edge_index

    def _add_loops(self, x_src, x_dst, edge_index, edge_attr, attn_bias):
        """The given edges without their self loops, then :meth:`_num_loops` loops (with
        edge features by ``fill_value`` and a zero ``attn_bias``), as the reference sees
        them; ``attn_bias`` comes back ``[E, H | 1]``."""
        if attn_bias is not None and attn_bias.dim() == 1:
            attn_bias = attn_bias.unsqueeze(-1)
        if not (self.add_self_loops and self.mask == "adjacency"):
            return edge_index, edge_attr, attn_bias
        n = self._num_loops(x_src, x_dst)
        keep = (edge_index[0] != edge_index[1]).nonzero().flatten()  # one dynamic shape
        loops = torch.arange(n, device=edge_index.device).unsqueeze(0).repeat(2, 1)
        if attn_bias is not None:
            attn_bias = torch.cat([attn_bias.index_select(0, keep),
                                   attn_bias.new_zeros(n, attn_bias.size(1))])
        edge_index = edge_index.index_select(1, keep)
        if edge_attr is not None:
            edge_attr = edge_attr.index_select(0, keep)
            edge_attr = torch.cat([edge_attr, self._loop_attr(edge_attr, edge_index[1],
                                                              x_dst.size(0), n)])
        return torch.cat([edge_index, loops], 1), edge_attr, attn_bias

    def _compiled_native(self, q: Tensor) -> bool:
        """Whether this call runs under ``torch.compile`` / ``torch.export`` through the
        custom operator ``graphattn::csr_attention`` (:mod:`~.ops`)."""
        if not torch.compiler.is_compiling() or self.impl == "reference" or self._explain:
            return False
        if self.mask != "adjacency" or any(getattr(self, name) for name in _HOOKS):
            return False
        return q.device.type == "cpu" and q.dtype in (torch.float32, torch.float64,
                                                      torch.bfloat16) \
            and ops.native_csr_available()

    def _adjacency_op(self, q, kv, x_src, x_dst, edge_index, edge_attr, attn_bias,
                      want_alpha):
        """:meth:`_adjacency` by the custom operator (compiled graphs)."""
        H, C = self.heads, self.out_channels
        edge_index, edge_attr, attn_bias = self._add_loops(x_src, x_dst, edge_index,
                                                           edge_attr, attn_bias)
        emb = None
        if self.lin_edge is not None and edge_attr is not None:
            emb = self.lin_edge(edge_attr).view(-1, H, C)
        bias = attn_bias.expand(-1, H) if attn_bias is not None else None
        noise = None
        if self.training and self.dropout > 0:  # drawn in edge order, as F.dropout would
            noise = torch.empty(edge_index.size(1), H, dtype=native.compute_dtype(q.dtype),
                                device=q.device).bernoulli_(1 - self.dropout)
            noise = noise / (1 - self.dropout)
        att = self.att.view(H, C) if self.att is not None else None
        out, alpha = torch.ops.graphattn.csr_attention(
            q, kv, emb, att, bias, noise, edge_index, x_src.size(0),
            float(self.negative_slope), C ** -0.5)
        if want_alpha:
            self._alpha = alpha
        return out, edge_index

    def _fused(self, q: Tensor) -> bool:
        """Whether the fast kernels may replace :meth:`propagate` in this call."""
        if self.impl == "reference" or self._explain or torch.compiler.is_compiling() \
                or torch.jit.is_tracing():
            return False
        if any(getattr(self, name) for name in _HOOKS):
            return False
        if self.impl == "auto":
            return q.device.type == "cpu" and q.dtype in (torch.float32, torch.float64,
                                                          *GF.LOW_PRECISION)
        return True

    def _adjacency_fused(self, q, kv, x_src, x_dst, edge_index, edge_attr, attn_bias,
                         want_alpha, scale=None):
        """:meth:`_adjacency` by the CSR kernel of :mod:`graphattn.nn.sparse_kernel`.

        The edges with self loops handled and their sorted structure are cached per
        ``edge_index`` tensor (:data:`~.sparse_kernel.STRUCTURES`)."""
        n_src, n_dst = x_src.size(0), x_dst.size(0)
        n_loops = self._num_loops(x_src, x_dst)
        loops = self.add_self_loops and self.mask == "adjacency"

        def make():  # (edges, kept positions, structure); never edge_index itself, which
            ei, keep = edge_index, None  # the cache must not keep alive
            if not loops:
                return None, None, EdgeStructure(ei, n_src, n_dst)
            mask = ei[0] != ei[1]  # given edges minus loops, then n_loops loops: the
            if not bool(mask.all()):  # reference order
                keep = mask.nonzero().flatten()
                ei = ei.index_select(1, keep)
            ei = torch.cat([ei, torch.arange(n_loops, device=ei.device).repeat(2, 1)], 1)
            return ei, keep, EdgeStructure(ei, n_src, n_dst)

        looped, keep, st = STRUCTURES.get(edge_index, (n_src, n_dst, loops), make)
        edge_index = looped if looped is not None else edge_index
        if attn_bias is not None and attn_bias.dim() == 1:
            attn_bias = attn_bias.unsqueeze(-1)
        use_attr = self.lin_edge is not None and edge_attr is not None
        if loops:
            if keep is not None:
                edge_attr = edge_attr.index_select(0, keep) if use_attr else edge_attr
                attn_bias = attn_bias.index_select(0, keep) if attn_bias is not None else None
            if use_attr:  # loop features by fill_value
                dst = edge_index[1, :edge_attr.size(0)]
                edge_attr = torch.cat([edge_attr, self._loop_attr(edge_attr, dst, n_dst,
                                                                  n_loops)])
            if attn_bias is not None:
                attn_bias = torch.cat([attn_bias, attn_bias.new_zeros(n_loops,
                                                                      attn_bias.size(1))])
        out = self._sparse_fused(q, kv, edge_index, edge_attr if use_attr else None,
                                 attn_bias, want_alpha, st, scale)
        return out, edge_index

    def _sparse_fused(self, q, kv, edge_index, edge_attr, bias, want_alpha, st=None,
                      scale=None):
        """Run the native kernel (:class:`~.native.NativeAttention`), or without it
        :class:`~.sparse_kernel.SparseAttention`, on the given edges (in the order the
        reference would see them); sets ``self._alpha`` when ``want_alpha``. ``kv`` may be
        one shared row per source and ``scale`` other than :math:`C^{-1/2}` (native only)."""
        H, E = self.heads, edge_index.size(1)
        st = st if st is not None else EdgeStructure(edge_index, kv.size(0), q.size(0))
        perm = st.perm  # edge inputs in sorted order, [E, ...]
        attr = edge_attr.index_select(0, perm) if edge_attr is not None else None
        if bias is not None:
            bias = bias.index_select(0, perm).expand(-1, H)
        noise = None
        if self.training and self.dropout > 0:  # drawn in edge order, as F.dropout would
            noise = torch.empty(E, H, dtype=native.compute_dtype(q.dtype), device=q.device)
            noise = noise.bernoulli_(1 - self.dropout).div_(1 - self.dropout)
            noise = noise.index_select(0, perm)
        att = self.att.view(H, -1) if self.att is not None else None
        if native.available(q.dtype, "csr"):  # edge-major: [E, H] in, alpha [E, H] out
            emb = None
            if attr is not None:  # a widened float16 model: weights in the inputs' dtype
                w = self.lin_edge.weight
                emb = self.lin_edge(attr) if w.dtype == attr.dtype else \
                    F.linear(attr, w.to(attr.dtype))
                emb = emb.view(E, H, q.size(-1))
            out, alpha = NativeAttention.apply(q, kv, emb, att, bias, noise, st,
                                               self.negative_slope, scale)
        else:  # head-major: [H, E] in and out (parameters in q's dtype: a widened
            k, v = kv.unbind(1)  # bfloat16 model computes in float32 here)
            att = att.to(q.dtype) if att is not None else None
            w_edge = self.lin_edge.weight.to(q.dtype) if attr is not None else None
            out, alpha = SparseAttention.apply(
                q, k, v, attr, w_edge, att,
                bias.t() if bias is not None else None,
                noise.t() if noise is not None else None, st, self.negative_slope)
            alpha = alpha.t()
        if want_alpha:  # back to edge order
            self._alpha = alpha.new_empty(E, H).index_copy_(0, perm, alpha)
        return out

    def _full(self, q, kv, edge_index, edge_attr, batch, attn_bias, want_alpha=True):
        """Attention over every node of the same graph: ``[N, H, C]`` and the pairs (``None``
        on the fused dot path when the weights are not wanted)."""
        n = q.size(0)
        sizes = GF.graph_sizes(batch, n).to(q.device)
        pairs = int((sizes * sizes).sum()) * self.heads
        if pairs > self.max_full_pairs:
            biggest = int(sizes.max())
            raise ValueError(
                f"full attention would build {pairs:,} scores (largest graph: {biggest:,} "
                f"nodes, {self.heads} heads), more than max_full_pairs={self.max_full_pairs:,} "
                f"(~{pairs * 4 / 2**30:.1f} GiB per float32 tensor). Use mask='adjacency', "
                "a linear global attention, smaller batches, or raise max_full_pairs.")
        edge_bias = None
        if edge_index is not None and edge_index.size(1) > 0:
            edge_bias = self.edge_bias.view(1, -1).expand(edge_index.size(1), -1)
            if self.lin_edge is not None and edge_attr is not None:
                w = self.lin_edge.weight  # edge features in the weights' dtype (bfloat16
                if not isinstance(w, UninitializedParameter):  # models: q is widened)
                    edge_attr = edge_attr.to(w.dtype)
                edge_bias = edge_bias + self.lin_edge(edge_attr)  # (E, H)
            edge_bias = edge_bias.to(q.dtype)
        fused = self._fused(q)
        largest = int(sizes.max()) if sizes.numel() else 0
        if fused and self.score == "dot" and native.available(q.dtype, "dense") \
                and largest <= NATIVE_FULL_MAX_NODES:
            return self._full_native(q, kv, edge_index, edge_bias, attn_bias, sizes,
                                     want_alpha)
        if fused and self.score == "dot":
            return self._full_dense(q, kv, edge_index, edge_bias, batch, attn_bias, sizes,
                                    want_alpha)
        pair_index, pair_graph = GF.full_pair_index(sizes)
        bias = None
        if edge_bias is not None:
            pos = GF.pair_position(edge_index, batch, sizes)
            bias = q.new_zeros(pair_index.size(1), self.heads).index_add_(0, pos, edge_bias)
        if attn_bias is not None:
            dense = GF.gather_dense_bias(attn_bias, pair_index, pair_graph, sizes, self.heads)
            bias = dense if bias is None else bias + dense
        if fused:  # additive: the sparse kernel over all pairs (already sorted by target)
            return self._sparse_fused(q, kv, pair_index, None, bias, want_alpha), pair_index
        k, v = kv.unbind(1)
        out = self.propagate(pair_index, q=q, k=k, v=v, edge_emb=None, score_bias=bias,
                             size=(n, n))
        return out, pair_index

    def _full_native(self, q, kv, edge_index, edge_bias, attn_bias, sizes, want_alpha):
        """Full dot attention by the native dense kernel (:class:`~.native.DenseAttention`):
        one thread per graph, no padding, the scores recomputed in backward."""
        n, H = q.size(0), self.heads
        st = eb = None
        if edge_bias is not None:  # the edges sorted by target, cached per edge_index
            _, _, st = STRUCTURES.get(edge_index, (n, n, "full"), lambda: (
                None, None, EdgeStructure(edge_index, n, n)))
            eb = edge_bias.index_select(0, st.perm)
        if attn_bias is not None and attn_bias.dim() == 3:  # one bias for every head
            attn_bias = attn_bias.unsqueeze(1)
        pair_index = noise = None
        if want_alpha or (self.training and self.dropout > 0):
            pair_index, _ = GF.full_pair_index(sizes)
        if self.training and self.dropout > 0:  # drawn in pair order, as F.dropout would
            noise = q.new_empty(pair_index.size(1), H).bernoulli_(1 - self.dropout)
            noise.div_(1 - self.dropout)
        out, alpha = DenseAttention.apply(q, kv, eb, attn_bias, noise, FullGraphs(sizes, st),
                                          want_alpha)
        if want_alpha:
            self._alpha = alpha
        return out, pair_index

    def _full_dense(self, q, kv, edge_index, edge_bias, batch, attn_bias, sizes,
                    want_alpha):
        """Full dot attention by size-bucketed dense kernels (:mod:`~.dense_kernel`)."""
        H = self.heads
        buckets = Buckets.build(sizes, batch, H)
        bias = None
        if edge_bias is not None:
            bias = buckets.scatter_scores(edge_bias, edge_index[0], edge_index[1], batch)
        pair_index = None
        if want_alpha or (self.training and self.dropout > 0):
            pair_index, _ = GF.full_pair_index(sizes)
        noise = None
        if self.training and self.dropout > 0:  # drawn in pair order, as F.dropout would
            keep = q.new_empty(pair_index.size(1), H).bernoulli_(1 - self.dropout)
            noise = buckets.scatter_scores(keep.div_(1 - self.dropout), pair_index[0],
                                           pair_index[1], batch)
        out, probs = full_attention(q, kv, buckets, bias, attn_bias, noise, want_alpha)
        if want_alpha:
            pos, stride = buckets.score_position(pair_index[0], pair_index[1], batch)
            heads = torch.arange(H, device=q.device)
            self._alpha = probs[pos.unsqueeze(-1) + stride.unsqueeze(-1) * heads]  # (P, H)
        return out, pair_index

    def message(self, q_i: Tensor, k_j: Tensor, v_j: Tensor,
                edge_emb: Optional[Tensor], score_bias: Optional[Tensor], index: Tensor,
                ptr: Optional[Tensor], size_i: Optional[int]) -> Tensor:
        if edge_emb is not None:
            k_j = k_j + edge_emb
            v_j = v_j + edge_emb
        att = self.att  # None: the dot score
        if att is None:
            s = GF.dot_score(q_i, k_j)  # (E, H)
        else:
            s = GF.additive_score(q_i, k_j, att, self.negative_slope)
        if score_bias is not None:
            s = s + score_bias
        alpha = softmax(s, index, ptr, size_i)  # (E, H), sums to 1 per target
        self._alpha = alpha
        alpha = F.dropout(alpha, p=self.dropout, training=self.training)
        return v_j * alpha.unsqueeze(-1)  # (E, H, C)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"heads={self.heads}, mask={self.mask!r}, score={self.score!r}"
                + (f", edge_dim={self.edge_dim}" if self.edge_dim else "") + ")")
