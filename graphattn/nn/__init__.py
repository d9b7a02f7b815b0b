"""Neural network modules of graphattn."""

from graphattn.nn.attention import GraphSelfAttention
from graphattn.nn.heads import CLSPool, GraphHead, NodeHead, masked_loss
from graphattn.nn.layer import GraphTransformerLayer
from graphattn.nn.linear_attention import LinearGlobalAttention

__all__ = [
    "GraphSelfAttention",
    "LinearGlobalAttention",
    "GraphTransformerLayer",
    "NodeHead",
    "GraphHead",
    "CLSPool",
    "masked_loss",
]
