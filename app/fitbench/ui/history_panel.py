"""The History panel: past runs from the results store, compared side by side."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from fitbench.ui import present

RUN_COLUMNS = (
    ("run_id", "Run"),
    ("started", "Started"),
    ("status", "Status"),
    ("n_records", "Results"),
    ("hardware", "Machine fingerprint"),
)


class HistoryPanel(QWidget):
    refresh_requested = Signal()
    compare_requested = Signal(object)  # list of run ids

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.status = QLabel(
            "Past runs from the results store. Select two to compare them side by side (speed "
            "and memory changes), or more to see them together."
        )
        self.status.setWordWrap(True)
        self.refresh_button = QPushButton("&Reload")
        self.refresh_button.clicked.connect(self.refresh_requested)
        self.compare_button = QPushButton("Co&mpare selected")
        self.compare_button.setEnabled(False)
        self.compare_button.clicked.connect(self._compare_clicked)
        top.addWidget(self.status, 1)
        top.addWidget(self.refresh_button)
        top.addWidget(self.compare_button)
        layout.addLayout(top)
        splitter = QSplitter(Qt.Orientation.Vertical)
        self.runs = QTableWidget(0, len(RUN_COLUMNS))
        self.runs.setHorizontalHeaderLabels([title for _, title in RUN_COLUMNS])
        self.runs.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.runs.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.runs.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.runs.horizontalHeader().setStretchLastSection(True)
        self.runs.itemSelectionChanged.connect(self._selection_changed)
        self.comparison = QTableWidget(0, 0)
        self.comparison.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        splitter.addWidget(self.runs)
        splitter.addWidget(self.comparison)
        layout.addWidget(splitter, 1)
        self.run_ids: list[str] = []

    def set_runs(self, runs: list[Mapping[str, Any]]) -> None:
        self.run_ids = [str(r.get("run_id", "")) for r in runs]
        self.runs.setRowCount(len(runs))
        for i, run in enumerate(runs):
            for j, (key, _title) in enumerate(RUN_COLUMNS):
                value = run.get(key, "")
                if isinstance(value, (list, tuple)):
                    value = ", ".join(map(str, value))
                self.runs.setItem(i, j, QTableWidgetItem(str(value)))
        self.runs.resizeColumnsToContents()
        self.status.setText(
            f"{len(runs)} past runs in the results store. Select two to compare them side by "
            "side (speed and memory changes, older to newer), or more to see them together."
            if runs
            else "No runs in the results store yet."
        )

    def set_error(self, message: str) -> None:
        self.status.setText(f"Cannot read the results store: {message}")

    def selected_run_ids(self) -> list[str]:
        # the list is newest first; compared oldest first, so a change reads older -> newer
        rows = sorted({index.row() for index in self.runs.selectionModel().selectedRows()})
        return [self.run_ids[r] for r in reversed(rows) if r < len(self.run_ids)]

    def _selection_changed(self) -> None:
        self.compare_button.setEnabled(len(self.selected_run_ids()) >= 1)

    def _compare_clicked(self) -> None:
        self.compare_requested.emit(self.selected_run_ids())

    def set_comparison(self, records_by_run: Mapping[str, list[Mapping[str, Any]]]) -> None:
        columns, rows = present.compare_runs(records_by_run)
        self.comparison.clear()
        self.comparison.setColumnCount(len(columns) + 1)
        self.comparison.setHorizontalHeaderLabels(["Configuration : test", *columns])
        self.comparison.setRowCount(len(rows))
        for i, (label, cells) in enumerate(rows):
            self.comparison.setItem(i, 0, QTableWidgetItem(label))
            for j, cell in enumerate(cells, 1):
                item = QTableWidgetItem(cell)
                if columns[j - 1].startswith("Δ") and cell[:1] in "+−-":
                    item.setToolTip("the later column minus the earlier one (older run first)")
                self.comparison.setItem(i, j, item)
        self.comparison.resizeColumnsToContents()
        self.comparison.horizontalHeader().setSectionResizeMode(
            0, QHeaderView.ResizeMode.ResizeToContents
        )
