"""graphattn: graph self-attention for PyTorch Geometric."""

from graphattn.nn import (
    GraphSelfAttention,
    GraphTransformer,
    GraphTransformerLayer,
    LinearGlobalAttention,
)
from graphattn.nn.models import GraphTransformerConfig

__version__ = "0.1.0"  # the one place: pyproject.toml reads it

__all__ = [
    "GraphSelfAttention",
    "GraphTransformer",
    "GraphTransformerConfig",
    "GraphTransformerLayer",
    "LinearGlobalAttention",
    "__version__",
]
