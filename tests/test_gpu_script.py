"""benchmarks/gpu.sh refuses to run without a GPU, at once and saying what to do (no torch import needed)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.sh"


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has an NVIDIA driver")
def test_gpu_script_fails_fast_without_a_gpu(tmp_path):
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "OUT": str(tmp_path / "gpu.md")})
    assert out.returncode == 2 and "no GPU here" in out.stderr and "--cpu-dry-run" in out.stderr
    assert not (tmp_path / "gpu.md").exists()


def test_gpu_script_rejects_unknown_arguments():
    out = subprocess.run(["bash", str(SCRIPT), "--gpus=8"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "unknown argument '--gpus=8'" in out.stderr
