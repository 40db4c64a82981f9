"""The benchmark cases, defined once for ``convcore bench`` and ``benchmarks/`` (float32, NCHW).

Cases (issue 5): convolution shapes L1 L2 V1 R1 P1 S1, each as forward, input gradient and weight
gradient; max-pool shapes A B C, each as forward and backward; the LeNet training step (batch 64,
SGD with momentum) in full, with both conv layers frozen, and as inference; inference with
``convcore.predict`` on LeNet and ResNet-18 (issue 14). Every shape also has a tiny *smoke*
variant with the same kernel size, stride and padding: it checks that the harnesses run, not how
fast anything is.

A ``Spec`` names a case; ``Spec.build()`` makes the inputs and returns a ``Case``: one callable per
contender ("cython", "numpy", "torch" when importable, and "onnxruntime" for convolution forwards
and inference when onnxruntime and onnx are importable), all computing the same thing on the same
inputs, plus, for convolutions, the GEMM-ceiling callables and the work done per call.

GEMM ceiling of a convolution case (CKK = C*KH*KW, P = OH*OW; the multiply-adds of one call):

    forward       per image:  Y_n[F, P]    = W[F, CKK]    @ cols_n[CKK, P]     for n < N
                  batched:    Y[F, N*P]    = W[F, CKK]    @ cols[CKK, N*P]
    input grad    per image:  dcols_n      = W^T[CKK, F]  @ dY_n[F, P]         (then col2im)
                  batched:    dcols        = W^T[CKK, F]  @ dY[F, N*P]
    weight grad   per image:  dW[F, CKK]  += dY_n[F, P]   @ cols_n^T[P, CKK]
                  batched:    dW[F, CKK]   = dY[F, N*P]   @ cols^T[N*P, CKK]

each a plain ``np.matmul(a, b, out=...)`` on preallocated, C-contiguous operands. The ceiling is
the faster of the two variants (their medians, measured in the same rounds as the contenders):
numpy's sgemm alone, with no im2col, col2im, layout copy or allocation around it. A convolution
reaching 100% of it does all its data movement for free.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# name: (N, C, H, W, F, K, stride, padding); the smoke twin keeps K, stride and padding.
CONV_SHAPES = {
    "L1": (64, 1, 28, 28, 32, 5, 1, 2),
    "L2": (64, 32, 14, 14, 64, 5, 1, 2),
    "V1": (32, 64, 56, 56, 64, 3, 1, 1),
    "R1": (32, 128, 28, 28, 256, 3, 2, 1),
    "P1": (32, 256, 14, 14, 256, 1, 1, 0),
    "S1": (8, 3, 256, 256, 16, 10, 1, 0),
}
CONV_SMOKE = {
    "L1": (2, 1, 8, 8, 4, 5, 1, 2),
    "L2": (2, 4, 6, 6, 4, 5, 1, 2),
    "V1": (2, 4, 8, 8, 4, 3, 1, 1),
    "R1": (2, 4, 8, 8, 8, 3, 2, 1),
    "P1": (2, 8, 5, 5, 8, 1, 1, 0),
    "S1": (1, 3, 13, 13, 2, 10, 1, 0),
}
# name: (N, C, H, W, kernel, stride, padding), max pooling
POOL_SHAPES = {
    "A": (64, 64, 56, 56, 2, 2, 0),
    "B": (32, 64, 112, 112, 3, 2, 1),
    "C": (64, 32, 28, 28, 2, 2, 0),
}
POOL_SMOKE = {
    "A": (2, 2, 8, 8, 2, 2, 0),
    "B": (2, 2, 9, 9, 3, 2, 1),
    "C": (2, 2, 6, 6, 2, 2, 0),
}
LENET_BATCH, LENET_SMOKE_BATCH = 64, 2
CONV_OPS = ("fwd", "grad_input", "grad_weight")
POOL_OPS = ("fwd", "bwd")
STEP_OPS = ("full", "frozen", "predict")
# Inference (issue 14): ``predict`` on a model, name: (model, batch, image side); the smoke twin
# keeps the model and shrinks batch and image. ResNet-18's batch throughput is measured at 8 images
# of 224x224 (64 would take ~1 s per call on 2 cores and minutes per case).
INFER_CASES = {
    "lenet-b1": ("lenet", 1, 28),
    "lenet-b64": ("lenet", 64, 28),
    "resnet18-b1": ("resnet18", 1, 224),
    "resnet18-b8": ("resnet18", 8, 224),
}
INFER_SMOKE = {
    "lenet-b1": ("lenet", 1, 28),
    "lenet-b64": ("lenet", 2, 28),
    "resnet18-b1": ("resnet18", 1, 32),
    "resnet18-b8": ("resnet18", 2, 32),
}
INFER_OPS = tuple(INFER_CASES)
GROUPS = (*CONV_SHAPES, *POOL_SHAPES, "lenet", "infer")
GEMM_BOUND = ("L2", "V1", "R1", "P1")   # issue 13: their forwards should reach >= 75% of the FMA peak
ALIASES = {"conv": tuple(CONV_SHAPES), "pool": tuple(POOL_SHAPES), "all": GROUPS}


class Unavailable(Exception):
    """A case that cannot run here (e.g. the layer API it needs is missing); the message says why.

    Raised by `Spec.build`; ``convcore bench`` reports the case as skipped, ``benchmarks/`` skips
    its tests.

    Examples
    --------
    >>> from convcore.bench import Unavailable
    >>> try:
    ...     raise Unavailable("the LeNet step needs convcore.nn.Conv2d (not available yet)")
    ... except Unavailable as exc:
    ...     print(f"skipped: {exc}")
    skipped: the LeNet step needs convcore.nn.Conv2d (not available yet)
    """


def parse_groups(text: str | None) -> list[str] | None:
    """The shape groups named in a comma-separated list, in suite order.

    Names are case-insensitive: the groups of ``GROUPS`` (``L1 L2 V1 R1 P1 S1`` convolutions,
    ``A B C`` max pools, ``lenet``, ``infer``) and the aliases ``conv``, ``pool`` and ``all``.

    Parameters
    ----------
    text : str or None
        For example ``"L1,v1,pool"``.

    Returns
    -------
    list of str or None
        The groups, each once, in suite order; None (all groups) when ``text`` is None or empty.

    Raises
    ------
    ValueError
        Naming the unknown entries and the valid ones.

    Examples
    --------
    >>> from convcore.bench import parse_groups
    >>> parse_groups("l1,POOL")
    ['L1', 'A', 'B', 'C']
    >>> parse_groups("") is None
    True
    """
    if not text:
        return None
    by_lower = {g.lower(): (g,) for g in GROUPS} | dict(ALIASES)
    wanted: set[str] = set()
    unknown: list[str] = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        hit = by_lower.get(item.lower())
        if hit is None:
            unknown.append(item)
        else:
            wanted.update(hit)
    if unknown or not wanted:
        raise ValueError(f"unknown case(s) {', '.join(unknown) or repr(text)}; choose from "
                         f"{', '.join(GROUPS)} (or {', '.join(ALIASES)}, or smoke)")
    return [g for g in GROUPS if g in wanted]


@dataclass(frozen=True)
class Spec:
    """One case of the suite, by name; `build` makes its inputs and contenders.

    Parameters
    ----------
    kind : str
        ``"conv"``, ``"pool"``, ``"step"`` (the LeNet training step) or ``"infer"``.
    group : str
        The shape name (``"L1"``, ``"A"``, ...), ``"lenet"`` or ``"infer"``.
    op : str
        ``"fwd"``, ``"grad_input"``, ``"grad_weight"`` (convolutions), ``"fwd"``, ``"bwd"``
        (pools), ``"full"``, ``"frozen"``, ``"predict"`` (the LeNet step) or an inference case
        (``"lenet-b1"``, ...).
    smoke : bool, default False
        The tiny variant of the shape (same kernel size, stride and padding): it checks that the
        harness runs, not how fast anything is.

    Examples
    --------
    >>> from convcore.bench import Spec
    >>> spec = Spec("conv", "L1", "fwd", smoke=True)
    >>> spec.name, spec.id
    ('conv L1 fwd (smoke)', 'L1-fwd-smoke')
    """

    kind: str
    group: str
    op: str
    smoke: bool = False

    @property
    def name(self) -> str:
        base = f"{self.group} {self.op}" if self.kind == "step" else f"{self.kind} {self.group} {self.op}"
        return base + (" (smoke)" if self.smoke else "")

    @property
    def id(self) -> str:
        """pytest id, e.g. ``L1-fwd`` or ``L1-fwd-smoke``."""
        return f"{self.group}-{self.op}" + ("-smoke" if self.smoke else "")

    def build(self, torch: bool = True, ort: bool = True) -> Case:
        """Make the inputs and the contenders' callables.

        Parameters
        ----------
        torch : bool, default True
            False leaves torch out (and does not import it).
        ort : bool, default True
            False leaves onnxruntime out (a contender for convolution forwards and inference).

        Returns
        -------
        Case

        Raises
        ------
        Unavailable
            When the case cannot run here (the LeNet step without the layer API).
        """
        tm = optional_torch() if torch else None
        if self.kind == "conv":
            return _conv_case(self, tm, ort)
        if self.kind == "pool":
            return _pool_case(self, tm)
        if self.kind == "infer":
            return _infer_case(self, tm, ort)
        return _step_case(self, tm)


def specs(groups=None, smoke: bool = False) -> list[Spec]:
    """The suite's cases for ``groups``, in suite order.

    Parameters
    ----------
    groups : sequence of str, optional
        Group names from ``GROUPS`` (see `parse_groups`); None: all of them.
    smoke : bool, default False
        The tiny smoke variants instead of the real shapes.

    Returns
    -------
    list of Spec
        Every op of every selected group (a convolution shape has three, a pool two, ...).

    Examples
    --------
    >>> from convcore.bench import specs
    >>> [s.name for s in specs(["C"])]
    ['pool C fwd', 'pool C bwd']
    >>> len(specs())
    31
    """
    groups = GROUPS if groups is None else groups
    out = []
    for g in GROUPS:
        if g not in groups:
            continue
        if g in CONV_SHAPES:
            out += [Spec("conv", g, op, smoke) for op in CONV_OPS]
        elif g in POOL_SHAPES:
            out += [Spec("pool", g, op, smoke) for op in POOL_OPS]
        elif g == "infer":
            out += [Spec("infer", g, op, smoke) for op in INFER_OPS]
        else:
            out += [Spec("step", g, op, smoke) for op in STEP_OPS]
    return out


def describe(group: str, smoke: bool = False) -> str:
    """One line describing a shape group, e.g. ``conv N=64 C=1 28x28 F=32 K=5 pad 2``."""
    if group in CONV_SHAPES:
        n, c, h, w, f, k, s, p = (CONV_SMOKE if smoke else CONV_SHAPES)[group]
        extra = (f" stride {s}" if s != 1 else "") + (f" pad {p}" if p else "")
        return f"conv N={n} C={c} {h}x{w} F={f} K={k}{extra}"
    if group in POOL_SHAPES:
        n, c, h, w, k, s, p = (POOL_SMOKE if smoke else POOL_SHAPES)[group]
        return f"max pool {k}x{k}/{s}{f' pad {p}' if p else ''} on N={n} C={c} {h}x{w}"
    if group == "infer":
        cases = INFER_SMOKE if smoke else INFER_CASES
        sizes = ", ".join(f"{op} at {side}x{side}" for op, (_, _, side) in cases.items())
        return ("inference (float32, eval): convcore.predict / torch eval under no_grad / onnxruntime on "
                f"convcore.onnx.export of the same weights; {sizes}")
    batch = LENET_SMOKE_BATCH if smoke else LENET_BATCH
    return (f"LeNet step, batch {batch} of 1x28x28: conv5x5x32 p2-ReLU-maxpool2-conv5x5x64 p2-ReLU-maxpool2-"
            "fc128-ReLU-dropout-fc10, SGD momentum 0.9 (full / convs frozen / inference)")


@dataclass
class Case:
    """A built case: the inputs are made, and every contender is a callable computing the same thing.

    Parameters
    ----------
    spec : Spec
        The case's name.
    description : str
        One line on its shape group (``describe``).
    runners : dict of str to callable
        Contender (``"cython"``, ``"numpy"``, ``"torch"``, ``"onnxruntime"``) -> a callable without
        arguments running one call (it returns the outputs).
    ceilings : dict of str to callable
        For convolutions, the GEMM-ceiling variant (``"batched"``, ``"per-image"``) -> one call.
    flops : float
        Floating-point operations per call (convolutions); 0 when not meaningful.
    nbytes : float
        Minimum memory traffic per call in bytes (pools); 0 when not meaningful.
    images : int
        Images per call (inference); 0 when not meaningful.

    Examples
    --------
    >>> from convcore.bench import Spec
    >>> case = Spec("pool", "C", "fwd", smoke=True).build(torch=False, ort=False)
    >>> case.name, sorted(case.runners), case.nbytes > 0
    ('pool C fwd (smoke)', ['cython', 'numpy'], True)
    """

    spec: Spec
    description: str
    runners: dict[str, Callable] = field(default_factory=dict)    # contender -> run once (returns outputs)
    ceilings: dict[str, Callable] = field(default_factory=dict)   # GEMM-ceiling variant -> run once
    flops: float = 0.0    # per call (convolutions), 0 when not meaningful
    nbytes: float = 0.0   # minimum memory traffic per call (pools), 0 when not meaningful
    images: int = 0       # images per call (inference), 0 when not meaningful

    @property
    def name(self) -> str:
        return self.spec.name


def optional_torch():
    """torch, the contender, or None when it is not installed (or ``CONVCORE_BENCH_NO_TORCH=1``).

    Returns
    -------
    module or None
        The imported ``torch`` module, or None.

    Examples
    --------
    >>> from unittest import mock
    >>> from convcore.bench import optional_torch
    >>> with mock.patch.dict("os.environ", {"CONVCORE_BENCH_NO_TORCH": "1"}):
    ...     print(optional_torch())
    None
    """
    if os.environ.get("CONVCORE_BENCH_NO_TORCH") == "1":
        return None
    try:
        import torch
    except ImportError:
        return None
    return torch


def onnxruntime_version() -> str | None:
    """onnxruntime's version when it and onnx are importable (and CONVCORE_BENCH_NO_ORT is not 1)."""
    if os.environ.get("CONVCORE_BENCH_NO_ORT") == "1":
        return None
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime.__version__


def _ort_conv(x: np.ndarray, w: np.ndarray, stride: int, padding: int) -> Callable:
    """A runner of onnxruntime on one Conv node (weights as an initializer), convcore's thread count."""
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    import convcore

    n, c, h, wd = x.shape
    f, _, kh, kw = w.shape
    oh, ow = (h + 2 * padding - kh) // stride + 1, (wd + 2 * padding - kw) // stride + 1
    node = helper.make_node("Conv", ["x", "w"], ["y"], kernel_shape=[kh, kw], strides=[stride, stride],
                            pads=[padding] * 4)
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, f, oh, ow])],
                              [numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = convcore.get_num_threads()
    opts.inter_op_num_threads = 1
    sess = onnxruntime.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = {"x": x}
    return lambda: sess.run(None, feed)[0]


def _with_backend(backend: str, fn: Callable) -> Callable:
    import convcore

    def run():
        with convcore.use_backend(backend):
            return fn()

    return run


def _filled(shape, rng) -> np.ndarray:
    """A float32 GEMM-ceiling operand (values do not matter; filled fast, no denormals)."""
    a = np.empty(shape, dtype=np.float32)
    a.reshape(-1, shape[-1])[...] = rng.standard_normal(shape[-1], dtype=np.float32)
    return a


def _gemm_ceilings(op: str, n: int, f: int, ckk: int, p: int, rng) -> dict[str, Callable]:
    """The two GEMM variants of the module docstring. The per-image and batched variants view the
    same buffers (only the multiply-add count and the shapes matter, not the values)."""
    a: np.ndarray
    b: np.ndarray
    out: np.ndarray
    if op in ("fwd", "grad_input"):  # (rows, depth) of the stationary operand: W or W^T
        rows, depth = (f, ckk) if op == "fwd" else (ckk, f)
        a = _filled((rows, depth), rng)
        b, out = _filled((n, depth, p), rng), np.empty((n, rows, p), np.float32)
        b2, out2 = b.reshape(depth, n * p), out.reshape(rows, n * p)

        def per_image():
            for i in range(n):
                np.matmul(a, b[i], out=out[i])
    else:
        a3, b = _filled((n, f, p), rng), _filled((n, p, ckk), rng)
        out, tmp = np.empty((f, ckk), np.float32), np.empty((f, ckk), np.float32)
        a, b2, out2 = a3.reshape(f, n * p), b.reshape(n * p, ckk), out

        def per_image():
            np.matmul(a3[0], b[0], out=out)
            for i in range(1, n):
                np.matmul(a3[i], b[i], out=tmp)
                np.add(out, tmp, out=out)

    def batched():
        np.matmul(a, b2, out=out2)

    return {"batched": batched, "per-image": per_image}


def _conv_case(spec: Spec, torch, ort: bool = True) -> Case:
    from convcore import ops

    n, c, h, w, f, k, s, p = (CONV_SMOKE if spec.smoke else CONV_SHAPES)[spec.group]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((f, c, k, k), dtype=np.float32) * 0.1
    _, _, oh, ow = ops.conv_output_shape(x.shape, wt.shape, s, p)
    gy = rng.standard_normal((n, f, oh, ow), dtype=np.float32)
    op = spec.op
    if op == "fwd":
        def fn():
            return ops.conv2d(x, wt, stride=s, padding=p)
    elif op == "grad_input":
        def fn():
            return ops.conv2d_backward(gy, x, wt, s, p, input_grad=True, weight_grad=False, bias_grad=False)
    else:
        def fn():
            return ops.conv2d_backward(gy, x, wt, s, p, input_grad=False, weight_grad=True, bias_grad=False)
    case = Case(spec, describe(spec.group, spec.smoke),
                {"cython": _with_backend("cython", fn), "numpy": _with_backend("numpy", fn)},
                flops=2.0 * n * f * c * k * k * oh * ow)
    case.ceilings = _gemm_ceilings(op, n, f, c * k * k, oh * ow, rng)
    if op == "fwd" and ort and onnxruntime_version() is not None:
        case.runners["onnxruntime"] = _ort_conv(x, wt, s, p)
    if torch is not None:
        tx, tw, tg = torch.from_numpy(x), torch.from_numpy(wt), torch.from_numpy(gy)
        if op == "fwd":
            case.runners["torch"] = lambda: torch.nn.functional.conv2d(tx, tw, stride=s, padding=p)
        else:  # the same need-based backward convcore runs: only the asked-for gradient
            mask = [op == "grad_input", op == "grad_weight", False]
            case.runners["torch"] = lambda: torch.ops.aten.convolution_backward(
                tg, tx, tw, None, [s, s], [p, p], [1, 1], False, [0, 0], 1, mask)
    return case


def _pool_case(spec: Spec, torch) -> Case:
    from convcore import ops

    n, c, h, w, k, s, p = (POOL_SMOKE if spec.smoke else POOL_SHAPES)[spec.group]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    out, idx = ops.max_pool2d(x, k, s, p)
    gy = rng.standard_normal(out.shape, dtype=np.float32)
    if spec.op == "fwd":
        def fn():
            return ops.max_pool2d(x, k, s, p)
        nbytes = x.nbytes + out.nbytes + idx.nbytes            # read x; write values and indices
    else:
        def fn():
            return ops.max_pool2d_backward(gy, idx, x.shape)
        nbytes = gy.nbytes + idx.nbytes + x.nbytes             # read grads and indices; write dx
    case = Case(spec, describe(spec.group, spec.smoke),
                {"cython": _with_backend("cython", fn), "numpy": _with_backend("numpy", fn)}, nbytes=nbytes)
    if torch is not None:
        tx, tg, ti = torch.from_numpy(x), torch.from_numpy(gy), torch.from_numpy(idx)
        if spec.op == "fwd":
            case.runners["torch"] = lambda: torch.nn.functional.max_pool2d(tx, k, s, p, return_indices=True)
        else:
            case.runners["torch"] = lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                tg, tx, [k, k], [s, s], [p, p], [1, 1], False, ti)
    return case


_LAYERS = ("Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "Dropout", "Sequential", "CrossEntropyLoss")


def _lenet(convcore, rng):
    """``convcore.models.lenet()`` when it exists, else the same network from ``convcore.nn``."""
    nn, optim = getattr(convcore, "nn", None), getattr(convcore, "optim", None)
    missing = [f"nn.{name}" for name in _LAYERS if not hasattr(nn, name)]
    missing += [] if hasattr(optim, "SGD") else ["optim.SGD"]
    if missing:
        raise Unavailable(f"the LeNet step needs convcore.{', convcore.'.join(missing)} (not available yet)")
    lenet = getattr(getattr(convcore, "models", None), "lenet", None)
    if lenet is not None:
        return lenet(rng=rng)
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))


def _step_case(spec: Spec, torch) -> Case:
    """The LeNet training step (SGD with momentum), with the conv layers frozen, or inference."""
    import convcore

    batch = LENET_SMOKE_BATCH if spec.smoke else LENET_BATCH
    rng = np.random.default_rng(0)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    model = _lenet(convcore, 0)
    if spec.op == "frozen":
        for m in model:
            if type(m).__name__ == "Conv2d":
                m.requires_grad_(False)
    opt = convcore.optim.SGD([q for q in model.parameters() if q.requires_grad], lr=0.01, momentum=0.9)
    loss = convcore.nn.CrossEntropyLoss()
    predict = getattr(convcore, "predict", None)

    def ours():
        if spec.op == "predict":
            if predict is not None:
                return predict(model, x, batch_size=batch)
            model.eval()
            return model(x)
        model.train()
        opt.zero_grad()
        loss(model(x), y)
        model.backward(loss.backward(), need_input_grad=False)
        opt.step()
        return None

    case = Case(spec, describe("lenet", spec.smoke),
                {"cython": _with_backend("cython", ours), "numpy": _with_backend("numpy", ours)})
    if torch is not None:
        tnn = torch.nn
        tm = tnn.Sequential(tnn.Conv2d(1, 32, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
                            tnn.Conv2d(32, 64, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
                            tnn.Linear(3136, 128), tnn.ReLU(), tnn.Dropout(0.5), tnn.Linear(128, 10))
        if spec.op == "frozen":
            for i in (0, 3):
                tm[i].requires_grad_(False)
        topt = torch.optim.SGD([q for q in tm.parameters() if q.requires_grad], lr=0.01, momentum=0.9)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        tloss = tnn.CrossEntropyLoss()

        def theirs():
            if spec.op == "predict":
                tm.eval()
                with torch.no_grad():
                    return tm(tx)
            tm.train()
            topt.zero_grad()
            tloss(tm(tx), ty).backward()
            topt.step()
            return None

        case.runners["torch"] = theirs
    return case


# ---------------------------------------------------------------------------------------------
# Inference (issue 14)


def _torch_resnet18(torch, num_classes: int):
    """torchvision's ResNet-18 layout (same module names, hence state_dict keys), without needing
    torchvision."""
    tnn = torch.nn

    class Block(tnn.Module):  # type: ignore[name-defined]
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(cout)
            self.relu = tnn.ReLU(inplace=True)
            self.conv2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = tnn.Sequential(tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class ResNet18(tnn.Module):  # type: ignore[name-defined]
        def __init__(self):
            super().__init__()
            self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = tnn.BatchNorm2d(64)
            self.relu = tnn.ReLU(inplace=True)
            self.maxpool = tnn.MaxPool2d(3, 2, 1)
            cin = 64
            for i, planes in enumerate((64, 128, 256, 512)):
                stride = 1 if i == 0 else 2
                setattr(self, f"layer{i + 1}", tnn.Sequential(Block(cin, planes, stride), Block(planes, planes, 1)))
                cin = planes
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.fc = tnn.Linear(512, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet18()


def _torch_lenet(torch):
    tnn = torch.nn
    return tnn.Sequential(tnn.Conv2d(1, 32, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
                          tnn.Conv2d(32, 64, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
                          tnn.Linear(3136, 128), tnn.ReLU(), tnn.Dropout(0.5), tnn.Linear(128, 10))


def _randomize_batchnorm(model, rng) -> None:
    """Non-trivial running statistics and affine parameters (a trained network's, not the identity)."""
    from convcore import nn

    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.set_buffer("running_mean", rng.normal(0, 0.1, c).astype(np.float32))
            m.set_buffer("running_var", rng.uniform(0.5, 1.5, c).astype(np.float32))
            m.weight.data = rng.uniform(0.5, 1.5, c).astype(np.float32)
            m.bias.data = rng.normal(0, 0.1, c).astype(np.float32)


def _ort_model(model, x) -> Callable:
    """onnxruntime running ``convcore.onnx.export`` of ``model``, convcore's thread count."""
    import io

    import onnxruntime

    import convcore
    import convcore.onnx

    buf = io.BytesIO()
    convcore.onnx.export(model, buf, x)
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads = convcore.get_num_threads()
    opts.inter_op_num_threads = 1
    sess = onnxruntime.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    feed = {name: x}
    return lambda: sess.run(None, feed)[0]


def _infer_case(spec: Spec, torch, ort: bool = True) -> Case:
    """``convcore.predict`` on LeNet or ResNet-18 (eval mode, float32), the same weights in torch
    (eval, ``no_grad``) and in onnxruntime."""
    import convcore
    from convcore import models

    kind, n, side = (INFER_SMOKE if spec.smoke else INFER_CASES)[spec.op]
    rng = np.random.default_rng(0)
    model: Any
    if kind == "lenet":
        model = models.lenet(rng=0)
        x = rng.random((n, 1, side, side), dtype=np.float32)
    else:
        model = models.resnet18(rng=0)
        _randomize_batchnorm(model, rng)
        x = rng.standard_normal((n, 3, side, side), dtype=np.float32)
    model.eval()

    def ours():
        return convcore.predict(model, x, batch_size=n)

    case = Case(spec, describe("infer", spec.smoke), {"cython": _with_backend("cython", ours)}, images=n)
    if spec.smoke or kind == "lenet":   # the numpy backend on ResNet-18 at 224x224 takes seconds per call
        case.runners["numpy"] = _with_backend("numpy", ours)
    if ort and onnxruntime_version() is not None:
        case.runners["onnxruntime"] = _ort_model(model, x)
    if torch is not None:
        tm = _torch_lenet(torch) if kind == "lenet" else _torch_resnet18(torch, 1000)
        tm.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in model.state_dict().items()})
        tm.eval()
        tx = torch.from_numpy(x)

        def theirs():
            with torch.no_grad():
                return tm(tx)

        case.runners["torch"] = theirs
    return case
