"""llama.cpp's backends loaded at run time, and the command that gives this machine a GPU build.

A llama.cpp built with GGML_BACKEND_DL (the release bundle, packaging/build-release) links no
backend: the CPU variants (libggml-cpu-haswell.so, ...) and the CUDA backend (libggml-cuda.so)
are modules that ggml loads on demand. ggml's own search (ggml_backend_load_all) looks in the
executable's directory and the working directory only; llama-cpp-python 0.3.36 calls it from
llama_backend_init() and llama_supports_gpu_offload(), which finds nothing for a venv's python or
a frozen app, whose libraries sit in llama_cpp/lib. load_backends() loads them from there first
(ggml then picks the best CPU variant for this processor, and CUDA only where a driver loads).
A wheel that links its backends (the usual pip build) has them registered already: a no-op.

`python -m fitbench.core.hardware.llama_backends --offer` prints the GPU-build command when this
machine has an NVIDIA driver and the installed llama.cpp cannot offload (`make run` uses it).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

_loaded: list[str] | None = None

# NVIDIA's wheels that together are a CUDA 13 toolkit: compiler (nvcc, its headers, libnvvm),
# runtime, cuBLAS and CCCL. (CUDA 12's nvidia-cuda-nvcc-cu12 holds ptxas only, no nvcc.)
CUDA_WHEELS = (
    "nvidia-cuda-nvcc",
    "nvidia-cuda-crt",
    "nvidia-nvvm",
    "nvidia-cuda-runtime",
    "nvidia-cublas",
    "nvidia-cuda-cccl",
)


def lib_dir() -> Path | None:
    """Where llama-cpp-python opens libllama from (LLAMA_CPP_LIB_PATH or llama_cpp/lib); None
    where it is not installed. Found without importing llama_cpp, which would load llama.cpp:
    detect's parent process must not (its probe runs in a child)."""
    override = os.environ.get("LLAMA_CPP_LIB_PATH")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).resolve().parent / "lib"


def _mapped_backends() -> list[str]:
    """File names of the ggml backend modules mapped into this process (Linux: /proc/self/maps)."""
    try:
        maps = Path("/proc/self/maps").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    names = {Path(line.split()[-1]).name for line in maps.splitlines() if "/libggml-" in line}
    return sorted(n for n in names if not n.startswith(("libggml-base", "libggml.so")))


def load_backends(lib: Any = None) -> list[str]:
    """Register llama.cpp's dynamically loaded backends once; the modules loaded, by file name.

    lib: llama-cpp-python's library handle (llama_cpp.llama_cpp._lib) or None to import it.
    Raises nothing a caller must handle beyond llama_cpp's own import errors.
    """
    global _loaded
    if _loaded is not None:
        return _loaded
    if lib is None:
        from llama_cpp import llama_cpp as bindings

        lib = bindings._lib
    try:
        count = lib.ggml_backend_reg_count
        count.restype, count.argtypes = ctypes.c_size_t, []
    except AttributeError:
        _loaded = []
        return _loaded  # a library older than ggml's backend registry
    if int(count()) > 0:  # backends linked into the library (the usual wheel), or loaded
        _loaded = []
        return _loaded
    # GGML_BACKEND_DL: nothing is registered until loaded; llama_cpp/lib first
    where = lib_dir()
    with contextlib.suppress(AttributeError):
        from_path = lib.ggml_backend_load_all_from_path
        from_path.restype, from_path.argtypes = None, [ctypes.c_char_p]
        if where is not None and where.is_dir():
            from_path(os.fsencode(where))
    if int(count()) == 0:  # not there: ggml's default places (executable dir, cwd)
        with contextlib.suppress(AttributeError):
            load_all = lib.ggml_backend_load_all
            load_all.restype, load_all.argtypes = None, []
            load_all()
    _loaded = _mapped_backends()
    return _loaded


def frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def gpu_build_command(version: str | None, python: str | None = None) -> str:
    """The pip command that rebuilds this llama-cpp-python version with CUDA, for this Python."""
    py = shlex.quote(python or sys.executable)
    pin = f"llama-cpp-python=={version}" if version and version != "unknown" else "llama-cpp-python"
    return (
        f'CMAKE_ARGS="-DGGML_CUDA=on" {py} -m pip install --force-reinstall --no-cache-dir '
        f"--no-deps --no-binary llama-cpp-python {pin}"
    )


def bundled_cuda_problem(where: Path | None = None) -> str | None:
    """Why a libggml-cuda.so beside libllama gives no GPU; None where there is no such module.

    ggml skips a backend module that fails to load without saying why, so it is opened here
    once more to get the loader's reason (on the lent H100 with the driver's libcuda hidden:
    "libcuda.so.1: cannot open shared object file"; a container started without the `compute`
    driver capability looks the same while nvidia-smi works).
    """
    if where is None:
        where = lib_dir()
    module = where / "libggml-cuda.so" if where is not None else None
    if module is None or not module.is_file():
        return None
    try:
        ctypes.CDLL(str(module), mode=os.RTLD_LOCAL)
    except OSError as exc:
        return str(exc)
    return "it loads, but its CUDA runtime found no usable GPU (a driver older than the runtime?)"


def gpu_build_note(version: str | None, gpu_names: list[str], *, nvcc: str | None = None) -> str:
    """What to do when an NVIDIA driver is present but llama.cpp cannot offload."""
    gpus = ", ".join(gpu_names) or "an NVIDIA GPU"
    if frozen():
        problem = bundled_cuda_problem()
        if problem is not None:
            return (
                f"This machine has {gpus}, and this FitBench bundle carries llama.cpp's CUDA "
                f"backend, but ggml could not use it ({problem}), so every benchmark runs on "
                "the CPU. "
                "It needs the NVIDIA driver's own CUDA library (libcuda.so.1, driver >= 580 for "
                "CUDA 13): reinstall the driver, or in a container start it with the GPU's "
                "compute capability (docker --gpus all, "
                "NVIDIA_DRIVER_CAPABILITIES=compute,utility)."
            )
        return (
            f"This machine has {gpus} with an NVIDIA driver, but this FitBench bundle's llama.cpp "
            "has no CUDA backend, so every benchmark runs on the CPU. Install the CUDA bundle "
            "(fitbench-*-linux-x86_64-cuda<N>.tar.zst; docs/packaging.md): it carries the CUDA "
            "runtime and loads its GPU backend wherever a driver is present."
        )
    compiler = nvcc if nvcc is not None else _find_nvcc()
    needs = (
        f"The build compiles llama.cpp with the CUDA toolkit at {compiler} (10-60 min; set "
        "CUDACXX to choose another nvcc)."
        if compiler
        else "The build needs a CUDA toolkit (nvcc): your distribution's cuda-toolkit with its "
        "bin/ on PATH (or CUDACXX=/usr/local/cuda/bin/nvcc), or, without a system toolkit and "
        "with an NVIDIA driver >= 580, CUDA 13 from NVIDIA's wheels: `packaging/build-release "
        "--cuda-toolkit` installs " + " ".join(CUDA_WHEELS) + " into a build folder and "
        "prints the CUDACXX and CMAKE_ARGS to add (docs/packaging.md)."
    )
    ver = f" {version}" if version else ""
    return (
        f"This machine has {gpus} with an NVIDIA driver, but the installed llama-cpp-python{ver} "
        f"has no GPU offload, so every benchmark runs on the CPU. {needs} The command that gives "
        f"it a CUDA build: {gpu_build_command(version)}"
    )


def _find_nvcc() -> str | None:
    cudacxx = os.environ.get("CUDACXX")
    if cudacxx and Path(cudacxx).is_file():
        return cudacxx
    found = shutil.which("nvcc")
    if found:
        return found
    default = Path("/usr/local/cuda/bin/nvcc")
    return str(default) if default.is_file() else None


def _offer() -> int:
    """Print the GPU-build offer when an NVIDIA driver is here and llama.cpp cannot offload."""
    if shutil.which("nvidia-smi") is None:
        return 0
    try:
        import llama_cpp
        from llama_cpp import llama_cpp as bindings

        load_backends(bindings._lib)
        offload = bool(bindings.llama_supports_gpu_offload())
    except Exception as exc:  # the app reports a broken llama_cpp itself
        print(f"llama-cpp-python did not load ({exc}); see fitbench detect.", file=sys.stderr)
        return 0
    if offload:
        return 0
    from fitbench.core.hardware.nvml import query_nvml

    names = [g.name for g in query_nvml().gpus]
    print("GPU offer: " + gpu_build_note(str(llama_cpp.__version__), names))
    print("FitBench does not rebuild it for you; run the command above, then `make run` again.")
    return 0


if __name__ == "__main__":
    raise SystemExit(_offer() if "--offer" in sys.argv[1:] else 2)
