"""Optimizers following ``torch.optim``'s update rules: SGD (momentum, Nesterov, weight decay),
Adam and AdamW (``amsgrad``), RMSprop (``centered``, momentum).

Parameter groups take torch's list-of-dicts form, ``SGD([{"params": a}, {"params": b, "lr": 0.1}],
lr=0.01)``: a group's keys override the optimizer's defaults for its parameters, and
``optimizer.param_groups`` is the list of those dicts (schedulers change their ``"lr"``).
``state_dict()`` / ``load_state_dict()`` use torch's layout (``{"state": {index: {...}},
"param_groups": [{..., "params": [indices]}]}``), so a state saved by torch, with its tensors
converted to arrays, loads here.

Frozen parameters (``requires_grad`` False) and parameters without a gradient are skipped
entirely: no weight decay, no momentum or moment update, no step count.

A step is applied entirely or not at all. Every new value (parameters and optimizer state) is
computed first, into new arrays; ``check_finite=True`` (default) then raises
``FloatingPointError`` naming the parameter when one is NaN or infinite (a diverging learning
rate, or a gradient that already was), before anything is written; only then are the values
copied into place, with nothing in that loop that can raise, and with Ctrl-C (SIGINT) held back
until the last parameter is written. Parameter arrays keep their identity.
"""

from __future__ import annotations

import contextlib
import copy
import signal
import threading
from typing import Any

import numpy as np

from .._validation import check_bool, check_number
from ..nn.module import Parameter


@contextlib.contextmanager
def _interrupts_held():
    """Within the block, a SIGINT is recorded instead of raising; it is delivered (as the
    previous handler would have) when the block ends. Only the main thread receives signals, so
    elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    except (ValueError, OSError):   # not the main interpreter, or signals unavailable
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            if callable(previous):
                previous(signal.SIGINT, None)
            elif previous == signal.SIG_DFL:
                signal.raise_signal(signal.SIGINT)


class Optimizer:
    """Base class of the optimizers, as ``torch.optim.Optimizer``: parameter groups, per-parameter
    state, ``zero_grad``, ``state_dict`` and the all-or-nothing ``step``.

    Subclasses implement ``_update(p, grad, group, state) -> (new_data, new_state)`` without
    modifying ``p.data`` or ``state`` in place, and may override ``_check_group(group)`` to
    validate (and normalise) a group's hyperparameters.

    Parameters
    ----------
    params : Parameter, iterable of Parameter, or iterable of dict
        The parameters to optimise, or parameter groups ``{"params": [...], **hyperparameters}``
        whose keys override ``defaults``. A parameter listed twice in a group steps once.
    defaults : dict
        The hyperparameters (at least ``lr``) of groups that do not set them.
    check_finite : bool, default True
        Refuse (``FloatingPointError``) a step that would write NaN or infinity.

    Attributes
    ----------
    param_groups : list of dict
        torch's groups: ``"params"`` and the hyperparameters (schedulers change ``"lr"``).
    state : dict
        Per-parameter state (momentum buffers, moments, step counts), keyed by the parameter's
        index in group order.

    Raises
    ------
    TypeError
        ``params`` holds something other than Parameters or parameter-group dicts, or a
        hyperparameter has the wrong type.
    ValueError
        ``params`` is empty or lists a parameter in two groups, or a hyperparameter is out of
        range (negative ``lr``, ...). ``step`` raises ``ValueError`` for a gradient of the wrong
        shape or a read-only parameter.
    FloatingPointError
        From ``step``, with ``check_finite``: an update would be NaN or infinite (nothing is
        changed).

    Examples
    --------
    A plain gradient step written as a subclass:

    >>> import numpy as np
    >>> from convcore import nn, optim
    >>> class PlainGD(optim.Optimizer):
    ...     def __init__(self, params, lr=0.1):
    ...         super().__init__(params, dict(lr=lr))
    ...     def _update(self, p, grad, group, state):
    ...         return p.data - group["lr"] * grad, state
    >>> p = nn.Parameter(np.array([1.0, 2.0]))
    >>> opt = PlainGD([p], lr=0.5)
    >>> p.grad = np.array([1.0, -1.0])
    >>> opt.step()
    >>> p.data.tolist()
    [0.5, 2.5]
    """

    def __init__(self, params, defaults: dict, check_finite: bool = True):
        self.defaults = dict(defaults)
        self.check_finite = check_bool(check_finite, "check_finite", type(self).__name__)
        self.param_groups: list[dict] = []
        self.state: dict[int, dict] = {}
        if isinstance(params, Parameter):
            params = [params]
        params = list(params) if not isinstance(params, dict) else [params]
        if not params:
            raise ValueError(f"{type(self).__name__}: params must not be empty; received an empty parameter list")
        groups = params if all(isinstance(g, dict) for g in params) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    # -- groups --------------------------------------------------------------------------------
    @property
    def params(self) -> list[Parameter]:
        """Every parameter, in group order (the indices of ``state`` and ``state_dict``)."""
        return [p for g in self.param_groups for p in g["params"]]

    def add_param_group(self, param_group: dict) -> None:
        """Add a group (torch's ``add_param_group``): ``{"params": [...], **hyperparameters}``."""
        what = type(self).__name__
        if not isinstance(param_group, dict):
            raise TypeError(f"{what}: param_group must be a dict; received param_group={type(param_group).__name__}")
        group = dict(param_group)
        if "params" not in group:
            raise ValueError(f"{what}: param_group must have a 'params' entry; received keys {sorted(group)}")
        ps = group["params"]
        ps = [ps] if isinstance(ps, Parameter) else list(ps)
        unique = list({id(p): p for p in ps}.values())   # a shared parameter steps once
        for i, p in enumerate(unique):
            if not isinstance(p, Parameter):
                raise TypeError(f"{what}: params[{i}] must be a convcore.nn.Parameter; received {type(p).__name__}")
        if not unique:
            raise ValueError(f"{what}: params must not be empty; received an empty parameter list")
        taken = {id(p) for p in self.params}
        if any(id(p) in taken for p in unique):
            raise ValueError(f"{what}: some parameters appear in more than one parameter group")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_group(group)
        group["params"] = unique
        self.param_groups.append(group)

    def _check_group(self, group: dict) -> None:
        check_number(group["lr"], "lr", type(self).__name__, minimum=0.0)

    @property
    def lr(self) -> float:
        """The first group's learning rate; assigning sets every group's."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value) -> None:
        value = check_number(value, "lr", type(self).__name__, minimum=0.0)
        for g in self.param_groups:
            g["lr"] = value

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget accumulated gradients (``set_to_none=False`` zero-fills them instead)."""
        for p in self.params:
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad = np.zeros_like(p.grad)

    # -- step ----------------------------------------------------------------------------------
    def step(self, closure=None):
        """One update of every parameter that requires a gradient and has one.

        ``closure`` (optional, as torch) re-evaluates the model and returns the loss, which
        ``step`` returns. Nothing is written unless every new value was computed and is finite.
        """
        loss = closure() if closure is not None else None
        staged = []
        index = 0
        # Overflow is reported by the finiteness check below, not as a numpy warning.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for group in self.param_groups:
                for p in group["params"]:
                    i, index = index, index + 1
                    if not p.requires_grad or p.grad is None:
                        continue
                    if p.grad.shape != p.shape:
                        raise ValueError(f"{type(self).__name__}: params[{i}].grad must have the parameter's shape "
                                         f"{p.shape}; received params[{i}].grad.shape={p.grad.shape}")
                    grad = -p.grad if group.get("maximize", False) else p.grad
                    new, state = self._update(p, grad, group, self.state.get(i))
                    new = np.asarray(new, dtype=p.dtype)   # a float32 overflow shows here as inf
                    if self.check_finite and not np.isfinite(new).all():
                        self._diverged(i, p, group)
                    if not p.data.flags.writeable:
                        raise ValueError(f"{type(self).__name__}: params[{i}].data is read-only; give the parameter a "
                                         "writeable array (p.data = p.data.copy())")
                    staged.append((i, p, new, state))
        with _interrupts_held():
            for i, p, new, state in staged:   # nothing here raises: shapes and dtypes match
                np.copyto(p.data, new)
                p.mark_changed()   # inference caches derived from the values (packed weights) are dropped
                if state:
                    self.state[i] = state
        return loss

    def _diverged(self, i: int, p: Parameter, group: dict):
        what = type(self).__name__
        if p.grad is not None and not np.isfinite(p.grad).all():
            raise FloatingPointError(
                f"{what}: the gradient of params[{i}] (shape {p.shape}) is not finite (NaN or inf), so its update "
                "would be; nothing was changed. Either the input batch or the loss holds NaN or inf, or the "
                f"training diverged earlier (lr={group['lr']}) and the model's values overflow."
            )
        raise FloatingPointError(
            f"{what}: the update of params[{i}] (shape {p.shape}) is not finite; the training diverged "
            f"(lr={group['lr']}); nothing was changed. Lower the learning rate, or pass check_finite=False."
        )

    def _update(self, p: Parameter, grad: np.ndarray, group: dict, state: dict | None):
        raise NotImplementedError

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """``{"state": {index: {name: array or number}}, "param_groups": [{..., "params":
        [indices]}]}``, torch's layout; arrays are copies."""
        groups, start = [], 0
        for g in self.param_groups:
            entry = {k: copy.deepcopy(v) for k, v in g.items() if k != "params"}
            entry["params"] = list(range(start, start + len(g["params"])))
            start += len(g["params"])
            groups.append(entry)
        state = {i: {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for k, v in st.items()}
                 for i, st in sorted(self.state.items())}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore ``state_dict()`` output (or torch's, with tensors converted to arrays): group
        hyperparameters and per-parameter state, arrays cast to each parameter's dtype. The group
        structure must match; a failure changes nothing."""
        what = type(self).__name__
        if not isinstance(state_dict, dict) or set(state_dict) != {"state", "param_groups"}:
            raise ValueError(f"{what}.load_state_dict: state_dict must be a dict with keys 'state' and "
                             f"'param_groups'; received {type(state_dict).__name__}")
        saved_groups = list(state_dict["param_groups"])
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{what}.load_state_dict: the state has {len(saved_groups)} parameter groups, the "
                             f"optimizer {len(self.param_groups)}")
        params = self.params
        order: dict = {}
        for gi, (mine, saved) in enumerate(zip(self.param_groups, saved_groups)):
            ids = list(saved.get("params", []))
            if len(ids) != len(mine["params"]):
                raise ValueError(f"{what}.load_state_dict: parameter group {gi} has {len(ids)} parameters in the "
                                 f"state and {len(mine['params'])} in the optimizer")
            base = sum(len(g["params"]) for g in self.param_groups[:gi])
            for k, pid in enumerate(ids):
                order[pid] = base + k
        new_state: dict[int, dict] = {}
        for key, st in dict(state_dict["state"]).items():
            key = int(key) if isinstance(key, str) and key.lstrip("-").isdigit() else key
            if key not in order:
                raise ValueError(f"{what}.load_state_dict: the state names parameter {key!r}, which no group lists")
            i = order[key]
            p = params[i]
            entry: dict[str, Any] = {}
            for name, value in dict(st).items():
                if name == "step":
                    entry[name] = int(np.asarray(value).item())
                elif value is None:
                    entry[name] = None
                else:
                    arr = np.asarray(value)
                    if arr.shape != p.shape:
                        raise ValueError(f"{what}.load_state_dict: state[{key}][{name!r}] has shape {arr.shape}, "
                                         f"parameter {i} has shape {p.shape}")
                    entry[name] = arr.astype(p.dtype, copy=True)
            new_state[i] = entry
        new_groups = []
        for mine, saved in zip(self.param_groups, saved_groups):
            g = {k: (tuple(v) if k == "betas" else copy.deepcopy(v)) for k, v in saved.items() if k != "params"}
            g["params"] = mine["params"]
            merged = dict(mine)
            merged.update(g)
            self._check_group(merged)
            new_groups.append(merged)
        self.param_groups = new_groups
        self.state = new_state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        lines.append(")")
        return "\n".join(lines)


class SGD(Optimizer):
    """Stochastic gradient descent, ``torch.optim.SGD``'s rule::

        g = grad + weight_decay * p
        buf = g (first step) or momentum * buf + (1 - dampening) * g
        g = g + momentum * buf (nesterov) or buf (momentum > 0)
        p -= lr * g

    The defaults are torch's (``lr=1e-3``). As in torch, the momentum buffer starts as the first
    gradient.

    Parameters
    ----------
    params : iterable of Parameter, or of dicts (parameter groups)
    lr : float, default 1e-3
    momentum : float, default 0
    dampening : float, default 0
    weight_decay : float, default 0
        L2 penalty added to the gradient.
    nesterov : bool, default False
        Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
    maximize : bool, default False
        Maximise the objective (step along the gradient).
    check_finite : bool, default True
        Refuse (``FloatingPointError``) a step that would write NaN or infinity.

    Raises
    ------
    TypeError
        ``params`` holds something other than Parameters or parameter-group dicts, or a
        hyperparameter has the wrong type.
    ValueError
        ``params`` is empty or lists a parameter in two groups, a hyperparameter is out of range
        (negative ``lr``, ...), or ``nesterov`` is set without momentum or with dampening.
        ``step`` raises ``ValueError`` for a gradient of the wrong shape or a read-only
        parameter.
    FloatingPointError
        From ``step``, with ``check_finite``: an update would be NaN or infinite (nothing is
        changed).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn, optim
    >>> p = nn.Parameter(np.array([1.0, -2.0]))
    >>> opt = optim.SGD([p], lr=0.1, momentum=0.9)
    >>> p.grad = np.array([0.5, 0.5])
    >>> opt.step()
    >>> p.data.tolist()
    [0.95, -2.05]
    >>> opt.state[0]["momentum_buffer"].tolist()
    [0.5, 0.5]

    Parameter groups, as torch's:

    >>> model = nn.Sequential(nn.Linear(4, 3, rng=0), nn.ReLU(), nn.Linear(3, 2, rng=0))
    >>> opt = optim.SGD([{"params": model[0].parameters(), "lr": 0.01},
    ...                  {"params": model[2].parameters()}], lr=0.1, momentum=0.9)
    >>> [g["lr"] for g in opt.param_groups]
    [0.01, 0.1]
    """

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, *,
                 maximize=False, check_finite=True):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                        maximize=maximize)
        super().__init__(params, defaults, check_finite)

    def _check_group(self, g):
        what = "SGD"
        g["lr"] = check_number(g["lr"], "lr", what, minimum=0.0)
        g["momentum"] = check_number(g["momentum"], "momentum", what, minimum=0.0)
        g["dampening"] = check_number(g["dampening"], "dampening", what)
        g["weight_decay"] = check_number(g["weight_decay"], "weight_decay", what, minimum=0.0)
        g["nesterov"] = check_bool(g["nesterov"], "nesterov", what)
        g["maximize"] = check_bool(g.get("maximize", False), "maximize", what)
        if g["nesterov"] and (g["momentum"] <= 0 or g["dampening"] != 0):
            raise ValueError("SGD: nesterov must be False unless momentum > 0 and dampening = 0; received "
                             f"momentum={g['momentum']}, dampening={g['dampening']}")

    def _update(self, p, grad, group, state):
        g = grad
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        momentum = group["momentum"]
        new_state = {} if state is None else dict(state)
        if momentum:
            buf = new_state.get("momentum_buffer")
            if buf is None:
                buf = np.array(g, dtype=p.dtype, copy=True)
            else:
                buf = (momentum * buf + (1 - group["dampening"]) * g).astype(p.dtype, copy=False)
            new_state["momentum_buffer"] = buf
            g = g + momentum * buf if group["nesterov"] else buf
        return p.data - group["lr"] * g, new_state


class Adam(Optimizer):
    """Adam (``torch.optim.Adam``).

    L2 ``weight_decay`` is added to the gradient (AdamW decouples it). ``amsgrad`` keeps the
    running maximum of the second moment. The update, with torch's bias corrections::

        m = lerp(m, g, 1 - beta1);  v = beta2 * v + (1 - beta2) * g * g
        p -= lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    The defaults are torch's; the state (``step``, ``exp_avg``, ``exp_avg_sq``,
    ``max_exp_avg_sq``) has torch's names.

    Parameters
    ----------
    params : iterable of Parameter, or of dicts (parameter groups)
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
        The decay rates of the first and second moments, each in [0, 1).
    eps : float, default 1e-8
    weight_decay : float, default 0
        L2 penalty added to the gradient.
    amsgrad : bool, default False
    maximize : bool, default False
    check_finite : bool, default True
        Refuse (``FloatingPointError``) a step that would write NaN or infinity.

    Raises
    ------
    TypeError
        ``params`` holds something other than Parameters or parameter-group dicts, or a
        hyperparameter has the wrong type.
    ValueError
        ``params`` is empty or lists a parameter in two groups, or a hyperparameter is out of
        range (negative ``lr``, ...). ``step`` raises ``ValueError`` for a gradient of the wrong
        shape or a read-only parameter.
    FloatingPointError
        From ``step``, with ``check_finite``: an update would be NaN or infinite (nothing is
        changed).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn, optim
    >>> p = nn.Parameter(np.array([1.0, -2.0]))
    >>> opt = optim.Adam([p], lr=0.1)
    >>> p.grad = np.array([0.5, -3.0])
    >>> opt.step()   # the first step moves each value by about lr
    >>> np.round(p.data, 6).tolist()
    [0.9, -1.9]
    >>> sorted(opt.state[0])
    ['exp_avg', 'exp_avg_sq', 'step']
    """

    _decoupled = False

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, *,
                 maximize=False, check_finite=True):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize)
        super().__init__(params, defaults, check_finite)

    def _check_group(self, g):
        what = type(self).__name__
        g["lr"] = check_number(g["lr"], "lr", what, minimum=0.0)
        betas = g["betas"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2):
            raise TypeError(f"{what}: betas must be a pair of numbers in [0, 1); received betas={betas!r}")
        g["betas"] = (check_number(betas[0], "betas[0]", what, 0.0, 1.0, high_open=True),
                      check_number(betas[1], "betas[1]", what, 0.0, 1.0, high_open=True))
        g["eps"] = check_number(g["eps"], "eps", what, minimum=0.0)
        g["weight_decay"] = check_number(g["weight_decay"], "weight_decay", what, minimum=0.0)
        g["amsgrad"] = check_bool(g["amsgrad"], "amsgrad", what)
        g["maximize"] = check_bool(g.get("maximize", False), "maximize", what)

    def _update(self, p, grad, group, state):
        b1, b2 = group["betas"]
        lr, wd = group["lr"], group["weight_decay"]
        data, g = p.data, grad
        if wd:
            if self._decoupled:
                data = data * (1 - lr * wd)
            else:
                g = g + wd * p.data
        if state is None:
            state = {"step": 0, "exp_avg": np.zeros_like(p.data), "exp_avg_sq": np.zeros_like(p.data)}
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = np.zeros_like(p.data)
        t = state["step"] + 1
        m = (state["exp_avg"] + (1 - b1) * (g - state["exp_avg"])).astype(p.dtype, copy=False)
        v = (b2 * state["exp_avg_sq"] + (1 - b2) * (g * g)).astype(p.dtype, copy=False)
        new_state = {"step": t, "exp_avg": m, "exp_avg_sq": v}
        bc1, bc2 = 1 - b1**t, 1 - b2**t
        if group["amsgrad"]:
            vmax = np.maximum(state.get("max_exp_avg_sq", np.zeros_like(v)), v)
            new_state["max_exp_avg_sq"] = vmax
            v = vmax
        denom = np.sqrt(v) / bc2**0.5 + group["eps"]
        return data - (m / denom) * (lr / bc1), new_state


class AdamW(Adam):
    """AdamW (``torch.optim.AdamW``): decoupled weight decay ``p *= 1 - lr * weight_decay`` before
    the Adam step.

    Parameters
    ----------
    params : iterable of Parameter, or of dicts (parameter groups)
    lr : float, default 1e-3
    betas : (float, float), default (0.9, 0.999)
    eps : float, default 1e-8
    weight_decay : float, default 1e-2
        The decoupled decay rate (torch's default).
    amsgrad : bool, default False
    maximize : bool, default False
    check_finite : bool, default True
        Refuse (``FloatingPointError``) a step that would write NaN or infinity.

    Raises
    ------
    TypeError
        ``params`` holds something other than Parameters or parameter-group dicts, or a
        hyperparameter has the wrong type.
    ValueError
        ``params`` is empty or lists a parameter in two groups, or a hyperparameter is out of
        range (negative ``lr``, ...). ``step`` raises ``ValueError`` for a gradient of the wrong
        shape or a read-only parameter.
    FloatingPointError
        From ``step``, with ``check_finite``: an update would be NaN or infinite (nothing is
        changed).

    Examples
    --------
    With a zero gradient only the decay acts:

    >>> import numpy as np
    >>> from convcore import nn, optim
    >>> p = nn.Parameter(np.array([1.0, -2.0]))
    >>> opt = optim.AdamW([p], lr=0.1, weight_decay=0.5)
    >>> p.grad = np.zeros(2)
    >>> opt.step()
    >>> np.round(p.data, 6).tolist()
    [0.95, -1.9]
    """

    _decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, check_finite=True):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, check_finite=check_finite)


class RMSprop(Optimizer):
    """RMSprop (``torch.optim.RMSprop``)::

        v = alpha * v + (1 - alpha) * g * g
        avg = sqrt(v - mean_g**2) (centered: mean_g = lerp(mean_g, g, 1 - alpha)) or sqrt(v), + eps
        buf = momentum * buf + g / avg;  p -= lr * buf   (momentum > 0; else p -= lr * g / avg)

    The defaults are torch's (``lr=1e-2``, ``alpha=0.99``); the state (``step``, ``square_avg``,
    ``momentum_buffer``, ``grad_avg``) has torch's names.

    Parameters
    ----------
    params : iterable of Parameter, or of dicts (parameter groups)
    lr : float, default 1e-2
    alpha : float, default 0.99
        The decay rate of the squared-gradient average.
    eps : float, default 1e-8
    weight_decay : float, default 0
        L2 penalty added to the gradient.
    momentum : float, default 0
    centered : bool, default False
        Normalise by the variance estimate instead of the second moment.
    maximize : bool, default False
    check_finite : bool, default True
        Refuse (``FloatingPointError``) a step that would write NaN or infinity.

    Raises
    ------
    TypeError
        ``params`` holds something other than Parameters or parameter-group dicts, or a
        hyperparameter has the wrong type.
    ValueError
        ``params`` is empty or lists a parameter in two groups, or a hyperparameter is out of
        range (negative ``lr``, ...). ``step`` raises ``ValueError`` for a gradient of the wrong
        shape or a read-only parameter.
    FloatingPointError
        From ``step``, with ``check_finite``: an update would be NaN or infinite (nothing is
        changed).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn, optim
    >>> p = nn.Parameter(np.array([1.0]))
    >>> opt = optim.RMSprop([p], lr=0.01)
    >>> p.grad = np.array([2.0])
    >>> opt.step()   # v = 0.01 * 4, so the step is 0.01 * 2 / 0.2
    >>> np.round(p.data, 6).tolist()
    [0.9]
    """

    def __init__(self, params, lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False, *,
                 maximize=False, check_finite=True):
        defaults = dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum, centered=centered,
                        maximize=maximize)
        super().__init__(params, defaults, check_finite)

    def _check_group(self, g):
        what = "RMSprop"
        g["lr"] = check_number(g["lr"], "lr", what, minimum=0.0)
        g["alpha"] = check_number(g["alpha"], "alpha", what, minimum=0.0)
        g["eps"] = check_number(g["eps"], "eps", what, minimum=0.0)
        g["weight_decay"] = check_number(g["weight_decay"], "weight_decay", what, minimum=0.0)
        g["momentum"] = check_number(g["momentum"], "momentum", what, minimum=0.0)
        g["centered"] = check_bool(g["centered"], "centered", what)
        g["maximize"] = check_bool(g.get("maximize", False), "maximize", what)

    def _update(self, p, grad, group, state):
        alpha, momentum = group["alpha"], group["momentum"]
        g = grad
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.data
        if state is None:
            state = {"step": 0, "square_avg": np.zeros_like(p.data)}
            if momentum > 0:
                state["momentum_buffer"] = np.zeros_like(p.data)
            if group["centered"]:
                state["grad_avg"] = np.zeros_like(p.data)
        new_state = {"step": state["step"] + 1}
        sq = (alpha * state["square_avg"] + (1 - alpha) * (g * g)).astype(p.dtype, copy=False)
        new_state["square_avg"] = sq
        if group["centered"]:
            ga = state.get("grad_avg", np.zeros_like(p.data))
            ga = (ga + (1 - alpha) * (g - ga)).astype(p.dtype, copy=False)
            new_state["grad_avg"] = ga
            avg = np.sqrt(sq - ga * ga) + group["eps"]
        else:
            avg = np.sqrt(sq) + group["eps"]
        if momentum > 0:
            buf = state.get("momentum_buffer", np.zeros_like(p.data))
            buf = (momentum * buf + g / avg).astype(p.dtype, copy=False)
            new_state["momentum_buffer"] = buf
            return p.data - group["lr"] * buf, new_state
        return p.data - group["lr"] * (g / avg), new_state


__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop"]
