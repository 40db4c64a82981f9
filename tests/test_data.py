"""convcore.data (DataLoader over arrays and memmaps), convcore.transforms, and the bundled
digits' stratified test order."""

import numpy as np
import pytest

import convcore
from convcore import data, transforms
from convcore.data import DataLoader, EpochOrder


def test_epoch_order_depends_on_seed_and_epoch_only():
    order = EpochOrder(7, 50)
    sequence = [order(e) for e in range(4)]
    rng = np.random.default_rng(7)
    for e in range(4):   # the (e + 1)-th permutation of default_rng(seed): fit's order since convcore 0.1
        np.testing.assert_array_equal(sequence[e], rng.permutation(50))
    np.testing.assert_array_equal(EpochOrder(7, 50)(3), sequence[3])   # a jump (resume) replays the draws
    np.testing.assert_array_equal(order(1), sequence[1])               # and back
    assert not np.array_equal(sequence[0], sequence[1])


def test_loader_batches_shuffle_and_drop_last(rng):
    x, y = rng.standard_normal((10, 3)), np.arange(10)
    loader = DataLoader((x, y), batch_size=4, shuffle=True, seed=3)
    assert len(loader) == 3 and len(DataLoader((x, y), batch_size=4, drop_last=True)) == 2
    first = [yb for _, yb in loader]
    second = [yb for _, yb in loader]   # re-iterable: each pass is the next epoch
    assert [len(b) for b in first] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate(first), EpochOrder(3, 10)(0))
    np.testing.assert_array_equal(np.concatenate(second), EpochOrder(3, 10)(1))
    loader.set_epoch(1)
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in loader]), np.concatenate(second))
    for xb, yb in DataLoader((x, y), batch_size=4):
        np.testing.assert_array_equal(xb, x[yb])
    assert [len(b) for b in DataLoader(x, batch_size=4, drop_last=True)] == [4, 4]   # one array: arrays, not tuples
    assert isinstance(next(iter(DataLoader(x, batch_size=4))), np.ndarray)


def test_loader_reads_memmaps_in_order(tmp_path, rng):
    x = rng.standard_normal((40, 2, 3, 3)).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")
    got = [(xb, yb) for xb, yb in DataLoader((mm, np.arange(40)), batch_size=7, shuffle=True, seed=1)]
    for xb, yb in got:
        assert type(xb) is np.ndarray
        np.testing.assert_array_equal(xb, x[yb])


def test_loader_over_a_map_style_dataset_and_transforms(rng):
    class Squares:
        def __len__(self):
            return 9

        def __getitem__(self, i):
            return np.full((1, 2, 2), i, np.uint8), i

    seen = []

    def augment(xb, rng):
        seen.append(rng.random())
        return transforms.ToFloat()(xb)

    loader = DataLoader(Squares(), batch_size=4, shuffle=True, seed=0, transform=augment)
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(4, 1, 2, 2), (4, 1, 2, 2), (1, 1, 2, 2)]
    for xb, yb in batches:
        assert xb.dtype == np.float32
        np.testing.assert_allclose(xb[:, 0, 0, 0], yb / 255.0)
    loader.set_epoch(0)
    first = list(seen)
    list(loader)
    assert seen[3:] == first   # the transform's randomness comes from (seed, epoch)


def test_loader_validates():
    with pytest.raises(TypeError, match="dataset must be an array, a tuple of arrays"):
        DataLoader(42)
    with pytest.raises(ValueError, match="every array must have the same length"):
        DataLoader((np.zeros(3), np.zeros(4)))
    with pytest.raises(ValueError, match="DataLoader: batch_size must be >= 1; received batch_size=0"):
        DataLoader(np.zeros(3), batch_size=0)
    with pytest.raises(TypeError, match="DataLoader: shuffle must be a bool"):
        DataLoader(np.zeros(3), shuffle="yes")


def test_to_float_and_normalize():
    img = np.array([[[[0, 51, 255]]]], np.uint8)
    np.testing.assert_array_equal(transforms.ToFloat()(img), img.astype(np.float32) / 255.0)
    assert transforms.ToFloat(np.float64)(img).dtype == np.float64
    assert transforms.ToFloat()(np.array([65535], np.uint16))[0] == 1.0
    f = transforms.ToFloat()(np.ones((1, 1, 1, 1), np.float64))
    assert f.dtype == np.float32
    x = np.stack([np.full((2, 2), 1.0), np.full((2, 2), 3.0)])[None]   # (1, 2, 2, 2)
    out = transforms.Normalize([1.0, 2.0], [1.0, 0.5])(x)
    np.testing.assert_allclose(out[0, 0], 0.0)
    np.testing.assert_allclose(out[0, 1], 2.0)
    np.testing.assert_allclose(transforms.Normalize(1.0, 2.0)(x[0])[1], 1.0)   # one image (C, H, W)
    with pytest.raises(ValueError, match="mean must have 1 or 2 values"):
        transforms.Normalize([0, 0, 0], [1, 1, 1])(x)
    with pytest.raises(TypeError, match=r"Normalize: x must have a float dtype; received x.dtype=uint8 \(apply "
                                        r"ToFloat\(\) first\)"):
        transforms.Normalize(0, 1)(np.zeros((1, 1, 2, 2), np.uint8))


def test_random_flip_and_crop(rng):
    x = rng.standard_normal((64, 2, 5, 6))
    flipped = transforms.RandomHorizontalFlip(p=1.0)(x)
    np.testing.assert_array_equal(flipped, x[..., ::-1])
    np.testing.assert_array_equal(transforms.RandomVerticalFlip(p=0.0)(x), x)
    half = transforms.RandomHorizontalFlip()(x, rng=np.random.default_rng(0))
    n_flipped = sum(np.array_equal(h, f) for h, f in zip(half, flipped))
    assert 15 < n_flipped < 49
    crop = transforms.RandomCrop(5, padding=2)
    a = crop(x, rng=np.random.default_rng(1))
    b = crop(x, rng=np.random.default_rng(1))
    assert a.shape == (64, 2, 5, 5)
    np.testing.assert_array_equal(a, b)
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    for i in range(0, 64, 9):   # each crop is a window of the padded image
        windows = np.lib.stride_tricks.sliding_window_view(padded[i], (2, 5, 5))[0]
        assert any(np.array_equal(a[i], windows[r, c]) for r in range(windows.shape[0]) for c in
                   range(windows.shape[1]))
    assert transforms.RandomCrop((3, 4))(x[0]).shape == (2, 3, 4)
    with pytest.raises(ValueError, match="larger than the"):
        transforms.RandomCrop(9)(x)
    assert transforms.RandomCrop(9, pad_if_needed=True, padding_mode="edge")(x).shape == (64, 2, 9, 9)
    pipeline = transforms.Compose([transforms.ToFloat(), transforms.RandomCrop(4, padding=1),
                                   transforms.RandomHorizontalFlip(), transforms.Normalize(0.5, 0.25)])
    out = pipeline(rng.integers(0, 256, (8, 1, 4, 4)).astype(np.uint8), rng=np.random.default_rng(0))
    assert out.shape == (8, 1, 4, 4) and out.dtype == np.float32


def test_bundled_test_split_is_stratified_and_fixed():
    (_, _), (xs, ys) = convcore.datasets.load_mnist()
    assert np.bincount(ys[:300]).tolist() == [30] * 10   # any prefix is a fair sample
    for start in range(0, 1000, 10):
        assert sorted(ys[start : start + 10]) == list(range(10))
    (_, _), (xs2, ys2) = convcore.datasets.load_mnist()
    np.testing.assert_array_equal(ys, ys2)
    np.testing.assert_array_equal(xs, xs2)
    order = convcore.datasets.stratified_order(np.repeat(np.arange(3), [5, 3, 2]))
    assert sorted(order.tolist()) == list(range(10))
    sizes = np.array([50, 30, 20])
    labels = np.repeat(np.arange(3), sizes)[convcore.datasets.stratified_order(np.repeat(np.arange(3), sizes))]
    for k in range(1, 101):   # unequal classes interleave in proportion too
        assert np.abs(np.bincount(labels[:k], minlength=3) - k * sizes / 100).max() <= 2


def test_data_is_exported():
    assert convcore.data is data and convcore.transforms is transforms
