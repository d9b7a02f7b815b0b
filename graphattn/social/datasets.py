"""Labelled social graphs: Zachary's karate club, planted-partition generators, PyG data sets.

Every function returns one :class:`~torch_geometric.data.Data` with ``x``, an undirected
``edge_index`` (both directions stored, no self loops, no duplicate edges), ``y`` and boolean
``train_mask``/``val_mask``/``test_mask`` from :func:`split_masks`. Everything random takes a
``seed``: same seed, same graph, features and masks.

Generated node features (:func:`stochastic_block_model`, :func:`degree_corrected_sbm`,
:func:`lfr_benchmark`) are *informative but noisy*: node ``i`` gets ``x_i = c_{y_i} + σ
ε_i`` with ``ε_i ~ N(0, I)``, where the class centre ``c_k`` is the one-hot vector ``e_k``
when ``feature_dim >= num_classes`` and otherwise a random unit vector (seeded). With ``σ =
feature_noise = 1`` a per-node classifier on two classes is right only about 76% of the time
(``Φ(1/(σ√2))``), so a model gains by averaging over neighbours, which mostly share the
class.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence

import networkx as nx
import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.utils import coalesce, remove_self_loops, to_undirected

from graphattn.social.convert import from_networkx

__all__ = [
    "LFR_MAX_NODES",
    "SOCIAL_DATASETS",
    "degree_corrected_sbm",
    "karate_club",
    "lfr_benchmark",
    "pyg_social",
    "split_masks",
    "stochastic_block_model",
]


# ---------------------------------------------------------------------------- splits

def split_masks(y: Tensor, train: float = 0.1, val: float = 0.1, seed: int = 0,
                num_train_per_class: int | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Stratified random train/val/test node masks.

    In every class of ``n_c`` nodes, ``max(1, round(train * n_c))`` nodes go to training (or
    ``min(num_train_per_class, n_c)`` when given), ``round(val * n_c)`` of the others to
    validation and the rest to test. Nodes with a negative label are in no mask. Vectorised:
    fine for millions of nodes.

    Returns:
        ``(train_mask, val_mask, test_mask)``, each a ``[N]`` bool tensor; disjoint.
    """
    if not (0 <= train <= 1 and 0 <= val <= 1 and train + val <= 1):
        raise ValueError(f"train and val must be fractions with train + val <= 1, "
                         f"got train={train}, val={val}")
    if num_train_per_class is not None and num_train_per_class < 0:
        raise ValueError(f"num_train_per_class must be >= 0, got {num_train_per_class}")
    if y.dim() != 1 or y.dtype != torch.long:
        raise ValueError(f"y must be a [N] long tensor of class indices, got shape "
                         f"{list(y.shape)} and dtype {y.dtype}")
    n = y.numel()
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=g)
    order = perm[torch.sort(y[perm], stable=True).indices]  # by class, random within class
    labelled = y[order] >= 0
    order, cls = order[labelled], y[order][labelled]
    sizes = torch.bincount(cls) if cls.numel() else torch.zeros(0, dtype=torch.long)
    starts = torch.cumsum(sizes, 0) - sizes
    rank = torch.arange(cls.numel()) - starts[cls]  # position inside the node's class
    size = sizes[cls].double()
    if num_train_per_class is None:
        n_train = torch.clamp(torch.round(train * size), min=1)
    else:
        n_train = torch.clamp(size, max=num_train_per_class)
    n_val = torch.minimum(torch.round(val * size), size - n_train)
    masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
    masks[0][order[rank < n_train]] = True
    masks[1][order[(rank >= n_train) & (rank < n_train + n_val)]] = True
    masks[2][order[rank >= n_train + n_val]] = True
    return masks[0], masks[1], masks[2]


def _with_masks(data: Data, train: float, val: float, seed: int,
                num_train_per_class: int | None = None) -> Data:
    data.train_mask, data.val_mask, data.test_mask = split_masks(
        data.y, train, val, seed, num_train_per_class)
    return data


# ---------------------------------------------------------------------------- karate club

def karate_club(labels: str = "faction", features: str = "identity", weighted: bool = False,
                num_train_per_class: int = 1, val: float = 0.2, seed: int = 0) -> Data:
    """Zachary's karate club: 34 members, 78 friendships (156 directed edges).

    Args:
        labels (str): ``"faction"``: the two groups the club split into (networkx's ``club``
            attribute; ``data.classes == ["Mr. Hi", "Officer"]``), or ``"community"``: the
            four modularity communities PyG's :class:`~torch_geometric.datasets.KarateClub`
            ships (``data.classes == [0, 1, 2, 3]``).
        features (str): ``"identity"`` (one-hot member, as in PyG), ``"degree"`` or
            ``"constant"``.
        weighted (bool): add the interaction counts of networkx's ``weight`` as
            ``edge_attr`` ``[156, 1]``.
        num_train_per_class (int): labelled training members per class. The default, one per
            class, follows PyG's KarateClub (4 for communities, 2 for factions) but picks them
            at random with ``seed`` instead of the first member of each class.
        val (float): fraction of each class for validation; the rest is test.
        seed (int): seed of the split.
    """
    if labels not in ("faction", "community"):
        raise ValueError(f"labels must be 'faction' or 'community', got {labels!r}")
    G = nx.karate_club_graph()
    if labels == "community":
        from torch_geometric.datasets import KarateClub
        for v, c in zip(G.nodes, KarateClub()[0].y.tolist()):
            G.nodes[v]["community"] = c
    data = from_networkx(G, label="club" if labels == "faction" else "community",
                         features=[], default_features=features,
                         edge_weight="weight" if weighted else None)
    return _with_masks(data, 0.0, val, seed, num_train_per_class)


# ---------------------------------------------------------------------------- edge sampler

def _sample_edges(counts: Tensor, pairs: Tensor, draw: Callable[[Tensor], tuple[Tensor, Tensor]],
                  group_of: Callable[[Tensor, Tensor], Tensor], num_nodes: int,
                  gen: torch.Generator, max_rounds: int = 200,
                  chunk: int = 1 << 22) -> tuple[Tensor, Tensor]:
    """Distinct undirected edges ``(lo < hi)``: ``counts[g]`` of them in every group ``g``.

    ``draw(group_ids)`` gives one candidate edge per entry (endpoints inside that group,
    possibly a self loop or a repeat); ``group_of(lo, hi)`` tells the group of an edge and
    ``pairs[g]`` how many node pairs group ``g`` holds. Each round draws, ``chunk`` candidates
    at a time, enough to fill the deficit of every group (more for nearly full groups), drops
    self loops and edges already present, and keeps a random subset of ``need[g]`` of the new
    distinct edges of an over-full group. With uniform draws inside a group the result is a
    uniformly random set of ``counts[g]`` pairs per group, i.e. an exact G(n, p)-type sample.
    Stops after ``max_rounds`` (only reachable for weighted draws, see
    :func:`degree_corrected_sbm`).
    """
    n, k = num_nodes, counts.numel()
    keys = torch.empty(0, dtype=torch.long)  # lo * n + hi, sorted
    have = torch.zeros(k, dtype=torch.long)
    for _ in range(max_rounds):
        need = counts - have
        if int(need.sum()) == 0:
            break
        ratio = pairs.double() / (pairs - have).double().clamp(min=1)
        dense = (counts > pairs // 8).double()  # oversample where repeats are likely
        draws = (need.double() * ratio * (1 + 0.1 * dense)).ceil().long() + dense.long() * 8
        draws = torch.minimum(draws, 8 * need + 64) * need.gt(0)
        gid = torch.repeat_interleave(torch.arange(k), draws)
        parts = []
        for start in range(0, gid.numel(), chunk):
            u, v = draw(gid[start:start + chunk])
            ok = u != v
            lo, hi = torch.minimum(u[ok], v[ok]), torch.maximum(u[ok], v[ok])
            del u, v, ok
            parts.append(torch.unique(lo.mul_(n).add_(hi)))
            del lo, hi
        del gid
        new = torch.unique(torch.cat(parts)) if len(parts) > 1 else parts[0]
        del parts
        if keys.numel():  # drop edges we already have
            pos = torch.searchsorted(keys, new).clamp_(max=keys.numel() - 1)
            new = new[keys[pos] != new]
            del pos
        grp = group_of(new // n, new % n)
        got = torch.bincount(grp, minlength=k)
        over = got > need
        if bool(over.any()):  # keep a random subset of need[g] new edges per over-full group
            idx = over[grp].nonzero().flatten()
            idx = idx[torch.randperm(idx.numel(), generator=gen)]
            idx = idx[torch.sort(grp[idx], stable=True).indices]
            g = grp[idx]
            sizes = torch.bincount(g, minlength=k)
            rank = torch.arange(idx.numel()) - (torch.cumsum(sizes, 0) - sizes)[g]
            keep = torch.ones(new.numel(), dtype=torch.bool)
            keep[idx[rank >= need[g]]] = False
            new, grp = new[keep], grp[keep]
            got = torch.bincount(grp, minlength=k)
        have += got
        del grp
        keys = torch.sort(torch.cat([keys, new])).values if keys.numel() else new
        del new
    lo = keys // n
    return lo, keys.remainder_(n)


def _finish(lo: Tensor, hi: Tensor, y: Tensor, num_classes: int, feature_dim: int | None,
            feature_noise: float, train: float, val: float, seed: int,
            gen: torch.Generator, shuffle: bool = True) -> Data:
    """Shuffle node ids, store both edge directions, noisy class features and masks."""
    n, m = y.numel(), lo.numel()
    y_out = y
    if shuffle:  # node i of the sampler becomes node perm[i]
        perm = torch.randperm(n, generator=gen)
        y_out = torch.empty_like(y)
        y_out[perm] = y
    edge_index = torch.empty(2, 2 * m, dtype=torch.long)
    for i, ends in enumerate((lo, hi)):
        ends = perm[ends] if shuffle else ends
        edge_index[i, :m] = ends
        edge_index[1 - i, m:] = ends
        del ends
    del lo, hi
    x = _noisy_features(y_out, num_classes, feature_dim, feature_noise, gen)
    data = Data(x=x, edge_index=edge_index, y=y_out, num_nodes=n)
    return _with_masks(data, train, val, seed)


def _noisy_features(y: Tensor, num_classes: int, feature_dim: int | None, noise: float,
                    gen: torch.Generator) -> Tensor:
    if feature_dim is None:
        feature_dim = min(num_classes, 64)
    if feature_dim >= num_classes:
        centres = torch.eye(num_classes, feature_dim)
    else:
        centres = torch.randn(num_classes, feature_dim, generator=gen)
        centres /= centres.norm(dim=1, keepdim=True).clamp(min=1e-12)
    x = torch.randn(y.numel(), feature_dim, generator=gen).mul_(noise)
    return x.add_(centres[y])


def _check_common(num_nodes: int, feature_dim: int | None, feature_noise: float) -> None:
    if not isinstance(num_nodes, int) or num_nodes < 2:
        raise ValueError(f"num_nodes must be an int >= 2, got {num_nodes!r}")
    if feature_dim is not None and feature_dim < 1:
        raise ValueError(f"feature_dim must be >= 1 or None, got {feature_dim}")
    if not (feature_noise >= 0 and math.isfinite(feature_noise)):
        raise ValueError(f"feature_noise must be a finite number >= 0, got {feature_noise}")


# ---------------------------------------------------------------------------- SBM

def stochastic_block_model(
    num_nodes: int,
    num_blocks: int = 4,
    p_in: float | None = None,
    p_out: float | None = None,
    *,
    avg_degree: float = 10.0,
    mixing: float = 0.2,
    block_sizes: Sequence[int] | None = None,
    feature_dim: int | None = None,
    feature_noise: float = 1.0,
    train: float = 0.1,
    val: float = 0.1,
    seed: int = 0,
) -> Data:
    r"""A planted-partition stochastic block model, sampled exactly and vectorised.

    Nodes fall into ``num_blocks`` blocks (sizes as equal as possible, or
    :obj:`block_sizes`); two nodes of one block are linked with probability ``p_in``, of two
    blocks with ``p_out``, independently. Give both probabilities, or neither and get them
    from :obj:`avg_degree` and :obj:`mixing` (the expected fraction of edges joining two
    blocks): :math:`p_{in} = (1-\mu) N \bar d / \sum_b n_b(n_b-1)` and
    :math:`p_{out} = \mu N \bar d / (N^2 - \sum_b n_b^2)`.

    The sampler draws the binomial number of edges of every block pair, then that many
    distinct node pairs uniformly inside it (``torch.randint``-style draws, duplicates and
    self loops redrawn), so no :math:`O(N^2)` work or networkx graph is ever made: one million
    nodes and ten million edges take seconds. Node ids are shuffled so blocks are not
    contiguous; ``y`` is the planted block. Features: see the module docstring.

    Args:
        num_nodes (int): :math:`N`, from 2 to millions.
        num_blocks (int): number of blocks (classes).
        p_in, p_out (float, optional): edge probabilities inside / between blocks.
        avg_degree (float): expected mean degree when the probabilities are not given.
        mixing (float): expected fraction of edges between blocks, in ``[0, 1]``.
        block_sizes (list of int, optional): explicit block sizes summing to ``num_nodes``.
        feature_dim (int, optional): feature size, default ``min(num_blocks, 64)``.
        feature_noise (float): :math:`\sigma` of the Gaussian feature noise.
        train, val (float): stratified split fractions for :func:`split_masks`.
        seed (int): seed of graph, features and masks.

    Returns:
        ``Data(x [N, F], edge_index [2, 2M], y [N], train/val/test_mask [N])`` with
        ``p_in``/``p_out`` and ``block_sizes`` recorded.
    """
    _check_common(num_nodes, feature_dim, feature_noise)
    if block_sizes is None:
        if not 1 <= num_blocks <= num_nodes:
            raise ValueError(f"num_blocks must be in [1, num_nodes={num_nodes}], "
                             f"got {num_blocks}")
        sizes = torch.full((num_blocks,), num_nodes // num_blocks, dtype=torch.long)
        sizes[: num_nodes % num_blocks] += 1
    else:
        sizes = torch.as_tensor(list(block_sizes), dtype=torch.long)
        if sizes.numel() == 0 or int(sizes.min()) < 1 or int(sizes.sum()) != num_nodes:
            raise ValueError(f"block_sizes must be positive and sum to num_nodes={num_nodes}, "
                             f"got {list(block_sizes)}")
    b, n = sizes.numel(), num_nodes
    in_pairs = int((sizes * (sizes - 1)).sum()) // 2
    out_pairs = (n * n - int((sizes * sizes).sum())) // 2
    if (p_in is None) != (p_out is None):
        raise ValueError("give both p_in and p_out, or neither (then avg_degree and mixing "
                         "set them)")
    if p_in is None:
        if not 0 <= mixing <= 1:
            raise ValueError(f"mixing must be in [0, 1], got {mixing}")
        if avg_degree < 0:
            raise ValueError(f"avg_degree must be >= 0, got {avg_degree}")
        m = n * avg_degree / 2
        p_in = (1 - mixing) * m / in_pairs if in_pairs else 0.0
        p_out = mixing * m / out_pairs if out_pairs else 0.0
    for name, p in (("p_in", p_in), ("p_out", p_out)):
        if not 0 <= p <= 1:
            raise ValueError(f"{name} must be a probability in [0, 1], got {p:.4g} (lower "
                             f"avg_degree or change mixing)")

    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    a, c = torch.triu_indices(b, b)  # block pairs a <= c, group g
    na, nc = sizes[a], sizes[c]
    pairs = torch.where(a == c, na * (na - 1) // 2, na * nc)
    probs = np.where((a == c).numpy(), p_in, p_out)
    counts = torch.from_numpy(rng.binomial(pairs.numpy(), probs)).long()
    starts = torch.cumsum(sizes, 0) - sizes
    group_id = torch.full((b, b), -1, dtype=torch.long)
    group_id[a, c] = torch.arange(a.numel())
    ends = torch.cumsum(sizes, 0)

    def draw(gid: Tensor) -> tuple[Tensor, Tensor]:
        r = torch.rand(2, gid.numel(), generator=gen, dtype=torch.float64)
        u = starts[a[gid]] + (r[0] * na[gid]).long().clamp(max=na[gid] - 1)
        v = starts[c[gid]] + (r[1] * nc[gid]).long().clamp(max=nc[gid] - 1)
        return u, v

    def group_of(lo: Tensor, hi: Tensor) -> Tensor:
        return group_id[torch.bucketize(lo, ends, right=True),
                        torch.bucketize(hi, ends, right=True)]

    lo, hi = _sample_edges(counts, pairs, draw, group_of, n, gen)
    y = torch.repeat_interleave(torch.arange(b), sizes)
    data = _finish(lo, hi, y, b, feature_dim, feature_noise, train, val, seed, gen)
    data.p_in, data.p_out, data.block_sizes = float(p_in), float(p_out), sizes.tolist()
    return data


# ---------------------------------------------------------------------------- LFR and DC-SBM

def _power_law(u: Tensor, tau: float, lo: float, hi: float) -> Tensor:
    """Inverse CDF of the density ``∝ x^-tau`` on ``[lo, hi]`` applied to uniforms ``u``."""
    if lo == hi:
        return torch.full_like(u, lo)
    e = 1 - tau
    if abs(e) < 1e-9:
        return lo * (hi / lo) ** u
    return (lo ** e + u * (hi ** e - lo ** e)) ** (1 / e)


def _power_law_mean(tau: float, lo: float, hi: float) -> float:
    u = torch.linspace(0, 1, 20001, dtype=torch.float64)
    return float(torch.trapezoid(_power_law(u, tau, lo, hi), u))


def _dcsbm_edges(n: int, tau1: float, tau2: float, mu: float, average_degree: float,
              max_degree: int, min_community: int, max_community: int,
              gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    # expected degrees: power law tau1 on [d_min, max_degree], d_min set for the mean
    lo_d, hi_d = 1e-3, float(average_degree)
    for _ in range(60):  # bisection on the minimum degree
        mid = (lo_d + hi_d) / 2
        if _power_law_mean(tau1, mid, max_degree) < average_degree:
            lo_d = mid
        else:
            hi_d = mid
    theta = _power_law(torch.rand(n, generator=gen, dtype=torch.float64), tau1, hi_d,
                       max_degree)
    # community sizes: power law tau2 on [min_community, max_community], summing to n
    k = n // min_community + 1
    sizes = _power_law(torch.rand(k, generator=gen, dtype=torch.float64), tau2,
                       min_community, max_community + 1).floor().long()
    sizes = sizes.clamp(max=max_community)
    cut = int(torch.searchsorted(torch.cumsum(sizes, 0), torch.tensor(n)))
    sizes = sizes[: cut + 1].clone()
    sizes[-1] = n - int(sizes[:-1].sum())
    if sizes.numel() > 1 and int(sizes[-1]) < min_community:  # too small: merge it
        sizes[-2] += sizes[-1]
        sizes = sizes[:-1]
    num_c = sizes.numel()
    comm = torch.repeat_interleave(torch.arange(num_c), sizes)  # nodes sorted by community
    starts = torch.cumsum(sizes, 0) - sizes
    ends = torch.cumsum(sizes, 0)
    # internal and external expected degrees; internal capped by the community size
    t_in = torch.minimum((1 - mu) * theta, (sizes[comm] - 1).double())
    t_out = mu * theta
    cw_in = torch.cumsum(t_in, 0)
    base_in = torch.cat([torch.zeros(1, dtype=torch.float64), cw_in])
    cw_out = torch.cumsum(t_out, 0)
    total_out = float(cw_out[-1])

    pairs_in = sizes * (sizes - 1) // 2
    pairs_out = torch.tensor([(n * n - int((sizes * sizes).sum())) // 2])
    pairs = torch.cat([pairs_in, pairs_out])
    mass_in = base_in[ends] - base_in[starts]
    lam = torch.cat([mass_in / 2, torch.tensor([total_out / 2], dtype=torch.float64)])
    counts = torch.minimum(torch.poisson(lam, generator=gen).long(), pairs)

    def pick(cw: Tensor, lo_mass: Tensor, width: Tensor) -> Tensor:
        r = lo_mass + torch.rand(width.numel(), generator=gen, dtype=torch.float64) * width
        return torch.searchsorted(cw, r, right=True).clamp(max=n - 1)

    def draw(gid: Tensor) -> tuple[Tensor, Tensor]:
        inter = gid == num_c
        u = torch.empty(gid.numel(), dtype=torch.long)
        v = torch.empty_like(u)
        g = gid[~inter]
        lo_m, w = base_in[starts[g]], mass_in[g]
        u[~inter], v[~inter] = pick(cw_in, lo_m, w), pick(cw_in, lo_m, w)
        m = int(inter.sum())
        zero, full = torch.zeros(m, dtype=torch.float64), torch.full((m,), total_out)
        uo, vo = pick(cw_out, zero, full), pick(cw_out, zero, full)
        same = comm[uo] == comm[vo]
        vo[same] = uo[same]  # an intra pair drawn as inter: discard like a self loop
        u[inter], v[inter] = uo, vo
        return u, v

    def group_of(lo: Tensor, hi: Tensor) -> Tensor:
        cl = comm[lo]
        return torch.where(cl == comm[hi], cl, num_c)

    lo, hi = _sample_edges(counts, pairs, draw, group_of, n, gen, max_rounds=30)
    return lo, hi, comm


def _community_sizes_and_degrees(
    n: int, tau1: float, tau2: float, mu: float, average_degree: float,
    max_degree: int | None, min_community: int | None, max_community: int | None,
) -> tuple[int, int, int]:
    """Check the parameters shared by :func:`lfr_benchmark` and
    :func:`degree_corrected_sbm`; fill in the defaults of the last three."""
    if not (tau1 > 1 and tau2 > 1):
        raise ValueError(f"tau1 and tau2 must be > 1, got tau1={tau1}, tau2={tau2}")
    if not 0 <= mu <= 1:
        raise ValueError(f"mu must be in [0, 1], got {mu}")
    if max_degree is None:
        max_degree = max(1, min(n - 1, math.ceil(3 * average_degree)))
    if not 0 < average_degree <= max_degree <= n - 1:
        raise ValueError(f"need 0 < average_degree <= max_degree <= num_nodes - 1, got "
                         f"average_degree={average_degree}, max_degree={max_degree}, "
                         f"num_nodes={n}")
    if min_community is None:
        min_community = math.ceil((1 - mu) * max_degree) + 1
    if max_community is None:
        max_community = max(min_community, min(n // 2, 5 * min_community))
    if not 1 <= min_community <= max_community <= n:
        raise ValueError(f"need 1 <= min_community <= max_community <= num_nodes, got "
                         f"min_community={min_community}, max_community={max_community}, "
                         f"num_nodes={n}")
    return max_degree, min_community, max_community


_COMMON_DEFAULTS = r"""Defaults: ``max_degree = min(N - 1, 3 * average_degree)``,
    ``min_community = ceil((1 - mu) * max_degree) + 1`` (every node's inner degree fits),
    ``max_community = max(min_community, min(N // 2, 5 * min_community))``."""

LFR_MAX_NODES = 1_000_000
"""The largest ``num_nodes`` :func:`lfr_benchmark` accepts: networkx's generator is pure
Python, its time and memory grow with the graph, and it is checked up to this size
(``benchmarks/results/social.md`` has the times)."""


def degree_corrected_sbm(
    num_nodes: int,
    tau1: float = 2.5,
    tau2: float = 1.5,
    mu: float = 0.2,
    average_degree: float = 10.0,
    *,
    max_degree: int | None = None,
    min_community: int | None = None,
    max_community: int | None = None,
    feature_dim: int | None = 16,
    feature_noise: float = 1.0,
    train: float = 0.1,
    val: float = 0.1,
    seed: int = 0,
) -> Data:
    r"""A degree-corrected stochastic block model with LFR's parameters, vectorised: the
    same kind of graph as :func:`lfr_benchmark` (power-law degrees and community sizes,
    mixing :math:`\mu`), sampled in seconds at a million nodes. It is *not* the LFR
    algorithm: degrees are expected values, not exact, and communities are blocks.

    Expected degrees :math:`\theta_i` follow a power law with exponent :obj:`tau1` on
    ``[d_min, max_degree]`` (``d_min`` solved so the mean is :obj:`average_degree`),
    community sizes a power law with exponent :obj:`tau2` on ``[min_community,
    max_community]``; nodes join communities at random; a node's expected degree splits
    into :math:`(1-\mu)\theta_i` inside its community (capped at the community size minus
    one) and :math:`\mu\theta_i` outside; the Poisson number of edges of every community and
    of the between-community part is drawn Chung-Lu style (endpoints with probability
    :math:`\propto\theta`), without self loops or duplicates. Because duplicate draws are
    redrawn for at most 30 rounds, hubs may end slightly below their target degree. Nodes are
    numbered at random.

    DEFAULTS

    Returns:
        ``Data(x [N, F], edge_index, y [N], masks)`` with ``y`` the planted community
        (``num_communities`` recorded). Features: see the module docstring (random unit
        class centres when there are more communities than :obj:`feature_dim`).
    """
    _check_common(num_nodes, feature_dim, feature_noise)
    n = num_nodes
    max_degree, min_community, max_community = _community_sizes_and_degrees(
        n, tau1, tau2, mu, average_degree, max_degree, min_community, max_community)
    gen = torch.Generator().manual_seed(seed)
    lo, hi, comm = _dcsbm_edges(n, tau1, tau2, mu, average_degree, max_degree,
                             min_community, max_community, gen)
    num_c = int(comm.max()) + 1
    data = _finish(lo, hi, comm, num_c, feature_dim, feature_noise, train, val, seed, gen)
    data.num_communities = num_c
    return data


def lfr_benchmark(
    num_nodes: int,
    tau1: float = 2.5,
    tau2: float = 1.5,
    mu: float = 0.2,
    average_degree: float = 10.0,
    *,
    max_degree: int | None = None,
    min_community: int | None = None,
    max_community: int | None = None,
    method: str = "networkx",
    feature_dim: int | None = 16,
    feature_noise: float = 1.0,
    train: float = 0.1,
    val: float = 0.1,
    seed: int = 0,
) -> Data:
    r"""The LFR benchmark graph of Lancichinetti, Fortunato and Radicchi, by
    :func:`networkx.LFR_benchmark_graph`: power-law degrees (exponent :obj:`tau1`) and
    community sizes (exponent :obj:`tau2`), each node sharing a fraction :math:`\mu` of its
    edges with other communities.

    Up to :data:`LFR_MAX_NODES` nodes (the generator is pure Python); a larger
    ``num_nodes`` raises a ``ValueError`` that names the limit and
    :func:`degree_corrected_sbm`, the vectorised graph of the same parameters. When networkx
    cannot place the communities (e.g. a few communities of thousands of members) it raises a
    ``ValueError`` too; nothing switches to another model silently. Node ``i`` is node ``i``
    of networkx's graph. networkx meets :obj:`mu`, :obj:`average_degree` and
    :obj:`max_degree` only approximately (more so on small graphs): measure them on the
    returned graph where they matter.

    DEFAULTS

    Args:
        method (str): ``"networkx"`` (the only generator). ``"fast"`` is deprecated: it
            returns :func:`degree_corrected_sbm` with a ``DeprecationWarning``.

    Returns:
        ``Data(x [N, F], edge_index, y [N], masks)`` with ``y`` the planted community
        (``num_communities`` recorded). Features: see the module docstring (random unit
        class centres when there are more communities than :obj:`feature_dim`).
    """
    if method == "fast":
        warnings.warn("lfr_benchmark(method='fast') is a degree-corrected block model, not "
                      "LFR: call degree_corrected_sbm(...) with the same arguments",
                      DeprecationWarning, stacklevel=2)
        return degree_corrected_sbm(
            num_nodes, tau1, tau2, mu, average_degree, max_degree=max_degree,
            min_community=min_community, max_community=max_community,
            feature_dim=feature_dim, feature_noise=feature_noise, train=train, val=val,
            seed=seed)
    if method not in ("networkx", "auto"):
        raise ValueError(f"method must be 'networkx', got {method!r}")
    _check_common(num_nodes, feature_dim, feature_noise)
    n = num_nodes
    if n > LFR_MAX_NODES:
        raise ValueError(f"lfr_benchmark runs networkx's LFR generator up to "
                         f"LFR_MAX_NODES={LFR_MAX_NODES:,} nodes, got num_nodes={n:,}: for "
                         f"larger graphs use degree_corrected_sbm (same parameters, not LFR)")
    max_degree, min_community, max_community = _community_sizes_and_degrees(
        n, tau1, tau2, mu, average_degree, max_degree, min_community, max_community)
    try:
        G = nx.LFR_benchmark_graph(n, tau1, tau2, mu, average_degree=average_degree,
                                   max_degree=max_degree, min_community=min_community,
                                   max_community=max_community, seed=seed)
    except nx.ExceededMaxIterations as e:
        raise ValueError(f"networkx's LFR generator failed ({e}); try other community sizes "
                         f"(min_community={min_community}, max_community={max_community}) "
                         f"or another seed") from e
    # community id: communities numbered in the order of their smallest node
    smallest = torch.tensor([min(G.nodes[v]["community"]) for v in range(n)])
    comm = torch.unique(smallest, return_inverse=True)[1]
    ei = torch.tensor(list(G.edges), dtype=torch.long).t().reshape(2, -1)
    ei = remove_self_loops(ei)[0]
    lo, hi = ei.min(0).values, ei.max(0).values
    num_c = int(comm.max()) + 1
    gen = torch.Generator().manual_seed(seed)
    data = _finish(lo, hi, comm, num_c, feature_dim, feature_noise, train, val, seed, gen,
                   shuffle=False)  # networkx's node ids are kept
    data.num_communities = num_c
    return data


for _f in (degree_corrected_sbm, lfr_benchmark):
    _f.__doc__ = _f.__doc__.replace("DEFAULTS", _COMMON_DEFAULTS)


# ---------------------------------------------------------------------------- PyG data sets

SOCIAL_DATASETS = ("FacebookPagePage", "LastFMAsia", "GitHub", "DeezerEurope",
                   *(f"Twitch-{c}" for c in ("DE", "EN", "ES", "FR", "PT", "RU")))


def pyg_social(name: str, root: str | os.PathLike, train: float = 0.1, val: float = 0.1,
               seed: int = 0, force_reload: bool = False) -> Data:
    """One of PyG's attributed social networks, cleaned and split.

    ``name`` is one of :data:`SOCIAL_DATASETS` (case-insensitive). The data set is downloaded
    by PyG into ``root`` the first time (internet needed) and read from ``root`` after that.
    The graph is made undirected, coalesced and stripped of self loops (the Twitch files
    carry one on every node), and stratified masks from :func:`split_masks` are added.
    """
    from torch_geometric import datasets as D

    names = {s.lower(): s for s in SOCIAL_DATASETS}
    key = names.get(str(name).lower())
    if key is None:
        raise ValueError(f"unknown social data set {name!r}; choose one of {SOCIAL_DATASETS}")
    root = os.fspath(root)
    if key.startswith("Twitch-"):
        ds = D.Twitch(root, key.split("-")[1], force_reload=force_reload)
    else:
        ds = getattr(D, key)(root, force_reload=force_reload)
    data = ds[0]
    ei = remove_self_loops(data.edge_index)[0]
    data.edge_index = coalesce(to_undirected(ei, num_nodes=data.num_nodes),
                               num_nodes=data.num_nodes)
    data.name = key
    return _with_masks(data, train, val, seed)
