"""Convolution and transposed convolution: validate once, plan each pass, run the plan.

``_conv_plan.plan`` chooses a strategy per pass (forward, input gradient, weight gradient) from
the geometry, dtype, groups, backend and the micro-kernel ``convcore._caps`` selected;
``_conv_fused`` runs the float32 strategies on convcore's own GEMM, ``_conv_blas`` the ones on
numpy's BLAS. A gradient not asked for is never planned, let alone computed.
"""

from __future__ import annotations

import numpy as np

from .. import _caps
from .._backend import get_backend
from .._validation import (
    Geometry,
    as_float_array,
    check_flag,
    expect_shape,
    geometry,
    input_shape4,
    padding4,
    pair,
    same_dtype,
)
from . import _conv_blas, _conv_fused
from ._conv_plan import FUSED, choose


def _positive_groups(groups) -> int:
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)):
        raise TypeError(f"groups must be a positive int; received groups={groups!r}")
    if groups < 1:
        raise ValueError(f"groups must be >= 1; received groups={groups}")
    return int(groups)


def _check_groups(groups, c: int, f: int, c_per_group: int, x_shape, w_shape) -> int:
    groups = _positive_groups(groups)
    if c % groups or f % groups:
        raise ValueError(
            f"groups={groups} must divide both the input channels C={c} and the filters F={f}; "
            f"received x.shape={tuple(x_shape)}, weight.shape={tuple(w_shape)}"
        )
    if c_per_group * groups != c:
        raise ValueError(
            f"channel mismatch: weight.shape[1] * groups must equal x.shape[1]; received "
            f"weight.shape={tuple(w_shape)} (C/groups={c_per_group}), groups={groups}, "
            f"x.shape={tuple(x_shape)} (C={c})"
        )
    return groups


def _conv_setup(x, weight, stride, padding, dilation, groups, what):
    x = as_float_array(x, "x", 4)
    weight = as_float_array(weight, "weight", 4)
    same_dtype(x, "x", weight, "weight")
    f, cg, kh, kw = weight.shape
    groups = _check_groups(groups, x.shape[1], f, cg, x.shape, weight.shape)
    geo = geometry(x.shape, (kh, kw), stride, padding, dilation, what=what)
    return x, weight, groups, geo


def conv_output_shape(input_shape, weight_shape, stride=1, padding=0, dilation=1) -> tuple[int, int, int, int]:
    """Shape (N, F, OH, OW) of ``conv2d`` for the given input and weight shapes, without computing it.

    Parameters
    ----------
    input_shape : (N, C, H, W)
    weight_shape : (F, C / groups, KH, KW)
    stride : int or (int, int), default 1
    padding : int, (pad_h, pad_w), (top, bottom, left, right), "valid" or "same", default 0
        "same" keeps ``ceil(H / stride)`` for any stride (TensorFlow's rule; see ``convcore.ops``).
    dilation : int or (int, int), default 1

    Returns
    -------
    (int, int, int, int)

    Raises
    ------
    TypeError
        ``input_shape`` is not 4 ints, or a window argument is malformed.
    ValueError
        A non-positive dimension, a ``weight_shape`` of another length than 4, or a kernel larger
        than the padded input.

    Examples
    --------
    >>> from convcore import ops
    >>> ops.conv_output_shape((8, 3, 32, 32), (16, 3, 3, 3), stride=2, padding=1)
    (8, 16, 16, 16)
    >>> ops.conv_output_shape((1, 3, 7, 7), (4, 3, 3, 3), stride=2, padding="same")
    (1, 4, 4, 4)
    """
    n, c, h, w = input_shape4(input_shape)
    f, _, kh, kw = weight_shape
    geo = geometry((n, c, h, w), (kh, kw), stride, padding, dilation, what="conv2d")
    return (n, f, geo.oh, geo.ow)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """2-D convolution (cross-correlation, as in PyTorch), NCHW.

    ``torch.nn.functional.conv2d``'s semantics and weight layout, plus asymmetric padding
    (top, bottom, left, right) and "same" padding with any stride. The planner (see
    ``convcore.ops``) picks the strategy; the result does not depend on the backend beyond
    rounding.

    Parameters
    ----------
    x : ndarray of shape (N, C, H, W), float32 or float64
    weight : ndarray of shape (F, C / groups, KH, KW), same dtype as ``x``
    bias : ndarray of shape (F,), optional
    stride : int or (int, int), default 1
    padding : int, (pad_h, pad_w), (top, bottom, left, right), "valid" or "same", default 0
        "same" keeps ``ceil(H / stride)`` for any stride (TensorFlow's rule; see ``convcore.ops``).
    dilation : int or (int, int), default 1
    groups : int, default 1
        Split channels and filters into ``groups`` independent convolutions.

    Returns
    -------
    ndarray of shape (N, F, OH, OW), dtype of ``x``

    Raises
    ------
    TypeError
        Non-array or non-float inputs, mismatched dtypes, malformed window arguments.
    ValueError
        Wrong ndim, channel/groups mismatch, kernel larger than the padded input, bad bias shape.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import ops
    >>> rng = np.random.default_rng(0)
    >>> x = rng.random((8, 3, 32, 32), dtype=np.float32)
    >>> w = rng.random((16, 3, 3, 3), dtype=np.float32)
    >>> ops.conv2d(x, w, padding="same").shape
    (8, 16, 32, 32)
    >>> ops.conv2d(x, w, stride=2, padding=(0, 1, 0, 1)).shape   # asymmetric padding
    (8, 16, 16, 16)
    >>> ops.conv2d(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), bias=np.array([0.5])).tolist()
    [[[[9.5, 9.5], [9.5, 9.5]]]]
    """
    x, weight, groups, geo = _conv_setup(x, weight, stride, padding, dilation, groups, "conv2d")
    if bias is not None:
        bias = as_float_array(bias, "bias", 1)
        same_dtype(x, "x", bias, "bias")
        expect_shape(bias, "bias", (weight.shape[0],), f"one value per filter, weight.shape={weight.shape}")
    y = np.empty((geo.n, weight.shape[0], geo.oh, geo.ow), dtype=x.dtype)
    _conv_forward(x, weight, bias, geo, groups, y)
    return y


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1,
                    input_grad=True, weight_grad=True, bias_grad=True):
    """Gradients of ``conv2d`` with respect to its input, weight and bias.

    Parameters
    ----------
    grad_out : ndarray of shape (N, F, OH, OW)
        Gradient of the loss with respect to the convolution's output.
    x, weight, stride, padding, dilation, groups
        The arguments of the forward call.
    input_grad, weight_grad, bias_grad : bool
        Which gradients to compute. A gradient not asked for is returned as ``None`` and costs
        nothing (a frozen layer asks for no weight gradient; a first layer for no input gradient).

    Returns
    -------
    grad_x : ndarray shaped like ``x``, or None
    grad_weight : ndarray shaped like ``weight``, or None
    grad_bias : ndarray of shape (F,), or None

    Raises
    ------
    TypeError
        As ``conv2d``; a ``grad_out`` of another dtype than ``x``; a flag that is not a bool.
    ValueError
        As ``conv2d``; a ``grad_out`` that is not the shape of the forward's output.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import ops
    >>> x = np.ones((2, 3, 5, 5))
    >>> w = np.ones((4, 3, 3, 3))
    >>> grad_out = np.ones(ops.conv_output_shape(x.shape, w.shape))
    >>> gx, gw, gb = ops.conv2d_backward(grad_out, x, w)
    >>> gx.shape, gw.shape, gb.tolist()
    ((2, 3, 5, 5), (4, 3, 3, 3), [18.0, 18.0, 18.0, 18.0])
    >>> gx, gw, gb = ops.conv2d_backward(grad_out, x, w, input_grad=False, bias_grad=False)
    >>> gx is None, float(gw[0, 0, 0, 0]), gb is None   # 2 images x 3 x 3 positions
    (True, 18.0, True)
    """
    input_grad = check_flag(input_grad, "input_grad")
    weight_grad = check_flag(weight_grad, "weight_grad")
    bias_grad = check_flag(bias_grad, "bias_grad")
    x, weight, groups, geo = _conv_setup(x, weight, stride, padding, dilation, groups, "conv2d_backward")
    grad_out = as_float_array(grad_out, "grad_out", 4)
    same_dtype(x, "x", grad_out, "grad_out")
    f = weight.shape[0]
    expect_shape(grad_out, "grad_out", (geo.n, f, geo.oh, geo.ow),
                 f"the conv2d output for x.shape={x.shape}, weight.shape={weight.shape}")
    gb = grad_out.sum(axis=(0, 2, 3)) if bias_grad else None
    gx = np.empty_like(x) if input_grad else None
    gw = np.zeros_like(weight) if weight_grad else None
    if input_grad or weight_grad:
        _conv_backward(grad_out, x, weight, geo, groups, gx, gw)
    return gx, gw, gb


def _plan(geo: Geometry, weight, dtype, groups: int, pass_: str):
    return choose(geo, weight.shape[0], dtype, groups, _caps.isa(), pass_, get_backend())


def _conv_forward(x, weight, bias, geo: Geometry, groups: int, y: np.ndarray) -> None:
    plan = _plan(geo, weight, x.dtype, groups, "forward")
    if plan.strategy in FUSED:
        _conv_fused.forward(x, weight, bias, geo, y, plan)
    else:
        _conv_blas.forward(x, weight, bias, geo, groups, y, plan)


def _conv_backward(gy, x, weight, geo: Geometry, groups: int, gx, gw) -> None:
    """Fill ``gx`` and/or ``gw`` (either may be None; ``x`` is None when only ``gx`` is asked)."""
    pi = None if gx is None else _plan(geo, weight, gy.dtype, groups, "grad_input")
    pw = None if gw is None else _plan(geo, weight, gy.dtype, groups, "grad_weight")
    if pw is not None and pw.strategy in FUSED:
        _conv_fused.grad_weight(gy, x, geo, gw, pw)
        pw = None
    if pi is not None and pi.strategy in FUSED:
        _conv_fused.grad_input(gy, weight, geo, gx, pi)
        pi = None
    if pi is not None and pw is not None and pi.strategy == pw.strategy:
        _conv_blas.backward(gy, x, weight, geo, groups, gx, gw, pi)   # one pass over the columns
        return
    if pw is not None:
        _conv_blas.backward(gy, x, weight, geo, groups, None, gw, pw)
    if pi is not None:
        _conv_blas.backward(gy, None, weight, geo, groups, gx, None, pi)


# ---------------------------------------------------------------------------------------------
# Transposed convolution: the adjoint of conv2d, built from the same strategies


def _transpose_setup(x, weight, stride, padding, output_padding, dilation, groups, what):
    """Validate and return (x, weight, groups, geo), ``geo`` describing the equivalent conv2d that
    maps the transposed convolution's output (N, C_out, HO, WO) back to its input (N, C_in, H, W)."""
    x = as_float_array(x, "x", 4)
    weight = as_float_array(weight, "weight", 4)
    same_dtype(x, "x", weight, "weight")
    if isinstance(padding, str):
        raise TypeError(f"{what}: padding must be an int, a pair or (top, bottom, left, right); received {padding!r}")
    n, c_in, h, w = x.shape
    if weight.shape[0] != c_in:
        raise ValueError(
            f"channel mismatch: weight.shape[0] must equal x.shape[1] (weight is (C_in, C_out/groups, "
            f"KH, KW)); received weight.shape={weight.shape}, x.shape={x.shape}"
        )
    kh, kw = weight.shape[2:]
    groups = _positive_groups(groups)
    if c_in % groups:
        raise ValueError(
            f"groups={groups} must divide the input channels C_in={c_in}; received x.shape={x.shape}, "
            f"weight.shape={weight.shape}"
        )
    s = pair(stride, "stride")
    d = pair(dilation, "dilation")
    op = pair(output_padding, "output_padding", minimum=0)
    pt, pb, pl, pr = padding4(padding, (kh, kw), s, d, (h, w))
    if op[0] >= max(s[0], d[0]) or op[1] >= max(s[1], d[1]):
        raise ValueError(
            f"output_padding must be smaller than stride or dilation; received output_padding={op}, "
            f"stride={s}, dilation={d}"
        )
    ho = (h - 1) * s[0] - pt - pb + d[0] * (kh - 1) + op[0] + 1
    wo = (w - 1) * s[1] - pl - pr + d[1] * (kw - 1) + op[1] + 1
    if ho < 1 or wo < 1:
        raise ValueError(
            f"{what}: the output would be empty ({ho}x{wo}) for x.shape={x.shape}, "
            f"weight.shape={weight.shape}, padding={(pt, pb, pl, pr)}"
        )
    c_out = weight.shape[1] * groups
    geo = Geometry(n, c_out, ho, wo, kh, kw, s[0], s[1], pt, pb, pl, pr, d[0], d[1], h, w)
    return x, weight, groups, geo


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """2-D transposed convolution ("deconvolution"), PyTorch's semantics and weight layout.

    It is the input gradient of ``conv2d``: each input pixel spreads ``weight`` over a window of
    the output (col2im of ``W^T @ x``).

    Parameters
    ----------
    x : ndarray of shape (N, C_in, H, W)
    weight : ndarray of shape (C_in, C_out / groups, KH, KW)
    bias : ndarray of shape (C_out,), optional
    stride, dilation : int or pair
    padding : int, pair or (top, bottom, left, right); removed from the output's borders
    output_padding : int or pair, smaller than stride or dilation; added to the bottom/right

    groups : int, default 1

    Returns
    -------
    ndarray of shape (N, C_out, HO, WO)
        ``HO = (H - 1) * stride - pad_top - pad_bottom + dilation * (KH - 1) + output_padding + 1``
        (likewise WO).

    Raises
    ------
    TypeError
        Non-array or non-float inputs, mismatched dtypes, malformed window arguments, a string
        ``padding``.
    ValueError
        Wrong ndim, ``weight.shape[0] != C_in``, ``groups`` not dividing ``C_in``,
        ``output_padding`` not smaller than stride or dilation, an empty output, a bad bias shape.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import ops
    >>> x = np.ones((1, 8, 7, 7), np.float32)
    >>> w = np.ones((8, 4, 3, 3), np.float32)
    >>> ops.conv_transpose2d(x, w, stride=2, padding=1).shape
    (1, 4, 13, 13)
    >>> ops.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1).shape   # the inverse of "same", stride 2
    (1, 4, 14, 14)
    """
    x, weight, groups, geo = _transpose_setup(x, weight, stride, padding, output_padding, dilation,
                                              groups, "conv_transpose2d")
    y = np.empty((geo.n, geo.c, geo.h, geo.w), dtype=x.dtype)
    _conv_backward(x, None, weight, geo, groups, y, None)
    if bias is not None:
        bias = as_float_array(bias, "bias", 1)
        same_dtype(x, "x", bias, "bias")
        expect_shape(bias, "bias", (geo.c,), f"one value per output channel, weight.shape={weight.shape}")
        y += bias.reshape(1, -1, 1, 1)
    return y


def conv_transpose2d_backward(grad_out, x, weight, stride=1, padding=0, output_padding=0, dilation=1,
                              groups=1, input_grad=True, weight_grad=True, bias_grad=True):
    """Gradients of ``conv_transpose2d`` with respect to its input, weight and bias.

    The input gradient is a ``conv2d`` of ``grad_out``; a gradient not asked for is returned as
    ``None`` and not computed.

    Parameters
    ----------
    grad_out : ndarray of shape (N, C_out, HO, WO)
        Gradient of the loss with respect to the transposed convolution's output.
    x, weight, stride, padding, output_padding, dilation, groups
        The arguments of the forward call.
    input_grad, weight_grad, bias_grad : bool, default True
        Which gradients to compute.

    Returns
    -------
    grad_x : ndarray shaped like ``x``, or None
    grad_weight : ndarray shaped like ``weight``, or None
    grad_bias : ndarray of shape (C_out,), or None

    Raises
    ------
    TypeError
        As ``conv_transpose2d``; a ``grad_out`` of another dtype than ``x``; a flag that is not a
        bool.
    ValueError
        As ``conv_transpose2d``; a ``grad_out`` that is not the shape of the forward's output.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import ops
    >>> x = np.ones((2, 8, 4, 4))
    >>> w = np.ones((8, 3, 2, 2))
    >>> y = ops.conv_transpose2d(x, w, stride=2)
    >>> gx, gw, gb = ops.conv_transpose2d_backward(np.ones_like(y), x, w, stride=2)
    >>> y.shape, gx.shape, gw.shape, gb.tolist()
    ((2, 3, 8, 8), (2, 8, 4, 4), (8, 3, 2, 2), [128.0, 128.0, 128.0])
    """
    input_grad = check_flag(input_grad, "input_grad")
    weight_grad = check_flag(weight_grad, "weight_grad")
    bias_grad = check_flag(bias_grad, "bias_grad")
    x, weight, groups, geo = _transpose_setup(x, weight, stride, padding, output_padding, dilation,
                                              groups, "conv_transpose2d_backward")
    grad_out = as_float_array(grad_out, "grad_out", 4)
    same_dtype(x, "x", grad_out, "grad_out")
    expect_shape(grad_out, "grad_out", (geo.n, geo.c, geo.h, geo.w),
                 f"the conv_transpose2d output for x.shape={x.shape}, weight.shape={weight.shape}")
    gb = grad_out.sum(axis=(0, 2, 3)) if bias_grad else None
    gx = None
    if input_grad:
        gx = np.empty_like(x)
        _conv_forward(grad_out, weight, None, geo, groups, gx)
    gw = None
    if weight_grad:
        gw = np.zeros_like(weight)
        _conv_backward(x, grad_out, weight, geo, groups, None, gw)
    return gx, gw, gb
