"""convcore: a CPU CNN engine with compiled Cython kernels and a PyTorch-like layer API."""

__version__ = "0.1.0"
