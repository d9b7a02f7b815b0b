"""Neural network modules of graphattn."""

from graphattn.nn.attention import GraphSelfAttention
from graphattn.nn.encodings import (
    AdjacencyBias,
    DegreeEncoder,
    LaplacianPE,
    LapPEEncoder,
    RWSEEncoder,
    SparseRandomWalkPE,
    SPDBias,
    shortest_path_distance,
)
from graphattn.nn.heads import CLSPool, GraphHead, NodeHead, masked_loss
from graphattn.nn.layer import GraphTransformerLayer
from graphattn.nn.linear_attention import LinearGlobalAttention
from graphattn.nn.models import GraphTransformer, GraphTransformerConfig

__all__ = [
    "GraphSelfAttention",
    "LinearGlobalAttention",
    "GraphTransformerLayer",
    "GraphTransformer",
    "GraphTransformerConfig",
    "NodeHead",
    "GraphHead",
    "CLSPool",
    "masked_loss",
    "DegreeEncoder",
    "SparseRandomWalkPE",
    "RWSEEncoder",
    "LaplacianPE",
    "LapPEEncoder",
    "SPDBias",
    "AdjacencyBias",
    "shortest_path_distance",
]
