"""GraphTransformer: input encoders, optional encodings, transformer layers and a head,
configured by one :class:`GraphTransformerConfig`."""

from __future__ import annotations

import dataclasses
import inspect
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint
from torch_geometric.data import Data

from graphattn.nn.attention import GraphSelfAttention
from graphattn.nn.encodings import (
    AdjacencyBias,
    DegreeEncoder,
    LapPEEncoder,
    RWSEEncoder,
    SPDBias,
)
from graphattn.nn.heads import GraphHead, NodeHead
from graphattn.nn.layer import GraphTransformerLayer, make_norm
from graphattn.nn.linear import Linear

MASKS = ("adjacency", "full", "hybrid")
# name -> file of graphattn/nn/pretrained: the encoders from_pretrained ships
PRETRAINED = {"qm9": "qm9.pt"}
# the config fields of the head: a fine-tuned model may set them, the encoder keeps the rest
HEAD_FIELDS = ("out_channels", "task", "pool", "head_layers", "graph_features", "dropout",
               "attn_dropout", "checkpoint")
ENCODINGS = ("degree", "rwse", "lappe", "spd", "adjacency")
TASKS = ("node", "graph")
INPUT_LAYERS = ("linear", "attention")


@dataclass(frozen=True)
class GraphTransformerConfig:
    r"""Everything that defines a :class:`GraphTransformer`, in one place.

    ``GraphTransformer(in_channels, hidden_channels, out_channels, num_layers, **options)``
    builds one of these from its arguments; :attr:`GraphTransformer.config` is
    :meth:`to_dict` of it (what checkpoints store) and :meth:`GraphTransformer.from_config`
    takes either form back. The constructor checks the combination and raises a
    ``ValueError`` naming what was wrong.

    **One meaning of** ``mask``: the set of nodes each node attends to, the same word as
    :class:`~graphattn.nn.GraphSelfAttention`'s ``mask``:

    * ``"adjacency"``: its in-neighbours and itself, as
      ``GraphSelfAttention(mask="adjacency")``.
    * ``"full"``: every node of its own graph (never across the graphs of a batch), by a
      softmax ``GraphSelfAttention(mask="full")`` (edges bias the scores) or by
      :class:`~graphattn.nn.LinearGlobalAttention` (:math:`O(N)`, edges not read), as
      ``global_attention`` says.
    * ``"hybrid"``: both sets, as two branches whose outputs are summed (the GraphGPS
      pattern): the adjacency branch (attention, or GINE message passing with
      ``local="gine"``) and the full branch.

    A single attention reads one set, so :class:`~graphattn.nn.GraphSelfAttention` takes the
    first two values; a transformer layer also takes ``"hybrid"``, its pair of branches.
    ``local`` only says how the adjacency branch of ``"hybrid"`` is computed;
    ``global_attention`` how the full set is (``"full"`` and ``"hybrid"``);
    ``global_layers`` keeps the full branch in the last layers only, so the layers before
    it read the adjacency set. ``mask="hybrid"`` with ``local=None`` has no adjacency
    branch: it is ``"full"``, and is stored as such (with a ``DeprecationWarning``).

    Args:
        in_channels (int): Node feature size.
        hidden_channels (int): Width of the transformer, a multiple of ``heads``.
        out_channels (int): Outputs per node or per graph.
        num_layers (int): Transformer layers.
        heads (int): Attention heads. (default: ``4``)
        mask (str): ``"adjacency"``, ``"full"`` or ``"hybrid"``, see above.
            (default: ``"adjacency"``)
        score (str): ``"dot"`` or ``"additive"``. (default: ``"dot"``)
        task (str): ``"node"`` or ``"graph"``. (default: ``"node"``)
        pool (str): Graph pooling: ``"mean"``, ``"sum"``, ``"max"``, ``"attention"``,
            ``"cls"``, ``"gru"`` or ``"atomwise"`` (see :class:`~graphattn.nn.GraphHead`).
            (default: ``"mean"``)
        edge_dim (int, optional): Edge feature size. (default: ``None``)
        encodings (sequence of str): Encoding names (see :class:`GraphTransformer`); one
            string is one name. (default: ``()``)
        dropout (float): Dropout in layers and head. (default: ``0.0``)
        attn_dropout (float): Dropout on attention weights. (default: ``0.0``)
        norm (str, optional): ``"layer"``, ``"batch"`` or ``None``. (default: ``"layer"``)
        pre_norm (bool): Pre-norm layers. (default: ``True``)
        global_attention (str): How the full set is attended: ``"softmax"`` or
            ``"linear"``. (default: ``"softmax"``)
        local (str, optional): The adjacency branch of ``"hybrid"``: ``"attention"``,
            ``"gine"`` or ``None``. (default: ``"attention"``)
        ffn_ratio (int): FFN width over ``hidden_channels``. (default: ``2``)
        head_layers (int): MLP layers of the head. (default: ``2``)
        walk_length (int): RWSE steps. (default: ``16``)
        lap_k (int): LapPE eigenvectors. (default: ``8``)
        max_degree (int): Degree clip. (default: ``64``)
        max_distance (int): Shortest-path clip. (default: ``8``)
        checkpoint (bool): In training, recompute each layer's activations in the backward
            pass instead of storing them (:func:`torch.utils.checkpoint.checkpoint`): memory
            of one layer's activations instead of all, for about one more forward pass of
            time. For full-batch training on graphs of a million nodes. (default: ``False``)
        global_layers (int, optional): With ``mask="hybrid"`` and ``local="attention"``:
            only the last ``global_layers`` layers have the full branch, the ones before
            are adjacency attention alone (Polynormer's local-then-global order). ``None``:
            every layer. For large node-classification graphs one global layer after
            local ones is as accurate as a global branch in every layer, at a fraction of
            its cost (see ``benchmarks/social.py``). (default: ``None``)
        residual (str): ``"add"`` or ``"gru"``: how each layer's attention output joins the
            node states (a sum, or Attentive FP's GRU update; see
            :class:`~graphattn.nn.GraphTransformerLayer`). (default: ``"add"``)
        input_layer (str): How node features become hidden vectors: ``"linear"`` (a
            linear map) or ``"attention"``: a :class:`~graphattn.nn.GraphSelfAttention`
            over in-neighbours and self (``heads`` heads, dot score, no skip, edge features
            not used) on the raw features, so the first hop attends over the input itself.
            On narrow features (a few per node, as in large social graphs) its kernel
            gathers the raw features instead of keys and values and needs no pass over the
            sources in the backward, which makes it much cheaper than a transformer layer:
            ``input_layer="attention"`` with two layers is the default large-graph model of
            ``benchmarks/social.py``. Needs ``edge_index``. (default: ``"linear"``)
        graph_features (int): Size of a molecule-level input vector (``data.descriptors``
            ``[B, graph_features]``, e.g. :func:`graphattn.chem.descriptors`'s RDKit 2-D
            descriptors), graph task only: standardised with the statistics
            :meth:`GraphTransformer.fit_graph_features` stores (buffers, so checkpoints
            keep them), clipped to :math:`\pm 5`, and concatenated to the pooled vector
            before the head's MLP (Chemprop's extra molecule features). ``0``: none.
            (default: ``0``)
    """

    in_channels: int
    hidden_channels: int
    out_channels: int
    num_layers: int
    heads: int = 4
    mask: str = "adjacency"
    score: str = "dot"
    task: str = "node"
    pool: str = "mean"
    edge_dim: int | None = None
    encodings: tuple[str, ...] = ()
    dropout: float = 0.0
    attn_dropout: float = 0.0
    norm: str | None = "layer"
    pre_norm: bool = True
    global_attention: str = "softmax"
    local: str | None = "attention"
    ffn_ratio: int = 2
    head_layers: int = 2
    walk_length: int = 16
    lap_k: int = 8
    max_degree: int = 64
    max_distance: int = 8
    checkpoint: bool = False
    global_layers: int | None = None
    residual: str = "add"
    input_layer: str = "linear"
    graph_features: int = 0

    def __post_init__(self) -> None:
        enc = self.encodings
        object.__setattr__(self, "encodings", (enc,) if isinstance(enc, str) else tuple(enc))
        if self.mask not in MASKS:
            raise ValueError(f"mask must be one of {MASKS}, got {self.mask!r}")
        if self.mask == "hybrid" and self.local is None:
            warnings.warn("mask='hybrid' with local=None has no adjacency branch: it is "
                          "mask='full' and is stored as such", DeprecationWarning, stacklevel=4)
            object.__setattr__(self, "mask", "full")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if self.input_layer not in INPUT_LAYERS:
            raise ValueError(f"input_layer must be one of {INPUT_LAYERS}, "
                             f"got {self.input_layer!r}")
        unknown = [e for e in self.encodings if e not in ENCODINGS]
        if unknown:
            raise ValueError(f"unknown encodings {unknown}: choose from {ENCODINGS}")
        if self.graph_features < 0 or (self.graph_features and self.task != "graph"):
            raise ValueError(f"graph_features must be >= 0 and needs task='graph', got "
                             f"graph_features={self.graph_features}, task={self.task!r}")
        if self.num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {self.num_layers}")
        if self.heads < 1 or self.hidden_channels < 1 or self.hidden_channels % self.heads:
            raise ValueError(f"hidden_channels must be a positive multiple of heads, got "
                             f"hidden_channels={self.hidden_channels}, heads={self.heads}")
        if self.global_layers is not None and (
                self.mask != "hybrid" or self.local != "attention"
                or not 1 <= self.global_layers <= self.num_layers):
            raise ValueError(f"global_layers needs mask='hybrid', local='attention' and "
                             f"1 <= global_layers <= num_layers={self.num_layers}, got "
                             f"global_layers={self.global_layers}, mask={self.mask!r}, "
                             f"local={self.local!r}")
        biases = [e for e in self.encodings if e in ("spd", "adjacency")]
        if biases and (self.mask == "adjacency" or self.global_attention != "softmax"):
            raise ValueError(f"encodings {biases} bias a softmax global attention: use "
                             f"mask='full' or 'hybrid' with global_attention='softmax', got "
                             f"mask={self.mask!r}, global_attention={self.global_attention!r}")

    def layer_masks(self) -> list[str]:
        """The ``mask`` of each transformer layer: ``mask``, except that with
        ``global_layers`` the layers before the last ``global_layers`` are
        ``"adjacency"``."""
        first_global = self.num_layers - (self.global_layers or self.num_layers)
        return [self.mask if i >= first_global else "adjacency"
                for i in range(self.num_layers)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict of every field (``encodings`` as a list), in field order."""
        d = dataclasses.asdict(self)
        d["encodings"] = list(self.encodings)
        return d

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> GraphTransformerConfig:
        """The config of a dict such as :meth:`to_dict` writes. Keys a dict from an older
        version lacks take their defaults; an unknown key raises a ``ValueError``."""
        if not isinstance(config, Mapping):
            raise TypeError(f"a GraphTransformer config must be a GraphTransformerConfig or "
                            f"a dict, got {type(config).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(config) - set(names))
        if unknown:
            raise ValueError(f"unknown GraphTransformer options {unknown}: expected some "
                             f"of {names}")
        missing = [n for n in names[:4] if n not in config]
        if missing:
            raise ValueError(f"a GraphTransformer config needs {names[:4]}, missing {missing}")
        return cls(**config)


class GraphTransformer(torch.nn.Module):
    r"""A ready graph transformer for node or graph prediction, in one line:

    .. code-block:: python

        model = GraphTransformer(in_channels=9, hidden_channels=64, out_channels=1,
                                 num_layers=4, mask="hybrid", task="graph", pool="mean",
                                 encodings=("degree", "rwse", "spd"))
        out = model(batch)            # a Data / Batch
        out = model(x, edge_index, edge_attr, batch)

    Input encoders project ``x`` (and ``edge_attr``) to ``hidden_channels`` (``x`` by a
    linear map, or with ``input_layer="attention"`` by adjacency attention over the raw
    features, which is one more hop of message passing); the node
    encodings are added to the projected nodes, the attention biases are built once per
    forward and shared by every layer (as in Graphormer); ``num_layers``
    :class:`~graphattn.nn.GraphTransformerLayer` follow (with a final norm when
    ``pre_norm``), then a :class:`~graphattn.nn.NodeHead` (``task="node"``, output
    ``[N, out_channels]``) or a :class:`~graphattn.nn.GraphHead` (``task="graph"``, output
    ``[B, out_channels]``).

    Encodings, by name (each optional):

    * ``"degree"``: :class:`~graphattn.nn.encodings.DegreeEncoder`; needs nothing.
    * ``"rwse"``: :class:`~graphattn.nn.encodings.RWSEEncoder`; needs ``data.rwse``
      ``[N, walk_length]`` from ``SparseRandomWalkPE(walk_length, attr_name="rwse")``.
    * ``"lappe"``: :class:`~graphattn.nn.encodings.LapPEEncoder` (sign-invariant); needs
      ``data.lappe`` ``[N, lap_k]`` from ``LaplacianPE(lap_k, attr_name="lappe")``.
    * ``"spd"``: :class:`~graphattn.nn.encodings.SPDBias`, a shortest-path bias per head;
      needs nothing, and a softmax global attention (``mask="full"`` or ``"hybrid"``).
    * ``"adjacency"``: :class:`~graphattn.nn.encodings.AdjacencyBias`; as ``"spd"``.

    Args:
        in_channels (int): Node feature size.
        hidden_channels (int): Width of the transformer, a multiple of ``heads``.
        out_channels (int): Outputs per node or per graph.
        num_layers (int): Transformer layers.
        **options: The other fields of :class:`GraphTransformerConfig`, by keyword, with
            its defaults (``heads=4``, ``mask="adjacency"``, ``score="dot"``,
            ``task="node"``, ...); its docstring documents each, and the one meaning of
            ``mask``.

    Shapes:
        - **input:** a :class:`~torch_geometric.data.Data` / ``Batch``, or node features
          :math:`(N, F)`, edge indices :math:`(2, E)`, edge features :math:`(E, D)`
          *(optional)*, batch vector :math:`(N)` *(optional)*, ``rwse`` :math:`(N, K)` and
          ``lappe`` :math:`(N, k)` when those encodings are used.
        - **output:** :math:`(N, \text{out})` (node task) or :math:`(B, \text{out})` (graph).
    """

    def __init__(self, in_channels: int, hidden_channels: int, out_channels: int,
                 num_layers: int, **options: Any) -> None:
        super().__init__()
        cfg = GraphTransformerConfig(in_channels, hidden_channels, out_channels, num_layers,
                                     **options)
        self.cfg = cfg
        heads, edge_dim, encodings = cfg.heads, cfg.edge_dim, cfg.encodings
        self.in_channels, self.hidden_channels, self.out_channels = (
            in_channels, hidden_channels, out_channels)
        self.task, self.encodings, self.edge_dim = cfg.task, encodings, edge_dim
        self.checkpoint = cfg.checkpoint

        self.input_layer = cfg.input_layer
        self.lin_in = self.attn_in = None
        if cfg.input_layer == "linear":
            self.lin_in = Linear(in_channels, hidden_channels)
        else:
            self.attn_in = GraphSelfAttention(in_channels, hidden_channels // heads, heads=heads,
                                              root_weight=False, add_self_loops=True)
        self.lin_edge = torch.nn.Linear(edge_dim, hidden_channels) if edge_dim else None
        self.degree = (DegreeEncoder(hidden_channels, cfg.max_degree)
                       if "degree" in encodings else None)
        self.rwse = (RWSEEncoder(cfg.walk_length, hidden_channels)
                     if "rwse" in encodings else None)
        self.lappe = LapPEEncoder(cfg.lap_k, hidden_channels) if "lappe" in encodings else None
        self.spd = SPDBias(heads, cfg.max_distance) if "spd" in encodings else None
        self.adjacency = AdjacencyBias(heads) if "adjacency" in encodings else None
        self.layers = torch.nn.ModuleList([
            GraphTransformerLayer(hidden_channels, heads, mask=mask, score=cfg.score,
                                  local=cfg.local, global_attention=cfg.global_attention,
                                  edge_dim=hidden_channels if edge_dim else None,
                                  dropout=cfg.dropout, attn_dropout=cfg.attn_dropout,
                                  ffn_ratio=cfg.ffn_ratio, norm=cfg.norm,
                                  pre_norm=cfg.pre_norm, residual=cfg.residual)
            for mask in cfg.layer_masks()])
        self.norm_out = make_norm(cfg.norm if cfg.pre_norm else None, hidden_channels)
        self.head = (NodeHead(hidden_channels, out_channels, num_layers=cfg.head_layers,
                              dropout=cfg.dropout) if cfg.task == "node" else
                     GraphHead(hidden_channels, out_channels, pool=cfg.pool,
                               num_layers=cfg.head_layers, dropout=cfg.dropout, heads=heads,
                               extra_channels=cfg.graph_features))
        if cfg.graph_features:  # standardisation of data.descriptors (fit_graph_features)
            self.register_buffer("graph_mean", torch.zeros(cfg.graph_features))
            self.register_buffer("graph_std", torch.ones(cfg.graph_features))

    @torch.no_grad()
    def fit_graph_features(self, features: Tensor) -> None:
        """Store the mean and standard deviation (a constant column: 1) of the molecule-level
        inputs ``features`` ``[num_graphs, graph_features]`` of the *training* graphs: the
        model standardises ``data.descriptors`` with them."""
        n = self.cfg.graph_features
        if not n or features.dim() != 2 or features.size(1) != n:
            raise ValueError(f"features must have shape [num_graphs, graph_features={n}] "
                             f"(a model built with graph_features > 0), got "
                             f"{list(features.shape)}")
        features = features.to(self.graph_mean)
        std = features.std(0, unbiased=False) if features.size(0) > 1 else torch.ones(n)
        self.graph_mean.copy_(features.mean(0))
        self.graph_std.copy_(torch.where(std > 1e-6 * (1 + features.abs().amax(0)), std,
                                         torch.ones_like(std)))

    @classmethod
    def from_pretrained(cls, source: str = "qm9", out_channels: int = 1,
                        **options: Any) -> GraphTransformer:
        r"""A model whose encoder (input encoders, encodings and transformer layers) holds
        pretrained weights and whose head is new, to fine-tune on another task.

        ``source`` is a shipped encoder by name (``"qm9"``: the molecule encoder of recipe
        ``molecule-regression``, trained on all 12 QM9 properties at once by
        ``graphattn train --dataset qm9 --recipe qm9-pretraining``) or the path of any
        checkpoint of a :class:`GraphTransformer` (``graphattn train``'s ``best.pt``, or
        :func:`graphattn.checkpoint.save_checkpoint`'s). Molecules must be featurized as the
        source's were (the default featurizers of :mod:`graphattn.chem` for ``"qm9"``).

        Args:
            source (str or path): shipped name (:data:`PRETRAINED`) or checkpoint path.
            out_channels (int): outputs of the new head.
            **options: head settings (:data:`HEAD_FIELDS`: ``task``, ``pool``,
                ``graph_features``, ``dropout``, ...); encoder settings may be given too
                (e.g. a recipe's) but must equal the source's.

        Raises:
            ValueError: unknown name, unreadable file, a source that is not a
                GraphTransformer, or an encoder setting different from the source's.
        """
        from graphattn.checkpoint import load_checkpoint

        path = pretrained_path(source)
        ckpt = load_checkpoint(path)
        name = f"{cls.__module__}.{cls.__qualname__}"
        config = ckpt.get("model_config")
        if ckpt.get("model_class") != name or not isinstance(config, dict):
            raise ValueError(f"pretrained source {os.fspath(source)!r} is not a checkpoint "
                             f"of a {cls.__name__} with its config (it holds "
                             f"{ckpt.get('model_class')!r})")
        config = GraphTransformerConfig.from_dict(config).to_dict()
        wrong = {k: (v, config[k]) for k, v in options.items()
                 if k not in HEAD_FIELDS and k in config
                 and (list(v) if isinstance(v, tuple) else v) != config[k]}
        if wrong:
            raise ValueError("settings differ from the pretrained encoder's ("
                             + ", ".join(f"{k}={v!r}, pretrained {p!r}"
                                         for k, (v, p) in wrong.items())
                             + f"): leave them out, or do not start from {source!r}")
        model = cls.from_config({**config, **options, "out_channels": out_channels})
        own = model.state_dict()
        encoder = {k: v for k, v in ckpt["model_state"].items() if _is_encoder(k)}
        missing = [k for k in own if _is_encoder(k) and k not in encoder]
        misfit = [k for k, v in encoder.items() if k not in own or own[k].shape != v.shape]
        if missing or misfit:
            raise ValueError(f"{os.fspath(path)!r}: its weights do not fit its config "
                             f"(missing {missing[:3]}, misfit {misfit[:3]})")
        model.load_state_dict(encoder, strict=False)
        model.pretrained = os.fspath(source)
        return model

    @property
    def config(self) -> dict[str, Any]:
        """:meth:`GraphTransformerConfig.to_dict` of :attr:`cfg`: JSON-able, what
        checkpoints store, and what :meth:`from_config` takes back."""
        return self.cfg.to_dict()

    @classmethod
    def from_config(cls, config: GraphTransformerConfig | Mapping[str, Any]) -> GraphTransformer:
        """Build a model from a :class:`GraphTransformerConfig` or from its dict (e.g. the
        :attr:`config` stored in a checkpoint; keys added since it was written take their
        defaults)."""
        if not isinstance(config, GraphTransformerConfig):
            config = GraphTransformerConfig.from_dict(config)
        c = config.to_dict()
        return cls(c.pop("in_channels"), c.pop("hidden_channels"), c.pop("out_channels"),
                   c.pop("num_layers"), **c)

    def reset_parameters(self) -> None:
        for m in self.children():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        for layer in self.layers:
            layer.reset_parameters()

    def forward(
        self,
        x: Tensor | Data,
        edge_index: Tensor | None = None,
        edge_attr: Tensor | None = None,
        batch: Tensor | None = None,
        rwse: Tensor | None = None,
        lappe: Tensor | None = None,
        num_graphs: int | None = None,
        descriptors: Tensor | None = None,
    ) -> Tensor:
        """Predict; see the class docstring for the inputs and shapes."""
        if isinstance(x, Data):  # Data or Batch
            data = x
            x, edge_index, edge_attr = data.x, data.edge_index, data.get("edge_attr")
            batch, rwse, lappe = data.get("batch"), data.get("rwse"), data.get("lappe")
            num_graphs = data.num_graphs if batch is not None else 1
            descriptors = data.get("descriptors")
        x, edge_attr = self._check(x, edge_index, edge_attr, batch, rwse, lappe)
        N = x.size(0)
        h = self.lin_in(x) if self.lin_in is not None else self.attn_in(x, edge_index)
        if self.degree is not None:
            h = h + self.degree(edge_index, N)
        if self.rwse is not None:
            h = h + self.rwse(rwse.to(h.dtype))
        if self.lappe is not None:
            h = h + self.lappe(lappe.to(h.dtype), batch)
        e = self.lin_edge(edge_attr) if self.lin_edge is not None and edge_attr is not None \
            else None
        bias = None
        for module in (self.spd, self.adjacency):
            if module is not None:
                b = module(edge_index, batch, N).to(h.dtype)
                bias = b if bias is None else bias + b
        for layer in self.layers:
            b = bias if layer.global_attn is not None else None  # biases the global softmax
            if self.checkpoint and self.training and torch.is_grad_enabled():
                h = checkpoint(layer, h, edge_index, e, batch, b, use_reentrant=False)
            else:
                h = layer(h, edge_index, e, batch, attn_bias=b)
        h = self.norm_out(h)
        if self.task == "node":
            return self.head(h)
        extra = None
        if self.cfg.graph_features:
            if descriptors is None:
                raise ValueError(f"the model was built with graph_features="
                                 f"{self.cfg.graph_features}: pass data.descriptors "
                                 "(graphattn.chem.add_descriptors)")
            d = descriptors.to(h.dtype).view(-1, self.cfg.graph_features)
            extra = ((d - self.graph_mean.to(h.dtype)) / self.graph_std.to(h.dtype)).clamp(-5, 5)
        return self.head(h, batch, num_graphs, extra)

    def _check(self, x, edge_index, edge_attr, batch, rwse, lappe):
        if not isinstance(x, Tensor) or x.dim() != 2 or x.size(1) != self.in_channels:
            got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"x must have shape [num_nodes, in_channels={self.in_channels}], "
                             f"got {got}")
        first = self.lin_in if self.lin_in is not None else self.attn_in.lin_query
        dtype = first.weight.dtype
        x = x if x.is_floating_point() else x.to(dtype)  # e.g. integer one-hot features
        if edge_index is None and self.attn_in is not None:
            raise ValueError("input_layer='attention' needs edge_index")
        if edge_index is None and (self.degree is not None or self.spd is not None
                                   or self.adjacency is not None):
            raise ValueError(f"encodings {list(self.encodings)} need edge_index")
        if edge_attr is not None:
            if self.lin_edge is None:
                raise ValueError("edge_attr was given but the model was built with "
                                 "edge_dim=None")
            edge_attr = edge_attr.view(-1, 1) if edge_attr.dim() == 1 else edge_attr
            if edge_attr.size(1) != self.edge_dim:
                raise ValueError(f"edge_attr must have edge_dim={self.edge_dim} features, got "
                                 f"{list(edge_attr.shape)}")
            edge_attr = edge_attr if edge_attr.is_floating_point() else edge_attr.to(dtype)
        for name, value, transform in (("rwse", rwse, "SparseRandomWalkPE(walk_length, "
                                        "attr_name='rwse')"),
                                       ("lappe", lappe, "LaplacianPE(k, attr_name='lappe')")):
            if getattr(self, name) is not None and value is None:
                raise ValueError(f"encodings include {name!r}: pass data.{name} "
                                 f"(add it with the transform {transform})")
        return x, edge_attr

    def __repr__(self) -> str:
        c = self.config
        return (f"{self.__class__.__name__}({c['in_channels']}, {c['hidden_channels']}, "
                f"{c['out_channels']}, num_layers={c['num_layers']}, mask={c['mask']!r}, "
                f"task={c['task']!r}, encodings={tuple(self.encodings)})")


def _is_encoder(key: str) -> bool:
    """A state_dict entry of the encoder (not the head, not the descriptors' statistics)."""
    return not key.startswith(("head.", "graph_mean", "graph_std"))


def pretrained_path(source: str | os.PathLike) -> str:
    """The file of a shipped encoder name (:data:`PRETRAINED`) or a checkpoint path."""
    if isinstance(source, str) and source in PRETRAINED:
        return os.path.join(os.path.dirname(__file__), "pretrained", PRETRAINED[source])
    path = os.fspath(source)
    if not os.path.isfile(path):
        raise ValueError(f"pretrained source {path!r} is neither a shipped encoder "
                         f"({', '.join(PRETRAINED)}) nor a checkpoint file")
    return path


# help() and inspect.signature(GraphTransformer) list every option with its default
GraphTransformer.__init__.__signature__ = inspect.Signature(
    [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    + [inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD
                         if i < 4 else inspect.Parameter.KEYWORD_ONLY,
                         default=(inspect.Parameter.empty if f.default is dataclasses.MISSING
                                  else f.default), annotation=f.type)
       for i, f in enumerate(dataclasses.fields(GraphTransformerConfig))],
    return_annotation=None)
