"""convcore's float32 GEMM, every micro-kernel this machine runs (portable, AVX2, AVX-512; the
SIMDe build's emulated AVX-512 in CI), against a float64 reference on the edge sizes of each
kernel's own blocking: tile remainders in M and N, K = 1, K past one KC block, N past one NC
block, tall A (B packed) and short A (B read in place), transposes, accumulation."""

import numpy as np
import pytest

import convcore
from convcore import _caps

pytestmark = pytest.mark.skipif(not convcore.info()["compiled"], reason="needs the compiled kernels")

RUNNABLE = _caps.ISAS[: _caps.ISAS.index(_caps.cpu_isa()) + 1]


def _gemm():
    from convcore._kernels import _gemm

    return _gemm


def edge_sizes(d):
    mr, nr, kc, nc, pm = d["mr"], d["nr"], d["kc"], d["nc"], d["pack_m"]
    return [(1, 1, 1), (mr, nr, kc), (mr + 1, nr + 1, kc + 1), (mr - 1, nr - 1, 3), (2 * mr + 3, 3 * nr - 5, 1),
            (mr // 3 + 1, nr // 2 + 1, 7), (5, nc + nr + 3, 17), (pm + mr + 1, 2 * nr + 1, kc - 1),
            (64, 196, 160), (13, 37, 2 * kc + 5)]


@pytest.fixture(params=RUNNABLE)
def isa(request):
    return request.param


@pytest.mark.parametrize("trans_a", [False, True])
@pytest.mark.parametrize("trans_b", [False, True])
@pytest.mark.parametrize("accumulate", [False, True])
def test_sgemm_matches_float64(isa, trans_a, trans_b, accumulate):
    g = _gemm()
    rng = np.random.default_rng(3)
    for m, n, k in edge_sizes(g.descriptor(isa)):
        a = rng.standard_normal((k, m) if trans_a else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if trans_b else (k, n), dtype=np.float32)
        c0 = rng.standard_normal((m, n), dtype=np.float32)
        c = c0.copy()
        g.sgemm(a, b, c, trans_a, trans_b, accumulate, isa=isa)
        want = (a.T if trans_a else a).astype(np.float64) @ (b.T if trans_b else b).astype(np.float64)
        want += c0 if accumulate else 0
        np.testing.assert_allclose(c, want, atol=1e-5 * np.sqrt(k) * 4, rtol=1e-5, err_msg=f"{isa} {m}x{n}x{k}")


@pytest.mark.parametrize("accumulate", [False, True])
def test_sgemm_nt_matches_float64(isa, accumulate):
    g = _gemm()
    rng = np.random.default_rng(4)
    for m, n, k in [(1, 1, 1), (4, 3, 16), (5, 4, 15), (3, 7, 17), (16, 30, 1976), (9, 5, 0), (6, 13, 33)]:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((n, k), dtype=np.float32)
        c0 = rng.standard_normal((m, n), dtype=np.float32)
        c = c0.copy()
        g.sgemm_nt(a, b, c, accumulate, isa=isa)
        want = a.astype(np.float64) @ b.T.astype(np.float64) + (c0 if accumulate else 0)
        np.testing.assert_allclose(c, want, atol=1e-5 * np.sqrt(max(k, 1)) * 4, rtol=1e-5, err_msg=f"{isa} {m}x{n}x{k}")


def test_descriptors_and_selection():
    g = _gemm()
    info = convcore.info()
    assert info["isa"] in _caps.ISAS and info["gemm"]["name"] == info["isa"]
    assert _caps.ISAS.index(info["isa"]) <= _caps.ISAS.index(info["max_isa"])
    shapes = {"portable": (6, 16), "avx2": (6, 16), "avx512": (12, 32)}
    for name in RUNNABLE:
        d = g.descriptor(name)
        assert d["name"] == name and (d["mr"], d["nr"]) == shapes[name]
    for name in _caps.ISAS[len(RUNNABLE):]:
        with pytest.raises(ValueError, match="cannot run here"):
            g.descriptor(name)
    with _caps.max_isa("portable") as now:
        assert now == "portable" and _caps.isa() == "portable" and not _caps.vector()
    assert _caps.isa() == info["isa"]
    with pytest.raises(ValueError, match="do not chain"):
        g.sgemm(np.ones((2, 3), np.float32), np.ones((4, 5), np.float32), np.ones((2, 5), np.float32))
    with pytest.raises(ValueError, match="at least 1"):
        g.sgemm(np.ones((2, 0), np.float32), np.ones((0, 5), np.float32), np.ones((2, 5), np.float32))
