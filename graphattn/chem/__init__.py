"""Molecules: featurizers (SMILES / RDKit -> PyG ``Data``), data sets and splits."""

from graphattn.chem.datasets import (
    QM9,
    QM9_TARGETS,
    FreeSolv,
    MoleculeCSV,
    MoleculeDataset,
    MoleculeNet,
    Solubility,
    default_root,
)
from graphattn.chem.descriptors import RDKIT_2D, add_descriptors, descriptors
from graphattn.chem.featurize import (
    DEFAULT_ELEMENTS,
    AtomFeaturizer,
    AtomTypeEmbedding,
    BondFeaturizer,
    from_mol,
    from_smiles,
)
from graphattn.chem.splits import murcko_scaffold, random_split, scaffold_split

__all__ = [
    "DEFAULT_ELEMENTS",
    "AtomFeaturizer",
    "AtomTypeEmbedding",
    "BondFeaturizer",
    "from_mol",
    "from_smiles",
    "default_root",
    "MoleculeDataset",
    "FreeSolv",
    "Solubility",
    "QM9",
    "QM9_TARGETS",
    "MoleculeCSV",
    "MoleculeNet",
    "random_split",
    "scaffold_split",
    "murcko_scaffold",
    "RDKIT_2D",
    "descriptors",
    "add_descriptors",
]
