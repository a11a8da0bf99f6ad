"""The release path's scripts (issue 23), without building: the cmake they would run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD_RELEASE = REPO / "packaging" / "build-release"


def _print_cmake(tmp_path: Path, *args: str) -> str:
    env = dict(os.environ, PYTHON=sys.executable, WORK=str(tmp_path / "release"))
    proc = subprocess.run(
        [str(BUILD_RELEASE), "--print-cmake", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_cpu_build_loads_every_backend_at_run_time(tmp_path: Path) -> None:
    out = _print_cmake(tmp_path)
    for flag in (
        "-DGGML_BACKEND_DL=ON",
        "-DGGML_CPU_ALL_VARIANTS=ON",
        "-DGGML_NATIVE=OFF",
        "-DBUILD_SHARED_LIBS=ON",
    ):
        assert flag in out
    assert "GGML_CUDA" not in out
    assert "--target llama mtmd" in out
    assert not (tmp_path / "release" / "sdist").exists()  # printing fetches nothing


def test_cuda_build_names_the_architectures(tmp_path: Path) -> None:
    out = _print_cmake(tmp_path, "--cuda", "--cuda-archs", "86-real;90-real")
    assert "-DGGML_CUDA=ON" in out
    assert "-DCMAKE_CUDA_ARCHITECTURES=86-real\\;90-real" in out
    assert "-DCMAKE_CUDA_COMPILER=" in out


def test_scripts_parse() -> None:
    for script in ("build-release", "gpu-proof"):
        subprocess.run(["bash", "-n", str(REPO / "packaging" / script)], check=True)
