"""The native CPU kernels of graph attention (``csrc/``), compiled on first use.

* ``csr_attention.c`` (``mask="adjacency"``, :class:`NativeAttention`): one sweep over the
  in-edges of each target computes the scores (dot or additive), the segment softmax and
  the weighted sum; the backward is one pass per target (score gradients, ``gq``, the
  additive ``att`` gradient) and one per source over the transposed structure (``gk``,
  ``gv``). Each output row is written by one OpenMP thread, and only ``[E, H]`` scalars are
  stored. Compared with :class:`~.sparse_kernel.SparseAttention` (MKL sparse products plus
  segment ops), it reads every node row once per edge instead of once per head and product,
  and computes the additive score without materialising ``q_i + k_j``.
* ``dropout.c`` (:func:`dropout_forward`, :func:`dropout_backward`): the dropout of large
  tensors in one pass, its random bits from a counter-based generator (the same mask for
  any number of threads).
* ``dense_attention.c`` (``mask="full"``, dot score, :class:`DenseAttention`): one thread
  per graph of a batch attends within it in cache, with no padding; it keeps the row
  maximum and sum of the softmax, not the ``[P, H]`` weights, and recomputes the scores in
  the backward.

The C sources are compiled with the system C compiler (``$CC``, else ``cc``/``gcc``) into a
shared library cached under ``$GRAPHATTN_CACHE`` (default ``~/.cache/graphattn``) and loaded
with :mod:`ctypes`: no torch headers, a few seconds to build. Where no compiler works, or
with ``GRAPHATTN_NATIVE=0``, :func:`available` is ``False`` (with one warning saying why) and
the layer uses its pure-torch kernels instead (:mod:`~.sparse_kernel`, :mod:`~.dense_kernel`).

Shapes: ``N_t`` targets, ``N_s`` sources, ``E`` edges (sorted by target, see
:class:`~.sparse_kernel.EdgeStructure`), ``B`` graphs, ``P = sum_b N_b**2`` pairs, ``H``
heads, ``C`` channels per head.
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


def _call(name: str, dtype: torch.dtype, *args) -> None:
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


class NativeAttention(torch.autograd.Function):
    r"""Attention of each target over its in-edges by the native kernel.

    Inputs (edges in sorted order): q ``[N_t, H, C]``; kv ``[N_s, 2, H, C]`` the keys and
    the values (``kv[:, 0]``, ``kv[:, 1]``; side by side, so an edge gathers one row), or
    ``[N_s, C]`` one row that is the key and the value of every head (then ``emb`` must be
    ``None``, and the row's gradient is the sum over heads, keys and values); emb
    ``[E, H, C]`` (the edge embedding added to keys and values) or ``None``; att ``[H, C]``
    (additive score) or ``None`` (dot score); bias ``[E, H]`` or ``None``; noise ``[E, H]``
    (dropout keep-mask divided by ``1 - p``) or ``None``; ``st`` the
    :class:`~.sparse_kernel.EdgeStructure`; ``scale`` of the dot score (default
    :math:`C^{-1/2}`). With bfloat16 ``q`` (autocast), ``kv`` and
    ``emb`` are read as bfloat16 and ``out`` and the node gradients are bfloat16; scores,
    sums, ``alpha`` and the other inputs are float32.

    Returns:
        out ``[N_t, H, C]`` and alpha ``[E, H]`` (before dropout; not differentiable).
    """

    @staticmethod
    def forward(ctx, q, kv, emb, att, bias, noise, st, negative_slope, scale=None):
        out, alpha, saved = csr_forward(q, kv, emb, att, bias, noise, st, negative_slope,
                                        scale)
        ctx.save_for_backward(*saved, alpha, out)
        ctx.st, ctx.scale, ctx.slope = st, saved_scale(q, scale), float(negative_slope)
        ctx.needs_bias = bias is not None
        ctx.mark_non_differentiable(alpha)
        return out, alpha

    @staticmethod
    def backward(ctx, g_out, _g_alpha):
        q, kv, emb, att, noise, alpha, out = ctx.saved_tensors
        gq, g_kv, g_emb, g_att, g_bias = csr_backward(
            g_out, q, kv, emb, att, noise, alpha, out, ctx.st, ctx.slope, ctx.scale,
            ctx.needs_input_grad[1], ctx.needs_bias)
        return gq, g_kv, g_emb, g_att, g_bias, None, None, None, None


def saved_scale(q: Tensor, scale: float | None) -> float:
    """The dot score's scale: ``scale``, by default :math:`C^{-1/2}`."""
    return q.size(-1) ** -0.5 if scale is None else float(scale)


def csr_forward(q, kv, emb, att, bias, noise, st, negative_slope, scale=None):
    """The forward of :class:`NativeAttention` (edges in sorted order): ``out``, ``alpha``
    and the inputs as the kernel read them ``(q, kv, emb, att, noise)`` for
    :func:`csr_backward`."""
    acc = compute_dtype(q.dtype)
    shared = kv.dim() == 2
    if shared and emb is not None:
        raise ValueError("shared key/value rows take no edge embedding")
    q, kv = q.contiguous(), kv.to(q.dtype).contiguous()
    emb = emb.to(q.dtype).contiguous() if emb is not None else None
    att = att.to(acc).contiguous() if att is not None else None
    bias = bias.to(acc).contiguous() if bias is not None else None
    noise = noise.to(acc).contiguous() if noise is not None else None
    N_t, H, C = q.shape
    scale = saved_scale(q, scale)
    out = q.new_empty(N_t, H, C)
    alpha = q.new_empty(st.num_edges, H, dtype=acc)
    _call("forward", q.dtype, N_t, H, C, int(shared), st.offsets, st.src_long, q, kv, emb, att,
          bias, noise, scale, float(negative_slope), out, alpha)
    return out, alpha, (q, kv, emb, att, noise)


def csr_backward(g_out, q, kv, emb, att, noise, alpha, out, st, slope, scale, need_kv=True,
                 need_bias=False):
    """The backward of :class:`NativeAttention`: ``(gq, g_kv, g_emb, g_att, g_bias)``, each
    ``None`` where not wanted or not an input."""
    g_out = g_out.to(q.dtype).contiguous()
    N_t, H, C = q.shape
    wg, gq = alpha.new_empty(alpha.size(0), 2, H), torch.empty_like(q)  # wg: weight, score grad
    g_emb = torch.empty_like(emb) if emb is not None else None
    g_att = alpha.new_zeros(torch.get_num_threads(), H, C) if att is not None else None
    shared = int(kv.dim() == 2)
    live = torch.empty(N_t, dtype=torch.uint8)  # targets with a non-zero gradient
    _call("backward_dst", q.dtype, N_t, H, C, shared, st.offsets, st.src_long, q, kv, emb,
          att, noise, alpha, out, g_out, scale, slope, wg, gq, g_emb, g_att, live)
    g_kv = None
    if need_kv:  # the pass over the sources (e.g. not for raw features)
        g_kv = torch.empty_like(kv)
        perm_t, crow_t, dst_t = st.transpose_long
        _call("backward_src", q.dtype, kv.size(0), H, C, shared, crow_t, perm_t, dst_t, q,
              kv, emb, att, wg, g_out, scale, slope, g_kv, live)
    g_att = g_att.sum(0) if g_att is not None else None
    g_bias = wg[:, 1] if need_bias else None
    return gq, g_kv, g_emb, g_att, g_bias


class FullGraphs:
    """What the dense kernel needs to know of a batch: ``ptr [B + 1]`` node offsets,
    ``pair_ptr [B]`` first pair of each graph, the largest graph ``n_max`` and, for an edge
    bias, the edges sorted by target (``crow [N + 1]``, ``col [E]``)."""

    def __init__(self, sizes: Tensor, st=None) -> None:
        sizes = sizes.long()
        self.num_graphs, self.n_max = sizes.numel(), int(sizes.max()) if sizes.numel() else 0
        self.ptr = torch.cat([sizes.new_zeros(1), torch.cumsum(sizes, 0)])
        pairs = sizes * sizes
        self.pair_ptr = torch.cumsum(pairs, 0) - pairs
        self.num_pairs = int(pairs.sum())
        self.crow, self.col = (st.offsets, st.src_long) if st is not None else (None, None)


class DenseAttention(torch.autograd.Function):
    r"""Dot-product attention within each graph of a batch by the native dense kernel.

    Inputs: q ``[N, H, C]``; kv ``[N, 2, H, C]``; edge_bias ``[E, H]`` in the sorted order of
    ``graphs.crow`` or ``None``; attn_bias ``[B, H | 1, M, M]`` (``M`` at least the largest
    graph) or ``None``; noise ``[P, H]`` in pair order or ``None``; ``graphs`` a
    :class:`FullGraphs`; ``want_alpha``.

    Returns:
        out ``[N, H, C]`` and alpha ``[P, H]`` in pair order (empty unless ``want_alpha``;
        not differentiable).
    """

    @staticmethod
    def forward(ctx, q, kv, edge_bias, attn_bias, noise, graphs, want_alpha):
        q, kv = q.contiguous(), kv.contiguous()
        eb = edge_bias.contiguous() if edge_bias is not None else None
        ab = attn_bias.contiguous() if attn_bias is not None else None
        noise = noise.contiguous() if noise is not None else None
        N, H, C = q.shape
        out, stats = q.new_empty(N, H, C), q.new_empty(N, H, 2)  # stats: row max, 1 / sum
        alpha = q.new_empty(graphs.num_pairs if want_alpha else 0, H)
        _call("dense_forward", q.dtype, graphs.num_graphs, graphs.n_max, H, C, graphs.ptr,
              graphs.pair_ptr, q, kv, graphs.crow if eb is not None else None, graphs.col,
              eb, ab, *_bias_strides(ab), noise, C ** -0.5, out, stats,
              alpha if want_alpha else None)
        ctx.save_for_backward(q, kv, eb, ab, noise, out, stats)
        ctx.graphs = graphs
        ctx.mark_non_differentiable(alpha)
        return out, alpha

    @staticmethod
    def backward(ctx, g_out, _g_alpha):
        q, kv, eb, ab, noise, out, stats = ctx.saved_tensors
        graphs = ctx.graphs
        N, H, C = q.shape
        gq, g_kv = torch.empty_like(q), torch.empty_like(kv)
        g_eb = torch.empty_like(eb) if eb is not None and ctx.needs_input_grad[2] else None
        g_ab = torch.zeros_like(ab) if ab is not None and ctx.needs_input_grad[3] else None
        _call("dense_backward", q.dtype, graphs.num_graphs, graphs.n_max, H, C, graphs.ptr,
              graphs.pair_ptr, q, kv, graphs.crow if eb is not None else None, graphs.col,
              eb, ab, *_bias_strides(ab), noise, C ** -0.5, out, stats,
              g_out.contiguous(), gq, g_kv, g_eb, g_ab)
        return gq, g_kv, g_eb, g_ab, None, None, None


def _bias_strides(ab: Tensor | None) -> list[int]:
    """Element strides (graph, head, target, source) of a contiguous ``[B, H | 1, M, M]``
    bias; the head stride is 0 when one bias serves every head."""
    if ab is None:
        return [0, 0, 0, 0]
    sb, sh, si, sj = ab.stride()
    return [sb, sh if ab.size(1) > 1 else 0, si, sj]


def dropout_forward(x: Tensor, level: int, scale: float, out: Tensor) -> Tensor:
    """Zero the elements of ``x`` whose 16 random bits fall below ``level`` (probability
    ``level / 65536``), multiply the others by ``scale``, into ``out`` (may be ``x``). ``x``
    and ``out`` contiguous CPU float32/64 or bfloat16 tensors; the seed is one draw of
    torch's default generator. Returns the drop mask as bits: int64 words
    ``[ceil(numel / 64)]``, element ``i`` at bit ``i % 64`` of word ``i // 64``."""
    mask = torch.empty((x.numel() + 63) // 64, dtype=torch.int64)
    seed = int(torch.empty((), dtype=torch.int64).random_())
    _call("dropout_forward", x.dtype, x.numel(), x, out, mask, seed, level, float(scale))
    return mask


def dropout_backward(g: Tensor, mask: Tensor, scale: float, out: Tensor) -> Tensor:
    """``out = g * scale`` where the bit of :func:`dropout_forward`'s ``mask`` is 0, and 0
    where it is 1 (``out`` may be ``g``)."""
    _call("dropout_backward", g.dtype, g.numel(), g, mask, float(scale), out)
    return out
