"""The Machine panel: what FitBench detected, and what a person must know about it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from fitbench.ui import present


class MachinePanel(QWidget):
    refresh_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        top = QHBoxLayout()
        self.status = QLabel("Detecting hardware…")
        self.status.setObjectName("machineStatus")
        self.refresh_button = QPushButton("&Detect again")
        self.refresh_button.setToolTip("Detect GPUs, CPU, RAM, disk and llama.cpp's backends again")
        self.refresh_button.clicked.connect(self.refresh_requested)
        top.addWidget(self.status, 1)
        top.addWidget(self.refresh_button)
        layout.addLayout(top)
        self.warnings_box = QGroupBox("Warnings")
        self.warnings_layout = QVBoxLayout(self.warnings_box)
        self.warnings_box.hide()
        layout.addWidget(self.warnings_box)
        details = QGroupBox("Detected")
        self.form = QFormLayout(details)
        layout.addWidget(details)
        layout.addStretch(1)
        self.hardware: dict[str, Any] | None = None
        self.warning_labels: list[QLabel] = []

    def set_busy(self) -> None:
        self.status.setText("Detecting hardware…")
        self.refresh_button.setEnabled(False)

    def set_error(self, message: str) -> None:
        self.refresh_button.setEnabled(True)
        self.status.setText(f"Hardware detection failed: {message}")

    def set_hardware(self, hw: Mapping[str, Any]) -> None:
        self.hardware = dict(hw)
        self.refresh_button.setEnabled(True)
        self.status.setText("Hardware detected.")
        while self.form.rowCount():
            self.form.removeRow(0)
        for label, value in present.hardware_rows(hw):
            text = QLabel(value)
            text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            text.setWordWrap(True)
            self.form.addRow(f"{label}:", text)
        for old in self.warning_labels:
            self.warnings_layout.removeWidget(old)
            old.deleteLater()
        self.warning_labels = []
        for warning in present.hardware_warnings(hw):
            warning_label = QLabel(f"⚠ {warning}")
            warning_label.setObjectName("warning")
            warning_label.setWordWrap(True)
            warning_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.warnings_layout.addWidget(warning_label)
            self.warning_labels.append(warning_label)
        self.warnings_box.setVisible(bool(self.warning_labels))

    @property
    def warnings(self) -> list[str]:
        return [label.text() for label in self.warning_labels]
