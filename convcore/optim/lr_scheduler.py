"""Learning-rate schedulers with ``torch.optim.lr_scheduler``'s names, arguments and sequences.

A scheduler changes ``group["lr"]`` of its optimizer's parameter groups. As in torch, creating
one performs step 0 (the learning rates become the schedule's first values) and each ``step()``
advances ``last_epoch`` by one; call it after ``optimizer.step()``, once per epoch (or once per
batch for ``OneCycleLR``). ``get_last_lr()`` returns the current rates, one per group;
``state_dict()`` / ``load_state_dict()`` hold everything but the optimizer (``LambdaLR``'s
functions are not saved, as in torch).

The updates are torch's own recursive ("chainable") formulas, so the sequences agree with
torch's to the last bits, not merely to a closed form.

Passed to ``convcore.fit(callbacks=[...])`` a scheduler is stepped for you: ``OneCycleLR``
after every batch, ``ReduceLROnPlateau`` after every epoch with the monitored value (``val_loss``
when there is validation data, else ``loss``), the others after every epoch.

Example
-------
>>> import numpy as np
>>> import convcore
>>> from convcore import nn, optim
>>> x = np.random.default_rng(0).standard_normal((32, 4)).astype(np.float32)
>>> y = (x[:, 0] > 0).astype(np.int64)
>>> model = nn.Linear(4, 2, rng=0)
>>> opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
>>> sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
>>> history = convcore.fit(model, nn.CrossEntropyLoss(), opt, x, y, epochs=10, verbose=0, callbacks=[sched])
>>> [round(lr, 4) for lr in history.learning_rate[:3]]
[0.1, 0.0976, 0.0905]
"""

from __future__ import annotations

import copy
import math
import types

from .._validation import check_choice, check_int, check_number
from .optimizer import Optimizer


def _check_optimizer(optimizer, what: str) -> Optimizer:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{what}: optimizer must be a convcore.optim.Optimizer; received "
                        f"optimizer={type(optimizer).__name__}")
    return optimizer


def _per_group(value, name: str, optimizer, what: str) -> list:
    if isinstance(value, (list, tuple)):
        if len(value) != len(optimizer.param_groups):
            raise ValueError(f"{what}: {name} must be a number or one per parameter group "
                             f"({len(optimizer.param_groups)}); received {len(value)} values")
        return [check_number(v, name, what) for v in value]
    return [check_number(value, name, what)] * len(optimizer.param_groups)


class LRScheduler:
    """Base class of the schedulers, as ``torch.optim.lr_scheduler.LRScheduler``.

    It keeps ``last_epoch``, ``base_lrs`` (the groups' ``initial_lr``) and provides ``step()``,
    ``get_last_lr()`` and ``state_dict()``. Subclasses write ``get_lr()``, the rates for the new
    ``last_epoch``, usually from the current ``group["lr"]`` (torch's chainable form); creating a
    scheduler runs step 0.

    Parameters
    ----------
    optimizer : Optimizer
    last_epoch : int, default -1
        The index of the last epoch; -1 starts the schedule, another value resumes it (the groups
        must then hold ``initial_lr``, as a loaded optimizer state does).

    Attributes
    ----------
    optimizer : Optimizer
    last_epoch : int
        The schedule's position (0 after construction).
    base_lrs : list of float
        The groups' initial learning rates.

    Raises
    ------
    TypeError
        ``optimizer`` is not a ``convcore.optim.Optimizer``, or an argument has the wrong type.
    ValueError
        An argument is out of range (``last_epoch < -1``, ...).
    KeyError
        ``last_epoch`` is not -1 but a parameter group has no ``initial_lr`` (load the optimizer's
        state first).

    Examples
    --------
    A schedule that halves the rate every epoch:

    >>> import numpy as np
    >>> from convcore import nn, optim
    >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1)
    >>> class Halving(optim.lr_scheduler.LRScheduler):
    ...     def get_lr(self):
    ...         if self.last_epoch == 0:
    ...             return [g["lr"] for g in self.optimizer.param_groups]
    ...         return [g["lr"] / 2 for g in self.optimizer.param_groups]
    >>> sched = Halving(opt)
    >>> sched.step()
    >>> sched.step()
    >>> sched.get_last_lr(), sched.last_epoch
    ([0.025], 2)
    """

    def __init__(self, optimizer, last_epoch: int = -1):
        what = type(self).__name__
        self.optimizer = _check_optimizer(optimizer, what)
        last_epoch = check_int(last_epoch, "last_epoch", what, minimum=-1)
        if last_epoch == -1:
            for group in optimizer.param_groups:
                group.setdefault("initial_lr", group["lr"])
        else:
            for i, group in enumerate(optimizer.param_groups):
                if "initial_lr" not in group:
                    raise KeyError(f"{what}: param_groups[{i}] has no 'initial_lr' although last_epoch={last_epoch} "
                                   "asks to resume; load the optimizer's state_dict first")
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._initial_step()

    def _initial_step(self) -> None:
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def get_lr(self) -> list[float]:
        raise NotImplementedError

    def step(self) -> None:
        """Advance the schedule by one epoch (or batch) and set the groups' learning rates."""
        self._step_count += 1
        self.last_epoch += 1
        values = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, values):
            group["lr"] = float(lr)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        """The learning rates the last ``step`` set, one per parameter group."""
        return list(self._last_lr)

    def state_dict(self) -> dict:
        """Every attribute but the optimizer (plain numbers, lists and dicts)."""
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k != "optimizer"}

    def load_state_dict(self, state_dict: dict) -> None:
        self.__dict__.update(copy.deepcopy(dict(state_dict)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={self.last_epoch}, lr={self.get_last_lr()})"


class LambdaLR(LRScheduler):
    """``lr = initial_lr * lr_lambda(epoch)``, as torch's ``LambdaLR``.

    Parameters
    ----------
    optimizer : Optimizer
    lr_lambda : callable or list of callables
        ``epoch -> factor``; one function for every group, or one per group.
    last_epoch : int, default -1
        The index of the last epoch; -1 starts the schedule, another value resumes it (the groups
        must then hold ``initial_lr``, as a loaded optimizer state does).

    Raises
    ------
    TypeError
        ``optimizer`` is not an Optimizer, or an ``lr_lambda`` is not callable.
    ValueError
        A list of ``lr_lambda`` that does not have one function per group.

    Notes
    -----
    ``state_dict`` saves the state of callable objects (their ``__dict__``) but not plain
    functions and lambdas, as torch.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn, optim
    >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1)
    >>> sched = optim.lr_scheduler.LambdaLR(opt, lr_lambda=lambda epoch: 0.9 ** epoch)
    >>> lrs = []
    >>> for epoch in range(4):
    ...     lrs.append(round(sched.get_last_lr()[0], 6))
    ...     opt.step()   # (the training epoch)
    ...     sched.step()
    >>> lrs
    [0.1, 0.09, 0.081, 0.0729]
    """

    def __init__(self, optimizer, lr_lambda, last_epoch: int = -1):
        _check_optimizer(optimizer, "LambdaLR")
        fns = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * len(optimizer.param_groups)
        if len(fns) != len(optimizer.param_groups):
            raise ValueError(f"LambdaLR: lr_lambda must be a function or one per parameter group "
                             f"({len(optimizer.param_groups)}); received {len(fns)}")
        for f in fns:
            if not callable(f):
                raise TypeError(f"LambdaLR: lr_lambda must be callable; received lr_lambda={f!r}")
        self.lr_lambdas = fns
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        return [base * fn(self.last_epoch) for fn, base in zip(self.lr_lambdas, self.base_lrs)]

    def state_dict(self):
        state = {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k not in ("optimizer", "lr_lambdas")}
        state["lr_lambdas"] = [None if isinstance(f, types.FunctionType) else copy.deepcopy(f.__dict__)
                               for f in self.lr_lambdas]
        return state

    def load_state_dict(self, state_dict):
        state = dict(state_dict)
        fns = state.pop("lr_lambdas", [None] * len(self.lr_lambdas))
        self.__dict__.update(copy.deepcopy(state))
        for f, saved in zip(self.lr_lambdas, fns):
            if saved is not None:
                f.__dict__.update(saved)


class MultiplicativeLR(LambdaLR):
    """``lr *= lr_lambda(epoch)`` each epoch after the first, as torch's ``MultiplicativeLR``.

    Parameters
    ----------
    optimizer : Optimizer
    lr_lambda : callable or list of callables
        ``epoch -> factor``; one function for every group, or one per group.
    last_epoch : int, default -1
        The index of the last epoch; -1 starts the schedule, another value resumes it (the groups
        must then hold ``initial_lr``, as a loaded optimizer state does).

    Raises
    ------
    TypeError
        ``optimizer`` is not an Optimizer, or an ``lr_lambda`` is not callable.
    ValueError
        A list of ``lr_lambda`` that does not have one function per group.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn, optim
    >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1)
    >>> sched = optim.lr_scheduler.MultiplicativeLR(opt, lr_lambda=lambda epoch: 0.5)
    >>> lrs = []
    >>> for epoch in range(4):
    ...     lrs.append(round(sched.get_last_lr()[0], 6))
    ...     opt.step()   # (the training epoch)
    ...     sched.step()
    >>> lrs
    [0.1, 0.05, 0.025, 0.0125]
    """

    def get_lr(self):
        if not self._is_initial:
            return [g["lr"] * fn(self.last_epoch) for fn, g in zip(self.lr_lambdas, self.optimizer.param_groups)]
        return [g["lr"] for g in self.optimizer.param_groups]


class StepLR(LRScheduler):
    """``lr *= gamma`` every ``step_size`` epochs, as torch's ``StepLR``.

    Parameters
    ----------
    optimizer : Optimizer
    step_size : int
        Epochs between decays, at least 1.
    gamma : float, default 0.1
        The decay factor.
    last_epoch : int, default -1
        The index of the last epoch; -1 starts the schedule, another value resumes it (the groups
        must then hold ``initial_lr``, as a loaded optimizer state does).

    Raises
    ------
    TypeError
        ``optimizer`` is not a ``convcore.optim.Optimizer``, or an argument has the wrong type.
    ValueError
        An argument is out of range (``step_size < 1``, ``last_epoch < -1``).
    KeyError
        ``last_epoch`` is not -1 but a parameter group has no ``initial_lr`` (load the optimizer's
        state first).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn, optim
    >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1)
    >>> sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    >>> lrs = []
    >>> for epoch in range(5):
    ...     lrs.append(round(sched.get_last_lr()[0], 6))
    ...     opt.step()   # (the training epoch)
    ...     sched.step()
    >>> lrs
    [0.1, 0.1, 0.05, 0.05, 0.025]
    """

    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, last_epoch: int = -1):
        self.step_size = check_int(step_size, "step_size", "StepLR", minimum=1)
        self.gamma = check_number(gamma, "gamma", "StepLR")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return [g["lr"] for g in self.optimizer.param_groups]
        return [g["lr"] * self.gamma for g in self.optimizer.param_groups]


class MultiStepLR(LRScheduler):
    """``lr *= gamma`` at each epoch listed in ``milestones``, as torch's ``MultiStepLR``.

    A repeated milestone applies ``gamma`` once per occurrence (as torch's ``Counter``).

    Parameters
    ----------
    optimizer : Optimizer
    milestones : iterable of int
        Epoch indices (>= 0), in any order.
    gamma : float, default 0.1
        The decay factor.
    last_epoch : int, default -1
        The index of the last epoch; -1 starts the schedule, another value resumes it (the groups
        must then hold ``initial_lr``, as a loaded optimizer state does).

    Raises
    ------
    TypeError
        ``optimizer`` is not a ``convcore.optim.Optimizer``, or an argument has the wrong type.
    ValueError
        An argument is out of range (a negative milestone, ``last_epoch < -1``).
    KeyError
        ``last_epoch`` is not -1 but a parameter group has no ``initial_lr`` (load the optimizer's
        state first).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn, optim
    >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1)
    >>> sched = optim.lr_scheduler.MultiStepLR(opt, milestones=[2, 4], gamma=0.1)
    >>> lrs = []
    >>> for epoch in range(6):
    ...     lrs.append(round(sched.get_last_lr()[0], 6))
    ...     opt.step()   # (the training epoch)
    ...     sched.step()
    >>> lrs
    [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    """

    def __init__(self, optimizer, milestones, gamma: float = 0.1, last_epoch: int = -1):
        counts: dict[int, int] = {}
        for m in milestones:
            m = check_int(m, "milestones", "MultiStepLR", minimum=0)
            counts[m] = counts.get(m, 0) + 1
        self.milestones = counts
        self.gamma = check_number(gamma, "gamma", "MultiStepLR")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self.last_epoch not in self.milestones:
            return [g["lr"] for g in self.optimizer.param_groups]
        return [g["lr"] * self.gamma ** self.milestones[self.last_epoch] for g in self.optimizer.param_groups]

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        self.milestones = {int(k): int(v) for k, v in self.milestones.items()}   # JSON made the keys strings


class ConstantLR(LRScheduler):
    """``lr * factor`` until epoch ``total_iters``, then ``lr``, as torch's ``ConstantLR``.

    Parameters
    ----------
    optimizer : Optimizer
    factor : float, default 1/3
        In [0, 1].
    total_iters : int, default 5
        The epoch at which the full rate returns.
    last_epoch : int, default -1
        The index of the last epoch; -1 starts the schedule, another value resumes it (the groups
        must then hold ``initial_lr``, as a loaded optimizer state does).

    Raises
    ------
    TypeError
        ``optimizer`` is not a ``convcore.optim.Optimizer``, or an argument has the wrong type.
    ValueError
        An argument is out of range (``factor`` outside [0, 1], negative ``total_iters``).
    KeyError
        ``last_epoch`` is not -1 but a parameter group has no ``initial_lr`` (load the optimizer's
        state first).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn, optim
    >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1)
    >>> sched = optim.lr_scheduler.ConstantLR(opt, factor=0.5, total_iters=2)
    >>> lrs = []
    >>> for epoch in range(4):
    ...     lrs.append(round(sched.get_last_lr()[0], 6))
    ...     opt.step()   # (the training epoch)
    ...     sched.step()
    >>> lrs
    [0.05, 0.05, 0.1, 0.1]
    """

    def __init__(self, optimizer, factor: float = 1.0 / 3, total_iters: int = 5, last_epoch: int = -1):
        self.factor = check_number(factor, "factor", "ConstantLR", 0.0, 1.0)
        self.total_iters = check_int(total_iters, "total_iters", "ConstantLR")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups = self.optimizer.param_groups
        if self.last_epoch == 0:
            return [g["lr"] * self.factor for g in groups]
        if self.last_epoch != self.total_iters:
            return [g["lr"] for g in groups]
        return [g["lr"] * (1.0 / self.factor) for g in groups]


class LinearLR(LRScheduler):
    """The rate's multiplier goes linearly from ``start_factor`` to ``end_factor`` over
    ``total_iters`` epochs (a warm-up), as torch's ``LinearLR``.

    Parameters
    ----------
    optimizer : Optimizer
    start_factor : float, default 1/3
        In (0, 1].
    end_factor : float, default 1.0
        In [0, 1].
    total_iters : int, default 5
    last_epoch : int, default -1
        The index of the last epoch; -1 starts the schedule, another value resumes it (the groups
        must then hold ``initial_lr``, as a loaded optimizer state does).

    Raises
    ------
    TypeError
        ``optimizer`` is not a ``convcore.optim.Optimizer``, or an argument has the wrong type.
    ValueError
        An argument is out of range (a factor outside its interval, negative ``total_iters``).
    KeyError
        ``last_epoch`` is not -1 but a parameter group has no ``initial_lr`` (load the optimizer's
        state first).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn, optim
    >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1)
    >>> sched = optim.lr_scheduler.LinearLR(opt, start_factor=0.25, total_iters=3)
    >>> lrs = []
    >>> for epoch in range(5):
    ...     lrs.append(round(sched.get_last_lr()[0], 6))
    ...     opt.step()   # (the training epoch)
    ...     sched.step()
    >>> lrs
    [0.025, 0.05, 0.075, 0.1, 0.1]
    """

    def __init__(self, optimizer, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5,
                 last_epoch: int = -1):
        self.start_factor = check_number(start_factor, "start_factor", "LinearLR", 0.0, 1.0, low_open=True)
        self.end_factor = check_number(end_factor, "end_factor", "LinearLR", 0.0, 1.0)
        self.total_iters = check_int(total_iters, "total_iters", "LinearLR")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups = self.optimizer.param_groups
        if self.last_epoch == 0:
            return [g["lr"] * self.start_factor for g in groups]
        if self._is_initial or self.last_epoch > self.total_iters:
            return [g["lr"] for g in groups]
        ratio = 1.0 + (self.end_factor - self.start_factor) / (
            self.total_iters * self.start_factor + (self.last_epoch - 1) * (self.end_factor - self.start_factor))
        return [g["lr"] * ratio for g in groups]


class ExponentialLR(LRScheduler):
    """``lr *= gamma`` every epoch, as torch's ``ExponentialLR``.

    Parameters
    ----------
    optimizer : Optimizer
    gamma : float
        The decay factor.
    last_epoch : int, default -1
        The index of the last epoch; -1 starts the schedule, another value resumes it (the groups
        must then hold ``initial_lr``, as a loaded optimizer state does).

    Raises
    ------
    TypeError
        ``optimizer`` is not a ``convcore.optim.Optimizer``, or an argument has the wrong type.
    ValueError
        An argument is out of range (a non-finite ``gamma``, ``last_epoch < -1``).
    KeyError
        ``last_epoch`` is not -1 but a parameter group has no ``initial_lr`` (load the optimizer's
        state first).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn, optim
    >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1)
    >>> sched = optim.lr_scheduler.ExponentialLR(opt, gamma=0.5)
    >>> lrs = []
    >>> for epoch in range(3):
    ...     lrs.append(round(sched.get_last_lr()[0], 6))
    ...     opt.step()   # (the training epoch)
    ...     sched.step()
    >>> lrs
    [0.1, 0.05, 0.025]
    """

    def __init__(self, optimizer, gamma: float, last_epoch: int = -1):
        self.gamma = check_number(gamma, "gamma", "ExponentialLR")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        if self._is_initial:
            return [g["lr"] for g in self.optimizer.param_groups]
        return [g["lr"] * self.gamma for g in self.optimizer.param_groups]


class CosineAnnealingLR(LRScheduler):
    """Cosine from the initial rate down to ``eta_min`` over ``T_max`` epochs (then back up, as
    torch's, if stepped further)::

        lr = eta_min + (initial_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2

    computed with torch's recursive form (no warm restarts: see torch's
    ``CosineAnnealingWarmRestarts``, which convcore does not have).

    Parameters
    ----------
    optimizer : Optimizer
    T_max : int
        Epochs of the half period, at least 1.
    eta_min : float, default 0
        The lowest rate.
    last_epoch : int, default -1
        The index of the last epoch; -1 starts the schedule, another value resumes it (the groups
        must then hold ``initial_lr``, as a loaded optimizer state does).

    Raises
    ------
    TypeError
        ``optimizer`` is not a ``convcore.optim.Optimizer``, or an argument has the wrong type.
    ValueError
        An argument is out of range (``T_max < 1``, ``last_epoch < -1``).
    KeyError
        ``last_epoch`` is not -1 but a parameter group has no ``initial_lr`` (load the optimizer's
        state first).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn, optim
    >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1)
    >>> sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    >>> lrs = []
    >>> for epoch in range(4):
    ...     lrs.append(round(sched.get_last_lr()[0], 6))
    ...     opt.step()   # (the training epoch)
    ...     sched.step()
    >>> lrs
    [0.1, 0.085355, 0.05, 0.014645]
    """

    def __init__(self, optimizer, T_max: int, eta_min: float = 0.0, last_epoch: int = -1):
        self.T_max = check_int(T_max, "T_max", "CosineAnnealingLR", minimum=1)
        self.eta_min = check_number(eta_min, "eta_min", "CosineAnnealingLR")
        super().__init__(optimizer, last_epoch)

    def get_lr(self):
        groups, e, T, lo = self.optimizer.param_groups, self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return [g["lr"] for g in groups]
        if self._step_count == 1 and e > 0:
            return [lo + (base - lo) * (1 + math.cos(e * math.pi / T)) / 2 for base in self.base_lrs]
        if (e - 1 - T) % (2 * T) == 0:
            return [g["lr"] + (base - lo) * (1 - math.cos(math.pi / T)) / 2 for base, g in zip(self.base_lrs, groups)]
        return [(1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T)) * (g["lr"] - lo) + lo
                for g in groups]


class OneCycleLR(LRScheduler):
    """The 1cycle policy (Smith & Topin), torch's ``OneCycleLR``: the rate rises from
    ``max_lr / div_factor`` to ``max_lr`` over the first ``pct_start`` of ``total_steps`` (or
    ``epochs * steps_per_epoch``) batches, then anneals to ``initial_lr / final_div_factor``;
    with ``cycle_momentum`` the momentum (SGD) or ``betas[0]`` (Adam) moves the opposite way
    between ``max_momentum`` and ``base_momentum``. Step it after every batch.

    Parameters
    ----------
    optimizer : Optimizer
    max_lr : float or list of float
        The peak rate, for every group or one per group.
    total_steps : int, optional
        The number of batches of the cycle; else ``epochs * steps_per_epoch``.
    epochs, steps_per_epoch : int, optional
    pct_start : float, default 0.3
        The fraction of the cycle spent rising, in [0, 1].
    anneal_strategy : {"cos", "linear"}, default "cos"
    cycle_momentum : bool, default True
        Cycle the momentum (SGD's ``momentum``, Adam's ``betas[0]``) inversely to the rate.
    base_momentum, max_momentum : float or list of float, default 0.85 and 0.95
    div_factor : float, default 25
        ``initial_lr = max_lr / div_factor``.
    final_div_factor : float, default 1e4
        ``min_lr = initial_lr / final_div_factor``.
    three_phase : bool, default False
        fastai's variant: rise, symmetric fall to ``initial_lr``, then annihilation to ``min_lr``.
    last_epoch : int, default -1
        The index of the last epoch; -1 starts the schedule, another value resumes it (the groups
        must then hold ``initial_lr``, as a loaded optimizer state does).

    Raises
    ------
    TypeError
        ``optimizer`` is not an Optimizer, or an argument has the wrong type.
    ValueError
        Neither ``total_steps`` nor ``epochs`` and ``steps_per_epoch``; an argument out of range;
        ``cycle_momentum`` with an optimizer without momentum or betas; from ``step``, more steps
        than ``total_steps``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn, optim
    >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1, momentum=0.9)
    >>> sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=10)
    >>> round(opt.param_groups[0]["momentum"], 6)   # starts at max_momentum
    0.95
    >>> lrs = []
    >>> for batch in range(10):
    ...     lrs.append(sched.get_last_lr()[0])
    ...     opt.step()   # (the training batch)
    ...     sched.step()
    >>> [round(v, 6) for v in (lrs[0], max(lrs), lrs[-1])]
    [0.04, 1.0, 4e-06]
    """

    def __init__(self, optimizer, max_lr, total_steps: int | None = None, epochs: int | None = None,
                 steps_per_epoch: int | None = None, pct_start: float = 0.3, anneal_strategy: str = "cos",
                 cycle_momentum: bool = True, base_momentum=0.85, max_momentum=0.95, div_factor: float = 25.0,
                 final_div_factor: float = 1e4, three_phase: bool = False, last_epoch: int = -1):
        what = "OneCycleLR"
        _check_optimizer(optimizer, what)
        if total_steps is not None:
            self.total_steps = check_int(total_steps, "total_steps", what, minimum=1)
        elif epochs is not None and steps_per_epoch is not None:
            self.total_steps = (check_int(epochs, "epochs", what, minimum=1)
                                * check_int(steps_per_epoch, "steps_per_epoch", what, minimum=1))
        else:
            raise ValueError(f"{what}: pass total_steps, or epochs and steps_per_epoch; received total_steps=None, "
                             f"epochs={epochs!r}, steps_per_epoch={steps_per_epoch!r}")
        pct_start = check_number(pct_start, "pct_start", what, 0.0, 1.0)
        self.anneal_strategy = check_choice(anneal_strategy, "anneal_strategy", ("cos", "linear"), what)
        div_factor = check_number(div_factor, "div_factor", what, minimum=0.0, low_open=True)
        final_div_factor = check_number(final_div_factor, "final_div_factor", what, minimum=0.0, low_open=True)
        n = self.total_steps
        if three_phase:
            self._phases = [
                dict(end_step=float(pct_start * n) - 1, start_lr="initial_lr", end_lr="max_lr",
                     start_momentum="max_momentum", end_momentum="base_momentum"),
                dict(end_step=float(2 * pct_start * n) - 2, start_lr="max_lr", end_lr="initial_lr",
                     start_momentum="base_momentum", end_momentum="max_momentum"),
                dict(end_step=n - 1, start_lr="initial_lr", end_lr="min_lr",
                     start_momentum="max_momentum", end_momentum="max_momentum"),
            ]
        else:
            self._phases = [
                dict(end_step=float(pct_start * n) - 1, start_lr="initial_lr", end_lr="max_lr",
                     start_momentum="max_momentum", end_momentum="base_momentum"),
                dict(end_step=n - 1, start_lr="max_lr", end_lr="min_lr",
                     start_momentum="base_momentum", end_momentum="max_momentum"),
            ]
        max_lrs = _per_group(max_lr, "max_lr", optimizer, what)
        if last_epoch == -1:
            for m, group in zip(max_lrs, optimizer.param_groups):
                group["initial_lr"] = m / div_factor
                group["max_lr"] = m
                group["min_lr"] = group["initial_lr"] / final_div_factor
        self.cycle_momentum = bool(cycle_momentum)
        if self.cycle_momentum:
            if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
                raise ValueError(f"{what}: cycle_momentum=True needs an optimizer with momentum or betas; received "
                                 f"{type(optimizer).__name__} (pass cycle_momentum=False)")
            self.use_beta1 = "betas" in optimizer.defaults
            maxs = _per_group(max_momentum, "max_momentum", optimizer, what)
            bases = _per_group(base_momentum, "base_momentum", optimizer, what)
            if last_epoch == -1:
                for mx, b, group in zip(maxs, bases, optimizer.param_groups):
                    if self.use_beta1:
                        group["betas"] = (mx, *group["betas"][1:])
                    else:
                        group["momentum"] = mx
                    group["max_momentum"] = mx
                    group["base_momentum"] = b
        super().__init__(optimizer, last_epoch)

    def _anneal(self, start, end, pct):
        if self.anneal_strategy == "cos":
            return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (end - start) * pct + start

    def get_lr(self):
        step = self.last_epoch
        if step > self.total_steps:
            raise ValueError(f"OneCycleLR: stepped {step} times, more than total_steps={self.total_steps}")
        lrs = []
        for group in self.optimizer.param_groups:
            start = 0.0
            for i, phase in enumerate(self._phases):
                end = phase["end_step"]
                if step <= end or i == len(self._phases) - 1:
                    pct = (step - start) / (end - start)
                    lr = self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct)
                    if self.cycle_momentum:
                        mom = self._anneal(group[phase["start_momentum"]], group[phase["end_momentum"]], pct)
                    break
                start = phase["end_step"]
            lrs.append(lr)
            if self.cycle_momentum:
                if self.use_beta1:
                    group["betas"] = (mom, *group["betas"][1:])
                else:
                    group["momentum"] = mom
        return lrs


class ReduceLROnPlateau(LRScheduler):
    """Multiply the rates by ``factor`` when the metric passed to ``step(metric)`` has not
    improved for more than ``patience`` epochs (torch's rules for ``threshold``,
    ``threshold_mode``, ``cooldown``, ``min_lr``, ``eps``).

    Unlike the other schedulers, creating it changes no rate, and ``step`` takes the epoch's
    value of the monitored quantity. ``convcore.fit`` passes it ``val_loss`` (else ``loss``).

    Parameters
    ----------
    optimizer : Optimizer
    mode : {"min", "max"}, default "min"
        Whether the quantity should decrease or increase.
    factor : float, default 0.1
        The multiplier, below 1.
    patience : int, default 10
        Epochs without improvement tolerated before a reduction.
    threshold : float, default 1e-4
        The least change that counts as an improvement.
    threshold_mode : {"rel", "abs"}, default "rel"
        ``threshold`` relative to the best value, or absolute.
    cooldown : int, default 0
        Epochs to wait after a reduction before counting bad epochs again.
    min_lr : float or list of float, default 0
        The lowest rate, for every group or one per group.
    eps : float, default 1e-8
        Changes of the rate smaller than this are not made.

    Raises
    ------
    TypeError
        ``optimizer`` is not an Optimizer, or an argument has the wrong type.
    ValueError
        An argument out of range (``factor >= 1``, a negative ``min_lr``, an unknown ``mode``);
        from ``step``, a NaN metric (torch treats it as no improvement).
    RuntimeError
        From ``step``: per-group ``min_lr`` values no longer match the optimizer's groups.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn, optim
    >>> opt = optim.SGD([nn.Parameter(np.zeros(1))], lr=0.1)
    >>> sched = optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1)
    >>> for val_loss in [1.0, 0.9, 0.9, 0.9, 0.9]:
    ...     sched.step(val_loss)
    ...     print(sched.get_last_lr()[0])
    0.1
    0.1
    0.1
    0.05
    0.05
    """

    def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0, min_lr=0.0,
                 eps: float = 1e-8):
        what = "ReduceLROnPlateau"
        self.optimizer = _check_optimizer(optimizer, what)
        self.factor = check_number(factor, "factor", what, maximum=1.0, high_open=True)
        if isinstance(min_lr, (list, tuple)):
            self.default_min_lr = None
            self.min_lrs = _per_group(min_lr, "min_lr", optimizer, what)
        else:
            self.default_min_lr = check_number(min_lr, "min_lr", what, minimum=0.0)
            self.min_lrs = [self.default_min_lr] * len(optimizer.param_groups)
        self.patience = check_int(patience, "patience", what)
        self.cooldown = check_int(cooldown, "cooldown", what)
        self.eps = check_number(eps, "eps", what, minimum=0.0)
        self.mode = check_choice(mode, "mode", ("min", "max"), what)
        self.threshold = check_number(threshold, "threshold", what, minimum=0.0)
        self.threshold_mode = check_choice(threshold_mode, "threshold_mode", ("rel", "abs"), what)
        self.mode_worse = math.inf if self.mode == "min" else -math.inf
        self.last_epoch = 0
        self._step_count = 0
        self._last_lr = [g["lr"] for g in optimizer.param_groups]
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    def step(self, metrics) -> None:  # type: ignore[override]  # torch's signature: the monitored value
        """Record one epoch's value of the monitored quantity."""
        current = check_number(metrics, "metrics", "ReduceLROnPlateau", finite=False)
        self._step_count += 1
        self.last_epoch += 1
        if self._is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self._reduce_lr()
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [g["lr"] for g in self.optimizer.param_groups]

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _reduce_lr(self) -> None:
        if len(self.min_lrs) != len(self.optimizer.param_groups):
            if self.default_min_lr is None:
                raise RuntimeError("ReduceLROnPlateau: the optimizer has a different number of parameter groups than "
                                   "min_lr lists; update min_lrs")
            self.min_lrs = [self.default_min_lr] * len(self.optimizer.param_groups)
        for i, group in enumerate(self.optimizer.param_groups):
            old = float(group["lr"])
            new = max(old * self.factor, self.min_lrs[i])
            if old - new > self.eps:
                group["lr"] = new

    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold


__all__ = ["LRScheduler", "LambdaLR", "MultiplicativeLR", "StepLR", "MultiStepLR", "ConstantLR", "LinearLR",
           "ExponentialLR", "CosineAnnealingLR", "OneCycleLR", "ReduceLROnPlateau"]
