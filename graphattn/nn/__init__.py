"""Neural network modules of graphattn."""

from graphattn.nn.attention import GraphSelfAttention

__all__ = ["GraphSelfAttention"]
