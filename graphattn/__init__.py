"""graphattn: graph self-attention for PyTorch Geometric."""

from graphattn.nn import GraphSelfAttention

__version__ = "0.1.0"

__all__ = ["GraphSelfAttention", "__version__"]
