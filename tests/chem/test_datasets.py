import csv
import math
import os
import warnings

import pytest
import torch
from rdkit import Chem
from torch_geometric.datasets import MoleculeNet as PygMoleculeNet
from torch_geometric.loader import DataLoader

import graphattn.chem.datasets as chem_datasets
from graphattn.chem import (
    QM9,
    AtomFeaturizer,
    FreeSolv,
    MoleculeCSV,
    MoleculeNet,
    Solubility,
    default_root,
)


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def freesolv(tmp_path_factory):
    return FreeSolv(tmp_path_factory.mktemp("freesolv"))


def test_freesolv_embedded(freesolv):
    assert len(freesolv) == 642 and freesolv.skipped == []
    assert freesolv.target_names == ["expt"]
    first = freesolv[0]
    assert first.smiles == "CN(C)C(=O)c1ccc(cc1)OC"
    assert first.y.shape == (1, 1) and first.y.item() == pytest.approx(-11.01)
    assert first.x.shape[1] == len(AtomFeaturizer())
    batch = next(iter(DataLoader(freesolv, batch_size=32)))
    assert batch.y.shape == (32, 1) and batch.num_graphs == 32


def test_freesolv_reload_does_not_reprocess(freesolv, monkeypatch):
    def boom(self):
        raise AssertionError("processed data exists: must not be read again")

    monkeypatch.setattr(FreeSolv, "records", boom)
    again = FreeSolv(freesolv.root)
    assert len(again) == 642 and torch.equal(again[5].x, freesolv[5].x)


def test_featurizer_choice_gets_its_own_processed_file(freesolv):
    small = FreeSolv(freesolv.root, atom_featurizer=AtomFeaturizer(elements=("C", "N", "O")))
    assert small[0].x.shape[1] == len(AtomFeaturizer(elements=("C", "N", "O")))
    assert FreeSolv(freesolv.root)[0].x.shape[1] == len(AtomFeaturizer())


def test_solubility_fixed_split(tmp_path):
    train = Solubility(tmp_path, split="train")
    test = Solubility(tmp_path, split="test")
    assert (len(train), len(test)) == (1025, 257)
    assert train.skipped == [] and test.skipped == []
    assert train[0].y.item() == pytest.approx(-3.18)  # n-pentane, first SD record
    assert Chem.MolFromSmiles(train[0].smiles) is not None
    with pytest.raises(ValueError, match="split"):
        Solubility(tmp_path, split="val")


def test_default_root_is_a_user_cache(monkeypatch, tmp_path):
    package_dir = os.path.dirname(chem_datasets.__file__)
    monkeypatch.delenv("GRAPHATTN_DATA", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    root = default_root("freesolv")
    assert root == os.path.expanduser("~/.cache/graphattn/freesolv")
    assert not root.startswith(package_dir) and not root.startswith(os.getcwd() + os.sep)
    monkeypatch.setenv("GRAPHATTN_DATA", str(tmp_path))
    assert default_root("freesolv") == str(tmp_path / "freesolv")
    data = FreeSolv()
    assert data.root == str(tmp_path / "freesolv") and len(data) == 642
    assert sorted(os.listdir(os.path.join(package_dir, "data"))) == [
        "SOURCES.md", "freesolv.csv", "solubility.test.sdf", "solubility.train.sdf"]


def test_csv_skips_are_reported_and_saved(tmp_path):
    path = write_csv(tmp_path / "mols.csv", ["name", "smiles", "logp", "tox"], [
        ["ethanol", "CCO", "-0.31", "0"],
        ["broken", "C1CC", "1.0", "1"],
        ["gap", "c1ccccc1", "", "1"],
        ["word", "CCN", "high", "0"],
        ["valence", "C(C)(C)(C)(C)C", "2", "0"],
        ["empty", "", "1", "1"],
        ["acid", "CC(=O)O", "nan", "NA"],
    ])
    with pytest.warns(UserWarning, match="skipped 4 invalid rows") as record:
        data = MoleculeCSV(tmp_path / "root", path, "smiles", ["logp", "tox"])
    assert any("C1CC" in str(r.message) for r in record)
    assert len(data) == 3 and data.target_names == ["logp", "tox"]
    assert [d.smiles for d in data] == ["CCO", "c1ccccc1", "CC(=O)O"]
    assert data[0].y.tolist()[0] == pytest.approx([-0.31, 0.0])
    assert math.isnan(data[1].y[0, 0]) and data[1].y[0, 1] == 1.0
    assert torch.isnan(data[2].y).all()
    by_index = {r["index"]: r for r in data.skipped}
    assert sorted(by_index) == [1, 3, 4, 5]
    assert by_index[1]["smiles"] == "C1CC" and "C1CC" in by_index[1]["reason"]
    assert "'logp'" in by_index[3]["reason"] and "'high'" in by_index[3]["reason"]
    assert "valence" in by_index[4]["reason"].lower()
    assert "no atoms" in by_index[5]["reason"]
    # The report survives a reload from the processed files, and is warned again.
    with pytest.warns(UserWarning, match="skipped 4"):
        again = MoleculeCSV(tmp_path / "root", path, "smiles", ["logp", "tox"])
    assert again.skipped == data.skipped and len(again) == 3


def test_csv_no_warning_when_clean_and_single_target(tmp_path):
    path = write_csv(tmp_path / "ok.csv", ["smi", "y"], [["CCO", "1"], ["CCC", "2"]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        data = MoleculeCSV(tmp_path / "root", path, smiles_column="smi", target_columns="y")
    assert data.skipped == [] and [d.y.item() for d in data] == [1.0, 2.0]


def test_csv_bad_arguments(tmp_path):
    path = write_csv(tmp_path / "m.csv", ["smiles", "y"], [["CCO", "1"]])
    with pytest.raises(ValueError, match=r"\['logS'\].*\['smiles', 'y'\]"):
        MoleculeCSV(tmp_path / "root", path, "smiles", ["logS"])
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        MoleculeCSV(tmp_path / "root", tmp_path / "nope.csv", "smiles", ["y"])
    with pytest.raises(ValueError, match="at least one target"):
        MoleculeCSV(tmp_path / "root", path, "smiles", [])


def test_csv_all_invalid_is_an_error(tmp_path):
    path = write_csv(tmp_path / "bad.csv", ["smiles", "y"], [["C1CC", "1"], ["xx", "2"]])
    with pytest.raises(ValueError, match="no valid molecule"):
        MoleculeCSV(tmp_path / "root", path, "smiles", "y")


def test_csv_changed_file_is_processed_again(tmp_path):
    path = write_csv(tmp_path / "m.csv", ["smiles", "y"], [["CCO", "1"]])
    assert len(MoleculeCSV(tmp_path / "root", path, "smiles", "y")) == 1
    write_csv(path, ["smiles", "y"], [["CCO", "1"], ["CCCC", "4"]])
    os.utime(path, ns=(0, 10**18))
    assert len(MoleculeCSV(tmp_path / "root", path, "smiles", "y")) == 2


def test_sdf_input(tmp_path):
    path = str(tmp_path / "mols.sdf")
    writer = Chem.SDWriter(path)
    for smiles, value in [("CCO", "1.5"), ("c1ccncc1", ""), ("C[C@H](N)O", "x")]:
        mol = Chem.MolFromSmiles(smiles)
        mol.SetProp("act", value)
        writer.write(mol)
    writer.close()
    with pytest.warns(UserWarning, match="skipped 1"):
        data = MoleculeCSV(tmp_path / "root", path, target_columns=["act"])
    assert len(data) == 2 and data[0].y.item() == 1.5 and torch.isnan(data[1].y).all()
    assert data.skipped[0]["index"] == 2 and "'x'" in data.skipped[0]["reason"]


# -- QM9 on a fake qm9pack folder ---------------------------------------------------------------
QM9_HEADER = [
    "XYZ_file", "Index", "SMILES", "InChi", "N_atoms", "Stoichiometry", "Elements", "XYZ_Ang",
    "Mulliken_pop", "Harmonic_Freq_cmi", "RotA_GHz", "RotB_GHz", "RotC_GHz", "Dipole_debye",
    "Polarizability_bohr3", "HOMO_au", "LUMO_au", "HOMO_LUMO_gap_au", "R2_bohr2", "ZPVE_au",
    "InternalEnergy_0K_au", "InternalEnergy_298K_au", "Enthalphy_298K_au",
    "GibbsFreeEnergy_298K_au", "Heatcapacity_Cv_cal_mol_K",
]


def qm9_row(i, smiles, homo, lumo):
    return [f"dsgdb9nsd_{i:06d}.xyz", i, smiles, "InChI=", 5, "[4,1,0,0,0]", "['C']",
            "[[0,0,0]]", "[0.1]", "[1341.3,1562.7]", 157.7, 157.7, 157.7, 0.5, 13.21,
            homo, lumo, lumo - homo, 35.36, 0.0447, -40.47, -40.47, -40.47, -40.49, 6.469]


@pytest.fixture
def fake_qm9pack(tmp_path, monkeypatch):
    folder = tmp_path / "qm9pack" / "data"
    folder.mkdir(parents=True)
    rows = [qm9_row(1, "C", -0.3877, 0.1171), qm9_row(2, "N", -0.257, 0.0829),
            qm9_row(3, "C1CC", -0.2, 0.1), qm9_row(4, "O", -0.2928, 0.0687),
            qm9_row(5, "C#C", -0.2845, 0.0506)]
    write_csv(folder / "qm9_part1.csv", QM9_HEADER, rows[:2])
    write_csv(folder / "qm9_part2.csv", QM9_HEADER, rows[2:4])
    write_csv(folder / "qm9_part3.csv", QM9_HEADER, rows[4:])
    monkeypatch.setattr(chem_datasets, "_qm9pack_data_dir", lambda: folder)
    return folder


def test_qm9_reads_qm9pack_csv_in_ev(fake_qm9pack, tmp_path):
    with pytest.warns(UserWarning, match="C1CC"):
        data = QM9(tmp_path / "root")
    assert len(data) == 4 and [d.smiles for d in data] == ["C", "N", "O", "C#C"]
    assert data.target_names == ["homo", "lumo", "gap"] and data.units == ["eV"] * 3
    hartree = 27.211386245988
    assert data[0].y.tolist()[0] == pytest.approx([-0.3877 * hartree, 0.1171 * hartree,
                                                   0.5048 * hartree], rel=1e-5)
    assert data.skipped == [{"index": 2, "smiles": "C1CC", "reason": data.skipped[0]["reason"]}]
    assert not (tmp_path / "root" / "raw").exists() or not os.listdir(tmp_path / "root" / "raw")


def test_qm9_subset_and_targets(fake_qm9pack, tmp_path):
    data = QM9(tmp_path / "root", targets=["mu", "alpha", "cv"], max_molecules=2)
    assert len(data) == 2 and data[1].y.tolist()[0] == pytest.approx([0.5, 13.21, 6.469])
    assert data.units == ["D", "bohr^3", "cal/(mol K)"]
    with pytest.raises(ValueError, match="homo"):
        QM9(tmp_path / "root", targets=["HOMO_eV"])
    with pytest.raises(ValueError, match="max_molecules"):
        QM9(tmp_path / "root", max_molecules=0)


def test_qm9_missing_package_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(chem_datasets, "_qm9pack_data_dir", lambda: None)
    with pytest.raises(ModuleNotFoundError, match=r"pip install graphattn\[qm9\]"):
        QM9(tmp_path / "root")


def test_qm9_processed_data_loads_without_package(fake_qm9pack, monkeypatch, tmp_path):
    with pytest.warns(UserWarning):
        first = QM9(tmp_path / "root", max_molecules=3)
    monkeypatch.setattr(chem_datasets, "_qm9pack_data_dir", lambda: None)
    with pytest.warns(UserWarning):
        again = QM9(tmp_path / "root", max_molecules=3)
    assert len(again) == len(first) == 2


# -- MoleculeNet offline, raw file written where PyG's layout expects it ------------------------
ESOL_HEADER = ["Compound ID", "ESOL predicted log solubility in mols per litre",
               "Minimum Degree", "Molecular Weight", "Number of H-Bond Donors",
               "Number of Rings", "Number of Rotatable Bonds", "Polar Surface Area",
               "measured log solubility in mols per litre", "smiles"]


def test_moleculenet_esol_offline(tmp_path):
    raw = tmp_path / "esol" / "raw"
    raw.mkdir(parents=True)
    write_csv(raw / "delaney-processed.csv", ESOL_HEADER, [
        ["Amigdalin", -0.974, 1, 457.4, 7, 3, 7, 202.32, -0.77,
         "OCC3OC(OCC2OC(OC(C#N)c1ccccc1)C(O)C(O)C2O)C(O)C(O)C3O"],
        ["1,1,1-Trichloroethane", -2.0, 1, 133.4, 0, 0, 0, 0.0, -2.0, "CC(Cl)(Cl)Cl"],
        ["bad one", -1, 1, 1, 0, 0, 0, 0, -1.5, "C1CC"],
    ])
    with pytest.warns(UserWarning, match="skipped 1"):
        data = MoleculeNet(tmp_path, "ESOL")
    assert isinstance(data, PygMoleculeNet)
    assert len(data) == 2 and repr(data) == "ESOL(2)"
    assert data[1].smiles == "CC(Cl)(Cl)Cl" and data[1].y.item() == -2.0
    assert data[0].x.shape[1] == len(AtomFeaturizer())
    assert data.target_names == ["measured log solubility in mols per litre"]
    assert data.skipped[0]["index"] == 2 and data.skipped[0]["smiles"] == "C1CC"
    assert os.listdir(raw) == ["delaney-processed.csv"]  # no download happened


def test_moleculenet_multitask_missing_labels(tmp_path):
    raw = tmp_path / "tox21" / "raw"
    raw.mkdir(parents=True)
    tasks = [f"T{i}" for i in range(12)]
    write_csv(raw / "tox21.csv", tasks + ["mol_id", "smiles"], [
        ["0", "1"] + [""] * 10 + ["TOX1", "CCOc1ccc2nc(S(N)(=O)=O)sc2c1"],
        ["1"] * 12 + ["TOX2", "CCN1C(=O)NC(c2ccccc2)C1=O"],
    ])
    data = MoleculeNet(tmp_path, "tox21")
    assert data[0].y.shape == (1, 12) and data[0].y[0, :2].tolist() == [0.0, 1.0]
    assert torch.isnan(data[0].y[0, 2:]).all() and (data[1].y == 1).all()
    assert data.target_names == tasks


def test_moleculenet_bad_name(tmp_path):
    with pytest.raises(ValueError, match="esol"):
        MoleculeNet(tmp_path, "not-a-set")


def test_featurizer_arguments_reach_the_graphs(tmp_path):
    path = write_csv(tmp_path / "salt.csv", ["smiles", "y"], [["CC(=O)[O-].[Na+]", "1"]])
    assert MoleculeCSV(tmp_path / "a", path, "smiles", "y")[0].num_nodes == 4
    assert MoleculeCSV(tmp_path / "a", path, "smiles", "y", fragments="all")[0].num_nodes == 5
    assert MoleculeCSV(tmp_path / "a", path, "smiles", "y", explicit_h=True)[0].num_nodes == 7
    index = MoleculeCSV(tmp_path / "a", path, "smiles", "y",
                        atom_featurizer=AtomFeaturizer(mode="index"))
    assert index[0].x.dtype == torch.long and index[0].x.shape == (4, 8)
    with pytest.raises(ValueError, match="fragments"):
        MoleculeCSV(tmp_path / "a", path, "smiles", "y", fragments="none")


def test_csv_tsv_bom_infinite_and_undecodable_rows(tmp_path):
    """A .tsv with a UTF-8 BOM and CRLF line ends loads; infinite targets, a non-UTF-8 line and
    a row with too many fields are reported with their reason and skipped; loaded + skipped
    equals the data rows."""
    lines = [b"smiles\tlogS\tname", b"CCO\t1.5\t\xc3\xa9thanol", b"CCN\tinf\tamine",
             b"CCC\t-Infinity\tpropane", b"CCCl\t1e999\tchloro", b"c1ccccc1\t\xff\tbenzene",
             b"CC\t2\tethane\textra", b"CO\tNaN\tmethanol", b"CCCC\t3.5\tbutane"]
    path = tmp_path / "mols.tsv"
    path.write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\r\n")
    with pytest.warns(UserWarning, match="skipped 5"):
        data = MoleculeCSV(tmp_path / "root", path, "smiles", "logS")
    assert [d.smiles for d in data] == ["CCO", "CO", "CCCC"]
    assert data[0].y.item() == 1.5 and torch.isnan(data[1].y).all()
    reasons = {r["index"]: r["reason"] for r in data.skipped}
    assert sorted(reasons) == [1, 2, 3, 4, 5] and len(data) + len(reasons) == len(lines) - 1
    assert "not finite: 'inf'" in reasons[1] and "'-Infinity'" in reasons[2]
    assert "'1e999'" in reasons[3]
    assert "line 6" in reasons[4] and "not UTF-8" in reasons[4]
    assert "4 fields" in reasons[5]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_csv_delimiter_is_sniffed(tmp_path, delimiter):
    path = tmp_path / "m.csv"
    path.write_text(f"smiles{delimiter}y\nCCO{delimiter}1\nCCC{delimiter}2\n")
    data = MoleculeCSV(tmp_path / "root", path, "smiles", "y")
    assert [d.y.item() for d in data] == [1.0, 2.0]
