"""Wording shown to people: warnings, badges, units, and the sweep model's views."""

from __future__ import annotations

from fitbench.core.bench import events as ev
from fitbench.core.results.schema import new_record
from fitbench.ui import present
from fitbench.ui.sweep_model import SweepModel


def test_hardware_warnings_for_a_cpu_only_build_with_little_disk() -> None:
    hw = {
        "gpus": [],
        "nvml": {"error": "NVML Shared Library Not Found"},
        "disk": {"free_bytes": 12 * 10**9, "path": "/home/u/.cache/huggingface"},
        "llama_cpp": {"supports_gpu_offload": False, "version": "0.3.36"},
    }
    warnings = present.hardware_warnings(hw)
    assert any("no GPU offload" in w for w in warnings)
    assert any("NVML Shared Library Not Found" in w for w in warnings)
    assert any("Low disk: 12.00 GB free at /home/u/.cache/huggingface" in w for w in warnings)


def test_no_warnings_on_a_healthy_gpu_machine() -> None:
    hw = {
        "gpus": [{"index": 0, "name": "NVIDIA H200", "vram_total_bytes": 143 * 10**9}],
        "disk": {"free_bytes": 500 * 10**9},
        "llama_cpp": {"supports_gpu_offload": True},
    }
    assert present.hardware_warnings(hw) == []
    rows = dict(present.hardware_rows(hw))
    assert "NVIDIA H200" in rows["GPU 0"]


def test_fit_badges() -> None:
    assert present.fit_badge(None, 32) == ("does not fit", "bad")
    assert present.fit_badge({"fits": False, "n_gpu_layers": 33}, 32)[0] == "does not fit"
    assert present.fit_badge({"fits": True, "n_gpu_layers": 0}, 32)[0] == "CPU only"
    assert present.fit_badge({"fits": True, "n_gpu_layers": 33}, 32)[0] == "all on GPU"
    assert present.fit_badge({"fits": True, "n_gpu_layers": 20}, 80)[0] == (
        "partial offload 20 of 81 layers"
    )
    assert (
        "experts of 32 layers on CPU"
        in present.fit_badge({"fits": True, "n_gpu_layers": 33, "n_cpu_moe": 32}, 32)[0]
    )


def test_units() -> None:
    assert present.fmt_bytes(3 * 1024**3) == "3.0 GiB"
    assert present.fmt_duration(125) == "2 min 05 s"
    assert present.fmt_duration(None) == "unknown"
    assert present.basis_words("measured-twin") == "measured on a twin"


def _record(**kw: object) -> dict:
    base = {
        "run_id": "r1",
        "model_id": "m",
        "quant": "Q4_K_M",
        "source": "twin",
        "n_layer_model": 4,
    }
    base.update(kw)
    return new_record(**base)


def test_sweep_model_rows_curves_and_failures() -> None:
    model = SweepModel({"m": "Tiny MoE"})
    model.apply(ev.SweepStarted("r1", 2, 30.0))
    model.apply(ev.ConfigStarted("r1", "c1", 0, 2, "Tiny MoE (twin), CPU", 30.0))
    assert "Configuration 1 of 2: Tiny MoE (twin), CPU" in model.progress_text()
    model.apply(ev.Sample("c1", 0.1, None, 200 * 1024**2))
    model.apply(ev.RecordReady(_record(config_id="c1", test="pp", avg_ts=100.0)))
    model.apply(ev.RecordReady(_record(config_id="c1", test="tg", avg_ts=20.0, n_gpu_layers=2)))
    model.apply(ev.RecordReady(_record(config_id="c1", test="batch", avg_ts=50.0, n_parallel=4)))
    model.apply(ev.ConfigStarted("r1", "c2", 1, 2, "Tiny MoE (twin), GPU", 10.0))
    model.apply(ev.ConfigFailed("c2", "Tiny MoE (twin), GPU", "crash", "worker died (SIGSEGV)"))
    model.apply(ev.SweepFinished("r1", 3, 1, False, 12.0))
    labels, pp, tg = model.ts_per_config()
    assert labels == ["Tiny MoE (twin) · CPU"] and pp == [100.0] and tg == [20.0]
    assert model.tg_vs_offload()["Tiny MoE (twin)"].xs == [40.0]  # ngl 2 of 5 layers
    assert model.throughput_vs_batch()["Tiny MoE (twin)"].ys == [50.0]
    assert model.rows["c2"].status_words == "failed (crash): worker died (SIGSEGV)"
    assert model.t == [0.1]
    assert model.progress_text().startswith("Sweep finished: 3 results, 1 failed")


def test_compare_runs_side_by_side() -> None:
    runs, rows = present.compare_runs(
        {
            "r1": [_record(test="tg", avg_ts=10.0)],
            "r2": [_record(test="tg", avg_ts=12.5), _record(test="pp", status="oom")],
        }
    )
    assert runs == ["r1", "r2", "Δ speed", "Δ RAM peak", "Δ VRAM peak"]
    by_label = dict(rows)
    assert by_label["m Q4_K_M (twin), ngl 0: tg"] == [
        "10.0 t/s",
        "12.5 t/s",
        "+2.50 t/s (+25%)",
        "–",
        "–",
    ]
    assert by_label["m Q4_K_M (twin), ngl 0: pp"][:2] == ["–", "failed (oom)"]
