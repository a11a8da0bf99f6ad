"""The report model without a PDF: grouping, bases, number formats, figures as PNG.

Inputs are the SYNTHETIC H200 records of test_report_support.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import test_report_support as data
from fitbench.core.plan.placement import Placement
from fitbench.core.report import ReportError, build_report, fmt
from fitbench.core.report.configs import group
from fitbench.core.report.model import Figure, Table

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_grouping_makes_one_configuration_per_placement() -> None:
    configs = group(data.h200_records())
    # 5 Mixtral placements + experts-on-CPU + 5 Llama placements
    assert len(configs) == 11
    full = next(
        c
        for c in configs
        if c.model_id == data.MIXTRAL and c.n_gpu_layers == 33 and not c.n_cpu_moe
    )
    assert full.ts("tg") == 196.0 and full.ts("pp") == 5758.0
    assert full.batch_points()[-1] == (64, 2612.0)
    assert full.gpu_share == 100.0
    assert full.basis == "measured-twin"
    assert full.first("ttft_ms", ("ttft", "pp")) == pytest.approx(512 / 5758 * 1000, abs=0.01)


def test_worst_status_wins_and_failed_tests_give_no_speed() -> None:
    records = [
        r for r in data.h200_records() if r["model_id"] == data.LLAMA70 and r["n_gpu_layers"] == 0
    ]
    crash = dict(records[0], status="crash", error="worker died (SIGSEGV)", avg_ts=0.0, test="pp")
    (cfg,) = group([*records, crash])
    assert cfg.status == "crash"
    assert cfg.ts("pp") is None and cfg.ts("tg") == 1.8
    assert [r["error"] for r in cfg.errors] == ["worker died (SIGSEGV)"]


def test_build_report_sections_and_basis_everywhere() -> None:
    report = build_report(
        data.h200_records(),
        data.h200_advice(),
        data.h200_hardware(),
        data.h200_samples(),
        data.run_meta(),
    )
    assert [s.title.split(" ", 1)[0] for s in report.sections] == [
        "1.",
        "2.",
        "3.",
        "4.",
        "5.",
        "6.",
        "7.",
    ]
    assert report.verdict == data.VERDICT
    assert len(report.figures()) == 5
    expected = next(t for t in report.tables() if t.title == "Expected on this machine")
    assert {row[2] for row in expected.rows} == {"measured on a twin", "predicted"}
    for t in report.tables():
        if t.title in ("Speed per configuration", "Latency and memory per configuration"):
            assert t.headers[2] == "Basis"
            # every twin row says how far the real file may be from it
            assert all(row[2].startswith("twin (real file ") for row in t.rows)
    predicted = next(
        t for t in report.tables() if t.title == "Predicted numbers in the recommendation"
    )
    assert all(row[2].endswith("(PREDICTED)") for row in predicted.rows)
    assert len(predicted.rows) == 3  # RAM of the choice, tg and VRAM of the Q8_0 alternative


def test_real_files_read_as_real() -> None:
    records = data.h200_records()
    for r in records:
        r["source"] = "real"
    report = build_report(records, None, None)
    results = report.section("4.")
    speed = next(b for b in results.blocks if isinstance(b, Table) and b.title.startswith("Speed"))
    assert {row[2] for row in speed.rows} == {"real file"}
    best = next(b for b in results.blocks if isinstance(b, Table) and b.title.startswith("Fastest"))
    assert {row[4] for row in best.rows} == {"measured on the real file"}
    assert "twins" not in report.section("6.").blocks[0].items[0]  # type: ignore[union-attr]


def test_empty_or_mixed_records_are_refused() -> None:
    with pytest.raises(ReportError, match="no result records"):
        build_report([], None, None)
    records = data.h200_records()
    records[0] = dict(records[0], hardware_fingerprint=data.OTHER_FINGERPRINT)
    with pytest.raises(ReportError, match="2 different machines"):
        build_report(records, None, None)


def test_figures_are_png_with_their_size() -> None:
    report = build_report(data.h200_records(), None, None)
    figs = report.figures()
    assert [f.title for f in figs] == [
        "Generation speed vs GPU offload",
        "Throughput vs batch size (parallel sequences)",
        "Memory over the run (peak per test)",
        "MoE-vs-dense advantage (Mixtral tg ÷ Llama 2 70B tg)",
    ]
    for f in figs:
        assert isinstance(f, Figure) and f.png.startswith(b"\x89PNG\r\n\x1a\n")
        img = Image.open(io.BytesIO(f.png))
        assert img.mode == "RGB" and img.size == (f.width_px, f.height_px)
    # without advice the advantage ratio comes from the measurements: B=1 and 0%/100% on GPU
    assert "from the measurements" in figs[3].caption


def test_number_formats() -> None:
    assert [fmt.num(v) for v in (5758.0, 196.0, 45.4, 8.5, 1.8)] == [
        "5758",
        "196",
        "45.4",
        "8.50",
        "1.80",
    ]
    assert fmt.num(None) == "–"
    assert fmt.gib(27.4 * 1024**3) == "27.4 GiB"
    assert fmt.duration(742) == "12 min 22 s" and fmt.duration(7300) == "2 h 01 min"
    assert Placement(33).short_words(32) == "all 33 layers on GPU"
    assert Placement(0).short_words(80) == "CPU only"
    assert Placement(16).short_words(32) == "16 of 33 layers on GPU"
    assert Placement(33, 32).short_words(32) == "all 33 layers on GPU, experts of 32 layers on CPU"
    assert fmt.humanize_key("vram_total_bytes") == "VRAM total"
    assert fmt.humanize_key("predicted_ts", with_unit=True) == "Predicted (t/s)"
    assert fmt.humanize_key("ttft_max_ms") == "TTFT max"
    assert fmt.value("ttft_max_ms", 3000.0) == "3000 ms"
    assert fmt.value("error_pct", -6.94) == "-6.9%"
    assert fmt.value("bandwidth_gbps", 4800.0) == "4800 GB/s"


def test_report_uses_no_pyplot_and_no_qt() -> None:
    """Figures go through Figure + FigureCanvasAgg: pyplot (global state, GUI backend) and Qt
    stay unloaded, so the GUI process can build a report without side effects."""
    code = (
        "import sys; sys.path.insert(0, 'tests');"
        "import test_report_support as d;"
        "from fitbench.core.report import build_report;"
        "r = build_report(d.h200_records(), d.h200_advice(), None, d.h200_samples());"
        "assert len(r.figures()) == 5;"
        "bad = [m for m in sys.modules"
        " if m == 'matplotlib.pyplot' or m.startswith(('PySide6', 'pyqtgraph'))];"
        "print(bad)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=REPO_ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
