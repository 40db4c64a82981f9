"""Machine facts: the CPU and its instruction set, the measured FMA peak, an sgemm calibration, the
load, and the header ``convcore bench`` prints.

Header: convcore's build, threads and ISA (the micro-kernel its float32 GEMM runs,
``CONVCORE_MAX_ISA`` caps it), the CPU, the measured FMA peak of that ISA on 1 and N threads
(independent FMA chains at full vector width: what a GEMM on these cores can approach), numpy's
BLAS and its kernel (threadpoolctl), torch, onnxruntime, and a quick sgemm calibration (1 vs N BLAS
threads); warnings when OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set, when the BLAS kernel is older
than the CPU supports, when the machine is loaded or its cores do not scale.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

from .timing import Contender, _OneThread

_ENV_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
             "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS", "OMP_PROC_BIND", "KMP_AFFINITY",
             "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MALLOC_ARENA_MAX",
             "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "LD_PRELOAD")


def cpu_info() -> tuple[str, set]:
    """The CPU's model name and flags, from ``/proc/cpuinfo``.

    On Linux; elsewhere ``platform``'s best guess at the model, and no flags.

    Returns
    -------
    model : str
        For example ``"AMD EPYC 9B45"``.
    flags : set of str
        The CPU's feature flags (``"avx2"``, ``"fma"``, ``"avx512f"``, ...); empty when unknown.

    Examples
    --------
    >>> from convcore.bench import cpu_info, cpu_isa
    >>> model, flags = cpu_info()
    >>> isinstance(model, str) and cpu_isa(flags) in ("SSE", "AVX", "AVX2", "AVX-512")
    True
    """
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


def cpu_isa(flags: set) -> str:
    """The widest x86 vector instruction set a CPU's flags allow, as the benchmark header names it.

    Parameters
    ----------
    flags : set of str
        CPU feature flags, as `cpu_info` returns them.

    Returns
    -------
    str
        ``"SSE"``, ``"AVX"``, ``"AVX2"`` (AVX2 and FMA) or ``"AVX-512"`` (F, BW, VL and DQ).

    Examples
    --------
    >>> from convcore.bench import cpu_isa
    >>> cpu_isa({"avx", "avx2", "fma"})
    'AVX2'
    >>> cpu_isa(set())
    'SSE'
    """
    return _LEVEL_NAMES[_cpu_level(flags)]


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
    model, flags = cpu_info()
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
    return {"cpu": model, "isa": cpu_isa(flags), "cores": os.cpu_count(),
            "cores_available": available, "memory_gib": mem, "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def _fma_peak(threads: int, seconds: float) -> dict | None:
    """The measured FMA peak of the ISA convcore's GEMM runs, on ``threads`` threads and on one."""
    from .. import _caps

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
    modes = {"n": Contender("n", lambda: np.matmul(a, b, out=c))}
    if controller is not None and threads > 1:
        one = _OneThread(controller)
        modes["1"] = Contender("1", modes["n"].fn, one.setup, one.teardown)
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
