"""Full attention of every graph of a batch as dense, size-bucketed batched attention.

Graphs are sorted by size and grouped into buckets of similar size; each bucket is padded
to its largest graph only, so a batch of 10-40-node molecules wastes far less than one
``to_dense_batch`` to the largest graph. All buckets live in one flat *slot* buffer, filled
by a single ``index_copy`` of the node rows and read back by a single ``index_select``, so
autograd keeps one scatter and one gather per call. Each bucket then runs
:func:`torch.nn.functional.scaled_dot_product_attention` (no score bias, no dropout: the
fused flash kernel, which never stores the ``n x n`` scores) on large graphs, and a batched
``bmm -> softmax -> bmm`` otherwise: on small graphs (molecules) it beats the flash kernel
forward and backward, and it is the path for a learned bias that needs gradients, dropout,
and returned attention weights.

Shapes: ``N`` nodes, ``B`` graphs, ``H`` heads, ``C`` channels per head, ``n`` padded size
of a bucket, ``P = sum_b N_b**2`` attended pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

BUCKET_GROWTH = 1.25  # a bucket holds graphs of n_max / 1.25 < size <= n_max (padding <56%)
BUCKET_SCORES = 2**22  # at most this many scores B_g * H * n**2 per bucket call (memory)
FLASH_MIN_NODES = 128  # buckets this large use torch's fused (flash) kernel when allowed


@dataclass
class Buckets:
    """Where every node and every pair of a batch sits in the padded buckets.

    Attributes:
        sizes: ``[B]`` nodes per graph.
        slot: ``[N]`` row of each node in the flat buffer of all buckets.
        graphs: per bucket, ``[B_g]`` the graphs it holds (batch order within a bucket).
        n: per bucket, its padded size.
        start: per bucket, its first row in the flat buffer.
        pair_start: per bucket, its first score in the flat ``[T]`` score buffer
            (``T = H * sum_g B_g n_g**2``, layout ``[B_g, H, n, n]`` per bucket).
    """

    sizes: Tensor
    slot: Tensor
    graph_bucket: Tensor
    graph_row: Tensor
    graphs: list[Tensor]
    n: list[int]
    start: list[int]
    pair_start: list[int]
    heads: int

    @property
    def num_slots(self) -> int:
        return self.start[-1] + self.graphs[-1].numel() * self.n[-1] if self.n else 0

    @property
    def num_scores(self) -> int:
        if not self.n:
            return 0
        return self.pair_start[-1] + self.graphs[-1].numel() * self.heads * self.n[-1] ** 2

    @staticmethod
    def build(sizes: Tensor, batch: Tensor | None, heads: int,
              growth: float = BUCKET_GROWTH, max_scores: int = BUCKET_SCORES) -> Buckets:
        sizes = sizes.long()
        B, device = sizes.numel(), sizes.device
        order = torch.argsort(sizes, stable=True)
        sorted_sizes = sizes[order].tolist()
        graphs, ns, bounds = [], [], []
        i = sum(1 for s in sorted_sizes if s == 0)  # empty graphs take no bucket
        while i < B:  # grow a bucket downwards from its largest graph
            j = i
            while j < B and sorted_sizes[j] * 1.0 <= sorted_sizes[i] * growth:
                j += 1
            n = sorted_sizes[j - 1]
            # split the bucket so one call's scores stay under max_scores
            per_call = max(1, max_scores // (heads * n * n))
            for a in range(i, j, per_call):
                bounds.append((a, min(a + per_call, j)))
                ns.append(n)
            i = j
        graph_bucket = torch.full((B,), -1, dtype=torch.long)
        graph_row = torch.zeros(B, dtype=torch.long)
        starts, pair_starts, s, p = [], [], 0, 0
        for g, ((a, b), n) in enumerate(zip(bounds, ns)):
            members = order[a:b].sort().values  # keep batch order inside a bucket
            graphs.append(members.to(device))
            graph_bucket[members] = g
            graph_row[members] = torch.arange(b - a)
            starts.append(s)
            pair_starts.append(p)
            s += (b - a) * n
            p += (b - a) * heads * n * n
        graph_bucket, graph_row = graph_bucket.to(device), graph_row.to(device)
        n_of = torch.tensor(ns + [0], dtype=torch.long, device=device)[graph_bucket]
        start_of = torch.tensor(starts + [0], dtype=torch.long, device=device)[graph_bucket]
        ptr = torch.cumsum(sizes, 0) - sizes
        N = int(sizes.sum())
        batch = torch.zeros(N, dtype=torch.long, device=device) if batch is None else batch
        local = torch.arange(N, device=device) - ptr[batch]
        slot = start_of[batch] + graph_row[batch] * n_of[batch] + local
        return Buckets(sizes, slot, graph_bucket, graph_row, graphs, ns, starts, pair_starts,
                       heads)

    def score_position(self, src: Tensor, dst: Tensor, batch: Tensor | None) -> Tensor:
        """Flat position of the score of target ``dst`` attending to source ``src`` (same
        graph) for head 0 in the ``[T]`` score buffer; head ``h`` is at ``+ h * n * n``.
        Returns ``[E]`` positions and ``[E]`` the ``n * n`` stride of each."""
        sizes = self.sizes
        ptr = torch.cumsum(sizes, 0) - sizes
        g = torch.zeros_like(dst) if batch is None else batch[dst]
        bucket = self.graph_bucket[g]
        n = torch.tensor(self.n, dtype=torch.long, device=dst.device)[bucket]
        pair_start = torch.tensor(self.pair_start, dtype=torch.long, device=dst.device)[bucket]
        i, j = dst - ptr[g], src - ptr[g]
        pos = pair_start + self.graph_row[g] * self.heads * n * n + i * n + j
        return pos, n * n

    def scatter_scores(self, values: Tensor, src: Tensor, dst: Tensor,
                       batch: Tensor | None) -> Tensor:
        """Sum ``values [E, H]`` at their pairs into a zero ``[T]`` score buffer."""
        pos, stride = self.score_position(src, dst, batch)
        H = self.heads
        pos = (pos.unsqueeze(-1) + stride.unsqueeze(-1) * torch.arange(H, device=pos.device))
        return values.new_zeros(self.num_scores).index_add_(0, pos.flatten(),
                                                             values.reshape(-1))

    def bucket_scores(self, flat: Tensor, g: int) -> Tensor:
        """Bucket ``g``'s ``[B_g, H, n, n]`` view of a flat ``[T]`` score buffer."""
        n, b = self.n[g], self.graphs[g].numel()
        start = self.pair_start[g]
        return flat[start:start + b * self.heads * n * n].view(b, self.heads, n, n)


def full_attention(q: Tensor, kv: Tensor, buckets: Buckets,
                   bias: Tensor | None = None, attn_bias: Tensor | None = None,
                   noise: Tensor | None = None, want_probs: bool = False
                   ) -> tuple[Tensor, Tensor | None]:
    r"""Dot-product attention within each graph, bucket by bucket.

    Args:
        q: ``[N, H, C]``; kv: ``[N, 2, H, C]`` keys and values (as the layer computes them).
        buckets: from :meth:`Buckets.build`.
        bias: ``[T]`` flat score bias (from :meth:`Buckets.scatter_scores`) or ``None``.
        attn_bias: ``[B, N_max, N_max]`` or ``[B, H, N_max, N_max]`` padded dense bias or
            ``None``.
        noise: ``[T]`` flat dropout keep-mask divided by ``1 - p``, or ``None``.
        want_probs: also return the attention weights as a flat ``[T]`` buffer.

    Returns:
        ``[N, H, C]`` and the flat weights (or ``None``).
    """
    N, H, C = q.shape
    if N == 0 or not buckets.n:
        return q.new_zeros(N, H, C), (q.new_zeros(buckets.num_scores) if want_probs else None)
    S = buckets.num_slots
    qkv = torch.cat([q.unsqueeze(1), kv], 1).view(N, 3 * H * C)  # (N, [q | k | v])
    slots = q.new_zeros(S, 3 * H * C).index_copy_(0, buckets.slot, qkv)
    # split/unbind (not slicing): their backward is one cat/stack, not a zero-filled
    # buffer per view
    parts = slots.split([g.numel() * n for g, n in zip(buckets.graphs, buckets.n)])
    outs, probs = [], []
    scale = C ** -0.5
    for g, (graphs, part) in enumerate(zip(buckets.graphs, parts)):
        n, b = buckets.n[g], graphs.numel()
        qg, kg, vg = (t.transpose(1, 2) for t in part.view(b, n, 3, H, C).unbind(2))
        mask = None  # (b, H | 1, n | 1, n) additive
        sizes = buckets.sizes[graphs]
        if bool((sizes < n).any()):  # key padding
            pad = torch.arange(n, device=q.device) >= sizes.unsqueeze(-1)  # (b, n)
            mask = q.new_zeros(b, 1, 1, n).masked_fill_(pad.view(b, 1, 1, n), float("-inf"))
        if bias is not None:
            mask = buckets.bucket_scores(bias, g) if mask is None else \
                mask + buckets.bucket_scores(bias, g)
        if attn_bias is not None:
            ab = attn_bias.index_select(0, graphs)[..., :n, :n]
            ab = ab.unsqueeze(1) if ab.dim() == 3 else ab
            mask = ab if mask is None else mask + ab
        flash = (n >= FLASH_MIN_NODES and not want_probs and noise is None
                 and (mask is None or not mask.requires_grad))
        if flash:  # memory-efficient on large graphs; slower than bmm on small ones
            o = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=mask)
        else:
            s = torch.matmul(qg, kg.transpose(-1, -2)).mul_(scale)  # (b, H, n, n)
            if mask is not None:
                s = s + mask
            p = torch.softmax(s, -1)
            if want_probs:
                probs.append(p.reshape(-1))
            if noise is not None:
                p = p * buckets.bucket_scores(noise, g)
            o = torch.matmul(p, vg)
        outs.append(o.transpose(1, 2).reshape(b * n, H * C))  # (b n, H C)
    out = torch.cat(outs).index_select(0, buckets.slot).view(N, H, C)
    return out, (torch.cat(probs) if want_probs else None)
