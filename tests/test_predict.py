"""`graphattn predict`: one output row per input record, in order, whatever the file holds."""

import csv
import io
import sys

import pytest
import torch
from rdkit import Chem

from graphattn import cli
from graphattn.checkpoint import featurizers_from_spec, load_model
from graphattn.chem import from_smiles
from graphattn.chem.io import read_molecules
from graphattn.nn import GraphSelfAttention
from graphattn.train import predict

SMILES = ["C", "CC", "CCC", "CCO", "CCN", "CC(=O)O", "c1ccccc1", "c1ccncc1", "CCCC", "CCOC",
          "C1CCCCC1", "CC(C)C", "OCCO", "NCCN", "c1ccc(O)cc1", "CC#N"]
MODEL = ["--hidden", "8", "--layers", "1", "--heads", "2", "--quiet", "--batch-size", "8",
         "--ensemble", "1"]  # one model: these tests read GraphTransformer checkpoints


def _train(tmp, mask):
    path = tmp / "tiny.csv"
    path.write_text("mol,size\n" + "".join(f"{s},{len(s) / 3:.3f}\n" for s in SMILES))
    out = tmp / f"run-{mask}"
    assert cli.main(["train", "--dataset", f"csv:{path}", "--smiles-column", "mol", "--target",
                     "size", "--data-root", str(tmp / "data"), "--out", str(out), "--epochs",
                     "2", "--mask", mask, *MODEL]) == 0
    return out / "best.pt"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("predict"), "adjacency")


def run(capsys, ckpt, source, *extra):
    capsys.readouterr()
    code = cli.main(["predict", "--checkpoint", str(ckpt), "--smiles", str(source), *extra])
    out, err = capsys.readouterr()
    return code, list(csv.reader(io.StringIO(out))), err


def reference(ckpt, smiles):
    model, c = load_model(ckpt)
    kw = featurizers_from_spec(c["featurizer"])
    return predict(model, [from_smiles(s, **kw) for s in smiles], task="graph").view(-1)


def test_smi_rows_line_up_with_the_input(ckpt, tmp_path, capsys):
    path = tmp_path / "q.smi"
    path.write_bytes(b"SMILES Name\n"             # header: not an invalid SMILES
                     b"CCO ethanol\n"
                     b"C1CC broken ring\n"
                     b"\n"                        # blank: not a record
                     b"# a comment\n"
                     b"c1ccccc1\tbenzene\n"
                     b"CCN caf\xe9\n"             # latin-1 byte: not UTF-8
                     b"CC\x00C nul\n"
                     b"CCCC butane\n")
    code, rows, err = run(capsys, ckpt, path)
    assert code == 0
    header, *rows = rows
    assert header == ["SMILES", "Name", "size", "error"]
    assert [r[:2] for r in rows] == [["CCO", "ethanol"], ["C1CC", "broken ring"],
                                     ["c1ccccc1", "benzene"], ["", ""], ["", ""],
                                     ["CCCC", "butane"]]
    errors = [r[3] for r in rows]
    assert errors[0] == errors[2] == errors[5] == ""
    assert "C1CC" in errors[1] and "not UTF-8" in errors[3] and "NUL" in errors[4]
    assert all(r[2] == "" for r, e in zip(rows, errors) if e)
    ref = reference(ckpt, ["CCO", "c1ccccc1", "CCCC"])
    assert [float(rows[i][2]) for i in (0, 2, 5)] == pytest.approx(ref.tolist(), rel=1e-4)
    for n in (3, 7, 8):
        assert f"line {n}:" in err
    assert "line 1:" not in err and "line 2:" not in err
    assert "3 of 6 row(s) not predicted" in err


def test_csv_with_bom_semicolons_and_ids_keeps_every_column(ckpt, tmp_path, capsys):
    path = tmp_path / "q.csv"
    path.write_bytes("\ufeffid;smiles;note\r\nA1;CCO;x\r\nA2;;empty\r\nA3;CCN;y;z\r\n"
                     "A4;CCC;\r\n".encode())
    code, rows, err = run(capsys, ckpt, path)
    assert code == 0
    assert rows[0] == ["id", "smiles", "note", "size", "error"]
    assert [r[0] for r in rows[1:]] == ["A1", "A2", "A3", "A4"]
    assert "empty SMILES" in rows[2][4] and "4 fields" in rows[3][4]
    assert [float(rows[i][3]) for i in (1, 4)] == pytest.approx(
        reference(ckpt, ["CCO", "CCC"]).tolist(), rel=1e-4)


def test_tsv_and_smiles_column_and_name_clashes(ckpt, tmp_path, capsys):
    path = tmp_path / "q.tsv"
    path.write_text("structure\tsize\terror\nCCO\t1.0\tnone\nCC\t2.0\tnone\n")
    code, rows, _ = run(capsys, ckpt, path, "--smiles-column", "structure")
    assert code == 0
    assert rows[0] == ["structure", "size", "error", "predicted_size", "predict_error"]
    assert [r[:3] for r in rows[1:]] == [["CCO", "1.0", "none"], ["CC", "2.0", "none"]]
    code, _, err = run(capsys, ckpt, path, "--smiles-column", "smi")
    assert code == 2 and err.count("\n") == 1 and "'structure'" in err


def test_sdf_properties_become_columns(ckpt, tmp_path, capsys):
    path = tmp_path / "q.sdf"
    writer = Chem.SDWriter(str(path))
    for i, s in enumerate(["CCO", "c1ccncc1"]):
        mol = Chem.MolFromSmiles(s)
        mol.SetProp("_Name", f"mol{i}")
        mol.SetProp("vendor_id", f"V{i}")
        writer.write(mol)
    writer.close()
    text = path.read_text()
    first, rest = text.split("$$$$\n", 1)
    path.write_text(first + "$$$$\nbroken\n\n\n  1  0  0  0  0  0  0  0  0  0999 V2000\n"
                    "M  END\n$$$$\n" + rest)
    code, rows, err = run(capsys, ckpt, path)
    assert code == 0
    assert rows[0] == ["smiles", "name", "vendor_id", "size", "error"]
    assert [r[1:3] for r in rows[1:]] == [["mol0", "V0"], ["broken", ""], ["mol1", "V1"]]
    assert rows[2][4] and rows[1][4] == rows[3][4] == ""
    assert [float(rows[i][3]) for i in (1, 3)] == pytest.approx(
        reference(ckpt, ["CCO", "c1ccncc1"]).tolist(), rel=1e-4)


def test_stdin_bytes_and_sdf_sniffed(ckpt, capsys, monkeypatch):
    class Stdin:
        buffer = io.BytesIO(b"\xef\xbb\xbfCCO\nxx\n")

    monkeypatch.setattr(sys, "stdin", Stdin)
    code, rows, _ = run(capsys, ckpt, "-")
    assert code == 0 and [r[0] for r in rows] == ["smiles", "CCO", "xx"]
    block = Chem.MolToMolBlock(Chem.MolFromSmiles("CCN")) + "$$$$\n"
    Stdin.buffer = io.BytesIO(block.encode())
    code, rows, _ = run(capsys, ckpt, "-")
    assert code == 0 and rows[1][0] == "CCN" and rows[1][-1] == ""


def test_atoms_outside_the_vocabulary_are_warned(ckpt, tmp_path, capsys):
    path = tmp_path / "q.smi"
    path.write_text("CC[Pt]C metal\n[Na+].CC(=O)[O-] salt\nCCO plain\nN->[Cu]Cl dative\n")
    code, rows, err = run(capsys, ckpt, path)
    assert code == 0 and all(r[-1] == "" for r in rows[1:])
    # the salt's sodium is dropped with its fragment: only the metals' lines are named
    assert "2 molecule(s) have atoms outside the model's element vocabulary (line 1, 4)" in err
    assert "1 molecule(s) have bonds outside the model's bond type vocabulary (line 4): " \
           "they get the 'type=other' feature" in err


def test_all_invalid_writes_every_row_and_exits_2(ckpt, tmp_path, capsys):
    path = tmp_path / "q.smi"
    path.write_text("xx\nC1CC\n")
    out = tmp_path / "p.csv"
    code, _, err = run(capsys, ckpt, path, "--out", str(out))
    assert code == 2 and err.strip().splitlines()[-1].startswith("graphattn predict: error")
    assert len(list(csv.reader(out.open()))) == 3


@pytest.mark.parametrize("make, needle", [
    (lambda d: d / "missing.smi", "no such file"),
    (lambda d: d, "is a folder"),
    (lambda d: (d / "t.csv").write_text("a,b\nx,y\n") and d / "t.csv", "cannot tell which"),
])
def test_whole_file_problems_are_one_line(ckpt, tmp_path, capsys, make, needle):
    code, _, err = run(capsys, ckpt, make(tmp_path))
    assert code == 2 and needle in err and err.count("\n") == 1


def test_molecule_too_large_for_full_attention_gets_an_error_row(tmp_path, capsys,
                                                                 monkeypatch):
    ckpt = _train(tmp_path, "full")
    load = cli._load

    def guarded(path):  # full attention refuses graphs over 30 atoms (2 heads)
        model, c = load(path)
        for m in model.modules():
            if isinstance(m, GraphSelfAttention):
                m.max_full_pairs = 2 * 30 * 30
        return model, c

    monkeypatch.setattr(cli, "_load", guarded)
    path = tmp_path / "q.smi"
    path.write_text("CCO\n" + "C" * 40 + "\nCCN\n")
    code, rows, err = run(capsys, ckpt, path)
    assert code == 0
    assert [r[-1] == "" for r in rows[1:]] == [True, False, True]
    assert "max_full_pairs" in rows[2][-1] and "line 2:" in err
    model, _ = guarded(ckpt)
    kw = featurizers_from_spec(torch.load(ckpt, weights_only=True)["featurizer"])
    ref = predict(model, [from_smiles(s, **kw) for s in ("CCO", "CCN")], task="graph")
    assert [float(rows[i][2]) for i in (1, 3)] == pytest.approx(ref.view(-1).tolist(),
                                                                rel=1e-4)


def test_reader_header_rules(tmp_path):
    smi = tmp_path / "a.smi"
    smi.write_text("CCO first\nsmiles name\n")  # only a first line is a header
    f = read_molecules(smi)
    assert f.format == "smiles" and [r.smiles for r in f] == ["CCO", "smiles"]
    csv_ = tmp_path / "b.csv"
    csv_.write_text("CCO,1\nCCN,2\n")  # tables need a header: a SMILES header is noted
    f = read_molecules(csv_)
    assert [r.smiles for r in f] == ["CCN"] and "header" in f.notes[0]
    cr = tmp_path / "c.smi"
    cr.write_bytes(b"CCO a\rCCN b\r")  # old Mac line ends
    assert [(r.line, r.smiles) for r in read_molecules(cr)] == [(1, "CCO"), (2, "CCN")]
    u16 = tmp_path / "d.smi"
    u16.write_bytes("CCO a\nCCN b\n".encode("utf-16"))
    assert [r.smiles for r in read_molecules(u16)] == ["CCO", "CCN"]


def test_explain_warns_on_atoms_and_bonds_outside_the_vocabulary(ckpt, tmp_path, capsys):
    capsys.readouterr()
    assert cli.main(["explain", "--checkpoint", str(ckpt), "--smiles", "N->[Cu]Cl", "--out",
                     str(tmp_path / "m.png")]) == 0
    err = capsys.readouterr().err
    assert "1 atom(s) outside the model's element vocabulary" in err
    assert "1 bond(s) outside the model's bond type vocabulary" in err
    assert cli.main(["explain", "--checkpoint", str(ckpt), "--smiles", "CCO", "--out",
                     str(tmp_path / "m.svg")]) == 2  # molecules are drawn as PNG
    assert "must end with .png" in capsys.readouterr().err
