"""The layers added for issue 16 against torch in float64: forward, input gradient and parameter
gradients (<= 1e-10 relative to the values' scale), need-based backward, save/load round trips;
BatchNorm's and Unflatten's edge cases (issue 17)."""

import numpy as np
import pytest

import convcore
from convcore import nn

torch = pytest.importorskip("torch")
tnn = torch.nn

TOL = 1e-10
MAX_ERR: dict = {}   # worst error per quantity, reported by test_report_max_errors


def err(a, b) -> float:
    b = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    if not a.size:
        return 0.0
    scale = max(1.0, float(np.abs(b).max()))
    return float(np.abs(a - b).max()) / scale


def check(name, ours, theirs, shape, rng, params=(), x=None, tol=TOL):
    """Run both layers on one float64 input and an upstream gradient; compare everything."""
    x = rng.standard_normal(shape) if x is None else x
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    y = ours(x)
    g = rng.standard_normal(y.shape)
    ty.backward(torch.tensor(g))
    gx = ours.backward(g, need_input_grad=True)
    errors = {"forward": err(y, ty), "input grad": err(gx, tx.grad)}
    for p_name in params:
        errors[f"grad {p_name}"] = err(getattr(ours, p_name).grad, getattr(theirs, p_name).grad)
    for k, v in errors.items():
        MAX_ERR[(name, k)] = max(MAX_ERR.get((name, k), 0.0), v)
        assert v <= tol, (name, k, v)
    return y


def copy_params(ours, theirs, names):
    with torch.no_grad():
        for n in names:
            getattr(theirs, n).copy_(torch.tensor(getattr(ours, n).data))


def round_trip(layer, x, tmp_path):
    path = tmp_path / "layer.npz"
    convcore.save(layer, path)
    back = convcore.load(path)
    assert type(back) is type(layer) and back.get_config() == layer.get_config()
    with convcore.no_grad():
        np.testing.assert_array_equal(back.eval()(x), layer.eval()(x))
    layer.train()


# ---------------------------------------------------------------------------------------------
# activations


@pytest.mark.parametrize("ours,theirs", [
    (lambda: nn.GELU(), lambda: tnn.GELU()),
    (lambda: nn.GELU(approximate="tanh"), lambda: tnn.GELU(approximate="tanh")),
    (lambda: nn.SiLU(), lambda: tnn.SiLU()),
    (lambda: nn.ELU(), lambda: tnn.ELU()),
    (lambda: nn.ELU(alpha=0.3), lambda: tnn.ELU(alpha=0.3)),
], ids=["gelu", "gelu_tanh", "silu", "elu", "elu_alpha"])
def test_activations_match_torch(ours, theirs, rng, tmp_path):
    layer = ours()
    x = np.concatenate([rng.standard_normal(200) * 4, [0.0, -0.0, 40.0, -40.0, 1e-9, -7.5, 7.5]]).reshape(3, -1)
    check(type(layer).__name__, layer, theirs(), x.shape, rng, x=x)
    assert layer.backward(np.ones_like(x)) is None   # nothing asked: nothing computed
    round_trip(layer, x, tmp_path)
    f32 = layer(x.astype(np.float32))
    assert f32.dtype == np.float32


# ---------------------------------------------------------------------------------------------
# normalization


@pytest.mark.parametrize("shape,normalized,affine,bias", [
    ((4, 6), (6,), True, True),
    ((3, 4, 5, 5), (4, 5, 5), True, True),
    ((2, 3, 7), (7,), True, False),
    ((3, 5), 5, False, True),
])
def test_layer_norm_matches_torch(shape, normalized, affine, bias, rng, tmp_path):
    ours = nn.LayerNorm(normalized, eps=1e-5, elementwise_affine=affine, bias=bias, dtype=np.float64)
    theirs = tnn.LayerNorm(normalized, eps=1e-5, elementwise_affine=affine, bias=bias).double()
    names = [n for n in ("weight", "bias") if getattr(ours, n, None) is not None]
    for n in names:
        getattr(ours, n).data[...] = rng.standard_normal(getattr(ours, n).shape)
    copy_params(ours, theirs, names)
    check("LayerNorm", ours, theirs, shape, rng, names)
    ours.zero_grad()
    round_trip(ours, rng.standard_normal(shape), tmp_path)


@pytest.mark.parametrize("groups,channels,shape", [(2, 4, (3, 4, 5, 5)), (1, 3, (2, 3, 4, 4)), (6, 6, (2, 6, 3, 2)),
                                                   (3, 6, (4, 6))])
def test_group_norm_matches_torch(groups, channels, shape, rng, tmp_path):
    ours = nn.GroupNorm(groups, channels, dtype=np.float64)
    theirs = tnn.GroupNorm(groups, channels).double()
    ours.weight.data[...] = rng.standard_normal(channels)
    ours.bias.data[...] = rng.standard_normal(channels)
    copy_params(ours, theirs, ["weight", "bias"])
    check("GroupNorm", ours, theirs, shape, rng, ["weight", "bias"])
    # the same in eval mode, and a batch of one trains (no batch statistics)
    ours.eval(), theirs.eval()
    check("GroupNorm", ours, theirs, (1,) + shape[1:], rng)
    round_trip(ours, rng.standard_normal(shape), tmp_path)


def test_group_norm_validates():
    with pytest.raises(ValueError, match="num_groups=4 must divide num_channels=6"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match=r"input must be \(N, 6, ...\)"):
        nn.GroupNorm(2, 6)(np.zeros((2, 4, 3, 3), np.float32))
    with pytest.raises(TypeError, match="GroupNorm: input dtype float64 differs from the layer's float32"):
        nn.GroupNorm(2, 6)(np.zeros((2, 6, 3, 3)))


def test_batchnorm_edge_cases_as_torch(rng):
    # an empty batch: empty output, running statistics unchanged (num_batches_tracked counts it, as torch)
    bn = nn.BatchNorm2d(3, dtype=np.float64)
    tb = tnn.BatchNorm2d(3).double()
    x = np.zeros((0, 3, 4, 4))
    y = bn(x)
    tb(torch.tensor(x))
    assert y.shape == x.shape
    np.testing.assert_array_equal(bn.running_mean, tb.running_mean.numpy())
    np.testing.assert_array_equal(bn.running_var, tb.running_var.numpy())
    assert int(bn.num_batches_tracked) == int(tb.num_batches_tracked) == 1
    assert bn.backward(np.zeros_like(y), need_input_grad=True).shape == x.shape
    assert np.isfinite(bn.running_mean).all()
    # one value per channel in training: torch's error, and nothing changed
    for layer, shape in ((nn.BatchNorm1d(3), (1, 3)), (nn.BatchNorm2d(3), (1, 3, 1, 1))):
        before = {k: v.copy() for k, v in layer.state_dict().items()}
        with pytest.raises(ValueError, match="expected more than 1 value per channel when training"):
            layer(np.ones(shape, np.float32))
        for k, v in layer.state_dict().items():
            np.testing.assert_array_equal(v, before[k])
        assert layer.eval()(np.ones(shape, np.float32)).shape == shape   # eval uses running statistics
    # momentum=None: a cumulative average, as torch
    bn, tb = nn.BatchNorm1d(2, momentum=None, dtype=np.float64), tnn.BatchNorm1d(2, momentum=None).double()
    for _ in range(3):
        x = rng.standard_normal((5, 2))
        bn(x), tb(torch.tensor(x))
    np.testing.assert_allclose(bn.running_var, tb.running_var.numpy(), rtol=1e-12)
    with pytest.raises(TypeError, match="BatchNorm2d: input dtype float64 differs from the layer's float32; "
                                        r"convert the input \(x.astype\(np.float32\)\) or the model"):
        nn.BatchNorm2d(2)(np.zeros((2, 2, 3, 3)))


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_matches_torch(train, rng):
    ours, theirs = nn.BatchNorm2d(3, dtype=np.float64), tnn.BatchNorm2d(3).double()
    ours.weight.data[...] = rng.standard_normal(3)
    copy_params(ours, theirs, ["weight", "bias"])
    ours.train(train), theirs.train(train)
    check("BatchNorm2d", ours, theirs, (4, 3, 3, 2), rng, ["weight", "bias"])
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# pooling, convolution padding modes, up-sampling


@pytest.mark.parametrize("out,shape", [((3, 2), (2, 3, 7, 5)), (4, (2, 2, 9, 9)), ((5, 7), (1, 2, 5, 7)),
                                       ((1, 1), (2, 3, 4, 6)), ((None, 2), (2, 1, 5, 4)), ((6, 6), (1, 1, 3, 4))])
def test_adaptive_max_pool_matches_torch(out, shape, rng, tmp_path):
    ours = nn.AdaptiveMaxPool2d(out, return_indices=True)
    theirs = tnn.AdaptiveMaxPool2d(out, return_indices=True)
    x = rng.standard_normal(shape)
    x.ravel()[::3] = np.round(x.ravel()[::3])   # ties, which must go to torch's (first) maximum
    y, idx = ours(x)
    ty, tidx = theirs(torch.tensor(x))
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    check("AdaptiveMaxPool2d", nn.AdaptiveMaxPool2d(out), tnn.AdaptiveMaxPool2d(out), shape, rng, x=x)
    round_trip(nn.AdaptiveMaxPool2d(out), x, tmp_path)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize("kw", [dict(padding=1), dict(padding=(2, 1), stride=2), dict(padding="same", dilation=2),
                                dict(padding=(1, 2), groups=2, bias=False)])
def test_conv_padding_modes_match_torch(mode, kw, rng, tmp_path):
    ours = nn.Conv2d(4, 6, 3, padding_mode=mode, dtype=np.float64, rng=0, **kw)
    theirs = tnn.Conv2d(4, 6, 3, padding_mode=mode, **kw).double()
    names = ["weight"] + (["bias"] if ours.bias is not None else [])
    copy_params(ours, theirs, names)
    check(f"Conv2d({mode})", ours, theirs, (2, 4, 7, 6), rng, names)
    ours.freeze()
    x = rng.standard_normal((2, 4, 7, 6))
    ours(x)
    assert ours.backward(np.ones(ours(x).shape)) is None   # frozen and no input gradient asked: nothing
    ours.unfreeze()
    round_trip(ours, x, tmp_path)


def test_conv_padding_mode_limits():
    with pytest.raises(ValueError, match="padding_mode must be one of 'zeros', 'reflect', 'replicate', 'circular'"):
        nn.Conv2d(1, 1, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="padding_mode='reflect' needs each padding below the input's size"):
        nn.Conv2d(1, 1, 3, padding=3, padding_mode="reflect")(np.zeros((1, 1, 3, 3), np.float32))
    with pytest.raises(ValueError, match="padding_mode='circular' needs each padding at most the input's size"):
        nn.Conv2d(1, 1, 3, padding=4, padding_mode="circular")(np.zeros((1, 1, 3, 3), np.float32))
    assert nn.Conv2d(1, 1, 3, padding=5, padding_mode="replicate")(np.zeros((1, 1, 2, 2), np.float32)).shape == (
        1, 1, 10, 10)
    assert "padding_mode" not in nn.Conv2d(1, 1, 3).get_config()   # default configs unchanged


@pytest.mark.parametrize("kw,shape", [
    (dict(scale_factor=2, mode="bilinear"), (2, 3, 4, 5)),
    (dict(scale_factor=2, mode="bilinear", align_corners=True), (2, 3, 4, 5)),
    (dict(size=(7, 11), mode="bilinear"), (1, 2, 4, 5)),
    (dict(size=(7, 11), mode="bilinear", align_corners=True), (1, 2, 4, 5)),
    (dict(size=(3, 2), mode="bilinear"), (1, 2, 6, 5)),        # down-sampling
    (dict(scale_factor=(1.5, 2.5), mode="bilinear"), (1, 2, 4, 3)),
    (dict(size=(1, 1), mode="bilinear", align_corners=True), (1, 1, 3, 3)),
    (dict(size=(20, 14), mode="nearest"), (1, 2, 14, 7)),      # ratios where torch's float32 index matters
    (dict(scale_factor=(1.5, 3), mode="nearest"), (1, 2, 4, 3)),
    (dict(scale_factor=3), (2, 2, 3, 2)),
])
def test_upsample_matches_torch(kw, shape, rng, tmp_path):
    ours = nn.Upsample(**kw)
    theirs = tnn.Upsample(**kw)
    check("Upsample", ours, theirs, shape, rng)
    round_trip(ours, rng.standard_normal(shape), tmp_path)


def test_upsample_validates():
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        nn.Upsample()
    with pytest.raises(ValueError, match="align_corners only applies to mode='bilinear'"):
        nn.Upsample(2, align_corners=True)
    with pytest.raises(ValueError, match="mode must be one of 'nearest', 'bilinear'"):
        nn.Upsample(2, mode="bicubic")
    assert nn.Upsample(2).get_config() == {"scale_factor": [2, 2], "mode": "nearest"}   # older files' config


def test_bilinear_backward_is_the_exact_adjoint(rng):
    up = nn.Upsample(size=(9, 7), mode="bilinear")
    x = rng.standard_normal((2, 3, 4, 5))
    y = up(x)
    g = rng.standard_normal(y.shape)
    gx = up.backward(g, need_input_grad=True)
    assert abs(np.vdot(y, g) - np.vdot(x, gx)) < 1e-12 * abs(np.vdot(y, g))


# ---------------------------------------------------------------------------------------------
# Unflatten, dtype conversion, dtype mixes


def test_unflatten_bad_dim_is_a_value_error():
    u = nn.Unflatten(3, (2, 3))
    with pytest.raises(ValueError, match=r"Unflatten: dim must be in \[-2, 2\) for an input of 2 dimensions; "
                                         "received dim=3"):
        u(np.zeros((2, 6), np.float32))
    with pytest.raises(ValueError, match="cannot be split into shape"):
        nn.Unflatten(1, (4, 2))(np.zeros((2, 6), np.float32))
    assert nn.Unflatten(-1, (2, -1))(np.zeros((2, 6), np.float32)).shape == (2, 2, 3)
    with pytest.raises(TypeError, match="dim must be an int"):
        nn.Unflatten("1", (2, 3))


def test_to_float_double(rng):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.GroupNorm(1, 2, affine=False), nn.GELU(),
                          nn.Flatten(), nn.LayerNorm(8, elementwise_affine=False))
    assert model.double() is model
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model[1].running_mean.dtype == np.float64
    x = rng.standard_normal((2, 1, 4, 4))
    assert model(x).dtype == np.float64
    assert model.to("float32").float() is model and model(x.astype(np.float32)).dtype == np.float32
    assert model.to("cpu") is model and model.to(np.float64, device="cpu")(x).dtype == np.float64
    with pytest.raises(TypeError, match="dtype must be float32 or float64; received dtype=int32"):
        model.to(np.int32)
    with pytest.raises(TypeError, match="CPU only"):
        model.to("cuda")


def test_dtype_mix_names_the_layer_and_the_fix(rng):
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(TypeError, match=r"Conv2d: input dtype float64 differs from the layer's float32; convert the "
                                        r"input \(x.astype\(np.float32\)\) or the model \(model.to\(np.float64\)\)"):
        model(rng.standard_normal((2, 1, 4, 4)))
    with pytest.raises(TypeError, match="Linear: input dtype float64 differs from the layer's float32"):
        nn.Linear(3, 2)(np.zeros((1, 3)))


def test_new_layers_are_registered_and_exported():
    names = set(nn.registered())
    for cls in ("GELU", "SiLU", "ELU", "LayerNorm", "GroupNorm", "AdaptiveMaxPool2d"):
        assert cls in names and cls in nn.__all__


def test_report_max_errors():
    """Not a check: prints the worst float64 errors seen above (pytest -s shows them)."""
    for (name, what), v in sorted(MAX_ERR.items()):
        print(f"{name:24s} {what:14s} {v:.2e}")


@pytest.mark.parametrize("make,shape", [
    (lambda: nn.LayerNorm(6, dtype=np.float64), (3, 6)),
    (lambda: nn.GroupNorm(2, 4, dtype=np.float64), (2, 4, 3, 3)),
    (lambda: nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect", dtype=np.float64), (2, 2, 5, 5)),
    (lambda: nn.BatchNorm1d(4, dtype=np.float64), (5, 4)),
])
def test_need_based_backward_of_parameter_layers(make, shape, rng):
    """Frozen: no parameter gradient; first layer: no input gradient; both: no backward call at all."""
    x = rng.standard_normal(shape)
    layer = make()
    model = nn.Sequential(layer, nn.GELU())
    y = model(x)
    assert model.backward(np.ones_like(y)) is None
    assert all(p.grad is not None for p in layer.parameters())
    model.zero_grad()
    layer.freeze()
    y = model(x)
    gx = model.backward(np.ones_like(y), need_input_grad=True)
    assert gx.shape == x.shape and all(p.grad is None for p in layer.parameters())
    calls = []
    real = type(layer).backward
    type(layer).backward = lambda self, *a: calls.append(1) or real(self, *a)
    try:
        model(x)
        assert model.backward(np.ones_like(y)) is None and calls == []   # a frozen first layer is not visited
    finally:
        type(layer).backward = real


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_gradient_with_infinite_upstream_as_torch(dtype):
    """An inf (or NaN) upstream gradient at an inactive unit is 0 in torch, not inf * 0 = NaN;
    a NaN input passes its gradient (issue 17). Through a model, so the layer path is covered."""
    x = np.array([[-1.0, 2.0, -3.0, 0.0, np.nan, 4.0]], dtype)
    g = np.array([[np.inf, np.inf, np.nan, -np.inf, 5.0, np.nan]], dtype)
    model = nn.Sequential(nn.ReLU())
    model(x)
    ours = model.backward(g, need_input_grad=True)
    tx = torch.tensor(x, requires_grad=True)
    torch.relu(tx).backward(torch.tensor(g))
    np.testing.assert_array_equal(ours, tx.grad.numpy())
