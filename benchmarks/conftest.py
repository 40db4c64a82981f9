"""pytest-benchmark suite: `pytest benchmarks/ --benchmark-only` (not part of the default test run).

CONVCORE_BENCH_SMOKE=1 swaps in the tiny shapes (the default test run does this once, with
--benchmark-disable, so the suite cannot rot). CONVCORE_BENCH_CASES=L1,A,... selects shapes.
"""

import os

import pytest

import convcore


def pytest_collection_modifyitems(config, items):
    for item in items:
        item.add_marker(pytest.mark.benchmark_suite)


def pytest_configure(config):
    config.addinivalue_line("markers", "benchmark_suite: convcore's benchmark cases")


@pytest.fixture(autouse=True)
def _record_environment(request):
    yield
    bench = request.node.funcargs.get("benchmark")
    if bench is None:
        return
    info = convcore.info()
    bench.extra_info.update(threads=info["threads"], openmp=info["openmp"], backend_compiled=info["compiled"],
                            blas=str(info["blas"]))
    try:
        import threadpoolctl

        bench.extra_info["threadpool_info"] = str(threadpoolctl.threadpool_info())
    except ImportError:
        pass


SMOKE = os.environ.get("CONVCORE_BENCH_SMOKE") == "1"
SELECTED = set(filter(None, os.environ.get("CONVCORE_BENCH_CASES", "").split(","))) or None
