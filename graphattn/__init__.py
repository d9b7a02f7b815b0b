"""graphattn: graph self-attention for PyTorch Geometric."""

from graphattn.nn import (
    GraphSelfAttention,
    GraphTransformer,
    GraphTransformerLayer,
    LinearGlobalAttention,
)

__version__ = "0.1.0"

__all__ = [
    "GraphSelfAttention",
    "GraphTransformer",
    "GraphTransformerLayer",
    "LinearGlobalAttention",
    "__version__",
]
