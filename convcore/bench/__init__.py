"""Benchmark convcore's kernels side by side: cython vs numpy backend (vs torch when installed), interleaved, medians.

``convcore bench`` times every case of the suite (convolution shapes L1 L2 V1 R1 P1 S1 as forward,
input gradient and weight gradient; max-pool shapes A B C as forward and backward; the LeNet
training step; inference with ``predict`` on LeNet and ResNet-18) for each contender: convcore's
cython and numpy backends, torch and onnxruntime when installed, and numpy's GEMM doing the same
multiply-adds (the ceiling). The contenders take turns in interleaved rounds, each turn after an
untimed warm-up, and the tables show medians. It prints a header on the machine (the CPU, the
measured FMA peak, numpy's BLAS and an sgemm calibration, with warnings when something distorts
the numbers), a table per shape group and a summary against issue 13's and 14's targets;
``--json`` writes every sample, ``--plot`` draws the speed-ups.

The package, by concern: ``cases`` (the suite: `Spec`, `Case`, `specs`), ``machine`` (the CPU,
its peak, the header), ``timing`` (`Contender`, the interleaved rounds), ``report`` (rows,
targets, summary, JSON), ``plot`` (the chart) and ``cli`` (the options and `run`). The
``benchmarks/`` pytest-benchmark suite runs the same cases through the names exported here.
"""

from .cases import Case, Spec, Unavailable, optional_torch, parse_groups, specs
from .cli import add_arguments, run
from .machine import cpu_info, cpu_isa
from .timing import Contender

__all__ = ["Spec", "Case", "specs", "parse_groups", "Unavailable", "Contender", "optional_torch", "cpu_info",
           "cpu_isa", "add_arguments", "run"]
