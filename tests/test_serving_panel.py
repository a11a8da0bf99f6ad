"""The GUI's Serving view, offscreen: a Job starts a (stand-in) llama-server, loads it level by
level, and the panel's timer draws each level's percentiles; Stop stops the load and the server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from fitbench.core.serve import server as server_module
from fitbench.core.serve.records import read_levels
from fitbench.core.serve.server import ENV_VAR
from fitbench.ui.serving_panel import COLUMNS, ServingPanel, parse_levels

STANDIN = Path(__file__).with_name("serve_standin.py")


@pytest.fixture
def standin_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "llama-server"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" "$@"\n')
    exe.chmod(0o755)
    monkeypatch.setenv(ENV_VAR, str(exe))


def _panel(qtbot: QtBot, twin: Path, levels: str) -> ServingPanel:
    panel = ServingPanel()
    qtbot.addWidget(panel)
    panel.model_edit.setText(str(twin))
    panel.levels_edit.setText(levels)
    panel.prompt_spin.setValue(8)
    panel.max_tokens_spin.setValue(5)
    panel.ngl_spin.setValue(0)
    return panel


def test_levels_parse() -> None:
    assert parse_levels("4, 1,2") == [1, 2, 4]
    with pytest.raises(ValueError):
        parse_levels("0,2")


def test_levels_are_drawn_as_they_finish(
    qtbot: QtBot, standin_server: None, tiny_dense_twin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FITBENCH_STANDIN_CONFIG", json.dumps({"ttft_ms": 40, "itl_ms": 10}))
    panel = _panel(qtbot, tiny_dense_twin, "1,2,4")
    panel.start_button.click()
    assert not panel.start_button.isEnabled() and panel.stop_button.isEnabled()
    qtbot.waitUntil(lambda: panel.status.text().startswith("done"), timeout=60_000)
    assert panel.table.rowCount() == 3 and panel.table.columnCount() == len(COLUMNS)
    assert [panel.table.item(r, 0).text() for r in range(3)] == ["1", "2", "4"]
    ttft_p50 = float(panel.table.item(0, COLUMNS.index("TTFT p50")).text())
    itl_p50 = float(panel.table.item(0, COLUMNS.index("ITL p50")).text())
    assert 36 <= ttft_p50 <= 60 and 9 <= itl_p50 <= 13  # the stand-in's 40 ms and 10 ms
    # every row says its numbers were measured on a twin, with the real file's band, and each
    # number's tooltip gives the twin's caveat
    basis = panel.table.item(0, COLUMNS.index("Basis")).text()
    assert basis.startswith("twin (real file ±"), basis
    assert panel.table.item(2, COLUMNS.index("tok/s")).toolTip().startswith("twin: ")
    xs, ys = panel.curves["itl_p95"].getData()
    assert list(xs) == [1.0, 2.0, 4.0] and all(y > 0 for y in ys)
    stored = read_levels()
    assert [line["level"]["concurrency"] for line in stored] == [1, 2, 4]
    assert stored[0]["deployment"]["source"] == "twin" and stored[0]["basis"] == "measured-twin"
    assert panel.start_button.isEnabled()


def test_stop_ends_the_load_and_the_server(
    qtbot: QtBot, standin_server: None, tiny_dense_twin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FITBENCH_STANDIN_CONFIG", json.dumps({"ttft_ms": 50, "itl_ms": 150}))
    panel = _panel(qtbot, tiny_dense_twin, "1,2")
    panel.max_tokens_spin.setValue(10)  # 1.4 s per request, 4 of them in the first level
    panel.start_button.click()
    # live: the running level's percentiles appear before it ends
    qtbot.waitUntil(lambda: panel.table.rowCount() == 1, timeout=30_000)
    assert panel.table.item(0, 0).text() == "1 (running)"
    assert float(panel.table.item(0, COLUMNS.index("ITL p50")).text()) == pytest.approx(150, 0.2)
    assert len(server_module._RUNNING) == 1
    panel.stop_button.click()
    qtbot.waitUntil(lambda: panel.status.text().startswith("stopped"), timeout=15_000)
    assert panel.wait(5000)
    assert panel.table.rowCount() == 0 and read_levels() == []
    assert not server_module._RUNNING  # the server was stopped, not left running
