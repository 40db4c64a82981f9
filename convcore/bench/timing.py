"""Timing: a contender's turn, and the interleaved rounds measuring one case.

Within a case every contender gets the same warm-up call, then the contenders take turns, round
after round, rotating their order (A B C, B C A, ...), so machine noise hits all of them alike. A
turn puts its contender in the steady state a user calling only it would see, then times
``_BLOCK`` calls with ``time.perf_counter``:

it calls the contender back to back, untimed, for at least ``_WARM_S`` seconds (at least once).
That outlasts the other libraries' spinning thread pools: OpenBLAS's workers (numpy's matmul,
hence both convcore backends and the GEMM ceiling) spin for ~0.1 s after each call, and on 2 cores
they taxed whoever ran next (measured: torch's L2 forward 8.7 ms alone, 15.2 ms right after a
convcore call). It also brings the contender's own state back: heap and fresh pages, its thread
pools, the cores' clocks (measured: torch's P1 forward 23-40 ms after one warm-up call, 10-13 ms
after six; convcore's L1 forward 2.8-3.9 ms after a 0.15 s idle gap, 1.3-1.5 ms once hot). The
harness never sleeps between turns, for the same reason.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc
from collections.abc import Callable

_BLOCK = 2            # timed calls per contender turn, after the warm-up
_WARM_S = 0.15        # each turn's untimed back-to-back warm-up, seconds (see the docstring)


class Contender:
    """A named callable to time, with an optional untimed setup and teardown around each turn.

    ``convcore bench`` makes one per contender of a case (and per GEMM-ceiling variant) and lets
    them take turns; ``benchmarks/`` uses one `turn` to give every contender the same start before
    pytest-benchmark times it.

    Parameters
    ----------
    name : str
        The contender's name (``"cython"``, ``"torch"``, ...): the key of its samples.
    fn : callable
        Runs one call, without arguments.
    setup, teardown : callable, optional
        Called without arguments before and after each turn (and `warm_up`), untimed: e.g.
        entering and leaving ``convcore.threads(1)``.

    Examples
    --------
    >>> from convcore.bench import Contender
    >>> calls = []
    >>> contender = Contender("append", lambda: calls.append(1))
    >>> seconds = contender.turn(3, warm=False)   # one untimed call, then three timed ones
    >>> len(seconds), len(calls)
    (3, 4)
    """

    def __init__(self, name: str, fn: Callable, setup: Callable | None = None,
                 teardown: Callable | None = None):
        self.name, self.fn, self.setup, self.teardown = name, fn, setup, teardown

    def turn(self, timed: int, warm: bool = True) -> list[float]:
        """Warm up, then time ``timed`` calls.

        The warm-up is untimed: calls back to back for ``_WARM_S`` seconds (0.15 s; at least one
        call), one call when ``warm`` is false. Setup and teardown are untimed too.

        Parameters
        ----------
        timed : int
            Timed calls (0: only the warm-up).
        warm : bool, default True
            False: a single warm-up call.

        Returns
        -------
        list of float
            The timed calls' durations, seconds.
        """
        if self.setup:
            self.setup()
        try:
            start = time.perf_counter()
            self.fn()
            while warm and time.perf_counter() - start < _WARM_S:
                self.fn()
            out = []
            for _ in range(timed):
                start = time.perf_counter()
                self.fn()
                out.append(time.perf_counter() - start)
            return out
        finally:
            if self.teardown:
                self.teardown()

    def warm_up(self) -> None:
        """The first call of a case (lazy initialisation, caches, workspaces), the same for everyone."""
        if self.setup:
            self.setup()
        try:
            self.fn()
        finally:
            if self.teardown:
                self.teardown()


class _OneThread:
    """setup/teardown pair running convcore (and BLAS, via threadpoolctl) on one thread."""

    def __init__(self, controller):
        self.controller, self.limiter, self.block = controller, None, None

    def setup(self):
        import convcore

        self.block = convcore.threads(1)   # public, and local to the measuring thread
        self.block.__enter__()
        if self.controller is not None:
            self.limiter = self.controller.limit(limits=1, user_api="blas")

    def teardown(self):
        if self.block is not None:
            self.block.__exit__(None, None, None)
            self.block = None
        if self.limiter is not None:
            self.limiter.restore_original_limits()
            self.limiter = None


def _nbytes(out) -> int:
    if isinstance(out, (tuple, list)):
        return sum(_nbytes(o) for o in out)
    return int(getattr(out, "nbytes", 0) or 0)


def _memory(fn) -> dict:
    """Peak numpy/Python allocation of one call (workspace released first), and of its outputs."""
    from .. import _workspace

    _workspace.clear()
    tracemalloc.start()
    try:
        out = fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    outputs = _nbytes(out)
    del out
    return {"peak_mib": peak / 2**20, "output_mib": outputs / 2**20, "work_mib": max(0, peak - outputs) / 2**20}


def run_case(case, repeat: int, scaling_controller=None, scaling: bool = False, monitor=None,
             cores: int = 1, warm: bool = True, peak_gflops: float | None = None) -> dict:
    """Measure one ``cases.Case``; returns the result record (its fields: ``convcore.bench.report``)."""
    contenders = [Contender(name, fn) for name, fn in case.runners.items()]
    contenders += [Contender("gemm " + name, fn) for name, fn in case.ceilings.items()]
    if scaling:
        one = _OneThread(scaling_controller)
        contenders.append(Contender("cython 1thr", case.runners["cython"], one.setup, one.teardown))
    before = monitor.snapshot() if monitor else None
    for c in contenders:
        c.warm_up()
    samples: dict[str, list[float]] = {c.name: [] for c in contenders}
    for r in range(repeat):
        k = r % len(contenders)
        for c in contenders[k:] + contenders[:k]:
            samples[c.name] += c.turn(_BLOCK, warm)
    after = monitor.snapshot() if monitor else None
    med = {name: statistics.median(v) * 1e3 for name, v in samples.items()}
    result = {
        "case": case.name, "kind": case.spec.kind, "group": case.spec.group, "op": case.spec.op,
        "smoke": case.spec.smoke, "description": case.description, "flops": case.flops, "bytes": case.nbytes,
        "samples_ms": {name: [s * 1e3 for s in v] for name, v in samples.items()},
        "median_ms": {c: med[c] for c in case.runners},
    }
    if case.ceilings:
        gemm = {name: med["gemm " + name] for name in case.ceilings}
        best = min(gemm, key=lambda name: gemm[name])
        result.update(gemm_ms=gemm[best], gemm_variant=best, gemm_variants_ms=gemm)
    if scaling:
        result["cython_1thr_ms"] = med["cython 1thr"]
    cy = med["cython"]
    if case.flops:
        result["gflops"] = {c: case.flops / (med[c] * 1e-3) / 1e9 for c in case.runners}
        if case.ceilings:
            result["gflops"]["gemm"] = case.flops / (result["gemm_ms"] * 1e-3) / 1e9
    if case.nbytes:
        result["gbytes_per_s"] = {c: case.nbytes / (med[c] * 1e-3) / 1e9 for c in case.runners}
    if case.images:
        result["images_per_s"] = {c: case.images / (med[c] * 1e-3) for c in case.runners}
    result["memory"] = {c: _memory(case.runners[c]) for c in ("cython", "numpy") if c in case.runners}
    result["foreign_cpu"] = monitor.foreign(before, after, cores) if monitor else None
    result["ratios"] = {"cython_over_numpy": med["numpy"] / cy} if "numpy" in med else {}
    if "torch" in med:
        result["ratios"]["torch_over_cython"] = med["torch"] / cy
    if "onnxruntime" in med:
        result["ratios"]["ort_over_cython"] = med["onnxruntime"] / cy
    if case.flops and peak_gflops:
        result["ratios"]["pct_peak"] = 100 * result["gflops"]["cython"] / peak_gflops
    if "gemm_ms" in result:
        result["ratios"]["pct_gemm"] = 100 * result["gemm_ms"] / cy
    if scaling:
        result["ratios"]["thread_gain"] = result["cython_1thr_ms"] / cy
    return result
