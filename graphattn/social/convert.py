"""networkx graph ↔ :class:`torch_geometric.data.Data`, with our attribute → vector policy.

Policy of :func:`from_networkx` (one rule per value type, decided per attribute over all nodes):

* ``bool``/``int``/``float`` → one numeric column, value as-is (``True`` → 1.0);
* ``str`` (or any attribute named in ``categorical=``) → one-hot columns over the sorted
  vocabulary of values seen (or the ``vocab=`` given), recorded in ``data.feature_spec``;
* a fixed-length sequence of numbers (list, tuple, numpy array, tensor) → that many columns;
* other types (dicts, sets, objects) are not features: skipped with a warning by default,
  a ``TypeError`` when asked for by name.

An attribute missing (or ``None``) on some nodes, mixing types (``"a"`` and ``3``), holding
NaN/inf or sequences of different lengths raises a ``ValueError`` naming the attribute and an
example node. When no attribute is used, ``default_features`` decides ``x``.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

__all__ = ["from_networkx", "node_index", "to_networkx"]

_DEFAULTS = ("degree", "identity", "constant", None)
_MAX_DEGREE = 63  # default last column of the degree one-hot: at most 64 columns


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real | np.bool_)  # bool and numpy scalars included


def _as_vector(v: Any) -> list[float] | None:
    """A list of floats if ``v`` is a flat sequence of numbers, else ``None``."""
    if isinstance(v, Tensor | np.ndarray):
        if v.ndim != 1:
            return None
        v = v.tolist()
    if isinstance(v, list | tuple) and all(_is_number(e) for e in v):
        return [float(e) for e in v]
    return None


def _kind(v: Any) -> str:
    if isinstance(v, str):
        return "categorical"
    if _is_number(v):
        return "numeric"
    if _as_vector(v) is not None:
        return "vector"
    return "other"


def _values(G: nx.Graph, attr: str, what: str) -> list[Any]:
    """Value of ``attr`` on every node, or a ValueError naming a node that lacks it."""
    values = []
    for node, d in G.nodes(data=True):
        v = d.get(attr)
        if v is None:
            have = sum(d2.get(attr) is not None for _, d2 in G.nodes(data=True))
            raise ValueError(f"{what} attribute {attr!r} is missing on node {node!r} "
                             f"({G.number_of_nodes() - have} of {G.number_of_nodes()} nodes "
                             f"lack it); give every node a value or leave {attr!r} out")
        values.append(v)
    return values


def _common_kind(G: nx.Graph, attr: str, values: list[Any], what: str) -> str:
    nodes = list(G.nodes)
    kinds = [_kind(v) for v in values]
    first = kinds[0]
    for node, v, k in zip(nodes, values, kinds):
        if k != first:
            raise ValueError(f"{what} attribute {attr!r} mixes types: node {nodes[0]!r} has "
                             f"{type(values[0]).__name__} {values[0]!r} but node {node!r} has "
                             f"{type(v).__name__} {v!r}")
    return first


def _vocabulary(values: list[Any], given: Sequence | None, attr: str, nodes: list) -> list:
    if given is None:
        return sorted(set(values), key=lambda v: (type(v).__name__, v))
    given = list(given)
    known = set(given)
    for node, v in zip(nodes, values):
        if v not in known:
            raise ValueError(f"attribute {attr!r} has value {v!r} on node {node!r}, which is "
                             f"not in the vocabulary given for it: {given}")
    return given


def _encode(G: nx.Graph, attr: str, values: list[Any], kind: str, vocab: Sequence | None
            ) -> tuple[Tensor, dict]:
    """``[N, k]`` float columns for one attribute and its spec entry."""
    nodes = list(G.nodes)
    if kind == "categorical":
        vocab = _vocabulary(values, vocab, attr, nodes)
        index = {v: i for i, v in enumerate(vocab)}
        idx = torch.tensor([index[v] for v in values], dtype=torch.long)
        cols = torch.nn.functional.one_hot(idx, len(vocab)).float()
        return cols, {"attr": attr, "kind": kind, "size": len(vocab), "vocab": vocab}
    if kind == "numeric":
        rows = [[float(v)] for v in values]
    else:  # vector
        rows = [_as_vector(v) for v in values]
        for node, r in zip(nodes, rows):
            if len(r) != len(rows[0]):
                raise ValueError(f"attribute {attr!r} holds vectors of different lengths: node "
                                 f"{nodes[0]!r} has {len(rows[0])}, node {node!r} has {len(r)}")
    for node, r in zip(nodes, rows):
        if not all(math.isfinite(e) for e in r):
            raise ValueError(f"attribute {attr!r} is NaN or inf on node {node!r}")
    cols = torch.tensor(rows, dtype=torch.float).reshape(len(nodes), -1)
    return cols, {"attr": attr, "kind": kind, "size": cols.size(1), "vocab": None}


def _default_features(G: nx.Graph, how: str, max_degree: int | None) -> tuple[Tensor, dict]:
    n = G.number_of_nodes()
    if how == "identity":
        return torch.eye(n), {"attr": None, "kind": "identity", "size": n, "vocab": None}
    if how == "constant":
        return torch.ones(n, 1), {"attr": None, "kind": "constant", "size": 1, "vocab": None}
    deg = torch.tensor([d for _, d in (G.in_degree if G.is_directed() else G.degree)],
                       dtype=torch.long)
    top = int(deg.max()) if n else 0
    cap = min(top, _MAX_DEGREE) if max_degree is None else max_degree
    cols = torch.nn.functional.one_hot(deg.clamp(max=cap), cap + 1).float()
    return cols, {"attr": None, "kind": "degree", "size": cap + 1, "vocab": None}


def from_networkx(
    G: nx.Graph,
    label: str | None = None,
    features: Sequence[str] | None = None,
    edge_weight: str | None = None,
    *,
    default_features: str | None = "degree",
    categorical: Sequence[str] = (),
    vocab: Mapping[str, Sequence] | None = None,
    classes: Sequence | None = None,
    max_degree: int | None = None,
) -> Data:
    r"""Turn a networkx graph into a :class:`~torch_geometric.data.Data` object.

    Nodes are numbered in ``G.nodes`` order; an undirected graph gets both directions of
    every edge (a self loop once), a directed one its edges as they are; the parallel edges of
    a multigraph are all kept.

    Args:
        G (networkx.Graph): any networkx graph class (directed, undirected, multi).
        label (str, optional): node attribute to predict. Strings, bools and ints are classes:
            ``y`` holds indices into ``data.classes`` (the sorted distinct values, or
            :obj:`classes`); floats give a regression target ``y`` of dtype float.
        features (list of str, optional): node attributes to encode, in this column order.
            Default: every attribute found on the nodes except :obj:`label`, sorted by name,
            skipping (with a warning) those whose values cannot be vectors.
        edge_weight (str, optional): numeric edge attribute stored as ``edge_attr`` of shape
            ``[E, 1]``.
        default_features (str, optional): ``x`` when no attribute was encoded:
            ``"degree"`` (one-hot (in-)degree, clipped at :obj:`max_degree`),
            ``"identity"`` (one-hot node index), ``"constant"`` (a column of ones) or
            :obj:`None` (no ``x``).
        categorical (list of str): numeric attributes to one-hot encode as categories.
        vocab (dict, optional): fixed vocabulary per categorical attribute, e.g. to encode two
            graphs alike; values outside it raise.
        classes (list, optional): fixed class list for :obj:`label`.
        max_degree (int, optional): last column of the degree one-hot (higher degrees share
            it). Default: the largest degree in ``G``, but at most 63, so a hub of a power-law
            graph does not make every node vector thousands of zeros long.

    Returns:
        ``Data`` with ``x`` ``[N, F]`` float, ``edge_index`` ``[2, E]``, optional
        ``edge_attr`` ``[E, 1]`` and ``y`` ``[N]``; ``node_ids`` (list: index → original node,
        inverted by :func:`node_index`); ``feature_spec`` (one dict per
        encoded attribute in column order: ``attr``, ``kind``, ``size``, ``vocab``);
        ``classes`` when the label is categorical; ``directed`` (bool).
    """
    if not isinstance(G, nx.Graph):
        raise TypeError(f"G must be a networkx graph, got {type(G).__name__}")
    if default_features not in _DEFAULTS:
        raise ValueError(f"default_features must be one of {_DEFAULTS}, got {default_features!r}")
    if G.number_of_nodes() == 0:
        raise ValueError("G has no nodes")
    if max_degree is not None and (not isinstance(max_degree, int) or max_degree < 0):
        raise ValueError(f"max_degree must be an int >= 0 or None, got {max_degree!r}")
    vocab = dict(vocab or {})
    categorical = set(categorical)
    nodes = list(G.nodes)
    node_id_map = {v: i for i, v in enumerate(nodes)}
    found = sorted({a for _, d in G.nodes(data=True) for a in d}, key=str)

    data = Data(num_nodes=len(nodes))
    data.node_ids, data.directed = nodes, G.is_directed()

    # labels
    if label is not None:
        if label not in found:
            raise ValueError(f"label attribute {label!r} is on no node; node attributes found: "
                             f"{found}")
        values = _values(G, label, "label")
        kind = _common_kind(G, label, values, "label")
        if kind == "numeric" and label not in categorical and classes is None and any(
                isinstance(v, float | np.floating) for v in values):
            y = torch.tensor([float(v) for v in values])
            if not bool(torch.isfinite(y).all()):
                bad = nodes[int((~torch.isfinite(y)).nonzero()[0])]
                raise ValueError(f"label attribute {label!r} is NaN or inf on node {bad!r}")
            data.y = y
        elif kind in ("categorical", "numeric"):
            cls = _vocabulary(values, classes, label, nodes)
            index = {v: i for i, v in enumerate(cls)}
            data.y = torch.tensor([index[v] for v in values], dtype=torch.long)
            data.classes = cls
        else:
            raise ValueError(f"label attribute {label!r} must hold strings or numbers, node "
                             f"{nodes[0]!r} has {type(values[0]).__name__}")

    # node features
    if features is None:
        names, explicit = [a for a in found if a != label], False
    else:
        if isinstance(features, str):
            raise TypeError(f"features must be a list of attribute names, got the string "
                            f"{features!r}; use [{features!r}]")
        names, explicit = list(features), True
        for a in names:
            if a == label:
                raise ValueError(f"attribute {a!r} is the label; it cannot also be a feature")
            if a not in found:
                raise ValueError(f"feature attribute {a!r} is on no node; node attributes "
                                 f"found: {found}")
    blocks, spec = [], []
    for a in names:
        values = _values(G, a, "feature")
        kind = _common_kind(G, a, values, "feature")
        if a in categorical or a in vocab:
            if kind not in ("categorical", "numeric"):
                raise ValueError(f"attribute {a!r} was asked to be categorical but holds "
                                 f"{type(values[0]).__name__} values")
            kind = "categorical"
        if kind == "other":
            msg = (f"attribute {a!r} holds {type(values[0]).__name__} values, which are neither "
                   f"numbers, strings nor numeric vectors")
            if explicit:
                raise TypeError(msg)
            warnings.warn(msg + "; skipped", stacklevel=2)
            continue
        cols, entry = _encode(G, a, values, kind, vocab.get(a))
        blocks.append(cols)
        spec.append(entry)
    if not blocks and default_features is not None:
        cols, entry = _default_features(G, default_features, max_degree)
        blocks.append(cols)
        spec.append(entry)
    if blocks:
        data.x = torch.cat(blocks, dim=1)
    data.feature_spec = spec

    # edges
    edges = list(G.edges(data=True))
    if edges:
        src = torch.tensor([node_id_map[u] for u, _, _ in edges], dtype=torch.long)
        dst = torch.tensor([node_id_map[v] for _, v, _ in edges], dtype=torch.long)
    else:
        src = dst = torch.empty(0, dtype=torch.long)
    weight = None
    if edge_weight is not None:
        w = []
        for u, v, d in edges:
            value = d.get(edge_weight)
            if value is None:
                raise ValueError(f"edge weight attribute {edge_weight!r} is missing on edge "
                                 f"({u!r}, {v!r})")
            if not _is_number(value) or not math.isfinite(float(value)):
                raise ValueError(f"edge weight attribute {edge_weight!r} must be a finite "
                                 f"number, edge ({u!r}, {v!r}) has {value!r}")
            w.append(float(value))
        weight = torch.tensor(w, dtype=torch.float)
    if not G.is_directed():
        loop = src == dst
        src, dst = torch.cat([src, dst[~loop]]), torch.cat([dst, src[~loop]])
        if weight is not None:
            weight = torch.cat([weight, weight[~loop]])
    data.edge_index = torch.stack([src, dst])
    if weight is not None:
        data.edge_attr = weight.view(-1, 1)
    return data


def node_index(data: Data) -> dict[Hashable, int]:
    """Original node id → row of ``x`` (the inverse of ``data.node_ids``).

    Not stored on ``data`` itself: PyG would print every entry of a dict in ``repr(data)``.
    """
    ids = getattr(data, "node_ids", None)
    if ids is None:
        raise ValueError("data has no node_ids; it was not made by from_networkx")
    return {v: i for i, v in enumerate(ids)}


def to_networkx(data: Data, label: str = "y", edge_weight: str = "weight") -> nx.Graph:
    """Inverse of :func:`from_networkx`: node ids, attributes, labels and weights restored.

    Columns described by ``data.feature_spec`` go back to their attributes (one-hot →
    category, numeric → float, vector → list of floats); default features (degree, identity,
    constant) are dropped. Without a spec, ``x`` rows are stored as the list attribute ``"x"``.
    ``y`` becomes the node attribute :obj:`label` (class names when ``data.classes`` exists),
    ``edge_attr`` of shape ``[E, 1]`` the edge attribute :obj:`edge_weight`. The graph is
    directed when ``data.directed`` says so (else when ``edge_index`` is not symmetric); an
    undirected graph gets each edge once. The result is a simple ``Graph``/``DiGraph``: the
    parallel edges of a multigraph come back as one edge (the last weight wins).
    """
    if not isinstance(data, Data):
        raise TypeError(f"data must be a torch_geometric.data.Data, got {type(data).__name__}")
    n = data.num_nodes
    directed = getattr(data, "directed", None)
    if directed is None:
        directed = not data.is_undirected()
    ids = getattr(data, "node_ids", None) or list(range(n))
    G = nx.DiGraph() if directed else nx.Graph()
    G.add_nodes_from(ids)

    x, spec = data.x, getattr(data, "feature_spec", None)
    if x is not None and spec is None:
        for i, row in enumerate(x.tolist()):
            G.nodes[ids[i]]["x"] = row
    elif x is not None:
        start = 0
        for entry in spec:
            cols = x[:, start:start + entry["size"]]
            start += entry["size"]
            if entry["attr"] is None:
                continue
            if entry["kind"] == "categorical":
                values = [entry["vocab"][i] for i in cols.argmax(dim=1).tolist()]
            elif entry["kind"] == "numeric":
                values = cols[:, 0].tolist()
            else:
                values = cols.tolist()
            for i, v in enumerate(values):
                G.nodes[ids[i]][entry["attr"]] = v
    y = getattr(data, "y", None)
    if y is not None:
        classes = getattr(data, "classes", None)
        for i, v in enumerate(y.tolist()):
            G.nodes[ids[i]][label] = classes[v] if classes is not None else v

    ei = data.edge_index.tolist()
    ew = data.edge_attr.view(-1).tolist() if data.edge_attr is not None else None
    for e, (s, t) in enumerate(zip(*ei)):
        if not directed and G.has_edge(ids[t], ids[s]):
            continue  # the reverse copy of an undirected edge
        attrs = {edge_weight: ew[e]} if ew is not None else {}
        G.add_edge(ids[s], ids[t], **attrs)
    return G
