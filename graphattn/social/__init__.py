"""Social networks: networkx conversion, labelled generators, data sets and a community
prior."""

from graphattn.social.convert import from_networkx, node_index, to_networkx
from graphattn.social.datasets import (
    LFR_MAX_NODES,
    SOCIAL_DATASETS,
    degree_corrected_sbm,
    karate_club,
    lfr_benchmark,
    pyg_social,
    split_masks,
    stochastic_block_model,
)
from graphattn.social.modularity import soft_modularity

__all__ = [
    "LFR_MAX_NODES",
    "SOCIAL_DATASETS",
    "degree_corrected_sbm",
    "from_networkx",
    "karate_club",
    "lfr_benchmark",
    "node_index",
    "pyg_social",
    "soft_modularity",
    "split_masks",
    "stochastic_block_model",
    "to_networkx",
]
