"""``Sequential``: layers applied in order, backward in reverse, with need-based gradients."""

from __future__ import annotations

from .module import Module


class Sequential(Module):
    """Chain of modules. Indexable, sliceable (``model[:4]`` is a ``Sequential`` sharing the same
    layer objects), nestable, iterable.

    ``backward(grad, need_input_grad=True)`` walks the layers in reverse and stops as early as it
    can: when the caller does not need the gradient with respect to the input (training does not),
    the layers before the first trainable one get no backward call at all, and that first trainable
    layer is not asked for its input gradient (for a first Conv2d this skips a whole col2im). A fully
    frozen encoder therefore costs no backward work.

    A layer that returns a tuple (``MaxPool2d(return_indices=True)``) passes its first element on.
    """

    def __init__(self, *layers: Module):
        super().__init__()
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"Sequential: argument {i} must be a Module; received {type(layer).__name__}")
            setattr(self, str(i), layer)

    def append(self, layer: Module) -> "Sequential":
        if not isinstance(layer, Module):
            raise TypeError(f"Sequential.append expects a Module; received {type(layer).__name__}")
        setattr(self, str(len(self._modules)), layer)
        return self

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def __getitem__(self, index):
        layers = list(self._modules.values())
        if isinstance(index, slice):
            sub = Sequential(*layers[index])
            object.__setattr__(sub, "training", self.training)  # the shared layers keep their own mode
            return sub
        return layers[index]

    def forward(self, x):
        for layer in self._modules.values():
            x = layer(x)
            if isinstance(x, tuple):
                x = x[0]
        return x

    def backward(self, grad, need_input_grad=True):
        layers = list(self._modules.values())
        if need_input_grad:
            stop = 0
        else:
            stop = next((i for i, m in enumerate(layers) if m.trainable), None)
            if stop is None:
                return None
        for i in range(len(layers) - 1, stop - 1, -1):
            grad = layers[i].backward(grad, need_input_grad=need_input_grad or i > stop)
        return grad
