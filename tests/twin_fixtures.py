"""Fixtures that give tests tiny shape-faithful twins (owned by the twin module's tests).

`tiny_dense_twin` / `tiny_moe_twin`: paths to Q4_K_M twins of fitbench.core.twin.writer.tiny_arch()
(llama architecture, 4 blocks, n_embd 256, vocab 2048; the MoE one has 4 experts, 2 used).
Each is written once per test session (~1-2 MB, well under a second) and loads in llama.cpp.
Treat them as read-only: copy one first if a test must modify or delete it.

Load them with `load_llama(path)`: on CPUs with AMX (this VM) llama.cpp's AMX weight buffers
segfault in batched matmuls of any quantized model, so it turns extra buffer types off.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from fitbench.core.twin.writer import manifest_for, tiny_arch, write_twin

__all__ = ["load_llama", "make_tiny_twin", "tiny_dense_twin", "tiny_moe_twin"]


def make_tiny_twin(
    directory: Path, *, moe: bool = False, quant: str = "Q4_K_M", layers: int | None = None
) -> Path:
    """Write a tiny twin into `directory` and return its path (for tests that need variants)."""
    kind = "moe" if moe else "dense"
    depth = f"-L{layers}" if layers else ""
    manifest = manifest_for(tiny_arch(moe=moe), quant, layers)
    # named as cached twins are (write_twin writes exactly the path it is given)
    return write_twin(manifest, directory / f"tiny-{kind}-{quant}{depth}.fitbench-twin.gguf").path


@pytest.fixture(scope="session")
def tiny_dense_twin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_twin(tmp_path_factory.mktemp("tiny-dense-twin"), moe=False)


@pytest.fixture(scope="session")
def tiny_moe_twin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_twin(tmp_path_factory.mktemp("tiny-moe-twin"), moe=True)


@contextmanager
def _without_extra_buffer_types() -> Iterator[None]:
    """llama.cpp's AMX weight buffers segfault on this kind of VM (Sapphire Rapids, AMX_INT8=1)
    in the first batched matmul (ggml-org/llama.cpp#20824); plain CPU buffers work everywhere.
    llama_cpp.Llama does not expose use_extra_bufts, so its default params are patched while
    the model loads."""
    import llama_cpp.llama_cpp as low_level

    original = low_level.llama_model_default_params

    def params() -> Any:
        p = original()
        p.use_extra_bufts = False
        return p

    low_level.llama_model_default_params = params
    try:
        yield
    finally:
        low_level.llama_model_default_params = original


def load_llama(path: Path, **kwargs: Any) -> Any:
    """llama_cpp.Llama on `path` (n_ctx 256, quiet, 2 threads unless given), safe on AMX CPUs."""
    import llama_cpp

    options: dict[str, Any] = {"n_ctx": 256, "verbose": False, "n_threads": 2}
    options.update(kwargs)
    with _without_extra_buffer_types():
        return llama_cpp.Llama(model_path=str(path), **options)
