"""GraphSelfAttention: the one attention layer of graphattn (both masks, both scores)."""

# ruff: noqa: UP006, UP007, UP035, UP045  (typing.Optional/Tuple/Union: TorchScript reads the
# annotations of forward and message)


import typing
from typing import Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Parameter
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.inits import glorot, zeros
from torch_geometric.typing import Adj
from torch_geometric.utils import scatter, softmax
from torch_geometric.utils.sparse import is_torch_sparse_tensor

from graphattn.nn import functional as GF
from graphattn.nn import kernels
from graphattn.nn._checks import check_full_pairs, check_inputs, check_layer_sizes, masked_bias
from graphattn.nn.linear import Linear

if typing.TYPE_CHECKING:
    from typing import overload
else:  # TorchScript's overloads (how PyG's conv layers script with two return types)
    from torch.jit import _overload_method as overload

MASKS = ("adjacency", "full")
SCORES = ("dot", "additive")
IMPLS = ("auto", "reference", "fused")
_HOOKS = ("_propagate_forward_pre_hooks", "_propagate_forward_hooks",
          "_message_forward_pre_hooks", "_message_forward_hooks",
          "_aggregate_forward_pre_hooks", "_aggregate_forward_hooks")


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
            ``"fused"``: the fast kernels of :mod:`graphattn.nn.kernels`, proved equal to
            the reference by the tests: native C kernels (compiled on first use; under
            :func:`torch.compile` the custom operator ``graphattn::csr_attention``) or,
            without a C compiler, pure-torch sparse and size-bucketed dense kernels.
            ``"auto"``: ``"fused"`` on CPU. Either way the reference runs when PyG's
            explain mode is on, when message-passing hooks are registered (e.g. by
            :class:`~torch_geometric.explain.algorithm.AttentionExplainer`, which reads the
            weights of every edge), under :func:`torch.jit.trace`, and under
            :func:`torch.compile` in full mode. (default: ``"auto"``)
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
        self.lin_query = Linear(dst_channels, HC, bias=bias)
        self.lin_key = Linear(src_channels, HC, bias=bias)
        self.lin_value = Linear(src_channels, HC, bias=bias)
        # additive score vector a (one per head)
        self.att = Parameter(torch.empty(1, heads, out_channels)) if score == "additive" else None
        # adjacency: edge embedding added to keys and values; full: per-head score bias
        edge_out = HC if mask == "adjacency" else heads
        self.lin_edge = Linear(edge_dim, edge_out, bias=False) if edge_dim else None
        self.edge_bias = Parameter(torch.empty(heads)) if mask == "full" else None
        out_dim = HC if concat else out_channels
        self.lin_skip = Linear(dst_channels, out_dim, bias=bias) if root_weight else None
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
        """The forward pass outside TorchScript: the kernels, or the reference path."""
        layout = edge_index.layout if isinstance(edge_index, Tensor) \
            and is_torch_sparse_tensor(edge_index) else None
        x_src, x_dst, edge_index, edge_attr = check_inputs(self, x, edge_index, edge_attr,
                                                           batch, attn_bias, size)
        sizes = check_full_pairs(self, batch, x_dst) if self.mask == "full" else None
        dead = None
        if attn_bias is not None:  # traced: no data-dependent checks, same masking
            traced = torch.compiler.is_compiling() or torch.jit.is_tracing()
            attn_bias, dead = masked_bias(self, attn_bias, x_dst, edge_index, batch,
                                          self._num_loops(x_src, x_dst), check=not traced)
        want_alpha = bool(return_attention_weights)
        result = None
        if not self._reference_only():
            result = kernels.attend(self._kernel_view(x_src, x_dst), x_src, x_dst, edge_index,
                                    edge_attr, batch, attn_bias, sizes, want_alpha)
        if result is None:
            result = self._reference(x_src, x_dst, edge_index, edge_attr, batch, attn_bias,
                                     sizes)
        out, weights = result  # (N_t, H, C), (index [2, P], alpha [P, H]) or None
        index, alpha = weights if weights is not None else (None, None)
        if dead is not None:  # (N_t, H): every score -inf, so the node attends to nothing
            out = out.masked_fill(dead.unsqueeze(-1), 0.0)
            if alpha is not None:
                alpha = alpha.masked_fill(dead[index[1]], 0.0)

        H, C = self.heads, self.out_channels
        out = out.reshape(-1, H * C) if self.concat else out.mean(dim=1)  # (N_t, H*C | C)
        if self.lin_skip is not None:
            out = out + self.lin_skip(x_dst)
        if self.lin_res is not None:
            out = out + self.lin_res(x_dst)
        if self.bias is not None:
            out = out + self.bias
        if return_attention_weights:
            if layout is not None:  # the weights as a sparse [N_t, N_s, H] of that layout
                adj = GF.sparse_weights(index, alpha, x_dst.size(0), x_src.size(0), layout)
                return out, (adj, adj.values())
            return out, (index, alpha)
        return out

    def _reference_only(self) -> bool:
        """Whether this call must take the reference path: asked for, PyG's explain mode,
        or message-passing hooks (they read the per-edge messages)."""
        return self.impl == "reference" or bool(self.explain) or \
            any(getattr(self, name) for name in _HOOKS)

    def _kernel_view(self, x_src: Tensor, x_dst: Tensor) -> kernels.Layer:
        """What the kernels read of this layer in this call."""
        return kernels.Layer(
            self.heads, self.out_channels, self.mask, self.score, self.impl, self.lin_query,
            self.lin_key, self.lin_value, self.lin_edge, self.att, self.edge_bias,
            self.dropout if self.training else 0.0, self.negative_slope,
            self._num_loops(x_src, x_dst), self._loop_attr, self.max_full_pairs)

    def _reference(self, x_src, x_dst, edge_index, edge_attr, batch, attn_bias, sizes):
        """The reference path: project, gather per pair, segment softmax, scatter
        (:meth:`propagate` and :meth:`message`). ``[N_t, H, C]`` and ``(index, alpha)``."""
        H, C = self.heads, self.out_channels
        q = self.lin_query(x_dst).view(-1, H, C)  # (N_t, H, C)
        k = self.lin_key(x_src).view(-1, H, C)  # (N_s, H, C)
        v = self.lin_value(x_src).view(-1, H, C)
        if self.mask == "adjacency":  # in-neighbours, then self loops
            if attn_bias is not None and attn_bias.dim() == 1:
                attn_bias = attn_bias.unsqueeze(-1)  # (E, 1)
            if self.add_self_loops:
                edge_index, edge_attr, attn_bias = GF.add_self_loops(
                    edge_index, self._num_loops(x_src, x_dst), x_dst.size(0), edge_attr,
                    attn_bias, self._loop_attr)
            edge_emb = None
            if self.lin_edge is not None and edge_attr is not None:
                edge_emb = self.lin_edge(edge_attr).view(-1, H, C)  # (E, H, C)
            index, bias, n = edge_index, attn_bias, (x_src.size(0), x_dst.size(0))
        else:  # every pair of nodes of a graph, edges as a score bias
            if sizes is None:  # traced: check_full_pairs left the counting to the kernels
                sizes = GF.graph_sizes(batch, x_dst.size(0)).to(x_dst.device)
            index, pair_graph = GF.full_pair_index(sizes)  # (2, P), (P)
            edge_bias = GF.full_edge_bias(self.edge_bias, self.lin_edge, edge_index,
                                          edge_attr)  # (E, H)
            edge_bias = edge_bias.to(q.dtype) if edge_bias is not None else None
            bias = GF.full_pair_bias(edge_bias, edge_index, batch, attn_bias, index,
                                     pair_graph, sizes, H)  # (P, H)
            edge_emb, n = None, (q.size(0), q.size(0))
        out = self.propagate(index, q=q, k=k, v=v, edge_emb=edge_emb, score_bias=bias, size=n)
        alpha, self._alpha = self._alpha, None
        return out, (index, alpha)

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
