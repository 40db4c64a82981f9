"""Plane-parallel execution on convcore's own worker threads.

Pooling, elementwise and fused convolution kernels are split into contiguous ranges of (n, c)
planes or images, each range run by a serial ``nogil`` compiled kernel on its own thread (the
caller's thread takes the first range). The workers are ordinary threads that sleep on a queue
when idle.

Why not OpenMP ``prange`` here: pooling sits between GEMMs, and numpy's BLAS runs its own thread
pool on the same cores. libgomp's idle workers spin for milliseconds after each parallel region
(and the spin cannot be turned off by a library: ``OMP_WAIT_POLICY`` is process-wide and read once),
stealing a core from the next GEMM. Measured on 2 cores, a 2x2 max-pool of (64, 32, 28, 28)
followed by a (64x800)@(800x12544) GEMM: 17-23 ms with a 2-thread OpenMP pool, 11 ms with these
threads, 11 ms serial, against 8.5 ms for the GEMM alone; the pool alone runs 1.9x faster on two
threads either way.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

# Below this many elements per thread the hand-off (~30 us) costs more than it saves.
MIN_ELEMENTS_PER_THREAD = 1 << 16

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _workers(n: int) -> ThreadPoolExecutor:
    """The shared pool, created once with room for any allowed thread count (its threads start
    only as tasks need them), so it is never replaced or shut down under another thread's feet."""
    global _executor
    if _executor is None:
        from ._backend import MAX_THREADS

        with _lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="convcore")
    return _executor


def run_planes(kernel, split, args, nthreads: int, elements: int) -> list:
    """Run ``kernel(*[a[lo:hi] for a in split], *args)`` over ``nthreads`` plane ranges.

    ``split`` holds arrays of shape (P, 1, ...) (one plane per row); every range is passed to the
    kernel as its own (hi - lo, 1, ...) view. Returns the kernels' return values, in range order.
    """
    planes = split[0].shape[0]
    nthreads = max(1, min(nthreads, planes, elements // MIN_ELEMENTS_PER_THREAD))
    if nthreads == 1:
        return [kernel(*split, *args)]
    bounds = [planes * i // nthreads for i in range(nthreads + 1)]
    pool = _workers(nthreads - 1)
    futures = [
        pool.submit(kernel, *[a[bounds[i] : bounds[i + 1]] for a in split], *args)
        for i in range(1, nthreads)
    ]
    try:
        first = kernel(*[a[: bounds[1]] for a in split], *args)
    finally:
        results = [f.result() for f in futures]  # never leave a worker writing after we return
    return [first, *results]


def run_blocks(kernel, split, args, nthreads: int, elements: int, blocks: int) -> list:
    """Run ``kernel(*[a[lo:hi] for a in split], *args)`` on ``blocks`` contiguous ranges of planes
    fixed by the plane count alone, spread over up to ``nthreads`` threads; returns the results in
    range order. For reductions (weight gradients): summing the results in that order gives the
    same bits whatever the thread count, where ``run_planes`` would round differently with it."""
    planes = split[0].shape[0]
    blocks = max(1, min(blocks, planes))
    bounds = [planes * i // blocks for i in range(blocks + 1)]
    nthreads = max(1, min(nthreads, blocks, elements // MIN_ELEMENTS_PER_THREAD))

    def run(first: int, last: int) -> list:
        return [kernel(*[a[bounds[b] : bounds[b + 1]] for a in split], *args) for b in range(first, last)]

    if nthreads == 1:
        return run(0, blocks)
    edges = [blocks * i // nthreads for i in range(nthreads + 1)]
    pool = _workers(nthreads - 1)
    futures = [pool.submit(run, edges[i], edges[i + 1]) for i in range(1, nthreads)]
    try:
        first = run(edges[0], edges[1])
    finally:
        rest = [f.result() for f in futures]  # never leave a worker writing after we return
    return first + [r for part in rest for r in part]


def run_tasks(fn, tasks: list) -> list:
    """``[fn(*t) for t in tasks]``, one task per thread (the caller's thread runs the first);
    returns the results in task order. The caller sizes ``tasks`` to the threads it wants."""
    if len(tasks) <= 1:
        return [fn(*t) for t in tasks]
    pool = _workers(len(tasks) - 1)
    futures = [pool.submit(fn, *t) for t in tasks[1:]]
    try:
        first = fn(*tasks[0])
    finally:
        rest = [f.result() for f in futures]  # never leave a worker writing after we return
    return [first, *rest]
