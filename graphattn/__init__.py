"""graphattn: graph self-attention for PyTorch Geometric."""

__version__ = "0.1.0"
