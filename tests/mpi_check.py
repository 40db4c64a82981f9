"""Run under ``mpiexec -n 2`` by tests/test_mpi.py: data-parallel training equals single-process
training on the full batch (float64), frozen layers stay bit-identical."""

import sys

import numpy as np

import convcore
from convcore import nn, optim
from convcore.mpi import DataParallel


def model():
    m = convcore.models.lenet(rng=0, dropout=0.0).astype(np.float64)
    m[0].freeze()
    return m


def main():
    rng = np.random.default_rng(0)
    x, y = rng.random((48, 1, 28, 28)), rng.integers(0, 10, 48)
    dp = DataParallel(model(), seed=1)
    frozen = dp.model[0].weight.data.copy()
    opt = optim.SGD(dp.model.parameters(), lr=0.05, momentum=0.9)
    hist = dp.fit(nn.CrossEntropyLoss(), opt, x, y, epochs=2, batch_size=16, seed=3)
    # reference: one process, full batches, same order
    ref = model()
    ref_opt = optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    ref_hist = convcore.fit(ref, nn.CrossEntropyLoss(), ref_opt, x, y, epochs=2, batch_size=16, seed=3,
                            progress=False)
    for (k, a), (_, b) in zip(dp.model.state_dict().items(), ref.state_dict().items()):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=k)
    np.testing.assert_array_equal(dp.model[0].weight.data, frozen)
    np.testing.assert_allclose(hist.loss, ref_hist.loss, rtol=1e-10)
    # all replicas hold the same weights
    gathered = dp.comm.allgather(dp.model[7].weight.data)
    assert all(np.array_equal(gathered[0], g) for g in gathered)
    print(f"rank {dp.rank}/{dp.size}: OK")


if __name__ == "__main__":
    sys.exit(main())
