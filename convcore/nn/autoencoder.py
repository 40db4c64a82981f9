"""``Autoencoder``: an encoder and a decoder, for pretraining, denoising and anomaly scores."""

from __future__ import annotations

import numpy as np

from .._grad_mode import eval_forced, forced_eval, no_grad
from .._random import resolve_rng
from .module import Module, check_input


class Autoencoder(Module):
    """An encoder and a decoder: ``forward(x) = decoder(encoder(x))``.

    ``encode(x)`` gives the latent vectors, ``decode(z)`` reconstructs, and
    ``reconstruction_error(x)`` returns the mean squared error per sample (anomaly scores).
    Backward comes from the record of the call: with a frozen encoder, ``backward`` stops at the
    decoder.

    Parameters
    ----------
    encoder, decoder : Module
        The two halves; the decoder's output has the encoder's input shape.
    noise_std : float, default 0.0
        Standard deviation of Gaussian noise added to the input in training mode only (a
        denoising autoencoder); 0 disables it.
    rng : numpy.random.Generator or int, optional
        Generator or seed for the noise (default: convcore's generator).

    Raises
    ------
    TypeError
        If ``encoder`` or ``decoder`` is not a Module.
    ValueError
        If ``noise_std`` is negative.

    Examples
    --------
    >>> import numpy as np
    >>> from convcore import nn
    >>> ae = nn.Autoencoder(nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.ReLU()),
    ...                     nn.Sequential(nn.Linear(4, 16), nn.Sigmoid(), nn.Unflatten(1, (1, 4, 4))))
    >>> x = np.random.default_rng(0).random((3, 1, 4, 4)).astype(np.float32)
    >>> ae(x).shape, ae.encode(x).shape, ae.reconstruction_error(x).shape
    ((3, 1, 4, 4), (3, 4), (3,))
    """

    def __init__(self, encoder: Module, decoder: Module, noise_std: float = 0.0, rng=None):
        super().__init__()
        if not isinstance(encoder, Module) or not isinstance(decoder, Module):
            raise TypeError("Autoencoder(encoder, decoder) expects two Modules")
        if noise_std < 0:
            raise ValueError(f"noise_std must be >= 0; received noise_std={noise_std!r}")
        self.encoder, self.decoder = encoder, decoder
        self.noise_std = float(noise_std)
        # an int seed becomes one generator now, so successive calls draw fresh values
        object.__setattr__(self, "_rng", None if rng is None else resolve_rng(rng))

    def encode(self, x):
        return self.encoder(x)

    def decode(self, z):
        return self.decoder(z)

    def forward(self, x):
        check_input(x, "x", self)
        if self.training and self.noise_std > 0 and not eval_forced():
            x = x + resolve_rng(self._rng).normal(0.0, self.noise_std, size=x.shape).astype(x.dtype)
        return self.decoder(self.encoder(x))

    def reconstruction_error(self, x, batch_size: int = 256) -> np.ndarray:
        """Mean squared reconstruction error per sample, computed as in eval mode (without changing
        the model's ``training`` flags, so other threads may use the model meanwhile)."""
        check_input(x, "x", self)
        with no_grad(), forced_eval():
            errs = [((self.forward(x[i : i + batch_size]) - x[i : i + batch_size]) ** 2)
                    .reshape(len(x[i : i + batch_size]), -1).mean(axis=1) for i in range(0, len(x), batch_size)]
        return np.concatenate(errs)

    def get_config(self):
        return dict(encoder=self.encoder, decoder=self.decoder, noise_std=self.noise_std)
