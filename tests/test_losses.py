"""Losses against torch in float64 (value and input gradient, every reduction), their edge cases
(masked logits, infinite logits, ignored targets, empty batches) and their errors."""

import math

import numpy as np
import pytest

from convcore import nn

torch = pytest.importorskip("torch")
F = torch.nn.functional

TOL = 1e-12
WORST = {"value": 0.0, "grad": 0.0}


def t(a, grad=False):
    return torch.tensor(a, requires_grad=grad)


def compare(ours, theirs, x, y, ty=None, rng=None):
    """Our loss against torch's on (x, y): value and input gradient, relative to their scale."""
    tx = t(x, True)
    tv = theirs(tx, t(y) if ty is None else ty)
    v = ours(x, y)
    if ours.reduction == "none":
        u = (rng or np.random.default_rng(0)).standard_normal(tv.shape)
        tv.backward(torch.tensor(u))
        g = ours.backward(u)
        ref = tv.detach()
        ev = np.abs(np.asarray(v) - ref.numpy()).max() / max(1.0, float(ref.abs().max())) if v.size else 0.0
    else:
        tv.backward()
        g = ours.backward()
        ev = abs(v - tv.item()) / max(1.0, abs(tv.item()))
    eg = np.abs(g - tx.grad.numpy()).max() / max(1.0, float(tx.grad.abs().max())) if g.size else 0.0
    WORST["value"], WORST["grad"] = max(WORST["value"], ev), max(WORST["grad"], eg)
    assert g.shape == x.shape and g.dtype == x.dtype
    assert ev <= TOL and eg <= TOL, (ev, eg)


REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.15])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [-100, 2])
def test_cross_entropy_class_targets(reduction, smoothing, weighted, ignore, rng):
    w = rng.random(5) + 0.5 if weighted else None
    ours = nn.CrossEntropyLoss(weight=w, ignore_index=ignore, reduction=reduction, label_smoothing=smoothing)
    theirs = torch.nn.CrossEntropyLoss(weight=None if w is None else t(w), ignore_index=ignore, reduction=reduction,
                                       label_smoothing=smoothing)
    compare(ours, theirs, rng.standard_normal((7, 5)) * 3, rng.integers(0, 5, 7), rng=rng)
    compare(ours, theirs, rng.standard_normal((3, 5, 4, 2)), rng.integers(0, 5, (3, 4, 2)), rng=rng)   # (N, K, H, W)
    if reduction != "none":
        compare(ours, theirs, rng.standard_normal(5), np.array(3), rng=rng)   # unbatched (K,)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_probability_targets(reduction, smoothing, weighted, rng):
    w = rng.random(4) + 0.5 if weighted else None
    ours = nn.CrossEntropyLoss(weight=w, reduction=reduction, label_smoothing=smoothing)
    theirs = torch.nn.CrossEntropyLoss(weight=None if w is None else t(w), reduction=reduction,
                                       label_smoothing=smoothing)
    p = rng.random((6, 4))
    compare(ours, theirs, rng.standard_normal((6, 4)), p / p.sum(1, keepdims=True), rng=rng)
    q = rng.random((2, 4, 3, 3))
    compare(ours, theirs, rng.standard_normal((2, 4, 3, 3)), q / q.sum(1, keepdims=True), rng=rng)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss(reduction, weighted, rng):
    w = rng.random(5) + 0.5 if weighted else None
    for ignore in (-100, 1):
        ours = nn.NLLLoss(weight=w, ignore_index=ignore, reduction=reduction)
        theirs = torch.nn.NLLLoss(weight=None if w is None else t(w), ignore_index=ignore, reduction=reduction)
        compare(ours, theirs, rng.standard_normal((8, 5)), rng.integers(0, 5, 8), rng=rng)
        compare(ours, theirs, rng.standard_normal((2, 5, 3, 4)), rng.integers(0, 5, (2, 3, 4)), rng=rng)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_binary_cross_entropy(reduction, rng):
    z = rng.standard_normal((5, 3)) * 4
    y = rng.random((5, 3))
    for w in (None, rng.random(3), rng.random((5, 3))):
        for pw in (None, rng.random(3) * 3):
            ours = nn.BCEWithLogitsLoss(weight=w, reduction=reduction, pos_weight=pw)
            theirs = torch.nn.BCEWithLogitsLoss(weight=None if w is None else t(w), reduction=reduction,
                                                pos_weight=None if pw is None else t(pw))
            compare(ours, theirs, z, y, rng=rng)
        ours, theirs = nn.BCELoss(weight=w, reduction=reduction), torch.nn.BCELoss(
            weight=None if w is None else t(w), reduction=reduction)
        compare(ours, theirs, 1 / (1 + np.exp(-z)), y, rng=rng)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_regression_losses(reduction, rng):
    x, y = rng.standard_normal((6, 3, 2)) * 2, rng.standard_normal((6, 3, 2)) * 2
    x[0, 0, 0] = y[0, 0, 0]   # d = 0: the subgradient torch uses
    cases = [(nn.MSELoss(reduction), torch.nn.MSELoss(reduction=reduction)),
             (nn.L1Loss(reduction), torch.nn.L1Loss(reduction=reduction)),
             (nn.SmoothL1Loss(reduction, beta=0.7), torch.nn.SmoothL1Loss(reduction=reduction, beta=0.7)),
             (nn.SmoothL1Loss(reduction, beta=0.0), torch.nn.SmoothL1Loss(reduction=reduction, beta=0.0)),
             (nn.HuberLoss(reduction, delta=1.3), torch.nn.HuberLoss(reduction=reduction, delta=1.3))]
    for ours, theirs in cases:
        compare(ours, theirs, x, y, rng=rng)


def test_masked_logits_are_finite():
    """A non-target logit of -inf (masked logits) gives probability 0 and a finite loss (issue 17)."""
    z = np.array([[1.0, -math.inf, 0.0], [-math.inf, 2.0, 1.0]])
    y = np.array([0, 2])
    loss = nn.CrossEntropyLoss()
    value, grad = loss(z, y), loss.backward()
    tz = t(z, True)
    tv = F.cross_entropy(tz, torch.tensor(y))
    tv.backward()
    assert np.isfinite(value) and abs(value - tv.item()) < 1e-14
    np.testing.assert_allclose(grad, tz.grad.numpy(), atol=1e-15)
    # smoothing puts mass on the masked class: infinite, as torch; gradients stay finite
    loss = nn.CrossEntropyLoss(label_smoothing=0.1)
    assert loss(z, y) == math.inf and np.isfinite(loss.backward()).all()
    # a probability target of 0 on a masked class: the limit 0 * log 0 = 0 (torch: NaN)
    loss = nn.CrossEntropyLoss()
    p = np.array([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0]])
    tz = t(z, True)
    F.cross_entropy(tz, t(p)).backward()
    assert np.isfinite(loss(z, p))
    np.testing.assert_allclose(loss.backward(), tz.grad.numpy(), atol=1e-15)


def test_bce_with_infinite_logits():
    """Gradients as torch's; values as torch's where torch's are not NaN, else the limit (0 for a
    confident right answer, inf for a confident wrong one)."""
    z = np.array([math.inf, math.inf, math.inf, -math.inf, -math.inf, -math.inf, 3.0])
    y = np.array([0.0, 1.0, 0.5, 0.0, 1.0, 0.5, 1.0])
    for pw in (None, np.array(2.0)):
        ours = nn.BCEWithLogitsLoss(reduction="none", pos_weight=pw)
        tz = t(z, True)
        tv = F.binary_cross_entropy_with_logits(tz, t(y), reduction="none", pos_weight=None if pw is None else t(pw))
        tv.sum().backward()
        v = ours(z, y)
        ref = tv.detach().numpy()
        np.testing.assert_array_equal(v[~np.isnan(ref)], ref[~np.isnan(ref)])
        np.testing.assert_array_equal(v[[1, 3]], [0.0, 0.0])           # torch: NaN
        assert v[5] == math.inf                                           # torch: NaN
        np.testing.assert_array_equal(ours.backward(), tz.grad.numpy())
    huge = np.array([[1e4, -1e4, 0.0]])
    assert np.isfinite(nn.BCEWithLogitsLoss()(huge, np.ones_like(huge)))


def test_ignored_and_empty_batches_as_torch():
    loss = nn.CrossEntropyLoss(ignore_index=1)
    z = np.zeros((2, 3))
    tz = t(z, True)
    tv = F.cross_entropy(tz, torch.tensor([1, 1]), ignore_index=1)
    tv.backward()
    assert math.isnan(loss(z, np.array([1, 1]))) and math.isnan(tv.item())   # 0 / 0, as torch
    np.testing.assert_array_equal(loss.backward(), tz.grad.numpy())            # no gradient
    empty = nn.CrossEntropyLoss()
    assert math.isnan(empty(np.zeros((0, 3)), np.zeros(0, np.int64))) and empty.backward().shape == (0, 3)
    assert nn.CrossEntropyLoss(reduction="sum")(np.zeros((0, 3)), np.zeros(0, np.int64)) == 0.0


def test_backward_grad_argument():
    loss = nn.MSELoss()
    x, y = np.ones((2, 2)), np.zeros((2, 2))
    loss(x, y)
    np.testing.assert_array_equal(loss.backward(3.0), 3 * loss.backward())   # torch's gradient= of a scalar
    per = nn.MSELoss(reduction="none")
    per(x, y)
    np.testing.assert_array_equal(per.backward(), 2 * x)                      # default: the sum's gradient
    with pytest.raises(ValueError, match=r"grad must be an array of the loss's shape \(2, 2\)"):
        per.backward(np.ones(3))
    with pytest.raises(RuntimeError, match="called before the loss was computed"):
        nn.L1Loss().backward()


def test_loss_errors_share_one_style():
    with pytest.raises(ValueError, match="CrossEntropyLoss: reduction must be one of 'mean', 'sum', 'none'; "
                                         "received reduction='avg'"):
        nn.CrossEntropyLoss(reduction="avg")
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0.0, 1.0\); received label_smoothing=1.0"):
        nn.CrossEntropyLoss(label_smoothing=1.0)
    with pytest.raises(TypeError, match="CrossEntropyLoss: input must have dtype float32 or float64; received "
                                        "input.dtype=int64"):
        nn.CrossEntropyLoss()(np.zeros((2, 3), np.int64), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=r"target values must lie in \[0, 3\) \(or -100, the ignore_index\); "
                                         r"received values in \[0, 5\]"):
        nn.CrossEntropyLoss()(np.zeros((2, 3)), np.array([0, 5]))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: target must have shape \(2,\); received "
                                         r"target.shape=\(3,\)"):
        nn.CrossEntropyLoss()(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="probability targets must have the input's shape"):
        nn.CrossEntropyLoss()(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"weight must have one value per class \(3\)"):
        nn.CrossEntropyLoss(weight=np.ones(4))(np.zeros((2, 3)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"MSELoss: target must have the input's shape \(2, 2\)"):
        nn.MSELoss()(np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=r"BCELoss: input must hold probabilities in \[0, 1\]"):
        nn.BCELoss()(np.array([2.0]), np.array([1.0]))


def test_older_positional_forms_still_work():
    assert nn.CrossEntropyLoss("sum", 0.2).reduction == "sum" and nn.CrossEntropyLoss("sum", 0.2).label_smoothing == 0.2
    assert nn.BCEWithLogitsLoss("sum").reduction == "sum" and nn.MSELoss("sum").reduction == "sum"
    assert nn.CrossEntropyLoss(np.ones(3)).weight.shape == (3,)   # torch's first positional: the weight


def test_float32_inputs_give_float32_gradients(rng):
    loss = nn.CrossEntropyLoss()
    z = rng.standard_normal((4, 3)).astype(np.float32)
    loss(z, np.array([0, 1, 2, 0]))
    assert loss.backward().dtype == np.float32


def test_report_worst_errors():
    print(f"losses: worst relative error, value {WORST['value']:.1e}, gradient {WORST['grad']:.1e}")
