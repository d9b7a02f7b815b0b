"""Social networks: networkx conversion, labelled generators and data sets."""

from graphattn.social.convert import from_networkx, node_index, to_networkx
from graphattn.social.datasets import (
    SOCIAL_DATASETS,
    karate_club,
    lfr_benchmark,
    pyg_social,
    split_masks,
    stochastic_block_model,
)

__all__ = [
    "SOCIAL_DATASETS",
    "from_networkx",
    "karate_club",
    "lfr_benchmark",
    "node_index",
    "pyg_social",
    "split_masks",
    "stochastic_block_model",
    "to_networkx",
]
