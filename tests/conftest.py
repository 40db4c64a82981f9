import numpy as np
import pytest

import convcore


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def small_workspace():
    """Force multi-chunk / multi-band code paths."""
    convcore.set_workspace_limit(4096)
    yield
    convcore.set_workspace_limit(None)


def numerical_grad(f, x, upstream, h=1e-6):
    """Central differences of sum(f(x) * upstream) with respect to every element of x (float64)."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + h
        plus = np.sum(f(x) * upstream)
        x[i] = old - h
        minus = np.sum(f(x) * upstream)
        x[i] = old
        grad[i] = (plus - minus) / (2 * h)
    return grad
