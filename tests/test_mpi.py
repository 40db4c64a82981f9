"""convcore.mpi.DataParallel under a real ``mpiexec -n 2`` (skipped without mpi4py/mpiexec)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import convcore

pytest.importorskip("mpi4py")


@pytest.mark.parametrize("ranks", [1, 2])
def test_data_parallel_matches_single_process(ranks):
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("mpiexec not found (pip install mpich)")
    script = Path(__file__).with_name("mpi_check.py")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(Path(convcore.__file__).parents[1]), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([mpiexec, "-n", str(ranks), sys.executable, str(script)], capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("OK") == ranks
