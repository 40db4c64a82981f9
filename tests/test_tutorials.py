"""The tutorials under docs/tutorials run to completion (they are executed examples). Marked
``tutorial``: deselected by default (they train models for ~2 minutes in all); CI runs them, and
the documentation build executes them again."""

import pathlib
import subprocess
import sys

import pytest

TUTORIALS = sorted((pathlib.Path(__file__).parent.parent / "docs" / "tutorials").glob("*.py"))


@pytest.mark.tutorial
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path):
    source = path.read_text()
    for module in ("torch", "onnx"):
        if f"import {module}" in source:
            pytest.importorskip(module)
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
