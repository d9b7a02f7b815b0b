import pytest

from graphattn.nn.kernels import structure


@pytest.fixture
def structures_built(monkeypatch):
    """An empty edge-structure cache, and a list that gets one item per EdgeStructure
    built from then on (how often a graph was sorted)."""
    structure.STRUCTURES.clear()
    built, init = [], structure.EdgeStructure.__init__
    monkeypatch.setattr(structure.EdgeStructure, "__init__",
                        lambda self, *a: built.append(1) or init(self, *a))
    return built
