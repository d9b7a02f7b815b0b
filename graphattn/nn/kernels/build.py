"""Compile, cache, validate and load the C kernels of ``csrc/``; call them.

The C sources are compiled with the system C compiler (``$CC``, else ``cc``/``gcc``), once
per dtype, into one shared library cached under ``$GRAPHATTN_CACHE`` (default
``~/.cache/graphattn``), keyed by the sources, the compiler, the flags and the CPU, and loaded
with :mod:`ctypes`: no torch headers. A cached library is loaded only if its size and SHA-256
equal the ones recorded when it was built. Where no compiler works, or with
``GRAPHATTN_NATIVE=0``, :func:`available` is ``False`` (with one warning saying why) and the
layer uses its pure-torch kernels instead (:mod:`~.csr_torch`, :mod:`~.dense_torch`).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

CSRC = Path(__file__).with_name("csrc")
SOURCES = [CSRC / "csr_attention.c", CSRC / "dense_attention.c", CSRC / "dropout.c"]
HEADERS = [CSRC / "common.h"]
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-std=gnu11"]
# one object per source and dtype: the element type, the suffix of its entry points, its
# exp; float also gets copies specialised for common channels per head. bfloat16 (CPU
# autocast's dtype): node rows and dropout's tensors stored as bfloat16, arithmetic in float
# (common.h), for the CSR and dropout kernels; the dense kernel's inputs are widened instead.
DTYPES = {"f32": ["-DT=float", "-DSUF=f32", "-DEXP=expf", "-DSPECIALISE"],
          "f64": ["-DT=double", "-DSUF=f64", "-DEXP=exp"],
          "bf16": ["-DT=float", "-DSUF=bf16", "-DEXP=expf", "-DSPECIALISE", "-DBF16"]}
KERNEL_DTYPES = {"csr": ("f32", "f64", "bf16"), "dense": ("f32", "f64"),
                 "dropout": ("f32", "f64", "bf16")}
_KERNEL_OF_SOURCE = {"csr_attention": "csr", "dense_attention": "dense", "dropout": "dropout"}
_SUFFIX = {torch.float32: "f32", torch.float64: "f64", torch.bfloat16: "bf16"}
_lib: ctypes.CDLL | None = None
_error: str | None = None  # why the kernel is unavailable, once tried
_disabled = 0  # depth of :func:`disabled` blocks


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def _cpu_key() -> str:
    """What ``-march=native`` depends on: the machine and its CPU flags."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        pass
    return platform.machine() + platform.processor() + flags


def library_path(cc: str) -> Path:
    """Where the library for these sources, compiler, flags and CPU is cached."""
    flags = [cc, *FLAGS, *(f for defs in DTYPES.values() for f in defs), _cpu_key()]
    code = b"".join(path.read_bytes() for path in SOURCES + HEADERS)
    key = hashlib.sha256(code + " ".join(flags).encode())
    # an empty $GRAPHATTN_CACHE counts as unset (not as the current directory)
    cache = Path(os.environ.get("GRAPHATTN_CACHE") or Path.home() / ".cache" / "graphattn")
    return cache / f"csr_attention-{key.hexdigest()[:16]}.so"


def _fingerprint(path: Path) -> dict:
    """Size and SHA-256 of a file."""
    data = path.read_bytes()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _record(lib: Path) -> Path:
    """Where the fingerprint of a built library is kept, beside it."""
    return lib.with_suffix(".json")


def _intact(lib: Path) -> bool:
    """Whether ``lib`` is the library that was built: its size and hash equal the ones
    recorded at build time. A truncated or overwritten file (a crashed copy, a full disk)
    is never loaded: mapping it would crash the process (SIGBUS) instead of failing."""
    try:
        recorded = json.loads(_record(lib).read_text())
        return lib.stat().st_size == recorded["size"] and _fingerprint(lib) == recorded
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed:\n{proc.stderr.strip()[-2000:]}")


def _build(cc: str, target: Path) -> None:
    """Compile every source once per dtype (in parallel) and link the objects."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        jobs = [(src, suffix, defs) for src in SOURCES for suffix, defs in DTYPES.items()
                if suffix in KERNEL_DTYPES[_KERNEL_OF_SOURCE[src.stem]]]
        objs = [str(Path(tmp) / f"{src.stem}-{suffix}.o") for src, suffix, _ in jobs]
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            list(pool.map(_run, [[cc, *FLAGS, *defs, "-c", str(src), "-o", obj]
                                 for (src, _, defs), obj in zip(jobs, objs)]))
        lib = Path(tmp) / "lib.so"
        _run([cc, "-shared", "-fopenmp", "-o", str(lib), *objs, "-lm"])
        record = Path(tmp) / "lib.json"
        record.write_text(json.dumps(_fingerprint(lib)))
        # atomic renames: a reader sees no library or the whole one, and a library whose
        # record does not match (between the two renames) is rebuilt, never loaded
        os.replace(lib, target)
        os.replace(record, _record(target))


def _load() -> ctypes.CDLL | None:
    global _lib, _error
    if _lib is not None or _error is not None:
        return _lib
    if os.environ.get("GRAPHATTN_NATIVE", "1").strip() == "0":
        _error = "disabled by GRAPHATTN_NATIVE=0"
        warnings.warn("graphattn: native kernels disabled by GRAPHATTN_NATIVE=0; using the "
                      "pure-torch kernels", RuntimeWarning, stacklevel=3)
        return None
    try:
        cc = _compiler()
        if cc is None or not sys.platform.startswith(("linux", "darwin")):
            raise RuntimeError("no C compiler found (set $CC)")
        path = library_path(cc)
        if not _intact(path):
            _build(cc, path)
            if not _intact(path):
                raise RuntimeError(f"the library built at {path} does not match its record")
        _lib = ctypes.CDLL(str(path))
    except (OSError, RuntimeError, subprocess.SubprocessError) as err:
        _error = str(err)
        warnings.warn(f"graphattn: native attention kernel unavailable ({_error}); using the "
                      "slower MKL sparse kernel", RuntimeWarning, stacklevel=3)
    return _lib


def available(dtype: torch.dtype = torch.float32, kernel: str = "csr") -> bool:
    """Whether the native ``kernel`` can run on CPU tensors of ``dtype`` (builds the library
    once): ``"csr"`` (adjacency attention) and ``"dropout"`` in float32, float64 and
    bfloat16, ``"dense"`` (full attention) in float32 and float64."""
    return (not _disabled and _SUFFIX.get(dtype) in KERNEL_DTYPES[kernel]
            and _load() is not None)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The kernels' arithmetic (and per-edge scalar) dtype for node rows of ``dtype``."""
    return torch.float32 if dtype == torch.bfloat16 else dtype


@contextlib.contextmanager
def disabled():
    """Layers called inside this block use the pure-torch kernels instead (to compare): the
    MKL sparse kernel in adjacency mode, the bucketed dense kernel in full mode."""
    global _disabled
    _disabled += 1
    try:
        yield
    finally:
        _disabled -= 1


def _ptr(t: Tensor | None) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr() if t is not None else None)


def call(name: str, dtype: torch.dtype, *args) -> None:
    """Call ``csr_attention_<name>`` (``dense_attention_<name>`` for ``dense_<name>``,
    ``dropout_<name>`` for ``dropout_<name>``)."""
    if name.startswith("dense_"):
        name = "dense_attention_" + name[6:]
    elif not name.startswith("dropout_"):
        name = "csr_attention_" + name
    fn = getattr(_lib, f"{name}_{_SUFFIX[dtype]}")
    allowed = {dtype, compute_dtype(dtype)}  # node rows, and per-edge scalars
    for a in args:  # the C code reads each float buffer as one of these: else garbage
        if isinstance(a, Tensor) and a.is_floating_point() and a.dtype not in allowed:
            raise TypeError(f"native {name}: a {a.dtype} tensor among {dtype} ones")
    conv = [ctypes.c_int64(a) if isinstance(a, int) else ctypes.c_double(a)
            if isinstance(a, float) else _ptr(a) for a in args]
    fn(*conv, ctypes.c_int(torch.get_num_threads()))
