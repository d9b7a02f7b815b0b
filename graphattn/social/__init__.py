"""Social networks: networkx conversion, labelled generators and data sets."""

from graphattn.social.convert import from_networkx, node_index, to_networkx

__all__ = ["from_networkx", "node_index", "to_networkx"]
