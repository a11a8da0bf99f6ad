"""The serving advice's predicted curve against real sweeps (scripts/gpu-check serve, 2026-12-06;
docs/gpu/2026-12-06-h200/), 512 prompt tokens, 128 output tokens, users 1 to 32: both full Q4_K_M
twins on an H200 with the users starting together, and the Mixtral twin on an H100 with the
users' first requests spread over the previous level's e2e time (fitbench load's default since).

Given the bench records and one user's load level (the server's own prompt time), the predicted
output tokens/s at 2..32 users must stay within 10% of what was measured: the earlier model (one
prompt per request cycle) predicted 3-5x the measured throughput at 32 users.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data" / "serving-h200"
sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))

import serving_prediction as sp  # noqa: E402

from fitbench.core.advise.serving import Workload  # noqa: E402

MODELS = ("mixtral-8x7b-instruct", "llama-2-70b-chat")


RAMPED = Path(__file__).parent / "data" / "serving-h100-ramp"


def _rows(model_id: str, calibrate: bool, data: Path = DATA) -> list[dict[str, Any]]:
    load = sp._lines(data / f"load-{model_id}.jsonl")
    hardware = sp.json.loads((data / "detect.json").read_text(encoding="utf-8"))
    return sp.compare(
        sp._lines(data / f"bench-batch-{model_id}.jsonl"),
        load,
        hardware,
        Workload(prompt_tokens=512, max_tokens=128, ctx=1024),
        calibrate=calibrate,
    )


@pytest.mark.parametrize("model_id", MODELS)
def test_predicted_served_throughput_within_10_percent_of_the_h200_sweep(model_id: str) -> None:
    rows = _rows(model_id, calibrate=True)
    assert [r["users"] for r in rows] == [2, 4, 8, 16, 32]
    for r in rows:
        measured = r["measured"]["output_tokens_per_s"]
        predicted = r["predicted"]["output_tokens_per_s"]
        assert predicted == pytest.approx(measured, rel=0.10), r
        # per-token time under load: the batch step of that many sequences
        itl_m, itl_p = r["measured"]["itl_p50_ms"], r["predicted"]["itl_p50_ms"]
        assert itl_p == pytest.approx(itl_m, rel=0.15), r


@pytest.mark.parametrize("model_id", MODELS)
def test_without_a_load_measurement_the_prediction_runs_high_not_low(model_id: str) -> None:
    """From bench records alone the server's prompt overhead (tokenizer, HTTP) is missing: the
    prediction is optimistic by a bounded amount (the caveat says so), never pessimistic."""
    for r in _rows(model_id, calibrate=False):
        ratio = r["predicted"]["output_tokens_per_s"] / r["measured"]["output_tokens_per_s"]
        assert 1.0 <= ratio <= 1.5, r


def test_spread_users_ttft_and_throughput_match_the_prediction_on_the_h100() -> None:
    """With the users spread in time (no lockstep bursts) the predicted TTFT p50 holds too: the
    binomial count of prompts ahead of one's own is what a spread-out arrival meets."""
    rows = _rows("mixtral-8x7b-instruct", calibrate=True, data=RAMPED)
    assert [r["users"] for r in rows] == [2, 4, 8, 16, 32]
    for r in rows:
        m, p = r["measured"], r["predicted"]
        assert p["output_tokens_per_s"] == pytest.approx(m["output_tokens_per_s"], rel=0.10), r
        assert p["ttft_p50_ms"] == pytest.approx(m["ttft_p50_ms"], rel=0.30), r
        assert p["itl_p50_ms"] == pytest.approx(m["itl_p50_ms"], rel=0.15), r


def test_served_numbers_measured_on_a_twin_say_how_far_the_real_file_may_be() -> None:
    """Mixtral served to many users on a twin: its routing decides every step, so the advice
    carries the twin's routing caveat; predicted-only advice does not."""
    from fitbench.core.advise.serving import recommend_serving
    from fitbench.core.model import catalog

    model_id = "mixtral-8x7b-instruct"
    records = sp._lines(DATA / f"bench-batch-{model_id}.jsonl")
    hardware = sp.json.loads((DATA / "detect.json").read_text(encoding="utf-8"))
    load = sp._lines(DATA / f"load-{model_id}.jsonl")
    kwargs: dict[str, Any] = {
        "hardware": hardware,
        "catalog": catalog.load(),
        "workload": Workload(prompt_tokens=512, max_tokens=128, ctx=1024),
        "levels": (1, 2, 4, 8, 16, 32),
        "itl_p95_max_ms": 1e9,
        "ttft_p99_max_ms": 1e9,
    }
    measured = recommend_serving(records, load, **kwargs)
    assert measured.choice is not None and measured.choice.measured
    twin_lines = [c for c in measured.caveats if c.startswith("Served numbers measured on a twin")]
    assert len(twin_lines) == 1 and "rout" in twin_lines[0], measured.caveats
    # the served figures themselves are widened by that band, where they were measured on a twin
    choice = measured.to_dict()["choice"]
    twin_points = [p for p in choice["curve"] if p["basis"] == "measured-twin"]
    assert twin_points
    for point in twin_points:
        low, high = point["output_tokens_per_s_real_range"]
        assert low < point["output_tokens_per_s"] < high
        assert point["uncertainty"] == pytest.approx(0.10)  # an MoE's routing: not measured
    assert all("uncertainty" not in p for p in choice["curve"] if p["basis"] == "predicted")
    predicted = recommend_serving(records, (), **kwargs)
    assert not any(c.startswith("Served numbers measured on a twin") for c in predicted.caveats)
    assert all(
        "output_tokens_per_s_real_range" not in p for p in predicted.to_dict()["choice"]["curve"]
    )
