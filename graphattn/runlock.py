"""One run per output folder: an exclusive lock, and the clean-up of stale temporary files.

    with RunLock("runs/freesolv", clean=True) as lock:  # a second run: RunLockedError
        ...                                             # lock.removed: stale files deleted

The lock is :func:`fcntl.flock` on ``.graphattn.lock`` inside the folder, held for the life of
the ``with`` block; the operating system releases it when the process dies, so a killed run
never leaves the folder locked. The holder writes its pid, host, command and start time into
the file, and the refusal quotes them. (``flock`` is advisory and may not work across hosts on
some network file systems.)
"""

from __future__ import annotations

import json
import os
import os.path as osp
import re
import socket
import sys
import time

__all__ = ["RunLock", "RunLockedError", "LOCK_NAME", "remove_stale_temporaries"]

LOCK_NAME = ".graphattn.lock"
# Temporary files of atomic writes: checkpoint.save_checkpoint (".best.pt.tmp-PID") and
# JSON writes ("metrics.json.tmp-PID"); the suffix names the writing process.
_TMP = re.compile(r"^.+\.tmp-(\d+)$")


class RunLockedError(RuntimeError):
    """The output folder is held by another run."""


class RunLock:
    """Exclusive lock on an output folder (created if missing), as a context manager.

    Args:
        folder (str or path): the output folder.
        command (str, optional): what the holder is, written into the lock file (default:
            this process's command line).
        clean (bool): once locked, :func:`remove_stale_temporaries` of the folder; the paths
            removed are in :attr:`removed`.

    Raises:
        RunLockedError: on enter, naming the holder (pid, host, command, start time), when
            another process holds the folder.

    A folder the lock created and left holding only the lock file is removed on exit.
    """

    def __init__(self, folder: str | os.PathLike, command: str | None = None,
                 clean: bool = False) -> None:
        self.folder = os.fspath(folder)
        self.path = osp.join(self.folder, LOCK_NAME)
        self.command = command if command is not None else " ".join(sys.argv)
        self.clean, self.removed = clean, []
        self._fd: int | None = None
        self._created = False

    def __enter__(self) -> RunLock:
        import fcntl

        self._created = not osp.isdir(self.folder)
        os.makedirs(self.folder, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _describe(os.read(fd, 4096))
            os.close(fd)
            raise RunLockedError(f"{self.folder} is in use by another run ({holder}); wait "
                                 "for it to end or choose another --out") from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        if self.clean:
            self.removed = remove_stale_temporaries(self.folder)
        return self

    def __exit__(self, *exc) -> None:
        import fcntl

        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            os.ftruncate(fd, 0)
            if self._created and os.listdir(self.folder) == [LOCK_NAME]:
                os.remove(self.path)
                os.rmdir(self.folder)
        except OSError:
            pass
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _describe(raw: bytes) -> str:
    try:
        info = json.loads(raw.decode())
        return (f"pid {info['pid']} on {info['host']} since {info['started']}: "
                f"{info['command']}")
    except (ValueError, KeyError, TypeError):
        return "holder unknown: it is just starting"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    except (OverflowError, ValueError):
        return False
    return True


def remove_stale_temporaries(folder: str | os.PathLike, prefix: str = "") -> list[str]:
    """Delete the temporary files of atomic writes (``NAME.tmp-PID``, also hidden ones such as
    ``.best.pt.tmp-PID``) in ``folder`` whose process no longer runs on this host; files of
    live processes (including this one) are kept. Only names starting with ``prefix`` are
    considered. Returns the paths removed. Call it while holding the folder's
    :class:`RunLock`, so no other run is writing there."""
    folder = os.fspath(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    for entry in entries:
        m = _TMP.match(entry.name)
        if not m or not entry.name.startswith(prefix) or not entry.is_file(follow_symlinks=False):
            continue
        pid = int(m.group(1))
        if pid == os.getpid() or _alive(pid):
            continue
        try:
            os.remove(entry.path)
            removed.append(entry.path)
        except FileNotFoundError:
            pass
    return removed
