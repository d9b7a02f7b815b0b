"""Soft modularity: a differentiable community prior for semi-supervised node labels."""

from __future__ import annotations

import torch
from torch import Tensor

from graphattn.nn._checks import check_edge_index


def soft_modularity(prob: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
    r"""Newman's modularity of a soft assignment of nodes to communities.

    With :math:`\mathbf{S} \in [0, 1]^{N \times K}` the community probabilities of each
    node, :math:`w_{ji}` the weight of edge :math:`j \to i`, :math:`W = \sum w_{ji}` the
    total weight and :math:`\mathbf{d}^{out}`, :math:`\mathbf{d}^{in}` the weighted out- and
    in-degrees:

    .. math::
        Q(\mathbf{S}) = \frac{1}{W} \sum_{(j, i) \in \mathcal{E}} w_{ji}\,
        \mathbf{s}_i^\top \mathbf{s}_j
        - \Big(\frac{\mathbf{S}^\top \mathbf{d}^{out}}{W}\Big)^\top
          \Big(\frac{\mathbf{S}^\top \mathbf{d}^{in}}{W}\Big),

    the fraction of edge weight inside communities minus its expectation for random edges
    with the same degrees, in :math:`O(EK)` from the edge list. An undirected graph stored
    with both directions of each edge (PyG's convention) has :math:`W = 2m` and
    :math:`\mathbf{d}^{out} = \mathbf{d}^{in} = \mathbf{d}`, which gives Newman's
    :math:`\frac{1}{2m}\operatorname{tr}(\mathbf{S}^\top(\mathbf{A} - \mathbf{d}
    \mathbf{d}^\top / 2m)\mathbf{S})` (DMoN's spectral loss, Tsitsulin et al., 2023, without
    its collapse term); a directed one gives Leicht and Newman's directed modularity. For
    one-hot rows it equals :func:`networkx.algorithms.community.modularity` of the
    partition; it lies in :math:`[-\frac{1}{2}, 1]`.

    Communities of a social network are dense subgraphs, so a semi-supervised loss
    ``cross_entropy - weight * soft_modularity(softmax(logits), edge_index)`` lets the
    unlabelled nodes shape the classes. It is a prior for few labels: it helps most with one
    label per community (``examples/karate_club.py``) and no longer when 10% of a
    100k-node graph is labelled (``benchmarks/results/social.md`` has the figures).

    Args:
        prob (torch.Tensor): Community probabilities :math:`(N, K)` (rows summing to one,
            e.g. a softmax).
        edge_index (torch.Tensor): Edges :math:`(2, E)` among the :math:`N` nodes.
        edge_weight (torch.Tensor, optional): Non-negative edge weights :math:`(E)`.
            (default: ``None``: all one)

    Returns:
        A scalar tensor, differentiable in ``prob``; ``0`` for a graph with no edges.
    """
    if not isinstance(prob, Tensor) or prob.dim() != 2 or not prob.is_floating_point():
        got = list(prob.shape) if isinstance(prob, Tensor) else type(prob).__name__
        raise ValueError(f"prob must be a float tensor of shape [num_nodes, num_communities], "
                         f"got {got}")
    n = prob.size(0)
    src, dst = check_edge_index(edge_index, n, n)
    w = prob.new_ones(src.numel()) if edge_weight is None else edge_weight.to(prob.dtype)
    if w.shape != src.shape:
        raise ValueError(f"edge_weight must have shape [{src.numel()}] (one per edge), "
                         f"got {list(w.shape)}")
    if bool((w < 0).any()):
        raise ValueError("edge_weight must be non-negative")
    total = w.sum()  # W
    if total == 0:  # no edges (or only weightless ones): no community structure to reward
        return prob.sum() * 0.0
    zeros = torch.zeros(n, dtype=prob.dtype, device=prob.device)
    out_mass = zeros.index_add(0, src, w) @ prob / total  # (K): S^T d_out / W
    in_mass = zeros.index_add(0, dst, w) @ prob / total
    within = (w * (prob[src] * prob[dst]).sum(-1)).sum() / total
    return within - (out_mass * in_mass).sum()
