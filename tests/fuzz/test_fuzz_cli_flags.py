"""Random flag combinations of predict / evaluate / explain, good and bad values mixed: the
command exits 0, or 2 with one error line; never a traceback."""

import importlib.util
import os
import tempfile

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.fuzz.conftest import assert_failure_is_one_line, run_cli

DATASETS = [None, None, "karate", "sbm", "nope", "csv:/no/such.csv", "CSV", "qm9"]
if importlib.util.find_spec("qm9pack") is not None:  # would process 130k molecules
    DATASETS.remove("qm9")


def _checkpoint(models, d, which):
    if which in ("mol", "social"):
        return str(models[which])
    path = os.path.join(d, f"{which}.pt")
    if which == "garbage":
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04 not really a zip")
    elif which == "empty":
        open(path, "wb").close()
    elif which == "folder":
        os.mkdir(path)
    return path  # "missing": never written


@st.composite
def command(draw):
    cmd = draw(st.sampled_from(["predict", "evaluate", "explain"]))
    # mostly usable values, so most examples get past argparse and the checkpoint
    flags = {"--checkpoint": draw(st.sampled_from(
        ["mol"] * 4 + ["social"] * 3 + ["missing", "garbage", "empty", "folder", None]))}
    if cmd == "predict":
        flags["--smiles"] = draw(st.sampled_from(["good"] * 3 + ["bad", "missing", "-", "-",
                                                  "folder", "CCO", None]))
        flags["--smiles-column"] = draw(st.sampled_from([None] * 4 + ["smiles", "nope"]))
        flags["--out"] = draw(st.sampled_from([None, "file", "file", "nodir", "folder"]))
    elif cmd == "evaluate":
        flags["--dataset"] = draw(st.sampled_from(DATASETS))
        flags["--target"] = draw(st.sampled_from([None, None, "size", "zzz"]))
        flags["--smiles-column"] = draw(st.sampled_from([None, None, "mol", "nope"]))
    else:
        flags["--smiles"] = draw(st.sampled_from([None, "CCO", "CCO", "C1CC", "CC[Pt]", "",
                                                  "x" * 3]))
        flags["--dataset"] = draw(st.sampled_from(DATASETS))
        flags["--out"] = draw(st.sampled_from(["file"] * 4 + ["nodir", "folder", "odd.ext",
                                                              None]))
    extra = draw(st.sampled_from([[]] * 8 + [["--bogus"], ["--smiles-column"]]))
    return cmd, flags, extra


def _argv(models, d, cmd, flags, extra):
    argv = [cmd]
    for flag, value in flags.items():
        if value is None:
            continue
        if flag == "--checkpoint":
            value = _checkpoint(models, d, value)
        elif flag == "--smiles" and cmd == "predict":
            path = os.path.join(d, "q.smi")
            if value == "good":
                with open(path, "w") as f:
                    f.write("CCO a\nC1CC b\n")
            elif value == "bad":
                with open(path, "w") as f:
                    f.write("C1CC b\nxx\n")
            value = {"good": path, "bad": path, "missing": os.path.join(d, "none.smi"),
                     "folder": d}.get(value, value)
        elif flag == "--out":
            value = {"file": os.path.join(d, "out.png" if cmd == "explain" else "out.csv"),
                     "nodir": os.path.join(d, "no", "dir", "out"), "folder": d,
                     "odd.ext": os.path.join(d, "x.odd")}[value]
        elif flag == "--dataset" and value == "CSV":
            value = f"csv:{models['csv']}"
        argv += [flag, value]
    return argv + extra


@pytest.mark.slow
@settings(max_examples=80, deadline=None)
@given(case=command())
def test_random_flags_exit_0_or_one_error_line(models, case):
    cmd, flags, extra = case
    with tempfile.TemporaryDirectory() as d:
        argv = _argv(models, d, cmd, flags, extra)
        code, _, err = run_cli(argv, stdin=b"CCO\n")
    event(f"{cmd} exit {code}: {(err.strip().splitlines() or [''])[-1][:80]}")
    assert_failure_is_one_line(code, err)


@pytest.mark.parametrize("exc, code, needle", [
    (ModuleNotFoundError("QM9 needs the optional qm9pack data files"), 2, "qm9pack"),
    (OSError(28, "No space left on device"), 2, "No space left"),
    (PermissionError(13, "Permission denied", "/x"), 2, "Permission denied"),
    (RuntimeError("shape mismatch\n  second line\n  third"), 2, "shape mismatch"),
    (ValueError(""), 2, "ValueError"),
    (KeyError("bug"), 2, "internal error"),
    (ZeroDivisionError("division by zero"), 2, "ZeroDivisionError: division by zero"),
])
def test_main_maps_every_failure_to_one_line(monkeypatch, exc, code, needle):
    from graphattn import cli

    def boom(args):
        raise exc

    monkeypatch.setattr(cli, "cmd_evaluate", boom)
    monkeypatch.delenv("GRAPHATTN_DEBUG", raising=False)
    got, out, err = run_cli(["evaluate", "--checkpoint", "x.pt"])
    assert got == code and needle in err and err.count("\n") == 1, err
    assert err.startswith("graphattn evaluate: ") and "Traceback" not in err
    monkeypatch.setenv("GRAPHATTN_DEBUG", "1")  # the developer's way to the traceback
    with pytest.raises(type(exc)):
        cli.main(["evaluate", "--checkpoint", "x.pt"])


def test_main_interrupt_and_closed_pipe(monkeypatch):
    from graphattn import cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_evaluate", interrupted)
    code, _, err = run_cli(["evaluate", "--checkpoint", "x.pt"])
    assert code == 130 and err == "graphattn: interrupted\n"

    def closed(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(cli, "cmd_evaluate", closed)
    monkeypatch.setattr(cli.os, "dup2", lambda *a: None)  # keep this process's stdout
    code, _, err = run_cli(["evaluate", "--checkpoint", "x.pt"])
    assert code == 141 and err == ""
