"""Reliability at the limits (issue 17): thread settings, atomic saves, bounded loads, geometry
that overflows 64-bit arithmetic, and a fuzz of every op and layer in child processes."""

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import zipfile

import numpy as np
import pytest

import convcore
from convcore import nn, ops
from convcore.serialization import ModelFileError

# ---------------------------------------------------------------------------------------------
# threads


def test_thread_settings_are_bounded_and_local():
    with pytest.raises(ValueError, match="between 1 and"):
        convcore.set_num_threads(10**6)
    with pytest.raises(TypeError):
        convcore.set_num_threads(2.0)
    base = convcore.get_num_threads()
    seen = {}
    inside, release = threading.Event(), threading.Event()

    def worker():
        with convcore.threads(1):
            seen["worker"] = convcore.get_num_threads()
            inside.set()
            release.wait(5)

    t = threading.Thread(target=worker)
    t.start()
    inside.wait(5)
    seen["main"] = convcore.get_num_threads()
    release.set()
    t.join()
    assert seen == {"worker": 1, "main": base}


def test_growing_the_thread_count_never_stops_other_threads():
    x = np.random.default_rng(0).random((8, 16, 64, 64), dtype=np.float32)
    errors = []

    def pool():
        try:
            for _ in range(20):
                ops.max_pool2d(x, 2)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=pool) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for n in (2, 3, 4, 5, 6, None):
            convcore.set_num_threads(n)
    finally:
        for t in threads:
            t.join()
        convcore.set_num_threads(None)
    assert not errors, errors[:1]


def test_dask_leaves_thread_settings_as_they_were():
    pytest.importorskip("dask")
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import dask
    import dask.array as da

    import convcore.dask

    def blas_threads():
        return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]

    before = (convcore.get_num_threads(), blas_threads())
    model = convcore.models.lenet(rng=0)
    X = da.from_array(np.random.default_rng(0).random((64, 1, 28, 28), dtype=np.float32), chunks=(8, 1, 28, 28))
    with dask.config.set(scheduler="threads", num_workers=4):
        out = convcore.dask.predict(model, X, batch_size=8).compute()
    assert out.shape == (64, 10)
    assert (convcore.get_num_threads(), blas_threads()) == before


# ---------------------------------------------------------------------------------------------
# atomic saves


def _model():
    return nn.Sequential(nn.Conv2d(1, 4, 3, rng=0), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3, rng=0))


def test_failed_save_keeps_the_previous_file_and_leaves_nothing(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    convcore.save(_model(), path)
    good = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(OSError, match="No space"):
        convcore.save(nn.Sequential(nn.Linear(2, 2)), path)
    assert path.read_bytes() == good and sorted(os.listdir(tmp_path)) == ["m.npz"]


_SAVER = textwrap.dedent("""
    import sys, numpy as np, convcore
    from convcore import nn
    model = nn.Sequential(*[nn.Linear(512, 512, rng=i) for i in range(int(sys.argv[2]))])
    print("ready", flush=True)
    while True:
        convcore.save(model, sys.argv[1])
""")


def test_kill_9_during_save_leaves_the_old_or_the_new_file(tmp_path):
    path = tmp_path / "m.npz"
    convcore.save(nn.Sequential(nn.Linear(512, 512, rng=0)), path)
    rng = np.random.default_rng(0)
    for trial in range(12):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path), str(1 + trial % 3)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        threading.Event().wait(float(rng.uniform(0.0, 0.3)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        model = convcore.load(path)     # never a torn file: the old or a complete new one
        assert len(model) in (1, 2, 3)


# ---------------------------------------------------------------------------------------------
# bounded loads


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


_BOUNDED = textwrap.dedent("""
    import os, resource, sys, convcore
    if os.environ.get("CONVCORE_SANITIZED") != "1":   # ASan's shadow memory needs terabytes of
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # address space; it caps allocations instead
    try:
        convcore.load(sys.argv[1])
    except convcore.ModelFileError as exc:
        print("refused:", exc)
    else:
        print("loaded")
""")


def _load_in_child(path):
    return subprocess.run([sys.executable, "-c", _BOUNDED, str(path)], capture_output=True, text=True, timeout=120)


def test_zip_bomb_is_refused_before_decompressing(tmp_path):
    path = tmp_path / "bomb.npz"
    arch = {"format": "convcore-model", "version": 2, "frozen": [],
            "model": {"type": "Linear", "config": {"in_features": 8, "out_features": 8}}}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        buf = io.BytesIO()
        np.save(buf, np.frombuffer(json.dumps(arch).encode(), np.uint8))
        zf.writestr("__architecture__.npy", buf.getvalue())
        zf.writestr("weight.npy", b"\0" * (2 << 30))      # 2 GiB of zeros, a few MB compressed
    assert path.stat().st_size < 10 << 20
    proc = _load_in_child(path)
    assert proc.returncode == 0 and "refused" in proc.stdout and "declares" in proc.stdout, proc


def test_architecture_bomb_is_refused_before_allocating(tmp_path):
    path = tmp_path / "arch.npz"
    arch = {"format": "convcore-model", "version": 2, "frozen": [],
            "model": {"type": "Sequential", "config": {}, "children": [
                [str(i), {"type": "Linear", "config": {"in_features": 20000, "out_features": 20000}}]
                for i in range(50)]}}
    with open(path, "wb") as f:
        np.savez(f, __architecture__=np.frombuffer(json.dumps(arch).encode(), np.uint8))
    proc = _load_in_child(path)
    assert proc.returncode == 0 and "refused" in proc.stdout and "more than the file" in proc.stdout, proc


@pytest.mark.parametrize("mutate,match", [
    (lambda a: a.update(version=True), "version True"),
    (lambda a: a.update(version=2.0), "version 2.0"),
    (lambda a: a.update(frozen="0.weight"), "frozen"),
    (lambda a: a.update(frozen=["nope"]), "does not exist"),
])
def test_strict_architecture_fields(tmp_path, mutate, match):
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    convcore.save(_model(), good)
    with np.load(good) as d:
        arrays = {k: d[k] for k in d.files}
    arch = json.loads(arrays["__architecture__"].tobytes())
    mutate(arch)
    arrays["__architecture__"] = np.frombuffer(json.dumps(arch).encode(), np.uint8)
    with open(bad, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ModelFileError, match=match):
        convcore.load(bad)


@pytest.mark.parametrize("mutate,match", [
    (lambda a: a.update({"3.weight": a["3.weight"].astype(np.int32)}), "expected a float array"),
    (lambda a: a.update({"3.weight": a["3.weight"].astype(np.float64)}), "mix dtypes"),
    (lambda a: a.update({"3.weight": a["3.weight"].astype(np.float16)}), "float32 or float64|can hold"),
    (lambda a: a.update({f"extra{i}": np.zeros(1) for i in range(5)}), "unexpected keys"),
])
def test_strict_array_checks(tmp_path, mutate, match):
    good, bad = tmp_path / "good.npz", tmp_path / "bad.npz"
    convcore.save(_model(), good)
    with np.load(good) as d:
        arrays = {k: d[k] for k in d.files}
    mutate(arrays)
    with open(bad, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ModelFileError, match=match):
        convcore.load(bad)


def test_load_refuses_directories_and_too_many_members(tmp_path, monkeypatch):
    with pytest.raises(ModelFileError, match="regular file"):
        convcore.load(tmp_path)
    monkeypatch.setattr(convcore.serialization, "MAX_MEMBERS", 10)
    path = tmp_path / "many.npz"
    with open(path, "wb") as f:
        np.savez(f, **{f"a{i}": np.zeros(1) for i in range(20)})
    with pytest.raises(ModelFileError, match="members"):
        convcore.load(path)


# ---------------------------------------------------------------------------------------------
# geometry at the limits of 64-bit arithmetic


@pytest.mark.parametrize("call", [
    lambda: ops.max_pool2d(np.ones((1, 1, 1, 1), np.float32), (2**32, 2**32), padding=(2**31, 2**31)),
    lambda: ops.im2col(np.ones((1, 1, 1, 1)), 1, stride=2**62, padding=(0, 0, 2**63 - 1, 0)),
    lambda: nn.Conv2d(1, 8, 3, stride=2**40, padding="same", dilation=2**63 - 1),
    lambda: ops.avg_pool2d(np.ones((1, 1, 1, 1), np.float32), 2**32),
    lambda: nn.MaxPool2d(2**40),
    lambda: nn.Linear(2**40, 2**40),
    lambda: ops.conv2d(np.ones((1, 1, 1, 1), np.float32), np.ones((1, 1, 1, 1), np.float32), stride=2**62,
                       padding=2**62),
])
def test_overflowing_geometry_is_a_value_error(call):
    with pytest.raises(ValueError, match="<=|too large|between|64-bit"):
        call()


def test_large_but_valid_geometry_is_exact():
    x = np.zeros((1, 1, 1, 1), np.float32) + 3
    y = ops.conv2d(x, np.ones((1, 1, 1, 1), np.float32), stride=2**30, padding=2**30)
    np.testing.assert_array_equal(y[0, 0], [[0, 0, 0], [0, 3, 0], [0, 0, 0]])
    big = ops.avg_pool2d(np.ones((1, 1, 1, 1), np.float32), 2**31 - 1, padding=2**30 - 1)
    np.testing.assert_allclose(big, 1 / (2**31 - 1) ** 2, rtol=1e-6)   # no divisor overflow


# ---------------------------------------------------------------------------------------------
# fuzz: every op and layer with huge, negative, zero and overflow-sized geometry, in child
# processes; any signal, or an exception other than ValueError/TypeError, fails


_FUZZ = textwrap.dedent("""
    import resource, sys, traceback
    # 4 GiB of address space: a legitimate but huge request fails with MemoryError here instead of
    # being filled page by page until the machine's OOM killer ends the process
    import os
    if os.environ.get("CONVCORE_SANITIZED") != "1":   # under ASan: max_allocation_size_mb (the script)
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    import numpy as np
    import convcore
    from convcore import nn, ops
    rng = np.random.default_rng(int(sys.argv[1]))
    count = int(sys.argv[2])
    EDGE = [0, 1, 2, 3, -1, -2**31, 2**31 - 1, 2**31, 2**32, 2**62, 2**63 - 1, 2**63, 2**64, 7]

    def val():
        r = rng.random()
        if r < 0.5:
            return int(rng.choice(EDGE))
        if r < 0.8:
            return int(rng.integers(0, 5))
        return (int(rng.choice(EDGE)), int(rng.integers(0, 4)))

    def pad():
        r = rng.random()
        if r < 0.15:
            return str(rng.choice(["same", "valid"]))
        if r < 0.3:
            return tuple(int(rng.choice(EDGE)) for _ in range(4))
        return val()

    def arr(nd=4, dtype=None):
        shape = tuple(int(rng.integers(1, 5)) for _ in range(nd))
        return rng.standard_normal(shape).astype(dtype or rng.choice([np.float32, np.float64]))

    CALLS = {
        "conv2d": lambda: ops.conv2d(arr(), arr(), None, val(), pad(), val(), val()),
        "conv2d_backward": lambda: ops.conv2d_backward(arr(), arr(), arr(), val(), pad(), val(), val()),
        "conv_transpose2d": lambda: ops.conv_transpose2d(arr(), arr(), None, val(), val(), val(), val(), val()),
        "max_pool2d": lambda: ops.max_pool2d(arr(), val(), val(), pad(), val(), bool(rng.random() < 0.5)),
        "avg_pool2d": lambda: ops.avg_pool2d(arr(), val(), val(), pad(), bool(rng.random() < 0.5)),
        "avg_pool2d_backward": lambda: ops.avg_pool2d_backward(arr(), tuple(int(v) for v in rng.integers(1, 5, 4)),
                                                              val(), val(), pad()),
        "max_pool2d_backward": lambda: ops.max_pool2d_backward(arr(), rng.integers(-3, 30, (2, 2, 2, 2)),
                                                              tuple(int(v) for v in rng.integers(1, 5, 4))),
        "max_unpool2d": lambda: ops.max_unpool2d(arr(), rng.integers(-3, 30, (2, 2, 2, 2)), (val(), val())),
        "im2col": lambda: ops.im2col(arr(), val(), val(), pad(), val()),
        "col2im": lambda: ops.col2im(arr(3), tuple(int(v) for v in rng.integers(1, 5, 4)), val(), val(), pad(), val()),
        "Conv2d": lambda: nn.Conv2d(val(), val(), val(), val(), pad(), val(), val())(arr(dtype=np.float32)),
        "ConvTranspose2d": lambda: nn.ConvTranspose2d(val(), val(), val(), val(), val(), val(), val())(
            arr(dtype=np.float32)),
        "MaxPool2d": lambda: nn.MaxPool2d(val(), val(), pad(), val())(arr()),
        "AvgPool2d": lambda: nn.AvgPool2d(val(), val(), pad())(arr()),
        "AdaptiveAvgPool2d": lambda: nn.AdaptiveAvgPool2d(val())(arr()),
        "Upsample": lambda: nn.Upsample(val())(arr()),
        "Linear": lambda: nn.Linear(val(), val())(arr(2, np.float32)),
        "MaxUnpool2d": lambda: nn.MaxUnpool2d(val(), val(), val())(arr(), rng.integers(-3, 30, (2, 2, 2, 2))),
    }
    names = sorted(CALLS)
    for i in range(count):
        name = names[i % len(names)]
        try:
            CALLS[name]()
        except (ValueError, TypeError):
            pass
        except MemoryError:
            pass   # a legitimate request too big for this machine, refused by numpy's allocator
        except Exception:
            print("FAIL", name, traceback.format_exc().replace(chr(10), " | "), flush=True)
    print("done", count, flush=True)
""")


def _fuzz(seed: int, count: int):
    proc = subprocess.run([sys.executable, "-c", _FUZZ, str(seed), str(count)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"child died (signal {-proc.returncode}): {proc.stderr[-2000:]}"
    failures = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert not failures, failures[:3]
    assert f"done {count}" in proc.stdout


@pytest.mark.parametrize("seed", range(3))
def test_fuzz_every_op_and_layer_with_hostile_geometry(seed):
    _fuzz(seed, int(os.environ.get("CONVCORE_FUZZ_CALLS", "3000")))


@pytest.mark.fuzz
def test_fuzz_long():
    _fuzz(100, 100_000)


def test_model_file_with_overflowing_geometry_is_refused_at_load(tmp_path):
    path = tmp_path / "pool.npz"
    arch = {"format": "convcore-model", "version": 2, "frozen": [],
            "model": {"type": "MaxPool2d", "config": {"kernel_size": [2**32, 2**32], "padding": [2**31, 2**31]}}}
    with open(path, "wb") as f:
        np.savez(f, __architecture__=np.frombuffer(json.dumps(arch).encode(), np.uint8))
    with pytest.raises(ModelFileError, match="kernel_size must be <="):
        convcore.load(path)
