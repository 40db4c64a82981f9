"""save/load: bitwise round trip, and every kind of bad file is rejected without executing it."""

import json
import zipfile

import numpy as np
import pytest

import convcore
from convcore import nn
from convcore.serialization import ModelFileError


@pytest.fixture
def model():
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, rng=0), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Dropout(0.2), nn.Linear(4 * 4 * 4, 3, rng=0))
    m(np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32))  # update batch-norm statistics
    m[0].freeze()
    return m


def test_round_trip_is_bitwise_and_predicts_identically(model, tmp_path):
    path = tmp_path / "m.npz"
    convcore.save(model, path)
    loaded = convcore.load(path)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    assert loaded[0].frozen and not loaded[6].frozen
    x = np.random.default_rng(1).random((3, 1, 8, 8), dtype=np.float32)
    np.testing.assert_array_equal(convcore.predict(model, x), convcore.predict(loaded, x))
    assert not loaded.training


def test_float64_and_autoencoder_round_trip(tmp_path):
    ae = convcore.models.conv_autoencoder(latent_dim=8, rng=0).astype(np.float64)
    convcore.save(ae, tmp_path / "ae.npz")
    back = convcore.load(tmp_path / "ae.npz")
    x = np.random.default_rng(2).random((2, 1, 28, 28))
    np.testing.assert_array_equal(convcore.predict(ae, x), convcore.predict(back, x))


def rewrite(path, out, mutate):
    with np.load(path, allow_pickle=False) as d:
        arrays = {k: d[k] for k in d.files}
    mutate(arrays)
    with open(out, "wb") as f:
        np.savez(f, **arrays)


def arch_of(arrays):
    return json.loads(arrays["__architecture__"].tobytes())


def set_arch(arrays, arch):
    arrays["__architecture__"] = np.frombuffer(json.dumps(arch).encode(), dtype=np.uint8)


@pytest.mark.parametrize("mutate, match", [
    (lambda a: a.pop("6.weight"), "missing keys"),
    (lambda a: a.update(extra=np.zeros(2)), "unexpected keys"),
    (lambda a: a.update({"6.weight": np.zeros((2, 2), np.float32)}), "shape"),
    (lambda a: a.pop("__architecture__"), "no valid architecture"),
    (lambda a: a.update(__architecture__=np.frombuffer(b"{not json", np.uint8)), "not valid JSON"),
    (lambda a: set_arch(a, {**arch_of(a), "version": 99}), "version 99"),
    (lambda a: set_arch(a, {**arch_of(a), "format": "other"}), "not a convcore-model"),
    (lambda a: set_arch(a, {**arch_of(a), "model": {"type": "os.system", "config": {}}}), "unknown module type"),
    (lambda a: set_arch(a, {**arch_of(a), "model": {"type": "Linear", "config": {"in_features": "__import__('os')"}}}),
     "cannot build Linear"),
    (lambda a: a.update({"6.weight": np.array(["x"] * 192).reshape(3, 64)}), "unsupported dtype"),
])
def test_bad_files_are_rejected(model, tmp_path, mutate, match):
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    convcore.save(model, good)
    rewrite(good, bad, mutate)
    with pytest.raises(ModelFileError, match=match):
        convcore.load(bad)


def test_truncated_corrupted_and_non_zip_files(model, tmp_path):
    good = tmp_path / "good.npz"
    convcore.save(model, good)
    data = good.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 10):
        (tmp_path / "t.npz").write_bytes(data[:cut])
        with pytest.raises(ModelFileError):
            convcore.load(tmp_path / "t.npz")
    with pytest.raises(ModelFileError):
        convcore.load(tmp_path / "missing.npz")


def test_pickle_payload_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.npz"
    with open(path, "wb") as f:
        np.savez(f, __architecture__=np.frombuffer(b"{}", np.uint8), payload=np.array([Evil()], dtype=object))
    with pytest.raises(ModelFileError):
        convcore.load(path)
    assert not marker.exists()


def test_member_declaring_more_than_it_stores_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("__architecture__.npy", b"x" * 100)
    raw = bytearray(path.read_bytes())
    # the central directory's uncompressed size of the member (offset 24 in its header) claims 1 GB
    cd = raw.rindex(b"PK\x01\x02")
    raw[cd + 24 : cd + 28] = (10**9).to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="declares"):
        convcore.load(path)


def test_mutation_fuzz_only_clean_errors(model, tmp_path):
    good = tmp_path / "good.npz"
    convcore.save(model, good)
    data = bytearray(good.read_bytes())
    rng = np.random.default_rng(0)
    outcomes = {"error": 0, "loaded": 0}
    for _i in range(300):
        mutated = bytearray(data)
        for _ in range(int(rng.integers(1, 8))):
            mutated[int(rng.integers(0, len(mutated)))] = int(rng.integers(0, 256))
        p = tmp_path / "fuzz.npz"
        p.write_bytes(bytes(mutated))
        try:
            convcore.load(p)
            outcomes["loaded"] += 1  # a flipped byte in padding or in a float value is still a valid file
        except ModelFileError:
            outcomes["error"] += 1
    assert outcomes["error"] > 0
