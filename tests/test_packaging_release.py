"""The release path's scripts (issue 23), without building: the cmake they would run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
    # the lent H100's NCCL made libggml-cuda.so NEED libnccl.so.2, which desktops lack
    assert "-DGGML_CUDA_NCCL=OFF" in out
    # nvcc links with its host compiler, which must be the checked one, not PATH's first g++
    assert "-DCMAKE_CUDA_HOST_COMPILER=" in out


def test_scripts_parse() -> None:
    for script in ("build-release", "gpu-proof", "gpu-proof-carry"):
        subprocess.run(["bash", "-n", str(REPO / "packaging" / script)], check=True)


def _check_compiler(tmp_path: Path, cxx: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHON=sys.executable, WORK=str(tmp_path / "release"), CXX=cxx)
    env.pop("CUDAHOSTCXX", None)
    env.update(extra)
    return subprocess.run(
        [str(BUILD_RELEASE), "--check-compiler"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_compiler_check_accepts_a_compiler_that_links_libstdcxx_as_a_shared_library(
    tmp_path: Path,
) -> None:
    proc = _check_compiler(tmp_path, "g++")
    assert proc.returncode == 0, proc.stderr
    assert "links libstdc++ as a shared library" in proc.stdout


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_compiler_check_refuses_one_that_embeds_libstdcxx(tmp_path: Path) -> None:
    # the lent H100's /opt/gcc/bin/g++ did this (libstdc++.a only): llama.cpp built with it
    # crashed at its first model load; the check must stop the build before it starts
    wrapper = tmp_path / "g++-static"
    wrapper.write_text('#!/bin/sh\nexec g++ -static-libstdc++ "$@"\n')
    wrapper.chmod(0o755)
    proc = _check_compiler(tmp_path, str(wrapper))
    assert proc.returncode == 1
    assert "links libstdc++ statically" in proc.stderr
    assert "CXX=/usr/bin/g++" in proc.stderr
    # the image also named it as nvcc's host compiler, which links libggml-cuda.so
    proc = _check_compiler(tmp_path, "g++", CUDAHOSTCXX=str(wrapper))
    assert proc.returncode == 1
    assert f"'{wrapper}' links libstdc++ statically" in proc.stderr
