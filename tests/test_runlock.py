import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from graphattn import cli
from graphattn.checkpoint import load_checkpoint, save_checkpoint
from graphattn.runlock import LOCK_NAME, RunLock, RunLockedError, remove_stale_temporaries


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_second_holder_is_refused_with_the_holder_named(tmp_path):
    out = tmp_path / "run"
    with RunLock(out, command="graphattn train --out run"):
        info = json.loads((out / LOCK_NAME).read_text())
        assert info["pid"] == os.getpid() and info["command"] == "graphattn train --out run"
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()} on .*graphattn train"):
            with RunLock(out):
                pass
    with RunLock(out):  # released: free again
        pass


@pytest.mark.slow
def test_lock_held_by_another_process_refuses_and_dies_with_it(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    code = textwrap.dedent(f"""
        import sys, time
        from graphattn.runlock import RunLock
        with RunLock({str(out)!r}, command="holder"):
            print("locked", flush=True)
            time.sleep(60)
    """)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                         env=env)
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockedError, match=f"pid {p.pid} .*holder"):
            RunLock(out).__enter__()
    finally:
        p.kill()
        p.wait()
    with RunLock(out):  # the OS dropped the dead holder's lock
        pass
    assert (out / "keep.txt").exists()


def test_folder_made_for_nothing_is_removed_again(tmp_path):
    with RunLock(tmp_path / "new"):
        assert (tmp_path / "new" / LOCK_NAME).exists()
    assert not (tmp_path / "new").exists()
    with RunLock(tmp_path / "used"):
        (tmp_path / "used" / "metrics.json").write_text("{}")
    assert (tmp_path / "used" / "metrics.json").exists()


def test_stale_temporaries_of_dead_processes_only(tmp_path):
    dead, live = _dead_pid(), os.getpid()
    names = [f".best.pt.tmp-{dead}", f"metrics.json.tmp-{dead}", f".best.pt.tmp-{live}",
             f"metrics.json.tmp-{os.getppid()}", "best.pt", "notes.tmp-x", "a.tmp-"]
    for n in names:
        (tmp_path / n).write_text("x")
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(os.path.basename(p) for p in removed) == sorted(names[:2])
    assert sorted(os.listdir(tmp_path)) == sorted(names[2:])
    with RunLock(tmp_path, clean=True) as lock:
        assert lock.removed == []


def test_save_checkpoint_removes_its_own_stale_temporaries(tmp_path):
    dead = _dead_pid()
    (tmp_path / f".ck.pt.tmp-{dead}").write_bytes(b"half a checkpoint")
    (tmp_path / f".other.pt.tmp-{dead}").write_bytes(b"not ours")
    save_checkpoint(tmp_path / "ck.pt", {"model_class": "x", "model_config": {},
                                         "model_state": {"w": torch.ones(2)}})
    assert sorted(os.listdir(tmp_path)) == [f".other.pt.tmp-{dead}", "ck.pt"]
    assert load_checkpoint(tmp_path / "ck.pt")["model_state"]["w"].tolist() == [1.0, 1.0]


def test_cli_train_refuses_a_locked_out_folder_in_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    seen = []
    monkeypatch.setattr(cli, "cmd_train", lambda args: seen.append(args.out) or 0)
    dead = _dead_pid()
    out.mkdir()
    (out / f".checkpoint.pt.tmp-{dead}").write_text("x")
    argv = ["train", "--dataset", "karate", "--out", str(out)]
    assert cli.main(argv) == 0 and seen == [str(out)]
    assert f"removed {out / f'.checkpoint.pt.tmp-{dead}'}" in capsys.readouterr().err
    with RunLock(out, command="the other run"):
        assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "in use by another run" in err and "the other run" in err
    assert seen == [str(out)]  # the refused run never started
    monkeypatch.setenv("RANK", "1")  # torchrun workers other than rank 0 do not lock
    with RunLock(out):
        assert cli.main(argv) == 0
