"""Structural and positional encodings, and structural attention biases.

Each is optional and composable. Node encodings return ``[N, channels]`` to add to the
node features; attention biases return the dense padded ``[B, H, N_max, N_max]`` layout the
full softmax attention takes as ``attn_bias`` (entry ``[b, h, i, j]``: target ``i``
attending to source ``j``, node order of :func:`~torch_geometric.utils.to_dense_batch`).

=====================  =======================================  ==========================
encoding               precomputed by (data attribute)          learned module
=====================  =======================================  ==========================
degree (centrality)    nothing                                  :class:`DegreeEncoder`
random-walk (RWSE)     :class:`SparseRandomWalkPE` (``rwse``)   :class:`RWSEEncoder`
Laplacian eigvecs      :class:`LaplacianPE` (``lappe``)         :class:`LapPEEncoder`
shortest-path bias     nothing (torch BFS per batch)            :class:`SPDBias`
adjacency bias (MAT)   nothing                                  :class:`AdjacencyBias`
=====================  =======================================  ==========================

Cost on large graphs: degree and sampled RWSE are linear in the graph size; exact RWSE
refuses when its sparse matrix powers would fill in past ``max_nnz``; LapPE refuses above
``max_nodes``; the two biases are dense ``N_max x N_max`` per graph (as full attention is)
and refuse above ``max_nodes``. Every refusal is a ``ValueError`` naming the size and
what to use instead.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torch.nn import Embedding, Linear, Parameter
from torch_geometric.data import Data
from torch_geometric.transforms import BaseTransform
from torch_geometric.utils import (
    degree,
    get_laplacian,
    get_self_loop_attr,
    scatter,
    to_dense_adj,
    to_edge_index,
    to_torch_csr_tensor,
    to_undirected,
)


class DegreeEncoder(torch.nn.Module):
    r"""Centrality encoding (Graphormer): a learned embedding of each node's degree,
    :math:`\mathbf{z}_i = \mathbf{E}^-[\min(d^-_i, D)] \;(+\; \mathbf{E}^+[\min(d^+_i, D)])`.

    Args:
        channels (int): Embedding size.
        max_degree (int): Degrees above it share its embedding. (default: ``64``)
        directed (bool): Embed in-degree and out-degree separately and sum them; otherwise
            only the in-degree (the degree of an undirected graph stored both ways).
            (default: ``False``)

    Shapes:
        - **input:** edge indices :math:`(2, E)`, ``num_nodes`` :math:`N`.
        - **output:** :math:`(N, \text{channels})`.
    """

    def __init__(self, channels: int, max_degree: int = 64, directed: bool = False) -> None:
        super().__init__()
        if max_degree < 1:
            raise ValueError(f"max_degree must be >= 1, got {max_degree}")
        self.channels, self.max_degree, self.directed = channels, max_degree, directed
        self.in_emb = Embedding(max_degree + 1, channels)
        self.out_emb = Embedding(max_degree + 1, channels) if directed else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for emb in (self.in_emb, self.out_emb):
            if emb is not None:
                torch.nn.init.normal_(emb.weight, std=0.1)

    def forward(self, edge_index: Tensor, num_nodes: int) -> Tensor:
        def clipped(index: Tensor) -> Tensor:
            return degree(index, num_nodes, dtype=torch.long).clamp(max=self.max_degree)

        out = self.in_emb(clipped(edge_index[1]))
        if self.out_emb is not None:
            out = out + self.out_emb(clipped(edge_index[0]))
        return out

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.channels}, max_degree={self.max_degree})"


class SparseRandomWalkPE(BaseTransform):
    r"""Random-walk structural encoding (RWSE) that stays cheap on large sparse graphs:
    ``data[attr_name] = [P_ii, (P^2)_ii, ..., (P^K)_ii]`` with :math:`P = D^{-1}A`, the
    return probabilities of a random walk, as :class:`~torch_geometric.transforms.
    AddRandomWalkPE` (whose sparse path fills in towards a dense :math:`N \times N` matrix
    on small-world graphs).

    * ``method="exact"``: matrix powers, the same numbers as PyG's transform on unweighted
      graphs. Graphs of at most ``dense_max_nodes`` nodes (molecules) take dense
      :math:`N \times N` products; larger ones sparse products whose cost is bounded before
      they run: above ``max_nnz`` a ``ValueError`` says so. (Small graphs do not take the
      sparse path because torch's CSR @ CSR product on CPU leaks host memory on every
      call, which adds up over a data set of molecules.) With ``data.edge_weight`` the walk
      is the weighted one, :math:`P_{ij} = w_{ij} / \sum_l w_{il}` (PyG's transform puts
      :math:`1 / \max(1, \sum_l w_{il})` on every edge instead). Duplicate edges are parallel
      edges of a multigraph (PyG's dense path writes them once into :math:`A`).
    * ``method="sampled"``: ``num_walks`` random walks from every node, counting returns:
      an unbiased estimate in :math:`O(N \cdot \text{num\_walks} \cdot K)` time, seeded.
      Use it for large social graphs.

    Args:
        walk_length (int): :math:`K`, the number of steps.
        attr_name (str): Attribute to store the ``[N, K]`` encoding in. (default: ``"rwse"``)
        method (str): ``"exact"`` or ``"sampled"``. (default: ``"exact"``)
        num_walks (int): Walks per node (sampled). (default: ``256``)
        max_nnz (int): Largest sparse power the exact method builds. (default: ``2**25``)
        seed (int): Seed of the sampled walks. (default: ``0``)
        dense_max_nodes (int): Largest graph the exact method computes with dense products.
            (default: ``256``)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.Data` with ``edge_index`` :math:`(2, E)`
          and ``edge_weight`` :math:`(E)` *(optional)*.
        - **output:** the same object with ``data[attr_name]`` :math:`(N, K)`.
    """

    def __init__(self, walk_length: int, attr_name: str = "rwse", method: str = "exact",
                 num_walks: int = 256, max_nnz: int = 2**25, seed: int = 0,
                 dense_max_nodes: int = 256) -> None:
        if walk_length < 1:
            raise ValueError(f"walk_length must be >= 1, got {walk_length}")
        if method not in ("exact", "sampled"):
            raise ValueError(f"method must be 'exact' or 'sampled', got {method!r}")
        self.walk_length, self.attr_name, self.method = walk_length, attr_name, method
        self.num_walks, self.max_nnz, self.seed = num_walks, max_nnz, seed
        self.dense_max_nodes = dense_max_nodes

    def forward(self, data: Data) -> Data:
        N, ei, w = data.num_nodes, data.edge_index, data.get("edge_weight")
        if self.method == "sampled":
            pe = self._sampled(ei, N, w)
        else:
            pe = self._exact(ei, N, w)
        data[self.attr_name] = pe
        return data

    def _exact(self, edge_index: Tensor, N: int, edge_weight: Tensor | None) -> Tensor:
        """Sparse powers of ``P`` (PyG's sparse path), each product's cost bounded first."""
        row = edge_index[0]
        w = torch.ones(row.numel()) if edge_weight is None else edge_weight.float()
        deg = degree(row, N, dtype=torch.long)
        total = scatter(w, row, dim_size=N, reduce="sum")
        value = w / torch.where(total > 0, total, torch.ones_like(total))[row]
        if N <= self.dense_max_nodes:  # dense P: duplicate edges add up (a multigraph walk)
            P = value.new_zeros(N, N).index_put_((row, edge_index[1]), value, accumulate=True)
            out, pes = P, [P.diagonal()]
            for _ in range(1, self.walk_length):
                out = out @ P
                pes.append(out.diagonal())
            return torch.stack(pes, dim=-1)
        with warnings.catch_warnings():  # torch's "sparse CSR is in beta" notices
            warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
            adj = to_torch_csr_tensor(edge_index, value, size=(N, N))
        out, pes = adj, []
        for k in range(1, self.walk_length + 1):
            if k > 1:
                products = int(deg[out.col_indices()].sum())  # >= nnz of P^k
                if products > self.max_nnz:
                    raise ValueError(
                        f"exact RWSE of this {N:,}-node graph ({row.numel():,} edges) needs "
                        f"{products:,} products for P^{k} (> max_nnz={self.max_nnz:,}): use "
                        "SparseRandomWalkPE(..., method='sampled') or fewer steps")
                out = out @ adj
            pes.append(get_self_loop_attr(*to_edge_index(out), num_nodes=N))
        return torch.stack(pes, dim=-1)

    def _sampled(self, edge_index: Tensor, N: int, edge_weight: Tensor | None) -> Tensor:
        returns = torch.zeros(N, self.walk_length)
        if edge_index.size(1) == 0:
            return returns
        g = torch.Generator().manual_seed(self.seed)
        order = torch.argsort(edge_index[0], stable=True)
        col = edge_index[1, order]
        count = degree(edge_index[0], N, dtype=torch.long)
        ptr = torch.cumsum(count, 0) - count  # first edge of each source (CSR)
        last = (ptr + count - 1).clamp(min=0)
        if edge_weight is not None:  # walk proportionally to weights: invert each row's CDF
            cum = torch.cumsum(edge_weight[order].double(), 0)
            cum0 = torch.cat([cum.new_zeros(1), cum])
            lo, hi = cum0[ptr], cum0[ptr + count]
        chunk = max(1, 2**22 // max(N, 1))  # walks per chunk: ~4M walkers at a time
        for first in range(0, self.num_walks, chunk):
            n_walks = min(chunk, self.num_walks - first)
            start = torch.arange(N).repeat(n_walks)
            cur, alive = start.clone(), torch.ones(start.numel(), dtype=torch.bool)
            for k in range(self.walk_length):
                u = torch.rand(cur.numel(), generator=g, dtype=torch.float64)
                if edge_weight is None:
                    pos = ptr[cur] + (u * count[cur]).long()
                else:
                    target = lo[cur] + u * (hi[cur] - lo[cur])
                    pos = torch.searchsorted(cum, target, right=True)
                pos = torch.minimum(torch.maximum(pos, ptr[cur]), last[cur])
                alive &= count[cur] > 0  # a walk at a node without out-edges stops
                cur = torch.where(alive, col[pos.clamp(max=col.numel() - 1)], cur)
                returns[:, k] += (alive & (cur == start)).view(n_walks, N).sum(0)
        return returns / self.num_walks

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.walk_length}, method={self.method!r}, "
                f"attr_name={self.attr_name!r})")


class LaplacianPE(BaseTransform):
    r"""Laplacian eigenvector positional encoding, as PyG's
    :class:`~torch_geometric.transforms.AddLaplacianEigenvectorPE`: the eigenvectors of the
    symmetric normalised Laplacian :math:`I - D^{-1/2} A D^{-1/2}` of the ``k`` smallest
    eigenvalues after the first, each with a random sign (seed it with
    :func:`torch.manual_seed`). Differences: it is computed with
    :func:`torch.linalg.eigh` (no scipy needed), graphs with :math:`N \le k` nodes get
    their :math:`N-1` eigenvectors padded with zero columns to ``k`` (so graphs of any size
    batch together), and graphs above ``max_nodes`` are refused (the dense solver is
    :math:`O(N^3)`). The graph is treated as undirected (:math:`A` symmetrised).

    Args:
        k (int): Eigenvectors per node.
        attr_name (str): Attribute for the ``[N, k]`` encoding. (default: ``"lappe"``)
        max_nodes (int): Largest graph accepted. (default: ``4096``)
    """

    def __init__(self, k: int, attr_name: str = "lappe", max_nodes: int = 4096) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k, self.attr_name, self.max_nodes = k, attr_name, max_nodes

    def forward(self, data: Data) -> Data:
        N = data.num_nodes
        if N > self.max_nodes:
            raise ValueError(
                f"Laplacian eigenvectors of a {N:,}-node graph exceed max_nodes="
                f"{self.max_nodes:,} (a dense O(N^3) eigendecomposition): use "
                "SparseRandomWalkPE(..., method='sampled') and/or the degree encoding, or "
                "raise max_nodes")
        ei, w = to_undirected(data.edge_index, data.get("edge_weight"), num_nodes=N)
        ei, w = get_laplacian(ei, w, normalization="sym", num_nodes=N)
        L = torch.zeros(N, N, dtype=torch.float64).index_put_(
            (ei[0], ei[1]), w.double(), accumulate=True)
        _, vecs = torch.linalg.eigh(L)  # ascending eigenvalues
        vecs = vecs[:, 1:self.k + 1].float()
        pe = torch.zeros(N, self.k)
        pe[:, :vecs.size(1)] = vecs * (2 * torch.randint(0, 2, (vecs.size(1),)) - 1)
        data[self.attr_name] = pe
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.k}, attr_name={self.attr_name!r})"


class RWSEEncoder(torch.nn.Module):
    r"""Learned projection of the random-walk encoding: :math:`\mathbf{z}_i = \mathbf{W}
    \mathbf{p}_i` (``data.rwse`` from :class:`SparseRandomWalkPE`).

    Shapes:
        - **input:** :math:`(N, K)`.
        - **output:** :math:`(N, \text{channels})`.
    """

    def __init__(self, walk_length: int, channels: int) -> None:
        super().__init__()
        self.walk_length, self.channels = walk_length, channels
        self.lin = Linear(walk_length, channels)

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()

    def forward(self, rwse: Tensor) -> Tensor:
        if rwse.dim() != 2 or rwse.size(1) != self.walk_length:
            raise ValueError(f"rwse must have shape [num_nodes, {self.walk_length}], "
                             f"got {list(rwse.shape)}")
        return self.lin(rwse)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.walk_length}, {self.channels})"


class LapPEEncoder(torch.nn.Module):
    r"""Learned encoder of Laplacian eigenvectors that does not depend on their arbitrary
    signs.

    * ``sign="invariant"`` (SignNet-lite): every entry :math:`v` of every eigenvector goes
      through :math:`\phi(v) + \phi(-v)` (a small MLP, so the sum is even in :math:`v`), and
      :math:`\rho` (linear) mixes the ``k`` results: exactly invariant to each sign flip.
    * ``sign="flip"``: a linear map, with each eigenvector's sign flipped at random per
      graph in training (augmentation; not invariant at evaluation).

    Shapes:
        - **input:** ``lappe`` :math:`(N, k)` (``data.lappe`` from :class:`LaplacianPE`),
          batch vector :math:`(N)` *(optional)*.
        - **output:** :math:`(N, \text{channels})`.
    """

    def __init__(self, k: int, channels: int, sign: str = "invariant", hidden: int = 8) -> None:
        super().__init__()
        if sign not in ("invariant", "flip"):
            raise ValueError(f"sign must be 'invariant' or 'flip', got {sign!r}")
        self.k, self.channels, self.sign = k, channels, sign
        if sign == "invariant":
            self.phi = torch.nn.Sequential(Linear(1, hidden), torch.nn.GELU(),
                                           Linear(hidden, hidden))
            self.rho = Linear(k * hidden, channels)
        else:
            self.phi, self.rho = None, Linear(k, channels)

    def reset_parameters(self) -> None:
        if self.phi is not None:
            for m in self.phi:
                if isinstance(m, Linear):
                    m.reset_parameters()
        self.rho.reset_parameters()

    def forward(self, lappe: Tensor, batch: Tensor | None = None) -> Tensor:
        if lappe.dim() != 2 or lappe.size(1) != self.k:
            raise ValueError(f"lappe must have shape [num_nodes, {self.k}], "
                             f"got {list(lappe.shape)}")
        if self.phi is None:
            if self.training:
                b = torch.zeros_like(lappe[:, 0], dtype=torch.long) if batch is None else batch
                num_graphs = int(b.max()) + 1 if b.numel() else 0
                flips = torch.randint(0, 2, (num_graphs, self.k), device=lappe.device) * 2 - 1
                lappe = lappe * flips[b].to(lappe.dtype)
            return self.rho(lappe)
        v = lappe.unsqueeze(-1)  # (N, k, 1)
        return self.rho((self.phi(v) + self.phi(-v)).flatten(1))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.k}, {self.channels}, sign={self.sign!r})"


def dense_adjacency(edge_index: Tensor, batch: Tensor | None, num_nodes: int,
                    max_nodes: int | None = None, what: str = "this bias") -> Tensor:
    """``[B, N_max, N_max]`` bool, entry ``[b, i, j]`` true iff an edge ``j -> i``."""
    if batch is None:
        batch = torch.zeros(num_nodes, dtype=torch.long, device=edge_index.device)
    sizes = torch.bincount(batch) if batch.numel() else batch.new_zeros(1)
    n_max = int(sizes.max())
    if max_nodes is not None and n_max > max_nodes:
        raise ValueError(
            f"{what} is a dense N x N matrix per graph; the largest graph has {n_max:,} nodes "
            f"(> max_nodes={max_nodes:,}): use mask='adjacency' or global_attention='linear' "
            "with the 'degree'/'rwse' encodings for graphs this large, or raise max_nodes")
    adj = to_dense_adj(edge_index, batch, max_num_nodes=n_max, batch_size=sizes.numel())
    return adj.transpose(1, 2) > 0  # to_dense_adj puts sources in rows


@torch.no_grad()
def shortest_path_distance(edge_index: Tensor, batch: Tensor | None = None,
                           num_nodes: int | None = None, max_distance: int = 8,
                           max_nodes: int | None = 1024) -> Tensor:
    r"""Shortest-path lengths in every graph of a batch, in the dense padded layout.

    Entry ``[b, i, j]`` is the number of edges on a shortest directed path ``j -> ... -> i``
    in graph ``b`` (0 on the diagonal), clipped at ``max_distance``; ``max_distance + 1``
    when ``i`` cannot be reached from ``j`` (and on padding). Breadth-first search by boolean
    matrix products, graph by graph in the batch dimension (nothing crosses graphs): exact
    up to ``max_distance`` steps, then repeated squaring of the reachability matrix tells
    "farther" from "unreachable".

    Shapes:
        - **input:** edge indices :math:`(2, E)`, batch :math:`(N)` *(optional)*.
        - **output:** :math:`(B, N_{max}, N_{max})` long.
    """
    if num_nodes is None:
        num_nodes = batch.numel() if batch is not None else int(edge_index.max()) + 1
    adj = dense_adjacency(edge_index, batch, num_nodes, max_nodes, "the shortest-path bias")
    B, n, _ = adj.shape
    far = max_distance + 1
    dist = torch.full((B, n, n), far, dtype=torch.long, device=adj.device)
    M = adj.float()
    sizes = (torch.bincount(batch, minlength=B) if batch is not None
             else torch.tensor([num_nodes], device=adj.device))
    real = (torch.arange(n, device=adj.device) < sizes[:, None]).float()  # (B, N_max)
    reach = torch.eye(n, device=adj.device) * real[:, :, None]  # reach[b, i, j]: j -> i
    dist[reach.bool()] = 0
    for d in range(1, max_distance + 1):
        new = ((M @ reach) > 0) & (reach == 0)
        if not new.any():
            return dist
        dist[new] = d
        reach[new] = 1.0
    while True:  # reachable beyond max_distance: clipped to max_distance
        closure = ((reach @ reach) > 0).float()
        if torch.equal(closure, reach):
            break
        reach = closure
    dist[(reach > 0) & (dist == far)] = max_distance
    return dist


class SPDBias(torch.nn.Module):
    r"""Shortest-path attention bias (Graphormer's spatial encoding): a learned scalar per
    head and distance, :math:`b^h_{ij} = \mathbf{E}[\mathrm{spd}(j \to i), h]`, with
    distances clipped at ``max_distance`` and a learned "far" bucket for unreachable pairs.

    Args:
        heads (int): Attention heads :math:`H`.
        max_distance (int): Largest distinguished distance. (default: ``8``)
        max_nodes (int, optional): Largest graph accepted (the bias is dense).
            (default: ``1024``)

    Shapes:
        - **input:** edge indices :math:`(2, E)`, batch :math:`(N)` *(optional)*,
          ``num_nodes`` :math:`N`.
        - **output:** ``attn_bias`` :math:`(B, H, N_{max}, N_{max})`.
    """

    def __init__(self, heads: int, max_distance: int = 8, max_nodes: int | None = 1024) -> None:
        super().__init__()
        self.heads, self.max_distance, self.max_nodes = heads, max_distance, max_nodes
        self.emb = Embedding(max_distance + 2, heads)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.normal_(self.emb.weight, std=0.1)

    def forward(self, edge_index: Tensor, batch: Tensor | None = None,
                num_nodes: int | None = None) -> Tensor:
        dist = shortest_path_distance(edge_index, batch, num_nodes, self.max_distance,
                                      self.max_nodes)
        return self.emb(dist).permute(0, 3, 1, 2)  # (B, H, N_max, N_max)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.heads}, max_distance={self.max_distance})"


class AdjacencyBias(torch.nn.Module):
    r"""Adjacency attention bias (as MAT mixes the adjacency matrix into attention): a
    learned weight per head on each edge, :math:`b^h_{ij} = \lambda^h A_{ij}`.

    Shapes:
        - **input:** edge indices :math:`(2, E)`, batch :math:`(N)` *(optional)*,
          ``num_nodes`` :math:`N`.
        - **output:** ``attn_bias`` :math:`(B, H, N_{max}, N_{max})`.
    """

    def __init__(self, heads: int, max_nodes: int | None = 4096) -> None:
        super().__init__()
        self.heads, self.max_nodes = heads, max_nodes
        self.weight = Parameter(torch.empty(heads))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.constant_(self.weight, 1.0)

    def forward(self, edge_index: Tensor, batch: Tensor | None = None,
                num_nodes: int | None = None) -> Tensor:
        if num_nodes is None:
            num_nodes = batch.numel() if batch is not None else int(edge_index.max()) + 1
        adj = dense_adjacency(edge_index, batch, num_nodes, self.max_nodes, "the adjacency bias")
        return adj.unsqueeze(1).to(self.weight.dtype) * self.weight.view(1, -1, 1, 1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.heads})"
