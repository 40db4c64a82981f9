"""The benchmark harnesses on the tiny smoke shapes, so they cannot rot (speed is not asserted here).

One thread everywhere: on a busy machine a 2-thread pool waits for a descheduled worker on every
tiny call, which would make this file slow without testing anything more.
"""

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import convcore
from convcore import bench, cli
from convcore.bench import cases, machine, plot, timing

ROOT = Path(__file__).resolve().parents[1]
HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_MPL = importlib.util.find_spec("matplotlib") is not None


@pytest.mark.skipif(not convcore.info()["compiled"], reason="needs the compiled extension")
def test_convcore_bench_smoke(tmp_path, capsys):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    threads_before = convcore.get_num_threads()
    argv = ["bench", "--smoke", "--repeat", "1", "--threads", "1", "--scaling", "--json", str(out)]
    assert cli.main(argv + (["--plot", str(png)] if HAS_MPL else [])) == 0
    text = capsys.readouterr().out
    assert convcore.get_num_threads() == threads_before  # the command restores what it changed
    for group in cases.GROUPS:
        assert f"\n{group}: " in text
    assert "cy/np" in text and "%GEMM" in text and "%peak" in text and "summary: issue 13 targets" in text
    assert "BLAS" in text and f"isa={convcore.info()['isa']}" in text and "measured FMA peak" in text

    data = json.loads(out.read_text())
    assert {"schema", "date", "machine", "environment", "convcore", "threads", "threadpool_info", "torch",
            "repeat", "results", "skipped", "summary"} <= set(data)
    assert data["machine"]["cpu"] and data["threads"]["convcore"] == 1 and data["machine"]["sgemm"]["gflops_nthr"] > 0
    assert data["machine"]["fma_peak"]["gflops"] > 0 and data["machine"]["fma_peak"]["isa"] == convcore.info()["isa"]
    has_ort = data["machine"]["onnxruntime"] is not None
    ran = {r["case"] for r in data["results"]} | {s["case"] for s in data["skipped"]}
    assert ran == {s.name for s in bench.specs(smoke=True)}
    for r in data["results"]:
        for contender in ("cython", "numpy", "cython 1thr"):
            assert len(r["samples_ms"][contender]) == timing._BLOCK
        assert r["median_ms"]["cython"] > 0 and r["ratios"]["thread_gain"] > 0
        assert r["memory"]["cython"]["work_mib"] >= 0 and r["memory"]["numpy"]["peak_mib"] >= 0
        assert ("torch" in r["median_ms"]) == HAS_TORCH
        assert ("onnxruntime" in r["median_ms"]) == (has_ort and (r["kind"] == "infer" or
                                                               r["kind"] == "conv" and r["op"] == "fwd"))
        if r["kind"] == "infer":
            assert r["images_per_s"]["cython"] > 0
        if r["kind"] == "conv":
            assert r["gemm_variant"] in ("batched", "per-image") and r["gflops"]["cython"] > 0
            assert len(r["samples_ms"]["gemm batched"]) == len(r["samples_ms"]["gemm per-image"]) == timing._BLOCK
    keys = {s["key"] for s in data["summary"]}
    assert {"cython_numpy_geomean", "gemm_bound_min_pct", "gemm_bound_fwd_min_peak", "v1_work_mib", "thread_gain"} <= keys
    if HAS_TORCH:
        assert {"conv_torch_geomean", "pool_fwd_torch_geomean", "pool_bwd_torch_geomean", "lenet_full",
                "infer_lenet_b1_torch"} <= keys
    if has_ort:
        assert {"infer_lenet_b64_ort", "infer_lenet_b1_ort", "infer_resnet18_b1_ort"} <= keys
    assert all(s["smoke"] for s in data["summary"])
    if HAS_MPL:
        assert png.stat().st_size > 1000


def test_bench_rejects_unknown_cases(capsys):
    assert cli.main(["bench", "--cases", "L1,nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "L1" in err and "lenet" in err


def test_bench_plot_without_matplotlib_fails_before_running(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    assert cli.main(["bench", "--cases", "C", "--plot", "x.png"]) == 2
    captured = capsys.readouterr()
    assert "matplotlib" in captured.err and "nothing was run" in captured.err and "pool" not in captured.out


def test_case_selection():
    assert bench.parse_groups("l1,POOL") == ["L1", "A", "B", "C"]
    assert bench.parse_groups("") is None
    names = [s.name for s in bench.specs(["V1", "lenet"])]
    assert names == ["conv V1 fwd", "conv V1 grad_input", "conv V1 grad_weight",
                     "lenet full", "lenet frozen", "lenet predict"]
    assert len(bench.specs()) == 18 + 6 + 3 + 4
    assert [s.op for s in bench.specs(["infer"])] == ["lenet-b1", "lenet-b64", "resnet18-b1", "resnet18-b8"]


def test_lenet_case_skips_cleanly_without_the_layer_api():
    fake = types.SimpleNamespace(nn=types.SimpleNamespace(Linear=object), optim=None)
    with pytest.raises(bench.Unavailable, match="nn.Conv2d.*optim.SGD"):
        cases._lenet(fake, 0)


def test_plot_labels_name_the_group_once():
    def result(kind, group, op, smoke=False):
        return {"kind": kind, "group": group, "op": op, "smoke": smoke}

    assert plot._label(result("infer", "infer", "lenet-b1")) == "infer lenet-b1"   # not "infer infer lenet-b1"
    assert plot._label(result("conv", "L1", "fwd", smoke=True)) == "conv L1 fwd (smoke)"
    assert plot._label(result("pool", "C", "bwd")) == "pool C bwd"
    assert plot._label(result("step", "lenet", "full")) == "lenet full"


def test_public_names_for_benchmarks():
    assert bench.cpu_isa({"avx", "avx2", "fma"}) == "AVX2" and bench.cpu_isa(AVX512) == "AVX-512"
    model, flags = bench.cpu_info()
    assert isinstance(model, str) and isinstance(flags, set)
    calls = []
    assert len(bench.Contender("c", lambda: calls.append(1)).turn(2, warm=False)) == 2 and len(calls) == 3
    assert cli.build_parser().parse_args(["bench", "--smoke"]).func is bench.run

AVX512 = {"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq"}


def test_header_warnings(monkeypatch):
    assert "Haswell" in machine.kernel_warning("Haswell", AVX512)
    assert machine.kernel_warning("Haswell", {"avx", "avx2", "fma"}) is None  # right for an AVX2 CPU
    assert machine.kernel_warning("SkylakeX", AVX512) is None
    assert "Sandybridge" in machine.kernel_warning("Sandybridge", {"avx", "avx2", "fma"})
    assert machine.kernel_warning("unknown (pip install threadpoolctl)", AVX512) is None
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    info = convcore.info()
    facts = dict(machine._machine(), loadavg=[0.0, 0.0, 0.0])
    threads = {"convcore": 2, "blas": 2, "torch": None}
    lines, warnings = machine._header(info, facts, threads, None, AVX512, smoke=False)
    assert any("OPENBLAS_CORETYPE=Haswell" in w for w in warnings)
    assert any("OPENBLAS_CORETYPE=Haswell" in line for line in lines)  # the environment line
    assert any("openmp=" in line for line in lines) and any("kernel=" in line for line in lines)


def test_pytest_benchmark_suite_smoke():
    pytest.importorskip("pytest_benchmark")
    if not (ROOT / "benchmarks").is_dir():
        pytest.skip("benchmarks/ folder not shipped here")
    env = dict(os.environ, CONVCORE_BENCH_SMOKE="1", CONVCORE_BENCH_THREADS="1")
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "benchmarks"), "-q", "--benchmark-disable", "-p", "no:cacheprovider"]
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " passed" in proc.stdout and "failed" not in proc.stdout and "error" not in proc.stdout.lower()
