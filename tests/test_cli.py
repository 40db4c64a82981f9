"""The `convcore` command: info and a quick demo run (the main job must not rot)."""

import json

from convcore import cli


def test_info(capsys):
    assert cli.main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert {"version", "backend", "compiled", "openmp", "threads", "numpy", "blas"} <= set(info)


def test_demo_quick(tmp_path, capsys):
    assert cli.main(["demo", "--quick", "--no-progress", "--out", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    for marker in ("held-out accuracy", "reconstruction MSE", "frozen encoder", "eps=0.1", "done in"):
        assert marker in out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "pip install convcore[plot]" in out
    else:
        assert len(list((tmp_path / "demo").glob("*.png"))) == 4
