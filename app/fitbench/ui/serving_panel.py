"""The Serving view: start llama-server on a model, put 1..N users on it, watch TTFT and ITL
percentiles and throughput per concurrency level as each level finishes.

The work is a Job (ui/jobs) calling core_api.serve_and_load on a pool thread; its progress
events (each finished level, and the running level's percentiles so far, twice a second) are
queued and a GUI-thread timer draws them, so a burst of events never repaints more
than the timer allows. Stop cancels the job, which stops the load and then the server; the server
is also stopped when the app quits (core/serve/server's atexit, and aboutToQuit here).
"""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QCoreApplication, QThreadPool, QTimer
from PySide6.QtWidgets import (
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from fitbench.ui import core_api
from fitbench.ui.jobs import Job, JobContext
from fitbench.ui.plots import MODEL_COLOURS

REFRESH_MS = 200
COLUMNS = (
    "Users",
    "OK",
    "Failed",
    "TTFT p50",
    "TTFT p95",
    "TTFT p99",
    "ITL p50",
    "ITL p95",
    "ITL p99",
    "req/s",
    "tok/s",
    "Basis",
)


def parse_levels(text: str) -> list[int]:
    levels = sorted({int(p) for p in text.replace(" ", "").split(",") if p})
    if not levels or levels[0] < 1:
        raise ValueError("levels: numbers of users >= 1, e.g. 1,2,4,8")
    return levels


def level_row(level: dict[str, Any]) -> list[str]:
    def ms(summary: dict[str, Any], key: str) -> str:
        value = summary.get(key)
        return "-" if value is None else f"{value:.1f}"

    return [
        str(level["concurrency"]),
        str(level["ok"]),
        str(level["failed"]),
        *(ms(level["ttft_ms"], k) for k in ("p50", "p95", "p99")),
        *(ms(level["itl_ms"], k) for k in ("p50", "p95", "p99")),
        f"{level.get('requests_per_s') or 0:.2f}",
        f"{level.get('output_tokens_per_s') or 0:.1f}",
        str(level.get("basis") or ""),
    ]


class ServingPanel(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self.job: Job | None = None
        self.levels: list[dict[str, Any]] = []
        self._pending: list[tuple[str, Any]] = []
        self.partial: dict[str, Any] | None = None  # the level running now, so far

        self.model_edit = QLineEdit("mixtral-8x7b-instruct")
        self.model_edit.setToolTip("a catalog id or the path of a GGUF file")
        self.levels_edit = QLineEdit("1,2,4,8")
        self.prompt_spin = _spin(1, 32768, 128)
        self.max_tokens_spin = _spin(1, 8192, 32)
        self.ngl_spin = _spin(-1, 999, -1)
        self.ngl_spin.setSpecialValueText("all")
        form = QFormLayout()
        form.addRow("Model", self.model_edit)
        form.addRow("Users per level", self.levels_edit)
        form.addRow("Prompt tokens", self.prompt_spin)
        form.addRow("Output tokens", self.max_tokens_spin)
        form.addRow("Layers on the GPU", self.ngl_spin)
        self.start_button = QPushButton("Serve and measure")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        self.status = QLabel(
            "Every number here is measured: llama-server under fitbench load (closed loop)."
        )
        self.status.setWordWrap(True)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)

        self.latency_plot = pg.PlotWidget()
        self.throughput_plot = pg.PlotWidget()
        lat, thr = self.latency_plot.getPlotItem(), self.throughput_plot.getPlotItem()
        for plot, title, y in (
            (lat, "Latency per number of users", "ms"),
            (thr, "Throughput per number of users", "output tokens/s"),
        ):
            plot.setTitle(title)
            plot.setLabel("bottom", "concurrent users")
            plot.setLabel("left", y)
            plot.showGrid(x=True, y=True, alpha=0.25)
            plot.addLegend(offset=(10, 10))
        self.curves = {
            "ttft_p99": lat.plot([], [], name="TTFT p99", pen=pg.mkPen(MODEL_COLOURS[0], width=2),
                                 symbol="o"),
            "ttft_p50": lat.plot([], [], name="TTFT p50", pen=pg.mkPen(MODEL_COLOURS[0], width=1,
                                 style=pg.QtCore.Qt.PenStyle.DashLine)),
            "itl_p95": lat.plot([], [], name="ITL p95", pen=pg.mkPen(MODEL_COLOURS[1], width=2),
                                symbol="s"),
            "itl_p50": lat.plot([], [], name="ITL p50", pen=pg.mkPen(MODEL_COLOURS[1], width=1,
                                style=pg.QtCore.Qt.PenStyle.DashLine)),
            "tokens": thr.plot([], [], name="output tokens/s",
                               pen=pg.mkPen(MODEL_COLOURS[2], width=2), symbol="o"),
        }  # fmt: skip

        plots = QGridLayout()
        plots.addWidget(self.latency_plot, 0, 0)
        plots.addWidget(self.throughput_plot, 0, 1)
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        top.addLayout(form, 1)
        top.addStretch(1)
        layout.addLayout(top)
        layout.addLayout(buttons)
        layout.addWidget(self.status)
        layout.addWidget(self.table, 1)
        layout.addLayout(plots, 2)

        self.timer = QTimer(self)
        self.timer.setInterval(REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        app = QCoreApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.stop)

    # -- the job --

    def start(self) -> None:
        if self.job is not None and not self.job.is_done:
            return
        try:
            levels = parse_levels(self.levels_edit.text())
        except ValueError as exc:
            self.status.setText(str(exc))
            return
        spec = self.model_edit.text().strip()
        prompt, max_tokens = self.prompt_spin.value(), self.max_tokens_spin.value()
        ngl = self.ngl_spin.value()

        def work(ctx: JobContext) -> dict[str, Any]:
            return core_api.serve_and_load(
                spec,
                levels=levels,
                prompt_tokens=prompt,
                max_tokens=max_tokens,
                n_gpu_layers=999 if ngl < 0 else ngl,
                cancel=ctx.cancel,
                on_level=lambda level: ctx.progress(("level", level)),
                on_partial=lambda level: ctx.progress(("partial", level), droppable=True),
                on_status=lambda text: ctx.progress(("status", text)),
            )

        self.levels.clear()
        self.table.setRowCount(0)
        self._draw()
        self.job = Job(work, name=f"serve {spec}")
        self.job.progress.connect(self._pending.append)
        self.job.result.connect(lambda r: self._pending.append(("done", r)))
        self.job.error.connect(lambda e: self._pending.append(("error", e)))
        self.job.cancelled.connect(lambda: self._pending.append(("cancelled", None)))
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.status.setText(f"starting llama-server on {spec} ...")
        self.timer.start()
        self.job.start(self.pool)

    def stop(self) -> None:
        if self.job is not None and not self.job.is_done:
            self.job.cancel()
            self.status.setText("stopping: the current level is abandoned, then the server")

    def wait(self, msecs: int = 30000) -> bool:
        """For tests and shutdown: wait for the job's thread."""
        return bool(self.pool.waitForDone(msecs))

    # -- drawing, on the GUI thread --

    def refresh(self) -> None:
        events, self._pending[:] = list(self._pending), []
        changed = False
        for kind, value in events:
            if kind == "level":
                self.levels.append(value)
                self.partial = None
                changed = True
            elif kind == "partial":
                self.partial = value
                changed = True
            elif kind == "status":
                self.status.setText(str(value))
            elif kind in ("done", "error", "cancelled"):
                self._finished(kind, value)
        if changed:
            self._draw()

    def _finished(self, kind: str, value: Any) -> None:
        self.timer.stop()
        self.partial = None
        self._draw()
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        if kind == "done":
            skipped = value.get("skipped") or []
            note = f"; skipped {skipped} users (a level took over 2 minutes)" if skipped else ""
            dep = value.get("deployment") or {}
            self.status.setText(
                f"done: {len(self.levels)} levels of {dep.get('model_id')} {dep.get('quant')} "
                f"({dep.get('source')}), measured and stored{note}"
            )
        elif kind == "error":
            self.status.setText(f"failed: {value}")
        else:
            self.status.setText("stopped; the levels above were measured and stored")

    def _draw(self) -> None:
        rows = [level_row(level) for level in self.levels]
        if self.partial is not None:  # live: the requests of the running level finished so far
            running = level_row(self.partial)
            running[0] += " (running)"
            rows.append(running)
        self.table.setRowCount(len(rows))
        details = [str(level.get("basis_detail") or "") for level in self.levels]
        if self.partial is not None:
            details.append(str(self.partial.get("basis_detail") or ""))
        for row, cells in enumerate(rows):
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if details[row]:
                    item.setToolTip(details[row])  # the twin's caveat, on every number
                self.table.setItem(row, col, item)
        xs = [float(lv["concurrency"]) for lv in self.levels]

        def ys(key: str, pct: str) -> list[float]:
            return [float(lv[key].get(pct) or 0.0) for lv in self.levels]

        self.curves["ttft_p99"].setData(xs, ys("ttft_ms", "p99"))
        self.curves["ttft_p50"].setData(xs, ys("ttft_ms", "p50"))
        self.curves["itl_p95"].setData(xs, ys("itl_ms", "p95"))
        self.curves["itl_p50"].setData(xs, ys("itl_ms", "p50"))
        self.curves["tokens"].setData(
            xs, [float(lv.get("output_tokens_per_s") or 0.0) for lv in self.levels]
        )


def _spin(low: int, high: int, value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    return box
