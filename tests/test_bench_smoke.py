"""The benchmark harnesses on tiny shapes, so they cannot rot (speed is not asserted here)."""

import json
import os
import subprocess
import sys
from pathlib import Path

from convcore import bench, cli

ROOT = Path(__file__).resolve().parents[1]


def test_convcore_bench_smoke(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--smoke", "--repeat", "2", "--scaling", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "conv smoke fwd" in text and "pool smoke bwd" in text and "summary" in text
    data = json.loads(out.read_text())
    assert {"machine", "convcore", "results", "summary"} <= set(data)
    first = data["results"][0]
    assert len(first["samples"]["cython"]) == 2 * bench._BLOCK and first["median_ms"]["numpy"] > 0 and "cython_1thread_ms" in first


def test_bench_rejects_unknown_cases(capsys):
    assert cli.main(["bench", "--cases", "nope"]) == 2


def test_pytest_benchmark_suite_smoke():
    if not (ROOT / "benchmarks").is_dir():
        import pytest

        pytest.skip("benchmarks/ folder not shipped here")
    env = dict(os.environ, CONVCORE_BENCH_SMOKE="1")
    proc = subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "benchmarks"), "-q", "--benchmark-disable",
                           "-p", "no:cacheprovider"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout
