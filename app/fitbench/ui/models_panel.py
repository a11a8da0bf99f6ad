"""The Models panel: every catalog quant with its size, fit badge, compatibility and download."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from fitbench.ui import present
from fitbench.ui.core_api import is_local_spec

COLUMNS = ("Model", "Quant", "Size", "Fit on this machine", "llama.cpp", "On disk", "Download")
BADGE_COLOURS = {"gpu": "#1e8449", "partial": "#b9770e", "cpu": "#2e86c1", "bad": "#c0392b"}


def parse_model_spec(text: str) -> tuple[str, str] | Path:
    """A local .gguf path, or a Hub 'owner/repo/path/in/repo.gguf' -> (repo, file)."""
    text = text.strip()
    if not text:
        raise ValueError("Enter a local GGUF file or a Hub repo/file (owner/repo/file.gguf)")
    path = Path(text).expanduser()
    if is_local_spec(text):
        if not path.is_file():
            raise ValueError(f"{path}: no such file")
        return path
    parts = text.removeprefix("hf://").split("/")
    if len(parts) < 3 or not all(parts):
        raise ValueError(f"{text!r}: expected owner/repo/file.gguf or a path to a local file")
    if not parts[-1].lower().endswith((".gguf", ".gguf-split-a")):
        raise ValueError(f"{text!r}: the file must be a .gguf file")
    return "/".join(parts[:2]), "/".join(parts[2:])


class AddModelDialog(QDialog):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Add model")
        layout = QVBoxLayout(self)
        layout.addWidget(
            QLabel("A local GGUF file, or a file on the Hugging Face Hub as owner/repo/file.gguf")
        )
        row = QHBoxLayout()
        self.spec = QLineEdit()
        self.spec.setPlaceholderText("~/models/x.gguf   or   TheBloke/Llama-2-70B-Chat-GGUF/…gguf")
        browse = QPushButton("&Browse…")
        browse.clicked.connect(self._browse)
        row.addWidget(self.spec, 1)
        row.addWidget(browse)
        layout.addLayout(row)
        self.error = QLabel("")
        self.error.setObjectName("error")
        self.error.setWordWrap(True)
        layout.addWidget(self.error)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.result_spec: tuple[str, str] | Path | None = None

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "GGUF file", str(Path.home()), "GGUF (*.gguf)")
        if path:
            self.spec.setText(path)

    def _accept(self) -> None:
        try:
            self.result_spec = parse_model_spec(self.spec.text())
        except ValueError as exc:
            self.error.setText(str(exc))
            return
        self.accept()


class DownloadCell(QWidget):
    """Progress bar, bytes/rate/ETA and one button that is Download, Cancel or Resume."""

    def __init__(self, key: tuple[str, str], panel: ModelsPanel) -> None:
        super().__init__()
        self.key = key
        self.panel = panel
        layout = QHBoxLayout(self)
        layout.setContentsMargins(2, 0, 2, 0)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setTextVisible(False)
        self.bar.setMaximumWidth(120)
        self.bar.hide()
        self.text = QLabel("")
        self.button = QPushButton("Download")
        self.button.clicked.connect(self._clicked)
        layout.addWidget(self.bar)
        layout.addWidget(self.text, 1)
        layout.addWidget(self.button)
        self.state = "idle"  # idle | running | paused | done

    def _clicked(self) -> None:
        if self.state == "running":
            self.panel.cancel_download.emit(*self.key)
        else:
            self.panel.download_requested.emit(*self.key)

    def set_state(self, state: str, text: str = "") -> None:
        self.state = state
        self.button.setText(
            {"idle": "Download", "running": "Cancel", "paused": "Resume", "done": "Downloaded"}[
                state
            ]
        )
        self.button.setEnabled(state != "done")
        self.bar.setVisible(state in ("running", "paused"))
        self.text.setText(text)

    def set_progress(
        self, done: int, total: int | None, rate: float | None, eta: float | None
    ) -> None:
        if total:
            self.bar.setValue(int(1000 * done / total))
        self.text.setText(
            f"{present.fmt_gb(done)} of {present.fmt_gb(total)}, {present.fmt_rate(rate)}, "
            f"{present.fmt_duration(eta)} left"
        )


class ModelsPanel(QWidget):
    download_requested = Signal(str, str)  # model id, quant
    cancel_download = Signal(str, str)
    add_requested = Signal(object)  # (repo, file) or Path
    refresh_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.status = QLabel("Planning every quantization against this machine…")
        self.status.setWordWrap(True)
        self.add_button = QPushButton("&Add model…")
        self.add_button.setToolTip("A local GGUF file or a GGUF file on the Hugging Face Hub")
        self.add_button.clicked.connect(self._add_clicked)
        top.addWidget(self.status, 1)
        top.addWidget(self.add_button)
        layout.addLayout(top)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        layout.addWidget(self.table, 1)
        self.rows: dict[tuple[str, str], int] = {}
        self.cells: dict[tuple[str, str], DownloadCell] = {}

    def _add_clicked(self) -> None:
        dialog = AddModelDialog(self)
        if dialog.exec() == QDialog.DialogCode.Accepted and dialog.result_spec is not None:
            self.add_requested.emit(dialog.result_spec)

    def set_machine(self, what_if: str) -> None:
        """The fit column says which machine its badges are for."""
        title = f"Fit with {what_if} (predicted)" if what_if else COLUMNS[3]
        header = self.table.horizontalHeaderItem(3)
        if header is not None:
            header.setText(title)

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def upsert_row(self, row: Mapping[str, Any]) -> None:
        """One quant of one model; keys as produced by the planning job (see controller)."""
        key = (str(row["model_id"]), str(row["quant"]))
        if key not in self.rows:
            self.rows[key] = self.table.rowCount()
            self.table.insertRow(self.rows[key])
        i = self.rows[key]
        badge = QTableWidgetItem(str(row.get("badge", "…")))
        badge.setToolTip(str(row.get("badge_reason", "")))
        colour = BADGE_COLOURS.get(str(row.get("badge_kind", "")))
        if colour:
            badge.setForeground(QColor(colour))
        compatible = row.get("compatible")
        compat = QTableWidgetItem(
            "compatible" if compatible else "…" if compatible is None else "incompatible"
        )
        compat.setToolTip(str(row.get("compat_reason", "")))
        if compatible is False:
            compat.setForeground(QColor(BADGE_COLOURS["bad"]))
        local = row.get("local_path")
        items = (
            QTableWidgetItem(str(row.get("name", key[0]))),
            QTableWidgetItem(key[1]),
            QTableWidgetItem(present.fmt_gb(row.get("size"))),
            badge,
            compat,
            QTableWidgetItem("yes" if local else "no (twin used)"),
        )
        for j, item in enumerate(items):
            self.table.setItem(i, j, item)
        if local:
            items[5].setToolTip(str(local))
        cell = self.cells.get(key)
        if cell is None:
            cell = DownloadCell(key, self)
            self.cells[key] = cell
            self.table.setCellWidget(i, len(COLUMNS) - 1, cell)
        if local:
            cell.set_state("done")
        elif row.get("downloadable", True) is False:
            cell.set_state("idle", "")
            cell.button.setEnabled(False)
            cell.button.setToolTip(str(row.get("compat_reason", "not downloadable")))

    def badge_text(self, model_id: str, quant: str) -> str:
        item = self.table.item(self.rows[(model_id, quant)], 3)
        return item.text() if item is not None else ""

    # download progress, fed by the controller from the download job's signals
    def download_started(self, model_id: str, quant: str) -> None:
        self.cells[(model_id, quant)].set_state("running", "starting…")

    def download_progress(self, model_id: str, quant: str, p: Mapping[str, Any]) -> None:
        self.cells[(model_id, quant)].set_progress(
            int(p.get("done_bytes", 0)), p.get("total_bytes"), p.get("rate_bps"), p.get("eta_s")
        )

    def download_stopped(self, model_id: str, quant: str, why: str) -> None:
        self.cells[(model_id, quant)].set_state("paused", why)

    def download_done(self, model_id: str, quant: str, path: str) -> None:
        cell = self.cells[(model_id, quant)]
        cell.set_state("done", "")
        item = self.table.item(self.rows[(model_id, quant)], 5)
        if item is not None:  # every model row has its "on disk" cell
            item.setText("yes")
            item.setToolTip(path)
