"""A scaled twin's tokens/s is never shown as the full model's: GUI, report and CLI show the full
model's predicted figure (≈, predicted) and the slice's measurement only as detail."""

from __future__ import annotations

import re
from typing import Any

from fitbench.commands.bench import format_new_record
from fitbench.commands.quick import summary_table
from fitbench.core.bench import events as ev
from fitbench.core.predict.full_model import display_value, full_model_figures, full_placement
from fitbench.core.report.build import build_report
from fitbench.core.report.model import Table
from fitbench.core.results.schema import new_record
from fitbench.ui import present
from fitbench.ui.bench_panel import BenchPanel
from fitbench.ui.sweep_model import SweepModel

FP = "feedc0ffee000001"
HW = {"fingerprint": FP, "gpus": [], "cpu": {"physical_cores": 2}, "ram": {"total_bytes": 24 << 30}}

# what `fitbench quick` measured on a 2-core VM (docs: /tmp/q run): slices of 2 blocks
SLICES = {
    ("mixtral-8x7b-instruct", 32): {"pp": 290.3, "tg": 18.7, 4: 25.7},
    ("llama-2-70b-chat", 80): {"pp": 146.9, "tg": 3.65, 4: 12.7},
}


def _records(source: str = "scaled-twin") -> list[dict[str, Any]]:
    out = []
    for (model_id, n_model), speeds in SLICES.items():
        common: dict[str, Any] = {
            "run_id": "r1",
            "config_id": f"{model_id}-c0",
            "model_id": model_id,
            "quant": "Q4_K_M",
            "source": source,
            "n_layer_model": n_model,
            "n_layer_file": 2 if source == "scaled-twin" else n_model,
            "hardware_fingerprint": FP,
            "test_time": "2026-12-01T10:00:00+00:00",
            "ram_peak_bytes": 2 << 30,
        }
        out.append(new_record(**common, test="pp", n_prompt=256, n_gen=0, avg_ts=speeds["pp"]))
        out.append(
            new_record(
                **common, test="tg", n_prompt=0, n_gen=64, avg_ts=speeds["tg"], ttft_ms=900.0
            )
        )
        out.append(
            new_record(**common, test="batch", n_prompt=0, n_gen=16, n_parallel=4, avg_ts=speeds[4])
        )
    return out


RAW = {f"{v:.1f}" for speeds in SLICES.values() for v in speeds.values()} | {
    f"{v:.2f}" for speeds in SLICES.values() for v in speeds.values()
}


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d+(?:\.\d+)?", text)


def _raw_outside_detail(text: str) -> list[str]:
    """Raw slice speeds in `text` that are not inside a 'slice ... measured' detail."""
    shown = re.sub(r"(slice|sliced?)[^)]*", "", text)
    return [n for n in _numbers(shown) if n in RAW]


def test_full_model_figure_is_below_the_slice_and_says_so() -> None:
    records = _records()
    figures = full_model_figures(records, HW)
    for r, fig in zip(records, figures, strict=True):
        assert fig is not None and fig.value is not None
        assert fig.measured == r["avg_ts"]
        # 2 of 32 (80) blocks: the full model is many times slower than its slice
        assert fig.value < r["avg_ts"] / 4
        assert display_value(r, fig) == fig.value
        assert fig.text.startswith("≈") and "predicted for the full model" in fig.text
        assert f"slice of 2/{r['n_layer_model']} blocks measured" in fig.text
    # the full twin and real files are shown as measured: no figure, their own speed
    full = _records("twin")
    assert full_model_figures(full, HW) == [None] * len(full)
    assert display_value(full[0], None) == full[0]["avg_ts"]


def test_full_placement_keeps_the_share_on_the_gpu() -> None:
    from fitbench.core.plan.placement import Placement

    assert full_placement(Placement(0), 2, 80).n_gpu_layers == 0
    assert full_placement(Placement(3), 2, 80).n_gpu_layers == 81  # all of the slice: all
    assert full_placement(Placement(2, 2), 4, 32) == Placement(13, 16)
    assert full_placement(Placement(5, 2), 4, 32).n_cpu_moe == 16


def test_gui_table_and_plots_never_show_a_slice_speed(qtbot) -> None:
    model = SweepModel({"mixtral-8x7b-instruct": "Mixtral 8x7B Instruct v0.1"})
    model.hardware = HW
    panel = BenchPanel(model)
    qtbot.addWidget(panel)
    model.apply(ev.SweepStarted("r1", 2, 10.0))
    for r in _records():
        model.apply(ev.RecordReady(r))
    model.apply(ev.SweepFinished("r1", 6, 0, False, 5.0))
    panel.refresh()
    assert panel.table.rowCount() == 2
    for i in range(panel.table.rowCount()):
        pp, tg = panel.table.item(i, 2).text(), panel.table.item(i, 3).text()
        assert pp.endswith("t/s predicted") and tg.endswith("t/s predicted"), (pp, tg)
        assert not _raw_outside_detail(pp + tg)
        assert "slice of 2/" in panel.table.item(i, 1).text()  # the raw speed, as detail
        assert "slice" in panel.table.item(i, 4).text()  # TTFT of a slice is not the model's
    labels, pp, tg = model.ts_per_config()
    assert all(label.endswith("≈") for label in labels)
    raw = {v for speeds in SLICES.values() for v in speeds.values()}
    plotted = set(pp) | set(tg)
    plotted |= {y for s in model.tg_vs_offload().values() for y in s.ys}
    plotted |= {y for s in model.throughput_vs_batch().values() for y in s.ys}
    assert plotted and not plotted & raw
    assert all(model.is_scaled_label(name) for name in model.throughput_vs_batch())


def test_history_comparison_shows_full_model_figures() -> None:
    records = _records()
    figures = full_model_figures(records, HW)
    shown = [{**r, "full_model": f} for r, f in zip(records, figures, strict=True)]
    columns, rows = present.compare_runs({"r1": shown, "r2": shown})
    assert columns[2:] == ["Δ speed", "Δ RAM peak", "Δ VRAM peak"]
    for _label, cells in rows:
        assert "predicted" in cells[0] and not _raw_outside_detail(cells[0])
        assert cells[2] == "+0.00 t/s (+0%)"


def _cells(report: Any) -> list[tuple[str, str]]:
    out = []
    for section in report.sections:
        for block in section.blocks:
            if isinstance(block, Table) and "predicted" not in block.title.lower()[:9]:
                out.extend((block.title, " | ".join(row)) for row in block.rows)
    return out


def test_report_tables_show_full_model_figures() -> None:
    report = build_report(_records(), None, HW)
    results = next(s for s in report.sections if s.title.startswith("4."))
    tables = [b for b in results.blocks if isinstance(b, Table)]
    speed = next(t for t in tables if t.title == "Speed per configuration")
    for row in speed.rows:
        # the slice is a twin too: the band of its values follows the basis
        assert row[2].startswith("predicted from a scaled twin (real file ±")
        assert row[4].startswith("≈") and row[5].startswith("≈")
        assert not _raw_outside_detail(row[4] + row[5])
    best = next(t for t in tables if t.title.startswith("Fastest generation"))
    for row in best.rows:
        assert row[3].startswith("≈") and not _raw_outside_detail(row[3])
        assert "slice of 2/" in row[4]
    batch = next(t for t in tables if t.title.startswith("Parallel sequences"))
    assert all(row[-1].startswith("≈") and row[-1][1:] not in RAW for row in batch.rows)


def test_cli_lines_and_quick_table_show_full_model_figures() -> None:
    records = _records()
    lines = [format_new_record(records[: i + 1], HW) for i in range(len(records))]
    for line, r in zip(lines, records, strict=True):
        speed = line.split("  ")[-2] if "predicted" not in line else line
        assert "predicted for the full model" in speed
        head = line.split("predicted for the full model")[0]
        assert f"{r['avg_ts']:.2f}" not in head  # the raw speed only after, in the detail
    table = summary_table(records, HW)
    for row in table[1:3]:
        pp, tg = row.split("  slice")[0].split()[-2:]
        assert pp.startswith("≈") and tg.startswith("≈")
        assert pp[1:] not in RAW and tg[1:] not in RAW
        assert "slice of 2/" in row
