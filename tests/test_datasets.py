"""Bundled digits, and full-MNIST download tested against a loopback HTTP server (no network)."""

import gzip
import hashlib
import http.server
import threading

import numpy as np
import pytest

from convcore import datasets
from convcore.datasets import DatasetError


def test_bundled_mnist():
    (xt, yt), (xs, ys) = datasets.load_mnist()
    assert xt.shape == (4000, 1, 28, 28) and xs.shape == (1000, 1, 28, 28)
    assert xt.dtype == np.float32 and yt.dtype == np.int64
    assert 0 <= xt.min() and xt.max() <= 1 and xt.max() > 0.9
    assert np.bincount(ys).tolist() == [100] * 10 and np.bincount(yt).tolist() == [400] * 10


def idx_bytes(array, code=0x08):
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def mnist_server(tmp_path):
    rng = np.random.default_rng(0)
    files = {
        "train-images-idx3-ubyte.gz": idx_bytes(rng.integers(0, 256, (6, 28, 28))),
        "train-labels-idx1-ubyte.gz": idx_bytes(rng.integers(0, 10, 6)),
        "t10k-images-idx3-ubyte.gz": idx_bytes(rng.integers(0, 256, (4, 28, 28))),
        "t10k-labels-idx1-ubyte.gz": idx_bytes(rng.integers(0, 10, 4)),
    }
    blobs = {name: gzip.compress(raw) for name, raw in files.items()}
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            name = self.path.rsplit("/", 1)[-1]
            requests.append(name)
            if name not in blobs:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(blobs[name])))
            self.end_headers()
            self.wfile.write(blobs[name])

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", blobs, requests
    server.shutdown()
    server.server_close()


def test_full_mnist_download_verify_cache(mnist_server, tmp_path, monkeypatch):
    url, blobs, requests = mnist_server
    monkeypatch.setattr(datasets, "MNIST_FILES", {k: (hashlib.sha256(v).hexdigest(), len(v)) for k, v in blobs.items()})
    (xt, yt), (xs, ys) = datasets.load_mnist(full=True, cache_dir=tmp_path, url=url)
    assert xt.shape == (6, 1, 28, 28) and ys.shape == (4,) and yt.dtype == np.int64
    assert len(requests) == 4
    datasets.load_mnist(full=True, cache_dir=tmp_path, url=url)
    assert len(requests) == 4  # served from the cache


def test_checksum_mismatch_caches_nothing(mnist_server, tmp_path, monkeypatch):
    url, blobs, _ = mnist_server
    monkeypatch.setattr(datasets, "MNIST_FILES", {k: ("0" * 64, len(v)) for k, v in blobs.items()})
    with pytest.raises(DatasetError, match="checksum mismatch"):
        datasets.load_mnist(full=True, cache_dir=tmp_path, url=url)
    assert list((tmp_path / "mnist").iterdir()) == []


def test_unreachable_server_gives_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="offline"):
        datasets.load_mnist(full=True, cache_dir=tmp_path, url="http://127.0.0.1:9/", timeout=2)


def test_malformed_idx_files(tmp_path):
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x00\x00\x08\x01" + (10).to_bytes(4, "big") + b"\x01\x02")
    with pytest.raises(DatasetError, match="header announces"):
        datasets.read_idx(bad)
    bad.write_bytes(b"PK\x03\x04")
    with pytest.raises(DatasetError, match="bad magic"):
        datasets.read_idx(bad)
    bad.write_bytes(b"\x00\x00\x08\x03\x00")
    with pytest.raises(DatasetError, match="truncated|expected"):
        datasets.read_idx(bad, ndim=3)


def _serve(handler_body):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            handler_body(self)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def _one_file(monkeypatch, size=100):
    monkeypatch.setattr(datasets, "MNIST_FILES", {"train-images-idx3-ubyte.gz": ("0" * 64, size)})


def test_trickling_server_hits_the_total_deadline(tmp_path, monkeypatch):
    import time

    def trickle(h):
        h.send_response(200)
        h.end_headers()
        try:
            for _ in range(100):
                h.wfile.write(b"x")
                h.wfile.flush()
                time.sleep(0.05)
        except OSError:
            pass

    _one_file(monkeypatch)
    server, url = _serve(trickle)
    try:
        start = time.monotonic()
        with pytest.raises(DatasetError, match="longer than"):
            datasets.load_mnist(full=True, cache_dir=tmp_path, url=url, timeout=5, deadline=0.5)
        assert time.monotonic() - start < 3
    finally:
        server.shutdown()
    assert not list((tmp_path / "mnist").glob("*.part"))


def test_endless_body_is_cut_at_the_known_size(tmp_path, monkeypatch):
    def endless(h):
        h.send_response(200)
        h.end_headers()
        try:
            while True:
                h.wfile.write(b"x" * 65536)
        except OSError:
            pass

    _one_file(monkeypatch, size=1000)
    server, url = _serve(endless)
    try:
        with pytest.raises(DatasetError, match="more than the file"):
            datasets.load_mnist(full=True, cache_dir=tmp_path, url=url)
    finally:
        server.shutdown()
    assert sum(p.stat().st_size for p in (tmp_path / "mnist").iterdir()) == 0


def test_stale_parts_are_removed_and_odd_cache_paths_refused(tmp_path, monkeypatch):
    import os

    _one_file(monkeypatch)
    folder = tmp_path / "mnist"
    folder.mkdir()
    stale = folder / "train-images-idx3-ubyte.gz.abc.part"
    stale.write_bytes(b"half")
    os.utime(stale, (0, 0))
    with pytest.raises(DatasetError, match="offline"):
        datasets.load_mnist(full=True, cache_dir=tmp_path, url="http://127.0.0.1:9/", timeout=2)
    assert not stale.exists()
    (folder / "train-images-idx3-ubyte.gz").mkdir()
    with pytest.raises(DatasetError, match="not a regular file"):
        datasets.load_mnist(full=True, cache_dir=tmp_path, url="http://127.0.0.1:9/", timeout=2)
    os.rmdir(folder / "train-images-idx3-ubyte.gz")
    os.mkfifo(folder / "train-images-idx3-ubyte.gz")
    with pytest.raises(DatasetError, match="not a regular file"):
        datasets.load_mnist(full=True, cache_dir=tmp_path, url="http://127.0.0.1:9/", timeout=2)
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(DatasetError, match="cache"):
        datasets.load_mnist(full=True, cache_dir=blocker, url="http://127.0.0.1:9/", timeout=2)
