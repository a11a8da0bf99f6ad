"""The Benchmark panel: one primary button, a progress line, results as they arrive, live plots.

The panel only displays a SweepModel and asks for work through signals; the controller runs it.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from fitbench.ui import present
from fitbench.ui.plots import LivePlots
from fitbench.ui.sweep_model import SweepModel

COLUMNS = ("Configuration", "Measured on", "pp t/s", "tg t/s", "TTFT", "RAM peak", "VRAM peak")
TWIN_NOTE = (
    "Without the real 26–41 GB files FitBench measures <b>twins</b>: GGUF files with the real "
    "tensor layout and quantization and random weights. Every twin result is labelled as such. "
    "Where even a twin does not fit, a <b>scaled twin</b> (a slice of a few blocks) is measured "
    "and the full model's speed is <b>predicted</b> from it (≈, the slice's own speed in "
    "“Measured on”)."
)


def parse_int_list(text: str, name: str) -> list[int]:
    """'0, 8,16' -> [0, 8, 16]; a clear error naming the field otherwise."""
    out: list[int] = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(int(part))
        except ValueError:
            raise ValueError(f"{name}: {part!r} is not a whole number") from None
        if out[-1] < 0:
            raise ValueError(f"{name}: {part!r} must not be negative")
    return out


class AdvancedSweep(QGroupBox):
    """Custom sweeps: models, placements and test sizes, as `fitbench bench` takes them."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Advanced: custom sweep", parent)
        self.setCheckable(True)
        self.setChecked(False)
        outer = QVBoxLayout(self)
        self.body = QWidget()
        form = QFormLayout(self.body)
        self.models = QListWidget()
        self.models.setMaximumHeight(70)
        self.models.setToolTip("Models to measure (twins when the file is not downloaded)")
        self.ngl = QLineEdit("0")
        self.ngl.setToolTip("GPU layers to try, comma separated (llama-bench -ngl)")
        self.ncmoe = QLineEdit("")
        self.ncmoe.setToolTip("Experts of the first N layers kept on the CPU (llama-bench -ncmoe)")
        self.batch = QLineEdit("")
        self.batch.setToolTip(
            "Parallel sequences B for the aggregate throughput test, e.g. 1,4,16 (empty: none)"
        )
        self.n_prompt = QSpinBox()
        self.n_prompt.setRange(0, 16384)
        self.n_prompt.setValue(256)
        self.n_gen = QSpinBox()
        self.n_gen.setRange(0, 4096)
        self.n_gen.setValue(64)
        self.reps = QSpinBox()
        self.reps.setRange(1, 50)
        self.reps.setValue(2)
        self.layers = QSpinBox()
        self.layers.setRange(0, 200)
        self.layers.setSpecialValueText("full model")
        self.layers.setToolTip("Scaled twin: measure K blocks and extrapolate (0: all layers)")
        for text, widget in (
            ("Models:", self.models),
            ("GPU layers (-ngl):", self.ngl),
            ("Experts on CPU (-ncmoe):", self.ncmoe),
            ("Batch sizes:", self.batch),
            ("Prompt tokens (-p):", self.n_prompt),
            ("Generated tokens (-n):", self.n_gen),
            ("Repetitions (-r):", self.reps),
            ("Twin layers:", self.layers),
        ):
            form.addRow(text, widget)
        self.run_button = QPushButton("Run custom sweep")
        form.addRow("", self.run_button)
        self.error = QLabel("")
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        form.addRow("", self.error)
        outer.addWidget(self.body)
        self.body.setVisible(False)
        self.toggled.connect(self.body.setVisible)

    def set_models(self, models: list[tuple[str, str]]) -> None:
        self.models.clear()
        for model_id, name in models:
            item = QListWidgetItem(name)
            item.setData(Qt.ItemDataRole.UserRole, model_id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            self.models.addItem(item)

    def params(self) -> dict[str, Any]:
        """The sweep as plain values; raises ValueError naming the field that is wrong."""
        model_ids = [
            str(self.models.item(i).data(Qt.ItemDataRole.UserRole))
            for i in range(self.models.count())
            if self.models.item(i).checkState() == Qt.CheckState.Checked
        ]
        if not model_ids:
            raise ValueError("Models: tick at least one model")
        return {
            "models": model_ids,
            "n_gpu_layers": parse_int_list(self.ngl.text(), "GPU layers") or [0],
            "n_cpu_moe": parse_int_list(self.ncmoe.text(), "Experts on CPU"),
            "batch": parse_int_list(self.batch.text(), "Batch sizes"),
            "n_prompt": self.n_prompt.value(),
            "n_gen": self.n_gen.value(),
            "repetitions": self.reps.value(),
            "twin_layers": self.layers.value() or None,
        }


class BenchPanel(QWidget):
    quick_requested = Signal()
    custom_requested = Signal(object)  # dict from AdvancedSweep.params()
    cancel_requested = Signal()

    def __init__(self, model: SweepModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.run_button = QPushButton("Benchmark my machine")
        self.run_button.setObjectName("primary")
        self.run_button.setDefault(True)
        self.run_button.setMinimumHeight(40)
        self.run_button.setToolTip(
            "Quick sweep of both models over the placements that fit (a few minutes)"
        )
        self.run_button.clicked.connect(self.quick_requested)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setShortcut(QKeySequence(Qt.Key.Key_Escape))
        self.cancel_button.setToolTip("Stop the benchmark (Esc); results so far are kept")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_requested)
        top.addWidget(self.run_button, 1)
        top.addWidget(self.cancel_button)
        layout.addLayout(top)
        note = QLabel(TWIN_NOTE)
        note.setWordWrap(True)
        layout.addWidget(note)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(False)
        self.progress_line = QLabel("Press “Benchmark my machine” to start.")
        self.progress_line.setObjectName("progressLine")
        self.progress_line.setWordWrap(True)
        self.notes = QLabel("")
        self.notes.setWordWrap(True)
        self.notes.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.progress)
        layout.addWidget(self.progress_line)
        layout.addWidget(self.notes)
        self.advanced = AdvancedSweep()
        self.advanced.run_button.clicked.connect(self._custom_clicked)
        layout.addWidget(self.advanced)
        splitter = QSplitter(Qt.Orientation.Vertical)
        self.table = QTableWidget(0, len(COLUMNS) + 1)
        self.table.setHorizontalHeaderLabels([*COLUMNS, "Status"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setColumnWidth(0, 300)
        self.table.setColumnWidth(1, 330)
        self.table.setWordWrap(True)
        self.plots = LivePlots(model)
        splitter.addWidget(self.table)
        splitter.addWidget(self.plots)
        splitter.setStretchFactor(1, 3)
        layout.addWidget(splitter, 1)
        self._drawn_version = -1
        self._table_signature: tuple[Any, ...] = ()
        self.timer = QTimer(self)
        self.timer.setInterval(100)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    def _custom_clicked(self) -> None:
        try:
            params = self.advanced.params()
        except ValueError as exc:
            self.advanced.error.setText(str(exc))
            return
        self.advanced.error.setText("")
        self.custom_requested.emit(params)

    def set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.advanced.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.plots.clear()
            self._drawn_version = -1
            self._table_signature = ()
        else:
            self.refresh()
            self.plots.refresh()

    def show_message(self, text: str) -> None:
        self.model.set_stage(text)

    def refresh(self) -> None:
        """Timer-driven: the progress line ticks down even between events."""
        self.progress.setValue(int(self.model.fraction_done * 1000))
        self.progress_line.setText(self.model.progress_text())
        if self.model.version == self._drawn_version:
            return
        self._drawn_version = self.model.version
        rows = list(self.model.rows.values())
        # memory samples bump the version 20 times a second; the table only changes with results
        signature = (
            len(self.model.notes),
            len(self.model.records),
            tuple((r.config_id, r.status) for r in rows),
        )
        if signature == self._table_signature:
            return
        self._table_signature = signature
        self.notes.setText("\n".join(f"• {note}" for note in self.model.notes))
        self.notes.setVisible(bool(self.model.notes))
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            values = (
                row.label,
                row.measured_on,
                row.speed_text("pp"),
                row.speed_text("tg"),
                row.ttft_text,
                present.fmt_bytes(row.ram_peak_bytes),
                present.fmt_bytes(row.vram_peak_bytes),
                row.status_words,
            )
            failed = row.status not in ("ok", "running")
            for j, value in enumerate(values):
                item = QTableWidgetItem(value)
                if failed:
                    item.setForeground(QColor("#c0392b"))
                    item.setToolTip(row.error or row.status)
                else:
                    tips = []
                    if row.scaled and j in (2, 3):
                        fig = row.pp_full if j == 2 else row.tg_full
                        tips.append(fig.text if fig is not None else "")
                    if j == 1:
                        tips.append(row.fidelity_text())
                    elif j in (2, 3):
                        tips.append(row.fidelity_text("pp" if j == 2 else "tg"))
                    if any(tips):
                        item.setToolTip("\n".join(t for t in tips if t))
                self.table.setItem(i, j, item)

    def failed_rows(self) -> list[str]:
        return [
            r.status_words for r in self.model.rows.values() if r.status not in ("ok", "running")
        ]
