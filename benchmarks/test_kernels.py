"""Every case of ``convcore.bench``'s suite, each contender a separate benchmark in the case's group."""

from __future__ import annotations

import os

import pytest

from convcore import bench

CONTENDERS = ("cython", "numpy", "torch", "onnxruntime")
SMOKE = os.environ.get("CONVCORE_BENCH_SMOKE") == "1"
SPECS = bench.specs(bench.parse_groups(os.environ.get("CONVCORE_BENCH_CASES")), smoke=SMOKE)


def _params(kind: str):
    return [pytest.param(spec, contender, id=f"{spec.id}-{contender}")
            for spec in SPECS if spec.kind == kind for contender in CONTENDERS]


_last: dict = {}


def _case(spec: bench.Spec):
    """The case's inputs, built once for its consecutive contenders (only one case is kept alive)."""
    if _last.get("spec") != spec:
        _last.clear()
        _last["spec"] = spec
        try:
            _last["case"] = spec.build()
        except bench.Unavailable as exc:
            _last["case"] = exc
    case = _last["case"]
    if isinstance(case, bench.Unavailable):
        pytest.skip(f"{spec.name}: {case}")
    return case


def _run(benchmark, spec: bench.Spec, contender: str) -> None:
    case = _case(spec)
    fn = case.runners.get(contender)
    if fn is None:
        pytest.skip(f"{contender} is not installed (or CONVCORE_BENCH_NO_TORCH=1)")
    benchmark.group = case.name
    benchmark.extra_info.update(contender=contender, case=case.name, description=case.description)
    # The same start for every contender, as in `convcore bench`: back-to-back untimed calls for
    # 0.15 s (outlasting the previous test's spinning thread pools: OpenBLAS spins ~0.1 s after a
    # call; lazy initialisation, caches, convcore's workspace, the allocator); one call when disabled.
    bench.Contender(contender, fn).turn(0, warm=not getattr(benchmark, "disabled", False))
    benchmark(fn)
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is not None and case.flops:
        benchmark.extra_info["gflops_median"] = case.flops / stats.median / 1e9
    if stats is not None and case.nbytes:
        benchmark.extra_info["gbytes_per_s_median"] = case.nbytes / stats.median / 1e9


@pytest.mark.parametrize(("spec", "contender"), _params("conv"))
def test_conv(benchmark, spec, contender):
    _run(benchmark, spec, contender)


@pytest.mark.parametrize(("spec", "contender"), _params("pool"))
def test_pool(benchmark, spec, contender):
    _run(benchmark, spec, contender)


@pytest.mark.parametrize(("spec", "contender"), _params("step"))
def test_lenet_step(benchmark, spec, contender):
    _run(benchmark, spec, contender)


@pytest.mark.parametrize(("spec", "contender"), _params("infer"))
def test_inference(benchmark, spec, contender):
    _run(benchmark, spec, contender)
