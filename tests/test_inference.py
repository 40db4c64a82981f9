"""Inference fast path (issue 14): packed-weight kernels with epilogues against a float64
reference on edge sizes under each ISA the machine runs, pack caches that never go stale, fused
chains and traced plans equal to the training path's forward, thread safety, clear errors."""

import threading

import numpy as np
import pytest

import convcore
from convcore import _caps, nn
from convcore._grad_mode import forced_eval
from convcore.models import lenet, resnet18
from convcore.nn import _inference
from convcore.ops import _infer, _packs
from convcore.ops._conv_plan import force

COMPILED = convcore.info()["compiled"]
VECTOR = [isa for isa in ("avx2", "avx512") if COMPILED and _caps.ISAS.index(isa) <= _caps.ISAS.index(_caps.cpu_isa())]
pytestmark = pytest.mark.skipif(not VECTOR, reason="needs the compiled extension and a vector ISA")


def _conv_ref(x, w, b, stride, pad, res=None, act=0, slope=0.0):
    """float64 direct convolution + bias (+ res), then the activation."""
    x, w = x.astype(np.float64), w.astype(np.float64)
    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    y = np.zeros((n, f, oh, ow))
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, :, i : i + stride * oh : stride, j : j + stride * ow : stride]
            y += np.einsum("nchw,fc->nfhw", patch, w[:, :, i, j])
    if b is not None:
        y += b.reshape(1, -1, 1, 1)
    if res is not None:
        y += res
    if act == 1:
        y = np.maximum(y, 0)
    elif act == 2:
        y = np.where(y > 0, y, slope * y)
    return y


# (N, C, H, W, F, K, stride, pad): tile and band remainders, F below / above MR, K = 1, tiny images
CONV_SHAPES = [
    (1, 1, 5, 5, 1, 3, 1, 1),
    (1, 3, 9, 7, 13, 3, 1, 1),
    (2, 16, 6, 6, 37, 3, 1, 0),
    (1, 32, 14, 14, 64, 5, 1, 2),
    (1, 5, 11, 13, 25, 3, 2, 1),
    (3, 8, 9, 9, 40, 1, 2, 0),
    (1, 64, 7, 7, 70, 3, 1, 1),
    (2, 16, 6, 6, 20, 1, 1, 0),     # pointwise: the image itself is the GEMM's B
]


@pytest.mark.parametrize("isa", VECTOR)
@pytest.mark.parametrize("shape", CONV_SHAPES)
def test_conv_kernels_match_float64_reference(isa, shape, rng):
    n, c, h, w, f, k, s, p = shape
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((f, c, k, k), dtype=np.float32) * 0.2
    b = rng.standard_normal(f, dtype=np.float32)
    strategies = ("fused_im2col",) if s != 1 or k == 1 else ("fused_unfolded", "fused_im2col")
    for strategy in strategies:
        with _caps.max_isa(isa), force(forward=strategy):
            call = _infer.conv_call(x.shape, wt.shape, s, p, 1, 1)
            assert call is not None and call.strategy == strategy
            pack = _infer.pack_conv(wt, b, call.strategy, _infer.level())
            res = rng.standard_normal(call.out_shape, dtype=np.float32)
            for act, r in ((0, None), (1, None), (2, res), (1, res)):
                for threads in (1, 2):
                    with convcore.threads(threads):
                        got = _infer.conv_run(call, pack, x, act, 0.1, r)
                    np.testing.assert_allclose(got, _conv_ref(x, wt, b, s, p, r, act, 0.1), rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize("isa", VECTOR)
def test_conv_split_ranges_cover_everything(isa, rng, monkeypatch):
    """Every split of one image (rows, channels, both odd) writes every output exactly once."""
    x = rng.standard_normal((1, 7, 11, 9), dtype=np.float32)
    wt = rng.standard_normal((29, 7, 3, 3), dtype=np.float32)
    with _caps.max_isa(isa):
        call = _infer.conv_call(x.shape, wt.shape, 1, 1, 1, 1)
        pack = _infer.pack_conv(wt, None, call.strategy, _infer.level())
        ref = _infer.conv_run(call, pack, x)
        mr = convcore._kernels._gemm.tile(_infer.level())[0]
        for split in ([(0, 1, 0, 29, 0, 4), (0, 1, 0, 29, 4, 11)],
                      [(0, 1, 0, mr, 0, 11), (0, 1, mr, 29, 0, 11)],
                      [(0, 1, 0, mr, 0, 5), (0, 1, mr, 29, 0, 5), (0, 1, 0, 29, 5, 11)]):
            monkeypatch.setattr(_infer, "_splits", lambda *a, split=split: split)
            out = np.full(call.out_shape, np.nan, np.float32)
            _infer.conv_run(call, pack, x, out=out)
            np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("isa", VECTOR)
@pytest.mark.parametrize("m", [1, 2, 3, 4, 13, 40])
def test_linear_kernels_match_float64_reference(isa, m, rng):
    for n, k in ((1, 1), (10, 37), (33, 300)):
        x = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.standard_normal((n, k), dtype=np.float32)
        b = rng.standard_normal(n, dtype=np.float32)
        ref = x.astype(np.float64) @ w.T.astype(np.float64) + b
        with _caps.max_isa(isa):
            lvl = _infer.level()
            for act, expect in ((0, ref), (1, np.maximum(ref, 0))):
                got = _infer.linear_run(x, w, b, lambda: _infer.pack_linear(w, lvl), act)
                np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-4 * np.sqrt(k))
            got = _infer.linear_run(x, w, None, lambda: _infer.pack_linear(w, lvl))
            np.testing.assert_allclose(got, ref - b, rtol=1e-4, atol=1e-4 * np.sqrt(k))


def test_channel_affine_rounds_as_batchnorm(rng):
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((3, 5, 4, 6)).astype(dtype)
        mean, inv, w, b = (rng.standard_normal(5).astype(dtype) for _ in range(4))
        r = (1, -1, 1, 1)
        ref = (x - mean.reshape(r)) * inv.reshape(r) * w.reshape(r) + b.reshape(r)
        np.testing.assert_array_equal(_infer.channel_affine(x, mean, inv, w, b), ref)
        np.testing.assert_array_equal(_infer.channel_affine(x, mean, inv, w, b, 1), np.maximum(ref, 0))
        np.testing.assert_array_equal(_infer.channel_affine(x, mean, inv, None, None), (x - mean.reshape(r)) * inv.reshape(r))


def _graded_forward(model, x):
    """The training path's forward in eval behaviour (recorded, unfused, unpacked)."""
    with forced_eval():
        return model(x)


def _set_stats(model, rng):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.set_buffer("running_mean", rng.normal(0, 0.2, c).astype(np.float32))
            m.set_buffer("running_var", rng.uniform(0.5, 2.0, c).astype(np.float32))
            m.weight.data = rng.uniform(0.5, 1.5, c).astype(np.float32)
            m.bias.data = rng.normal(0, 0.2, c).astype(np.float32)


def test_predict_equals_training_forward_lenet_and_resnet(rng):
    for model, x in ((lenet(rng=0), rng.random((5, 1, 28, 28), dtype=np.float32)),
                     (resnet18(num_classes=7, rng=0), rng.standard_normal((2, 3, 40, 40), dtype=np.float32))):
        _set_stats(model, rng)
        model.eval()
        ref = _graded_forward(model, x)
        for _ in range(3):   # trace, then replays
            np.testing.assert_allclose(convcore.predict(model, x), ref, rtol=1e-4, atol=1e-4)
        with convcore.no_grad():
            np.testing.assert_allclose(model(x), ref, rtol=1e-4, atol=1e-4)   # eager, fused chains
        np.testing.assert_allclose(convcore.predict(model, x[:1], batch_size=1), ref[:1], rtol=1e-4, atol=1e-4)
    plans = [p for p in model.__dict__["_infer_plans"].values() if isinstance(p, _inference.Plan)]
    assert plans and any(s.res is not None and s.bn is not None and s.act == "relu" for s in plans[0].steps)


def test_predict_is_deterministic_from_the_first_call(rng):
    model = resnet18(num_classes=5, rng=0).eval()
    x = rng.standard_normal((1, 3, 32, 32), dtype=np.float32)
    first = convcore.predict(model, x)
    for _ in range(2):
        np.testing.assert_array_equal(convcore.predict(model, x), first)


def test_packs_never_stale_fit_predict_modify_predict(rng):
    model = lenet(rng=0)
    x = rng.random((32, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, 32)
    opt = convcore.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = nn.CrossEntropyLoss()

    def check():
        np.testing.assert_allclose(convcore.predict(model, x), _graded_forward(model, x), rtol=1e-4, atol=1e-4)

    check()
    convcore.fit(model, loss, opt, x, y, epochs=1, batch_size=16, progress=False)   # optimizer steps
    check()
    model[0].weight.data = model[0].weight.data * 0.5                                 # assignment
    check()
    model[3].weight.data[...] *= -1.0                                                 # in place + mark_changed
    model[3].weight.mark_changed()
    check()
    state = lenet(rng=1).state_dict()
    model.load_state_dict(state)                                                      # load_state_dict
    check()
    model[7].bias.data = np.zeros_like(model[7].bias.data)
    check()


def test_packs_never_stale_after_init_and_vector_writes(rng):
    """nn.init and nn.utils.vector_to_parameters write into p.data in place: they mark it changed."""
    model = lenet(rng=0)
    x = rng.random((4, 1, 28, 28), dtype=np.float32)

    def check():
        np.testing.assert_allclose(convcore.predict(model, x), _graded_forward(model, x), rtol=1e-4, atol=1e-4)

    check()
    nn.init.kaiming_uniform_(model[0].weight)
    check()
    nn.init.constant_(model[7].bias, 0.25)
    check()
    vec = nn.utils.parameters_to_vector(model.parameters())
    nn.utils.vector_to_parameters(vec * 0.5, model.parameters())
    check()


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes_are_not_fused_as_zero_padding(mode, rng):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, padding_mode=mode, rng=0), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 4, 3, padding=1, padding_mode=mode, rng=1), nn.BatchNorm2d(4), nn.ReLU())
    model.eval()
    x = rng.standard_normal((2, 3, 8, 8), dtype=np.float32)
    ref = _graded_forward(model, x)
    with convcore.no_grad():
        np.testing.assert_allclose(model(x), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(convcore.predict(model, x), ref, rtol=1e-5, atol=1e-5)


def test_bn_fold_invalidated_by_buffers_and_parameters(rng):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, rng=0), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 6 * 6, 4, rng=0))
    x = rng.standard_normal((4, 3, 6, 6), dtype=np.float32)
    model.eval()

    def check():
        ref = _graded_forward(model, x)
        with convcore.no_grad():
            np.testing.assert_allclose(model(x), ref, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(convcore.predict(model, x), ref, rtol=1e-4, atol=1e-4)

    check()
    model.train()
    model(x)                       # a training forward updates the running statistics (new arrays)
    model.eval()
    check()
    bn = model[1]
    bn.weight.data = bn.weight.data * 2
    check()
    state = model.state_dict()
    state["1.running_var"] = state["1.running_var"] * 3
    model.load_state_dict(state)
    check()
    model.astype(np.float64)       # float64: the eager path (inference kernels are float32)
    with convcore.no_grad():
        np.testing.assert_allclose(model(x.astype(np.float64)), _graded_forward(model, x.astype(np.float64)))


def test_parameter_version_and_pickling():
    import pickle

    p = nn.Parameter(np.ones(3, np.float32))
    v = p.version
    p.data = np.zeros(3, np.float32)
    assert p.version == v + 1
    p.mark_changed()
    assert p.version == v + 2 and p._packs is None
    _packs.cached(p, ("k",), (p,), lambda: 1)
    assert p._packs
    q = pickle.loads(pickle.dumps(p))
    assert q._packs is None and np.array_equal(q.data, p.data) and q.requires_grad


def test_plan_rebuilt_when_a_module_changes(rng):
    model = resnet18(num_classes=4, rng=0).eval()
    x = rng.standard_normal((1, 3, 32, 32), dtype=np.float32)
    convcore.predict(model, x)
    model.fc = nn.Linear(512, 6, rng=0)
    out = convcore.predict(model, x)
    assert out.shape == (1, 6)
    np.testing.assert_allclose(out, _graded_forward(model, x), rtol=1e-4, atol=1e-4)


class _Custom(nn.Module):
    """A user module whose forward branches on values: never traced."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, rng=0)

    def forward(self, x):
        y = self.conv(x)
        return y * 2 if float(np.asarray(x).mean()) > 0.5 else y


def test_user_modules_run_eagerly(rng):
    model = _Custom()
    hi, lo = np.full((1, 1, 5, 5), 0.9, np.float32), np.full((1, 1, 5, 5), 0.1, np.float32)
    a, b = convcore.predict(model, hi), convcore.predict(model, lo)
    with convcore.no_grad():
        np.testing.assert_allclose(a, model(hi))
        np.testing.assert_allclose(b, model(lo))
    assert not _inference.traceable(model)


def test_concurrent_predict_one_model(rng):
    model = resnet18(num_classes=3, rng=0).eval()
    xs = [rng.standard_normal((1, 3, 32, 32), dtype=np.float32) for _ in range(4)]
    serial = [convcore.predict(model, x) for x in xs]
    results = [[] for _ in xs]

    def run(i):
        for _ in range(3):
            results[i].append(convcore.predict(model, xs[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for outs, ref in zip(results, serial):
        assert len(outs) == 3
        for o in outs:
            np.testing.assert_array_equal(o, ref)


def test_no_grad_errors_stay_clear(rng):
    conv, lin = nn.Conv2d(3, 4, 3, rng=0), nn.Linear(5, 2, rng=0)
    with convcore.no_grad():
        with pytest.raises(ValueError):
            conv(np.zeros((1, 2, 5, 5), np.float32))    # channel mismatch
        with pytest.raises(ValueError):
            conv(np.zeros((1, 3, 2, 2), np.float32))    # kernel larger than the input
        with pytest.raises(TypeError):
            conv(np.zeros((1, 3, 5, 5), np.float64))    # dtype mismatch
        with pytest.raises(ValueError):
            conv(np.zeros((3, 5, 5), np.float32))
        with pytest.raises(ValueError):
            lin(np.zeros((2, 4), np.float32))
        with pytest.raises(TypeError):
            lin(np.zeros((2, 5), np.float64))
    with pytest.raises(ValueError):
        convcore.predict(lenet(rng=0), np.zeros((2, 3, 28, 28), np.float32))


def test_caches_do_not_grow_with_calls(rng):
    model = lenet(rng=0).eval()
    for n in range(1, 40):
        convcore.predict(model, rng.random((n, 1, 28, 28), dtype=np.float32), batch_size=8)
    assert len(model.__dict__["_infer_plans"]) <= 2 * _inference._MAX_PLANS
    assert len(model[0].__dict__["_infer_calls"]) <= _inference._MAX_CALLS
    assert all(len(p._packs or {}) <= 2 for p in model.parameters())


def test_native_pool_survives_fork(rng):
    """A child forked after the native pool ran starts its own workers (no deadlock, same result)."""
    import multiprocessing as mp
    import os

    if not _infer.NATIVE_POOL or "fork" not in mp.get_all_start_methods():
        pytest.skip("needs the native pool and fork()")
    x = rng.standard_normal((1, 16, 20, 20), dtype=np.float32)
    w = rng.standard_normal((32, 16, 3, 3), dtype=np.float32)
    call = _infer.conv_call(x.shape, w.shape, 1, 1, 1, 1)
    pack = _infer.pack_conv(w, None, call.strategy, _infer.level())
    with convcore.threads(2):
        ref = _infer.conv_run(call, pack, x)
    r, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:   # child: run the parallel kernel, report success through the pipe
        try:
            with convcore.threads(2):
                ok = np.array_equal(_infer.conv_run(call, pack, x), ref)
            os.write(wfd, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(wfd)
    import select

    ready, _, _ = select.select([r], [], [], 60)
    assert ready, "the forked child hung in the native pool"
    assert os.read(r, 1) == b"1"
    os.waitpid(pid, 0)
    os.close(r)


@pytest.mark.parametrize("isa", VECTOR)
def test_conv_relu_pool_fusion_bits(isa, rng):
    """conv + ReLU + 2x2/2 max pool in one pass: the bits of the three layers run one by one, odd
    sizes (the last row / column dropped) and NaN included."""
    for n, c, h, w, f, k, p in ((1, 1, 28, 28, 32, 5, 2), (3, 32, 14, 14, 64, 5, 2), (2, 3, 11, 9, 13, 3, 1),
                                (1, 16, 7, 7, 20, 3, 1), (2, 5, 2, 3, 9, 1, 0)):
        model = nn.Sequential(nn.Conv2d(c, f, k, padding=p, rng=0), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        x = rng.standard_normal((n, c, h, w), dtype=np.float32)
        x[0, 0, 0, 0] = np.nan
        with _caps.max_isa(isa):
            ref = _graded_forward(model, x)
            with convcore.no_grad():
                for threads in (1, 2):
                    with convcore.threads(threads):
                        np.testing.assert_array_equal(model(x), ref)
            np.testing.assert_array_equal(convcore.predict(model, x), ref)


def test_values_only_max_pool(rng):
    from convcore import ops
    from convcore.ops import pool

    for shape, k, s, p, d, ceil in (((2, 3, 9, 11), 2, 2, 0, 1, False), ((1, 4, 13, 13), 3, 2, 1, 1, True),
                                    ((2, 2, 7, 7), 3, 1, 1, 2, False), ((1, 1, 5, 5), 2, 3, 0, 1, True)):
        x = rng.standard_normal(shape).astype(np.float32)
        x[0, 0, 1, 1] = np.nan
        np.testing.assert_array_equal(pool.max_pool2d_values(x, k, s, p, d, ceil), ops.max_pool2d(x, k, s, p, d, ceil)[0])


@pytest.mark.parametrize("isa", VECTOR)
def test_linear_split_bits(isa, rng, monkeypatch):
    """Rows or columns over the threads: the training path's matmul + bias, to the bit."""
    from convcore import ops

    monkeypatch.setattr(_infer, "MIN_COLUMN_SPLIT_FLOPS", 0)
    monkeypatch.setattr(_infer, "MIN_PARALLEL_LINEAR_FLOPS", 0)
    for m, n, k in ((1, 200, 3136), (64, 128, 3136), (30, 70, 33)):
        x = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.standard_normal((n, k), dtype=np.float32)
        b = rng.standard_normal(n, dtype=np.float32)
        with _caps.max_isa(isa):
            ref = ops.matmul(x, w.T) + b
            pack = _infer.pack_linear(w, _infer.level())
            for threads in (1, 2):
                with convcore.threads(threads):
                    np.testing.assert_array_equal(_infer.linear_run(x, w, b, lambda: pack), ref)
