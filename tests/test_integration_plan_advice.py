"""End to end on real parts: tiny twins benchmarked by the real runner (a llama.cpp worker process
per config, records in the SQLite store), then the advice on those records, with a user catalog
that lists the tiny models. Every number says measured-twin where a test measured it and
predicted elsewhere; memory comes from the planner `fitbench plan` uses."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest

from fitbench.core.advise import recommend as advise
from fitbench.core.advise.memory import SOURCE_BUILTIN
from fitbench.core.bench.config import BenchConfig, BenchTest
from fitbench.core.bench.runner import run_sweep
from fitbench.core.hardware import detect as hardware
from fitbench.core.model import catalog
from fitbench.core.plan import memory
from fitbench.core.results import schema as results
from fitbench.core.results.store import open_store
from fitbench.core.twin import writer as twin
from gui_helpers import install_tiny_catalog

MEASURED_BATCHES = (2,)
TESTS = (
    BenchTest("pp", n_prompt=32),
    BenchTest("tg", n_gen=8),
    BenchTest("ttft", n_prompt=32, n_gen=8),
    *(BenchTest("batch", n_gen=8, n_parallel=b) for b in MEASURED_BATCHES),
)


def _config(path: Path, model_id: str) -> BenchConfig:
    return BenchConfig(
        model_path=str(path),
        tests=TESTS,
        model_id=model_id,
        quant="Q4_K_M",
        source="twin",
        n_gpu_layers=0,  # the same on any machine: the advice on a GPU machine predicts the rest
        reps=1,
        n_threads=2,
        repack=False,  # AMX repacking segfaults on some VMs (see twin_fixtures)
    )


@pytest.fixture
def measured(
    tiny_dense_twin: Path, tiny_moe_twin: Path
) -> tuple[list[dict[str, Any]], dict[str, Any], catalog.Catalog]:
    install_tiny_catalog()
    cat = catalog.load()
    tiny = catalog.Catalog(tuple(m for m in cat.models if m.id.startswith("tiny-")))
    assert tiny.ids == ("tiny-dense", "tiny-moe")
    hw = hardware.detect(probe_bandwidth=False, llama=False).to_dict()
    store = open_store()
    configs = [_config(tiny_dense_twin, "tiny-dense"), _config(tiny_moe_twin, "tiny-moe")]
    events = list(
        run_sweep(configs, store=store, hardware=hw, hardware_fingerprint=hw["fingerprint"])
    )
    assert events, "the sweep yielded nothing"
    records = store.records()
    assert len(records) == len(configs) * len(TESTS)
    failed = [(r["model_id"], r["test"], r["status"], r["error"]) for r in records]
    assert all(r["status"] == "ok" for r in records), failed
    # the advice as on a machine without GPU offload, whatever this one has: only the measured
    # placement (ngl 0) is then possible, so the test reads the same everywhere
    cpu_only = {**hw, "gpus": [], "llama_cpp": {"gpu_offload": False}}
    return records, cpu_only, tiny


def test_batch_records_are_aggregate_tokens_per_second(
    measured: tuple[list[dict[str, Any]], dict[str, Any], catalog.Catalog],
) -> None:
    """The worker's batch record: avg_ts counts every sequence's tokens (what advise reads as
    aggregate throughput), not one sequence's."""
    records, _, _ = measured
    for r in records:
        results.validate(r)
        if r["test"] != "batch":
            continue
        b, n_gen = r["n_parallel"], r["n_gen"]
        assert b in MEASURED_BATCHES and r["n_prompt"] == 0
        per_run_ts = [b * n_gen / (ns / 1e9) for ns in r["samples_ns"]]
        assert r["avg_ts"] == pytest.approx(statistics.fmean(per_run_ts), rel=1e-6)
        assert 0 < r["itl_ms_p50"] <= r["itl_ms_p95"] <= r["itl_ms_p99"]


@pytest.mark.parametrize("goal", ["interactive", "throughput"])
def test_advice_on_measured_twins_labels_every_number(
    measured: tuple[list[dict[str, Any]], dict[str, Any], catalog.Catalog], goal: str
) -> None:
    records, hw, tiny = measured
    advice = advise.recommend(
        records,
        hardware=hw,
        catalog=tiny,
        goal=goal,
        ctx=256,
        prompt_tokens=32,
        batches=(1, 2, 4),
        ttft_max_ms=60_000.0,
        itl_p95_max_ms=60_000.0,
    )
    d = advice.to_dict()
    choice = advice.choice
    assert choice is not None, d["verdict"]
    assert choice.model.id in ("tiny-dense", "tiny-moe")
    assert d["hardware_fingerprint"] == hw["fingerprint"]

    mine = [r for r in records if r["model_id"] == choice.model.id]

    def measured_value(test: str, field: str, **match: Any) -> float:
        rows = [r for r in mine if r["test"] == test and all(r[k] == v for k, v in match.items())]
        (row,) = rows
        return float(row[field])

    # measured at this very configuration: the numbers are the records', labelled measured-twin
    e = d["expected"]
    assert e["tg_ts"]["basis"] == "measured-twin"
    assert e["tg_ts"]["value"] == pytest.approx(measured_value("tg", "avg_ts"), abs=0.01)
    assert e["pp_ts"]["basis"] == "measured-twin"
    assert e["pp_ts"]["value"] == pytest.approx(measured_value("pp", "avg_ts"), abs=0.1)
    assert e["ttft_ms"]["basis"] == "measured-twin"
    assert e["ttft_ms"]["value"] == pytest.approx(measured_value("ttft", "ttft_ms"), abs=0.1)
    step_basis = "measured-twin" if choice.batch in (1, *MEASURED_BATCHES) else "predicted"
    assert e["itl_p95_ms"]["basis"] == step_basis
    assert e["aggregate_ts"]["basis"] == step_basis
    # memory is planned (predicted) unless a measured peak was larger
    assert e["vram_bytes"]["basis"] == "predicted"
    assert e["ram_bytes"]["basis"] in ("predicted", "measured-twin")
    assert d["memory"]["manifests"] == {
        "tiny-dense/Q4_K_M": SOURCE_BUILTIN,
        "tiny-moe/Q4_K_M": SOURCE_BUILTIN,
    }
    planned = memory.plan(
        twin.manifest_for(choice.model, "Q4_K_M"),
        memory.Placement(choice.placement.n_gpu_layers, choice.placement.n_cpu_moe),
        256,
        choice.batch,
        n_gpus=0,
    )
    if e["ram_bytes"]["basis"] == "predicted":
        assert e["ram_bytes"]["value"] == planned.ram_bytes

    # batch sizes: B=2 measured, B=4 never ran, so predicted (calibrated on the measurements)
    if goal == "throughput":
        candidates = [choice, *advice.alternatives]
        for c in candidates:
            expected_basis = "measured-twin" if c.batch in (1, *MEASURED_BATCHES) else "predicted"
            assert c.aggregate_ts.basis == expected_basis, (c.model.id, c.batch)
        if choice.batch == 2:
            assert e["aggregate_ts"]["value"] == pytest.approx(
                measured_value("batch", "avg_ts", n_parallel=2), abs=0.1
            )
    story = d["moe_vs_dense"]
    assert story is not None and story["moe_model"] == "tiny-moe"
    by_batch = {b["batch"]: b["basis"] for b in story["by_batch"]}
    assert by_batch[2] == "measured-twin" and by_batch[4] == "predicted"
    assert d["predictor"]["n_points"] >= 2 * 3  # pp, tg and batch of both models calibrate
    assert all("measured-twin" in r or "predicted" in r or "published" in r for r in d["reasons"])
