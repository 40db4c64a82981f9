"""Cross-checks against PyTorch (skipped when torch is not installed)."""

import numpy as np
import pytest

import convcore
from convcore import nn, ops

torch = pytest.importorskip("torch")
F = torch.nn.functional

BACKENDS = ["cython", "numpy"]


def t(a, grad=False):
    return torch.tensor(a, requires_grad=grad)


def close(ours, theirs, dtype=np.float32):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol * max(1.0, float(np.abs(theirs).max())))


CONV_CASES = [
    dict(shape=(2, 3, 9, 10), f=4, k=(3, 3), stride=1, padding=1, dilation=1, groups=1),
    dict(shape=(2, 4, 11, 9), f=6, k=(5, 3), stride=2, padding=(2, 1), dilation=1, groups=2),
    dict(shape=(3, 4, 12, 12), f=4, k=(3, 3), stride=1, padding=2, dilation=2, groups=4),
    dict(shape=(1, 2, 64, 70), f=3, k=(3, 3), stride=1, padding=1, dilation=1, groups=1),  # banded path
    dict(shape=(4, 8, 7, 7), f=8, k=(1, 1), stride=1, padding=0, dilation=1, groups=1),   # pointwise
    dict(shape=(2, 3, 13, 8), f=5, k=(4, 4), stride=3, padding=0, dilation=1, groups=1),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_torch(case, dtype, backend):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(case["shape"]).astype(dtype)
    w = rng.standard_normal((case["f"], case["shape"][1] // case["groups"], *case["k"])).astype(dtype)
    b = rng.standard_normal(case["f"]).astype(dtype)
    kw = {k: case[k] for k in ("stride", "padding", "dilation", "groups")}
    tx, tw, tb = t(x, True), t(w, True), t(b, True)
    ty = F.conv2d(tx, tw, tb, **kw)
    gy = rng.standard_normal(tuple(ty.shape)).astype(dtype)
    ty.backward(t(gy))
    with convcore.use_backend(backend):
        close(ops.conv2d(x, w, b, **kw), ty, dtype)
        gx, gw, gb = ops.conv2d_backward(gy, x, w, **kw)
    close(gx, tx.grad, dtype)
    close(gw, tw.grad, dtype)
    close(gb, tb.grad, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_asymmetric_and_same_padding_match_torch_with_explicit_pad(backend):
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal((2, 3, 10, 9)), rng.standard_normal((4, 3, 4, 3))
    with convcore.use_backend(backend):
        y = ops.conv2d(x, w, stride=2, padding="same")
    # TensorFlow's rule: out = ceil(10/2) = 5 -> total pad rows = 4*2 + 4 - 10 = 2 (1 top, 1 bottom);
    # cols: ceil(9/2) = 5 -> total = 4*2 + 3 - 9 = 2 (1 left, 1 right)
    ty = F.conv2d(F.pad(t(x), (1, 1, 1, 1)), t(w), stride=2)
    close(y, ty, np.float64)
    with convcore.use_backend(backend):
        y = ops.conv2d(x, w, padding=(0, 2, 1, 3))
    close(y, F.conv2d(F.pad(t(x), (1, 3, 0, 2)), t(w)), np.float64)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k,s,p,d,ceil", [(2, 2, 0, 1, False), (3, 2, 1, 1, False), (3, 2, 1, 1, True),
                                          (3, 1, 1, 2, False), (2, 3, 1, 1, True), ((3, 2), (2, 1), (1, 0), 1, True)])
def test_max_pool_matches_torch(backend, k, s, p, d, ceil):
    rng = np.random.default_rng(2)
    x = np.round(rng.standard_normal((2, 3, 13, 11)).astype(np.float32) * 2)  # ties
    x[0, 1, 3, 4] = np.nan
    x[1, 2, 5:7, 5:7] = np.nan
    tx = t(x, True)
    ty, ti = F.max_pool2d(tx, k, s, p, d, ceil_mode=ceil, return_indices=True)
    gy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(t(gy))
    with convcore.use_backend(backend):
        y, idx = ops.max_pool2d(x, k, s, p, d, ceil)
        gx = ops.max_pool2d_backward(gy, idx, x.shape)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    np.testing.assert_array_equal(idx, ti.numpy())
    close(gx, tx.grad)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k,s,p,ceil,cip", [(2, 2, 0, False, True), (3, 2, 1, True, True), (3, 2, 1, True, False),
                                            (3, 3, 1, False, False), ((2, 3), (1, 2), (1, 1), True, True)])
def test_avg_pool_matches_torch(backend, k, s, p, ceil, cip):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 11, 10)).astype(np.float32)
    tx = t(x, True)
    ty = F.avg_pool2d(tx, k, s, p, ceil, cip)
    gy = rng.standard_normal(tuple(ty.shape)).astype(np.float32)
    ty.backward(t(gy))
    with convcore.use_backend(backend):
        close(ops.avg_pool2d(x, k, s, p, ceil, cip), ty)
        close(ops.avg_pool2d_backward(gy, x.shape, k, s, p, ceil, cip), tx.grad)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_transpose_matches_torch(backend):
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal((2, 4, 5, 6)), rng.standard_normal((4, 3, 3, 4)), rng.standard_normal(6)
    tx, tw, tb = t(x, True), t(w, True), t(b, True)
    ty = F.conv_transpose2d(tx, tw, tb, stride=2, padding=1, output_padding=1, groups=2)
    gy = rng.standard_normal(tuple(ty.shape))
    ty.backward(t(gy))
    with convcore.use_backend(backend):
        close(ops.conv_transpose2d(x, w, b, 2, 1, 1, 1, 2), ty, np.float64)
        gx, gw, gb = ops.conv_transpose2d_backward(gy, x, w, 2, 1, 1, 1, 2)
    close(gx, tx.grad, np.float64)
    close(gw, tw.grad, np.float64)
    close(gb, tb.grad, np.float64)


def torch_lenet():
    tnn = torch.nn
    return tnn.Sequential(tnn.Conv2d(1, 32, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
                          tnn.Conv2d(32, 64, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
                          tnn.Linear(3136, 128), tnn.ReLU(), tnn.Dropout(0.5), tnn.Linear(128, 10))


def test_torch_state_dict_loads_and_training_step_matches():
    torch.manual_seed(0)
    tm = torch_lenet().double()
    m = convcore.models.lenet().astype(np.float64)
    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    x = np.random.default_rng(5).random((8, 1, 28, 28))
    y = np.arange(8) % 10
    tm.eval(), m.eval()
    close(convcore.predict(m, x), tm(t(x)), np.float64)
    # one SGD-momentum step without dropout gives the same weights
    tm[9].p = 0.0
    m[9].p = 0.0
    tm.train(), m.train()
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True)
    opt = convcore.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3, nesterov=True)
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    for _ in range(2):
        topt.zero_grad()
        torch.nn.CrossEntropyLoss(label_smoothing=0.1)(tm(t(x)), torch.tensor(y)).backward()
        topt.step()
        opt.zero_grad()
        loss(m(x), y)
        m.backward(loss.backward(), need_input_grad=False)
        opt.step()
    for (k, v), (k2, p) in zip(tm.state_dict().items(), m.state_dict().items()):
        assert k == k2
        np.testing.assert_allclose(p, v.numpy(), rtol=1e-9, atol=1e-12)


def test_batchnorm_state_dict_and_running_stats_match_torch():
    torch.manual_seed(0)
    tbn = torch.nn.BatchNorm2d(3).double()
    bn = nn.BatchNorm2d(3, dtype=np.float64)
    x = np.random.default_rng(6).standard_normal((4, 3, 5, 5)) * 3 + 1
    for _ in range(3):
        ty = tbn(t(x))
        y = bn(x)
    close(y, ty, np.float64)
    sd = tbn.state_dict()
    assert set(sd) == set(bn.state_dict())
    for k in sd:
        np.testing.assert_allclose(bn.state_dict()[k], sd[k].numpy(), rtol=1e-12)
    tbn.eval(), bn.eval()
    close(bn(x), tbn(t(x)), np.float64)


@pytest.mark.parametrize("make", [
    lambda p: (torch.optim.Adam(p, lr=0.01, weight_decay=0.1), lambda q: convcore.optim.Adam(q, lr=0.01, weight_decay=0.1)),
    lambda p: (torch.optim.AdamW(p, lr=0.01), lambda q: convcore.optim.AdamW(q, lr=0.01)),
    lambda p: (torch.optim.SGD(p, lr=0.1, momentum=0.5, dampening=0.2), lambda q: convcore.optim.SGD(q, lr=0.1, momentum=0.5, dampening=0.2)),
])
def test_optimizers_match_torch(make):
    rng = np.random.default_rng(7)
    w0 = rng.standard_normal((3, 4))
    tp = torch.nn.Parameter(t(w0))
    topt, ours = make([tp])
    p = nn.Parameter(w0.copy())
    opt = ours([p])
    for _step in range(5):
        g = rng.standard_normal((3, 4))
        tp.grad = t(g)
        topt.step()
        p.grad = g.copy()
        opt.step()
    np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_losses_match_torch():
    rng = np.random.default_rng(8)
    z = rng.standard_normal((6, 5)) * 3
    y = rng.integers(0, 5, 6)
    for red in ("mean", "sum"):
        for ls in (0.0, 0.2):
            tz = t(z, True)
            tl = torch.nn.CrossEntropyLoss(reduction=red, label_smoothing=ls)(tz, torch.tensor(y))
            tl.backward()
            loss = nn.CrossEntropyLoss(red, ls)
            assert np.isclose(loss(z, y), tl.item())
            close(loss.backward(), tz.grad, np.float64)
    target = rng.random((6, 5))
    tz = t(z, True)
    tl = torch.nn.BCEWithLogitsLoss()(tz, t(target))
    tl.backward()
    loss = nn.BCEWithLogitsLoss()
    assert np.isclose(loss(z, target), tl.item())
    close(loss.backward(), tz.grad, np.float64)
