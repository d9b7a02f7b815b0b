import copy
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from rdkit import Chem

from graphattn.chem import (
    AtomFeaturizer,
    AtomTypeEmbedding,
    BondFeaturizer,
    from_mol,
    from_smiles,
)

SMILES = [
    "CCO", "c1ccccc1", "C[NH3+]", "C[C@H](N)O", "F/C=C/F", "CC(=O)[O-].[Na+]", "[Na+]", "C",
    "CC(C)Cc1ccc(cc1)[C@@H](C)C(=O)O", "O=S(=O)(O)c1ccc(Br)cc1", "C#N", "[Se]1C=CC=C1",
    "B(O)(O)c1ccccc1", "[2H]C([2H])([2H])O", "C[Si](C)(C)Cl", "ClP(Cl)(Cl)(Cl)Cl",
    "Cn1cnc2c1c(=O)n(C)c(=O)n2C", "[Fe+2]", "N[C@@H](Cc1c[nH]c2ccccc12)C(=O)O",
]


def bits(featurizer, row):
    """The set of one-hot labels set in one feature row."""
    return {featurizer.labels[i] for i in row.nonzero().flatten().tolist()}


def assert_exactly_one_hot(featurizer, x):
    assert x.shape[1] == len(featurizer)
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    for name, (start, size) in featurizer.blocks.items():
        sums = x[:, start:start + size].sum(dim=1)
        assert torch.equal(sums, torch.ones_like(sums)), name


def test_documented_sizes():
    atom, bond = AtomFeaturizer(), BondFeaturizer()
    assert {k: v[1] for k, v in atom.blocks.items()} == {
        "element": 14, "degree": 8, "formal_charge": 6, "num_hs": 6,
        "hybridization": 7, "aromatic": 2, "ring": 2, "chirality": 4,
    }
    assert len(atom) == 49 == len(atom.labels) == sum(atom.sizes)
    assert {k: v[1] for k, v in bond.blocks.items()} == {
        "type": 5, "conjugated": 2, "ring": 2, "stereo": 7,
    }
    assert len(bond) == 16 == len(bond.labels)
    # Blocks tile the vector without gaps or overlaps.
    starts = [s for s, _ in atom.blocks.values()]
    assert starts == [sum(atom.sizes[:i]) for i in range(len(atom.sizes))]


def test_vocabulary_is_data():
    f = AtomFeaturizer(elements=("C", "N", "O"), degrees=(1, 2))
    assert f.blocks["element"] == (0, 4) and f.blocks["degree"] == (4, 3)
    x = from_smiles("CCS", atom_featurizer=f).x
    assert "element=other" in bits(f, x[2]) and "degree=2" in bits(f, x[2])  # S: C and H
    assert "degree=other" in bits(f, x[0])  # CH3: total degree 4, outside (1, 2)
    assert_exactly_one_hot(f, x)


@pytest.mark.parametrize("smiles", SMILES)
def test_every_block_exactly_one_hot(smiles):
    for explicit_h in (False, True):
        data = from_smiles(smiles, explicit_h=explicit_h, fragments="all")
        assert_exactly_one_hot(AtomFeaturizer(), data.x)
        assert_exactly_one_hot(BondFeaturizer(), data.edge_attr)


def test_ethanol_bits():
    f = AtomFeaturizer()
    x = from_smiles("CCO").x
    assert x.shape == (3, 49)
    common = {"formal_charge=0", "hybridization=SP3", "aromatic=False", "ring=False",
              "chirality=none"}
    assert bits(f, x[0]) == common | {"element=C", "degree=4", "num_hs=3"}
    assert bits(f, x[1]) == common | {"element=C", "degree=4", "num_hs=2"}
    assert bits(f, x[2]) == common | {"element=O", "degree=2", "num_hs=1"}


def test_benzene_bits():
    data = from_smiles("c1ccccc1")
    atom, bond = AtomFeaturizer(), BondFeaturizer()
    for row in data.x:
        assert bits(atom, row) == {
            "element=C", "degree=3", "num_hs=1", "formal_charge=0", "hybridization=SP2",
            "aromatic=True", "ring=True", "chirality=none",
        }
    assert data.edge_index.shape == (2, 12)
    for row in data.edge_attr:
        assert bits(bond, row) == {"type=AROMATIC", "conjugated=True", "ring=True",
                                   "stereo=NONE"}


def test_charged_amine():
    x = from_smiles("C[NH3+]").x
    assert bits(AtomFeaturizer(), x[1]) >= {"element=N", "formal_charge=1", "num_hs=3",
                                            "degree=4"}


def test_chirality_cip_and_tag():
    cip = AtomFeaturizer()
    r = from_smiles("C[C@H](N)O").x
    s = from_smiles("C[C@@H](N)O").x
    assert "chirality=R" in bits(cip, r[1]) and "chirality=S" in bits(cip, s[1])
    assert all("chirality=none" in bits(cip, r[i]) for i in (0, 2, 3))
    # The same molecule written in another atom order keeps its CIP label ...
    same = from_smiles("O[C@@H](N)C").x
    assert "chirality=R" in bits(cip, same[1])
    # ... while the chiral tag follows the written order.
    tag = AtomFeaturizer(chirality="tag")
    assert "chirality=CCW" in bits(tag, from_smiles("C[C@H](N)O", atom_featurizer=tag).x[1])
    assert "chirality=none" in bits(cip, from_smiles("CC(N)O").x[1])


def test_bond_stereo_and_types():
    bond = BondFeaturizer()
    ea = from_smiles("F/C=C/F").edge_attr
    assert "stereo=E" in bits(bond, ea[2]) and "type=DOUBLE" in bits(bond, ea[2])
    ea = from_smiles("F/C=C\\F").edge_attr
    assert "stereo=Z" in bits(bond, ea[2])
    assert "type=TRIPLE" in bits(bond, from_smiles("C#N").edge_attr[0])


def test_edges_bidirectional_and_aligned():
    smiles = "CC(=O)Oc1ccccc1C#N"
    mol = Chem.MolFromSmiles(smiles)
    data = from_smiles(smiles)
    bond = BondFeaturizer()
    assert data.edge_index.shape == (2, 2 * mol.GetNumBonds())
    assert data.edge_attr.shape == (2 * mol.GetNumBonds(), len(bond))
    pairs = {tuple(e) for e in data.edge_index.t().tolist()}
    assert all((v, u) in pairs for u, v in pairs)
    for e, (u, v) in enumerate(data.edge_index.t().tolist()):
        rd = mol.GetBondBetweenAtoms(u, v)
        assert rd is not None
        assert torch.equal(data.edge_attr[e], bond(rd))


def test_one_atom_molecule():
    data = from_smiles("[Na+]", y=1.5)
    assert data.x.shape == (1, 49)
    assert data.edge_index.shape == (2, 0) and data.edge_index.dtype == torch.long
    assert data.edge_attr.shape == (0, 16)
    assert data.y.shape == (1, 1) and data.y.item() == 1.5


def test_targets_shape():
    assert from_smiles("CCO", y=[1.0, float("nan"), 2.0]).y.shape == (1, 3)
    assert from_smiles("CCO", y=torch.tensor([[3.0]])).y.shape == (1, 1)
    assert not hasattr(from_smiles("CCO"), "y") or from_smiles("CCO").y is None
    assert from_smiles("CCO").smiles == "CCO"


def test_salts_policy():
    largest = from_smiles("CC(=O)[O-].[Na+]")
    assert largest.num_nodes == 4 and largest.smiles == "CC(=O)[O-].[Na+]"
    assert from_smiles("CC(=O)[O-].[Na+]", fragments="all").num_nodes == 5
    # The counter-ion is dropped even when written first.
    assert from_smiles("[Cl-].C[NH3+]").num_nodes == 2
    with pytest.raises(ValueError, match="fragments"):
        from_smiles("CCO", fragments="biggest")


def test_explicit_hydrogens_keep_heavy_atom_features():
    plain = from_smiles("C[C@H](N)O")
    with_h = from_smiles("C[C@H](N)O", explicit_h=True)
    assert with_h.num_nodes == 4 + 7  # CH3, CH, NH2, OH
    assert torch.equal(with_h.x[:4], plain.x)
    assert with_h.edge_index.shape[1] == 2 * (3 + 7)


@pytest.mark.parametrize("bad", ["C1CC", "C(C)(C)(C)(C)C", "not a smiles", "c1cccc1", ""])
def test_invalid_smiles_names_the_string(bad):
    with pytest.raises(ValueError) as info:
        from_smiles(bad)
    assert repr(bad) in str(info.value)


def test_type_errors():
    with pytest.raises(TypeError, match="SMILES string"):
        from_smiles(None)
    with pytest.raises(TypeError, match="RDKit Mol"):
        from_mol("CCO")


def test_unsanitized_mol_is_refused():
    with pytest.raises(ValueError, match="SanitizeMol"):
        from_mol(Chem.MolFromSmiles("c1ccccc1O", sanitize=False))


def test_featurizers_pickle_and_compare():
    atom, bond = AtomFeaturizer(elements=("C", "O"), chirality="tag"), BondFeaturizer()
    atom2, bond2 = pickle.loads(pickle.dumps((atom, bond)))
    assert atom2 == atom and bond2 == bond and atom2.blocks == atom.blocks
    a = from_smiles("C[C@H](O)C=C", atom_featurizer=atom, bond_featurizer=bond)
    b = from_smiles("C[C@H](O)C=C", atom_featurizer=atom2, bond_featurizer=bond2)
    assert torch.equal(a.x, b.x) and torch.equal(a.edge_attr, b.edge_attr)
    assert AtomFeaturizer() != AtomFeaturizer(mode="index")
    assert copy.deepcopy(AtomFeaturizer(mode="index")).sizes == AtomFeaturizer().sizes


def test_bad_featurizer_configuration():
    with pytest.raises(ValueError, match="Xx"):
        AtomFeaturizer(elements=("C", "Xx"))
    with pytest.raises(ValueError, match="mode"):
        AtomFeaturizer(mode="dense")
    with pytest.raises(ValueError, match="SP9"):
        AtomFeaturizer(hybridizations=("SP9",))
    with pytest.raises(ValueError, match="QUADRUPLE_X"):
        BondFeaturizer(bond_types=("QUADRUPLE_X",))


def test_from_mol_matches_from_smiles():
    smiles = "N[C@@H](Cc1c[nH]c2ccccc12)C(=O)O"
    a, b = from_smiles(smiles), from_mol(Chem.MolFromSmiles(smiles))
    assert torch.equal(a.x, b.x) and torch.equal(a.edge_index, b.edge_index)
    assert b.smiles == Chem.MolToSmiles(Chem.MolFromSmiles(smiles))


def test_index_mode_and_embedding():
    onehot, index = AtomFeaturizer(), AtomFeaturizer(mode="index")
    data = from_smiles("C[C@H](N)O", atom_featurizer=index)
    assert data.x.dtype == torch.long and data.x.shape == (4, len(index)) == (4, 8)
    # Column k holds the slot the one-hot block k sets.
    dense = from_smiles("C[C@H](N)O").x
    for k, (start, size) in enumerate(onehot.blocks.values()):
        assert torch.equal(dense[:, start:start + size].argmax(1), data.x[:, k])
    emb = AtomTypeEmbedding(index.sizes, 16)
    out = emb(data.x)
    assert out.shape == (4, 16)
    # Same atom types, same vector: the two carbons differ (CH3 vs chiral CH), so do outputs.
    assert not torch.allclose(out[0], out[1])
    assert torch.allclose(emb(data.x[[0, 0]])[0], out[0])
    # A single integer column (element only).
    assert AtomTypeEmbedding(14, 8)(data.x[:, 0]).shape == (4, 8)
    with pytest.raises(ValueError, match="shape"):
        emb(data.x[:, :3])
    with pytest.raises(ValueError, match="out of range"):
        emb(torch.full((1, 8), 99))
    assert "AtomTypeEmbedding" in repr(emb)


@settings(max_examples=25, deadline=None)
@given(st.sampled_from(SMILES), st.integers(0, 10_000))
def test_atom_order_permutes_features(smiles, seed):
    """Renumbering the atoms permutes rows of x and edges, nothing else."""
    mol = Chem.MolFromSmiles(smiles)
    perm = torch.randperm(mol.GetNumAtoms(), generator=torch.Generator().manual_seed(seed))
    renum = Chem.RenumberAtoms(mol, perm.tolist())
    a, b = from_mol(mol, fragments="all"), from_mol(renum, fragments="all")
    assert torch.equal(a.x[perm], b.x)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(len(perm))
    edges_a = {(tuple(inv[e].tolist()), tuple(f.tolist()))
               for e, f in zip(a.edge_index.t(), a.edge_attr)}
    edges_b = {(tuple(e.tolist()), tuple(f.tolist()))
               for e, f in zip(b.edge_index.t(), b.edge_attr)}
    assert edges_a == edges_b
