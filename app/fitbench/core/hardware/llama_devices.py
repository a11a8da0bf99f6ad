"""llama.cpp's own view of the machine: version, GPU offload, system info, ggml backend devices.

The devices come from the shared library's ggml_backend_dev_* functions, so Metal, Vulkan, ROCm
or CUDA builds are described even where NVML is absent. The probe runs in a child process by
default: enumerating a CUDA device creates a CUDA context (hundreds of MiB of VRAM held for the
life of the process) and a broken driver can crash the library; neither may happen to the GUI.

`python -m fitbench.core.hardware.llama_devices` prints the in-process probe as JSON (the child).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fitbench.core.hardware.llama_backends import load_backends

# enum ggml_backend_dev_type (ggml-backend.h). IGPU was inserted before ACCEL in 2025, so in
# older libraries 2 means ACCEL: the backend's name tells the two apart (_device_type).
DEVICE_TYPES = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}
ACCEL_BACKENDS = ("BLAS", "AMX", "KLEIDIAI", "ZDNN")
PROBE_TIMEOUT_S = 60.0
NO_OFFLOAD_NOTE = "This llama-cpp-python build has no GPU offload"


@dataclass
class LlamaDevice:
    name: str
    description: str
    type: str  # cpu, gpu, igpu (integrated, host memory), accel (BLAS, AMX) or unknown
    backend: str | None  # the ggml backend registry: CPU, CUDA, Metal, Vulkan, ...
    memory_free_bytes: int | None
    memory_total_bytes: int | None


@dataclass
class LlamaCppInfo:
    available: bool
    version: str | None = None
    gpu_offload: bool | None = None
    system_info: str | None = None
    library_path: str | None = None
    devices: list[LlamaDevice] = field(default_factory=list)
    # backends loaded at run time (GGML_BACKEND_DL builds): e.g. libggml-cpu-haswell.so, the CPU
    # variant ggml picked for this processor, and libggml-cuda.so where a driver loaded it
    backend_modules: list[str] = field(default_factory=list)
    probed_in: str = "not probed"  # "child process" or "this process"
    error: str | None = None


def _bind(lib: Any, name: str, restype: Any, argtypes: list[Any]) -> Any:
    fn = getattr(lib, name)  # AttributeError when the library does not export it
    fn.restype = restype
    fn.argtypes = argtypes
    return fn


def _device_type(code: int, backend: str | None) -> str:
    if code == 2 and backend and backend.upper().startswith(ACCEL_BACKENDS):
        return "accel"
    return DEVICE_TYPES.get(code, "unknown")


def _devices(lib: Any, notes: list[str]) -> list[LlamaDevice]:
    try:
        count = _bind(lib, "ggml_backend_dev_count", ctypes.c_size_t, [])
        get = _bind(lib, "ggml_backend_dev_get", ctypes.c_void_p, [ctypes.c_size_t])
        name = _bind(lib, "ggml_backend_dev_name", ctypes.c_char_p, [ctypes.c_void_p])
        desc = _bind(lib, "ggml_backend_dev_description", ctypes.c_char_p, [ctypes.c_void_p])
        dev_type = _bind(lib, "ggml_backend_dev_type", ctypes.c_int, [ctypes.c_void_p])
        size_p = ctypes.POINTER(ctypes.c_size_t)
        memory = _bind(lib, "ggml_backend_dev_memory", None, [ctypes.c_void_p, size_p, size_p])
    except AttributeError as exc:
        notes.append(
            f"This llama.cpp library has no ggml device API ({exc}); its devices are not listed. "
            "Upgrade llama-cpp-python to 0.3.21 or newer."
        )
        return []
    try:
        reg_of = _bind(lib, "ggml_backend_dev_backend_reg", ctypes.c_void_p, [ctypes.c_void_p])
        reg_name = _bind(lib, "ggml_backend_reg_name", ctypes.c_char_p, [ctypes.c_void_p])
    except AttributeError:
        reg_of = reg_name = None
    if count() == 0:
        # builds with dynamically loaded backends (GGML_BACKEND_DL) register nothing until asked
        with contextlib.suppress(AttributeError):
            _bind(lib, "ggml_backend_load_all", None, [])()
    devices = []
    for index in range(int(count())):
        dev = get(index)
        if not dev:
            notes.append(f"llama.cpp device {index} vanished while being listed.")
            continue
        free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
        memory(dev, ctypes.byref(free), ctypes.byref(total))
        backend = None
        if reg_of is not None and reg_name is not None:
            reg = reg_of(dev)
            raw = reg_name(reg) if reg else None
            backend = raw.decode("utf-8", "replace") if raw else None
        devices.append(
            LlamaDevice(
                name=(name(dev) or b"").decode("utf-8", "replace"),
                description=(desc(dev) or b"").decode("utf-8", "replace"),
                type=_device_type(int(dev_type(dev)), backend),
                backend=backend,
                memory_free_bytes=int(free.value) if total.value else None,
                memory_total_bytes=int(total.value) if total.value else None,
            )
        )
    return devices


def probe_in_process() -> tuple[LlamaCppInfo, list[str]]:
    """Load llama-cpp-python here and ask it. Prefer probe(), which isolates the library."""
    notes: list[str] = []
    try:
        import llama_cpp
        from llama_cpp import llama_cpp as bindings
    except Exception as exc:  # ImportError, or OSError when the shared library cannot load
        notes.append(
            f"llama-cpp-python could not be loaded ({type(exc).__name__}: {exc}); nothing can "
            "be benchmarked. Reinstall it: pip install --force-reinstall llama-cpp-python"
        )
        return LlamaCppInfo(available=False, error=str(exc), probed_in="this process"), notes
    lib = getattr(bindings, "_lib", None)
    info = LlamaCppInfo(
        available=True,
        version=str(getattr(llama_cpp, "__version__", None) or "unknown"),
        library_path=str(getattr(lib, "_name", "")) or None,
        probed_in="this process",
    )
    if lib is not None:
        try:  # before anything asks llama.cpp: its own search misses llama_cpp/lib
            info.backend_modules = load_backends(lib)
        except Exception as exc:
            notes.append(f"llama.cpp's backends could not be loaded ({exc}).")
    try:
        info.gpu_offload = bool(bindings.llama_supports_gpu_offload())
    except Exception as exc:
        notes.append(f"llama.cpp could not say whether it supports GPU offload ({exc}).")
    try:
        raw = bindings.llama_print_system_info()
        info.system_info = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        info.system_info = info.system_info.strip(" |\n")
    except Exception as exc:
        notes.append(f"llama.cpp's system info could not be read ({exc}).")
    if lib is None:
        notes.append("llama-cpp-python exposes no shared library handle; devices are not listed.")
    else:
        info.devices = _devices(lib, notes)
    if info.gpu_offload is False and getattr(sys, "frozen", False):
        notes.append(
            NO_OFFLOAD_NOTE + ": every benchmark runs on the CPU. This FitBench bundle's "
            "llama.cpp found no GPU it can use (the CUDA bundle offloads to an NVIDIA GPU "
            "wherever the NVIDIA driver is installed; docs/packaging.md)."
        )
    elif info.gpu_offload is False:
        notes.append(
            NO_OFFLOAD_NOTE + ": every benchmark runs on the CPU. "
            'For NVIDIA GPUs install a CUDA build: CMAKE_ARGS="-DGGML_CUDA=on" pip install '
            "--force-reinstall --no-cache-dir llama-cpp-python"
        )
    return info, notes


def _from_dict(data: dict[str, Any]) -> LlamaCppInfo:
    devices = [LlamaDevice(**d) for d in data.get("devices") or []]
    known = {k: v for k, v in data.items() if k in LlamaCppInfo.__dataclass_fields__}
    known["devices"] = devices
    return LlamaCppInfo(**known)


def probe(timeout_s: float = PROBE_TIMEOUT_S) -> tuple[LlamaCppInfo, list[str]]:
    """probe_in_process() in a child Python; a crash or hang there is a note, not our crash."""
    package_root = str(Path(__file__).resolve().parents[2])  # the directory holding fitbench/
    # -P: the working directory must not shadow modules; the package root goes last on the
    # path so an installed fitbench wins and nothing outranks the standard library
    code = (
        f"import runpy, sys; sys.path.append({package_root!r}); "
        "runpy.run_module('fitbench.core.hardware.llama_devices', run_name='__main__')"
    )
    command = [sys.executable, "-P", "-c", code]
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired:
        note = (
            f"llama.cpp's device probe did not finish within {timeout_s:.0f} s (a hung GPU "
            "driver?); llama.cpp's devices are unknown."
        )
        return LlamaCppInfo(available=False, error="timeout", probed_in="child process"), [note]
    except OSError as exc:
        note = f"llama.cpp's device probe could not start ({exc})."
        return LlamaCppInfo(available=False, error=str(exc), probed_in="child process"), [note]
    last_line = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    if proc.returncode != 0 or not last_line:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        how = (
            f"exit code {proc.returncode}" if proc.returncode >= 0 else f"signal {-proc.returncode}"
        )
        note = (
            f"llama.cpp's device probe failed ({how}: {tail}); llama.cpp's devices are unknown. "
            "Check that llama-cpp-python imports: python -c 'import llama_cpp'"
        )
        return LlamaCppInfo(available=False, error=tail, probed_in="child process"), [note]
    try:
        payload = json.loads(last_line[0])
        info = _from_dict(payload["info"])
    except (ValueError, KeyError, TypeError) as exc:
        note = f"llama.cpp's device probe answered something unreadable ({exc})."
        return LlamaCppInfo(available=False, error=str(exc), probed_in="child process"), [note]
    info.probed_in = "child process"
    return info, [str(n) for n in payload["notes"]]


def _main() -> int:
    info, notes = probe_in_process()
    # llama.cpp may print to stdout itself; the JSON is always the last line
    sys.stdout.write("\n" + json.dumps({"info": asdict(info), "notes": notes}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
