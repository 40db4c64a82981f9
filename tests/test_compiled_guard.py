import os
import subprocess
import sys
from pathlib import Path

import pytest

import convcore


def test_compiled_extension_loaded_when_required():
    if os.environ.get("CONVCORE_REQUIRE_COMPILED") != "1":
        pytest.skip("set CONVCORE_REQUIRE_COMPILED=1 to require the compiled extension (CI does)")
    info = convcore.info()
    assert info["compiled"], f"compiled extension did not load: {info['compiled_error']}"
    assert convcore.get_backend() == "cython"


def test_the_expected_micro_kernel_runs():
    """CI's SIMDe stage sets CONVCORE_EXPECT_ISA=avx512 and CONVCORE_EXPECT_EMULATED=1, so its tests
    cannot pass on another kernel by accident."""
    want = os.environ.get("CONVCORE_EXPECT_ISA")
    if not want:
        pytest.skip("set CONVCORE_EXPECT_ISA to require a micro-kernel (CI's SIMDe stage does)")
    info = convcore.info()
    assert info["isa"] == want, info
    emulated = os.environ.get("CONVCORE_EXPECT_EMULATED")
    if emulated is not None:
        assert info["gemm"]["emulated"] == (emulated == "1"), info


def test_missing_extension_falls_back_to_numpy_and_says_why():
    script = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.startswith("convcore._kernels._"):
            raise ImportError("simulated broken build")
sys.meta_path.insert(0, Block())
import numpy as np, convcore
info = convcore.info()
assert info["compiled"] is False and info["backend"] == "numpy", info
assert "simulated broken build" in info["compiled_error"]
y = convcore.ops.conv2d(np.ones((1, 1, 3, 3)), np.ones((1, 1, 2, 2)))
assert y.shape == (1, 1, 2, 2) and y[0, 0, 0, 0] == 4
try:
    convcore.set_backend("cython")
except RuntimeError as exc:
    assert "simulated broken build" in str(exc)
    print("OK")
"""
    root = str(Path(convcore.__file__).parents[1])
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": root})
    assert proc.returncode == 0 and proc.stdout.strip() == "OK", proc.stdout + proc.stderr
