"""graphattn.chem.descriptors: RDKit's values, in a fixed order, attached to graphs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rdkit import Chem
from rdkit.Chem import Crippen, Descriptors

from graphattn.chem import RDKIT_2D, add_descriptors, descriptors, from_smiles

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "[Na+].[Cl-]", "C", "OC(=O)C(F)(F)F"]


def test_vector_is_rdkits_descriptors_in_order():
    mol = Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1")
    v = descriptors(mol)
    assert v.shape == (1, len(RDKIT_2D)) and v.dtype == torch.float32
    assert len(set(RDKIT_2D)) == len(RDKIT_2D) == 104
    fns = dict(Descriptors._descList)
    for j, name in enumerate(RDKIT_2D):
        assert v[0, j].item() == pytest.approx(float(fns[name](mol)), rel=1e-5, abs=1e-5)
    assert v[0, RDKIT_2D.index("MolLogP")].item() == pytest.approx(Crippen.MolLogP(mol),
                                                                     abs=1e-5)
    assert not any(n.startswith(("fr_", "BCUT2D", "Ipc")) for n in RDKIT_2D)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(SMILES))
def test_values_are_finite_and_a_smiles_equals_its_mol(smiles):
    v = descriptors(smiles)
    assert torch.isfinite(v).all()
    assert torch.equal(v, descriptors(Chem.MolFromSmiles(smiles)))


def test_add_descriptors_copies_graphs_and_names_bad_input():
    graphs = [from_smiles(s, [1.0]) for s in SMILES[:3]]
    out = add_descriptors(graphs)
    assert all(not hasattr(g, "descriptors") or g.get("descriptors") is None for g in graphs)
    for g, o in zip(graphs, out):
        assert torch.equal(o.descriptors, descriptors(g.smiles))
        assert torch.equal(o.x, g.x) and torch.equal(o.y, g.y)
    names = ["MolLogP", "MolMR"]
    two = add_descriptors(graphs, names)
    assert two[0].descriptors.shape == (1, 2)
    with pytest.raises(ValueError, match="unknown descriptor set 'nope'"):
        descriptors("CCO", "nope")
    with pytest.raises(ValueError, match="unknown RDKit descriptors"):
        descriptors("CCO", ["NotADescriptor"])
    with pytest.raises(ValueError, match="cannot parse SMILES"):
        descriptors("C1CC")
    with pytest.raises(TypeError, match="RDKit Mol or a SMILES"):
        descriptors(3)
