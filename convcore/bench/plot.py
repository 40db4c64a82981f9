"""The ``--plot`` chart: speed-ups of convcore's cython backend over numpy (and torch), per case."""

from __future__ import annotations

import math


def _label(r: dict) -> str:
    """A result's label on the chart: its case, the group named once (``infer lenet-b1``, ``lenet full``,
    ``conv L1 fwd``; the case name of an inference case, ``infer infer lenet-b1``, repeats it)."""
    words = (r["group"], r["op"]) if r["kind"] in ("step", r["group"]) else (r["kind"], r["group"], r["op"])
    return " ".join(words) + (" (smoke)" if r["smoke"] else "")


def chart(results: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [_label(r) for r in results]
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
