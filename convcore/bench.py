"""Benchmark convcore's kernels: cython vs numpy (vs torch when installed), interleaved, medians.

Every case runs its contenders in turn, round after round, so machine noise hits all of them
alike; the order rotates every round (A B C, B C A, ...). Each contender's turn starts with one
untimed call: thread pools keep spinning for milliseconds after a call (torch's OpenMP, OpenBLAS),
and whoever runs right after another library's call pays for its idle threads (measured: a 1.8 ms
convolution took 8 ms right after torch's). The timed calls that follow measure each contender in
its steady state. The table shows medians. Columns: milliseconds per contender; GFLOP/s of the cython
backend (convolutions: 2*N*F*C*KH*KW*OH*OW per call); cython's speed-up over numpy; torch's time
over cython's (> 1: convcore is faster); "% GEMM", the time numpy's matmul needs for the same
multiply-adds on preallocated operands as a share of cython's time (the practical ceiling of an
im2col convolution); and the peak memory numpy allocated during one cython call (tracemalloc).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import tracemalloc

TARGETS = {  # issue 6's targets, reported as met / not met
    "conv torch/cython geomean": 1.0,
    "conv torch/cython min": 0.6,
    "pool fwd torch/cython geomean": 4.0,
    "pool bwd torch/cython geomean": 1.5,
    "cython/numpy geomean": 3.0,
    "cython/numpy min": 1.0,
    "lenet full cython/torch": 1.0,
    "lenet frozen cython/torch": 0.8,
    "lenet predict cython/torch": 0.8,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a subset (L1, L2, P1, pool C, LeNet), few repeats")
    parser.add_argument("--cases", default=None, help="comma-separated shapes: L1,L2,V1,R1,P1,S1,A,B,C,lenet")
    parser.add_argument("--smoke", action="store_true", help="tiny shapes only (checks the harness, not speed)")
    parser.add_argument("--repeat", type=int, default=None, help="timed rounds per case (default 7, quick 5)")
    parser.add_argument("--threads", type=int, default=None, help="threads for convcore, numpy's BLAS and torch")
    parser.add_argument("--scaling", action="store_true", help="also time cython with 1 thread vs --threads")
    parser.add_argument("--no-torch", action="store_true", help="leave torch out even when installed")
    parser.add_argument("--json", default=None, metavar="FILE", help="write machine, versions and every sample")
    parser.add_argument("--plot", default=None, metavar="FILE", help="bar chart of speed-ups (needs matplotlib)")


def _machine() -> dict:
    cpu = platform.processor() or platform.machine()
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu in ("", platform.machine()):
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = line
                    break
    except OSError:
        pass
    return {"cpu": cpu, "avx512": "avx512f" in flags, "avx2": "avx2" in flags, "cores": os.cpu_count(),
            "python": platform.python_version(), "platform": platform.platform()}


def _header(info: dict, machine: dict, torch) -> list[str]:
    blas = info["blas"]
    lines = [
        f"convcore {info['version']}  compiled={info['compiled']}  openmp={info['openmp']}  threads={info['threads']}",
        f"machine: {machine['cpu']}, {machine['cores']} cores, avx2={machine['avx2']}, avx512={machine['avx512']}",
        f"numpy {info['numpy']}  BLAS {blas.get('name')} {blas.get('version')}  kernel={blas.get('kernel')}  "
        f"threads={blas.get('threads')}",
    ]
    if torch is not None:
        lines.append(f"torch {torch.__version__}  threads={torch.get_num_threads()}")
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if os.environ.get(var):
            lines.append(f"WARNING: {var}={os.environ[var]} forces an OpenBLAS kernel; numpy's GEMM may run far "
                         "below this CPU's speed. Unset it for benchmarks.")
    kernel = str(blas.get("kernel") or "")
    if machine["avx512"] and kernel.lower() in ("haswell", "sandybridge", "zen"):
        lines.append(f"WARNING: numpy's BLAS runs its {kernel} kernel on an AVX-512 CPU; GEMMs are slower than they could be.")
    return lines


_BLOCK = 2  # timed calls per contender per round, after one untimed settling call


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _peak_mib(fn) -> float:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def run_case(case, repeat: int, threads=None, scaling: bool = False) -> dict:
    import convcore

    samples = {name: [] for name in case.runners}
    for fn in case.runners.values():  # warm-up (and first-touch of caches/workspaces)
        fn()
    ceiling = []
    order = list(case.runners.items())
    if case.ceiling is not None:
        order.append(("__gemm__", case.ceiling))
    for round_ in range(repeat):
        k = round_ % len(order)
        for name, fn in order[k:] + order[:k]:
            fn()  # settle: the previous contender's thread pool may still be spinning on our cores
            (ceiling if name == "__gemm__" else samples[name]).extend(_time(fn) for _ in range(_BLOCK))
    result = {"case": case.name, "group": case.group, "kind": case.kind, "samples": samples,
              "median_ms": {k: statistics.median(v) * 1e3 for k, v in samples.items()}}
    if ceiling:
        result["gemm_ms"] = statistics.median(ceiling) * 1e3
    result["peak_mib"] = _peak_mib(case.runners["cython"])
    if scaling:
        one = []
        convcore.set_num_threads(1)
        try:
            for _ in range(max(3, repeat // 2)):
                one.append(_time(case.runners["cython"]))
        finally:
            convcore.set_num_threads(threads)
        result["cython_1thread_ms"] = statistics.median(one) * 1e3
    if case.flops:
        result["gflops"] = case.flops / (result["median_ms"]["cython"] * 1e-3) / 1e9
    return result


def _row(r: dict, contenders: list[str]) -> str:
    m = r["median_ms"]
    cells = [f"{r['case']:<24}"] + [f"{m[c]:>9.2f}" if c in m else f"{'-':>9}" for c in contenders]
    cells.append(f"{r['gflops']:>7.0f}" if "gflops" in r else f"{'':>7}")
    cells.append(f"{m['numpy'] / m['cython']:>8.2f}x")
    cells.append(f"{m['torch'] / m['cython']:>8.2f}" if "torch" in m else f"{'-':>8}")
    cells.append(f"{100 * r['gemm_ms'] / m['cython']:>6.0f}%" if "gemm_ms" in r else f"{'':>7}")
    cells.append(f"{r['peak_mib']:>8.1f}")
    if "cython_1thread_ms" in r:
        cells.append(f"{r['cython_1thread_ms'] / m['cython']:>6.2f}x")
    return " ".join(cells)


def _geomean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def summarize(results: list[dict]) -> dict:
    def ratio(r, a, b):
        return r["median_ms"][a] / r["median_ms"][b]

    out = {}
    conv = [r for r in results if r["kind"] == "conv"]
    pools = [r for r in results if r["kind"] == "pool"]
    kernels = conv + pools
    if kernels:
        speedups = [ratio(r, "numpy", "cython") for r in kernels]
        out["cython/numpy geomean"] = _geomean(speedups)
        out["cython/numpy min"] = min(speedups)
    if conv and all("torch" in r["median_ms"] for r in conv):
        vs = [ratio(r, "torch", "cython") for r in conv]
        out["conv torch/cython geomean"], out["conv torch/cython min"] = _geomean(vs), min(vs)
    for op in ("fwd", "bwd"):
        sel = [r for r in pools if r["case"].endswith(op) and "torch" in r["median_ms"]]
        if sel:
            out[f"pool {op} torch/cython geomean"] = _geomean(ratio(r, "torch", "cython") for r in sel)
    for r in results:
        if r["kind"] == "step" and "torch" in r["median_ms"]:
            out[f"{r['case']} cython/torch"] = ratio(r, "cython", "torch")
    return out


def run(args) -> int:
    import convcore
    from convcore import _suite

    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            torch = None
    if args.threads is not None:
        convcore.set_num_threads(args.threads)
        if torch is not None:
            torch.set_num_threads(args.threads)
        try:
            import threadpoolctl

            threadpoolctl.threadpool_limits(args.threads, user_api="blas")
        except ImportError:
            print("note: threadpoolctl is not installed; numpy's BLAS keeps its own thread count")
    elif torch is not None:
        torch.set_num_threads(convcore.get_num_threads())
    if not convcore.info()["compiled"]:
        print(f"error: the compiled extension is not available ({convcore.info()['compiled_error']})")
        return 1
    names = None
    if args.cases:
        names = set(args.cases.split(","))
    elif args.quick:
        names = {"L1", "L2", "P1", "C", "lenet"}
    repeat = args.repeat or (5 if args.quick else 7)
    factories = _suite.all_cases(names, smoke=args.smoke)
    if not factories:
        print(f"error: no case matches --cases {args.cases}")
        return 2
    info, machine = convcore.info(), _machine()
    print("\n".join(_header(info, machine, torch)))
    print(time.strftime("run %Y-%m-%d %H:%M:%S") + f", medians of {repeat} interleaved rounds")
    contenders = ["cython", "numpy"] + (["torch"] if torch is not None else [])
    head = (f"{'case':<24} " + " ".join(f"{c + ' ms':>9}" for c in contenders)
            + f" {'GFLOP/s':>7} {'vs numpy':>9} {'torch/cc':>8} {'% GEMM':>7} {'peak MiB':>8}"
            + (f" {'1thr/Nthr':>7}" if args.scaling else ""))
    print(head)
    results = []
    group = None
    for make in factories:
        case = make()
        if args.no_torch:
            case.runners.pop("torch", None)
        if case.group != group and group is not None:
            print()
        group = case.group
        r = run_case(case, repeat, args.threads, args.scaling)
        results.append(r)
        print(_row(r, contenders), flush=True)
        del case
    summary = summarize(results)
    print("\nsummary (ratios of medians; > 1 means the first is faster):")
    for key, value in summary.items():
        target = TARGETS.get(key)
        verdict = ""
        if target is not None:
            ok = value <= target if key.startswith("lenet") else value >= target
            verdict = f"  target {'<=' if key.startswith('lenet') else '>='} {target}: {'met' if ok else 'NOT met'}"
        print(f"  {key:<32} {value:6.2f}{verdict}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "convcore": info, "torch": getattr(torch, "__version__", None),
                       "repeat": repeat, "results": results, "summary": summary}, f, indent=1, default=str)
        print(f"wrote {args.json}")
    if args.plot:
        _plot(results, args.plot)
    return 0


def _plot(results, path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: --plot needs matplotlib (pip install convcore[plot])", file=sys.stderr)
        return
    import numpy as np

    names = [r["case"] for r in results]
    vs_numpy = [r["median_ms"]["numpy"] / r["median_ms"]["cython"] for r in results]
    vs_torch = [r["median_ms"].get("torch", float("nan")) / r["median_ms"]["cython"] for r in results]
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(names) + 1.5))
    ax.barh(y - 0.2, vs_numpy, 0.4, label="cython vs numpy (numpy time / cython time)")
    ax.barh(y + 0.2, vs_torch, 0.4, label="torch time / cython time")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("speed-up of convcore's cython backend (log scale; > 1 is faster)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"wrote {path}")
