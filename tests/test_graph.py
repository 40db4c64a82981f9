"""Models that are not chains: the per-call record, shared modules, define-by-run modules, traced
numpy arithmetic, containers, concurrency, saving graphs (issue 12)."""

import json
import sys
import threading

import numpy as np
import pytest
from conftest import numerical_grad

import convcore
from convcore import functional as F
from convcore import nn, optim
from convcore.nn import GraphError
from convcore.serialization import ModelFileError


def _torch():   # torch is optional: only the parity tests need it
    return pytest.importorskip("torch")


def assert_close(a, b, tol):
    """max |a - b| <= tol * max(1, max |b|): float64 agreement relative to the values' scale."""
    b = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = max(1.0, float(np.abs(b).max())) if b.size else 1.0
    np.testing.assert_allclose(a, b, rtol=0, atol=tol * scale)


def to_torch_state(model):
    torch = _torch()
    return {k: torch.tensor(v) for k, v in model.state_dict().items()}


# ---------------------------------------------------------------------------------------------
# torch parity (float64; torch written in the test, torchvision not needed)


def test_tied_weights_match_torch_and_step_once(rng):
    torch = _torch()
    lin = nn.Linear(4, 4, rng=0, dtype=np.float64)
    model = nn.Sequential(lin, nn.Tanh(), lin)
    assert model.num_parameters() == 20 and len(list(model.parameters())) == 2
    assert set(model.state_dict()) == {"0.weight", "0.bias", "2.weight", "2.bias"}  # as torch lists them
    x = rng.standard_normal((3, 4))
    y = model(x)
    gx = model.backward(np.ones_like(y), need_input_grad=True)
    tl = torch.nn.Linear(4, 4).double()
    tl.load_state_dict({"weight": torch.tensor(lin.weight.data), "bias": torch.tensor(lin.bias.data)})
    tm = torch.nn.Sequential(tl, torch.nn.Tanh(), tl)
    tx = torch.tensor(x, requires_grad=True)
    ty = tm(tx)
    ty.backward(torch.ones_like(ty))
    assert_close(y, ty, 1e-12)
    assert_close(gx, tx.grad, 1e-10)
    assert_close(lin.weight.grad, tl.weight.grad, 1e-10)
    assert_close(lin.bias.grad, tl.bias.grad, 1e-10)
    before = lin.weight.data.copy()
    optim.SGD(model.parameters(), lr=0.1).step()
    torch.optim.SGD(tm.parameters(), lr=0.1).step()
    assert_close(lin.weight.data, tl.weight, 1e-12)
    np.testing.assert_allclose(lin.weight.data, before - 0.1 * lin.weight.grad)  # moved once, not twice


class TorchBasicBlock:
    """torchvision's BasicBlock, written here (torchvision is not needed)."""

    def __new__(cls, inplanes, planes, stride=1, downsample=False):
        torch = _torch()
        tnn = torch.nn

        class Block(tnn.Module):
            def __init__(self):
                super().__init__()
                self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
                self.bn1 = tnn.BatchNorm2d(planes)
                self.relu = tnn.ReLU()
                self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
                self.bn2 = tnn.BatchNorm2d(planes)
                self.downsample = (tnn.Sequential(tnn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                                  tnn.BatchNorm2d(planes)) if downsample else None)

            def forward(self, x):
                identity = x if self.downsample is None else self.downsample(x)
                out = self.relu(self.bn1(self.conv1(x)))
                out = self.bn2(self.conv2(out))
                out += identity
                return self.relu(out)

        return Block().double()


def torch_resnet(layers, num_classes, in_channels, width=64):
    torch = _torch()
    tnn = torch.nn

    class ResNet(tnn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
            self.bn1 = tnn.BatchNorm2d(width)
            self.relu = tnn.ReLU()
            self.maxpool = tnn.MaxPool2d(3, 2, 1)
            inplanes = width
            for i, n in enumerate(layers):
                planes, stride = width * 2**i, 1 if i == 0 else 2
                blocks = []
                for b in range(n):
                    down = b == 0 and (stride != 1 or inplanes != planes)
                    blocks.append(TorchBasicBlock(inplanes, planes, stride if b == 0 else 1, down))
                    inplanes = planes
                setattr(self, f"layer{i + 1}", tnn.Sequential(*blocks))
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.fc = tnn.Linear(inplanes, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet().double()


def test_basic_block_with_one_relu_used_twice_matches_torch(rng):
    torch = _torch()
    block = convcore.models.BasicBlock(4, 6, stride=2, downsample=True, rng=0).astype(np.float64)
    tblock = TorchBasicBlock(4, 6, 2, True)
    tblock.load_state_dict(to_torch_state(block))
    x = rng.standard_normal((2, 4, 7, 7))
    y = block(x)
    gy = rng.standard_normal(y.shape)
    gx = block.backward(gy, need_input_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    ty = tblock(tx)
    ty.backward(torch.tensor(gy))
    assert_close(y, ty, 1e-10)
    assert_close(gx, tx.grad, 1e-10)
    tparams = dict(tblock.named_parameters())
    for name, p in block.named_parameters():
        assert_close(p.grad, tparams[name].grad, 1e-10)


def test_resnet18_matches_torch_train_eval_backward_and_sgd_step(rng):
    torch = _torch()
    model = convcore.models.resnet18(num_classes=7, in_channels=3, rng=0).astype(np.float64)
    tm = torch_resnet([2, 2, 2, 2], 7, 3)
    tm.load_state_dict(to_torch_state(model))   # the same keys as torchvision's ResNet-18
    # 64x64 so that the last stage's batch norm sees 2 x 2 x 2 values per channel (with one value per
    # channel and image, a batch of two makes it a numerically ill-conditioned comparison)
    x = rng.standard_normal((2, 3, 64, 64))
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    topt = torch.optim.SGD(tm.parameters(), lr=0.05, momentum=0.9)
    tparams = dict(tm.named_parameters())
    for _ in range(2):   # two steps, so the momentum buffers matter
        opt.zero_grad()
        topt.zero_grad()
        y = model(x)
        gy = rng.standard_normal(y.shape)
        gx = model.backward(gy, need_input_grad=True)
        tx = torch.tensor(x, requires_grad=True)
        ty = tm(tx)
        ty.backward(torch.tensor(gy))
        assert_close(y, ty, 1e-9)
        assert_close(gx, tx.grad, 1e-9)
        for name, p in model.named_parameters():
            assert_close(p.grad, tparams[name].grad, 1e-9)
        opt.step()
        topt.step()
    tstate = tm.state_dict()
    for k, v in model.state_dict().items():
        assert_close(v, tstate[k], 1e-9)
    model.eval()
    tm.eval()
    with convcore.no_grad():
        ye = model(x)
    with torch.no_grad():
        assert_close(ye, tm(torch.tensor(x)), 1e-9)


def test_define_by_run_add_and_cat_match_torch(rng):
    torch = _torch()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1, rng=1, dtype=np.float64)
            self.b = nn.Conv2d(7, 2, 1, rng=2, dtype=np.float64)
            self.act = nn.ReLU()

        def forward(self, x):
            h = self.act(self.a(x))
            h = F.add(h, F.mul(x.sum(axis=1, keepdims=True), 0.5))   # broadcast over channels
            return self.b(F.cat([h, x], dim=1))

    net = Net()
    x = rng.standard_normal((2, 3, 5, 6))
    y = net(x)
    gy = rng.standard_normal(y.shape)
    gx = net.backward(gy, need_input_grad=True)
    ta, tb = torch.nn.Conv2d(3, 4, 3, padding=1).double(), torch.nn.Conv2d(7, 2, 1).double()
    ta.load_state_dict({k[2:]: v for k, v in to_torch_state(net).items() if k.startswith("a.")})
    tb.load_state_dict({k[2:]: v for k, v in to_torch_state(net).items() if k.startswith("b.")})
    tx = torch.tensor(x, requires_grad=True)
    h = torch.relu(ta(tx)) + tx.sum(1, keepdim=True) * 0.5
    ty = tb(torch.cat([h, tx], 1))
    ty.backward(torch.tensor(gy))
    assert_close(y, ty, 1e-10)
    assert_close(gx, tx.grad, 1e-10)
    assert_close(net.a.weight.grad, ta.weight.grad, 1e-10)
    assert_close(net.b.bias.grad, tb.bias.grad, 1e-10)


# ---------------------------------------------------------------------------------------------
# traced numpy arithmetic


TRACED = [
    ("add broadcast", lambda a, b: a + b[0]),
    ("sub reflected", lambda a, b: 2.0 - a - b),
    ("mul", lambda a, b: a * b * 3),
    ("div", lambda a, b: a / (b * b + 1.0)),
    ("neg", lambda a, b: -a + b),
    ("sum axis", lambda a, b: (a * b).sum(axis=1)),
    ("mean keepdims", lambda a, b: a.mean(axis=(0, 2), keepdims=True) * b),
    ("np.sum", lambda a, b: np.sum(a, axis=0) + b[1]),
    ("np.mean", lambda a, b: np.mean(a) * b),
    ("reshape", lambda a, b: (a.reshape(-1) * b.reshape(3 * 4 * 2)).reshape(3, 8)),
    ("transpose", lambda a, b: (a.transpose(2, 0, 1) * np.transpose(b, (2, 0, 1))).T),
    ("getitem basic", lambda a, b: a[1:, ::2] * b[0, 0, 0]),
    ("getitem advanced", lambda a, b: a[[0, 0, 2]] + b[[1, 1, 1]]),
    ("concatenate", lambda a, b: np.concatenate([a, b * 2], axis=2)),
    ("copy", lambda a, b: a.copy() * b),
]


class Expr(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, a, b):
        return self.fn(a, b)


@pytest.mark.parametrize("name,fn", TRACED, ids=[t[0] for t in TRACED])
def test_traced_numpy_arithmetic_gradients(name, fn, rng):
    a, b = rng.standard_normal((3, 4, 2)), rng.standard_normal((3, 4, 2))
    m = Expr(fn)
    y = m(a, b)
    assert type(y) is np.ndarray   # a model's outputs are plain arrays
    np.testing.assert_allclose(y, fn(a, b))
    gy = rng.standard_normal(y.shape)
    ga, gb = m.backward(gy, need_input_grad=True)
    np.testing.assert_allclose(ga, numerical_grad(lambda v: fn(v, b), a.copy(), gy), atol=1e-7)
    np.testing.assert_allclose(gb, numerical_grad(lambda v: fn(a, v), b.copy(), gy), atol=1e-7)


def test_in_place_add_is_traced_unless_it_overwrites_saved_values(rng):
    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 3, rng=0, dtype=np.float64)

        def forward(self, x):
            out = self.lin(x)
            out += x            # the Linear saved x, not its output: fine, and traced
            return out

    m = Residual()
    x = rng.standard_normal((4, 3))
    y = m(x)
    gx = m.backward(np.ones_like(y), need_input_grad=True)
    np.testing.assert_allclose(gx, np.ones((4, 3)) @ m.lin.weight.data + 1)

    class Bad(nn.Module):
        def forward(self, x):
            out = F.relu(x)
            out += 1.0          # ReLU saved its output for its backward
            return out

    with pytest.raises(GraphError, match="saved for its backward"):
        Bad()(x)


def test_untraced_operations_are_refused_not_silently_dropped(rng):
    class Exp(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(3, 3, rng=0), nn.Linear(3, 3, rng=1)

        def forward(self, x):
            h = self.a(x)
            print(h.max(), file=sys.stderr)   # looking at an intermediate is fine
            return self.b(np.exp(h))

    x = rng.standard_normal((2, 3)).astype(np.float32)
    with pytest.raises(GraphError, match=r"numpy\.exp.*convcore.functional"):
        Exp()(x)
    with convcore.no_grad():   # nothing is recorded, so nothing can be lost
        assert Exp()(x).shape == (2, 3)

    class Assign(nn.Module):
        def forward(self, x):
            h = x * 2.0
            h[0] = 0.0
            return h

    with pytest.raises(GraphError, match="item assignment"):
        Assign()(x)

    class Detached(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3, rng=0)

        def forward(self, x):
            return self.a(np.asarray(x * 2.0))   # an explicit detach: a constant for the record

    m = Detached()
    y = m(x)
    assert m.backward(np.ones_like(y), need_input_grad=True).max() == 0
    assert m.a.weight.grad is not None

    class Direct(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3, rng=0)

        def forward(self, x):
            return self.a.forward(x)

    with pytest.raises(GraphError, match=r"call the module itself"):
        Direct()(x)


# ---------------------------------------------------------------------------------------------
# need-based backward in any graph


class Spy:
    def __init__(self, monkeypatch):
        self.calls = []
        real = convcore.ops.conv2d_backward

        def spy(*args, **kwargs):
            self.calls.append((args[2].shape, kwargs["input_grad"], kwargs["weight_grad"]))
            return real(*args, **kwargs)

        monkeypatch.setattr(convcore.ops, "conv2d_backward", spy)


class TwoPath(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1, rng=0)
        self.left = nn.Conv2d(4, 4, 3, padding=1, rng=1)
        self.right = nn.Conv2d(4, 4, 1, rng=2)
        self.head = nn.Linear(4 * 6 * 6, 3, rng=3)

    def forward(self, x):
        h = F.relu(self.stem(x))
        return self.head(F.flatten(F.add(self.left(h), self.right(h))))


def test_natural_loop_skips_frozen_work_in_a_graph(monkeypatch, rng):
    spy = Spy(monkeypatch)
    model = TwoPath()
    x, y = rng.random((2, 1, 6, 6), dtype=np.float32), np.array([0, 2])
    loss = nn.CrossEntropyLoss()
    loss(model(x), y)
    model.backward(loss.backward())          # the natural loop: no input gradient asked
    assert (model.stem.weight.shape, False, True) in spy.calls   # the first conv skips its input gradient
    assert all(gi for shape, gi, _ in spy.calls if shape != model.stem.weight.shape)
    model.stem.freeze()
    model.left.freeze()
    spy.calls.clear()
    loss(model(x), y)
    model.backward(loss.backward())
    # the frozen stem gets no backward; the frozen left branch neither (nothing upstream needs it)
    assert spy.calls == [(model.right.weight.shape, False, True)]


# ---------------------------------------------------------------------------------------------
# several inputs and outputs, containers


class TwoInTwoOut(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 2, rng=0, dtype=np.float64)
        self.b = nn.Linear(4, 2, rng=1, dtype=np.float64)

    def forward(self, u, v):
        s = F.add(self.a(u), self.b(v))
        return s, F.tanh(s)


def test_several_inputs_and_outputs(rng):
    m = TwoInTwoOut()
    u, v = rng.standard_normal((5, 3)), rng.standard_normal((5, 4))
    s, t = m(u, v)
    g1, g2 = rng.standard_normal(s.shape), rng.standard_normal(t.shape)
    gu, gv = m.backward((g1, g2), need_input_grad=True)

    def f(uu, vv):
        ss = uu @ m.a.weight.data.T + m.a.bias.data + vv @ m.b.weight.data.T + m.b.bias.data
        return np.sum(ss * g1) + np.sum(np.tanh(ss) * g2)

    np.testing.assert_allclose(gu, numerical_grad(lambda w: np.array(f(w, v)), u.copy(), np.array(1.0)), atol=1e-7)
    np.testing.assert_allclose(gv, numerical_grad(lambda w: np.array(f(u, w)), v.copy(), np.array(1.0)), atol=1e-7)
    none_v = m.backward((g1, None), need_input_grad=(True, False))
    assert none_v[1] is None and none_v[0].shape == u.shape
    with pytest.raises(ValueError, match="tuple of 2"):
        m.backward(g1)
    with pytest.raises(ValueError, match=r"output's shape \(5, 2\)"):
        m.backward((g1[:2], g2))


def test_containers_and_sequential_editing(rng):
    seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    seq[1] = nn.Tanh()
    seq.insert(0, nn.Identity())
    assert [type(m).__name__ for m in seq] == ["Identity", "Linear", "Tanh", "Linear"]
    del seq[0]
    assert list(seq._modules) == ["0", "1", "2"] and isinstance(seq[1], nn.Tanh)
    assert isinstance(seq.pop(), nn.Linear) and len(seq) == 2
    seq.append(nn.Linear(4, 2)).extend([nn.ReLU()])
    assert seq(rng.random((2, 3), dtype=np.float32)).shape == (2, 2)

    class Tower(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(nn.Linear(4, 4, rng=i) for i in range(3))
            self.heads = nn.ModuleDict({"cls": nn.Linear(4, 2, rng=5), "reg": nn.Linear(4, 1, rng=6)})

        def forward(self, x):
            for b in self.blocks:
                x = F.relu(b(x))
            return self.heads["cls"](x), self.heads["reg"](x)

    tower = Tower()
    keys = list(tower.state_dict())
    assert keys[:2] == ["blocks.0.weight", "blocks.0.bias"] and "heads.reg.bias" in keys   # torch's keys
    cls, reg = tower(rng.random((3, 4), dtype=np.float32))
    tower.backward((np.ones_like(cls), None))
    assert tower.heads["reg"].weight.grad is None and tower.blocks[0].weight.grad is not None

    residual = nn.Sequential(nn.Parallel(nn.Linear(4, 4, rng=0), nn.Identity()), nn.Add(), nn.ReLU())
    x = rng.random((2, 4), dtype=np.float32)
    lin = residual[0][0]
    np.testing.assert_allclose(residual(x), np.maximum(x @ lin.weight.data.T + lin.bias.data + x, 0), rtol=1e-6)
    inception = nn.Sequential(nn.Parallel(nn.Conv2d(2, 3, 1), nn.Conv2d(2, 5, 3, padding=1)), nn.Concat())
    assert inception(rng.random((1, 2, 4, 4), dtype=np.float32)).shape == (1, 8, 4, 4)
    with pytest.raises(NotImplementedError, match="ModuleList has no forward"):
        nn.ModuleList([nn.ReLU()])(x)


def test_summary_of_any_model(rng):
    text = convcore.models.resnet18(num_classes=10).summary((3, 32, 32))   # no batch axis: a batch of one
    assert "layer4.1.conv2 (Conv2d)" in text and "(1, 10)" in text and "add" in text
    assert "11,181,642" in text.splitlines()[-1]   # torchvision's ResNet-18 parameter count for 10 classes
    unet = convcore.models.unet_autoencoder(rng=0).astype(np.float64)
    assert "(2, 1, 28, 28)" in unet.summary((2, 1, 28, 28), dtype=np.float64)
    assert "concat" in unet.summary((1, 28, 28))
    shared = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    shared.append(shared[0])
    assert "shared" in shared.summary((2, 3))


def test_classifier_from_encoder_infers_its_width(rng):
    ae = convcore.models.conv_autoencoder(latent_dim=12, rng=0)
    clf = convcore.models.classifier_from_encoder(ae.encoder, 10)
    assert clf[-1].in_features == 12 and ae.encoder.frozen
    unet = convcore.models.unet_autoencoder(base_channels=4, depth=2, rng=0)

    class Enc(nn.Module):
        def __init__(self, u):
            super().__init__()
            self.u = u

        def forward(self, x):
            return self.u.encode(x)

    with pytest.raises(ValueError, match="input_shape"):
        convcore.models.classifier_from_encoder(Enc(unet), 10)
    clf = convcore.models.classifier_from_encoder(Enc(unet), 10, input_shape=(1, 28, 28), freeze=False)
    assert clf[-1].in_features == 16 * 7 * 7
    assert clf(rng.random((2, 1, 28, 28), dtype=np.float32)).shape == (2, 10)


# ---------------------------------------------------------------------------------------------
# concurrency


def test_fit_in_one_thread_while_others_predict(rng):
    (xt, yt), (xs, _) = convcore.datasets.load_mnist()
    xt, yt = xt[:512], yt[:512]

    def train():
        model = convcore.models.lenet(rng=0)
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        return model, opt

    serial, opt = train()
    convcore.fit(serial, nn.CrossEntropyLoss(), opt, xt, yt, epochs=1, batch_size=64, seed=0, progress=False)
    model, opt = train()
    errors, stop = [], threading.Event()

    def predictor():
        try:
            while not stop.is_set():
                out = convcore.predict(model, xs[:32])
                assert out.shape == (32, 10)
        except Exception as exc:  # noqa: BLE001 - any failure fails the test
            errors.append(exc)

    threads = [threading.Thread(target=predictor) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        convcore.fit(model, nn.CrossEntropyLoss(), opt, xt, yt, epochs=1, batch_size=64, seed=0, progress=False)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors, errors[:1]
    for (k, a), b in zip(serial.state_dict().items(), model.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)   # the same numbers as training alone


def test_pool_unpool_pairs_per_call_under_thread_switching(rng):
    pool = nn.MaxPool2d(2, return_indices=True)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1, rng=0), pool, nn.ReLU(), nn.MaxUnpool2d(pool),
                          nn.Conv2d(3, 1, 3, padding=1, rng=1))
    xs = [rng.standard_normal((2, 1, 8, 8)).astype(np.float32) for _ in range(8)]
    serial = [convcore.predict(model, x) for x in xs]
    results = [[] for _ in xs]
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=lambda i=i: results[i].extend(convcore.predict(model, xs[i])
                                                                          for _ in range(30)))
                   for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    for got, want in zip(results, serial):
        assert len(got) == 30
        for g in got:
            np.testing.assert_array_equal(g, want)


def test_records_are_per_thread(rng):
    lin = nn.Linear(3, 2, rng=0, dtype=np.float64)
    x1, x2 = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    lin(x1)
    other = threading.Thread(target=lambda: lin(x2))
    other.start()
    other.join()
    lin.backward(np.ones((4, 2)))      # replays this thread's call, on x1
    np.testing.assert_allclose(lin.weight.grad, np.ones((2, 4)) @ x1)


# ---------------------------------------------------------------------------------------------
# saving graphs


@nn.register
class ScaledResidual(nn.Module):
    def __init__(self, features, scale=0.5):
        super().__init__()
        self.features, self.scale = features, scale
        self.lin = nn.Linear(features, features)
        self.act = nn.ReLU()

    def forward(self, x):
        return self.act(F.add(x, F.mul(self.lin(x), self.scale)))

    def get_config(self):
        return dict(features=self.features, scale=self.scale)


def round_trip(model, tmp_path, x):
    path = tmp_path / "m.npz"
    convcore.save(model, path)
    back = convcore.load(path)
    for (k, a), (k2, b) in zip(model.state_dict().items(), back.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(convcore.predict(model, x), convcore.predict(back, x))
    return back


def test_save_load_graphs_bitwise(tmp_path, rng):
    resnet = convcore.models.ResNet("basic", [1, 1], num_classes=3, in_channels=1, width=4, stem="small", rng=0)
    resnet(rng.random((4, 1, 8, 8), dtype=np.float32))   # batch-norm statistics
    resnet.layer1.freeze()
    back = round_trip(resnet, tmp_path, rng.random((2, 1, 8, 8), dtype=np.float32))
    assert back.layer1.frozen and not back.fc.frozen
    custom = nn.Sequential(ScaledResidual(4, scale=0.25), nn.Linear(4, 2))
    back = round_trip(custom, tmp_path, rng.random((3, 4), dtype=np.float32))
    assert isinstance(back[0], ScaledResidual) and back[0].scale == 0.25
    pool = nn.MaxPool2d(2, return_indices=True)
    ae = nn.Autoencoder(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, rng=0), pool),
                        nn.Sequential(nn.MaxUnpool2d(pool), nn.Conv2d(2, 1, 3, padding=1, rng=1)))
    back = round_trip(ae, tmp_path, rng.random((2, 1, 6, 6), dtype=np.float32))
    assert back.decoder[0].pool is back.encoder[1]   # the pairing survives
    lin = nn.Linear(3, 3)
    tied = round_trip(nn.Sequential(lin, nn.Tanh(), lin), tmp_path, rng.random((2, 3), dtype=np.float32))
    assert tied[0] is tied[2] and tied.num_parameters() == 12
    round_trip(convcore.models.unet_autoencoder(base_channels=2, depth=1, rng=0), tmp_path,
               rng.random((1, 1, 4, 4), dtype=np.float32))
    back = round_trip(PoolUnpool(), tmp_path, rng.random((2, 3, 6, 6), dtype=np.float32))
    assert back.unpool.pool is None and back.unpool.kernel_size == (2, 2)


@nn.register
class PoolUnpool(nn.Module):
    """PyTorch's way: the indices travel as data."""

    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2)

    def forward(self, x):
        out, idx = self.pool(x)
        return self.unpool(F.relu(out), idx, output_size=x.shape[-2:])


def test_indices_as_data_match_torch(rng):
    torch = _torch()
    m = PoolUnpool()
    x = rng.standard_normal((2, 3, 6, 7))
    y = m(x)
    gx = m.backward(np.ones_like(y), need_input_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    out, idx = torch.nn.functional.max_pool2d(tx, 2, return_indices=True)
    ty = torch.nn.functional.max_unpool2d(torch.relu(out), idx, 2, output_size=(6, 7))
    ty.backward(torch.ones_like(ty))
    assert_close(y, ty, 0)
    assert_close(gx, tx.grad, 0)


def test_unregistered_module_refuses_to_save_clearly(tmp_path):
    class Mine(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(ValueError, match="@convcore.nn.register"):
        convcore.save(nn.Sequential(Mine()), tmp_path / "m.npz")
    assert not list(tmp_path.iterdir())   # nothing written, no temporary file left


def test_version_1_files_still_load(tmp_path, rng):
    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3, rng=0))
    model[0].freeze()
    spec = {"type": "Sequential", "config": {}, "children": [
        {"type": "Conv2d", "config": model[0].get_config(), "frozen": True},
        {"type": "ReLU", "config": {}}, {"type": "Flatten", "config": {"start_dim": 1}},
        {"type": "Linear", "config": model[3].get_config()}]}
    arch = {"format": "convcore-model", "version": 1, "model": spec}
    path = tmp_path / "v1.npz"
    with open(path, "wb") as f:
        np.savez(f, __architecture__=np.frombuffer(json.dumps(arch).encode(), np.uint8), **model.state_dict())
    back = convcore.load(path)
    assert back[0].frozen and not back[3].frozen
    x = rng.random((2, 1, 6, 6), dtype=np.float32)
    np.testing.assert_array_equal(convcore.predict(back, x), convcore.predict(model, x))


def _write_arch(path, model_spec, arrays=None):
    arch = {"format": "convcore-model", "version": 2, "model": model_spec, "frozen": []}
    with open(path, "wb") as f:
        np.savez(f, __architecture__=np.frombuffer(json.dumps(arch).encode(), np.uint8), **(arrays or {}))


@pytest.mark.parametrize("spec,match", [
    ({"ref": "0"}, "reference"),
    ({"type": "Sequential", "config": {}, "children": [["0", {"ref": "missing"}]]}, "reference"),
    ({"type": "Sequential", "config": {}, "children": [["0", {"ref": ""}]]}, "contain itself"),
    ({"type": "Sequential", "config": {}, "children": [["a.b", {"type": "ReLU"}]]}, "invalid child"),
    ({"type": "Sequential", "config": {}, "children": [["0", {"type": "ReLU"}], ["0", {"type": "ReLU"}]]},
     "duplicate child"),
    ({"type": "ReLU", "config": {}, "children": []}, "not a container"),
    ({"type": "Sequential", "config": {"x": 1}}, "takes no config"),
    ({"type": "Evil", "config": {}}, "unknown module type"),
    ({"type": "Linear", "config": {"in_features": 2, "out_features": 2, "oops": 1}}, "cannot build Linear"),
    ({"type": "Sequential", "config": {}, "children": [[str(i), {"type": "ReLU"}] for i in range(3000)]},
     "more than"),
    ({"type": "Linear", "config": {"in_features": 100000, "out_features": 100000}}, "more than the file"),
])
def test_hostile_graph_specs_are_refused(tmp_path, monkeypatch, spec, match):
    monkeypatch.setattr(convcore.serialization, "MAX_MEMBERS", 2000)
    path = tmp_path / "bad.npz"
    _write_arch(path, spec)
    with pytest.raises(ModelFileError, match=match):
        convcore.load(path)


def test_deeply_nested_spec_is_refused(tmp_path):
    spec = {"type": "ReLU"}
    for _ in range(300):
        spec = {"type": "Sequential", "config": {}, "children": [["0", spec]]}
    path = tmp_path / "deep.npz"
    _write_arch(path, spec)
    with pytest.raises(ModelFileError, match="nested"):
        convcore.load(path)


# ---------------------------------------------------------------------------------------------
# training a small ResNet


@pytest.mark.slow
def test_small_resnet_reaches_97_percent_on_digits():
    (xt, yt), (xs, ys) = convcore.datasets.load_mnist()
    convcore.manual_seed(0)
    model = convcore.models.ResNet("basic", [1, 1, 1], num_classes=10, in_channels=1, width=12, stem="small", rng=0)
    opt = optim.Adam(model.parameters(), lr=3e-3)
    loss = nn.CrossEntropyLoss()
    convcore.fit(model, loss, opt, xt, yt, epochs=4, batch_size=32, seed=0, progress=False)
    opt.lr = 3e-4   # one step decay (measured: 0.923-0.955 held-out before it, 0.975 after)
    convcore.fit(model, loss, opt, xt, yt, epochs=2, batch_size=32, seed=1, progress=False)
    assert convcore.evaluate(model, loss, xs, ys)["accuracy"] >= 0.97


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (5, 7), (None, 3), 4])
def test_adaptive_avg_pool_matches_torch(size, rng):
    torch = _torch()
    m = nn.AdaptiveAvgPool2d(size)
    x = rng.standard_normal((2, 3, 7, 5))
    y = m(x)
    g = rng.standard_normal(y.shape)
    gx = m.backward(g, need_input_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.AdaptiveAvgPool2d(size)(tx)
    ty.backward(torch.tensor(g))
    assert_close(y, ty, 1e-12)
    assert_close(gx, tx.grad, 1e-12)


def test_gradient_accumulation_never_writes_into_an_array_still_in_use(rng):
    class Bias(nn.Module):
        """A primitive whose parameter gradient is the upstream gradient itself."""

        def __init__(self):
            super().__init__()
            self.b = nn.Parameter(np.zeros(3))

        def forward(self, x):
            return x + self.b.data

        def backward(self, grad, need_input_grad):
            self.b.accumulate(grad[0])         # a view of the upstream gradient
            return grad if need_input_grad else None

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = Bias()

        def forward(self, x):
            return self.bias(self.bias(x))     # the same module twice: its gradient accumulates

    m = Twice()
    x = rng.standard_normal((1, 3))
    m(x)
    gy = np.ones((1, 3))
    gx = m.backward(gy, need_input_grad=True)
    np.testing.assert_array_equal(m.bias.b.grad, [2.0, 2.0, 2.0])
    np.testing.assert_array_equal(gx, np.ones((1, 3)))
    np.testing.assert_array_equal(gy, np.ones((1, 3)))     # the caller's array is untouched


def test_files_written_by_convcore_0_1_still_load():
    """tests/data/v1_*.npz were written by convcore 0.1 (format version 1), with its predictions
    (compared to float rounding: the kernels have changed since)."""
    import pathlib

    data = pathlib.Path(__file__).parent / "data"
    with np.load(data / "v1_expected.npz") as expected:
        chain = convcore.load(data / "v1_chain.npz")
        assert chain[0].frozen and not chain[6].frozen
        np.testing.assert_allclose(convcore.predict(chain, expected["x"]), expected["chain"], rtol=1e-5, atol=1e-6)
        ae = convcore.load(data / "v1_autoencoder.npz")
        np.testing.assert_allclose(convcore.predict(ae, expected["x8"]), expected["ae"], rtol=1e-5, atol=1e-6)


def test_functional_and_container_arguments_are_checked():
    """Found while documenting (issue 18): each of these was silently wrong before."""
    from convcore import functional as F
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="sub: b must have dtype float32 or float64"):
        F.sub(x, np.ones((2, 3), np.int64))
    with pytest.raises(TypeError, match="mul: a must have dtype float32 or float64"):
        F.mul(np.ones((2, 3), np.int32), x)
    with pytest.raises(TypeError, match="b must have the same dtype as a"):
        F.mul(x, x.astype(np.float64))
    assert F.mul(x, 2.0).dtype == np.float32                     # a number takes the array's dtype
    with pytest.raises(TypeError, match="cat: dim must be an int"):
        F.cat([x, x], dim=1.7)
    with pytest.raises(ValueError, match="flatten: start_dim"):
        F.flatten(np.ones(3, np.float32))                        # torch raises too; was (3, 1)
    assert F.flatten(np.ones(3, np.float32), start_dim=0).shape == (3,)
    assert F.flatten(np.ones((2, 3, 4), np.float32), start_dim=-2).shape == (2, 12)
    seq = nn.Sequential(nn.ReLU(), nn.Tanh())
    assert seq[np.int64(1)] is seq[1]
    with pytest.raises(TypeError, match="ints or slices"):
        seq[1.0]
    d = nn.ModuleDict()
    for key in ("training", "forward", "_parameters"):
        with pytest.raises(KeyError, match="attribute"):
            d[key] = nn.ReLU()
    assert d.training is True
    d["relu"] = nn.ReLU()
    d["relu"] = nn.Tanh()                                         # replacing a module is fine
    assert isinstance(d["relu"], nn.Tanh)
