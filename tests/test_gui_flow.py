"""The desktop app end to end, offscreen: real llama.cpp workers on tiny twins, real advice,
a real PDF read back with pdftotext, real downloads from the local Hub server."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from fitbench.core.bench.config import INJECT_ENV
from fitbench.ui.main_window import MainWindow
from gui_helpers import TINY_REPO, bench_workers, install_tiny_catalog, tiny_config
from hub_server import HubServer

FLOW_TIMEOUT_MS = 180_000


@pytest.fixture
def window(qtbot, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(INJECT_ENV, "1")
    install_tiny_catalog()
    w = MainWindow(autostart=False)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.controller.stop_all()
    qtbot.waitUntil(lambda: not w.controller.busy, timeout=30_000)


def test_one_click_flow_ends_with_a_recommendation_and_a_pdf_despite_a_crash(
    qtbot, window: MainWindow, tiny_dense_twin: Path, tiny_moe_twin: Path, tmp_path: Path
) -> None:
    configs = [
        tiny_config(tiny_dense_twin, "tiny-dense"),
        tiny_config(tiny_dense_twin, "tiny-dense", inject="segfault@test1", n_gpu_layers=1),
        tiny_config(tiny_moe_twin, "tiny-moe"),
    ]
    window.controller.configs_factory = lambda hardware, settings: configs
    with qtbot.waitSignal(window.controller.outcome_ready, timeout=FLOW_TIMEOUT_MS) as got:
        qtbot.mouseClick(window.bench_panel.run_button, Qt.MouseButton.LeftButton)
    outcome = got.args[0]
    assert outcome.advice is not None, outcome.advice_error
    qtbot.waitUntil(lambda: not window.controller.bench_running, timeout=10_000)

    # the crashed configuration is a failed row with its reason; the sweep went on after it
    window.bench_panel.refresh()
    failed = window.bench_panel.failed_rows()
    assert len(failed) == 1 and failed[0].startswith("failed (crash)")
    statuses = [
        window.bench_panel.table.item(i, 7).text()
        for i in range(window.bench_panel.table.rowCount())
    ]
    assert statuses.count("done") == 2
    # every number says what it is (and, for a twin, how far the real file may be)
    assert window.bench_panel.table.item(0, 1).text().startswith("twin (real file")
    assert "Sweep finished" in window.bench_panel.progress_line.text()
    # the crash hit the tg test: that configuration's prompt speed stands, its tg bar is empty
    tg_bars = window.sweep_model.ts_per_config()[2]
    assert tg_bars[0] > 0 and tg_bars[1] == 0 and tg_bars[2] > 0
    assert set(window.sweep_model.tg_vs_offload()) == {"Tiny dense (twin)", "Tiny MoE (twin)"}

    # the recommendation panel shows the core's verdict, numbers with their basis, the recipe
    advice = outcome.advice
    assert window.tabs.currentWidget() is window.advice_panel
    assert window.advice_panel.verdict.text() == advice["verdict"] != ""
    assert advice["choice"]["model_id"] in ("tiny-dense", "tiny-moe")
    basis_texts = [
        window.advice_panel.expected.itemAt(i, window.advice_panel.expected.ItemRole.FieldRole)
        .widget()
        .text()
        for i in range(window.advice_panel.expected.rowCount())
    ]
    assert any("measured on a twin" in t for t in basis_texts)
    assert window.advice_panel.recipe_texts["llama_server"].toPlainText().startswith("llama-server")
    window.advice_panel.copy_recipe("llama_server")
    from PySide6.QtGui import QGuiApplication

    assert QGuiApplication.clipboard().text().startswith("llama-server")

    # Export PDF report
    pdf = tmp_path / "report.pdf"
    with qtbot.waitSignal(window.controller.pdf_exported, timeout=120_000):
        window.advice_panel.export_requested.emit(pdf)
    assert "Report saved" in window.advice_panel.export_status.text()
    if shutil.which("pdftotext"):
        text = subprocess.run(
            ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
        ).stdout
        assert "Tiny dense" in text and "Tiny MoE" in text
        assert advice["verdict"].split(":")[0][:40] in " ".join(text.split())
    else:
        assert pdf.read_bytes().startswith(b"%PDF")

    # History lists the run from the store; comparing it shows its results
    qtbot.waitUntil(lambda: outcome.run_id in window.history_panel.run_ids, timeout=10_000)
    window.controller.compare_runs([outcome.run_id])
    qtbot.waitUntil(lambda: window.history_panel.comparison.rowCount() >= 4, timeout=10_000)


def test_cancel_mid_run_stops_the_worker_and_keeps_the_app_usable(
    qtbot, window: MainWindow, tiny_dense_twin: Path
) -> None:
    configs = [
        tiny_config(tiny_dense_twin, "tiny-dense", inject="sleep@test1"),
        tiny_config(tiny_dense_twin, "tiny-dense", n_gpu_layers=1),
    ]
    window.controller.configs_factory = lambda hardware, settings: configs
    qtbot.mouseClick(window.bench_panel.run_button, Qt.MouseButton.LeftButton)
    assert not window.bench_panel.run_button.isEnabled()
    assert window.bench_panel.cancel_button.isEnabled()
    # wait until the first test's record arrived: the worker now sleeps inside test 1
    qtbot.waitUntil(lambda: len(window.sweep_model.records) >= 1, timeout=FLOW_TIMEOUT_MS)
    assert bench_workers()
    with qtbot.waitSignal(window.controller.sweep_finished, timeout=30_000):
        qtbot.mouseClick(window.bench_panel.cancel_button, Qt.MouseButton.LeftButton)
    assert window.sweep_model.finished is not None and window.sweep_model.finished.cancelled
    assert "cancelled" in window.advice_panel.verdict.text()
    assert window.bench_panel.run_button.isEnabled()
    assert "Sweep cancelled" in window.bench_panel.progress_line.text()
    qtbot.waitUntil(lambda: not bench_workers(), timeout=10_000)
    assert len(window.sweep_model.rows) == 1  # the second configuration never started


def test_closing_during_a_run_asks_then_stops_workers_cleanly(
    qtbot, window: MainWindow, tiny_dense_twin: Path
) -> None:
    window.controller.configs_factory = lambda hardware, settings: [
        tiny_config(tiny_dense_twin, "tiny-dense", inject="sleep@test1")
    ]
    asked: list[bool] = []
    answers = iter([False, True])
    window.confirm_stop = lambda: asked.append(True) or next(answers)  # type: ignore[method-assign]
    qtbot.mouseClick(window.bench_panel.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(window.sweep_model.records) >= 1, timeout=FLOW_TIMEOUT_MS)
    window.close()  # "No": keeps running
    assert asked == [True] and window.isVisible() and window.controller.bench_running
    window.close()  # "Yes": stops the job, then closes by itself
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=30_000)
    assert not window.controller.busy
    qtbot.waitUntil(lambda: not bench_workers(), timeout=10_000)


def test_download_progress_cancel_and_resume_from_the_local_hub(
    qtbot, window: MainWindow, hub_server: HubServer, tiny_dense_twin: Path
) -> None:
    hub_file = hub_server.add_file(TINY_REPO, "tiny-dense.Q4_K_M.gguf", tiny_dense_twin)
    with qtbot.waitSignal(window.controller.runner.all_finished, timeout=60_000):
        window.controller.detect()  # detection, then the plan of every catalog quant
    key = ("tiny-dense", "Q4_K_M")
    assert window.models_panel.badge_text(*key) == "CPU only"
    cell = window.models_panel.cells[key]
    assert cell.button.text() == "Download"

    # slow enough to cancel midway; the partial file stays for the resume
    hub_server.throttle_bytes_per_s = max(200_000, hub_file.size // 4)
    progress: list[dict] = []
    qtbot.mouseClick(cell.button, Qt.MouseButton.LeftButton)
    job = window.controller.downloads[key]
    job.progress.connect(progress.append)
    assert cell.button.text() == "Cancel"
    qtbot.waitUntil(lambda: any(p["done_bytes"] > 0 for p in progress), timeout=30_000)
    with qtbot.waitSignal(job.finished, timeout=30_000):
        qtbot.mouseClick(cell.button, Qt.MouseButton.LeftButton)
    assert cell.state == "paused" and cell.button.text() == "Resume"
    kept = max(p["done_bytes"] for p in progress if p["phase"] == "download")
    assert 0 < kept < hub_file.size

    hub_server.throttle_bytes_per_s = None
    resumed: list[dict] = []
    qtbot.mouseClick(cell.button, Qt.MouseButton.LeftButton)
    window.controller.downloads[key].progress.connect(resumed.append)
    qtbot.waitUntil(lambda: cell.state == "done", timeout=60_000)
    downloads = [p for p in progress + resumed if p["phase"] == "download"]
    assert all(p["total_bytes"] == hub_file.size for p in downloads)
    assert all(p["rate_bps"] >= 0 for p in downloads)
    # resumed where it stopped: the second attempt never reports fewer bytes than were kept
    second = [p["done_bytes"] for p in resumed if p["phase"] == "download"]
    assert not second or min(second) >= kept
    local = window.models_panel.table.item(window.models_panel.rows[key], 5)
    assert local.text() == "yes"
    assert Path(local.toolTip()).read_bytes() == tiny_dense_twin.read_bytes()


def test_added_models_appear_in_the_models_table_planned_from_their_headers(
    qtbot, window: MainWindow, hub_server: HubServer, tiny_moe_twin: Path, tmp_path: Path
) -> None:
    hub_server.add_file("someone/Tiny-GGUF", "tiny-moe.Q4_K_M.gguf", tiny_moe_twin)
    broken = tmp_path / "broken.Q4_K_M.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 20)
    with qtbot.waitSignal(window.controller.runner.all_finished, timeout=60_000):
        window.controller.detect()
    panel = window.models_panel
    for spec in (tiny_moe_twin, ("someone/Tiny-GGUF", "tiny-moe.Q4_K_M.gguf"), broken):
        with qtbot.waitSignal(window.controller.runner.all_finished, timeout=60_000):
            window.controller.add_model(spec)
    local_key = (str(tiny_moe_twin), "Q4_K_M")
    hub_key = ("someone/Tiny-GGUF/tiny-moe.Q4_K_M.gguf", "Q4_K_M")
    broken_key = (str(broken), "Q4_K_M")
    assert {local_key, hub_key, broken_key} <= set(panel.rows)
    for key, name in ((local_key, tiny_moe_twin.name), (hub_key, "tiny-moe.Q4_K_M.gguf")):
        row = panel.rows[key]
        assert panel.table.item(row, 0).text() == f"{name} (added)"
        assert panel.badge_text(*key) == "CPU only"  # planned: this machine has no GPU
        assert panel.table.item(row, 4).text() == "compatible"
        assert panel.table.item(row, 2).text() != "?"
    assert panel.table.item(panel.rows[local_key], 5).text() == "yes"
    assert not panel.cells[hub_key].button.isEnabled()  # catalog models only are downloaded
    assert "Hub file's header" in panel.table.item(panel.rows[hub_key], 4).toolTip()
    assert panel.badge_text(*broken_key) == "unknown"
    reason = panel.table.item(panel.rows[broken_key], 3).toolTip()
    assert reason.startswith(f"cannot plan {broken}") and "GGUF" in reason
    # saved: a new window plans them again
    assert window.controller.settings.added_models[-1] == str(broken)


def test_an_added_local_model_runs_in_the_custom_sweep(
    qtbot, window: MainWindow, tiny_moe_twin: Path
) -> None:
    advanced = window.bench_panel.advanced
    before = advanced.models.count()
    # no detection yet, so nothing is planned: the lists follow the saved settings at once
    window.controller.add_model(("someone/Tiny-GGUF", "hub-only.Q4_K_M.gguf"))
    window.controller.add_model(tiny_moe_twin)
    names = [advanced.models.item(i).text() for i in range(advanced.models.count())]
    # the local file can be measured; a Hub entry is only planned (not downloaded)
    assert names[before:] == [f"{tiny_moe_twin.name} (added)"]
    for i in range(advanced.models.count()):
        keep = i == advanced.models.count() - 1
        advanced.models.item(i).setCheckState(
            Qt.CheckState.Checked if keep else Qt.CheckState.Unchecked
        )
    advanced.setChecked(True)
    advanced.n_prompt.setValue(16)
    advanced.n_gen.setValue(4)
    advanced.reps.setValue(1)
    qtbot.mouseClick(advanced.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.controller.bench_running, timeout=10_000)
    qtbot.waitUntil(lambda: not window.controller.bench_running, timeout=FLOW_TIMEOUT_MS)
    records = window.sweep_model.records
    assert [(r["test"], r["status"]) for r in records] == [("pp", "ok"), ("tg", "ok")]
    assert {r["model_filename"] for r in records} == {str(tiny_moe_twin)}
    assert {r["source"] for r in records} == {"twin"}
