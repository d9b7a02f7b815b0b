import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from graphattn.chem import from_smiles, murcko_scaffold, random_split, scaffold_split

POOL = [
    "c1ccccc1", "Cc1ccccc1", "Oc1ccccc1", "Nc1ccccc1C", "c1ccccc1CCN",  # benzene scaffold
    "C1CCCCC1", "CC1CCCCC1", "OC1CCCCC1",  # cyclohexane
    "c1ccncc1", "Cc1ccncc1",  # pyridine
    "c1ccc2ccccc2c1", "Cc1ccc2ccccc2c1",  # naphthalene
    "c1ccc(cc1)-c1ccccc1", "C1CC1", "C1CC1C", "c1ccoc1", "c1cc[nH]c1", "O=C1CCCN1",
    "CCO", "CCCC", "CC(=O)O", "CN",  # acyclic: the empty scaffold
]


def assert_partition(parts, n):
    allidx = torch.cat(parts)
    assert all(p.dtype == torch.long for p in parts)
    assert sorted(allidx.tolist()) == list(range(n))


def test_random_split_sizes_partition_and_seed():
    tr, va, te = random_split(100, (0.7, 0.2, 0.1), seed=3)
    assert (len(tr), len(va), len(te)) == (70, 20, 10)
    assert_partition((tr, va, te), 100)
    again = random_split(100, (0.7, 0.2, 0.1), seed=3)
    assert all(torch.equal(a, b) for a, b in zip((tr, va, te), again))
    other = random_split(100, (0.7, 0.2, 0.1), seed=4)
    assert not torch.equal(tr, other[0])
    assert [len(p) for p in random_split(list(range(10)))] == [8, 1, 1]


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 300), st.floats(0, 1), st.floats(0, 1), st.integers(0, 99))
def test_random_split_any_fractions(n, a, b, seed):
    a, b = sorted((a, b))
    frac = (a, b - a, 1 - b)
    parts = random_split(n, frac, seed=seed)
    assert_partition(parts, n)
    assert abs(len(parts[0]) - frac[0] * n) <= 1


@pytest.mark.parametrize("frac", [(0.8, 0.1), (0.5, 0.5, 0.5), (1.2, -0.1, -0.1)])
def test_bad_fractions(frac):
    with pytest.raises(ValueError, match="frac"):
        random_split(10, frac)
    with pytest.raises(ValueError, match="frac"):
        scaffold_split(POOL, frac)


def test_murcko_scaffold():
    assert murcko_scaffold("Cc1ccccc1") == "c1ccccc1"
    assert murcko_scaffold("CCO") == ""
    with pytest.raises(ValueError, match="'C1CC'"):
        murcko_scaffold("C1CC")


def scaffolds_of(smiles, idx):
    return {murcko_scaffold(smiles[i]) for i in idx.tolist()}


def test_scaffold_split_keeps_scaffolds_apart():
    tr, va, te = scaffold_split(POOL, (0.6, 0.2, 0.2))
    assert_partition((tr, va, te), len(POOL))
    s_tr, s_va, s_te = (scaffolds_of(POOL, p) for p in (tr, va, te))
    assert not (s_tr & s_va) and not (s_tr & s_te) and not (s_va & s_te)
    # Largest groups first: the empty (acyclic, 4) and benzene (5) groups are in train.
    assert {"", "c1ccccc1"} <= s_tr
    assert len(tr) <= round(0.6 * len(POOL))


def test_scaffold_split_default_is_deterministic():
    a = scaffold_split(POOL, seed=0)
    b = scaffold_split(POOL, seed=123)  # largest-first ignores the seed
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_balanced_scaffold_split_is_seeded():
    a = scaffold_split(POOL, (0.5, 0.25, 0.25), seed=1, balanced=True)
    b = scaffold_split(POOL, (0.5, 0.25, 0.25), seed=1, balanced=True)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    splits = {tuple(scaffold_split(POOL, (0.5, 0.25, 0.25), seed=s, balanced=True)[1].tolist())
              for s in range(6)}
    assert len(splits) > 1
    for s in range(6):
        parts = scaffold_split(POOL, (0.5, 0.25, 0.25), seed=s, balanced=True)
        assert_partition(parts, len(POOL))
        sets = [scaffolds_of(POOL, p) for p in parts]
        assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(POOL), min_size=1, max_size=60), st.integers(0, 50),
       st.booleans())
def test_scaffold_split_property(smiles, seed, balanced):
    parts = scaffold_split(smiles, (0.8, 0.1, 0.1), seed=seed, balanced=balanced)
    assert_partition(parts, len(smiles))
    sets = [scaffolds_of(smiles, p) for p in parts]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert len(parts[0]) <= round(0.8 * len(smiles))


def test_scaffold_split_accepts_graphs():
    graphs = [from_smiles(s) for s in POOL]
    a = scaffold_split(graphs, seed=0)
    b = scaffold_split(POOL, seed=0)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    with pytest.raises(TypeError, match="single string"):
        scaffold_split("CCO")
    with pytest.raises(TypeError, match="smiles"):
        scaffold_split([1, 2, 3])


def test_splits_accept_datasets(tmp_path):
    from graphattn.chem import MoleculeCSV

    path = tmp_path / "pool.csv"
    path.write_text("smiles,y\n" + "".join(f"{s},{i}\n" for i, s in enumerate(POOL)))
    data = MoleculeCSV(tmp_path / "root", path, "smiles", "y")
    whole = scaffold_split(data, seed=0)
    assert all(torch.equal(x, y) for x, y in zip(whole, scaffold_split(POOL, seed=0)))
    part = scaffold_split(data[5:], seed=0)  # a view: smiles read through its indices
    assert all(torch.equal(x, y) for x, y in zip(part, scaffold_split(POOL[5:], seed=0)))
    assert [len(p) for p in random_split(data)] == [18, 2, 2]
