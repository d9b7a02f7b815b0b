"""graphattn.nn's public names."""

import graphattn.nn as gnn
from graphattn.nn.models import GraphTransformerConfig


def test_every_public_name_is_exported_and_importable():
    assert gnn.GraphTransformerConfig is GraphTransformerConfig
    assert all(hasattr(gnn, name) for name in gnn.__all__)
    assert len(set(gnn.__all__)) == len(gnn.__all__)
