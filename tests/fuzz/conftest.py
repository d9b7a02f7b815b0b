"""Shared fixtures of the fuzz suite: one tiny molecule model and one karate model, trained
once per session; data caches in a temporary folder."""

import contextlib
import io
import sys

import pytest

from graphattn import cli

SMILES = ["C", "CC", "CCC", "CCO", "CCN", "CC(=O)O", "c1ccccc1", "c1ccncc1", "CCCC", "CCOC",
          "C1CCCCC1", "CC(C)C", "OCCO", "NCCN", "c1ccc(O)cc1", "CC#N"]
MODEL = ["--hidden", "8", "--layers", "1", "--heads", "2", "--quiet", "--batch-size", "8",
         "--ensemble", "1", "--epochs", "2"]


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """``{"mol": best.pt, "social": best.pt, "csv": training CSV, "root": folder}``."""
    root = tmp_path_factory.mktemp("fuzz")
    mp = pytest.MonkeyPatch()
    mp.setenv("GRAPHATTN_DATA", str(root / "cache"))
    path = root / "tiny.csv"
    path.write_text("mol,size\n" + "".join(f"{s},{len(s) / 3:.3f}\n" for s in SMILES))
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["train", "--dataset", f"csv:{path}", "--smiles-column", "mol",
                         "--target", "size", "--data-root", str(root / "data"), "--out",
                         str(root / "mol"), *MODEL]) == 0
        # karate's recipe (node-small) is a pair of attention layers: no --layers flag
        assert cli.main(["train", "--dataset", "karate", "--out", str(root / "social"),
                         "--hidden", "8", "--heads", "2", "--quiet", "--epochs", "2"]) == 0
    yield {"mol": root / "mol" / "best.pt", "social": root / "social" / "best.pt",
           "csv": path, "root": root}
    mp.undo()


def run_cli(argv, stdin: bytes | None = None) -> tuple[int, str, str]:
    """``(exit status, stdout, stderr)`` of ``graphattn ARGV`` run in this process."""
    out, err = io.StringIO(), io.StringIO()

    class Stdin:
        buffer = io.BytesIO(stdin or b"")

    old = sys.stdin
    sys.stdin = Stdin
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = cli.main(argv)
            except SystemExit as e:  # argparse
                code = e.code
    finally:
        sys.stdin = old
    return code, out.getvalue(), err.getvalue()


def assert_failure_is_one_line(code: int, err: str) -> None:
    """Exit 0, or 2 with exactly one ``graphattn ...: error:`` line, the last, and no
    traceback (line-by-line reports of predict may come before it)."""
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err, err
    if code == 2:
        lines = err.strip().splitlines()
        errors = [line for line in lines if line.startswith("graphattn") and "error" in line]
        assert len(errors) == 1 and errors[0] == lines[-1], err
