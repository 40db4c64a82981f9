"""The per-call record: what one forward computed, so that its backward can run in reverse.

A. Where per-call state lives. ``module(x)`` with gradients enabled records one *node* per call of
   a primitive (a layer with a hand-written ``backward``, or a functional op) on the calling
   thread's active *record*: the module, where each of its array inputs came from, and what its
   forward kept with ``save_for_backward``. Nothing is written on the module, so one module may be
   called many times in one forward (tied weights, a reused ReLU) and by many threads at once.
   The finished record is kept per (module called at top level, thread) until that module's next
   top-level call in the same thread.
B. Linking calls. Inside a recorded forward, intermediates are ``TracedArray`` views (an ndarray
   subclass) that know the call that produced them. numpy arithmetic on them is traced for ``+ - *
   /``, negation, ``sum``/``mean``, ``reshape``/``flatten``/``transpose``, indexing and
   ``np.concatenate``; any other numpy operation returns an array marked *untraced*, and passing
   such a float array to a recorded call raises instead of silently losing its gradient.
   ``np.asarray(h)`` detaches explicitly (it returns a plain ndarray, a constant for the record).
C. Backward. ``model.backward(grad)`` replays the thread's last record of ``model`` in reverse. A
   node runs only when its module has a parameter that requires a gradient or one of its inputs
   depends on something that does (need propagation, as in Chainer's ``FunctionNode``), and it is
   asked only for the input gradients that are needed: a frozen prefix costs nothing and a first
   convolution skips its input gradient, in any graph. Gradients meeting at fan-out are summed.
D. Scope. Every top-level call, with or without gradients, opens a scope that lives until it
   returns: ``MaxPool2d(return_indices=True)`` leaves its indices there for a paired
   ``MaxUnpool2d(pool)``, so pairing is per call and per thread.
"""

from __future__ import annotations

import threading

import numpy as np

from .._grad_mode import is_grad_enabled


class GraphError(RuntimeError):
    """A recorded forward could not be linked (a gradient would be lost) or replayed.

    A subclass of ``RuntimeError``. Raised, for instance, when a recorded call receives an array
    computed by a numpy operation convcore does not trace (the message names it), when a
    recorded intermediate is modified in place after a layer saved it for its backward, or
    when a layer's ``forward`` method is called directly inside a recorded forward.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> class Untraced(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = nn.Linear(2, 2)
    ...     def forward(self, x):
    ...         return self.fc(np.exp(self.fc(x)))      # np.exp is not traced
    >>> try:
    ...     Untraced()(np.ones((1, 2), np.float32))
    ... except nn.GraphError as exc:
    ...     print(str(exc).split(";")[0])
    Linear received an array computed by numpy.exp from an intermediate of this forward
    """


class _State(threading.local):
    scope: Scope | None = None   # the active top-level call of this thread
    node: Node | None = None     # the call whose forward or backward is running


_tls = _State()


class Scope:
    """One top-level call: its record (None under ``no_grad``) and the pools' indices."""

    __slots__ = ("record", "pool_indices")

    def __init__(self, record):
        self.record = record
        self.pool_indices: dict | None = None


def active_scope() -> Scope | None:
    return _tls.scope


def active_record() -> Record | None:
    """The record of this thread's forward in progress, or None (no forward, or ``no_grad``)."""
    scope = _tls.scope
    if scope is None or scope.record is None or _tls.node is not None or not is_grad_enabled():
        return None
    return scope.record


class Node:
    """One recorded call: ``module``, where each array input came from, what forward saved."""

    __slots__ = ("module", "inputs", "in_shapes", "saved", "index", "n_out", "diff_out", "out_shapes", "constants")

    def __init__(self, module, inputs, in_shapes):
        self.module = module
        self.inputs = inputs          # per array input: (producer node, output index) or None (constant)
        self.in_shapes = in_shapes
        self.saved: tuple = ()
        self.index = -1
        self.n_out = 1
        self.diff_out = (0,)          # the outputs that carry gradients (float arrays)
        self.out_shapes: tuple = ()
        self.constants: dict | None = None   # array inputs that are constants, by position (for export)


class _Missing:
    """Marker stored as a module's last record after a ``no_grad`` top-level call."""


NO_GRAD = _Missing()


class Record:
    """The calls of one top-level forward, in execution order."""

    __slots__ = ("module", "nodes", "source", "in_meta", "outputs", "out_meta", "tuple_out")

    def __init__(self, module):
        self.module = module
        self.nodes: list[Node] = []
        self.source = Node(None, (), ())    # stands for the top-level call's inputs
        self.in_meta: list[tuple] = []      # (shape, dtype) per array input of the top-level call
        self.outputs: list = []
        self.out_meta: list[tuple] = []
        self.tuple_out = False

    def add(self, node: Node) -> None:
        node.index = len(self.nodes)
        self.nodes.append(node)

    # -- backward ----------------------------------------------------------------------------
    def backward(self, grad, need_input_grad=False):
        grads = self._check_grads(grad)
        needs_in = self._check_needs(need_input_grad)
        nodes = self.nodes
        # Forward pass over the record: which outputs depend on something that needs a gradient.
        live = [False] * len(nodes)
        needs: list[tuple] = [()] * len(nodes)
        for node in nodes:
            n = tuple(ref is not None and (needs_in[ref[1]] if ref[0] is self.source else live[ref[0].index])
                      for ref in node.inputs)
            needs[node.index] = n
            live[node.index] = any(n) or _trainable(node.module)
        # Reverse pass: gradients keyed by (producer index, output index); -1 is the input.
        acc: dict = {}
        owned: set = set()
        for ref, g in zip(self.outputs, grads):
            if ref is not None and g is not None:
                _add(acc, owned, self._key(ref), g)
        for node in reversed(nodes):
            if not live[node.index]:
                continue
            gouts = [acc.pop((node.index, k), None) for k in range(node.n_out)]
            if all(g is None for g in gouts):
                continue
            gins = run_backward(node, gouts, needs[node.index])
            for ref, need, g in zip(node.inputs, needs[node.index], gins):
                if need and g is not None:
                    _add(acc, owned, self._key(ref), g)
        if not any(needs_in):
            return None
        result = []
        for i, (shape, dtype) in enumerate(self.in_meta):
            if not needs_in[i]:
                result.append(None)
                continue
            g = acc.get((-1, i))
            result.append(np.zeros(shape, dtype=dtype) if g is None else g)
        return result[0] if len(result) == 1 else tuple(result)

    def _key(self, ref):
        return (-1, ref[1]) if ref[0] is self.source else (ref[0].index, ref[1])

    def _check_grads(self, grad) -> list:
        name = type(self.module).__name__
        if self.tuple_out:
            if not isinstance(grad, (tuple, list)) or len(grad) != len(self.outputs):
                raise ValueError(f"{name}.backward: the forward returned {len(self.outputs)} outputs, so grad must "
                                 f"be a tuple of {len(self.outputs)} arrays (None for an output without gradient); "
                                 f"received {type(grad).__name__}")
            grads = list(grad)
        else:
            grads = [grad]
        for i, (g, (shape, _)) in enumerate(zip(grads, self.out_meta)):
            if g is None:
                continue
            if not isinstance(g, np.ndarray):
                raise TypeError(f"{name}.backward: grad must be a numpy.ndarray shaped like the output {shape}; "
                                f"received {type(g).__name__}")
            if g.shape != shape:
                raise ValueError(f"{name}.backward: grad{f'[{i}]' if self.tuple_out else ''} must have the output's "
                                 f"shape {shape}; received shape {g.shape}")
            if g.dtype.kind != "f":
                raise TypeError(f"{name}.backward: grad must be a float array; received dtype {g.dtype}")
        return grads

    def _check_needs(self, need_input_grad) -> list:
        n = len(self.in_meta)
        if isinstance(need_input_grad, (bool, np.bool_)):
            flags = [bool(need_input_grad)] * n
        elif isinstance(need_input_grad, (tuple, list)) and len(need_input_grad) == n:
            flags = [bool(f) for f in need_input_grad]
        else:
            raise TypeError(f"need_input_grad must be a bool or one bool per input ({n}); "
                            f"received need_input_grad={need_input_grad!r}")
        return [f and dtype.kind == "f" for f, (_, dtype) in zip(flags, self.in_meta)]


def _trainable(module) -> bool:
    if module is None:
        return False
    for p in module._parameters.values():
        if p is not None and p.requires_grad:
            return True
    return bool(module._modules) and module.trainable


def _add(acc: dict, owned: set, key, g) -> None:
    """acc[key] += g without writing into an array a layer may still hold (fan-out sums)."""
    old = acc.get(key)
    if old is None:
        acc[key] = g
    elif key in owned:
        old += g
    else:
        acc[key] = old + g
        owned.add(key)


def run_backward(node: Node, gouts: list, needs: tuple) -> tuple:
    """Call the hand-written backward of ``node``'s module with this call's saved state active.

    One differentiable output gets its gradient as an array, several as a tuple (zeros for
    outputs without one); one array input gets ``need_input_grad`` as a bool, several as a tuple,
    and the backward returns a gradient or a tuple to match.
    """
    module = node.module
    if len(node.diff_out) == 1:
        grad = gouts[node.diff_out[0]]
    else:
        grad = tuple(g for g in gouts)
    prev, _tls.node = _tls.node, node
    try:
        single = len(node.inputs) == 1
        out = module.backward(grad, needs[0] if single else needs)
    finally:
        _tls.node = prev
    gins = (out,) if single else tuple(out) if out is not None else (None,) * len(needs)
    if len(gins) != len(needs):
        raise GraphError(f"{type(module).__name__}.backward returned {len(gins)} gradients for a call with "
                         f"{len(needs)} array inputs")
    for g, need, shape in zip(gins, needs, node.in_shapes):
        if need and g is not None and getattr(g, "shape", None) != shape:
            raise GraphError(f"{type(module).__name__}.backward returned a gradient of shape "
                             f"{getattr(g, 'shape', type(g).__name__)} for an input of shape {shape}")
    return gins


# ---------------------------------------------------------------------------------------------
# Calls


def _plain(a):
    """The plain ndarray behind ``a`` (the very array a call returned, when ``a`` wraps one)."""
    if type(a) is not TracedArray:
        return a
    return a._array if a._array is not None else a.view(np.ndarray)


def _check_traced(a, module, output: bool = False) -> tuple | None:
    """The producer reference of a recorded call's input (or of a forward's output), or None for a
    constant."""
    if type(a) is not TracedArray:
        return None
    if a._ref is None and a.dtype.kind == "f":
        where = (f"{type(module).__name__}.forward returned an array" if output else
                 f"{type(module).__name__} received an array")
        raise GraphError(
            f"{where} computed by {a._untraced} from an intermediate of this forward; that operation is "
            "not recorded, so the gradient through it would be lost. Use a convcore layer or a "
            "convcore.functional op (add, sub, mul, cat, reshape, flatten, relu, ...), or detach "
            "explicitly with np.asarray(...)."
        )
    return a._ref


def wrap(y, node: Node, k: int):
    if isinstance(y, np.ndarray):
        t = y.view(TracedArray)
        t._ref, t._array = (node, k), y
        return t
    return y


def _outputs(out):
    return (list(out), True) if isinstance(out, tuple) else ([out], False)


def call_node(module, record: Record, args, kwargs):
    """A primitive's call inside a recorded forward: one node, outputs traced."""
    refs: list = []
    shapes: list = []
    plain: list = list(args)
    constants = None
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray):
            ref = _check_traced(a, module)
            plain[i] = _plain(a)
            if ref is None:
                constants = constants or {}
                constants[len(refs)] = plain[i]
            refs.append(ref)
            shapes.append(a.shape)
    node = Node(module, tuple(refs), tuple(shapes))
    node.constants = constants
    prev, _tls.node = _tls.node, node
    try:
        out = module.forward(*plain, **kwargs)
    finally:
        _tls.node = prev
    record.add(node)
    outs, is_tuple = _outputs(out)
    _describe_outputs(node, outs)
    if not is_tuple:
        return wrap(out, node, 0)
    return tuple(wrap(y, node, k) for k, y in enumerate(outs))


def _describe_outputs(node: Node, outs: list) -> None:
    node.n_out = len(outs)
    node.diff_out = tuple(k for k, y in enumerate(outs) if isinstance(y, np.ndarray) and y.dtype.kind == "f")
    node.out_shapes = tuple(getattr(y, "shape", None) for y in outs)


def call_plain(module, args, kwargs):
    """A primitive's call that is not recorded (``no_grad``): inputs detached, nothing saved."""
    for a in args:
        if type(a) is TracedArray:
            args = tuple(_plain(v) for v in args)
            break
    return module.forward(*args, **kwargs)


def call_top(module, args, kwargs):
    """A call with no forward in progress in this thread (or from inside a primitive's forward):
    it opens a scope, and with gradients enabled a record that becomes the module's last."""
    outer_scope, outer_node = _tls.scope, _tls.node
    record = Record(module) if is_grad_enabled() else None
    _tls.scope, _tls.node = Scope(record), None
    try:
        if record is None:
            out = module.forward(*args, **kwargs)
        else:
            out = _record_top(module, record, args, kwargs)
    finally:
        _tls.scope, _tls.node = outer_scope, outer_node
    module._calls.last = NO_GRAD if record is None else record
    return out


def _record_top(module, record: Record, args, kwargs):
    source = record.source
    wrapped = list(args)
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray):
            k = len(record.in_meta)
            record.in_meta.append((a.shape, a.dtype))
            wrapped[i] = wrap(_plain(a), source, k)
    if module._primitive:
        out = call_node(module, record, tuple(wrapped), kwargs)
    else:
        out = module.forward(*wrapped, **kwargs)
    outs, record.tuple_out = _outputs(out)
    plain = []
    for y in outs:
        if isinstance(y, np.ndarray):
            ref = _check_traced(y, module, output=True) if type(y) is TracedArray else None
            record.outputs.append(ref)
            record.out_meta.append((y.shape, y.dtype))
            plain.append(_plain(y))
        else:
            record.outputs.append(None)
            record.out_meta.append(((), None))
            plain.append(y)
    return tuple(plain) if record.tuple_out else plain[0]


def saved_of(module):
    """What ``module``'s forward saved for the call whose backward is running."""
    node = _tls.node
    if node is None or node.module is not module:
        raise GraphError(f"{type(module).__name__}.saved() is only available inside its backward, while the "
                         "record replays the call (call model.backward(grad), not the layer's backward method "
                         "on its own)")
    return node.saved


def save_into_node(module, values) -> None:
    node = _tls.node
    if node is not None and node.module is module:
        node.saved = values
    elif active_record() is not None:
        raise GraphError(f"{type(module).__name__}.forward was called directly inside a recorded forward; call "
                         "the module itself (layer(x), not layer.forward(x)) so that the call is recorded")


def check_in_place(target) -> None:
    """Refuse to overwrite a recorded intermediate whose value a recorded call saved."""
    record = active_record()
    if record is None:
        return
    for node in record.nodes:
        for v in node.saved:
            if isinstance(v, np.ndarray) and np.may_share_memory(v, target):
                raise GraphError(
                    f"an in-place operation would overwrite an array that {type(node.module).__name__} saved "
                    "for its backward (its gradient would then be wrong); write the result to a new array "
                    "(out = out + identity, not out += identity)"
                )


# ---------------------------------------------------------------------------------------------
# Intermediates


class TracedArray(np.ndarray):
    """An intermediate of a recorded forward: an ndarray that knows which call produced it.

    Users meet it only inside their own ``forward`` (a model's outputs are plain ndarrays); it is
    never constructed directly. Its numpy arithmetic is traced where convcore knows the
    derivative: ``+ - * /``, negation, ``sum``/``mean``, ``reshape``/``flatten``/``transpose``,
    indexing and ``np.concatenate``. Other numpy operations return arrays marked untraced, which
    recorded calls refuse with a ``GraphError``; ``np.asarray(h)`` detaches explicitly (a constant
    for the record). Item assignment into a traced intermediate raises ``GraphError``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> class Probe(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = nn.Linear(2, 2)
    ...     def forward(self, x):
    ...         h = self.fc(x)
    ...         print(type(h).__name__)
    ...         return (h * 2.0 + 1.0).sum(axis=1)          # traced numpy arithmetic
    >>> probe = Probe()
    >>> out = probe(np.ones((3, 2), np.float32))
    TracedArray
    >>> type(out).__name__, out.shape
    ('ndarray', (3,))
    >>> probe.backward(np.ones(3, np.float32))
    >>> print(probe.fc.bias.grad)                           # d/d(bias) of sum(2 h + 1)
    [6. 6.]
    """

    _ref: tuple | None = None         # (producing node, output index); None when untraced
    _array: np.ndarray | None = None  # the plain array this wraps, when it wraps one a call returned
    _untraced = "an ndarray method or numpy function convcore does not trace"

    def __array_finalize__(self, obj):
        self._ref = self._array = None

    # -- numpy protocols -----------------------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        from . import _traced

        plain = tuple(_detach(a) for a in inputs)
        record = active_record()
        if record is None:   # no forward recording here: plain numpy
            if out is not None:
                kwargs["out"] = tuple(_detach(o) for o in out)
            return getattr(ufunc, method)(*plain, **kwargs)
        op = _traced.ufunc_op(ufunc, method, kwargs)
        if out is not None:
            return _traced.in_place(op, ufunc, method, inputs, out, kwargs)
        if op is not None:
            return op(*inputs, **kwargs)
        return _untraced(getattr(ufunc, method)(*plain, **kwargs), inputs, f"numpy.{ufunc.__name__}")

    def __array_function__(self, func, types, args, kwargs):
        from . import _traced

        if active_record() is not None:
            op = _traced.FUNCTIONS.get(func)
            result = NotImplemented if op is None else op(*args, **kwargs)
            if result is not NotImplemented:
                return result
        result = func(*_detach_all(args), **_detach_all(kwargs))
        if active_record() is None:
            return result
        return _untraced(result, list(args) + list(kwargs.values()), f"numpy.{func.__name__}")

    def __setitem__(self, index, value):
        if self._ref is not None and active_record() is not None:
            raise GraphError("item assignment into an intermediate of a recorded forward is not traced (its "
                             "gradient would be lost); build the array with convcore.functional ops instead")
        np.ndarray.__setitem__(_plain(self), _detach_all(index), _detach(value))

    # -- traced methods ------------------------------------------------------------------------
    def __getitem__(self, index):
        from . import _traced

        if active_record() is None:
            return _plain(self)[_detach_all(index)]
        return _traced.getitem(self, index)

    def reshape(self, *shape, order="C"):
        from . import _traced

        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if order != "C" or active_record() is None:
            return _untraced(_plain(self).reshape(shape, order=order), [self], "ndarray.reshape")
        return _traced.reshape(self, shape)

    def flatten(self, order="C"):
        return self.reshape(-1, order=order)

    def ravel(self, order="C"):
        return self.reshape(-1, order=order)

    def transpose(self, *axes):
        from . import _traced

        if len(axes) == 1 and (axes[0] is None or isinstance(axes[0], (tuple, list))):
            axes = axes[0]
        axes = None if axes in ((), None) else tuple(axes)
        if active_record() is None:
            return _plain(self).transpose(axes)
        return _traced.transpose(self, axes)

    @property
    def T(self):
        return self.transpose()

    def sum(self, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
        from . import _traced

        if dtype is not None or out is not None or kwargs or active_record() is None:
            return _untraced(_plain(self).sum(axis, dtype, _detach(out), keepdims, **kwargs), [self],
                             "ndarray.sum")
        return _traced.sum_(self, axis, keepdims)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
        from . import _traced

        if dtype is not None or out is not None or kwargs or active_record() is None:
            return _untraced(_plain(self).mean(axis, dtype, _detach(out), keepdims, **kwargs), [self],
                             "ndarray.mean")
        return _traced.mean(self, axis, keepdims)

    def copy(self, order="C"):
        from . import _traced

        if active_record() is None:
            return _plain(self).copy(order)
        return _traced.copy(self)


def _detach(a):
    return _plain(a) if isinstance(a, TracedArray) else a


def _detach_all(obj):
    if isinstance(obj, TracedArray):
        return _plain(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_detach_all(v) for v in obj)
    if isinstance(obj, dict):
        return {k: _detach_all(v) for k, v in obj.items()}
    return obj


def _any_traced(objs) -> bool:
    for o in objs:
        if isinstance(o, TracedArray) and o.dtype.kind == "f":
            return True
        if isinstance(o, (list, tuple)) and _any_traced(o):
            return True
    return False


def _untraced(result, inputs, what: str):
    """``result`` of an operation convcore does not trace: float arrays computed from recorded
    intermediates are marked, so that recorded calls refuse them (see ``_check_traced``)."""
    if active_record() is None or not _any_traced(inputs):
        return _detach_all(result)
    if isinstance(result, tuple):
        return tuple(_untraced(r, inputs, what) for r in result)
    if isinstance(result, np.ndarray) and result.dtype.kind == "f":
        t = result.view(TracedArray)
        t._untraced = what
        return t
    return _detach_all(result)
