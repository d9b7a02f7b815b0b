"""Molecules: featurizers (SMILES / RDKit -> PyG ``Data``), data sets and splits."""

from graphattn.chem.featurize import (
    DEFAULT_ELEMENTS,
    AtomFeaturizer,
    AtomTypeEmbedding,
    BondFeaturizer,
    from_mol,
    from_smiles,
)

__all__ = [
    "DEFAULT_ELEMENTS",
    "AtomFeaturizer",
    "AtomTypeEmbedding",
    "BondFeaturizer",
    "from_mol",
    "from_smiles",
]
