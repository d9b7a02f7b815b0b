"""LinearGlobalAttention: fully connected attention in O(N) time and memory."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn import Parameter
from torch_geometric.nn.dense.linear import Linear
from torch_geometric.nn.inits import zeros
from torch_geometric.utils import to_dense_batch

from graphattn.nn import functional as GF
from graphattn.nn._checks import check_features, check_layer_sizes
from graphattn.nn.dropout import dropout


class _EluPlusOne(torch.autograd.Function):
    """``elu(x) + 1`` whose backward reads only the output: ``phi' = min(phi, 1)`` (``1``
    where ``x > 0``, ``exp(x) = phi`` elsewhere): one multiply instead of torch's
    ``elu_backward``, which recomputes the exponential."""

    @staticmethod
    def forward(ctx, x):
        y = F.elu(x).add_(1.0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * y.clamp(max=1.0)


def feature_map(x: Tensor) -> Tensor:
    r"""The positive kernel feature map :math:`\phi(x) = \mathrm{elu}(x) + 1`."""
    return _EluPlusOne.apply(x)


def _phi(x: Tensor) -> Tensor:
    """``elu(x) + 1`` outside autograd, as a contiguous ``[N, H * C]`` tensor."""
    return F.elu(x.reshape(x.size(0), -1)).add_(1.0)


class _OneGraphAttention(torch.autograd.Function):
    r"""Linear attention over one graph of all heads, from the packed projection
    ``qkv`` :math:`(N, 3HC)` (query, key, value of each node side by side) to
    :math:`(N, HC)`, with a hand-written backward.

    Per head, with :math:`\mathbf{Q} = \phi(\mathbf{q})`, :math:`\mathbf{K} = \phi(\mathbf{k})`,
    :math:`\mathbf{S} = \mathbf{K}^\top \mathbf{V}` (:math:`C \times C`),
    :math:`\mathbf{z} = \mathbf{K}^\top \mathbf{1}` and :math:`d = \mathbf{Q}\mathbf{z}`:
    :math:`\mathbf{o} = \mathbf{Q}\mathbf{S} / d`. Given :math:`\mathbf{g} = \partial L /
    \partial \mathbf{o}` and :math:`\mathbf{t} = \mathbf{g}\mathbf{S}^\top`, the per-node
    dot :math:`\mathbf{g}\cdot\mathbf{o} = \mathbf{Q}\cdot\mathbf{t} / d` gives

    .. math::
        \partial\mathbf{Q} = (\mathbf{t} - (\mathbf{g}\cdot\mathbf{o})\,\mathbf{z}^\top) / d,
        \quad \partial\mathbf{S} = \mathbf{Q}^\top (\mathbf{g} / d), \quad
        \partial\mathbf{z} = -\mathbf{Q}^\top ((\mathbf{g}\cdot\mathbf{o}) / d),
        \quad \partial\mathbf{K} = \mathbf{V}\,\partial\mathbf{S}^\top +
        \mathbf{1}\,\partial\mathbf{z}^\top, \quad
        \partial\mathbf{V} = \mathbf{K}\,\partial\mathbf{S}

    so neither the output nor the numerator is stored: only ``qkv`` (the feature maps are
    recomputed, one pass each) and the :math:`C \times C` sums. All heads run in one
    :math:`[N, HC]` GEMM against block-diagonal :math:`[HC, HC]` matrices (on a CPU far faster
    than :math:`H` small ``bmm`` over permuted copies).
    """

    @staticmethod
    def forward(ctx, qkv: Tensor, heads: int) -> Tensor:
        N, HC = qkv.size(0), qkv.size(1) // 3
        C = HC // heads
        q, k, v = qkv[:, :HC], qkv[:, HC:2 * HC], qkv[:, 2 * HC:]  # (N, HC) views
        blocks = torch.block_diag(*qkv.new_ones(heads, C, C))  # (HC, HC), head blocks of 1
        pk = _phi(k)
        kv = (pk.t() @ v).mul_(blocks)  # S of each head on the diagonal blocks
        z = pk.sum(0)  # (HC)
        del pk
        pq = _phi(q)
        den = pq @ (z.unsqueeze(1) * blocks[:, ::C])  # (N, H): phi(q_i) . z per head
        out = pq @ kv  # (N, HC)
        del pq
        out.view(N, heads, C).div_(den.unsqueeze(-1))
        ctx.save_for_backward(qkv, kv, z, den)
        ctx.heads = heads
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g: Tensor) -> tuple[Tensor, None]:
        qkv, kv, z, den = ctx.saved_tensors
        H = ctx.heads
        N, HC = qkv.size(0), qkv.size(1) // 3
        C = HC // H
        q, k, v = qkv[:, :HC], qkv[:, HC:2 * HC], qkv[:, 2 * HC:]
        blocks = torch.block_diag(*qkv.new_ones(H, C, C))
        g = g.contiguous()
        grad = torch.empty_like(qkv)  # (N, 3HC): dq, dk, dv side by side
        pq = _phi(q)
        t = (g @ kv.t()).view(N, H, C)  # g S^T per head
        go = (pq.view(N, H, C) * t).sum(-1).div_(den)  # (N, H): g . o
        d_kv = (pq.t() @ (g.view(N, H, C) / den.unsqueeze(-1)).view(N, HC)).mul_(blocks)
        # as ([H, N] @ [N, HC]).t(): BLAS runs [HC, N] @ [N, H] far slower for large N
        d_z = (((go / den).t() @ pq).t() * blocks[:, ::C]).sum(1).neg_()  # (HC)
        t.addcmul_(go.unsqueeze(-1), z.view(1, H, C), value=-1.0).div_(den.unsqueeze(-1))
        torch.mul(t.view(N, HC), pq.clamp_(max=1.0), out=grad[:, :HC])  # dq = dQ phi'(q)
        del pq, t
        pk = _phi(k)
        grad[:, 2 * HC:] = pk @ d_kv  # dV = K dS
        gk = (v @ d_kv.t()).add_(d_z)  # dK = V dS^T + 1 dz^T
        torch.mul(gk, pk.clamp_(max=1.0), out=grad[:, HC:2 * HC])  # dk = dK phi'(k)
        return grad, None


class LinearGlobalAttention(torch.nn.Module):
    r"""Kernelised fully connected self-attention over each graph, linear in its size.

    The softmax kernel :math:`\exp(\mathbf{q}^\top \mathbf{k})` of full attention is
    replaced by :math:`\phi(\mathbf{q})^\top \phi(\mathbf{k})` with the positive feature map
    :math:`\phi(x) = \mathrm{elu}(x) + 1` ("Transformers are RNNs", Katharopoulos et al.,
    2020), so the sum over all nodes of a graph factorises:

    .. math::
        \mathbf{x}'_i = \mathbf{W}_s \mathbf{x}_i + \big\Vert_{h=1}^{H}
        \sum_{j \in \mathcal{G}(i)} \alpha^h_{ij} \mathbf{v}^h_j
        = \mathbf{W}_s \mathbf{x}_i + \big\Vert_{h=1}^{H}
        \frac{\phi(\mathbf{q}^h_i)^\top \sum_{j} \phi(\mathbf{k}^h_j) \mathbf{v}^{h\top}_j}
             {\phi(\mathbf{q}^h_i)^\top \sum_{j} \phi(\mathbf{k}^h_j)},
        \qquad
        \alpha^h_{ij} = \frac{\phi(\mathbf{q}^h_i)^\top \phi(\mathbf{k}^h_j)}
        {\sum_{l \in \mathcal{G}(i)} \phi(\mathbf{q}^h_i)^\top \phi(\mathbf{k}^h_l)}

    where :math:`\mathcal{G}(i)` is every node of :math:`i`'s graph. The per-graph sums
    :math:`\sum_j \phi(\mathbf{k}_j)\mathbf{v}_j^\top` (``[B, H, C, C]``) are built once, so
    time and memory are :math:`O(N H C^2)` instead of :math:`O(\sum_b N_b^2)`: this is the
    global attention that scales to graphs of millions of nodes, where softmax full
    attention cannot. As in :class:`~graphattn.nn.GraphSelfAttention`, ``batch`` separates
    graphs and nothing is attended across them.

    It has the call signature of :class:`~graphattn.nn.GraphSelfAttention` so the two are
    interchangeable; ``edge_index``, ``edge_attr`` and ``attn_bias`` are accepted and ignored
    (structure enters through a local branch or encodings, see
    :class:`~graphattn.nn.GraphTransformerLayer`).

    Args:
        in_channels (int): Size of each input sample, or ``-1`` to infer it lazily.
        out_channels (int): Channels per head, :math:`C`.
        heads (int): Number of heads, :math:`H`. (default: ``1``)
        concat (bool): Concatenate (``H * C``) or average (``C``) the heads.
            (default: ``True``)
        dropout (float): Dropout on the attention output. (default: ``0.0``)
        bias (bool): Learn additive biases in the projections. (default: ``True``)
        root_weight (bool): Add the skip :math:`\mathbf{W}_s \mathbf{x}_i`. (default: ``True``)
        max_weight_pairs (int): ``return_attention_weights=True`` builds the explicit
            :math:`O(\sum_b N_b^2)` weights; refused above this many. (default: ``2**24``)

    Shapes:
        - **input:** node features :math:`(N, F)`, batch vector :math:`(N)` *(optional)*.
        - **output:** node features :math:`(N, H C)` or :math:`(N, C)`; with
          ``return_attention_weights=True`` also ``(index, alpha)`` over every pair of nodes
          of the same graph, ``index`` :math:`(2, P)` (source, target), ``alpha`` :math:`(P, H)`.
    """

    def __init__(self, in_channels: int, out_channels: int, heads: int = 1,
                 concat: bool = True, dropout: float = 0.0, bias: bool = True,
                 root_weight: bool = True, max_weight_pairs: int = 2**24) -> None:
        super().__init__()
        check_layer_sizes(heads, out_channels, dropout)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.heads = heads
        self.concat = concat
        self.dropout = dropout
        self.root_weight = root_weight
        self.max_weight_pairs = max_weight_pairs
        self.lin_qkv = Linear(in_channels, 3 * heads * out_channels, bias=bias)
        out_dim = heads * out_channels if concat else out_channels
        self.lin_skip = Linear(in_channels, out_dim, bias=bias) if root_weight else None
        self.bias = Parameter(torch.empty(out_dim)) if bias and not root_weight else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.lin_qkv.reset_parameters()
        if self.lin_skip is not None:
            self.lin_skip.reset_parameters()
        if self.bias is not None:
            zeros(self.bias)

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor | None = None,
        edge_attr: Tensor | None = None,
        batch: Tensor | None = None,
        attn_bias: Tensor | None = None,
        return_attention_weights: bool | None = None,
    ) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
        """Attend to every node of the same graph; see the class docstring."""
        check_features("x", x, self.in_channels)
        N, H, C = x.size(0), self.heads, self.out_channels
        if batch is not None and (batch.dim() != 1 or batch.numel() != N):
            raise ValueError(f"batch must have shape [num_nodes] = [{N}], "
                             f"got {list(batch.shape)}")
        if batch is None:
            batch = torch.zeros(N, dtype=torch.long, device=x.device)
        elif N > 1 and bool((batch[1:] < batch[:-1]).any()):
            raise ValueError("batch must be sorted (nodes of each graph stored together, "
                             "as torch_geometric.data.Batch does)")
        if N == 0:
            out = x.new_zeros(0, H * C if self.concat else C)
            return (out, (batch.new_zeros(2, 0), x.new_zeros(0, H))) if return_attention_weights \
                else out
        qkv = self.lin_qkv(x)  # (N, 3HC): q, k, v of each node side by side
        if bool(batch[0] == batch[-1]):  # one graph (the large-graph case): no padding
            wide = qkv.dtype in GF.LOW_PRECISION  # autocast: the N-long sums in float32
            with GF.float32_region(qkv.device.type, wide):
                out = _OneGraphAttention.apply(*GF.widen(qkv), H)  # (N, HC)
        else:  # padded per-graph layout, so no (N, H, C, C) tensor is ever formed
            q, k, v = qkv.view(N, 3, H, C).unbind(1)  # 3 x (N, H, C)
            q, k = feature_map(q), feature_map(k)
            dense, mask = to_dense_batch(torch.cat([q, k, v], -1).view(N, -1), batch)
            qd, kd, vd = dense.view(*mask.shape, H, 3 * C).split(C, dim=-1)  # (B, L, H, C)
            kv = torch.einsum("blhc,blhd->bhcd", kd, vd)  # (B, H, C, C)
            k_sum = kd.sum(1)  # (B, H, C); padded rows are 0 (to_dense_batch fills with 0)
            num = torch.einsum("blhc,bhcd->blhd", qd, kv)[mask]  # (N, H, C)
            den = torch.einsum("blhc,bhc->blh", qd, k_sum)[mask].unsqueeze(-1)
            out = (num / den).view(N, H * C)
        out = dropout(out, self.dropout, self.training)

        if not self.concat:
            out = out.view(N, H, C).mean(dim=1)
        if self.lin_skip is not None:
            out = out + self.lin_skip(x)
        if self.bias is not None:  # in place when nothing saved the output (not on a view:
            # autograd would copy the whole base tensor for that)
            out = out.add_(self.bias) if out._base is None else out + self.bias
        if return_attention_weights:
            q, k = qkv.view(N, 3, H, C).unbind(1)[:2]
            return out, self._weights(feature_map(q), feature_map(k), batch)
        return out

    def _weights(self, q: Tensor, k: Tensor, batch: Tensor) -> tuple[Tensor, Tensor]:
        """Explicit weights on every pair of the same graph (small graphs only)."""
        sizes = torch.bincount(batch) if batch.numel() else batch.new_zeros(0)
        pairs = int((sizes * sizes).sum()) * self.heads
        if pairs > self.max_weight_pairs:
            raise ValueError(f"return_attention_weights would build {pairs:,} weights, more "
                             f"than max_weight_pairs={self.max_weight_pairs:,}: linear "
                             "attention never forms them; inspect a smaller graph")
        index, _ = GF.full_pair_index(sizes)
        s = (q[index[1]] * k[index[0]]).sum(-1)  # (P, H)
        den = torch.zeros(q.size(0), self.heads, dtype=s.dtype, device=s.device)
        den.index_add_(0, index[1], s)
        return index, s / den[index[1]]

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"heads={self.heads})")
