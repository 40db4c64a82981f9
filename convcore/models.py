"""Ready-made models: LeNet-style CNN, a convolutional autoencoder, a classifier head on an encoder."""

from __future__ import annotations

from . import nn


def lenet(num_classes: int = 10, in_channels: int = 1, dropout: float = 0.5, rng=None) -> nn.Sequential:
    """conv 5x5 x32 - ReLU - maxpool 2 - conv 5x5 x64 - ReLU - maxpool 2 - linear 128 - ReLU -
    dropout - linear ``num_classes``, for (N, in_channels, 28, 28) input; outputs logits."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2, rng=rng), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128, rng=rng), nn.ReLU(), nn.Dropout(dropout, rng=rng),
        nn.Linear(128, num_classes, rng=rng),
    )


def conv_autoencoder(latent_dim: int = 32, in_shape=(1, 28, 28), noise_std: float = 0.0, rng=None) -> nn.Autoencoder:
    """A convolutional autoencoder for (N, C, H, W) images with H and W divisible by 4.

    Encoder: conv 3x3 x16 (stride 2) - ReLU - conv 3x3 x32 (stride 2) - ReLU - flatten - linear to
    ``latent_dim``. Decoder: linear - ReLU - unflatten - ConvTranspose 4x4 x16 (stride 2) - ReLU -
    Upsample x2 - conv 3x3 to C - Sigmoid (pixels in [0, 1]).
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


def classifier_from_encoder(encoder: nn.Module, latent_dim: int, num_classes: int = 10, freeze: bool = True,
                            rng=None) -> nn.Sequential:
    """``encoder`` followed by a softmax head (Linear to logits; the softmax is in the loss).

    With ``freeze`` the encoder's parameters are frozen: training then computes gradients for the
    head only, and backward stops at the head (the encoder gets no backward call at all).
    """
    if freeze:
        encoder.freeze()
    return nn.Sequential(encoder, nn.Linear(latent_dim, num_classes, rng=rng))


__all__ = ["lenet", "conv_autoencoder", "classifier_from_encoder"]
