"""Neural network modules of graphattn."""

from graphattn.nn.attention import GraphSelfAttention
from graphattn.nn.layer import GraphTransformerLayer
from graphattn.nn.linear_attention import LinearGlobalAttention

__all__ = ["GraphSelfAttention", "GraphTransformerLayer", "LinearGlobalAttention"]
