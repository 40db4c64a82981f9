"""The kernel core: numpy == cython on a grid, an independent naive oracle, gradient checks,
errors, reentrancy and thread-local backends."""

import itertools
import threading

import numpy as np
import pytest
from conftest import numerical_grad

import convcore
from convcore import ops
from convcore._validation import geometry
from convcore.ops import _conv_plan

BACKENDS = ["cython", "numpy"]


def both(fn):
    out = {}
    for b in BACKENDS:
        with convcore.use_backend(b):
            out[b] = fn()
    return out["cython"], out["numpy"]


def assert_same(a, b, dtype):
    if a is None or b is None:
        assert a is None and b is None
        return
    assert a.shape == b.shape and a.dtype == b.dtype
    tol = 2e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# ------------------------------------------------------------------------------------------------
# parity on a sampled grid


def conv_configs(n_random=160):
    cfg = np.random.default_rng(7)
    out = [  # hand-picked edge cases
        dict(n=1, c=1, f=1, h=1, w=1, k=(1, 1), s=1, p=0, d=1, g=1),
        dict(n=3, c=8, f=8, h=9, w=7, k=(1, 1), s=1, p=0, d=1, g=1),      # pointwise fast path
        dict(n=3, c=8, f=8, h=9, w=7, k=(1, 1), s=1, p=0, d=1, g=2),      # pointwise, groups
        dict(n=2, c=3, f=3, h=11, w=11, k=(3, 3), s=1, p=1, d=1, g=3),    # depthwise
        dict(n=2, c=3, f=8, h=9, w=10, k=(7, 1), s=2, p="same", d=1, g=1),
        dict(n=2, c=3, f=8, h=8, w=8, k=(2, 2), s=3, p="same", d=2, g=1),
        dict(n=2, c=3, f=3, h=9, w=9, k=(3, 2), s=1, p="valid", d=1, g=1),
        dict(n=2, c=2, f=4, h=10, w=9, k=(3, 3), s=2, p=(0, 2, 1, 3), d=1, g=2),
        dict(n=1, c=3, f=1, h=60, w=50, k=(3, 5), s=1, p=2, d=1, g=1),    # large OH*OW: banded path
        dict(n=8, c=3, f=8, h=5, w=5, k=(5, 5), s=1, p=0, d=1, g=1),
    ]
    for _ in range(n_random):
        g = int(cfg.choice([1, 1, 2, 3]))
        c, f = g * int(cfg.choice([1, 3, 8]) if g == 1 else cfg.integers(1, 4)), g * int(cfg.integers(1, 4))
        kh, kw = int(cfg.integers(1, 8)), int(cfg.integers(1, 8))
        pad = cfg.choice(["int", "pair", "four", "same"])
        s = int(cfg.integers(1, 4))
        d = int(cfg.integers(1, 3))
        p = {"int": int(cfg.integers(0, 4)), "pair": (int(cfg.integers(0, 4)), int(cfg.integers(0, 4))),
             "four": tuple(int(v) for v in cfg.integers(0, 4, 4)), "same": "same"}[pad]
        h, w = int(cfg.integers(1, 16)) * 2 + 1, int(cfg.integers(1, 16)) * 2 + 1
        out.append(dict(n=int(cfg.choice([1, 3, 8])), c=c, f=f, h=h, w=w, k=(kh, kw), s=s, p=p, d=d, g=g))
    return out


def make_conv(cfg, dtype, rng):
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"])).astype(dtype)
    w = rng.standard_normal((cfg["f"], cfg["c"] // cfg["g"], *cfg["k"])).astype(dtype)
    b = rng.standard_normal(cfg["f"]).astype(dtype)
    return x, w, b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", conv_configs(), ids=lambda c: f"{c['n']}x{c['c']}x{c['h']}x{c['w']}-f{c['f']}k{c['k']}s{c['s']}p{c['p']}d{c['d']}g{c['g']}")
def test_conv_parity(cfg, dtype, rng):
    x, w, b = make_conv(cfg, dtype, rng)
    args = (cfg["s"], cfg["p"], cfg["d"], cfg["g"])
    try:
        y_c, y_n = both(lambda: ops.conv2d(x, w, b, *args))
    except ValueError:
        with pytest.raises(ValueError):  # both backends refuse the same geometry
            with convcore.use_backend("numpy"):
                ops.conv2d(x, w, b, *args)
        return
    assert y_c.dtype == dtype and y_c.shape == ops.conv_output_shape(x.shape, w.shape, *args[:3])
    assert_same(y_c, y_n, dtype)
    gy = rng.standard_normal(y_c.shape).astype(dtype)
    for flags in itertools.product([True, False], repeat=3):
        kw = dict(zip(("input_grad", "weight_grad", "bias_grad"), flags))
        gc, gn = both(lambda: ops.conv2d_backward(gy, x, w, *args, **kw))
        for a, bb, flag in zip(gc, gn, flags):
            assert (a is None) == (not flag)
            assert_same(a, bb, dtype)


@pytest.mark.parametrize("cfg", conv_configs(30)[:25])
def test_conv_chunked_equals_unchunked(cfg, rng, small_workspace):
    x, w, b = make_conv(cfg, np.float64, rng)
    args = (cfg["s"], cfg["p"], cfg["d"], cfg["g"])
    try:
        y = ops.conv2d(x, w, b, *args)
    except ValueError:
        return
    gy = rng.standard_normal(y.shape)
    grads = ops.conv2d_backward(gy, x, w, *args)
    convcore.set_workspace_limit(None)
    np.testing.assert_allclose(y, ops.conv2d(x, w, b, *args), atol=1e-11)
    for a, bb in zip(grads, ops.conv2d_backward(gy, x, w, *args)):
        np.testing.assert_allclose(a, bb, atol=1e-11)


def _width_unfolded_configs():
    """Stride-1 single-group configurations (the width-unfolded strategy's domain), with padding,
    asymmetric padding, "same", dilation, tall and wide kernels."""
    return [c for c in conv_configs(80) if c["s"] == 1 and c["g"] == 1] + [
        dict(n=5, c=32, f=64, h=14, w=14, k=(5, 5), s=1, p=2, d=1, g=1),   # the suite's L2
        dict(n=2, c=16, f=8, h=9, w=11, k=(3, 5), s=1, p=(2, 0, 1, 4), d=1, g=1),
        dict(n=3, c=12, f=20, h=10, w=12, k=(3, 3), s=1, p="same", d=2, g=1),
        dict(n=2, c=64, f=7, h=9, w=300, k=(3, 3), s=1, p=1, d=1, g=1),     # many bands of rows per image
        dict(n=2, c=3, f=13, h=40, w=37, k=(5, 4), s=1, p=2, d=1, g=1),     # long bands: dot-product weight grad
    ]


def _forced_results(strategy, cfg, dtype, made_counter):
    """(y, gx, gw, gb) of cfg with every pass forced onto ``strategy`` where it is usable, or None
    when the geometry is invalid; counts the passes that really took ``strategy``."""
    x, w, b = make_conv(cfg, dtype, np.random.default_rng(1))
    args = (cfg["s"], cfg["p"], cfg["d"], cfg["g"])
    with _conv_plan.force(all=strategy) as made:
        try:
            y = ops.conv2d(x, w, b, *args)
        except ValueError:
            return None
        gy = np.random.default_rng(0).standard_normal(y.shape).astype(dtype)
        out = (y, *ops.conv2d_backward(gy, x, w, *args))
    made_counter.append(sum(p.strategy == strategy for p in made))
    return out


def _assert_close_results(got, want, dtype, cfg):
    for a, bb in zip(got, want):
        assert a.dtype == dtype
        tol = 1e-10 if dtype == np.float64 else 2e-4 * max(1.0, float(np.abs(bb).max()))
        np.testing.assert_allclose(a, bb, atol=tol, err_msg=str(cfg))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("workspace", [None, 4096], ids=["one-chunk", "chunked"])
def test_width_unfolded_strategy_equals_im2col(backend, workspace, dtype):
    """Forced onto every stride-1 configuration, the width-unfolded convolution (KH GEMMs on one
    buffer; the input gradient as a convolution with the flipped kernel) gives im2col's results.
    float32 on the compiled backend runs it fused with convcore's own GEMM (the active ISA; the
    other ISAs in test_isa.py)."""
    fused = dtype == np.float32 and backend == "cython"
    strategy = "fused_unfolded" if fused else "blas_unfolded"
    counts = []
    convcore.set_workspace_limit(workspace)
    try:
        with convcore.use_backend(backend):
            for cfg in _width_unfolded_configs():
                got = _forced_results(strategy, cfg, dtype, counts)
                if got is not None:
                    _assert_close_results(got, _forced_results("blas_batched", cfg, dtype, []), dtype, cfg)
    finally:
        convcore.set_workspace_limit(None)
    assert sum(counts) >= 40  # the strategy really ran (forward and both gradients)


def fused_im2col_configs():
    return conv_configs(60) + [dict(n=3, c=16, f=24, h=30, w=29, k=(3, 3), s=2, p=1, d=1, g=1),
                               dict(n=2, c=4, f=9, h=70, w=90, k=(4, 3), s=(2, 3), p=2, d=2, g=1)]


@pytest.mark.skipif(not convcore._backend.COMPILED, reason="needs the compiled kernels")
@pytest.mark.parametrize("workspace", [None, 4096], ids=["one-chunk", "chunked"])
def test_fused_im2col_strategy_equals_blas_im2col(workspace):
    """float32: the fused im2col convolution (own GEMM per image and band; groups fall back) gives
    the BLAS im2col path's results on the whole grid."""
    counts = []
    convcore.set_workspace_limit(workspace)
    try:
        for cfg in fused_im2col_configs():
            got = _forced_results("fused_im2col", cfg, np.float32, counts)
            if got is not None:
                _assert_close_results(got, _forced_results("blas_batched", cfg, np.float32, []), np.float32, cfg)
    finally:
        convcore.set_workspace_limit(None)
    assert sum(counts) >= 90


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_any_layout(backend, dtype, rng):
    """ops.matmul (the Linear layers' product) on C-ordered, transposed and strided operands."""
    a = rng.standard_normal((37, 50)).astype(dtype)
    b = rng.standard_normal((50, 19)).astype(dtype)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    with convcore.use_backend(backend):
        for x, y in [(a, b), (a.T.copy().T, b), (a, b.T.copy().T), (a[:, ::1], b[::1, :]), (a[::2], b),
                     (np.asfortranarray(a), b[:, ::2])]:
            got = ops.matmul(x, y)
            assert got.dtype == dtype and got.shape == (x.shape[0], y.shape[1])
            np.testing.assert_allclose(got, x.astype(np.float64) @ y.astype(np.float64), atol=tol * 10, rtol=tol)
        with pytest.raises(ValueError, match="shapes do not chain|mismatch"):
            ops.matmul(a, a)


@pytest.mark.parametrize("backend", BACKENDS)
def test_matmul_refuses_what_numpy_would_silently_promote(backend):
    """int32 @ float32 would be float64 under numpy's @; bool, complex and float16 are refused too."""
    f32 = np.ones((2, 3), np.float32)
    with convcore.use_backend(backend):
        for bad in [np.ones((2, 3), np.int32), np.ones((2, 3), bool), np.ones((2, 3), np.complex64),
                    np.ones((2, 3), np.float16)]:
            with pytest.raises(TypeError, match=r"matmul: a must have dtype float32 or float64"):
                ops.matmul(bad, f32.T)
            with pytest.raises(TypeError, match=r"matmul: b must have dtype float32 or float64"):
                ops.matmul(f32, bad.T)
        with pytest.raises(TypeError, match="b must have the same dtype as a"):
            ops.matmul(f32, f32.T.astype(np.float64))
        with pytest.raises(TypeError, match="numpy.ndarray"):
            ops.matmul([[1.0]], f32)
        with pytest.raises(ValueError, match="2-D"):
            ops.matmul(np.ones(3, np.float32), f32.T)
        with pytest.raises(ValueError, match=r"a.shape=\(2, 3\), b.shape=\(2, 3\)"):
            ops.matmul(f32, f32)
        assert ops.matmul(np.ones((0, 3), np.float32), f32.T).shape == (0, 2)


def test_plan_chooses_where_each_strategy_wins():
    """The planner is a pure function of geometry, dtype, groups, ISA, pass and backend."""
    def geo(c, k, s, p, hw=14):
        return geometry((64, c, hw, hw), (k, k), s, p, 1, what="conv2d")

    def pick(g, f, dtype=np.float32, groups=1, isa="avx512", pass_="forward", backend="cython"):
        return _conv_plan.plan(g, f, dtype, groups, isa, pass_, backend).strategy

    l2, l1 = geo(32, 5, 1, 2), geo(1, 5, 1, 2, 28)
    for isa in ("avx2", "avx512"):
        for pass_ in _conv_plan.PASSES:
            assert pick(l2, 64, isa=isa, pass_=pass_) == "fused_unfolded"
        assert pick(geo(128, 3, 2, 1, 28), 256, isa=isa) == "fused_im2col"      # R1: stride 2
    assert pick(l2, 64, isa="portable") == "blas_unfolded"                       # no vector kernel: BLAS
    assert pick(l2, 64, dtype=np.float64) == "blas_unfolded"
    assert pick(l2, 64, backend="numpy") == "blas_unfolded"
    assert pick(l2, 64, groups=2) == "blas_batched"                              # groups
    assert pick(geo(32, 5, 1, 5), 64) == "fused_im2col"                          # padding beyond reach
    assert pick(geo(256, 1, 1, 0), 256) == "blas_pointwise"                      # pointwise
    assert pick(geo(256, 1, 1, 0), 256, pass_="grad_weight") == "blas_batched"
    assert pick(l1, 32) == "fused_im2col"                                        # L1 forward: depth 1*5
    assert pick(l1, 32, pass_="grad_weight") == "fused_unfolded"
    assert pick(l1, 32, pass_="grad_input") == "fused_im2col"                    # ...its gradient: 1 output
    assert pick(l1, 32, dtype=np.float64) == "blas_batched"                      # on BLAS: too thin
    assert pick(geo(3, 10, 1, 0, 256), 16, isa="portable") == "blas_banded"      # many positions
    for pass_ in _conv_plan.PASSES:                                              # few: one batched GEMM
        assert pick(geo(512, 3, 1, 1, 1), 512, pass_=pass_) == "blas_batched"      # ResNet layer4, 1x1 maps
        assert pick(geo(256, 3, 2, 1, 4), 512, pass_=pass_) == "blas_batched"
    p = _conv_plan.plan(l2, 64, np.float32, 1, "avx512", "forward", force="blas_banded")
    assert p.strategy == "blas_banded" and p.band_bytes == _conv_plan.BLAS_BAND_BYTES
    assert _conv_plan.plan(l2, 64, np.float32, 2, "avx512", "forward", force="fused_unfolded").strategy == "blas_batched"
    with pytest.raises(ValueError, match="force"):
        _conv_plan.plan(l2, 64, np.float32, 1, "avx512", "forward", force="nope")
    with pytest.raises(ValueError, match="pass_"):
        _conv_plan.plan(l2, 64, np.float32, 1, "avx512", "sideways")
    with pytest.raises(ValueError, match="strategies"):
        with _conv_plan.force(forward="nope"):
            pass


def pool_configs(n_random=120):
    cfg = np.random.default_rng(11)
    out = []
    for _ in range(n_random):
        kh, kw = int(cfg.integers(1, 5)), int(cfg.integers(1, 5))
        out.append(dict(shape=(int(cfg.choice([1, 3, 8])), int(cfg.choice([1, 3, 8])), int(cfg.integers(1, 20)),
                               int(cfg.integers(1, 20))),
                        k=(kh, kw), s=(int(cfg.integers(1, 4)), int(cfg.integers(1, 4))),
                        p=(int(cfg.integers(0, kh // 2 + 1)), int(cfg.integers(0, kw // 2 + 1))),
                        d=int(cfg.integers(1, 3)), ceil=bool(cfg.integers(0, 2)), cip=bool(cfg.integers(0, 2)),
                        nan=bool(cfg.random() < 0.3), ties=bool(cfg.random() < 0.3)))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cfg", pool_configs())
def test_pool_parity(cfg, dtype, rng):
    x = rng.standard_normal(cfg["shape"]).astype(dtype)
    if cfg["ties"]:
        x = np.round(x)
    if cfg["nan"]:
        x[rng.random(x.shape) < 0.1] = np.nan
    try:
        (yc, ic), (yn, i_n) = both(lambda: ops.max_pool2d(x, cfg["k"], cfg["s"], cfg["p"], cfg["d"], cfg["ceil"]))
    except ValueError:
        return
    np.testing.assert_array_equal(yc, yn)
    np.testing.assert_array_equal(ic, i_n)
    assert ic.dtype == np.int64 and yc.dtype == dtype
    g = rng.standard_normal(yc.shape).astype(dtype)
    assert_same(*both(lambda: ops.max_pool2d_backward(g, ic, x.shape)), dtype)
    x = np.nan_to_num(x)
    try:
        ac, an = both(lambda: ops.avg_pool2d(x, cfg["k"], cfg["s"], cfg["p"], cfg["ceil"], cfg["cip"]))
    except ValueError:
        return
    assert_same(ac, an, dtype)
    g = rng.standard_normal(ac.shape).astype(dtype)
    assert_same(*both(lambda: ops.avg_pool2d_backward(g, x.shape, cfg["k"], cfg["s"], cfg["p"], cfg["ceil"],
                                                       cfg["cip"])), dtype)


@pytest.mark.parametrize("cfg", conv_configs(40)[:40])
def test_im2col_col2im_parity_and_adjoint(cfg, rng):
    x = rng.standard_normal((cfg["n"], cfg["c"], cfg["h"], cfg["w"]))
    geo = (cfg["k"], cfg["s"], cfg["p"], cfg["d"])
    try:
        cc, cn = both(lambda: ops.im2col(x, *geo))
    except ValueError:
        return
    assert_same(cc, cn, np.float64)
    c = rng.standard_normal(cc.shape)
    xc, xn = both(lambda: ops.col2im(c, x.shape, *geo))
    assert_same(xc, xn, np.float64)
    # <im2col(x), c> == <x, col2im(c)>: col2im is the adjoint of im2col
    assert np.isclose(np.vdot(cc, c), np.vdot(x, xc), rtol=1e-10)


# ------------------------------------------------------------------------------------------------
# an oracle neither backend shares: naive loops


def naive_conv(x, w, b, s, p, d):
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    oh = (h + 2 * p - d * (kh - 1) - 1) // s + 1
    ow = (wd + 2 * p - d * (kw - 1) - 1) // s + 1
    y = np.zeros((n, f, oh, ow))
    for i, j, oy, ox in itertools.product(range(n), range(f), range(oh), range(ow)):
        acc = b[j]
        for ch, ki, kj in itertools.product(range(c), range(kh), range(kw)):
            acc += xp[i, ch, oy * s + ki * d, ox * s + kj * d] * w[j, ch, ki, kj]
        y[i, j, oy, ox] = acc
    return y


def naive_max_pool(x, k, s):
    n, c, h, w = x.shape
    oh, ow = (h - k) // s + 1, (w - k) // s + 1
    out = np.zeros((n, c, oh, ow))
    idx = np.zeros((n, c, oh, ow), dtype=np.int64)
    for i, ch, oy, ox in itertools.product(range(n), range(c), range(oh), range(ow)):
        best, pos = -np.inf, oy * s * w + ox * s
        for ki, kj in itertools.product(range(k), range(k)):
            v = x[i, ch, oy * s + ki, ox * s + kj]
            if v > best or np.isnan(v):  # PyTorch's rule: first max on ties, last NaN
                best, pos = v, (oy * s + ki) * w + ox * s + kj
        out[i, ch, oy, ox], idx[i, ch, oy, ox] = best, pos
    return out, idx


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("s,p,d", [(1, 0, 1), (2, 1, 1), (1, 2, 2), (3, 1, 2)])
def test_conv_matches_naive_loops(backend, s, p, d, rng):
    x, w, b = rng.standard_normal((2, 3, 7, 8)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    with convcore.use_backend(backend):
        np.testing.assert_allclose(ops.conv2d(x, w, b, s, p, d), naive_conv(x, w, b, s, p, d), atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_pool_matches_naive_loops_with_ties_and_nan(backend, rng):
    x = np.round(rng.standard_normal((2, 3, 9, 8)))
    x[0, 0, 1, 1] = x[0, 0, 1, 2] = np.nan
    with convcore.use_backend(backend):
        out, idx = ops.max_pool2d(x, 3, 2)
    ref, ref_idx = naive_max_pool(x, 3, 2)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(idx, ref_idx)


# ------------------------------------------------------------------------------------------------
# float64 finite-difference gradient checks


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kw", [dict(stride=1, padding=1), dict(stride=2, padding="same", dilation=2),
                                dict(stride=1, padding=0, groups=2)])
def test_conv_gradients_numerical(backend, kw, rng):
    x, w, b = rng.standard_normal((2, 4, 6, 5)), rng.standard_normal((4, 4 // kw.get("groups", 1), 3, 3)), \
        rng.standard_normal(4)
    with convcore.use_backend(backend):
        y = ops.conv2d(x, w, b, **kw)
        gy = rng.standard_normal(y.shape)
        gx, gw, gb = ops.conv2d_backward(gy, x, w, **kw)
        np.testing.assert_allclose(gx, numerical_grad(lambda v: ops.conv2d(v, w, b, **kw), x.copy(), gy), atol=1e-6)
        np.testing.assert_allclose(gw, numerical_grad(lambda v: ops.conv2d(x, v, b, **kw), w.copy(), gy), atol=1e-6)
        np.testing.assert_allclose(gb, numerical_grad(lambda v: ops.conv2d(x, w, v, **kw), b.copy(), gy), atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_directional_derivative_large(backend, rng):
    x, w = rng.standard_normal((4, 6, 30, 70)), rng.standard_normal((5, 6, 3, 3))  # banded path (P > 2048)
    v = rng.standard_normal(x.shape)
    with convcore.use_backend(backend):
        y = ops.conv2d(x, w, padding=1)
        gy = rng.standard_normal(y.shape)
        gx, gw, _ = ops.conv2d_backward(gy, x, w, padding=1)
        h = 1e-5
        num = np.sum((ops.conv2d(x + h * v, w, padding=1) - ops.conv2d(x - h * v, w, padding=1)) * gy) / (2 * h)
        assert np.isclose(num, np.vdot(gx, v), rtol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pool_gradients_numerical(backend, rng):
    x = rng.permutation(np.arange(2 * 3 * 7 * 6, dtype=np.float64)).reshape(2, 3, 7, 6) / 10  # no ties
    with convcore.use_backend(backend):
        y, idx = ops.max_pool2d(x, 3, 2, 1)
        gy = rng.standard_normal(y.shape)
        num = numerical_grad(lambda v: ops.max_pool2d(v, 3, 2, 1)[0], x.copy(), gy, h=1e-4)
        np.testing.assert_allclose(ops.max_pool2d_backward(gy, idx, x.shape), num, atol=1e-6)
        for cip in (True, False):
            a = ops.avg_pool2d(x, 3, 2, 1, True, cip)
            gy = rng.standard_normal(a.shape)
            num = numerical_grad(lambda v: ops.avg_pool2d(v, 3, 2, 1, True, cip), x.copy(), gy)
            np.testing.assert_allclose(ops.avg_pool2d_backward(gy, x.shape, 3, 2, 1, True, cip), num, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_transpose_is_the_adjoint_of_conv(backend, rng):
    x, w = rng.standard_normal((2, 4, 9, 8)), rng.standard_normal((6, 4, 3, 3))
    with convcore.use_backend(backend):
        y = ops.conv2d(x, w, stride=2, padding=1)
        g = rng.standard_normal(y.shape)
        # the transposed conv with the same weight maps g back: <conv(x), g> == <x, convT(g)>
        xt = ops.conv_transpose2d(g, w, stride=2, padding=1, output_padding=(0, 1))
        assert xt.shape == x.shape
        assert np.isclose(np.vdot(y, g), np.vdot(x, xt), rtol=1e-10)
        gx, gw, gb = ops.conv_transpose2d_backward(x, g, w, stride=2, padding=1, output_padding=(0, 1))
        np.testing.assert_allclose(gx, y, atol=1e-10)  # input grad of convT is conv
        num = numerical_grad(lambda v: ops.conv_transpose2d(g, v, stride=2, padding=1, output_padding=(0, 1)),
                             w.copy(), x)
        np.testing.assert_allclose(gw, num, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# errors


def f32(*shape):
    return np.zeros(shape, np.float32)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: ops.conv2d([[1.0]], f32(1, 1, 1, 1)), TypeError, "x must be a numpy.ndarray"),
    (lambda: ops.conv2d(np.zeros((1, 1, 3, 3), np.int32), f32(1, 1, 1, 1)), TypeError, "x must have dtype"),
    (lambda: ops.conv2d(f32(1, 1, 3, 3), np.zeros((1, 1, 1, 1))), TypeError, "weight must have the same dtype"),
    (lambda: ops.conv2d(f32(1, 3, 3), f32(1, 1, 1, 1)), ValueError, r"x must be 4-dimensional.*\(1, 3, 3\)"),
    (lambda: ops.conv2d(f32(1, 3, 5, 5), f32(2, 2, 3, 3)), ValueError, "channel mismatch"),
    (lambda: ops.conv2d(f32(1, 4, 5, 5), f32(3, 2, 3, 3), groups=2), ValueError, "groups=2 must divide"),
    (lambda: ops.conv2d(f32(1, 1, 3, 3), f32(1, 1, 5, 5)), ValueError, "larger than the padded input"),
    (lambda: ops.conv2d(f32(1, 1, 3, 3), f32(1, 1, 1, 1), stride=0), ValueError, "stride must be >= 1"),
    (lambda: ops.conv2d(f32(1, 1, 3, 3), f32(1, 1, 1, 1), dilation=-1), ValueError, "dilation must be >= 1"),
    (lambda: ops.conv2d(f32(1, 1, 3, 3), f32(1, 1, 1, 1), padding=-1), ValueError, "padding must be >= 0"),
    (lambda: ops.conv2d(f32(1, 1, 3, 3), f32(1, 1, 1, 1), padding="full"), ValueError, "padding must be"),
    (lambda: ops.conv2d(f32(1, 1, 3, 3), f32(1, 1, 1, 1), padding=(1, 2, 3)), TypeError, "padding must be"),
    (lambda: ops.conv2d(f32(1, 1, 3, 3), f32(1, 1, 1, 1), stride=1.5), TypeError, "stride must be an int"),
    (lambda: ops.conv2d(f32(1, 1, 3, 3), f32(2, 1, 1, 1), f32(3)), ValueError, r"bias must have shape \(2,\)"),
    (lambda: ops.conv2d(f32(0, 1, 3, 3), f32(1, 1, 1, 1)), ValueError, "x must not be empty"),
    (lambda: ops.conv2d(f32(1, 1, 3, 3), f32(1, 1, 1, 1), groups=0), ValueError, "groups must be >= 1"),
    (lambda: ops.conv2d_backward(f32(1, 1, 2, 2), f32(1, 1, 3, 3), f32(1, 1, 1, 1)), ValueError,
     r"grad_out must have shape \(1, 1, 3, 3\)"),
    (lambda: ops.conv2d_backward(f32(1, 1, 3, 3), f32(1, 1, 3, 3), f32(1, 1, 1, 1), input_grad=1), TypeError,
     "input_grad must be a bool"),
    (lambda: ops.max_pool2d(f32(1, 1, 4, 4), 2, padding=2), ValueError, "at most half the kernel"),
    (lambda: ops.max_pool2d(f32(1, 1, 4, 4), 5), ValueError, "larger than the padded input"),
    (lambda: ops.max_pool2d_backward(f32(1, 1, 2, 2), np.full((1, 1, 2, 2), 16), (1, 1, 4, 4)), ValueError,
     r"indices must lie in \[0, H\*W\)"),
    (lambda: ops.max_pool2d_backward(f32(1, 1, 2, 2), np.full((1, 1, 2, 2), -1), (1, 1, 4, 4)), ValueError,
     "indices must lie"),
    (lambda: ops.max_pool2d_backward(f32(1, 1, 2, 2), f32(1, 1, 2, 2), (1, 1, 4, 4)), TypeError,
     "indices must be an integer"),
    (lambda: ops.max_pool2d_backward(f32(1, 1, 2, 2), np.zeros((1, 1, 2, 3), np.int64), (1, 1, 4, 4)), ValueError,
     r"indices must have shape \(1, 1, 2, 2\)"),
    (lambda: ops.max_pool2d_backward(f32(1, 1, 2, 2), np.zeros((1, 1, 2, 2), np.int64), (1, 4, 4)), TypeError,
     "input_shape must be a tuple of 4 ints"),
    (lambda: ops.max_pool2d_backward(f32(1, 1, 2, 2), np.zeros((1, 1, 2, 2), np.int64), (2, 1, 4, 4)), ValueError,
     "must agree on"),
    (lambda: ops.avg_pool2d_backward(f32(1, 1, 3, 3), (1, 1, 4, 4), 2), ValueError, r"grad_out must have shape"),
    (lambda: ops.col2im(f32(1, 5, 4), (1, 1, 3, 3), 2), ValueError, r"cols must have shape \(1, 4, 4\)"),
    (lambda: ops.conv_transpose2d(f32(1, 2, 3, 3), f32(3, 1, 3, 3)), ValueError, "channel mismatch"),
    (lambda: ops.conv_transpose2d(f32(1, 2, 3, 3), f32(2, 1, 3, 3), output_padding=1), ValueError,
     "output_padding must be smaller"),
])
def test_invalid_inputs_raise_clear_errors(call, exc, match):
    for backend in BACKENDS:
        with convcore.use_backend(backend), pytest.raises(exc, match=match):
            call()


def test_non_contiguous_and_read_only_inputs(rng):
    x = rng.standard_normal((3, 4, 10, 12)).transpose(0, 1, 3, 2)[:, :, ::2]
    w = rng.standard_normal((4, 5, 3, 3)).transpose(1, 0, 2, 3)
    assert not x.flags.c_contiguous and not w.flags.c_contiguous
    x.setflags(write=False)
    expected = ops.conv2d(np.ascontiguousarray(x), np.ascontiguousarray(w), padding=1)
    np.testing.assert_array_equal(ops.conv2d(x, w, padding=1), expected)
    np.testing.assert_array_equal(ops.max_pool2d(x, 2)[0], ops.max_pool2d(np.ascontiguousarray(x), 2)[0])


# ------------------------------------------------------------------------------------------------
# reentrancy, threads, backends


def test_backward_twice_is_bitwise_identical(rng):
    x, w = rng.standard_normal((16, 8, 20, 20)).astype(np.float32), rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    y = ops.conv2d(x, w, padding=1)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    first = ops.conv2d_backward(gy, x, w, padding=1)
    second = ops.conv2d_backward(gy, x, w, padding=1)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    p, idx = ops.max_pool2d(x, 3, 1, 1)
    g = rng.standard_normal(p.shape).astype(np.float32)
    np.testing.assert_array_equal(ops.max_pool2d_backward(g, idx, x.shape), ops.max_pool2d_backward(g, idx, x.shape))
    a = ops.avg_pool2d(x, 3, 1, 1)
    np.testing.assert_array_equal(ops.avg_pool2d_backward(a, x.shape, 3, 1, 1), ops.avg_pool2d_backward(a, x.shape, 3, 1, 1))


def test_results_do_not_depend_on_thread_count(rng):
    x = rng.standard_normal((16, 16, 40, 40)).astype(np.float32)
    results = []
    for n in (1, 2, 3):
        convcore.set_num_threads(n)
        out, idx = ops.max_pool2d(x, 3, 2, 1)
        results.append((out, idx, ops.max_pool2d_backward(out, idx, x.shape), ops.im2col(x, 3, 1, 1)))
    convcore.set_num_threads(None)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("stride", [1, 2], ids=["unfolded", "im2col"])
def test_fused_convolutions_are_bitwise_independent_of_thread_count(stride, rng):
    """Forward and both gradients, float32 fused: the same bits with 1, 2 or 3 threads (weight
    gradients sum a fixed number of image blocks, not one partial per thread)."""
    x = rng.standard_normal((13, 8, 20, 20)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    gy = rng.standard_normal(ops.conv_output_shape(x.shape, w.shape, stride, 1)).astype(np.float32)
    results = []
    for n in (1, 2, 3):
        convcore.set_num_threads(n)
        with _conv_plan.force(all="fused_unfolded" if stride == 1 else "fused_im2col"):
            results.append((ops.conv2d(x, w, None, stride, 1), *ops.conv2d_backward(gy, x, w, stride, 1)[:2]))
    convcore.set_num_threads(None)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_backend_api_and_thread_locality():
    assert convcore.get_backend() in BACKENDS
    default = convcore.get_backend()
    with pytest.raises(ValueError, match="backend must be one of"):
        convcore.set_backend("cuda")
    barrier = threading.Barrier(2)
    seen = {}

    def inside():
        with convcore.use_backend("numpy"):
            barrier.wait()
            seen["inside"] = convcore.get_backend()
            barrier.wait()

    def outside():
        barrier.wait()
        seen["outside"] = convcore.get_backend()
        barrier.wait()

    threads = [threading.Thread(target=inside), threading.Thread(target=outside)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == {"inside": "numpy", "outside": default}
    with convcore.use_backend("numpy"):
        with convcore.use_backend(default):
            assert convcore.get_backend() == default
        assert convcore.get_backend() == "numpy"
    assert convcore.get_backend() == default


def test_set_num_threads_validation():
    with pytest.raises(ValueError):
        convcore.set_num_threads(0)
    with pytest.raises(TypeError):
        convcore.set_num_threads(1.5)
    convcore.set_num_threads(3)
    assert convcore.get_num_threads() == 3
    convcore.set_num_threads(None)


def test_info_keys():
    info = convcore.info()
    for key in ("version", "backend", "compiled", "openmp", "isa", "cpu_isa", "max_isa", "gemm", "threads", "numpy",
                "blas"):
        assert key in info
    assert info["compiled"] == (info["compiled_error"] is None)


def test_same_padding_keeps_ceil_size_for_any_stride(rng):
    x = rng.standard_normal((1, 1, 11, 10))
    for s in (1, 2, 3):
        for k in (1, 2, 3, 4):
            y = ops.conv2d(x, np.ones((1, 1, k, k)), stride=s, padding="same")
            assert y.shape[2:] == (-(-11 // s), -(-10 // s))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_and_its_gradient(backend, dtype, rng):
    x = rng.standard_normal((3, 5, 70, 90)).astype(dtype)   # large enough to split over threads
    x.flat[:4] = [np.nan, -0.0, np.inf, -np.inf]
    g = rng.standard_normal(x.shape).astype(dtype)
    g.flat[5] = np.nan
    with convcore.use_backend(backend):
        y = ops.relu(x[:, :, ::-1])                            # non-contiguous input
        np.testing.assert_array_equal(y, np.maximum(x[:, :, ::-1], 0))
        y = ops.relu(x)
        assert y.dtype == dtype and np.isnan(y.flat[0]) and y.flat[1] == 0 and np.signbit(y.flat[1]) == 0
        # torch's threshold_backward: a select, so the NaN output at flat[0] passes its gradient
        np.testing.assert_array_equal(ops.relu_backward(g, y), np.where(y <= 0, 0, g))
        g_inf = np.full(x.shape, np.inf, dtype)                # inf at an inactive unit is 0, not NaN
        got = ops.relu_backward(g_inf, y)
        assert not np.isnan(got).any()
        np.testing.assert_array_equal(got, np.where(y <= 0, 0, np.inf))
        assert ops.relu(np.zeros((0, 3), dtype)).shape == (0, 3)
        with pytest.raises(ValueError, match="grad_out"):
            ops.relu_backward(g[:1], y)
        with pytest.raises(TypeError, match="dtype"):
            ops.relu(np.zeros(3, np.int32))
        with pytest.raises(TypeError, match="same dtype"):
            ops.relu_backward(g.astype(np.float32 if dtype == np.float64 else np.float64), y)


def test_both_backends_implement_every_twin_kernel():
    """The kernel contract: each shared kernel exists in the NumPy twin and the compiled table."""
    from convcore import _backend, _numpy_kernels

    for name in _backend._KERNEL_NAMES:
        assert callable(getattr(_numpy_kernels, name)), name
        for table in _backend._TABLES.values():
            assert callable(getattr(table, name)), name
