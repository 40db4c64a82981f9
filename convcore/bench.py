"""Benchmark convcore's kernels side by side: cython vs numpy backend (vs torch when installed), interleaved, medians.

Method. The cases are ``convcore._suite``'s (conv shapes L1 L2 V1 R1 P1 S1 x forward / input
gradient / weight gradient, max-pool shapes A B C x forward / backward, the LeNet training step,
inference with ``predict`` on LeNet and ResNet-18).
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

Tables show medians over all timed calls. Header: convcore's build, threads and ISA (the
micro-kernel its float32 GEMM runs, ``CONVCORE_MAX_ISA`` caps it), the CPU, the measured FMA peak
of that ISA on 1 and N threads (independent FMA chains at full vector width: what a GEMM on these
cores can approach), numpy's BLAS and its kernel (threadpoolctl), torch, onnxruntime, and a quick
sgemm calibration (1 vs N BLAS threads);
warnings when OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set, when the BLAS kernel is older than the
CPU supports, when the machine is loaded or its cores do not scale.

Columns, per case:
  cython / numpy / torch ms   median milliseconds per call (torch with the same thread count)
  ort ms       onnxruntime (MLAS), when installed, the same thread count: for convolution forwards
               one Conv node built with onnx.helper; for inference cases the whole model exported
               with ``convcore.onnx.export`` (same weights)
  GEMM ms      the GEMM ceiling, measured in the same rounds: numpy's matmul doing the call's
               multiply-adds on preallocated operands, the faster of per image (W[F,CKK] @
               cols_n[CKK,OH*OW] for each image n, and the analogous products for the gradients)
               and batched (all N*OH*OW columns in one matmul); see ``convcore._suite``
  rate         cython's GFLOP/s for convolutions (2*N*F*C*KH*KW*OH*OW flops per call), GB/s for
               pools (minimum traffic: input, output and int64 indices read or written once), or
               images/s for inference cases (``predict`` on LeNet and ResNet-18, batch 1 and more)
  cy/np        speed-up of the cython backend over the numpy backend (numpy time / cython time)
  torch/cy     torch time / cython time (> 1: convcore is faster)
  ort/cy       onnxruntime time / cython time
  %peak        cython's GFLOP/s as a share of the measured FMA peak (N threads, the ISA in use)
  %GEMM        GEMM ceiling time / cython time: 100% means im2col, col2im and layout work are free
  work MiB     peak memory numpy allocated during one cython call beyond the arrays it returns
               (tracemalloc; convcore's workspace is released first, so it is counted)
  Nthr gain    with ``--scaling``: cython time with 1 thread (convcore and BLAS) / with N threads

The summary checks issue 13's targets (met / NOT met); with ``--cases`` or ``--quick`` they are
computed on the subset that ran, and say so. A row marked ``!`` ran while other processes used
more than 10% of the CPU: treat its numbers with suspicion.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import time
import tracemalloc

from . import _suite

_BLOCK = 2            # timed calls per contender turn, after the warm-up
_WARM_S = 0.15        # each turn's untimed back-to-back warm-up, seconds (see the docstring)
QUICK = ("L1", "L2", "P1", "C", "lenet")
_NOISY = 0.10         # share of the machine's CPU used by other processes that flags a row
_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
             "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS", "OMP_PROC_BIND", "KMP_AFFINITY",
             "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MALLOC_ARENA_MAX",
             "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "LD_PRELOAD")

# Issue 13's targets: key -> (label, comparison, threshold, unit, cases in the full suite);
# comparison None: reported only.
TARGETS = {
    "conv_torch_geomean": ("conv: geomean torch time / convcore time", ">=", 1.2, "x", 18),
    "conv_torch_min": ("conv: worst case torch / convcore", ">=", 0.8, "x", 18),
    "gemm_bound_fwd_min_peak": ("conv L2 V1 R1 P1 forward: worst % of FMA peak", ">=", 75.0, "%", 4),
    "lenet_full": ("LeNet full step: convcore time / torch time", "<=", 0.8, "x", 1),
    "lenet_frozen": ("LeNet, convs frozen: convcore / torch", "<=", 0.8, "x", 1),
    "lenet_predict": ("LeNet inference (predict): convcore / torch", "<=", 0.8, "x", 1),
    "conv_fwd_ort_geomean": ("conv forwards: geomean onnxruntime / convcore", ">=", 1.0, "x", 6),
    # Issue 14's targets (inference, convcore.predict): convcore time / contender time.
    "infer_lenet_b64_ort": ("LeNet predict batch 64: convcore / onnxruntime", "<=", 1.0, "x", 1),
    "infer_lenet_b1_ort": ("LeNet predict batch 1: convcore / onnxruntime", "<=", 2.0, "x", 1),
    "infer_lenet_b1_torch": ("LeNet predict batch 1: convcore / torch", "<=", 0.5, "x", 1),
    "infer_resnet18_b1_ort": ("ResNet-18 224x224 batch 1: convcore / onnxruntime", "<=", 1.2, "x", 1),
    "infer_resnet18_b8_ort": ("ResNet-18 224x224 batch 8: convcore / onnxruntime", None, None, "x", 1),
    "gemm_bound_min_pct": ("conv L2 V1 R1 P1: worst % of numpy's GEMM", None, None, "%", 12),
    "pool_fwd_torch_geomean": ("max pool fwd: geomean torch / convcore", None, None, "x", 3),
    "pool_bwd_torch_geomean": ("max pool bwd: geomean torch / convcore", None, None, "x", 3),
    "cython_numpy_geomean": ("conv+pool: geomean cython speed-up over numpy", None, None, "x", 24),
    "v1_work_mib": ("conv V1 fwd/bwd: worst working memory", None, None, "MiB", 3),
    "thread_gain": ("threads: geomean 1-thread time / N-thread time", None, None, "x", 27),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # "%(default).0s" prints nothing; it stops ArgumentDefaultsHelpFormatter from appending "(default: None)"
    parser.add_argument("--quick", action="store_true",
                        help=f"a subset ({', '.join(QUICK)}), 3 rounds: under a minute on an idle machine%(default).0s")
    parser.add_argument("--cases", default=None, metavar="LIST",
                        help="comma-separated: L1,L2,V1,R1,P1,S1,A,B,C,lenet,infer "
                             "(or conv, pool, all, smoke)%(default).0s")
    parser.add_argument("--smoke", action="store_true",
                        help="the tiny smoke variant of every case (checks the harness, not speed)%(default).0s")
    parser.add_argument("--repeat", type=int, default=None, metavar="R",
                        help=f"interleaved rounds per case, {_BLOCK} timed calls per contender each "
                             "(default: 7, --quick 3)%(default).0s")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="threads for convcore, torch and (with threadpoolctl) numpy's BLAS "
                             "(default: convcore's default for convcore and torch, BLAS untouched)%(default).0s")
    parser.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=None,
                        help="also time cython with 1 thread (convcore and BLAS) against N threads "
                             "(default: on, off with --quick)%(default).0s")
    parser.add_argument("--no-torch", action="store_true", help="leave torch out even when installed%(default).0s")
    parser.add_argument("--no-ort", action="store_true", help="leave onnxruntime out even when installed%(default).0s")
    parser.add_argument("--json", default=None, metavar="FILE",
                        help="write the machine, versions, thread counts, every sample and the summary%(default).0s")
    parser.add_argument("--plot", default=None, metavar="FILE",
                        help="bar chart of speed-ups (needs matplotlib)%(default).0s")


# ---------------------------------------------------------------------------------------------
# The machine and the environment

def _cpuinfo() -> tuple[str, set]:
    """CPU model name and flags from /proc/cpuinfo (Linux; elsewhere platform's best guess, no flags)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return model, flags


def _cpu_level(flags: set) -> int:
    """0 SSE, 1 AVX, 2 AVX2+FMA, 3 AVX-512 (F, BW, VL, DQ: what OpenBLAS's SkylakeX kernel needs)."""
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return 3
    if {"avx2", "fma"} <= flags:
        return 2
    return 1 if "avx" in flags else 0


# OpenBLAS core names (threadpoolctl's "architecture") -> the instruction set their kernels use.
_KERNEL_LEVEL = {
    "skylakex": 3, "cooperlake": 3, "sapphirerapids": 3, "zen4": 3, "zen5": 3,
    "haswell": 2, "zen": 2, "skylake": 2,
    "sandybridge": 1, "bulldozer": 1, "piledriver": 1, "steamroller": 1, "excavator": 1,
    "nehalem": 0, "core2": 0, "penryn": 0, "dunnington": 0, "atom": 0, "prescott": 0, "opteron": 0,
    "barcelona": 0, "nano": 0, "katmai": 0, "coppermine": 0, "northwood": 0, "banias": 0,
}
_LEVEL_NAMES = ("SSE", "AVX", "AVX2", "AVX-512")


def kernel_warning(kernel, flags: set) -> str | None:
    """A warning when numpy's BLAS runs a kernel older than this CPU supports, else None."""
    level = _KERNEL_LEVEL.get(str(kernel or "").lower())
    cpu = _cpu_level(flags)
    if level is None or level >= cpu:
        return None
    return (f"numpy's BLAS runs its {kernel} kernel ({_LEVEL_NAMES[level]}) on a CPU with "
            f"{_LEVEL_NAMES[cpu]}: its GEMMs run below what this CPU can do, and so does every "
            "GEMM-bound number below (all contenders' except torch's).")


def _machine() -> dict:
    model, flags = _cpuinfo()
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        available = os.cpu_count() or 1
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": model, "isa": _LEVEL_NAMES[_cpu_level(flags)], "cores": os.cpu_count(),
            "cores_available": available, "memory_gib": mem, "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def _fma_peak(threads: int, seconds: float) -> dict | None:
    """The measured FMA peak of the ISA convcore's GEMM runs, on ``threads`` threads and on one."""
    from . import _caps

    gemm = getattr(_caps, "_gemm", None)
    if gemm is None:
        return None
    isa = _caps.isa()
    return {"isa": isa, "threads": threads, "gflops": gemm.fma_peak(isa, threads, seconds),
            "gflops_1thr": gemm.fma_peak(isa, 1, seconds)}


class _CpuMonitor:
    """How much CPU other processes took while we measured (Linux /proc/stat; else None)."""

    def __init__(self):
        self.ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def snapshot(self):
        try:
            with open("/proc/stat") as f:
                v = [int(t) for t in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / self.ticks   # user nice system irq softirq
        steal = (v[7] if len(v) > 7 else 0) / self.ticks          # taken by the hypervisor
        own = os.times()                                          # this process, all its threads
        return time.perf_counter(), busy, steal, own.user + own.system

    @staticmethod
    def foreign(a, b, cores: int):
        """Share of the machine's CPU capacity used by other processes (or stolen) between a and b."""
        if a is None or b is None or b[0] <= a[0]:
            return None
        others = max(0.0, (b[1] - a[1]) - (b[3] - a[3])) + (b[2] - a[2])
        return min(1.0, others / ((b[0] - a[0]) * cores))


def _calibrate(controller, threads: int, size: int = 1024, rounds: int = 5, warm: bool = True) -> dict:
    """numpy sgemm (size^3) GFLOP/s with 1 BLAS thread and with ``threads``, interleaved: what the
    cores deliver right now (a VM's vCPUs may share a physical core or a busy host)."""
    import numpy as np

    a = np.full((size, size), 0.5, np.float32)
    b, c = a.copy(), np.empty_like(a)
    modes = {"n": _Contender("n", lambda: np.matmul(a, b, out=c))}
    if controller is not None and threads > 1:
        one = _OneThread(controller)
        modes["1"] = _Contender("1", modes["n"].fn, one.setup, one.teardown)
    samples: dict[str, list[float]] = {k: [] for k in modes}
    for _ in range(rounds):
        for k, contender in modes.items():
            samples[k] += contender.turn(1, warm)
    gf = {k: 2.0 * size**3 / statistics.median(v) / 1e9 for k, v in samples.items()}
    out = {"size": size, "threads": threads, "gflops_nthr": gf["n"]}
    if "1" in gf:
        out.update(gflops_1thr=gf["1"], gain=gf["n"] / gf["1"])
    return out


def _header(info: dict, machine: dict, threads: dict, torch, flags: set, smoke: bool) -> tuple[list, list]:
    """The header lines (convcore, machine, BLAS, torch, environment) and the warnings."""
    blas = info["blas"]
    gemm = info.get("gemm") or {}
    lines = [
        (f"convcore {info['version']}  backend={info['backend']}  compiled={info['compiled']}  "
         f"openmp={info['openmp']}  threads={threads['convcore']}  isa={info.get('isa')} "
         f"({gemm.get('mr')}x{gemm.get('nr')} GEMM tile{', SIMDe emulation' if gemm.get('emulated') else ''}; "
         f"CPU runs up to {info.get('cpu_isa')}, CONVCORE_MAX_ISA={info.get('max_isa')})"),
        (f"machine: {machine['cpu']} ({machine['isa']}), {machine['cores_available']} of {machine['cores']} "
         f"cores available, {machine['memory_gib']} GiB, python {machine['python']}"),
        (f"numpy {info['numpy']}  BLAS {blas.get('name')} {blas.get('version')}  kernel={blas.get('kernel')}  "
         f"threads={threads['blas'] or 'unknown'}"),
        f"torch {torch.__version__}  threads={threads['torch']}" if torch is not None else "torch: not used",
        (f"onnxruntime {machine['onnxruntime']}  threads={threads['convcore']} (conv forwards)"
         if machine.get("onnxruntime") else "onnxruntime: not used (pip install onnxruntime onnx)"),
    ]
    peak = machine.get("fma_peak")
    if peak:
        text = f"measured FMA peak ({peak['isa']}): {peak['gflops']:.0f} GFLOP/s on {peak['threads']} thread(s)"
        lines.append(text + (f", {peak['gflops_1thr']:.0f} on 1" if peak["threads"] > 1 else ""))
    env = {k: os.environ[k] for k in _ENV_VARS if os.environ.get(k)}
    if env:
        lines.append("environment: " + "  ".join(f"{k}={v}" for k, v in env.items()))
    warnings = []
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if os.environ.get(var):
            warnings.append(f"{var}={os.environ[var]} is set: it forces OpenBLAS's kernel or blocking (an "
                            "older kernel than the CPU supports costs about a third of sgemm's speed). "
                            "Unset it for benchmarks.")
    warn = kernel_warning(blas.get("kernel"), flags)
    if warn:
        warnings.append(warn)
    if str(blas.get("kernel", "")).startswith("unknown"):
        lines.append("note: install threadpoolctl to see numpy's BLAS kernel and to pin its threads")
    load = (machine.get("loadavg") or [0])[0]
    if load > 0.5:
        warnings.append(f"load average {load:.2f} before starting: other processes are using the CPU; "
                        "multi-threaded timings suffer most. Rows marked ! were measured under load.")
    cal = machine.get("sgemm")
    if cal:
        text = f"numpy sgemm {cal['size']}^3 now: {cal['gflops_nthr']:.0f} GFLOP/s with {cal['threads']} thread(s)"
        if "gain" in cal:
            text += f", {cal['gflops_1thr']:.0f} with 1 ({cal['gain']:.2f}x)"
            if cal["gain"] < 1.25:
                warnings.append(f"{cal['threads']} BLAS threads deliver only {cal['gain']:.2f}x one thread's sgemm "
                                "throughput right now (vCPUs sharing a physical core, a busy host or other "
                                "processes): multi-threaded timings and the scaling column are distorted.")
        lines.append(text)
    if peak and peak["threads"] > 1 and peak["gflops"] < 1.5 * peak["gflops_1thr"]:
        gain = peak["gflops"] / peak["gflops_1thr"]
        warnings.append(f"{peak['threads']} threads reach only {gain:.2f}x one thread's "
                        "FMA peak right now (vCPUs sharing a physical core, or other processes on the other "
                        "core): %peak is relative to that measured peak.")
    if smoke:
        warnings.append("smoke shapes: these numbers check the harness and say nothing about speed.")
    return lines, warnings


# ---------------------------------------------------------------------------------------------
# Measuring

class _Contender:
    def __init__(self, name, fn, setup=None, teardown=None):
        self.name, self.fn, self.setup, self.teardown = name, fn, setup, teardown

    def turn(self, timed: int, warm: bool = True) -> list[float]:
        """Warm up (untimed, back to back for ``_WARM_S``; one call when ``warm`` is false), then
        ``timed`` timed calls, in seconds; setup/teardown untimed."""
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
        self.controller, self.limiter, self.saved = controller, None, None

    def setup(self):
        from . import _backend

        self.saved = _backend._num_threads
        _backend.set_num_threads(1)
        if self.controller is not None:
            self.limiter = self.controller.limit(limits=1, user_api="blas")

    def teardown(self):
        from . import _backend

        _backend.set_num_threads(self.saved)
        if self.limiter is not None:
            self.limiter.restore_original_limits()
            self.limiter = None


def _nbytes(out) -> int:
    if isinstance(out, (tuple, list)):
        return sum(_nbytes(o) for o in out)
    return int(getattr(out, "nbytes", 0) or 0)


def _memory(fn) -> dict:
    """Peak numpy/Python allocation of one call (workspace released first), and of its outputs."""
    from . import _workspace

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
    """Measure one ``_suite.Case``; returns the result record (see the module docstring)."""
    contenders = [_Contender(name, fn) for name, fn in case.runners.items()]
    contenders += [_Contender("gemm " + name, fn) for name, fn in case.ceilings.items()]
    if scaling:
        one = _OneThread(scaling_controller)
        contenders.append(_Contender("cython 1thr", case.runners["cython"], one.setup, one.teardown))
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


# ---------------------------------------------------------------------------------------------
# Reporting

def _ms(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.1f}"


def _table_head(threads: int, scaling: bool) -> str:
    gain = f"{threads}thr gain"
    return (f"  {'op':<12}{'cython ms':>10}{'numpy ms':>10}{'torch ms':>10}{'ort ms':>9}{'GEMM ms':>9}{'rate':>11}"
            f"{'%peak':>7}{'cy/np':>8}{'torch/cy':>9}{'ort/cy':>7}{'%GEMM':>7}{'work MiB':>9}"
            + (f"{gain:>10}" if scaling else ""))


def _row(r: dict, scaling: bool) -> str:
    m, q = r["median_ms"], r["ratios"]
    if "gflops" in r:
        rate = f"{r['gflops']['cython']:.0f} GF/s"
    elif "images_per_s" in r:
        rate = f"{r['images_per_s']['cython']:.0f} img/s"
    elif "gbytes_per_s" in r:
        rate = f"{r['gbytes_per_s']['cython']:.1f} GB/s"
    else:
        rate = ""
    torch_cy = f"{q['torch_over_cython']:.2f}" if "torch_over_cython" in q else "-"
    ort_cy = f"{q['ort_over_cython']:.2f}" if "ort_over_cython" in q else "-"
    pct = f"{q['pct_gemm']:.0f}%" if "pct_gemm" in q else ""
    peak = f"{q['pct_peak']:.0f}%" if "pct_peak" in q else ""
    gemm = _ms(r["gemm_ms"]) if "gemm_ms" in r else ""
    ort = _ms(m["onnxruntime"]) if "onnxruntime" in m else ""
    cy_np = f"{q['cython_over_numpy']:>7.2f}x" if "cython_over_numpy" in q else f"{'-':>8}"
    cells = (f"  {r['op']:<12}{_ms(m['cython']):>10}{_ms(m.get('numpy')):>10}{_ms(m.get('torch')):>10}{ort:>9}"
             f"{gemm:>9}{rate:>11}{peak:>7}{cy_np}{torch_cy:>9}{ort_cy:>7}{pct:>7}"
             f"{r['memory']['cython']['work_mib']:>9.1f}")
    if scaling:
        cells += f"{q['thread_gain']:>9.2f}x"
    if (r.get("foreign_cpu") or 0) > _NOISY:
        cells += " !"
    return cells


def _geomean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def summarize(results: list[dict]) -> list[dict]:
    """Issue 6's metrics over the results that ran: one record per metric with value, target, verdict."""
    conv = [r for r in results if r["kind"] == "conv"]
    pools = [r for r in results if r["kind"] == "pool"]
    with_torch = [r for r in conv if "torch_over_cython" in r["ratios"]]
    values: dict[str, tuple[float, int]] = {}
    if with_torch:
        vs = [r["ratios"]["torch_over_cython"] for r in with_torch]
        values["conv_torch_geomean"] = (_geomean(vs), len(vs))
        values["conv_torch_min"] = (min(vs), len(vs))
    bound = [r["ratios"]["pct_gemm"] for r in conv if r["group"] in _suite.GEMM_BOUND and "pct_gemm" in r["ratios"]]
    if bound:
        values["gemm_bound_min_pct"] = (min(bound), len(bound))
    fwd_peak = [r["ratios"]["pct_peak"] for r in conv
                if r["group"] in _suite.GEMM_BOUND and r["op"] == "fwd" and "pct_peak" in r["ratios"]]
    if fwd_peak:
        values["gemm_bound_fwd_min_peak"] = (min(fwd_peak), len(fwd_peak))
    ort = [r["ratios"]["ort_over_cython"] for r in conv if "ort_over_cython" in r["ratios"]]
    if ort:
        values["conv_fwd_ort_geomean"] = (_geomean(ort), len(ort))
    for op in ("fwd", "bwd"):
        sel = [r["ratios"]["torch_over_cython"] for r in pools if r["op"] == op and "torch_over_cython" in r["ratios"]]
        if sel:
            values[f"pool_{op}_torch_geomean"] = (_geomean(sel), len(sel))
    if conv or pools:
        sp = [r["ratios"]["cython_over_numpy"] for r in conv + pools]
        values["cython_numpy_geomean"] = (_geomean(sp), len(sp))
    for r in results:
        if r["kind"] != "infer":
            continue
        name = r["op"].replace("-", "_")
        for contender, short in (("onnxruntime", "ort"), ("torch", "torch")):
            if contender in r["median_ms"] and f"infer_{name}_{short}" in TARGETS:
                values[f"infer_{name}_{short}"] = (r["median_ms"]["cython"] / r["median_ms"][contender], 1)
    for r in results:
        if r["kind"] == "step" and "torch_over_cython" in r["ratios"]:
            values[f"lenet_{r['op']}"] = (1.0 / r["ratios"]["torch_over_cython"], 1)
    v1 = [r["memory"]["cython"]["work_mib"] for r in conv if r["group"] == "V1"]
    if v1:
        values["v1_work_mib"] = (max(v1), len(v1))
    gains = [r["ratios"]["thread_gain"] for r in results if "thread_gain" in r["ratios"]]
    if gains:
        values["thread_gain"] = (_geomean(gains), len(gains))
    smoke = any(r["smoke"] for r in results)
    out = []
    for key, (label, cmp, target, unit, full) in TARGETS.items():
        if key not in values:
            continue
        value, n = values[key]
        met = None if cmp is None or target is None else (value >= target if cmp == ">=" else value <= target)
        out.append({"key": key, "label": label, "value": value, "unit": unit, "target": target, "cmp": cmp,
                    "met": met, "cases": n, "cases_in_suite": full, "smoke": smoke})
    return out


def _fmt(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.0f}%"
    if unit == "MiB":
        return f"{value:.1f} MiB"
    return f"{value:.3f}x"


def _summary_lines(summary: list[dict]) -> list[str]:
    lines = ["summary: issue 13 targets and issue 14's inference targets (medians of this run; torch / convcore "
             "> 1 means convcore is faster; inference rows are convcore time / contender time, < 1 is faster)"]
    for s in summary:
        if s["cmp"] is None:
            verdict = "(reported)"
        else:
            verdict = f"target {s['cmp']} {_fmt(s['target'], s['unit'])}: " + ("met" if s["met"] else "NOT met")
            if s["smoke"]:
                verdict += " (smoke shapes: meaningless)"
            elif s["cases"] < s["cases_in_suite"]:
                verdict += f" (on {s['cases']} of {s['cases_in_suite']} cases)"
        lines.append(f"  {s['label']:<50} {_fmt(s['value'], s['unit']):>9}  {verdict}")
    return lines


def _plot(results: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["case"] for r in results]
    vs_numpy = [r["ratios"].get("cython_over_numpy", float("nan")) for r in results]
    vs_torch = [r["ratios"].get("torch_over_cython", float("nan")) for r in results]
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(names) + 1.8))
    y = list(range(len(names)))
    ax.barh([i - 0.2 for i in y], vs_numpy, 0.4, label="numpy backend time / cython time")
    if any(not math.isnan(v) for v in vs_torch):
        ax.barh([i + 0.2 for i in y], vs_torch, 0.4, label="torch time / cython time")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    finite = [v for v in vs_numpy + vs_torch if math.isfinite(v) and v > 0]
    ticks = [2.0**k for k in range(-6, 9) if min(finite) / 2 <= 2.0**k <= max(finite) * 2]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.grid(axis="x", alpha=0.3)
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up of convcore's cython backend (log scale; > 1: convcore is faster)")
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# The command

def run(args) -> int:
    import convcore
    from convcore import _backend

    smoke = args.smoke
    try:
        items = [t.strip() for t in (args.cases or "").split(",")]
        if "smoke" in [t.lower() for t in items]:
            smoke, items = True, [t for t in items if t.lower() != "smoke"]
        groups = _suite.parse_groups(",".join(items))
    except ValueError as exc:
        print(f"error: --cases: {exc}", file=sys.stderr)
        return 2
    if groups is None and args.quick and not smoke:
        groups = list(QUICK)
    if (args.repeat is not None and args.repeat < 1) or (args.threads is not None and args.threads < 1):
        print("error: --repeat and --threads must be >= 1", file=sys.stderr)
        return 2
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("error: --plot needs matplotlib (pip install 'convcore[plot]'); nothing was run", file=sys.stderr)
            return 2
    if not convcore.info()["compiled"]:
        print(f"error: the compiled extension is not available ({convcore.info()['compiled_error']}); "
              "there is no cython backend to benchmark", file=sys.stderr)
        return 1
    repeat = args.repeat or (3 if args.quick else 7)
    scaling = (not args.quick) if args.scaling is None else args.scaling
    specs = _suite.specs(groups, smoke=smoke)

    torch = None if args.no_torch else _suite._torch()
    try:
        import threadpoolctl

        controller = threadpoolctl.ThreadpoolController()
    except ImportError:
        threadpoolctl = controller = None
    saved_threads = _backend._num_threads
    saved_torch = torch.get_num_threads() if torch is not None else None
    threads = args.threads or convcore.get_num_threads()
    blas_limiter = None
    try:  # everything changed here is restored afterwards (the command also runs inside tests)
        convcore.set_num_threads(threads)
        if torch is not None:
            torch.set_num_threads(threads)
        if args.threads is not None and controller is not None:
            blas_limiter = controller.limit(limits=threads, user_api="blas")
        return _run(args, convcore, specs, torch, threadpoolctl, controller, threads, repeat, scaling, smoke)
    finally:
        _backend.set_num_threads(saved_threads)
        if torch is not None:
            torch.set_num_threads(saved_torch)
        if blas_limiter is not None:
            blas_limiter.restore_original_limits()


def _run(args, convcore, specs, torch, threadpoolctl, controller, threads, repeat, scaling, smoke) -> int:
    info, machine = convcore.info(), _machine()
    _, flags = _cpuinfo()
    machine["sgemm"] = _calibrate(controller, threads, size=256 if smoke else 1024, warm=not smoke)
    machine["fma_peak"] = _fma_peak(threads, 0.02 if smoke else 0.3)
    machine["onnxruntime"] = None if args.no_ort else _suite.onnxruntime_version()
    pools = threadpoolctl.threadpool_info() if threadpoolctl is not None else None
    blas_threads = next((p.get("num_threads") for p in pools or [] if p.get("user_api") == "blas"),
                        info["blas"].get("threads"))
    thread_counts = {"convcore": threads, "blas": blas_threads,
                     "torch": torch.get_num_threads() if torch is not None else None}
    lines, warnings = _header(info, machine, thread_counts, torch, flags, smoke)
    date = datetime.datetime.now().astimezone()
    print("\n".join(lines))
    for w in warnings:
        print("WARNING: " + w)
    print(f"run {date:%Y-%m-%d %H:%M %Z}: {len(specs)} cases, medians of {repeat} interleaved rounds x "
          f"{_BLOCK} timed calls per contender" + (", with 1-thread scaling" if scaling else ""))
    if controller is None and (scaling or args.threads):
        print("note: threadpoolctl is not installed: --threads and the 1-thread runs set convcore's and torch's "
              "threads only; numpy's BLAS keeps its own count")
    monitor, cores = _CpuMonitor(), machine["cores_available"] or 1
    start = monitor.snapshot()
    results, skipped, group = [], [], None
    for spec in specs:
        key = (spec.group, spec.smoke)
        if key != group:
            group = key
            print(f"\n{spec.group}: {_suite.describe(spec.group, spec.smoke)}")
            print(_table_head(threads, scaling))
        try:
            case = spec.build(torch=torch is not None, ort=machine["onnxruntime"] is not None)
        except _suite.Unavailable as exc:
            print(f"  {spec.op:<12}skipped: {exc}")
            skipped.append({"case": spec.name, "reason": str(exc)})
            continue
        r = run_case(case, repeat, controller, scaling, monitor, cores, warm=not smoke,
                     peak_gflops=(machine["fma_peak"] or {}).get("gflops"))
        del case
        results.append(r)
        print(_row(r, scaling), flush=True)
    foreign = monitor.foreign(start, monitor.snapshot(), cores)
    if any((r.get("foreign_cpu") or 0) > _NOISY for r in results):
        print(f"\n! other processes used more than {_NOISY:.0%} of the CPU while this case ran")
    summary = summarize(results)
    print()
    print("\n".join(_summary_lines(summary)))
    if foreign is not None:
        print(f"other processes used {foreign:.0%} of the machine's CPU during the run")
    if args.json:
        doc = {
            "schema": "convcore-bench/1", "date": date.isoformat(timespec="seconds"), "argv": sys.argv[1:],
            "machine": machine, "environment": {k: os.environ.get(k) for k in _ENV_VARS if os.environ.get(k)},
            "convcore": info, "threads": thread_counts, "threadpool_info": pools,
            "torch": {"version": torch.__version__, "threads": torch.get_num_threads()} if torch is not None else None,
            "repeat": repeat, "timed_calls_per_turn": _BLOCK, "scaling": scaling, "warnings": warnings,
            "foreign_cpu": foreign, "results": results, "skipped": skipped, "summary": summary,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, default=str)
        print(f"wrote {args.json}")
    if args.plot and results:
        plural = "s" if threads > 1 else ""
        _plot(results, args.plot, f"convcore bench {date:%Y-%m-%d}: {machine['cpu']}, {threads} thread{plural}")
        print(f"wrote {args.plot}")
    return 0
