"""Layers that combine several arrays: ``Add`` (residual connections) and ``Concat`` (skip
connections of U-Nets, Inception branches), plus the elementwise operations that
``convcore.functional`` and the tracing of numpy arithmetic record (see ``_record``).

In a ``Sequential`` a merge layer takes the tuple the previous layer returned (for instance a
``Parallel``'s branches) as its inputs; in a define-by-run ``forward`` it is called with them:
``self.add(out, identity)``.
"""

from __future__ import annotations

import numpy as np

from .module import Module, check_input


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """The gradient of a broadcast operand: ``grad`` summed back to the operand's ``shape``.

    The sum runs over the axes numpy broadcasting added or stretched to reach ``grad.shape``
    from ``shape``.

    Parameters
    ----------
    grad : ndarray
        The gradient of the broadcast result.
    shape : tuple of int
        The operand's shape, which broadcasts to ``grad.shape``.

    Returns
    -------
    ndarray
        The gradient of the operand, of ``shape`` (``grad`` itself when the shapes are equal).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore.nn.merge import unbroadcast
    >>> g = np.ones((2, 3))
    >>> print(unbroadcast(g, (1, 3)))
    [[2. 2. 2.]]
    >>> unbroadcast(g, (3,)).shape, unbroadcast(g, (2, 1)).shape
    ((3,), (2, 1))
    """
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, s in enumerate(shape) if s == 1 and grad.shape[lead + i] != 1)
    return grad.sum(axis=axes, keepdims=True).reshape(shape) if axes else grad.reshape(shape)


def _needs(need_input_grad, n: int) -> tuple:
    return tuple(need_input_grad) if isinstance(need_input_grad, tuple) else (need_input_grad,) * n


def _result(grads: list):
    return grads[0] if len(grads) == 1 else tuple(grads)


class _Merge(Module):
    """Base of layers with several array inputs: Sequential passes them a tuple as inputs."""

    _merge = True

    def _check(self, inputs, minimum: int = 2) -> None:
        if len(inputs) < minimum:
            raise ValueError(f"{type(self).__name__} needs at least {minimum} input arrays; received {len(inputs)}")
        for i, a in enumerate(inputs):
            check_input(a, f"input {i}", self)


class Add(_Merge):
    """Elementwise sum of its inputs, with numpy broadcasting: ``Add()(a, b) == a + b``.

    A convcore merge layer (torch writes ``a + b`` in a forward): two or more inputs, the
    gradient of a broadcast input summed back to its shape. In a ``Sequential`` it takes the tuple
    the previous layer returned; ``convcore.functional.add`` is the same as a function.

    Shape
    -----
    inputs of broadcast-compatible shapes -> their broadcast shape

    Raises
    ------
    ValueError
        When called with fewer than two inputs or shapes that do not broadcast.
    TypeError
        When an input is not a float32 or float64 ndarray.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> a, b = np.ones((2, 3), np.float32), np.full((1, 3), 2.0, np.float32)
    >>> print(nn.Add()(a, b))
    [[3. 3. 3.]
     [3. 3. 3.]]
    >>> block = nn.Sequential(nn.Parallel(nn.Linear(3, 3), nn.Identity()), nn.Add(), nn.ReLU())
    >>> block(a).shape                         # a residual connection, relu(fc(x) + x)
    (2, 3)
    """

    def forward(self, *inputs):
        self._check(inputs)
        out = inputs[0] + inputs[1]
        for a in inputs[2:]:
            out = out + a
        self.save_for_backward(tuple(a.shape for a in inputs))
        return out

    def backward(self, grad, need_input_grad):
        (shapes,) = self.saved()
        needs = _needs(need_input_grad, len(shapes))
        return _result([unbroadcast(grad, s) if n else None for s, n in zip(shapes, needs)])


class Concat(_Merge):
    """Join its inputs along ``dim``, as ``torch.cat`` as a layer; default the channel axis.

    A merge layer: in a ``Sequential`` it takes the tuple the previous layer returned (U-Net skip
    connections, Inception branches); ``convcore.functional.cat`` is the same as a function. One
    input is allowed (it is returned as a copy).

    Parameters
    ----------
    dim : int, default 1
        The axis to join along (negative counts from the end).

    Shape
    -----
    inputs (N, C_i, H, W) -> (N, sum C_i, H, W) for ``dim=1``

    Raises
    ------
    TypeError
        If ``dim`` is not an int; when called, if an input is not a float32 or float64 ndarray or
        the dtypes differ.
    ValueError
        When called without inputs, with ``dim`` out of range, or with shapes that differ other
        than along ``dim``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> a, b = np.zeros((2, 3, 4, 4), np.float32), np.ones((2, 5, 4, 4), np.float32)
    >>> nn.Concat()(a, b).shape
    (2, 8, 4, 4)
    >>> nn.Concat(dim=-1)(a, a).shape
    (2, 3, 4, 8)
    """

    def __init__(self, dim: int = 1):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise TypeError(f"Concat: dim must be an int; received dim={dim!r}")
        self.dim = int(dim)

    def forward(self, *inputs):
        self._check(inputs, minimum=1)
        ndim = inputs[0].ndim
        if not -ndim <= self.dim < ndim:
            raise ValueError(f"Concat: dim={self.dim} is out of range for inputs of {ndim} dimensions")
        d = self.dim % ndim
        for i, a in enumerate(inputs):
            if a.ndim != ndim or a.shape[:d] + a.shape[d + 1:] != inputs[0].shape[:d] + inputs[0].shape[d + 1:]:
                raise ValueError(f"Concat: every input must match input 0's shape {inputs[0].shape} except along "
                                 f"dim={self.dim}; input {i} has shape {a.shape}")
            if a.dtype != inputs[0].dtype:
                raise TypeError(f"Concat: input {i} has dtype {a.dtype}, input 0 {inputs[0].dtype}")
        self.save_for_backward(d, [a.shape[d] for a in inputs])
        return np.concatenate(inputs, axis=d)

    def backward(self, grad, need_input_grad):
        d, sizes = self.saved()
        needs = _needs(need_input_grad, len(sizes))
        bounds = np.cumsum([0] + sizes)
        index = [slice(None)] * grad.ndim
        out = []
        for i, n in enumerate(needs):
            index[d] = slice(bounds[i], bounds[i + 1])
            out.append(np.ascontiguousarray(grad[tuple(index)]) if n else None)
        return _result(out)

    def get_config(self):
        return dict(dim=self.dim)


# ---------------------------------------------------------------------------------------------
# Elementwise arithmetic and shape operations, recorded by convcore.functional and by the
# tracing of numpy operations on recorded intermediates. Each is one shared, stateless instance.


class _Binary(Module):
    def forward(self, a, b):
        self.save_for_backward(a, b)
        return self._apply(a, b)

    def backward(self, grad, need_input_grad):
        a, b = self.saved()
        na, nb = _needs(need_input_grad, 2)
        ga, gb = self._grads(grad, a, b, na, nb)
        return (unbroadcast(ga, a.shape) if na else None, unbroadcast(gb, b.shape) if nb else None)


class Sub(_Binary):
    def forward(self, a, b):
        self.save_for_backward(a.shape, b.shape)
        return a - b

    def backward(self, grad, need_input_grad):
        sa, sb = self.saved()
        na, nb = _needs(need_input_grad, 2)
        return (unbroadcast(grad, sa) if na else None, unbroadcast(-grad, sb) if nb else None)


class Mul(_Binary):
    @staticmethod
    def _apply(a, b):
        return a * b

    @staticmethod
    def _grads(grad, a, b, na, nb):
        return (grad * b if na else None), (grad * a if nb else None)


class Div(_Binary):
    @staticmethod
    def _apply(a, b):
        return a / b

    @staticmethod
    def _grads(grad, a, b, na, nb):
        ga = grad / b if na else None
        return ga, (-grad * a / (b * b) if nb else None)


class Neg(Module):
    def forward(self, x):
        return -x

    def backward(self, grad, need_input_grad):
        return -grad if need_input_grad else None


class Reshape(Module):
    """``x.reshape(shape)``, recorded (``shape`` is a call argument, so one instance serves all)."""

    def forward(self, x, shape):
        self.save_for_backward(x.shape)
        return x.reshape(shape)

    def backward(self, grad, need_input_grad):
        (shape,) = self.saved()
        return grad.reshape(shape) if need_input_grad else None


class Transpose(Module):
    def forward(self, x, axes):
        self.save_for_backward(axes, x.ndim)
        return x.transpose(axes)

    def backward(self, grad, need_input_grad):
        axes, ndim = self.saved()
        if not need_input_grad:
            return None
        return grad.transpose(None if axes is None else np.argsort(axes))


def _basic_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, (slice, int, np.integer)) for i in items)


class GetItem(Module):
    """``x[index]`` (``index`` boxed in a 1-tuple, so an index array is a constant, not an input)."""

    def forward(self, x, boxed):
        index = boxed[0]
        self.save_for_backward(x.shape, x.dtype, index)
        return np.asarray(x[index])

    def backward(self, grad, need_input_grad):
        shape, dtype, index = self.saved()
        if not need_input_grad:
            return None
        g = np.zeros(shape, dtype=dtype)
        if _basic_index(index):
            g[index] = grad
        else:   # advanced indexing may pick an element twice: its gradients add up
            np.add.at(g, index, grad)
        return g


class Sum(Module):
    """``x.sum(axis, keepdims)`` as an array (a 0-d array for a full sum, so it stays recorded)."""

    def forward(self, x, axis, keepdims):
        self.save_for_backward(x.shape, axis, keepdims)
        return np.asarray(x.sum(axis=axis, keepdims=keepdims))

    def backward(self, grad, need_input_grad):
        shape, axis, keepdims = self.saved()
        if not need_input_grad:
            return None
        return np.broadcast_to(_keep_axes(grad, shape, axis, keepdims), shape).copy()


class Mean(Sum):
    def forward(self, x, axis, keepdims):
        self.save_for_backward(x.shape, axis, keepdims)
        return np.asarray(x.mean(axis=axis, keepdims=keepdims))

    def backward(self, grad, need_input_grad):
        shape, axis, keepdims = self.saved()
        if not need_input_grad:
            return None
        count = int(np.prod(shape)) // max(grad.size, 1)   # elements averaged into each output
        g = _keep_axes(grad, shape, axis, keepdims) / grad.dtype.type(count)
        return np.broadcast_to(g, shape).copy()


def _keep_axes(grad, shape, axis, keepdims):
    if keepdims or axis is None:
        return grad.reshape((1,) * len(shape)) if axis is None else grad
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return np.expand_dims(grad, tuple(a % len(shape) for a in axes))


class Copy(Module):
    def forward(self, x):
        return x.copy()

    def backward(self, grad, need_input_grad):
        return grad if need_input_grad else None


__all__ = ["Add", "Concat", "unbroadcast"]
