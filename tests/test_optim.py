"""Optimizers with parameter groups and state_dict round trips, learning-rate schedulers, gradient
clipping and nn.init, against torch (float64); the all-or-nothing step (issues 16 and 17)."""

import math
import signal

import numpy as np
import pytest

from convcore import nn, optim
from convcore.nn import init, utils
from convcore.optim import lr_scheduler as S

torch = pytest.importorskip("torch")
T = torch.optim.lr_scheduler


def params_pair(rng, shapes=((3, 4), (5,), (2, 2, 3))):
    data = [rng.standard_normal(s) for s in shapes]
    return [nn.Parameter(d.copy()) for d in data], [torch.nn.Parameter(torch.tensor(d)) for d in data]


def to_numpy_state(sd):
    """torch's optimizer state_dict with its tensors as arrays (what convcore loads)."""
    return {"state": {k: {n: (v.numpy() if hasattr(v, "numpy") else v) for n, v in st.items()}
                      for k, st in sd["state"].items()},
            "param_groups": [dict(g) for g in sd["param_groups"]]}


OPTIMIZERS = [
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
     dict(lr=0.3, momentum=0.5, dampening=0.1, nesterov=False)),
    ("SGD", dict(lr=0.05), dict(lr=0.2, weight_decay=0.1, maximize=True)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True), dict(lr=0.05, betas=(0.8, 0.99))),
    ("AdamW", dict(lr=0.01), dict(lr=0.05, weight_decay=0.3, eps=1e-6)),
    ("RMSprop", dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.01),
     dict(lr=0.02, alpha=0.9, centered=False, momentum=0.0)),
    ("RMSprop", dict(lr=0.01), dict(lr=0.001, centered=True)),
]


@pytest.mark.parametrize("name,kw,group2", OPTIMIZERS, ids=[f"{o[0]}-{i}" for i, o in enumerate(OPTIMIZERS)])
def test_optimizer_groups_and_state_dict_match_torch(name, kw, group2, rng):
    ps, ts = params_pair(rng)
    ours = getattr(optim, name)([{"params": ps[:2]}, {"params": ps[2:], **group2}], **kw)
    theirs = getattr(torch.optim, name)([{"params": ts[:2]}, {"params": ts[2:], **group2}], **kw)
    assert [g["lr"] for g in ours.param_groups] == [g["lr"] for g in theirs.param_groups]
    worst = 0.0
    for step in range(8):
        for p, t in zip(ps, ts):
            g = rng.standard_normal(p.shape)
            p.grad, t.grad = g.copy(), torch.tensor(g)
        ours.step()
        theirs.step()
        if step == 2:   # our state -> a fresh optimizer
            saved = ours.state_dict()
            ours = getattr(optim, name)([{"params": ps[:2]}, {"params": ps[2:]}], lr=1.0)
            ours.load_state_dict(saved)
        if step == 5:   # torch's state, tensors converted, loads too
            ours = getattr(optim, name)([{"params": ps[:2]}, {"params": ps[2:]}], lr=1.0)
            ours.load_state_dict(to_numpy_state(theirs.state_dict()))
        worst = max(worst, max(float(np.abs(p.data - t.detach().numpy()).max()) for p, t in zip(ps, ts)))
    assert worst <= 1e-12, worst
    sd = ours.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert set(sd["state"]) == set(theirs.state_dict()["state"])
    for i, st in sd["state"].items():
        assert set(st) <= set(theirs.state_dict()["state"][i]) | {"momentum_buffer"}


def test_state_dict_is_a_copy_and_load_checks_structure(rng):
    ps, _ = params_pair(rng)
    opt = optim.Adam(ps, lr=0.1)
    for p in ps:
        p.grad = np.ones_like(p.data)
    opt.step()
    sd = opt.state_dict()
    sd["state"][0]["exp_avg"][...] = 99
    assert not (opt.state[0]["exp_avg"] == 99).any()
    other = optim.Adam(ps[:2], lr=0.1)
    with pytest.raises(ValueError, match="parameter group 0 has 3 parameters in the state and 2 in the optimizer"):
        other.load_state_dict(opt.state_dict())
    bad = opt.state_dict()
    bad["state"][1]["exp_avg"] = np.zeros(7)
    before = {k: v.copy() for k, v in opt.state[1].items() if isinstance(v, np.ndarray)}
    with pytest.raises(ValueError, match=r"state\[1\]\['exp_avg'\] has shape \(7,\)"):
        opt.load_state_dict(bad)
    np.testing.assert_array_equal(opt.state[1]["exp_avg"], before["exp_avg"])   # a failure changes nothing


def test_groups_validate_like_torch(rng):
    ps, _ = params_pair(rng)
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        optim.SGD([{"params": ps[:2]}, {"params": ps[1:]}], lr=0.1)
    with pytest.raises(ValueError, match=r"SGD: lr must be >= 0.0; received lr=-1"):
        optim.SGD(ps, lr=-1)
    with pytest.raises(ValueError, match=r"Adam: betas\[0\] must be in \[0.0, 1.0\); received betas\[0\]=1.0"):
        optim.Adam(ps, betas=(1.0, 0.9))
    with pytest.raises(TypeError, match=r"params\[0\] must be a convcore.nn.Parameter"):
        optim.SGD([np.zeros(3)], lr=0.1)
    opt = optim.SGD(ps[:1], lr=0.1)
    opt.add_param_group({"params": ps[1:], "lr": 0.01})
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01] and opt.params == ps
    opt.lr = 0.5   # the older single-rate attribute sets every group
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.5] and opt.lr == 0.5


def test_step_is_all_or_nothing(rng):
    ps, _ = params_pair(rng)
    opt = optim.Adam(ps, lr=0.1)
    for p in ps:
        p.grad = np.ones_like(p.data)
    opt.step()
    before = [p.data.copy() for p in ps], {i: {k: np.copy(v) for k, v in st.items()} for i, st in opt.state.items()}
    for p in ps:
        p.grad = np.ones_like(p.data)
    ps[2].grad[0, 0, 0] = np.nan   # the last parameter's update is NaN: nothing may change, not even the first's
    with pytest.raises(FloatingPointError, match=r"the gradient of params\[2\] .* is not finite"):
        opt.step()
    for p, b in zip(ps, before[0]):
        np.testing.assert_array_equal(p.data, b)
    for i, st in opt.state.items():
        for k, v in st.items():
            np.testing.assert_array_equal(v, before[1][i][k])
    # a finite gradient whose update overflows float32: reported as divergence, nothing written
    p = nn.Parameter(np.array([1.0], np.float32))
    q = nn.Parameter(np.array([1.0], np.float32))
    sgd = optim.SGD([q, p], lr=1e30)
    q.grad, p.grad = np.array([1.0], np.float32), np.array([1e10], np.float32)
    with pytest.raises(FloatingPointError, match="diverged"):
        sgd.step()
    assert q.data[0] == 1.0 and p.data[0] == 1.0


def test_ctrl_c_during_the_writes_is_delivered_after_the_last_one(monkeypatch, rng):
    """A SIGINT arriving between two parameter writes does not leave a half-applied step."""
    from convcore.optim import optimizer as module

    ps, _ = params_pair(rng)
    opt = optim.SGD(ps, lr=0.1, momentum=0.9)
    for p in ps:
        p.grad = np.ones_like(p.data)
    expected = [p.data - 0.1 for p in ps]
    real = np.copyto
    calls = []

    def copyto(dst, src, *args, **kwargs):
        calls.append(1)
        real(dst, src, *args, **kwargs)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)   # Ctrl-C right after the first write

    monkeypatch.setattr(module.np, "copyto", copyto)
    with pytest.raises(KeyboardInterrupt):
        opt.step()
    monkeypatch.setattr(module.np, "copyto", real)
    assert len(calls) == 3
    for p, e in zip(ps, expected):
        np.testing.assert_array_equal(p.data, e)
    assert len(opt.state) == 3 and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_frozen_and_gradless_parameters_are_skipped(rng):
    p, q = nn.Parameter(np.ones(2)), nn.Parameter(np.ones(2), requires_grad=False)
    r = nn.Parameter(np.ones(2))
    opt = optim.RMSprop([p, q, r], lr=0.1, momentum=0.9)
    p.grad, q.grad = np.ones(2), np.ones(2)
    opt.step()
    np.testing.assert_array_equal(q.data, 1.0)
    np.testing.assert_array_equal(r.data, 1.0)
    assert set(opt.state) == {0}


# ---------------------------------------------------------------------------------------------
# schedulers


def run_schedule(make_ours, make_theirs, steps=40, metrics=None, opt=("SGD", dict(lr=0.1, momentum=0.9))):
    name, kw = opt
    p, t = nn.Parameter(np.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    ours_opt = getattr(optim, name)([{"params": [p]}, {"params": [nn.Parameter(np.zeros(1))], "lr": 0.03}], **kw)
    theirs_opt = getattr(torch.optim, name)([{"params": [t]}, {"params": [torch.nn.Parameter(torch.zeros(1))],
                                                                "lr": 0.03}], **kw)
    ours, theirs = make_ours(ours_opt), make_theirs(theirs_opt)
    seq_ours, seq_theirs, mom_ours, mom_theirs = [], [], [], []
    for i in range(steps):
        seq_ours.append(ours.get_last_lr())
        seq_theirs.append(theirs.get_last_lr())
        key = "betas" if "betas" in ours_opt.param_groups[0] else "momentum"
        mom_ours.append(ours_opt.param_groups[0][key])
        mom_theirs.append(theirs_opt.param_groups[0][key])
        theirs_opt.step()
        if metrics is None:
            ours.step()
            theirs.step()
        else:
            ours.step(metrics[i])
            theirs.step(metrics[i])
        if i == steps // 2:   # a state_dict round trip midway
            state = ours.state_dict()
            ours.load_state_dict(state)
    return seq_ours, seq_theirs, mom_ours, mom_theirs


PLATEAU = [1.0, 0.9, 0.95, 0.95, 0.95, 0.8, 0.8, 0.81, 0.8, 0.8, 0.8, 0.8, 0.8, 0.7] + [0.7] * 26
SCHEDULES = {
    "StepLR": (lambda o: S.StepLR(o, 3, 0.5), lambda o: T.StepLR(o, 3, 0.5), {}),
    "MultiStepLR": (lambda o: S.MultiStepLR(o, [2, 5, 5, 9], 0.5), lambda o: T.MultiStepLR(o, [2, 5, 5, 9], 0.5), {}),
    "ExponentialLR": (lambda o: S.ExponentialLR(o, 0.9), lambda o: T.ExponentialLR(o, 0.9), {}),
    "CosineAnnealingLR": (lambda o: S.CosineAnnealingLR(o, 7, 0.01), lambda o: T.CosineAnnealingLR(o, 7, 0.01), {}),
    "LambdaLR": (lambda o: S.LambdaLR(o, lambda e: 0.95**e), lambda o: T.LambdaLR(o, lambda e: 0.95**e), {}),
    "MultiplicativeLR": (lambda o: S.MultiplicativeLR(o, lambda e: 0.9), lambda o: T.MultiplicativeLR(o, lambda e: 0.9),
                         {}),
    "LinearLR": (lambda o: S.LinearLR(o, 0.1, 1.0, 5), lambda o: T.LinearLR(o, 0.1, 1.0, 5), {}),
    "ConstantLR": (lambda o: S.ConstantLR(o, 0.5, 4), lambda o: T.ConstantLR(o, 0.5, 4), {}),
    "OneCycleLR": (lambda o: S.OneCycleLR(o, [1.0, 0.3], total_steps=40),
                   lambda o: T.OneCycleLR(o, [1.0, 0.3], total_steps=40), {}),
    "OneCycleLR-three-phase-linear-Adam": (
        lambda o: S.OneCycleLR(o, 0.5, epochs=4, steps_per_epoch=10, three_phase=True, anneal_strategy="linear"),
        lambda o: T.OneCycleLR(o, 0.5, epochs=4, steps_per_epoch=10, three_phase=True, anneal_strategy="linear"),
        dict(opt=("Adam", dict(lr=0.1)))),
    "ReduceLROnPlateau": (lambda o: S.ReduceLROnPlateau(o, patience=2, cooldown=1, factor=0.5),
                          lambda o: T.ReduceLROnPlateau(o, patience=2, cooldown=1, factor=0.5),
                          dict(metrics=PLATEAU)),
    "ReduceLROnPlateau-max-abs": (
        lambda o: S.ReduceLROnPlateau(o, mode="max", threshold_mode="abs", threshold=0.05, patience=1,
                                      min_lr=[0.01, 0.02]),
        lambda o: T.ReduceLROnPlateau(o, mode="max", threshold_mode="abs", threshold=0.05, patience=1,
                                      min_lr=[0.01, 0.02]),
        dict(metrics=[-v for v in PLATEAU])),
}


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_schedulers_match_torch_exactly(name):
    make_ours, make_theirs, kw = SCHEDULES[name]
    ours, theirs, mom_ours, mom_theirs = run_schedule(make_ours, make_theirs, **kw)
    assert ours == theirs   # the same float operations: bitwise equal sequences
    assert mom_ours == [tuple(m) if isinstance(m, (tuple, list)) else m for m in mom_theirs]
    assert len({tuple(v) for v in ours}) > 1


def test_scheduler_state_dict_resumes(rng):
    opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1)
    sched = S.CosineAnnealingLR(opt, T_max=10)
    for _ in range(4):
        sched.step()
    state = sched.state_dict()
    assert "optimizer" not in state and state["last_epoch"] == 4
    opt2 = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1)
    opt2.load_state_dict(opt.state_dict())
    sched2 = S.CosineAnnealingLR(opt2, T_max=10)
    sched2.load_state_dict(state)
    for _ in range(3):
        sched.step()
        sched2.step()
    assert sched.get_last_lr() == sched2.get_last_lr()
    with pytest.raises(ValueError, match="OneCycleLR: stepped 4 times, more than total_steps=3"):
        one = S.OneCycleLR(optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1, momentum=0.9), 1.0, total_steps=3)
        for _ in range(4):
            one.step()
    with pytest.raises(ValueError, match="cycle_momentum=True needs an optimizer with momentum or betas"):
        S.OneCycleLR(_NoMomentum([nn.Parameter(np.zeros(1))]), 1.0, total_steps=3)
    with pytest.raises(TypeError, match="optimizer must be a convcore.optim.Optimizer"):
        S.StepLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1), 2)


class _NoMomentum(optim.Optimizer):
    def __init__(self, params):
        super().__init__(params, dict(lr=0.1))

    def _update(self, p, grad, group, state):
        return p.data - group["lr"] * grad, {}


# ---------------------------------------------------------------------------------------------
# clipping


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf, "inf"])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, rng):
    ps, ts = params_pair(rng)
    ps.append(nn.Parameter(np.zeros(3)))   # no gradient: ignored, as torch
    ts.append(torch.nn.Parameter(torch.zeros(3, dtype=torch.float64)))
    for p, t in zip(ps[:3], ts[:3]):
        g = rng.standard_normal(p.shape) * 3
        p.grad, t.grad = g.copy(), torch.tensor(g)
    total = utils.clip_grad_norm_(ps, max_norm, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(ts, max_norm, float("inf") if norm_type == "inf" else norm_type)
    assert isinstance(total, float) and abs(total - ttotal.item()) <= 1e-12 * ttotal.item()
    for p, t in zip(ps[:3], ts[:3]):
        np.testing.assert_allclose(p.grad, t.grad.numpy(), rtol=1e-13, atol=0)
    assert ps[3].grad is None


def test_clip_grad_value_and_edge_cases(rng):
    ps, ts = params_pair(rng)
    for p, t in zip(ps, ts):
        g = rng.standard_normal(p.shape) * 3
        p.grad, t.grad = g.copy(), torch.tensor(g)
    assert utils.clip_grad_value_(ps, 0.7) is None
    torch.nn.utils.clip_grad_value_(ts, 0.7)
    for p, t in zip(ps, ts):
        np.testing.assert_array_equal(p.grad, t.grad.numpy())
    assert utils.clip_grad_norm_([nn.Parameter(np.zeros(2))], 1.0) == 0.0   # nothing to clip: norm 0, as torch
    p = nn.Parameter(np.zeros(2))
    p.grad = np.array([np.inf, 1.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        utils.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)
    assert utils.clip_grad_norm_(p, 1.0) == math.inf
    model = nn.Linear(3, 2, rng=0)
    vec = utils.parameters_to_vector(model.parameters())
    assert vec.shape == (8,)
    weight = model.weight.data
    utils.vector_to_parameters(vec * 2, model.parameters())
    assert model.weight.data is weight and np.allclose(utils.parameters_to_vector(model.parameters()), vec * 2)


# ---------------------------------------------------------------------------------------------
# init


def test_init_formulas_match_torch():
    for nl, param in [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                      ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)]:
        assert init.calculate_gain(nl, param) == torch.nn.init.calculate_gain(nl, param)
    with pytest.raises(ValueError, match="nonlinearity must be one of"):
        init.calculate_gain("swish")
    w = nn.Parameter(np.zeros((64, 32, 3, 3)))
    assert init._calculate_fan_in_and_fan_out(w.data) == torch.nn.init._calculate_fan_in_and_fan_out(
        torch.zeros(64, 32, 3, 3))


@pytest.mark.parametrize("fn,kw,std", [
    ("kaiming_uniform_", dict(a=math.sqrt(5)), lambda fi, fo: math.sqrt(2 / 6) / math.sqrt(fi)),
    ("kaiming_normal_", dict(mode="fan_out", nonlinearity="relu"), lambda fi, fo: math.sqrt(2 / fo)),
    ("xavier_uniform_", dict(gain=2.0), lambda fi, fo: 2.0 * math.sqrt(2 / (fi + fo))),
    ("xavier_normal_", dict(), lambda fi, fo: math.sqrt(2 / (fi + fo))),
    ("trunc_normal_", dict(std=0.02), lambda fi, fo: 0.02),
])
def test_init_distributions(fn, kw, std):
    shape = (256, 128, 3, 3)
    w = nn.Parameter(np.zeros(shape, np.float32))
    data = w.data
    assert getattr(init, fn)(w, **kw, generator=0) is w and w.data is data   # in place
    fan_in, fan_out = 128 * 9, 256 * 9
    expected = std(fan_in, fan_out)
    assert abs(w.data.std() / expected - 1) < 0.02
    t = torch.empty(shape)
    getattr(torch.nn.init, fn)(t, **kw)
    assert abs(float(t.std()) / float(w.data.std()) - 1) < 0.02   # the same distribution as torch's
    if fn.endswith("uniform_"):
        bound = math.sqrt(3) * expected
        assert w.data.max() <= bound and w.data.min() >= -bound
    if fn == "trunc_normal_":
        assert w.data.min() >= -2 and w.data.max() <= 2


def test_init_deterministic_ones():
    w = np.zeros((4, 6))
    init.orthogonal_(w, generator=1)
    np.testing.assert_allclose(w @ w.T, np.eye(4), atol=1e-12)
    np.testing.assert_array_equal(init.eye_(np.zeros((3, 4))), np.eye(3, 4))
    d = init.dirac_(np.zeros((4, 2, 3, 3)), groups=2)
    assert d[0, 0, 1, 1] == d[1, 1, 1, 1] == d[2, 0, 1, 1] == d[3, 1, 1, 1] == 1 and d.sum() == 4
    np.testing.assert_array_equal(init.constant_(np.zeros(3), 0.5), 0.5)
    a, b = np.zeros(5), np.zeros(5)
    init.normal_(a, generator=3), init.normal_(b, generator=3)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="tensor must be a Parameter or a float ndarray"):
        init.zeros_(np.zeros(3, np.int64))
