"""Keep freed memory in the process: full-batch training on graphs of a million nodes."""

from __future__ import annotations

import ctypes

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Make glibc keep the memory that freed tensors leave, for the rest of the process.

    A training step on a graph of a million nodes allocates and frees dozens of
    ``[N, C]`` activations of 100-400 MB. By default glibc maps each such block afresh and
    unmaps it when the tensor is freed, so every step page-faults (and the kernel
    zero-fills) all of them again; on a virtual machine that hands freed pages back to its
    host this can cost more than the arithmetic (``benchmarks/results/social.md`` has the
    figures). After this call large blocks come from the heap (``M_MMAP_MAX = 0``) and the
    heap is never trimmed (``M_TRIM_THRESHOLD = -1``): a block freed in one step is reused
    in the next. The cost is resident memory: the process keeps its largest footprint, plus
    fragmentation.

    Call it once, after the first step (which builds the long-lived caches) or before
    training; it applies to the whole process and cannot be undone. Returns ``False`` (and
    changes nothing) where the C library is not glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return (libc.mallopt(_M_MMAP_MAX, 0) == 1
                and libc.mallopt(_M_TRIM_THRESHOLD, -1) == 1)
    except (OSError, AttributeError):
        return False
