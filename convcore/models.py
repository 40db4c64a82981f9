"""Ready-made models: LeNet, ResNets (torchvision's layout and state_dict keys), a convolutional
autoencoder, a U-Net autoencoder with skip connections, and a classifier head on an encoder."""

from __future__ import annotations

import math

import numpy as np

from . import functional as F
from . import nn
from ._grad_mode import forced_eval, no_grad
from ._random import resolve_rng
from .nn.module import loading


def lenet(num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5, rng=None) -> nn.Sequential:
    """A LeNet-style convolutional classifier for 28x28 images (MNIST), outputting logits.

    conv 5x5 x32 - ReLU - maxpool 2 - conv 5x5 x64 - ReLU - maxpool 2 - linear 128 - ReLU -
    dropout - linear ``num_classes``, for (N, in_channels, 28, 28) input.

    Parameters
    ----------
    num_classes : int, default 10
    in_channels : int, default 1
    dropout : float, default 0.5
        The dropout probability before the last layer.
    rng : numpy.random.Generator or int, optional
        The initialisation's generator or seed (default: convcore's generator, see
        ``convcore.manual_seed``).

    Returns
    -------
    Sequential
        Input (N, in_channels, 28, 28) -> logits (N, num_classes).

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import models
    >>> model = models.lenet(rng=0)
    >>> model.num_parameters()
    454922
    >>> model(np.zeros((2, 1, 28, 28), np.float32)).shape
    (2, 10)
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128, rng=rng), nn.ReLU(), nn.Dropout(dropout, rng=rng),
        nn.Linear(128, num_classes, rng=rng),
    )


# ---------------------------------------------------------------------------------------------
# ResNet, after torchvision.models.resnet: same modules, same attribute names, so the state_dict
# keys ("layer1.0.conv1.weight", "layer2.0.downsample.1.running_mean", ...) are torchvision's.


def _conv(cin, cout, k, stride, rng):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False, rng=rng)


@nn.register
class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and a residual connection (ResNet-18/34).

    torchvision's ``BasicBlock``: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + identity)``, where
    ``identity`` is ``x`` or, with ``downsample``, a strided 1x1 convolution and batch norm of it.

    Parameters
    ----------
    inplanes : int
        Input channels.
    planes : int
        Output channels.
    stride : int, default 1
        The stride of the first convolution (and of the downsample path).
    downsample : bool, default False
        Project the identity (needed when ``stride != 1`` or ``inplanes != planes``).
    rng : numpy.random.Generator or int, optional
        The initialisation's generator or seed (default: convcore's generator, see
        ``convcore.manual_seed``).

    Shape
    -----
    (N, inplanes, H, W) -> (N, planes, ceil(H / stride), ceil(W / stride))

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import models
    >>> block = models.BasicBlock(16, 32, stride=2, downsample=True, rng=0)
    >>> block.num_parameters()
    14528
    >>> block(np.zeros((1, 16, 8, 8), np.float32)).shape
    (1, 32, 4, 4)
    """

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: bool = False, rng=None):
        super().__init__()
        self.inplanes, self.planes, self.stride = int(inplanes), int(planes), int(stride)
        self.conv1 = _conv(inplanes, planes, 3, stride, rng)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.conv2 = _conv(planes, planes, 3, 1, rng)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(inplanes, planes, stride, rng) if downsample else None

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(F.add(out, identity))

    def get_config(self):
        return dict(inplanes=self.inplanes, planes=self.planes, stride=self.stride,
                    downsample=self.downsample is not None)


@nn.register
class Bottleneck(nn.Module):
    """1x1 - 3x3 - 1x1 convolutions with batch norm and a residual connection (ResNet-50/101/152;
    the stride sits on the 3x3 convolution, as in torchvision).

    The block widens its output to ``planes * 4`` channels (``expansion``).

    Parameters
    ----------
    inplanes : int
        Input channels.
    planes : int
        Channels of the inner convolutions; the output has ``4 * planes``.
    stride : int, default 1
        The stride of the 3x3 convolution (and of the downsample path).
    downsample : bool, default False
        Project the identity (needed when ``stride != 1`` or ``inplanes != 4 * planes``).
    rng : numpy.random.Generator or int, optional
        The initialisation's generator or seed (default: convcore's generator, see
        ``convcore.manual_seed``).

    Shape
    -----
    (N, inplanes, H, W) -> (N, 4 * planes, ceil(H / stride), ceil(W / stride))

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import models
    >>> block = models.Bottleneck(64, 16, rng=0)
    >>> block.num_parameters()
    4544
    >>> block(np.zeros((1, 64, 8, 8), np.float32)).shape
    (1, 64, 8, 8)
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: bool = False, rng=None):
        super().__init__()
        self.inplanes, self.planes, self.stride = int(inplanes), int(planes), int(stride)
        self.conv1 = _conv(inplanes, planes, 1, 1, rng)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv(planes, planes, 3, stride, rng)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv(planes, planes * 4, 1, 1, rng)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = _downsample(inplanes, planes * 4, stride, rng) if downsample else None

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(F.add(out, identity))

    def get_config(self):
        return dict(inplanes=self.inplanes, planes=self.planes, stride=self.stride,
                    downsample=self.downsample is not None)


def _downsample(cin, cout, stride, rng):
    return nn.Sequential(_conv(cin, cout, 1, stride, rng), nn.BatchNorm2d(cout))


_BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


@nn.register
class ResNet(nn.Module):
    """A residual network with torchvision's module layout and initialisation.

    Parameters
    ----------
    block : "basic" or "bottleneck"
    layers : blocks per stage, e.g. [2, 2, 2, 2] for ResNet-18
    num_classes, in_channels : int
    width : channels of the first stage (64 in torchvision); stage i has ``width * 2**i``
    stem : "imagenet" (7x7 stride-2 convolution and a 3x3 stride-2 max pool, torchvision's) or
        "small" (one 3x3 stride-1 convolution, for 28x28 or 32x32 images)
    zero_init_residual : start each block's last batch norm at zero (torchvision's option)
    rng : numpy Generator or int seed for the initialisation

    Raises
    ------
    ValueError
        An unknown ``block`` or ``stem``, or ``layers`` empty or holding a count below 1.

    Shape
    -----
    input (N, in_channels, H, W) -> logits (N, num_classes)

    Examples
    --------
    A small ResNet for 32x32 images:

    >>> import numpy as np
    >>> from convcore import models
    >>> model = models.ResNet("basic", [1, 1], num_classes=10, width=8, stem="small", rng=0)
    >>> [name for name, _ in model.named_children()]
    ['conv1', 'bn1', 'relu', 'maxpool', 'layer1', 'layer2', 'avgpool', 'fc']
    >>> model(np.zeros((2, 3, 32, 32), np.float32)).shape
    (2, 10)
    """

    def __init__(self, block="basic", layers=(2, 2, 2, 2), num_classes: int = 1000, in_channels: int = 3,
                 width: int = 64, stem: str = "imagenet", zero_init_residual: bool = False, rng=None):
        super().__init__()
        if block not in _BLOCKS:
            raise ValueError(f"ResNet: block must be one of {sorted(_BLOCKS)}; received block={block!r}")
        if stem not in ("imagenet", "small"):
            raise ValueError(f'ResNet: stem must be "imagenet" or "small"; received stem={stem!r}')
        layers = [int(n) for n in layers]
        if not layers or min(layers) < 1:
            raise ValueError(f"ResNet: layers must be positive block counts; received layers={layers!r}")
        rng = resolve_rng(rng)
        kind = _BLOCKS[block]
        self.config = dict(block=block, layers=layers, num_classes=int(num_classes), in_channels=int(in_channels),
                           width=int(width), stem=stem, zero_init_residual=bool(zero_init_residual))
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False, rng=rng)
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False, rng=rng)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1) if stem == "imagenet" else nn.Identity()
        inplanes = width
        for i, blocks in enumerate(layers):
            planes, stride = width * 2**i, 1 if i == 0 else 2
            stage = []
            for b in range(blocks):
                down = b == 0 and (stride != 1 or inplanes != planes * kind.expansion)
                stage.append(kind(inplanes, planes, stride if b == 0 else 1, down, rng=rng))
                inplanes = planes * kind.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*stage))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, num_classes, rng=rng)
        self._init_torchvision(rng, zero_init_residual)

    def _init_torchvision(self, rng, zero_init_residual: bool) -> None:
        # torchvision: kaiming_normal_(mode="fan_out", nonlinearity="relu") for convolutions,
        # batch norm weight 1 and bias 0 (already), the Linear layer keeps PyTorch's default.
        if loading():   # convcore.load builds the model: the values come from the file
            return
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                f, _, kh, kw = m.weight.shape
                std = math.sqrt(2.0 / (f * kh * kw))
                m.weight.data = (rng.standard_normal(m.weight.shape) * std).astype(m.weight.dtype)
        if zero_init_residual:
            for m in self.modules():
                last = getattr(m, "bn3", None) if isinstance(m, Bottleneck) else getattr(m, "bn2", None)
                if isinstance(m, (BasicBlock, Bottleneck)) and last is not None:
                    last.weight.data = np.zeros_like(last.weight.data)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(len(self.config["layers"])):
            x = getattr(self, f"layer{i + 1}")(x)
        return self.fc(F.flatten(self.avgpool(x), 1))

    def get_config(self):
        return dict(self.config)


def resnet18(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> ResNet:
    """ResNet-18: basic blocks, [2, 2, 2, 2] per stage.

    The modules, their names and the initialisation are torchvision's, so the ``state_dict`` keys
    match and ``load_state_dict`` takes a torchvision ResNet-18's weights (converted to arrays);
    ``resnet18()`` has torchvision's 11,689,512 parameters.

    Parameters
    ----------
    num_classes : int, default 1000
    in_channels : int, default 3
    **kwargs
        ``ResNet``'s other arguments: ``width``, ``stem``, ``zero_init_residual``, ``rng``.

    Returns
    -------
    ResNet

    Raises
    ------
    ValueError
        An unknown ``stem``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import models
    >>> model = models.resnet18(num_classes=10, stem="small", width=16, rng=0)
    >>> model.num_parameters()
    701466
    >>> model(np.zeros((1, 3, 32, 32), np.float32)).shape
    (1, 10)
    >>> [k for k in model.state_dict() if k.startswith("layer2.0.downsample")][:2]
    ['layer2.0.downsample.0.weight', 'layer2.0.downsample.1.weight']
    """
    return ResNet("basic", [2, 2, 2, 2], num_classes, in_channels, **kwargs)


def resnet34(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> ResNet:
    """ResNet-34: basic blocks, [3, 4, 6, 3] per stage.

    The modules, their names and the initialisation are torchvision's, so the ``state_dict`` keys
    match and ``load_state_dict`` takes a torchvision ResNet-34's weights (converted to arrays);
    ``resnet34()`` has torchvision's 21,797,672 parameters.

    Parameters
    ----------
    num_classes : int, default 1000
    in_channels : int, default 3
    **kwargs
        ``ResNet``'s other arguments: ``width``, ``stem``, ``zero_init_residual``, ``rng``.

    Returns
    -------
    ResNet

    Raises
    ------
    ValueError
        An unknown ``stem``.

    Examples
    --------
    >>> from convcore import models
    >>> model = models.resnet34(num_classes=10, width=8, rng=0)
    >>> model.num_parameters()
    336114
    >>> len(model.layer3)
    6
    """
    return ResNet("basic", [3, 4, 6, 3], num_classes, in_channels, **kwargs)


def resnet50(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> ResNet:
    """ResNet-50: bottleneck blocks, [3, 4, 6, 3] per stage.

    The modules, their names and the initialisation are torchvision's, so the ``state_dict`` keys
    match and ``load_state_dict`` takes a torchvision ResNet-50's weights (converted to arrays);
    ``resnet50()`` has torchvision's 25,557,032 parameters.

    Parameters
    ----------
    num_classes : int, default 1000
    in_channels : int, default 3
    **kwargs
        ``ResNet``'s other arguments: ``width``, ``stem``, ``zero_init_residual``, ``rng``.

    Returns
    -------
    ResNet

    Raises
    ------
    ValueError
        An unknown ``stem``.

    Examples
    --------
    >>> from convcore import models
    >>> model = models.resnet50(num_classes=10, width=8, rng=0)
    >>> model.num_parameters()
    376722
    >>> type(model.layer1[0]).__name__, model.fc.in_features
    ('Bottleneck', 256)
    """
    return ResNet("bottleneck", [3, 4, 6, 3], num_classes, in_channels, **kwargs)


# ---------------------------------------------------------------------------------------------
# Autoencoders


def conv_autoencoder(latent_dim: int = 32, in_shape=(1, 28, 28), noise_std: float = 0.0, rng=None) -> nn.Autoencoder:
    """A convolutional autoencoder for (N, C, H, W) images with H and W divisible by 4.

    Encoder: conv 3x3 x16 (stride 2) - ReLU - conv 3x3 x32 (stride 2) - ReLU - flatten - linear to
    ``latent_dim``. Decoder: linear - ReLU - unflatten - ConvTranspose 4x4 x16 (stride 2) - ReLU -
    Upsample x2 - conv 3x3 to C - Sigmoid (pixels in [0, 1]).

    Parameters
    ----------
    latent_dim : int, default 32
    in_shape : (C, H, W), default (1, 28, 28)
    noise_std : float, default 0
        Gaussian input noise in training mode (a denoising autoencoder).
    rng : numpy.random.Generator or int, optional
        The generator or seed of the initialisation and the noise (default: convcore's generator, see
        ``convcore.manual_seed``).

    Returns
    -------
    Autoencoder
        ``encode(x)`` gives (N, latent_dim); ``forward`` reconstructs (N, C, H, W).

    Raises
    ------
    ValueError
        H or W not divisible by 4, or a negative ``noise_std``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import models
    >>> ae = models.conv_autoencoder(latent_dim=8, rng=0)
    >>> x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    >>> ae.encode(x).shape, ae(x).shape
    ((2, 8), (2, 1, 28, 28))
    >>> ae.reconstruction_error(x).shape
    (2,)
    """
    c, h, w = in_shape
    if h % 4 or w % 4:
        raise ValueError(f"conv_autoencoder needs H and W divisible by 4; received in_shape={in_shape}")
    flat = 32 * (h // 4) * (w // 4)
    encoder = nn.Sequential(
        nn.Conv2d(c, 16, 3, stride=2, padding=1, rng=rng), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, rng=rng), nn.ReLU(),
        nn.Flatten(), nn.Linear(flat, latent_dim, rng=rng),
    )
    decoder = nn.Sequential(
        nn.Linear(latent_dim, flat, rng=rng), nn.ReLU(), nn.Unflatten(1, (32, h // 4, w // 4)),
        nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1, rng=rng), nn.ReLU(),
        nn.Upsample(2), nn.Conv2d(16, c, 3, padding=1, rng=rng), nn.Sigmoid(),
    )
    return nn.Autoencoder(encoder, decoder, noise_std=noise_std, rng=rng)


def _double_conv(cin, cout, rng):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False, rng=rng), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False, rng=rng), nn.BatchNorm2d(cout), nn.ReLU())


@nn.register
class UNetAutoencoder(nn.Module):
    """A U-Net-style convolutional autoencoder: an encoder of ``depth`` double-convolution stages
    with 2x2 max pooling, a bottleneck, and a decoder that upsamples with a 2x2 transposed
    convolution and concatenates the encoder stage of the same size (a skip connection) before its
    double convolution; a 1x1 convolution and a sigmoid give pixels in [0, 1].

    ``encode(x)`` returns the bottleneck features (N, base * 2**depth, H / 2**depth, W / 2**depth).
    H and W must be divisible by ``2**depth``.

    Parameters
    ----------
    in_channels : int, default 1
    base_channels : int, default 16
        Channels of the first stage; stage ``i`` has ``base_channels * 2**i``.
    depth : int, default 2
        The number of pooling stages, at least 1.
    rng : numpy.random.Generator or int, optional
        The initialisation's generator or seed (default: convcore's generator, see
        ``convcore.manual_seed``).

    Raises
    ------
    ValueError
        ``depth < 1``; when called, an input that is not 4-D or whose H or W is not divisible by
        ``2**depth``.

    Shape
    -----
    (N, in_channels, H, W) -> (N, in_channels, H, W), values in (0, 1)

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import models
    >>> unet = models.UNetAutoencoder(in_channels=1, base_channels=4, depth=2, rng=0)
    >>> x = np.zeros((2, 1, 16, 16), np.float32)
    >>> unet(x).shape, unet.encode(x).shape
    ((2, 1, 16, 16), (2, 16, 4, 4))
    """

    def __init__(self, in_channels: int = 1, base_channels: int = 16, depth: int = 2, rng=None):
        super().__init__()
        if depth < 1:
            raise ValueError(f"UNetAutoencoder: depth must be >= 1; received depth={depth!r}")
        rng = resolve_rng(rng)
        self.in_channels, self.base_channels, self.depth = int(in_channels), int(base_channels), int(depth)
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(_double_conv(c_in, c, rng) for c_in, c in zip([in_channels] + widths, widths[:-1]))
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = _double_conv(widths[-2], widths[-1], rng)
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2, rng=rng)
                                for i in reversed(range(depth)))
        self.dec = nn.ModuleList(_double_conv(2 * widths[i], widths[i], rng) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], in_channels, 1, rng=rng)
        self.out = nn.Sigmoid()

    def _check(self, x):
        step = 2**self.depth
        if x.ndim != 4 or x.shape[2] % step or x.shape[3] % step:
            raise ValueError(f"UNetAutoencoder: input must be (N, C, H, W) with H and W divisible by {step}; "
                             f"received shape {x.shape}")

    def encode(self, x):
        self._check(x)
        for stage in self.down:
            x = self.pool(stage(x))
        return self.bottleneck(x)

    def forward(self, x):
        self._check(x)
        skips = []
        for stage in self.down:
            x = stage(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(F.cat([up(x), skip], dim=1))
        return self.out(self.head(x))

    def get_config(self):
        return dict(in_channels=self.in_channels, base_channels=self.base_channels, depth=self.depth)


def unet_autoencoder(in_channels: int = 1, base_channels: int = 16, depth: int = 2, rng=None) -> UNetAutoencoder:
    """A U-Net autoencoder: ``UNetAutoencoder(in_channels, base_channels, depth, rng=rng)``.

    Parameters
    ----------
    in_channels : int, default 1
    base_channels : int, default 16
    depth : int, default 2
    rng : numpy.random.Generator or int, optional
        The initialisation's generator or seed (default: convcore's generator, see
        ``convcore.manual_seed``).

    Returns
    -------
    UNetAutoencoder

    Raises
    ------
    ValueError
        ``depth < 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import models
    >>> unet = models.unet_autoencoder(base_channels=4, depth=1, rng=0)
    >>> unet(np.zeros((1, 1, 8, 8), np.float32)).shape
    (1, 1, 8, 8)
    """
    return UNetAutoencoder(in_channels, base_channels, depth, rng=rng)


# ---------------------------------------------------------------------------------------------
# Classifier heads


def _ends_in_linear(encoder: nn.Module) -> nn.Linear | None:
    last = encoder
    while isinstance(last, nn.Sequential) and len(last):
        last = last[-1]
    return last if isinstance(last, nn.Linear) else None


def _output_width(encoder: nn.Module, input_shape) -> int:
    """Features per sample the encoder outputs: read off its last Linear when the encoder is a
    chain ending in one, else measured by one forward of ``input_shape``."""
    last = _ends_in_linear(encoder)
    if last is not None:
        return last.out_features
    if input_shape is None:
        raise ValueError("classifier_from_encoder: cannot tell the encoder's output width from its layers; pass "
                         "input_shape=(C, H, W) (one sample) so that it can be measured")
    dtype = next((p.dtype for p in encoder.parameters()), np.float32)
    with no_grad(), forced_eval():
        out = encoder(np.zeros((1, *tuple(input_shape)), dtype=dtype))
    return int(np.prod(out.shape[1:]))


def classifier_from_encoder(encoder: nn.Module, num_classes: int = 10, freeze: bool = True, input_shape=None,
                            rng=None) -> nn.Sequential:
    """``encoder`` followed by a softmax head (a Linear to logits; the softmax is in the loss).

    The head's input width is the encoder's output width, taken from the encoder's last Linear or
    measured by one forward of ``input_shape`` (one sample, e.g. ``(1, 28, 28)``); encoders with
    spatial outputs are flattened first. With ``freeze`` the encoder's parameters are frozen:
    training then computes gradients for the head only, and backward stops at the head (the
    encoder's calls are not visited at all).

    Parameters
    ----------
    encoder : Module
        For example an autoencoder's ``encoder``, after pretraining.
    num_classes : int, default 10
    freeze : bool, default True
        Freeze the encoder's parameters (in place).
    input_shape : tuple of int, optional
        One sample's shape, needed when the encoder does not end in a Linear.
    rng : numpy.random.Generator or int, optional
        The head's initialisation.

    Returns
    -------
    Sequential
        ``encoder`` (shared, not copied), a ``Flatten`` when needed, and the head.

    Raises
    ------
    TypeError
        ``encoder`` is not a Module.
    ValueError
        ``num_classes`` is not a positive int, or the encoder's output width cannot be told
        without ``input_shape``.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import models
    >>> ae = models.conv_autoencoder(latent_dim=8, rng=0)
    >>> clf = models.classifier_from_encoder(ae.encoder, num_classes=10, rng=0)
    >>> clf.num_parameters(trainable_only=True)   # the head: 8 * 10 weights + 10 biases
    90
    >>> clf(np.zeros((2, 1, 28, 28), np.float32)).shape
    (2, 10)
    >>> unet = models.UNetAutoencoder(base_channels=4, depth=1, rng=0)
    >>> head = models.classifier_from_encoder(unet.bottleneck, input_shape=(4, 8, 8), rng=0)
    >>> head(np.zeros((2, 4, 8, 8), np.float32)).shape
    (2, 10)
    """
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"classifier_from_encoder: encoder must be a Module; received {type(encoder).__name__}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"classifier_from_encoder: num_classes must be a positive int; received {num_classes!r}")
    width = _output_width(encoder, input_shape)
    if freeze:
        encoder.freeze()
    dtype = next((p.dtype for p in encoder.parameters()), np.float32)
    head = nn.Linear(width, int(num_classes), rng=rng, dtype=dtype)
    if _ends_in_linear(encoder):
        return nn.Sequential(encoder, head)
    return nn.Sequential(encoder, nn.Flatten(), head)


__all__ = ["lenet", "resnet18", "resnet34", "resnet50", "ResNet", "BasicBlock", "Bottleneck", "conv_autoencoder",
           "unet_autoencoder", "UNetAutoencoder", "classifier_from_encoder"]
