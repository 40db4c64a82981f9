"""Every kernel of the suite (convcore._suite), each contender a separate benchmark in one group."""

import pytest

from convcore import _suite

from conftest import SELECTED, SMOKE

CONTENDERS = ["cython", "numpy", "torch"]


def _params():
    if SMOKE:
        conv = [("smoke", op) for op in _suite.CONV_OPS]
        pool = [("smoke", op) for op in _suite.POOL_OPS]
        steps = [("full", 4)]
    else:
        conv = [(s, op) for s in _suite.CONV_SHAPES if s != "smoke" and (SELECTED is None or s in SELECTED)
                for op in _suite.CONV_OPS]
        pool = [(s, op) for s in _suite.POOL_SHAPES if s != "smoke" and (SELECTED is None or s in SELECTED)
                for op in _suite.POOL_OPS]
        steps = [(op, 64) for op in _suite.STEP_OPS] if SELECTED is None or "lenet" in SELECTED else []
    return conv, pool, steps


CONV, POOL, STEPS = _params()


def _run(benchmark, case, contender):
    fn = case.runners.get(contender)
    if fn is None:
        pytest.skip(f"{contender} is not installed")
    benchmark.group = case.name
    benchmark.extra_info["contender"] = contender
    fn()  # warm-up
    benchmark(fn)


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("shape,op", CONV)
def test_conv(benchmark, shape, op, contender):
    _run(benchmark, _suite.conv_case(shape, op), contender)


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("shape,op", POOL)
def test_pool(benchmark, shape, op, contender):
    _run(benchmark, _suite.pool_case(shape, op), contender)


@pytest.mark.parametrize("contender", CONTENDERS)
@pytest.mark.parametrize("op,batch", STEPS)
def test_lenet_step(benchmark, op, batch, contender):
    _run(benchmark, _suite.step_case(op, batch=batch), contender)
