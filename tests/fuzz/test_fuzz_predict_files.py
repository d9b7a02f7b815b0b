"""Random predict input files: encodings, BOMs, delimiters, headers, line ends, random bytes.
Every input record gets one output row, in order; the process never crashes."""

import csv
import os
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import assert_failure_is_one_line, run_cli

VALID = ["C", "CCO", "c1ccccc1", "CC(=O)O", "[Na+].[Cl-]", "C[C@H](N)O", "CC[Pt]", "O=C=O"]
INVALID = ["C1CC", "xx", "c1cccc1", "C(C)(C)(C)(C)C", "[Zz]", ")(", "C%", "[CH5]"]
NO_BREAK = st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",))
# a random "SMILES" never names a SMILES column (a first line saying "smiles" is a header)
JUNK = st.text(NO_BREAK, min_size=1, max_size=12).filter(
    lambda s: s.strip() == s and s[0] != "#" and "smiles" not in s.lower()
    and not any(c in s for c in " \t,;|\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0"))
NAME = st.one_of(st.text("abcdefgh0123456789", max_size=8), st.text(NO_BREAK, max_size=8))


@st.composite
def predict_file(draw):
    kind = draw(st.sampled_from(["smi", "csv", "tsv", "stdin"]))
    delim = {"tsv": "\t", "csv": draw(st.sampled_from([",", ";", "\t", "|"]))}.get(
        kind, draw(st.sampled_from([" ", "\t", ",", ";"])))
    header = kind in ("csv", "tsv") or draw(st.booleans())
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"]))
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines, clean = [], []
    if header:
        lines.append(delim.join(["smiles", "name"] if kind in ("smi", "stdin")
                                else ["id", "smiles", "name"]).encode(encoding))
    for k in range(draw(st.integers(0, 8))):
        what = draw(st.sampled_from(["valid", "invalid", "junk", "bytes"]))
        name = draw(NAME)
        if what == "bytes" and encoding != "utf-16":
            raw = b"X" + draw(st.binary(max_size=12)).replace(b"\r", b"").replace(b"\n", b"")
            lines.append(raw if kind in ("smi", "stdin") else f"{k}{delim}".encode() + raw)
            clean.append(False)
            continue
        smiles = {"valid": lambda: draw(st.sampled_from(VALID)),
                  "invalid": lambda: draw(st.sampled_from(INVALID))}.get(
            what, lambda: draw(JUNK))()
        fields = [smiles, name] if kind in ("smi", "stdin") else [str(k), smiles, name]
        if kind in ("smi", "stdin") and delim == " " and not name:
            fields = [smiles]
        lines.append(delim.join(fields).encode(encoding, errors="replace").removeprefix(
            b"\xef\xbb\xbf").removeprefix(b"\xff\xfe").removeprefix(b"\xfe\xff"))
        clean.append(what == "valid" and name.isascii() and name.isalnum() or
                     (what == "valid" and name == ""))
    bom = {"utf-8-sig": b"\xef\xbb\xbf", "utf-16": b"\xff\xfe"}.get(encoding, b"")
    if encoding == "utf-16":  # each line was encoded alone: re-encode the whole text
        text = eol.join(line.decode("utf-16") for line in lines) + eol
        data = bom + text.encode("utf-16-le")
    else:
        data = bom + eol.encode().join(lines) + (eol.encode() if lines else b"")
    return kind, data, len(lines) - header, clean


@settings(max_examples=60, deadline=None)
@given(case=predict_file())
def test_every_record_gets_one_row(models, case):
    kind, data, records, clean = case
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "pred.csv")
        src = "-" if kind == "stdin" else os.path.join(d, f"in.{kind}")
        if kind != "stdin":
            with open(src, "wb") as f:
                f.write(data)
        code, _, err = run_cli(["predict", "--checkpoint", str(models["mol"]), "--smiles", src,
                                "--out", out], stdin=data)
        assert_failure_is_one_line(code, err)
        with open(out, newline="", encoding="utf-8") as f:
            header, *rows = list(csv.reader(f))
    assert len(rows) == records, (err, rows)
    assert header[-2:] == ["size", "error"]
    for row, ok in zip(rows, clean):
        assert (row[-1] == "") == (row[-2] != "")  # a prediction xor a reason
        if ok:
            assert row[-1] == "", row
    assert (code == 0) == any(row[-1] == "" for row in rows)


@st.composite
def sd_file(draw):
    """SD records, some corrupted (lines dropped, replaced by random text or bytes, or the
    file cut short inside the last record); never an empty record."""
    from rdkit import Chem

    blocks, n = [], draw(st.integers(1, 5))
    for k in range(n):
        mol = Chem.MolFromSmiles(draw(st.sampled_from(VALID)))
        mol.SetProp("_Name", f"m{k}")
        lines = Chem.MolToMolBlock(mol).splitlines()
        lines += ["> <id>", f"V{k}", ""]
        how = draw(st.sampled_from(["keep", "keep", "drop", "text", "bytes"]))
        if how != "keep":
            at = draw(st.integers(0, len(lines) - 1))
            if how == "drop":
                del lines[at]
            else:
                lines[at] = (draw(JUNK.filter(lambda t: t != "$$$$")) if how == "text"
                             else "\udcff")  # -> byte 0xff
        if not any(line.strip() for line in lines):
            lines = ["title"]
        blocks.append(lines)
    data = "".join("\n".join(b) + "\n$$$$\n" for b in blocks)
    raw = data.encode("utf-8", "surrogateescape")
    if draw(st.booleans()):  # cut inside the last record (after its first line)
        start = raw.rfind(b"$$$$\n", 0, len(raw) - 5) + 5 if n > 1 else 0
        first_line_end = raw.index(b"\n", start) + 1
        raw = raw[:draw(st.integers(first_line_end, len(raw) - 5))]
    return raw, n


@settings(max_examples=30, deadline=None)
@given(case=sd_file(), stdin=st.booleans())
def test_every_sd_record_gets_one_row(models, case, stdin):
    raw, records = case
    with tempfile.TemporaryDirectory() as d:
        out, src = os.path.join(d, "pred.csv"), os.path.join(d, "in.sdf")
        with open(src, "wb") as f:
            f.write(raw)
        code, _, err = run_cli(["predict", "--checkpoint", str(models["mol"]), "--smiles",
                                "-" if stdin else src, "--out", out], stdin=raw)
        assert_failure_is_one_line(code, err)
        with open(out, newline="", encoding="utf-8") as f:
            header, *rows = list(csv.reader(f))
    if stdin and not any(line.rstrip() in (b"M  END", b"$$$$") for line in raw.splitlines()):
        return  # a cut that leaves no SD marker on stdin reads as a SMILES list
    assert header[:2] == ["smiles", "name"] and len(rows) == records, (err, rows)
    for row in rows:
        assert (row[-1] == "") == (row[-2] != "")
