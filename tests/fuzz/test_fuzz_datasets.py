"""Data set CSVs with random targets (numbers, missing, infinite, words), SMILES (valid,
invalid, empty), delimiters, BOMs and line ends: loaded rows + skipped rows == data rows, and
each row lands where an independent oracle says."""

import math
import tempfile
import warnings

from hypothesis import given, settings
from hypothesis import strategies as st

from graphattn.chem import MoleculeCSV

VALID = ["C", "CCO", "c1ccccc1", "CC(=O)O", "CCN", "OCCO"]
INVALID = ["C1CC", "xx", "c1cccc1", "C(C)(C)(C)(C)C"]
MISSING = ["", "nan", "NaN", "NA", "n/a", "none", "null", " "]
NOT_FINITE = ["inf", "-inf", "Infinity", "1e999", "-1E400"]
WORDS = ["high", "1,5", "--1", "0x10", "1.2.3", "?", "∞"]


@st.composite
def dataset(draw):
    delim = draw(st.sampled_from([",", ";", "\t"]))
    suffix = ".tsv" if delim == "\t" and draw(st.booleans()) else ".csv"
    rows, expect = [], []
    for _ in range(draw(st.integers(1, 10))):
        smiles = draw(st.sampled_from(VALID + INVALID))
        kind = draw(st.sampled_from(["number", "number", "missing", "infinite", "word"]))
        value = {"number": lambda: repr(draw(st.floats(-1e6, 1e6, allow_nan=False))),
                 "missing": lambda: draw(st.sampled_from(MISSING)),
                 "infinite": lambda: draw(st.sampled_from(NOT_FINITE)),
                 "word": lambda: draw(st.sampled_from(WORDS))}[kind]()
        if delim in value:  # only WORDS hold a delimiter; "1,5" -> "1x5": still a word
            value = value.replace(delim, "x")
        rows.append(delim.join([smiles, value]))
        ok = smiles in VALID and kind in ("number", "missing")
        expect.append((ok, float(value) if kind == "number" and ok else math.nan))
    bom = draw(st.sampled_from(["", "\ufeff"]))
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    text = bom + eol.join([delim.join(["smiles", "y"]), *rows]) + eol
    return suffix, text, expect


@settings(max_examples=40, deadline=None)
@given(case=dataset())
def test_loaded_plus_skipped_is_every_row(case):
    suffix, text, expect = case
    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/data{suffix}"
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ds = MoleculeCSV(f"{d}/root", path, "smiles", "y")
            except ValueError as e:
                assert "no valid molecule" in str(e) and not any(ok for ok, _ in expect)
                return
    kept = [i for i, (ok, _) in enumerate(expect) if ok]
    assert len(ds) + len(ds.skipped) == len(expect)
    assert sorted(r["index"] for r in ds.skipped) == [i for i in range(len(expect))
                                                      if i not in kept]
    for data, i in zip(ds, kept):
        y, want = data.y.item(), expect[i][1]
        assert (math.isnan(y) and math.isnan(want)) or math.isclose(y, want, rel_tol=1e-6,
                                                                    abs_tol=1e-30)
    assert all("reason" in r and r["reason"] for r in ds.skipped)
