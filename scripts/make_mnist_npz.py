"""Convert the 5,000-digit MNIST sample (mnist_5k.csv.gz: 784 pixels then the label per row) into
convcore/datasets/mnist_5k.npz, with a fixed stratified split: 100 test images per class.

Kept for provenance; the .npz it wrote is what the package ships.
Usage: python scripts/make_mnist_npz.py ../shared/data/mnist_5k.csv.gz convcore/datasets/mnist_5k.npz
"""

import gzip
import sys

import numpy as np


def main(src: str, dst: str) -> None:
    with gzip.open(src, "rt") as f:
        data = np.loadtxt(f, delimiter=",", dtype=np.uint8)
    images, labels = data[:, :784].reshape(-1, 28, 28), data[:, 784]
    rng = np.random.default_rng(20261124)
    test = np.zeros(len(labels), dtype=bool)
    for digit in range(10):
        test[rng.choice(np.flatnonzero(labels == digit), size=100, replace=False)] = True
    train_idx, test_idx = np.flatnonzero(~test), np.flatnonzero(test)
    train_idx = rng.permutation(train_idx)
    np.savez_compressed(dst, x_train=images[train_idx], y_train=labels[train_idx],
                        x_test=images[test_idx], y_test=labels[test_idx])
    print(f"wrote {dst}: {len(train_idx)} train, {len(test_idx)} test")


if __name__ == "__main__":
    main(*sys.argv[1:3])
