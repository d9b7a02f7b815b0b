"""Recipes: named default configurations (model, optimiser, schedule, budget) per task kind.

``graphattn train --dataset D --seed S --out DIR`` with no other flag trains with the recipe of
``D`` (:data:`DATASET_RECIPES`); a flag given on the command line overrides one setting. The
benchmarks read their graphattn settings from here too, so the README's figures and the CLI
come from one configuration.

===========================  =====================================================================
recipe                        what it is
===========================  =====================================================================
``molecule-regression``       GraphTransformer, adjacency mask, 64 wide, 4 layers, 4 heads,
                              dropout 0.1, degree + RWSE (16 steps) encodings, sum readout,
                              85 RDKit 2-D descriptors (``descriptors="rdkit2d"``,
                              standardised with the training molecules' statistics) joined
                              to the pooled vector; the encoder starts from the weights
                              pretrained on QM9 (``pretrained="qm9"``, a new head);
                              AdamW lr 2e-3, weight decay 1e-4, batch 32, 40 epochs, warm-up
                              3 epochs then cosine (per step), gradient clip 5, drop_last;
                              an ensemble of 3 such models (:mod:`graphattn.ensemble`).
                              ``benchmarks/molecules.py``'s graphattn-adjacency on Solubility.
``freesolv``                  molecule-regression with Attentive FP's GRU readout, 100 epochs,
                              warm-up 5: graphattn-adjacency on FreeSolv.
``qm9-pretraining``           molecule-regression's model without descriptors trained on all
                              12 QM9 properties at once (standardised), batch 128, 30 epochs:
                              the encoder :meth:`GraphTransformer.from_pretrained` ships as
                              ``"qm9"``.
``qm9``                       molecule-regression from scratch, for QM9's own properties
                              (the pretrained encoder has seen them all), one model, batch 64,
                              40 epochs, warm-up 1: ``benchmarks/molecules.py``'s
                              ``qm9_gap_110k``.
``molecule-classification``   molecule-regression's model and optimiser, cross-entropy (not
                              benchmarked).
``node-small``                a few labelled nodes on a small graph (karate): two
                              GraphSelfAttention layers (4 heads of 8, then 1) on friend-profile
                              features, dropout 0.5, Adam lr 0.01, weight decay 5e-4, 300
                              epochs, soft-modularity prior weight 1, no validation split.
                              ``examples/karate_club.py``.
``node-large``                a large graph (sbm): the default large-graph GraphTransformer
                              (hybrid mask, 32 wide, 2 layers, linear global attention in the
                              last, attention input layer, dropout 0.2), Adam lr 0.01, weight
                              decay 5e-4, 40 epochs, validated every 2 on accuracy; 10,000
                              nodes. ``benchmarks/social.py``'s ``graphattn`` at 10k nodes.
===========================  =====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data

__all__ = ["Recipe", "RECIPES", "DATASET_RECIPES", "get_recipe", "recipe_for",
           "AttentionPair", "friend_profile", "KARATE_LABELLED"]


@dataclass(frozen=True)
class Recipe:
    """A named configuration.

    Attributes:
        name, description: what it is called and what it is.
        task, kind: ``fit``'s task and kind.
        model (dict): ``"arch"`` (``"transformer"``: :class:`~graphattn.nn.GraphTransformer`
            keyword arguments in the rest; ``"attention_pair"``: :class:`AttentionPair`'s).
        train (dict): :func:`graphattn.train.fit` keyword arguments (``modularity``: the
            weight of the soft-modularity prior, turned into ``extra_loss`` by the caller;
            ``ensemble``: how many members :func:`graphattn.ensemble.fit_ensemble` trains,
            1 when absent).
        data (dict): data-set options (``num_nodes``, ``features``, ``labelled``).
    """

    name: str
    description: str
    task: str
    kind: str
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)

    def with_changes(self, name: str, description: str, model: dict | None = None,
                     train: dict | None = None, data: dict | None = None, **kw) -> Recipe:
        return Recipe(name, description, kw.get("task", self.task), kw.get("kind", self.kind),
                      {**self.model, **(model or {})}, {**self.train, **(train or {})},
                      {**self.data, **(data or {})})


# QM9's 12 properties (graphattn.chem.QM9_TARGETS), the pre-training tasks
QM9_PRETRAINING_TARGETS = ("mu", "alpha", "homo", "lumo", "gap", "r2", "zpve", "u0", "u", "h",
                           "g", "cv")

_MOLECULE = Recipe(
    "molecule-regression",
    "Graph regression on molecules (Solubility's benchmark configuration).",
    task="graph", kind="regression",
    model=dict(arch="transformer", hidden_channels=64, num_layers=4, heads=4, mask="adjacency",
               pool="sum", encodings=("degree", "rwse"), walk_length=16, dropout=0.1,
               local="attention", descriptors="rdkit2d", pretrained="qm9"),
    train=dict(epochs=40, batch_size=32, lr=2e-3, weight_decay=1e-4, optimizer="adamw",
               schedule="warmup_cosine", warmup=3, grad_clip=5.0, drop_last=True,
               ensemble=3),
)

RECIPES: dict[str, Recipe] = {r.name: r for r in [
    _MOLECULE,
    _MOLECULE.with_changes("freesolv", "FreeSolv's benchmark configuration: GRU readout, "
                           "100 epochs, 5 warm-up epochs.", model=dict(pool="gru"),
                           train=dict(epochs=100, warmup=5)),
    _MOLECULE.with_changes("qm9-pretraining", "Pre-training of the molecule encoder on QM9: "
                           "molecule-regression's model without descriptors, all 12 QM9 "
                           "targets at once, 30 epochs, batch 128.",
                           model=dict(descriptors=None, pretrained=None),
                           train=dict(epochs=30, batch_size=128, ensemble=1),
                           data=dict(targets=QM9_PRETRAINING_TARGETS)),
    _MOLECULE.with_changes("qm9", "QM9 properties: molecule-regression from scratch (the "
                           "pretrained encoder has seen every QM9 molecule's properties), "
                           "one model, batch 64, 40 epochs, warm-up 1.",
                           model=dict(pretrained=None),
                           train=dict(epochs=40, batch_size=64, warmup=1, ensemble=1)),
    _MOLECULE.with_changes("molecule-classification", "Graph classification on molecules: "
                           "molecule-regression's model and optimiser, cross-entropy.",
                           kind="classification"),
    Recipe("node-small", "Node classification with a few labels on a small graph "
           "(examples/karate_club.py).", task="node", kind="classification",
           model=dict(arch="attention_pair", hidden=8, heads=4, dropout=0.5),
           train=dict(epochs=300, lr=0.01, weight_decay=5e-4, optimizer="adam",
                      schedule="constant", modularity=1.0, monitor="accuracy"),
           data=dict(features="friend_profile", labelled="fixed")),
    Recipe("node-large", "Node classification on a large graph (benchmarks/social.py's "
           "default graphattn model).", task="node", kind="classification",
           model=dict(arch="transformer", hidden_channels=32, num_layers=2, heads=4,
                      mask="hybrid", global_attention="linear", global_layers=1, dropout=0.2,
                      input_layer="attention"),
           train=dict(epochs=40, lr=0.01, weight_decay=5e-4, optimizer="adam",
                      schedule="constant", monitor="accuracy", eval_every=2),
           data=dict(num_nodes=10_000)),
]}

DATASET_RECIPES = {"freesolv": "freesolv", "solubility": "molecule-regression",
                   "qm9": "qm9", "karate": "node-small", "sbm": "node-large"}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ValueError listing the known ones otherwise."""
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; expected one of {', '.join(RECIPES)}")
    return RECIPES[name]


def recipe_for(dataset: str, kind: str | None = None) -> Recipe:
    """The default recipe of a data set (``csv:`` files: molecule regression or
    classification after ``kind``)."""
    if kind == "classification" and DATASET_RECIPES.get(dataset, "molecule").startswith(
            ("molecule", "freesolv", "qm9")):
        return RECIPES["molecule-classification"]
    return RECIPES[DATASET_RECIPES.get(dataset, "molecule-regression")]


# ------------------------------------------------------------------------------- small graph

KARATE_LABELLED = {"community": [0, 4, 8, 24], "faction": [0, 33]}


def friend_profile(edge_index: Tensor, num_nodes: int) -> Tensor:
    r"""Row :math:`i` of the random-walk matrix :math:`D^{-1}(A + I)`: node :math:`i` and its
    neighbours, weighted evenly (``[N, N]``; for graphs of up to a few thousand nodes)."""
    from torch_geometric.utils import add_self_loops, degree

    ei, _ = add_self_loops(edge_index, num_nodes=num_nodes)
    src, dst = ei
    x = torch.zeros(num_nodes, num_nodes)
    x[dst, src] = 1.0 / degree(dst, num_nodes)[dst]
    return x


class AttentionPair(torch.nn.Module):
    """Two adjacency-masked self-attention layers (``heads`` heads of ``hidden``, ELU, then
    one head giving the class scores), dropout before each: the small-graph recipe's model."""

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 8, heads: int = 4,
                 dropout: float = 0.5):
        super().__init__()
        from graphattn.nn import GraphSelfAttention

        self.config = dict(in_channels=in_channels, out_channels=out_channels, hidden=hidden,
                           heads=heads, dropout=dropout, task="node")
        self.dropout = dropout
        self.attn1 = GraphSelfAttention(in_channels, hidden, heads=heads, add_self_loops=True)
        self.attn2 = GraphSelfAttention(hidden * heads, out_channels, heads=1,
                                        add_self_loops=True)

    @classmethod
    def from_config(cls, config: dict) -> AttentionPair:
        return cls(**{k: v for k, v in config.items() if k != "task"})

    def forward(self, data: Data) -> Tensor:
        x = F.dropout(data.x, p=self.dropout, training=self.training)
        x = F.elu(self.attn1(x, data.edge_index))
        x = F.dropout(x, p=self.dropout, training=self.training)
        return self.attn2(x, data.edge_index)
