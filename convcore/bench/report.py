"""Reporting: the tables' rows, issue 13's and 14's targets, the summary and the JSON document.

Tables show medians over all timed calls.

Columns, per case:
  cython / numpy / torch ms   median milliseconds per call (torch with the same thread count)
  ort ms       onnxruntime (MLAS), when installed, the same thread count: for convolution forwards
               one Conv node built with onnx.helper; for inference cases the whole model exported
               with ``convcore.onnx.export`` (same weights)
  GEMM ms      the GEMM ceiling, measured in the same rounds: numpy's matmul doing the call's
               multiply-adds on preallocated operands, the faster of per image (W[F,CKK] @
               cols_n[CKK,OH*OW] for each image n, and the analogous products for the gradients)
               and batched (all N*OH*OW columns in one matmul); see ``convcore.bench.cases``
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

import json
import math
import os

from . import cases
from .machine import _ENV_VARS
from .timing import _BLOCK

_NOISY = 0.10         # share of the machine's CPU used by other processes that flags a row

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
    bound = [r["ratios"]["pct_gemm"] for r in conv if r["group"] in cases.GEMM_BOUND and "pct_gemm" in r["ratios"]]
    if bound:
        values["gemm_bound_min_pct"] = (min(bound), len(bound))
    fwd_peak = [r["ratios"]["pct_peak"] for r in conv
                if r["group"] in cases.GEMM_BOUND and r["op"] == "fwd" and "pct_peak" in r["ratios"]]
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


def _json_doc(date, argv, machine: dict, info: dict, threads: dict, pools, torch, repeat: int, scaling: bool,
              warnings: list, foreign, results: list[dict], skipped: list[dict], summary: list[dict]) -> dict:
    """The ``--json`` document (schema ``convcore-bench/1``)."""
    return {
        "schema": "convcore-bench/1", "date": date.isoformat(timespec="seconds"), "argv": argv,
        "machine": machine, "environment": {k: os.environ.get(k) for k in _ENV_VARS if os.environ.get(k)},
        "convcore": info, "threads": threads, "threadpool_info": pools,
        "torch": {"version": torch.__version__, "threads": torch.get_num_threads()} if torch is not None else None,
        "repeat": repeat, "timed_calls_per_turn": _BLOCK, "scaling": scaling, "warnings": warnings,
        "foreign_cpu": foreign, "results": results, "skipped": skipped, "summary": summary,
    }


def _write_json(path: str, doc: dict) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, indent=1, default=str)
