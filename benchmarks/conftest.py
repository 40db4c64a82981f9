"""pytest-benchmark suite: ``pytest benchmarks/ --benchmark-only`` (not part of the default test run).

The cases are ``convcore.bench``'s, the same as ``convcore bench``'s; each case is one benchmark
group (``conv L2 fwd``, ...) holding its contenders (cython, numpy, torch, onnxruntime), so pytest-benchmark's
group tables and ``--benchmark-compare`` put them side by side. Environment variables:

  CONVCORE_BENCH_CASES=L1,A,lenet   shapes to run (also conv, pool; default: all)
  CONVCORE_BENCH_SMOKE=1            the tiny smoke shapes (the default test run does this once with
                                    --benchmark-disable, so the suite cannot rot)
  CONVCORE_BENCH_THREADS=N          threads for convcore, torch and (threadpoolctl) numpy's BLAS;
                                    default: convcore's default for convcore and torch
  CONVCORE_BENCH_NO_TORCH=1         leave torch out

Each benchmark's ``extra_info`` records the contender, the thread counts, OpenMP on/off and
``threadpoolctl.threadpool_info()``; the machine info adds the CPU model and convcore's ``info()``.
pytest-benchmark's own options bound the time (defaults: >= 5 rounds, ~1 s per benchmark;
``--benchmark-max-time``, ``--benchmark-min-rounds``). Every contender starts the way it does in
``convcore bench``: 0.15 s of untimed back-to-back calls.
"""

from __future__ import annotations

import os

import pytest

import convcore
from convcore import bench

try:
    import pytest_benchmark  # noqa: F401
except ImportError:  # a clear skip instead of "fixture 'benchmark' not found"
    @pytest.fixture
    def benchmark():
        pytest.skip("the benchmarks need pytest-benchmark: pip install 'convcore[bench]'")

try:
    import threadpoolctl
except ImportError:
    threadpoolctl = None

_state: dict = {}


def pytest_configure(config):
    env = os.environ.get("CONVCORE_BENCH_THREADS", "").strip()
    threads = int(env) if env else convcore.get_num_threads()
    convcore.set_num_threads(threads)
    torch = bench.optional_torch()
    if torch is not None:
        torch.set_num_threads(threads)
    if env and threadpoolctl is not None:
        _state["blas_limiter"] = threadpoolctl.threadpool_limits(threads, user_api="blas")


def pytest_unconfigure(config):
    limiter = _state.pop("blas_limiter", None)
    if limiter is not None:
        limiter.restore_original_limits()


def _environment() -> dict:
    if "environment" not in _state:
        info = convcore.info()
        torch = bench.optional_torch()
        _state["environment"] = {
            "convcore_threads": info["threads"], "openmp": info["openmp"], "compiled": info["compiled"],
            "blas": info["blas"], "torch_threads": torch.get_num_threads() if torch is not None else None,
            "threadpool_info": threadpoolctl.threadpool_info() if threadpoolctl is not None else None,
        }
    return _state["environment"]


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config, machine_info):
    cpu, flags = bench.cpu_info()
    torch = bench.optional_torch()
    machine_info["convcore"] = {k: v for k, v in convcore.info().items() if k != "backend"}
    machine_info["cpu_model"], machine_info["cpu_isa"] = cpu, bench.cpu_isa(flags)
    machine_info["torch"] = torch.__version__ if torch is not None else None
    machine_info["threads"] = {k: v for k, v in _environment().items() if k.endswith("threads")}
    if threadpoolctl is not None:
        machine_info["threadpool_info"] = threadpoolctl.threadpool_info()


@pytest.fixture(autouse=True)
def _record_environment(request):
    yield
    fixture = request.node.funcargs.get("benchmark")
    if fixture is not None and hasattr(fixture, "extra_info"):
        fixture.extra_info.update(_environment())
