"""The benchmark shape suite, defined once for ``convcore bench`` and ``benchmarks/`` (float32, NCHW).

Each case builds its inputs and returns, per contender ("cython", "numpy", "torch"), a callable
that runs the operation once. Contenders of one case compute the same thing on the same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# name: (N, C, H, W, F, K, stride, padding)
CONV_SHAPES = {
    "L1": (64, 1, 28, 28, 32, 5, 1, 2),
    "L2": (64, 32, 14, 14, 64, 5, 1, 2),
    "V1": (32, 64, 56, 56, 64, 3, 1, 1),
    "R1": (32, 128, 28, 28, 256, 3, 2, 1),
    "P1": (32, 256, 14, 14, 256, 1, 1, 0),
    "S1": (8, 3, 256, 256, 16, 10, 1, 0),
    "smoke": (2, 3, 9, 9, 4, 3, 1, 1),
}
# name: (N, C, H, W, kernel, stride, padding)
POOL_SHAPES = {
    "A": (64, 64, 56, 56, 2, 2, 0),
    "B": (32, 64, 112, 112, 3, 2, 1),
    "C": (64, 32, 28, 28, 2, 2, 0),
    "smoke": (2, 3, 8, 8, 2, 2, 0),
}
CONV_OPS = ("fwd", "grad_input", "grad_weight")
POOL_OPS = ("fwd", "bwd")
STEP_OPS = ("full", "frozen", "predict")


@dataclass
class Case:
    name: str                       # e.g. "conv L2 grad_input"
    group: str                      # shape name, e.g. "L2"
    kind: str                       # "conv", "pool" or "step"
    flops: float = 0.0              # per call, 0 when not meaningful
    runners: dict = field(default_factory=dict)   # contender -> callable
    ceiling: Callable | None = None  # numpy matmul on the same GEMM shapes, for "% of GEMM ceiling"


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _with_backend(backend, fn):
    import convcore

    def run():
        with convcore.use_backend(backend):
            return fn()

    return run


def conv_case(shape_name: str, op: str, seed: int = 0) -> Case:
    import convcore.ops as ops

    n, c, h, w, f, k, s, p = CONV_SHAPES[shape_name]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    wt = rng.standard_normal((f, c, k, k), dtype=np.float32) * 0.1
    _, _, oh, ow = ops.conv_output_shape(x.shape, wt.shape, s, p)
    gy = rng.standard_normal((n, f, oh, ow), dtype=np.float32)
    flops = 2.0 * n * f * c * k * k * oh * ow
    if op == "fwd":
        fn = lambda: ops.conv2d(x, wt, stride=s, padding=p)  # noqa: E731
    elif op == "grad_input":
        fn = lambda: ops.conv2d_backward(gy, x, wt, s, p, weight_grad=False, bias_grad=False)  # noqa: E731
    else:
        fn = lambda: ops.conv2d_backward(gy, x, wt, s, p, input_grad=False, bias_grad=False)  # noqa: E731
    case = Case(f"conv {shape_name} {op}", shape_name, "conv", flops,
                {"cython": _with_backend("cython", fn), "numpy": _with_backend("numpy", fn)})
    # The GEMM ceiling: the same multiply-adds as one numpy matmul on preallocated operands.
    ckk, cols = c * k * k, n * oh * ow
    a, b = {"fwd": ((f, ckk), (ckk, cols)), "grad_input": ((ckk, f), (f, cols)),
            "grad_weight": ((f, cols), (cols, ckk))}[op]
    ga, gb = rng.standard_normal(a, dtype=np.float32), rng.standard_normal(b, dtype=np.float32)
    gout = np.empty((a[0], b[1]), dtype=np.float32)
    case.ceiling = lambda: np.matmul(ga, gb, out=gout)
    torch = _torch()
    if torch is not None:
        tx, tw, tg = torch.from_numpy(x), torch.from_numpy(wt), torch.from_numpy(gy)
        mask = {"fwd": None, "grad_input": [True, False, False], "grad_weight": [False, True, False]}[op]
        if mask is None:
            case.runners["torch"] = lambda: torch.nn.functional.conv2d(tx, tw, stride=s, padding=p)
        else:
            case.runners["torch"] = lambda: torch.ops.aten.convolution_backward(
                tg, tx, tw, None, [s, s], [p, p], [1, 1], False, [0, 0], 1, mask)
    return case


def pool_case(shape_name: str, op: str, seed: int = 0) -> Case:
    import convcore.ops as ops

    n, c, h, w, k, s, p = POOL_SHAPES[shape_name]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w), dtype=np.float32)
    out, idx = ops.max_pool2d(x, k, s, p)
    gy = rng.standard_normal(out.shape, dtype=np.float32)
    if op == "fwd":
        fn = lambda: ops.max_pool2d(x, k, s, p)  # noqa: E731
    else:
        fn = lambda: ops.max_pool2d_backward(gy, idx, x.shape)  # noqa: E731
    case = Case(f"pool {shape_name} {op}", shape_name, "pool", 0.0,
                {"cython": _with_backend("cython", fn), "numpy": _with_backend("numpy", fn)})
    torch = _torch()
    if torch is not None:
        tx, tg, ti = torch.from_numpy(x), torch.from_numpy(gy), torch.from_numpy(idx)
        if op == "fwd":
            case.runners["torch"] = lambda: torch.nn.functional.max_pool2d(tx, k, s, p, return_indices=True)
        else:
            case.runners["torch"] = lambda: torch.ops.aten.max_pool2d_with_indices_backward(
                tg, tx, [k, k], [s, s], [p, p], [1, 1], False, ti)
    return case


def step_case(op: str, batch: int = 64, seed: int = 0) -> Case:
    """The LeNet training step (SGD with momentum), with the conv layers frozen, or inference."""
    import convcore
    from convcore import nn

    rng = np.random.default_rng(seed)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    model = convcore.models.lenet(rng=seed)
    if op == "frozen":
        model[0].freeze()
        model[3].freeze()
    opt = convcore.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss = nn.CrossEntropyLoss()

    def ours():
        if op == "predict":
            return convcore.predict(model, x, batch_size=batch)
        opt.zero_grad()
        loss(model(x), y)
        model.backward(loss.backward(), need_input_grad=False)
        opt.step()

    case = Case(f"lenet {op}", "lenet", "step", 0.0,
                {"cython": _with_backend("cython", ours), "numpy": _with_backend("numpy", ours)})
    torch = _torch()
    if torch is not None:
        tnn = torch.nn
        tm = tnn.Sequential(tnn.Conv2d(1, 32, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
                            tnn.Conv2d(32, 64, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(),
                            tnn.Linear(3136, 128), tnn.ReLU(), tnn.Dropout(0.5), tnn.Linear(128, 10))
        if op == "frozen":
            for i in (0, 3):
                tm[i].requires_grad_(False)
        topt = torch.optim.SGD([p for p in tm.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        tloss = tnn.CrossEntropyLoss()

        def theirs():
            if op == "predict":
                tm.eval()
                with torch.no_grad():
                    tm(tx)
                return
            tm.train()
            topt.zero_grad()
            tloss(tm(tx), ty).backward()
            topt.step()

        case.runners["torch"] = theirs
    return case


def all_cases(names=None, smoke: bool = False) -> list[Callable[[], Case]]:
    """Factories (built lazily: big inputs only when the case runs) for the selected cases.

    ``names``: shape names (L1, ..., S1, A, B, C, lenet); None means all. ``smoke``: only the tiny
    shapes, one case per kernel.
    """
    out = []
    if smoke:
        return ([lambda op=op: conv_case("smoke", op) for op in CONV_OPS]
                + [lambda op=op: pool_case("smoke", op) for op in POOL_OPS]
                + [lambda: step_case("full", batch=4)])
    for shape in CONV_SHAPES:
        if shape != "smoke" and (names is None or shape in names):
            out += [lambda shape=shape, op=op: conv_case(shape, op) for op in CONV_OPS]
    for shape in POOL_SHAPES:
        if shape != "smoke" and (names is None or shape in names):
            out += [lambda shape=shape, op=op: pool_case(shape, op) for op in POOL_OPS]
    if names is None or "lenet" in names:
        out += [lambda op=op: step_case(op) for op in STEP_OPS]
    return out
