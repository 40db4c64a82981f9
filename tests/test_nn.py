"""Layer API: gradient checks, freezing, modes, state, no_grad, optimizers."""

import threading

import numpy as np
import pytest
from conftest import numerical_grad

import convcore
from convcore import nn, optim


def check_layer_grads(layer, x, rng, atol=1e-6):
    """Input and parameter gradients of ``layer`` against central differences (float64)."""
    layer.astype(np.float64)
    y = layer(x)
    gy = rng.standard_normal(y.shape)
    layer.zero_grad()
    gx = layer.backward(gy, need_input_grad=True)
    np.testing.assert_allclose(gx, numerical_grad(lambda v: layer(v), x.copy(), gy), atol=atol)
    for name, p in layer.named_parameters():
        def f(v, p=p):
            old = p.data
            p.data = v
            try:
                return layer(x)
            finally:
                p.data = old
        np.testing.assert_allclose(p.grad, numerical_grad(f, p.data.copy(), gy), atol=atol, err_msg=name)


LAYERS = [
    (lambda: nn.Conv2d(3, 4, 3, stride=2, padding="same", rng=0), (2, 3, 7, 6)),
    (lambda: nn.Conv2d(4, 4, (3, 1), groups=2, dilation=2, rng=0), (2, 4, 7, 5)),
    (lambda: nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, rng=0), (2, 3, 4, 3)),
    (lambda: nn.Linear(5, 3, rng=0), (4, 5)),
    (lambda: nn.MaxPool2d(2), (2, 3, 6, 6)),
    (lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False), (2, 3, 7, 6)),
    (lambda: nn.GlobalAvgPool2d(), (2, 3, 4, 5)),
    (lambda: nn.Upsample(2), (2, 3, 3, 2)),
    (lambda: nn.Tanh(), (3, 4)),
    (lambda: nn.Sigmoid(k=2.0, x0=0.5), (3, 4)),
    (lambda: nn.LeakyReLU(0.1), (3, 4)),
    (lambda: nn.ReLU(), (3, 4)),
    (lambda: nn.Softmax(dim=1), (3, 4)),
    (lambda: nn.LogSoftmax(dim=1), (3, 4)),
    (lambda: nn.BatchNorm1d(4), (6, 4)),
    (lambda: nn.BatchNorm2d(3), (4, 3, 3, 2)),
    (lambda: nn.Flatten(), (2, 3, 2, 2)),
    (lambda: nn.Unflatten(1, (2, 3)), (2, 6)),
    (lambda: nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, rng=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                           nn.Linear(12, 2, rng=1)), (2, 2, 4, 4)),
]


@pytest.mark.parametrize("make,shape", LAYERS)
def test_layer_gradients(make, shape, rng):
    x = rng.permutation(np.linspace(-2, 2, int(np.prod(shape)))).reshape(shape)  # distinct values: no pool ties
    x += rng.standard_normal(shape) * 1e-3
    check_layer_grads(make(), x, rng)


def test_dropout_statistics_and_eval_identity(rng):
    d = nn.Dropout(0.3, rng=0)
    x = np.ones((200, 500))
    y = d(x)
    assert abs((y == 0).mean() - 0.3) < 0.01
    assert np.allclose(y[y != 0], 1 / 0.7)
    assert abs(y.mean() - 1) < 0.02
    g = d.backward(np.ones_like(x), need_input_grad=True)
    np.testing.assert_array_equal(g, y)  # gradient goes through the kept units only, scaled
    d.eval()
    assert d(x) is x
    d2 = nn.Dropout2d(0.5, rng=0)
    y = d2(np.ones((8, 16, 3, 3)))
    per_map = y.reshape(8, 16, -1)
    assert np.all(per_map.min(axis=2) == per_map.max(axis=2))  # whole maps dropped or kept


def test_frozen_dropout_still_drops():
    d = nn.Sequential(nn.Linear(4, 4, rng=0), nn.Dropout(0.5, rng=0)).freeze()
    assert (d(np.ones((50, 4), np.float32)) == 0).any()


def test_batchnorm_train_eval_and_running_stats(rng):
    bn = nn.BatchNorm2d(2, momentum=0.1, dtype=np.float64)
    x = rng.standard_normal((5, 2, 3, 3)) * 2 + 3
    y = bn(x)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, atol=1e-4)
    m = x.mean(axis=(0, 2, 3))
    v = x.var(axis=(0, 2, 3), ddof=1)  # unbiased, as PyTorch
    np.testing.assert_allclose(bn.running_mean, 0.1 * m)
    np.testing.assert_allclose(bn.running_var, 0.9 + 0.1 * v)
    assert int(bn.num_batches_tracked) == 1
    bn.eval()
    expected = (x - bn.running_mean[None, :, None, None]) / np.sqrt(bn.running_var[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(bn(x), expected)


def test_frozen_batchnorm_uses_and_keeps_running_stats(rng):
    bn = nn.BatchNorm2d(2, dtype=np.float64)
    bn(rng.standard_normal((4, 2, 3, 3)))
    bn.freeze().train()
    before = {k: v.copy() for k, v in bn.state_dict().items()}
    x = rng.standard_normal((4, 2, 3, 3)) + 5
    y = bn(x)
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    np.testing.assert_allclose(y, bn.eval()(x))


class Spy:
    def __init__(self, monkeypatch):
        self.calls = []
        real = convcore.ops.conv2d_backward

        def spy(*args, **kwargs):
            self.calls.append(kwargs)
            return real(*args, **kwargs)

        monkeypatch.setattr(convcore.ops, "conv2d_backward", spy)


def lenet_step(model, opt, x, y, loss=None):
    loss = loss or nn.CrossEntropyLoss()
    opt.zero_grad()
    loss(model(x), y)
    model.backward(loss.backward(), need_input_grad=False)
    opt.step()


def test_freezing_skips_work_and_keeps_weights_bitwise(monkeypatch, rng):
    spy = Spy(monkeypatch)
    model = convcore.models.lenet(rng=0)
    x, y = rng.random((8, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 8)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.01)
    lenet_step(model, opt, x, y)
    # the first conv is not asked for its input gradient; the second is
    assert spy.calls == [dict(input_grad=True, weight_grad=True, bias_grad=True),
                         dict(input_grad=False, weight_grad=True, bias_grad=True)]
    model[0].freeze()
    model[3].weight.requires_grad = False
    frozen = {k: v.copy() for k, v in model.state_dict().items() if k.startswith(("0.", "3.weight"))}
    spy.calls.clear()
    for _ in range(3):
        lenet_step(model, opt, x, y)
    assert spy.calls == [dict(input_grad=False, weight_grad=False, bias_grad=True)] * 3  # conv 0: no backward
    assert model[0].weight.grad is None and model[3].weight.grad is None
    for k, v in frozen.items():
        np.testing.assert_array_equal(model.state_dict()[k], v)
    model[3].freeze()
    spy.calls.clear()
    lenet_step(model, opt, x, y)
    assert spy.calls == []  # a fully frozen conv prefix costs no backward at all
    model.unfreeze()
    lenet_step(model, opt, x, y)
    assert not np.array_equal(model.state_dict()["0.weight"], frozen["0.weight"])


def test_input_gradient_available_on_request(rng):
    model = convcore.models.lenet(rng=0).freeze().eval()
    x = rng.random((2, 1, 28, 28), dtype=np.float32)
    model(x)
    assert model.backward(np.ones((2, 10), np.float32)) is None  # by default: no input gradient
    g = model.backward(np.ones((2, 10), np.float32), need_input_grad=True)
    assert g.shape == x.shape and np.abs(g).sum() > 0


def test_gradients_accumulate_until_zero_grad(rng):
    lin = nn.Linear(3, 2, rng=0, dtype=np.float64)
    x = rng.standard_normal((4, 3))
    lin(x)
    lin.backward(np.ones((4, 2)))
    g1 = lin.weight.grad.copy()
    lin(x)
    lin.backward(np.ones((4, 2)))
    np.testing.assert_allclose(lin.weight.grad, 2 * g1)
    lin.zero_grad()
    assert lin.weight.grad is None


def test_no_grad_caches_nothing_and_backward_fails_clearly(rng):
    model = nn.Sequential(nn.Conv2d(1, 2, 3, rng=0), nn.ReLU(), nn.Flatten())
    x = rng.random((2, 1, 5, 5), dtype=np.float32)
    model(x)
    with convcore.no_grad():
        y = model(x)
    assert model._calls.last is convcore.nn._record.NO_GRAD  # nothing recorded
    with pytest.raises(RuntimeError, match="no_grad"):
        model.backward(np.ones_like(y))


def test_no_grad_is_thread_local():
    seen = {}
    inside = threading.Event()
    done = threading.Event()

    def worker():
        with convcore.no_grad():
            inside.set()
            done.wait(5)

    t = threading.Thread(target=worker)
    t.start()
    inside.wait(5)
    seen["main"] = convcore.is_grad_enabled()
    done.set()
    t.join()
    assert seen["main"] is True


def test_concurrent_inference_matches_serial(rng):
    model = convcore.models.lenet(rng=0)
    xs = [rng.random((16, 1, 28, 28), dtype=np.float32) for _ in range(4)]
    serial = [convcore.predict(model, x) for x in xs]
    results = [None] * 4

    def run(i):
        for _ in range(3):
            results[i] = convcore.predict(model, xs[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for a, b in zip(results, serial):
        np.testing.assert_array_equal(a, b)


def test_module_api(rng):
    model = nn.Sequential(nn.Conv2d(1, 4, 3, rng=0), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Sequential(nn.Flatten(), nn.Linear(4 * 4 * 4, 3, rng=0)))
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "3.1.weight", "3.1.bias"]
    assert set(model.state_dict()) == set(names) | {"1.running_mean", "1.running_var", "1.num_batches_tracked"}
    assert model.train(False) is model and not model[3][1].training
    with pytest.raises(TypeError):
        model.train("yes")
    sub = model[:2]
    assert isinstance(sub, nn.Sequential) and sub[0] is model[0]
    assert len(model) == 4 and model[-1] is model[3]
    assert "trainable" in repr(model) and "params" in repr(model[0])
    summary = model.summary((2, 1, 6, 6))
    assert "(2, 3)" in summary and "buffer" in summary
    assert model.freeze() is model and not model.trainable and model.unfreeze().trainable
    with pytest.raises(KeyError, match="missing keys"):
        model.load_state_dict({"0.weight": model[0].weight.data})
    with pytest.raises(ValueError, match="shape"):
        sd = model.state_dict()
        sd["0.weight"] = np.zeros((1, 1, 1, 1))
        model.load_state_dict(sd)


def test_layer_input_errors():
    with pytest.raises(ValueError, match=r"Linear: expected input of shape \(N, 4\)"):
        nn.Linear(4, 2)(np.zeros((3, 5), np.float32))
    with pytest.raises(TypeError, match="Conv2d: x must be float32 or float64"):
        nn.Conv2d(1, 1, 1)(np.zeros((1, 1, 2, 2), np.int64))
    with pytest.raises(ValueError, match="groups=2 must divide"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="p must be a probability"):
        nn.Dropout(1.0)


def test_optimizer_hand_computed_and_skips_frozen():
    p = nn.Parameter(np.array([1.0, 2.0]))
    q = nn.Parameter(np.array([5.0]), requires_grad=False)
    opt = optim.SGD([p, q], lr=0.1, momentum=0.9)
    p.grad, q.grad = np.array([1.0, -1.0]), np.array([3.0])
    opt.step()
    np.testing.assert_allclose(p.data, [0.9, 2.1])
    p.grad = np.array([1.0, -1.0])
    opt.step()  # buf = 0.9 * 1 + 1 = 1.9
    np.testing.assert_allclose(p.data, [0.9 - 0.19, 2.1 + 0.19])
    np.testing.assert_array_equal(q.data, [5.0])
    assert 1 not in opt.state
    a = nn.Parameter(np.array([1.0]))
    adam = optim.Adam([a], lr=0.1)
    a.grad = np.array([2.0])
    adam.step()  # first Adam step moves by lr * sign(g)
    np.testing.assert_allclose(a.data, [0.9], rtol=1e-6)


def test_diverging_training_stops_with_clear_error():
    p = nn.Parameter(np.array([1.0]))
    opt = optim.SGD([p], lr=1e308)
    p.grad = np.array([1e10])
    with pytest.raises(FloatingPointError, match="diverged"):
        opt.step()
    assert p.data[0] == 1.0  # the bad update was not written


def test_losses_are_finite_for_huge_logits():
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 5e3]])
    loss = nn.CrossEntropyLoss()
    value = loss(z, np.array([1, 0]))
    assert np.isfinite(value) and np.isfinite(loss.backward()).all()
    soft = nn.Softmax()(z)
    assert np.isfinite(soft).all() and np.allclose(soft.sum(1), 1)
    b = nn.BCEWithLogitsLoss()
    assert np.isfinite(b(z, np.ones_like(z))) and np.isfinite(b.backward()).all()


@pytest.mark.parametrize("loss,target", [
    (lambda: nn.CrossEntropyLoss(label_smoothing=0.1), lambda rng: rng.integers(0, 4, 5)),
    (lambda: nn.BCEWithLogitsLoss(reduction="sum"), lambda rng: rng.random((5, 4))),
    (lambda: nn.MSELoss(), lambda rng: rng.standard_normal((5, 4))),
])
def test_loss_gradients(loss, target, rng):
    z = rng.standard_normal((5, 4))
    tgt = target(rng)
    fn = loss()
    fn(z, tgt)
    g = fn.backward()
    num = numerical_grad(lambda v: np.array(fn(v, tgt)), z.copy(), np.array(1.0))
    np.testing.assert_allclose(g, num, atol=1e-6)
