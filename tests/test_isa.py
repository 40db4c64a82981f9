"""The convolution strategies under each ISA this machine runs, against torch (and each other):
the same forced strategy with the portable, AVX2 and AVX-512 micro-kernels (in CI also the SIMDe
build's emulated AVX-512), and the ISA cap's effect on what runs."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import convcore
from convcore import _caps, ops
from convcore.ops import _conv_plan

pytestmark = pytest.mark.skipif(not convcore.info()["compiled"], reason="needs the compiled kernels")
torch = pytest.importorskip("torch")

RUNNABLE = _caps.ISAS[: _caps.ISAS.index(_caps.cpu_isa()) + 1]
CASES = [  # (x shape, filters, kernel, stride, padding, dilation): tile and band edges, odd shapes
    ((3, 5, 11, 13), 13, (3, 3), 1, 1, 1),
    ((2, 32, 14, 14), 64, (5, 5), 1, 2, 1),
    ((2, 3, 40, 37), 16, (5, 4), 1, 2, 1),      # long bands: dot-product weight gradient
    ((2, 16, 15, 17), 33, (3, 3), 2, 1, 1),
    ((1, 4, 9, 30), 9, (4, 3), (2, 3), 2, 2),
    ((4, 1, 8, 8), 1, (1, 1), 1, 0, 1),
    ((2, 7, 6, 6), 25, (3, 3), 1, "same", 2),
]


def torch_reference(xs, f, k, s, p, d):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(xs).astype(np.float32)
    w = (rng.standard_normal((f, xs[1], *k)) * 0.2).astype(np.float32)
    b = rng.standard_normal(f).astype(np.float32)
    tx, tw, tb = (torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in (x, w, b))
    pad = p if p == "same" else p
    ty = torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=pad, dilation=d)
    gy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(torch.tensor(gy, dtype=torch.float64))
    return (x, w, b, gy), [t.detach().numpy() for t in (ty, tx.grad, tw.grad, tb.grad)]


@pytest.mark.parametrize("isa", RUNNABLE)
@pytest.mark.parametrize("strategy", ["fused_unfolded", "fused_im2col", "blas_batched"])
def test_strategies_match_torch_under_each_isa(isa, strategy):
    ran = 0
    with _caps.max_isa(isa) as now:
        assert now == isa
        for xs, f, k, s, p, d in CASES:
            if p == "same" and s != 1:
                continue
            (x, w, b, gy), want = torch_reference(xs, f, k, s, p, d)
            with _conv_plan.force(all=strategy) as made:
                got = (ops.conv2d(x, w, b, s, p, d), *ops.conv2d_backward(gy, x, w, s, p, d))
            ran += sum(m.strategy == strategy for m in made)
            for g, t, name in zip(got, want, ("y", "gx", "gw", "gb")):
                scale = max(1.0, float(np.abs(t).max()))
                np.testing.assert_allclose(g, t, atol=3e-5 * scale, rtol=1e-4, err_msg=f"{isa} {strategy} {name} {xs}")
    assert ran >= 6


@pytest.mark.parametrize("isa", RUNNABLE)
def test_matmul_under_each_isa(isa):
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((37, 3136), dtype=np.float32), rng.standard_normal((3136, 129), dtype=np.float32)
    with _caps.max_isa(isa):
        got = ops.matmul(a, b.T.copy().T)
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, atol=2e-3, rtol=1e-4)


def test_portable_cap_sends_float32_to_blas():
    """Without a vector micro-kernel (CPU without AVX2, or the cap) nothing picks a fused strategy."""
    x = np.random.default_rng(0).standard_normal((2, 32, 14, 14)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((64, 32, 5, 5)).astype(np.float32)
    with _caps.max_isa("portable"):
        with _conv_plan.force() as made:
            ops.conv2d_backward(ops.conv2d(x, w, padding=2), x, w, padding=2)
        assert made and all(p.strategy.startswith("blas_") for p in made)


@pytest.mark.parametrize("value", ["avx2", "portable", "AVX512", "bogus"])
def test_environment_cap(value):
    root = str(Path(convcore.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": root, "CONVCORE_MAX_ISA": value}
    code = "import convcore; i = convcore.info(); print(i['isa'], i['max_isa'])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    if value == "bogus":
        assert proc.returncode != 0 and "CONVCORE_MAX_ISA must be one of" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    isa, cap = proc.stdout.split()
    assert cap == value.lower()
    assert _caps.ISAS.index(isa) <= min(_caps.ISAS.index(cap), _caps.ISAS.index(_caps.cpu_isa()))
