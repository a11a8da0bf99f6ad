"""Backends loaded at run time (GGML_BACKEND_DL builds) and the GPU-build offer (issue 23)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fitbench.core.hardware import detect as hw_detect
from fitbench.core.hardware import llama_backends
from fitbench.core.hardware.llama_devices import NO_OFFLOAD_NOTE, LlamaCppInfo
from fitbench.core.hardware.nvml import GpuInfo
from test_hardware import gpu

GIB = 2**30
GENERIC = NO_OFFLOAD_NOTE + ": every benchmark runs on the CPU. For NVIDIA GPUs ..."


def _gpu(name: str = "NVIDIA GeForce RTX 4090") -> GpuInfo:
    return gpu(name, 24 * GIB, 23 * GIB)


def _notes(gpus: list[GpuInfo], offload: bool | None, available: bool = True) -> list[str]:
    llama = LlamaCppInfo(available=available, version="0.3.36", gpu_offload=offload)
    notes = [GENERIC] if offload is False else []
    hw_detect._note_cross_checks(gpus, llama, notes)
    return notes


def _offer(notes: list[str]) -> list[str]:
    return [n for n in notes if "gives it a CUDA build" in n or "CUDA bundle" in n]


def test_note_with_the_command_when_a_driver_is_here_and_llama_cannot_offload() -> None:
    notes = _notes([_gpu()], offload=False)
    (offer,) = _offer(notes)
    assert "NVIDIA GeForce RTX 4090" in offer
    command = offer.split("The command that gives it a CUDA build: ")[1]
    assert command.startswith('CMAKE_ARGS="-DGGML_CUDA=on" ')
    assert "-m pip install --force-reinstall --no-cache-dir" in command
    assert "--no-binary llama-cpp-python llama-cpp-python==0.3.36" in command
    assert sys.executable in command  # this very interpreter's pip, not some other
    assert GENERIC not in notes  # the exact command replaces the general advice


@pytest.mark.parametrize(
    ("gpus", "offload", "available"),
    [
        ([], False, True),  # no NVIDIA driver: the general note only
        ([_gpu()], True, True),  # a CUDA build already
        ([_gpu()], None, True),  # unknown
        ([_gpu()], None, False),  # llama-cpp-python does not load: its own note says so
    ],
)
def test_no_offer_otherwise(gpus: list[GpuInfo], offload: bool | None, available: bool) -> None:
    assert _offer(_notes(gpus, offload, available)) == []


def test_note_names_the_compiler_or_the_wheel_route() -> None:
    with_nvcc = llama_backends.gpu_build_note("0.3.36", ["H100"], nvcc="/usr/local/cuda/bin/nvcc")
    assert "the CUDA toolkit at /usr/local/cuda/bin/nvcc" in with_nvcc
    without = llama_backends.gpu_build_note("0.3.36", ["H100"], nvcc="")
    assert "packaging/build-release --cuda-toolkit" in without
    assert all(w in without for w in llama_backends.CUDA_WHEELS)


def test_frozen_bundle_points_to_the_cuda_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    note = llama_backends.gpu_build_note("0.3.36", ["H100"])
    assert "CUDA bundle" in note and "pip" not in note


class _FakeLib:
    """ggml's registry as a GGML_BACKEND_DL library has it: empty until loaded from a folder."""

    def __init__(self, registered: int) -> None:
        self.registered = registered
        self.loaded_from: list[bytes] = []

        def count() -> int:
            return self.registered

        def from_path(path: bytes) -> None:
            self.loaded_from.append(path)
            self.registered = 2

        def load_all() -> None:  # pragma: no cover - reached only when from_path found nothing
            self.registered = 1

        self.ggml_backend_reg_count: Any = count
        self.ggml_backend_load_all_from_path: Any = from_path
        self.ggml_backend_load_all: Any = load_all


def test_load_backends_loads_a_dl_build_from_the_library_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(llama_backends, "_loaded", None)
    monkeypatch.setenv("LLAMA_CPP_LIB_PATH", str(tmp_path))
    lib = _FakeLib(registered=0)
    llama_backends.load_backends(lib)
    assert lib.loaded_from == [str(tmp_path).encode()]
    llama_backends.load_backends(lib)  # once per process
    assert len(lib.loaded_from) == 1


def test_load_backends_leaves_a_linked_build_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llama_backends, "_loaded", None)
    lib = _FakeLib(registered=1)
    assert llama_backends.load_backends(lib) == []
    assert lib.loaded_from == []


def _shared_library(path: Path, needs: str | None = None) -> None:
    """A real shared library at path; with needs, one that NEEDs a library gone at run time."""
    src = path.parent / "m.c"
    src.write_text("int ggml_marker(void) { return 1; }\n")
    cmd = ["gcc", "-shared", "-fPIC", "-o", str(path), str(src)]
    if needs:
        dep = path.parent / f"lib{needs}.so"
        dep_src = path.parent / "d.c"
        dep_src.write_text("int dep(void) { return 2; }\n")
        subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(dep), str(dep_src)], check=True)
        cmd += ["-Wl,--no-as-needed", f"-L{path.parent}", f"-l{needs}"]
    subprocess.run(cmd, check=True)
    if needs:
        (path.parent / f"lib{needs}.so").unlink()  # gone at run time, as a hidden libcuda is


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_frozen_bundle_with_a_cuda_module_that_cannot_load_says_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # the H100 with its driver's libcuda hidden: NVML saw the GPU, the bundle's CUDA module was
    # there, and the old note told the person to install the CUDA bundle they already had
    _shared_library(tmp_path / "libggml-cuda.so", needs="fakecuda_fitbench")
    monkeypatch.setenv("LLAMA_CPP_LIB_PATH", str(tmp_path))
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    note = llama_backends.gpu_build_note("0.3.36", ["H100"])
    assert "carries llama.cpp's CUDA backend, but ggml could not use it" in note
    assert "libfakecuda_fitbench.so" in note  # the loader's own reason
    assert "Install the CUDA bundle" not in note


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_bundled_cuda_problem_none_without_the_module_and_a_reason_when_it_loads(
    tmp_path: Path,
) -> None:
    assert llama_backends.bundled_cuda_problem(tmp_path) is None
    _shared_library(tmp_path / "libggml-cuda.so")
    assert "no usable GPU" in (llama_backends.bundled_cuda_problem(tmp_path) or "")
