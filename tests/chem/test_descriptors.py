"""graphattn.chem.descriptors: RDKit's values, in a fixed order, attached to graphs."""

from __future__ import annotations

import importlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rdkit import Chem
from rdkit.Chem import Crippen, Descriptors
from rdkit.Chem import rdMolDescriptors as rd

from graphattn.chem import RDKIT_2D, add_descriptors, descriptors, from_smiles
from graphattn.chem.descriptors import DESCRIPTOR_SETS

SMILES = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1", "[Na+].[Cl-]", "C", "OC(=O)C(F)(F)F"]
# molecules exercising every Crippen hydrogen rule, charges, salts, isotopes, S / P / halogens
VARIED = SMILES + [
    "c1ccc2c(c1)[nH]c1ccccc12", "On1cccc1", "OO", "OS(=O)(=O)O", "ON=O", "OC#N", "[OH-]",
    "[OH3+]", "O", "[2H]OC", "OP(=O)(O)O", "Cl", "OB(O)O", "C=CO", "[NH4+]", "[O-]C(=O)C",
    "O[N+](=O)[O-]", "OSc1ccccc1", "OC=S", "O[Si](C)(C)C", "CS", "Brc1ccc(I)cc1",
    "CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O", "CN1CCC[C@H]1c1cccnc1", "CCCCC(CC)COC(=O)c1ccccc1",
    "CC1(C)S[C@@H]2[C@H](NC(=O)Cc3ccccc3)C(=O)N2[C@H]1C(=O)O", "O=C1NC(=O)C(c2ccccc2)(CC)C(=O)N1",
    "C1CC2CCC1C2", "C1CCC2(CC1)CCCC2",
]
ODD = ["[Na+].[Cl-]", "C", "[H][H]", "C1CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC1", "[Fe+2]",
       "*C", "CC[Sn](CC)CC", "O=[Os](=O)(=O)=O", "[He]", "[U]", "C1CC2(C1)CC2"]
_OWN = {  # columns without a function of the same name in Descriptors: their reference
    "CrippenClogP": Crippen.MolLogP,
    "CrippenMR": Crippen.MolMR,
    "NumRotatableBondsNonStrict":
        lambda m: rd.CalcNumRotatableBonds(m, rd.NumRotatableBondsOptions.NonStrict),
    "NumAromaticAtoms": lambda m: sum(a.GetIsAromatic() for a in m.GetAtoms()),
    "NetCharge": Chem.GetFormalCharge,
    "NumH": lambda m: sum(a.GetAtomicNum() == 1 for a in Chem.AddHs(m).GetAtoms()),
    **{f"Num{e}": (lambda m, e=e: sum(a.GetSymbol() == e for a in m.GetAtoms()))
       for e in ("C", "N", "O", "F", "Cl", "Br", "I", "S", "P")},
}


def _reference(name: str, mol: Chem.Mol) -> float:
    return float((_OWN.get(name) or dict(Descriptors._descList)[name])(Chem.Mol(mol)))


def test_set_names_are_stable_and_unique():
    assert DESCRIPTOR_SETS["rdkit2d"] is RDKIT_2D
    assert len(set(RDKIT_2D)) == len(RDKIT_2D) == 85
    for required in ("CrippenClogP", "CrippenMR", "TPSA", "LabuteASA", "MolWt",
                     "MaxPartialCharge", "MinPartialCharge"):
        assert required in RDKIT_2D
    for family, n in (("PEOE_VSA", 14), ("SMR_VSA", 10), ("SlogP_VSA", 12)):
        assert [c for c in RDKIT_2D if c.startswith(family)] == [f"{family}{i}"
                                                                for i in range(1, n + 1)]
    assert not any(n.startswith(("fr_", "BCUT2D", "Ipc", "EState", "VSA_EState"))
                   for n in RDKIT_2D)
    assert set(RDKIT_2D) - set(_OWN) <= set(dict(Descriptors._descList))


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(VARIED))
def test_each_column_equals_its_rdkit_reference(smiles):
    mol = Chem.MolFromSmiles(smiles)
    v = descriptors(mol)
    assert v.shape == (1, len(RDKIT_2D)) and v.dtype == torch.float32
    for j, name in enumerate(RDKIT_2D):
        assert v[0, j].item() == pytest.approx(_reference(name, mol), rel=1e-5, abs=1e-4), name
    # the VSA vectors are RDKit's whole-vector calls, in the order of Descriptors' names
    j = RDKIT_2D.index("PEOE_VSA1")
    assert v[0, j:j + 14].tolist() == pytest.approx(list(rd.PEOE_VSA_(Chem.Mol(mol))),
                                                    rel=1e-5, abs=1e-4)
    assert v[0, RDKIT_2D.index("CrippenClogP")].item() == pytest.approx(
        Descriptors.MolLogP(mol), abs=1e-4)
    assert v[0, RDKIT_2D.index("TPSA")].item() == pytest.approx(Descriptors.TPSA(mol), abs=1e-4)


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(SMILES + ODD))
def test_values_are_finite_deterministic_and_a_smiles_equals_its_mol(smiles):
    v = descriptors(smiles)
    assert torch.isfinite(v).all()
    mol = Chem.MolFromSmiles(smiles)
    assert torch.equal(v, descriptors(mol))
    assert torch.equal(v, descriptors(smiles))
    assert not mol.GetAtomWithIdx(0).HasProp("_GasteigerCharge")  # the input is left alone


def test_unparameterised_charges_are_zero_not_nan():
    v = descriptors("CC[Sn](CC)CC")  # RDKit's Gasteiger charges here are NaN
    assert torch.isfinite(v).all()
    for name in ("MaxPartialCharge", "MinPartialCharge", "MaxAbsPartialCharge",
                 "MinAbsPartialCharge"):
        assert v[0, RDKIT_2D.index(name)].item() == 0.0
    assert v[0, RDKIT_2D.index("CrippenClogP")].item() == pytest.approx(
        Crippen.MolLogP(Chem.MolFromSmiles("CC[Sn](CC)CC")), abs=1e-4)
    assert descriptors("[Fe+2]")[0, RDKIT_2D.index("NetCharge")].item() == 2.0


def test_names_of_the_set_and_of_rdkit_mix_in_any_order():
    mol = Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1")
    names = ["BalabanJ", "CrippenClogP", "MolLogP", "TPSA", "qed", "PEOE_VSA3"]
    v = descriptors(mol, names)
    assert v.shape == (1, len(names))
    full = descriptors(mol)
    assert v[0, 1] == full[0, RDKIT_2D.index("CrippenClogP")]
    assert v[0, 1].item() == pytest.approx(v[0, 2].item(), abs=1e-5)  # MolLogP, slow path
    assert v[0, 0].item() == pytest.approx(_reference("BalabanJ", mol), rel=1e-5)
    assert v[0, 4].item() == pytest.approx(_reference("qed", mol), rel=1e-5)


def test_the_earlier_set_stays_available_by_name():
    mol = Chem.MolFromSmiles("CC(=O)Nc1ccc(O)cc1")
    names = DESCRIPTOR_SETS["rdkit2d-v1"]
    assert len(names) == len(set(names)) == 104 and "MolLogP" in names
    v = descriptors(mol, "rdkit2d-v1")
    assert v.shape == (1, 104)
    for j, name in enumerate(names):
        assert v[0, j].item() == pytest.approx(_reference(name, mol), rel=1e-5, abs=1e-5), name


def test_add_descriptors_cache_reads_back_what_it_computed(tmp_path, monkeypatch):
    module = importlib.import_module("graphattn.chem.descriptors")  # not the function

    graphs = [from_smiles(s, [1.0]) for s in SMILES[:4]] + [from_smiles(SMILES[0], [2.0])]
    first = add_descriptors(graphs, cache=tmp_path)
    (table,) = tmp_path.glob("*.npy")
    for g, o in zip(graphs, first):
        assert torch.equal(o.descriptors, descriptors(g.smiles))
    with monkeypatch.context() as m:  # the same list again: read, not computed
        m.setattr(module, "_rows", lambda *a: pytest.fail("computed again"))
        again = add_descriptors(graphs, cache=tmp_path)
    assert all(torch.equal(a.descriptors, b.descriptors) for a, b in zip(first, again))
    # another set or another molecule list: another file
    assert add_descriptors(graphs, ["MolLogP"], cache=tmp_path)[0].descriptors.shape == (1, 1)
    add_descriptors(graphs[:2], cache=tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 3
    table.write_bytes(b"not an array")  # a damaged file is computed and written anew
    fixed = add_descriptors(graphs, cache=tmp_path)
    assert all(torch.equal(a.descriptors, b.descriptors) for a, b in zip(first, fixed))
    with monkeypatch.context() as m:
        m.setattr(module, "_rows", lambda *a: pytest.fail("computed again"))
        add_descriptors(graphs, cache=tmp_path)
    assert not list(tmp_path.glob("*.tmp"))
    assert add_descriptors([], cache=tmp_path) == []


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
