"""Issue 24: next to every twin number, how far the real file may be from it, from the measured
twin-vs-real bands (docs/twins.md, "Speed fidelity on CPUs"); the advice widens its figures."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fitbench.commands.bench import format_record
from fitbench.commands.quick import summary_table
from fitbench.core.advise.recommend import recommend
from fitbench.core.model import catalog
from fitbench.core.report import report_from_results_file
from fitbench.core.results.schema import new_record, write_jsonl
from fitbench.core.twin.fidelity import (
    UNMEASURED,
    fidelity,
    record_fidelity,
    served_fidelity,
    uses_gpu,
)

MIXTRAL, LLAMA = "mixtral-8x7b-instruct", "llama-2-70b-chat"
FP = "cpu-box"
CPU_HW: dict[str, Any] = {
    "fingerprint": FP,
    "gpus": [],
    "cpu": {"physical_cores": 8, "ram_bandwidth_gbps": 50.0},
    "ram": {"total_bytes": 96 << 30, "usable_bytes": 96 << 30},
    "llama_cpp": {"gpu_offload": False},
}
REPO = Path(__file__).resolve().parents[1]


def _rec(source: str = "twin", test: str = "tg", **kw: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "run_id": "r1",
        "config_id": "c0",
        "model_id": LLAMA,
        "quant": "Q4_K_M",
        "source": source,
        "model_type": "llama 70B Q4_K - Medium",
        "backends": "CPU",
        "n_layer_model": 80,
        "n_layer_file": 80,
        "n_prompt": 128 if test == "pp" else 0,
        "n_gen": 32 if test == "tg" else 0,
        "test": test,
        "avg_ts": 50.0 if test == "pp" else 1.5,
        "hardware_fingerprint": FP,
        "test_time": "2026-12-06T10:00:00+00:00",
        "ram_peak_bytes": 40 << 30,
    }
    values.update(kw)
    return new_record(**values)


# -- the bands and their words --------------------------------------------------------------------


def test_llama_on_cpus_within_one_percent_measured() -> None:
    for speed in ("pp", "tg"):
        f = fidelity("llama", on_gpu=False, speed=speed)
        assert f.measured and f.uncertainty == pytest.approx(0.01)
        assert f.text.startswith("twin: on CPUs a real llama-architecture file")
        assert "within ~1%" in f.text and "(measured)" in f.text
        assert "2026-12-06-twin-fidelity" in f.source
    assert fidelity("llama", False, "tg").short == "real file ±1%"


def test_gemma3_real_file_generates_near_its_twin_on_cpus() -> None:
    tg = fidelity("gemma3", on_gpu=False, speed="tg")
    # DATA_RULE 2's twin vs real: +1.1-1.2% [+0.5, +2.4] at 1 thread, +0.1-0.9% [-2.0, +2.3] at 2
    assert (tg.low, tg.high) == (pytest.approx(-0.025), pytest.approx(0.02))
    assert tg.text == (
        "twin: on CPUs a real gemma3-architecture file generates between -2.5% and +2.0% of "
        "this twin's speed (measured)"
    )
    assert tg.short == "real file -2.5% to +2.0%"
    assert tg.bounds(100.0) == (pytest.approx(97.5), pytest.approx(102.0))
    assert "2026-12-06c-twin-fidelity" in tg.source
    pp = fidelity("gemma3", on_gpu=False, speed="pp")
    assert pp.uncertainty == pytest.approx(0.015) and "processes prompts within ~1.5%" in pp.text


def test_gpus_two_percent_any_architecture() -> None:
    for arch in ("llama", "gemma3", "qwen2"):
        f = fidelity(arch, on_gpu=True, speed="tg")
        assert f.measured and f.uncertainty == pytest.approx(0.02)
        assert f.text.startswith("twin: on GPUs") and "within ~2%" in f.text


def test_unmeasured_architecture_says_so_and_is_wider() -> None:
    f = fidelity("qwen2", on_gpu=False, speed="tg")
    assert not f.measured and f.uncertainty == UNMEASURED
    assert f.text == (
        "twin: not measured for the qwen2 architecture on CPUs: assume the real file within "
        "±10% of this twin's speed"
    )
    assert f.short == "real file ±10% (not measured)"
    assert "this architecture" in fidelity("", on_gpu=False).text


def test_moe_routing_widens_only_steps_of_many_tokens() -> None:
    one = fidelity("llama", on_gpu=True, speed="tg", moe=True, tokens=1)
    assert one.uncertainty == pytest.approx(0.02)
    many = fidelity("llama", on_gpu=True, speed="mixed", moe=True, tokens=16)
    assert not many.measured and many.uncertainty == UNMEASURED
    assert "router" in many.text and "not compared with the real file" in many.text


def test_record_fidelity_reads_source_backend_architecture_and_catalog() -> None:
    assert record_fidelity(_rec(source="real")) is None
    assert not uses_gpu(_rec(n_gpu_layers=81))  # offload asked for, a CPU-only build
    assert uses_gpu(_rec(n_gpu_layers=81, backends="CUDA,CPU"))
    assert not uses_gpu(_rec(n_gpu_layers=0, backends="CUDA,CPU"))
    gemma = _rec(model_type="gemma3 270M Q4_K - Medium", model_id="gemma")
    assert record_fidelity(gemma) == fidelity("gemma3", False, "tg")
    # a 2-block Mixtral slice is "?B" to llama.cpp: the catalog says it is an MoE
    pp_slice = _rec(
        source="scaled-twin", test="pp", model_id=MIXTRAL, model_type="llama ?B Q4_K - Medium",
        n_layer_model=32, n_layer_file=2,
    )  # fmt: skip
    dense_words = record_fidelity(pp_slice)
    assert dense_words is not None and dense_words.uncertainty == pytest.approx(0.01)
    routed = record_fidelity(pp_slice, catalog.load())
    assert routed is not None and routed.uncertainty == UNMEASURED and "router" in routed.text


# -- next to every twin number: CLI, report ------------------------------------------------------


def test_cli_line_of_a_twin_ends_with_the_caveat_and_a_real_files_does_not() -> None:
    twin_line = format_record(_rec())
    assert twin_line.endswith(" | " + fidelity("llama", False, "tg").text)
    assert "twin:" not in format_record(_rec(source="real"))
    failed = _rec(status="oom", error="out of memory", avg_ts=0.0)
    assert "twin:" not in format_record(failed)  # no number, nothing to qualify


def test_quick_table_gives_each_twin_row_its_band_and_the_caveats_in_full() -> None:
    records = [_rec(test="pp"), _rec(), _rec(source="real", config_id="c1", model_id=MIXTRAL)]
    lines = summary_table(records, CPU_HW, catalog.load())
    twin_row = next(line for line in lines if line.startswith(LLAMA))
    real_row = next(line for line in lines if line.startswith(MIXTRAL))
    assert twin_row.rstrip().endswith("real file ±1%") and "real file" not in real_row
    assert fidelity("llama", False, "tg").text in lines
    assert fidelity("llama", False, "pp").text in lines


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
def test_report_pdf_says_the_caveat(tmp_path: Path) -> None:
    results = tmp_path / "cpu.jsonl"
    write_jsonl(
        [_rec(test="pp"), _rec(), _rec(model_type="gemma3 270M Q4_K - Medium", model_id="g")],
        results,
    )
    pdf = tmp_path / "r.pdf"
    report_from_results_file(results, pdf, compute=False)
    out = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True)
    text = " ".join(out.stdout.split())
    caveats = text.split("6. Caveats", 1)[1]
    for f in (fidelity("llama", False, "tg"), fidelity("gemma3", False, "tg")):
        assert f.text in caveats
    assert "twin (real file ±1%)" in text  # the Basis cell of the llama rows


# -- the advice widens its figures ---------------------------------------------------------------


def _q4_catalog() -> catalog.Catalog:
    """The shipped catalog with the measured quant only: the choice rests on the records."""
    models = tuple(
        dataclasses.replace(m, quants=tuple(q for q in m.quants if q.quant == "Q4_K_M"))
        for m in catalog.load().models
    )
    return catalog.Catalog(models)


def _cpu_advice(source: str) -> dict[str, Any]:
    records = [
        _rec(source=source, test=test, model_id=m, n_layer_model=n, n_layer_file=n,
             model_type=f"llama {size} Q4_K - Medium", avg_ts=ts)
        for m, n, size in ((MIXTRAL, 32, "8x7B"), (LLAMA, 80, "70B"))
        for test, ts in (("pp", 40.0), ("tg", 6.0 if m == MIXTRAL else 1.5))
    ]  # fmt: skip
    return dict(recommend(records, hardware=CPU_HW, catalog=_q4_catalog()).to_dict())


def test_advice_on_twins_carries_the_band_and_the_caveat() -> None:
    d = _cpu_advice("twin")
    assert d["choice"]["model_id"] == MIXTRAL
    tg, pp = d["expected"]["tg_ts"], d["expected"]["pp_ts"]
    assert tg["basis"] == "measured-twin" and tg["uncertainty"] == pytest.approx(0.01)
    assert tg["real_range"] == [5.94, 6.06]
    # Mixtral's prompt routes many tokens through a router the twin cannot reproduce
    assert pp["uncertainty"] == pytest.approx(UNMEASURED) and pp["real_range"] == [36.0, 44.0]
    caveats = " ".join(d["caveats"])
    assert tg["twin_caveat"] in caveats and pp["twin_caveat"] in caveats
    assert "may differ by up to 10% from these" in caveats
    assert "real file ±1%" in d["verdict"]  # the verdict's speed carries its band


def test_advice_on_real_files_has_no_twin_band() -> None:
    d = _cpu_advice("real")
    assert d["expected"]["tg_ts"]["basis"] == "measured-real"
    assert all("uncertainty" not in v for v in d["expected"].values() if isinstance(v, dict))
    assert "twin:" not in " ".join(d["caveats"]) and "real file ±" not in d["verdict"]


def test_a_served_level_carries_the_band_of_its_deployment() -> None:
    cat = catalog.load()
    real = {"source": "real", "model_id": "mixtral-8x7b-instruct", "n_gpu_layers": 99}
    assert served_fidelity(real, 8, cat) is None
    mixtral = {**real, "source": "twin"}
    one = served_fidelity(mixtral, 1, cat)
    assert one is not None and one.uncertainty == pytest.approx(0.02)  # on the GPU: ±2%
    many = served_fidelity(mixtral, 8, cat)
    assert many is not None and many.uncertainty == pytest.approx(0.10) and not many.measured
    dense_cpu = {"source": "scaled-twin", "model_id": "llama-2-70b-chat", "n_gpu_layers": 0}
    on_cpu = served_fidelity(dense_cpu, 8, cat)
    assert on_cpu is not None and on_cpu.uncertainty == pytest.approx(0.01)  # llama arch, CPU
    # a GPU machine's -ngl means nothing without a GPU: the caller may say where it ran
    forced = served_fidelity({**dense_cpu, "n_gpu_layers": 99}, 8, cat, on_gpu=False)
    assert forced is not None and forced.uncertainty == pytest.approx(0.01)
