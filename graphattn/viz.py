"""Pictures: learning curves, and attention drawn on molecules (RDKit) and graphs (networkx).

Attention weights come from the model's :class:`~graphattn.nn.GraphSelfAttention` layers,
asked for ``return_attention_weights`` through forward hooks, so any model built from them
works without changes.

Figures are :class:`matplotlib.figure.Figure` objects drawn by the Agg canvas straight into
files: importing or using this module never touches pyplot's state or switches the user's
matplotlib backend. Nothing needs scipy: scores stay sparse (one value per attended pair or
edge, never an :math:`N \\times N` table), and graphs over ``max_nodes`` nodes are drawn as a
summary (the top-scoring nodes with their strongest neighbours, beside a histogram of all
scores) whose layout is small enough for networkx's numpy spring layout.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import matplotlib
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from graphattn.nn.attention import GraphSelfAttention

__all__ = ["plot_learning_curve", "attention_weights", "node_edge_scores",
           "draw_molecule_attention", "draw_graph_attention"]


def _figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A figure on its own Agg canvas (no pyplot, no backend switch)."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def plot_learning_curve(history: list[dict], path: str | os.PathLike,
                        monitor: str | None = None) -> str:
    """Training loss and validation loss (and ``monitor`` on a second axis) per epoch."""
    epochs = [r["epoch"] for r in history]
    fig = _figure(6, 4)
    ax = fig.subplots()
    ax.plot(epochs, [r["train_loss"] for r in history], label="train loss")
    if history and "val" in history[0]:
        ax.plot(epochs, [_num(r["val"].get("loss")) for r in history], label="val loss")
        if monitor and monitor != "loss":
            ax2 = ax.twinx()
            ax2.plot(epochs, [_num(r["val"].get(monitor)) for r in history], color="tab:green",
                     label=f"val {monitor}")
            ax2.set_ylabel(f"val {monitor}")
            ax2.legend(loc="upper center")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (standardised targets)")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    return os.fspath(path)


def _num(v):
    return float("nan") if v is None else v


@contextmanager
def _capture(model: torch.nn.Module):
    """Collect ``(index, alpha)`` of every GraphSelfAttention call inside the block."""
    captured, handles = [], []

    def pre(module, args, kwargs):
        if len(args) > 5:  # passed positionally
            args = (*args[:5], True, *args[6:])
        else:
            kwargs = {**kwargs, "return_attention_weights": True}
        return args, kwargs

    def post(module, args, kwargs, output):
        out, (index, alpha) = output
        captured.append((index.detach().cpu(), alpha.detach().cpu()))
        return out

    for m in model.modules():
        if isinstance(m, GraphSelfAttention):
            handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
            handles.append(m.register_forward_hook(post, with_kwargs=True))
    if not handles:
        raise ValueError(f"{type(model).__name__} has no GraphSelfAttention layer to explain")
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def attention_weights(model: torch.nn.Module, data) -> list[tuple[Tensor, Tensor]]:
    """Run ``model(data)`` in eval mode and return each attention layer's
    ``(index [2, P], alpha [P, H])``, in call order."""
    was_training = model.training
    model.eval()
    try:
        with _capture(model) as captured:
            model(data)
    finally:
        model.train(was_training)
    return captured


def node_edge_scores(weights: list[tuple[Tensor, Tensor]], edge_index: Tensor,
                     num_nodes: int) -> tuple[Tensor, Tensor]:
    r"""Summaries of the attention of all layers and heads, each in ``[0, 1]``:

    * node score: attention a node *receives*, :math:`\sum_i \alpha_{ij}` (summed over
      layers, mean over heads);
    * edge score of ``edge_index[:, e] = (u, v)``: :math:`\alpha_{uv} + \alpha_{vu}`
      (summed over layers, mean over heads; 0 where a layer did not attend along it);

    each rescaled from its minimum (0) to its maximum (1). Sparse: memory grows with the
    number of attended pairs and edges (sorted pair keys and a binary search), never with
    :math:`N^2`.
    """
    node = torch.zeros(num_nodes, dtype=torch.float64)
    edge = torch.zeros(edge_index.size(1), dtype=torch.float64)
    keys = edge_index[0] * num_nodes + edge_index[1]
    rev = edge_index[1] * num_nodes + edge_index[0]
    for index, alpha in weights:
        a = alpha.double().mean(-1)  # (P,)
        node.index_add_(0, index[0], a)
        pair, inverse = torch.unique(index[0] * num_nodes + index[1], return_inverse=True)
        summed = torch.zeros(pair.numel(), dtype=torch.float64).index_add_(0, inverse, a)
        edge += _lookup(pair, summed, keys) + _lookup(pair, summed, rev)
    return _unit(node), _unit(edge)


def _lookup(keys: Tensor, values: Tensor, query: Tensor) -> Tensor:
    """``values`` at ``query`` in the sorted ``keys``; 0 where a query is not a key."""
    if keys.numel() == 0:
        return torch.zeros(query.numel(), dtype=values.dtype)
    pos = torch.searchsorted(keys, query).clamp_(max=keys.numel() - 1)
    return torch.where(keys[pos] == query, values[pos], values.new_zeros(()))


def _unit(s: Tensor) -> Tensor:
    """Rescale to ``[0, 1]`` (min to max); constant scores become 0.5."""
    if s.numel() == 0:
        return s.float()
    lo, hi = s.min(), s.max()
    if hi - lo < 1e-12:
        return torch.full_like(s, 0.5).float()
    return ((s - lo) / (hi - lo)).float()


def _colors(scores: Tensor, cmap: str = "Reds") -> list[tuple[float, float, float]]:
    cm = matplotlib.colormaps[cmap]
    return [tuple(float(c) for c in cm(0.15 + 0.75 * float(s))[:3]) for s in scores]


def draw_molecule_attention(mol, node_scores: Tensor, bond_scores: Tensor | None,
                            path: str | os.PathLike, size: tuple[int, int] = (500, 400),
                            legend: str = "") -> str:
    """Draw an RDKit molecule with atoms (and bonds, one score per RDKit bond) shaded by
    attention into a PNG, with RDKit's Cairo drawer or, without Cairo, matplotlib."""
    from rdkit.Chem import rdDepictor

    rdDepictor.Compute2DCoords(mol)
    atom_cols = _colors(node_scores)
    bond_cols = _colors(bond_scores) if bond_scores is not None else []
    try:
        from rdkit.Chem.Draw import rdMolDraw2D

        drawer = rdMolDraw2D.MolDraw2DCairo(*size)
    except (ImportError, AttributeError, RuntimeError):
        drawer = None
    if drawer is not None:
        from rdkit.Chem.Draw import rdMolDraw2D

        rdMolDraw2D.PrepareAndDrawMolecule(
            drawer, mol, legend=legend,
            highlightAtoms=list(range(mol.GetNumAtoms())),
            highlightAtomColors=dict(enumerate(atom_cols)),
            highlightBonds=list(range(len(bond_cols))),
            highlightBondColors=dict(enumerate(bond_cols)))
        drawer.FinishDrawing()
        with open(path, "wb") as f:
            f.write(drawer.GetDrawingText())
        return os.fspath(path)
    # matplotlib fallback: bonds as coloured lines, atoms as coloured discs
    pos = mol.GetConformer().GetPositions()[:, :2]
    fig = _figure(size[0] / 100, size[1] / 100)
    ax = fig.subplots()
    for b, col in zip(mol.GetBonds(), bond_cols or [(0.5, 0.5, 0.5)] * mol.GetNumBonds()):
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        ax.plot(pos[[i, j], 0], pos[[i, j], 1], color=col, lw=4, zorder=1)
    ax.scatter(pos[:, 0], pos[:, 1], s=500, c=atom_cols, zorder=2)
    for a in mol.GetAtoms():
        ax.text(*pos[a.GetIdx()], a.GetSymbol(), ha="center", va="center", zorder=3)
    ax.set_title(legend)
    ax.set_aspect("equal")
    ax.axis("off")
    fig.savefig(path)
    return os.fspath(path)


def draw_graph_attention(edge_index: Tensor, num_nodes: int, edge_scores: Tensor,
                         path: str | os.PathLike, node_color: Tensor | None = None,
                         node_scores: Tensor | None = None, seed: int = 0,
                         title: str = "", max_nodes: int = 200, top: int = 25,
                         neighbours: int = 3) -> str:
    """Draw a graph (networkx spring layout, seeded) with edge widths and darkness given by
    attention, nodes coloured by ``node_color`` (e.g. predicted class) and sized by
    ``node_scores``.

    A graph over ``max_nodes`` nodes is drawn as a summary instead: the ``top`` nodes with
    the highest ``node_scores`` (the highest degree without scores), each with its
    ``neighbours`` strongest-attention neighbours and the edges among all of these (labelled
    with their node ids), beside a histogram of the scores of all nodes. Memory and time grow
    with the number of edges, and the drawn part stays small, so any size can be drawn.
    """
    import networkx as nx

    edge_index = edge_index.cpu()
    edge_scores = edge_scores.detach().cpu().float().view(-1)
    if node_scores is not None:
        node_scores = node_scores.detach().cpu().float().view(-1)
    shown = None
    if num_nodes > max_nodes:
        shown = _summary_nodes(edge_index, edge_scores, node_scores, num_nodes, top,
                               neighbours)
        keep = torch.zeros(num_nodes, dtype=torch.bool)
        keep[shown] = True
        sel = keep[edge_index[0]] & keep[edge_index[1]]
        edge_index, edge_scores = edge_index[:, sel], edge_scores[sel]
    nodes = shown.tolist() if shown is not None else list(range(num_nodes))
    G = nx.Graph()
    G.add_nodes_from(nodes)
    weight: dict[tuple[int, int], float] = {}
    for (u, v), s in zip(edge_index.t().tolist(), edge_scores.tolist()):
        if u != v:
            key = (min(u, v), max(u, v))
            weight[key] = max(weight.get(key, 0.0), s)
    G.add_edges_from(weight)
    # numpy below 500 nodes (no scipy); a summary's stars spread further apart
    pos = nx.spring_layout(G, seed=seed, k=None if shown is None else 2 / len(nodes) ** 0.5)
    fig = _figure(12 if shown is not None else 7, 6)
    if shown is not None:
        ax, hist = fig.subplots(1, 2, width_ratios=(2, 1))
    else:
        ax, hist = fig.subplots(), None
    edges = list(G.edges())
    w = [weight[(min(u, v), max(u, v))] for u, v in edges]
    nx.draw_networkx_edges(G, pos, edgelist=edges, width=[0.5 + 5 * x for x in w],
                           edge_color=w, edge_cmap=matplotlib.colormaps["Greys"], edge_vmin=-0.2,
                           edge_vmax=1.0, ax=ax)
    big = 1 if shown is None else 0.4
    sizes = (100 + 400 * node_scores[nodes].numpy() if node_scores is not None else 300) * big
    colors = (dict(node_color=node_color.cpu()[nodes].tolist(), cmap="tab10", vmin=0, vmax=9)
              if node_color is not None else dict(node_color="tab:blue"))  # class k: tab10[k]
    nx.draw_networkx_nodes(G, pos, nodelist=nodes, node_size=sizes, ax=ax, **colors)
    nx.draw_networkx_labels(G, pos, font_size=7, ax=ax)
    ax.set_title(title if shown is None else
                 f"{title}\n{min(top, num_nodes)} of {num_nodes:,} nodes with the highest "
                 f"{'attention received' if node_scores is not None else 'degree'}, and "
                 "their strongest neighbours", fontsize=9)
    ax.axis("off")
    if hist is not None:
        values = (node_scores if node_scores is not None else
                  torch.bincount(edge_index[0], minlength=num_nodes).float()).numpy()
        hist.hist(values, bins=50, color="tab:gray", log=True)
        hist.set_xlabel("attention received (0-1)" if node_scores is not None else "degree")
        hist.set_ylabel("nodes")
        hist.set_title(f"all {num_nodes:,} nodes", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    return os.fspath(path)


def plot_parity(pred: Tensor, target: Tensor, path: str | os.PathLike,
                names: list[str] | None = None, title: str | None = None) -> str:
    """Predicted against true values, one panel per target (``[n, T]``; ``NaN`` targets
    skipped), with the diagonal and each panel's RMSE."""
    from matplotlib.figure import Figure

    pred, target = pred.reshape(pred.size(0), -1).double(), target.reshape(
        target.size(0), -1).double()
    T = target.size(1)
    cols = min(T, 4)
    rows = -(-T // cols)
    fig = Figure(figsize=(3.2 * cols, 3.2 * rows), dpi=100)
    for j in range(T):
        ax = fig.add_subplot(rows, cols, j + 1)
        keep = ~torch.isnan(target[:, j])
        t, p = target[keep, j], pred[keep, j]
        ax.scatter(t.tolist(), p.tolist(), s=8, alpha=0.6)
        if t.numel():
            lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
            ax.plot([lo, hi], [lo, hi], color="grey", lw=1)
            err = float(((p - t) ** 2).mean().sqrt())
            ax.text(0.03, 0.95, f"RMSE {err:.3g}, n={t.numel()}", transform=ax.transAxes,
                    va="top", fontsize=8)
        ax.set_xlabel("true")
        ax.set_ylabel("predicted")
        ax.set_title(names[j] if names and j < len(names) else f"y{j}", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    return os.fspath(path)


def plot_confusion(pred_class: Tensor, target: Tensor, path: str | os.PathLike,
                   num_classes: int | None = None, title: str | None = None) -> str:
    """Confusion matrix (rows: true class, columns: predicted), counts in the cells;
    negative targets (missing) skipped."""
    from matplotlib.figure import Figure

    keep = target >= 0
    t, p = target[keep].long(), pred_class[keep].long()
    C = num_classes or int(max(int(t.max()) if t.numel() else 0,
                               int(p.max()) if p.numel() else 0)) + 1
    m = torch.zeros(C, C, dtype=torch.long)
    m.index_put_((t, p), torch.ones_like(t), accumulate=True)
    fig = Figure(figsize=(1.0 + 0.5 * C, 0.8 + 0.5 * C), dpi=100)
    ax = fig.add_subplot()
    ax.imshow(m.numpy(), cmap="Blues")
    if C <= 20:
        for i in range(C):
            for j in range(C):
                ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    acc = float(m.diag().sum() / max(int(m.sum()), 1))
    ax.set_title(f"{title + ': ' if title else ''}accuracy {acc:.3f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(os.fspath(path))
    return os.fspath(path)


def _summary_nodes(edge_index: Tensor, edge_scores: Tensor, node_scores: Tensor | None,
                   num_nodes: int, top: int, neighbours: int) -> Tensor:
    """The ``top`` nodes by score (degree without scores) and, for each, the other ends of
    its ``neighbours`` highest-scoring edges: sorted node ids, at most
    ``top * (1 + neighbours)``."""
    src, dst = edge_index
    if node_scores is None:
        score = torch.bincount(dst, minlength=num_nodes).float()
    else:
        score = node_scores
    best = torch.topk(score, min(top, num_nodes)).indices
    chosen = [best]
    loops = src == dst
    for t in best.tolist():
        inc = ((src == t) | (dst == t)) & ~loops
        if not inc.any():
            continue
        e = inc.nonzero().view(-1)
        e = e[torch.topk(edge_scores[e], min(neighbours * 2, e.numel())).indices]
        other = torch.where(src[e] == t, dst[e], src[e])
        chosen.append(torch.tensor(list(dict.fromkeys(other.tolist()))[:neighbours],
                                   dtype=torch.long))
    return torch.cat(chosen).unique()
