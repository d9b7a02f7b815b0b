"""Featurizing many molecules in worker processes: a function over ordered chunks of a list.

On Linux the workers are forked, as torch's ``DataLoader`` workers are: they start at once
and touch nothing of torch (RDKit and numpy only). Elsewhere they start by ``spawn`` and
each first imports torch, PyG and RDKit (about four CPU seconds); a script that asks for
workers there must guard its entry point (``if __name__ == "__main__":``). Lists shorter than
:data:`MIN_PARALLEL` stay in the calling process.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

from graphattn._cpus import usable_cpus

_START = "fork" if sys.platform == "linux" else "spawn"
# items; fewer are featurized in the calling process (a spawned worker's imports cost what
# featurizing ~10,000 molecules does; a forked one starts at once)
MIN_PARALLEL = 2_000 if _START == "fork" else 20_000


def map_chunks(fn: Callable[..., list], items: list, workers: int, *args) -> list:
    """``fn(chunk, *args)`` over consecutive chunks of ``items``, the returned lists joined in
    order, in ``workers`` processes (``-1``: :func:`usable_cpus`); in this process when that
    is at most one or there are fewer than :data:`MIN_PARALLEL` items (``fn`` must be a
    module-level function)."""
    if workers < 0:
        workers = usable_cpus()
    if workers <= 1 or len(items) < MIN_PARALLEL:
        return fn(items, *args)
    size = -(-len(items) // (4 * workers))  # a few chunks per worker evens out their speeds
    chunks = [items[i:i + size] for i in range(0, len(items), size)]
    context = multiprocessing.get_context(_START)
    out: list = []
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        for part in pool.map(fn, chunks, *([a] * len(chunks) for a in args)):
            out += part
    return out
