"""`fitbench recommend --goal serving`: users within p95 ITL / p99 TTFT limits, measured load
levels over predictions, and what to add beyond one machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fitbench.cli import main
from fitbench.core.advise.serving import binomial_quantile, recommend_serving
from fitbench.core.model import catalog
from fitbench.core.results.schema import read_jsonl

DATA = Path(__file__).parent / "data"
RESULTS = DATA / "predict_h200_facts.jsonl"
HARDWARE = DATA / "predict_h200_hardware.json"


def _hardware() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(HARDWARE.read_text())
    return data


def _level(users: int, itl_p95: float, ttft_p99: float, n_gpu_layers: int = 33) -> dict[str, Any]:
    return {
        "kind": "load_level",
        "basis": "measured-twin",
        "hardware_fingerprint": "facts-md-h200",
        "deployment": {"model_id": "mixtral-8x7b-instruct", "quant": "Q4_K_M", "source": "twin",
                       "n_gpu_layers": n_gpu_layers, "n_cpu_moe": 0, "parallel": 32},
        "level": {"concurrency": users, "ok": 8, "failed": 0,
                  "ttft_ms": {"p50": ttft_p99 / 2, "p95": ttft_p99, "p99": ttft_p99},
                  "itl_ms": {"p50": itl_p95 / 2, "p95": itl_p95, "p99": itl_p95},
                  "output_tokens_per_s": 10.0 * users},
    }  # fmt: skip


def test_binomial_quantile() -> None:
    assert binomial_quantile(0, 0.5, 0.99) == 0
    assert binomial_quantile(10, 0.0, 0.99) == 0
    assert binomial_quantile(10, 0.5, 0.5) == 5
    assert binomial_quantile(10, 1.0, 0.99) == 10
    assert binomial_quantile(31, 0.1, 0.99) > binomial_quantile(31, 0.1, 0.5)


def test_predicted_curve_is_labelled_and_users_meet_both_limits() -> None:
    advice = recommend_serving(read_jsonl(RESULTS), hardware=_hardware(), catalog=catalog.load(),
                               itl_p95_max_ms=50, ttft_p99_max_ms=2000)  # fmt: skip
    d = advice.to_dict()
    choice = d["choice"]
    assert choice is not None and choice["users"] >= 1
    for p in choice["curve"]:
        assert p["basis"] == "predicted"
        if p["users"] <= choice["users"]:
            assert p["itl_ms"]["p95"] <= 50 and p["ttft_ms"]["p99"] <= 2000
    beyond = next((p for p in choice["curve"] if p["users"] > choice["users"]), None)
    assert beyond is None or beyond["itl_ms"]["p95"] > 50 or beyond["ttft_ms"]["p99"] > 2000
    # a stricter ITL limit never serves more users
    strict = recommend_serving(read_jsonl(RESULTS), hardware=_hardware(), catalog=catalog.load(),
                               itl_p95_max_ms=10, ttft_p99_max_ms=2000)  # fmt: skip
    assert (strict.choice.users if strict.choice else 0) <= choice["users"]


def test_a_measured_failure_is_never_overruled_by_a_prediction() -> None:
    records = read_jsonl(RESULTS)
    kwargs: dict[str, Any] = dict(hardware=_hardware(), catalog=catalog.load(),
                                  itl_p95_max_ms=50, ttft_p99_max_ms=2000)  # fmt: skip
    levels = [_level(1, 10, 300), _level(2, 12, 400), _level(4, 80, 500)]  # 4 users: ITL too high
    advice = recommend_serving(records, levels, **kwargs)
    mixtral = [d for d in advice.considered if d.model.id == "mixtral-8x7b-instruct"
               and d.quant == "Q4_K_M" and d.placement.n_gpu_layers == 33
               and d.placement.n_cpu_moe == 0]  # fmt: skip
    assert mixtral and mixtral[0].users == 2
    bases = {p.users: p.basis for p in mixtral[0].curve}
    assert bases[1] == bases[2] == bases[4] == "measured-twin" and bases[8] == "predicted"
    # levels of another machine are not this machine's
    other = [dict(line, hardware_fingerprint="laptop") for line in levels]
    advice2 = recommend_serving(records, other, **kwargs)
    assert all(p.basis == "predicted" for d in advice2.considered for p in d.curve)


def test_cli_serving_goal_with_users_beyond_one_machine(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc = main(["recommend", "--results", str(RESULTS), "--hardware", str(HARDWARE), "--goal",
               "serving", "--itl-p95-max-ms", "50", "--ttft-p99-max-ms", "2000", "--users",
               "200", "--json"])  # fmt: skip
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["goal"] == "serving" and d["limits"]["ttft_p99_max_ms"] == 2000
    kinds = {b["kind"] for b in d["beyond_one_machine"]}
    assert "replicas" in kinds and "vllm-tensor-parallel" in kinds
    replicas = next(b for b in d["beyond_one_machine"] if b["kind"] == "replicas")
    assert replicas["machines"] * d["choice"]["users"] >= 200 and replicas["basis"] == "predicted"
    assert d["recipe"]["fitbench_serve"].startswith("fitbench serve -m ")
