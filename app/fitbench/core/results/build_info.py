"""The llama.cpp build behind llama-cpp-python, as llama-bench names it in its records.

llama-bench writes `llama_commit()` and `llama_build_number()` from llama.cpp's common library,
which llama-cpp-python does not ship. Its libggml-base exports `ggml_commit()`, set by the same
CMake step from the same `git rev-parse --short HEAD` (ggml adds "-dirty" for a modified tree,
which llama-bench's value never has). The build number (`git rev-list --count HEAD`) is compiled
into no shared library, so it stays 0, as llama-bench itself writes for a build without git.
Read with ctypes from the library files, without importing llama_cpp (the runner and the GUI
call this too); a library without the symbol gives "unknown", as llama-bench writes.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
from pathlib import Path
from typing import TypedDict


class LlamaBuild(TypedDict):
    build_commit: str
    build_number: int


def _lib_dir() -> Path | None:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


@functools.cache
def llama_build() -> LlamaBuild:
    commit = ""
    folder = _lib_dir()
    libs = sorted(folder.glob("*ggml-base.*")) if folder is not None and folder.is_dir() else []
    for path in libs:
        try:
            fn = ctypes.CDLL(str(path)).ggml_commit
        except (OSError, AttributeError):
            continue
        fn.restype = ctypes.c_char_p
        fn.argtypes = []
        raw = fn()
        commit = (raw or b"").decode("utf-8", "replace").removesuffix("-dirty")
        break
    # "unknown": built outside a git checkout, the same word llama-bench writes then
    return {"build_commit": commit or "unknown", "build_number": 0}
