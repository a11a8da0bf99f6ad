"""The Recommendation panel: the verdict, the numbers with their basis, alternatives, recipe."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont, QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from fitbench.ui import present

RECIPES = (
    ("llama_server", "llama-server"),
    ("llama_cpp_python", "llama-cpp-python"),
    ("ollama", "Ollama"),
    ("lm_studio", "LM Studio"),
)


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_text(v)}" for k, v in value.items() if k != "basis")
    if isinstance(value, (list, tuple)):
        return ", ".join(_text(v) for v in value)
    return "–" if value is None else str(value)


class AdvicePanel(QWidget):
    export_requested = Signal(object)  # Path

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        outer = QVBoxLayout(self)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        outer.addWidget(scroll)
        body = QWidget()
        scroll.setWidget(body)
        layout = QVBoxLayout(body)
        self.verdict = QLabel("No recommendation yet: run “Benchmark my machine” first.")
        self.verdict.setObjectName("verdict")
        font = QFont(self.verdict.font())
        font.setPointSizeF(font.pointSizeF() * 1.35)
        font.setBold(True)
        self.verdict.setFont(font)
        self.verdict.setWordWrap(True)
        self.verdict.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.verdict)
        self.choice = QLabel("")
        self.choice.setWordWrap(True)
        layout.addWidget(self.choice)

        self.numbers_box = QGroupBox("Expected on this machine")
        self.expected = QFormLayout(self.numbers_box)
        layout.addWidget(self.numbers_box)
        self.reasons = QLabel("")
        self.reasons.setWordWrap(True)
        self.reasons.setTextFormat(Qt.TextFormat.RichText)
        reasons_box = QGroupBox("Why")
        QVBoxLayout(reasons_box).addWidget(self.reasons)
        layout.addWidget(reasons_box)
        self.moe_vs_dense = QLabel("")
        self.moe_vs_dense.setWordWrap(True)
        moe_box = QGroupBox("MoE vs dense on this machine")
        QVBoxLayout(moe_box).addWidget(self.moe_vs_dense)
        layout.addWidget(moe_box)

        self.alt_box = QGroupBox("Alternatives")
        self.alternatives = QTableWidget(0, 0)
        self.alternatives.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.alternatives.setMinimumHeight(140)
        QVBoxLayout(self.alt_box).addWidget(self.alternatives)
        layout.addWidget(self.alt_box)

        self.recipe_box = QGroupBox("Deployment recipe")
        recipe_layout = QVBoxLayout(self.recipe_box)
        self.recipe_tabs = QTabWidget()
        self.recipe_texts: dict[str, QPlainTextEdit] = {}
        self.copy_buttons: dict[str, QPushButton] = {}
        for key, title in RECIPES:
            page = QWidget()
            page_layout = QHBoxLayout(page)
            text = QPlainTextEdit()
            text.setReadOnly(True)
            text.setFont(QFont("monospace"))
            text.setMaximumHeight(110)
            copy = QPushButton(f"Copy {title}")
            copy.setToolTip(f"Copy the {title} settings to the clipboard")
            copy.clicked.connect(lambda _=False, k=key: self.copy_recipe(k))
            page_layout.addWidget(text, 1)
            page_layout.addWidget(copy, 0, Qt.AlignmentFlag.AlignTop)
            self.recipe_tabs.addTab(page, title)
            self.recipe_texts[key] = text
            self.copy_buttons[key] = copy
        recipe_layout.addWidget(self.recipe_tabs)
        layout.addWidget(self.recipe_box)

        self.caveats = QLabel("")
        self.caveats.setWordWrap(True)
        caveat_box = QGroupBox("Caveats")
        QVBoxLayout(caveat_box).addWidget(self.caveats)
        layout.addWidget(caveat_box)

        bottom = QHBoxLayout()
        self.export_button = QPushButton("Export PDF report…")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(self._ask_export_path)
        self.export_status = QLabel("")
        self.export_status.setWordWrap(True)
        self.export_status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bottom.addWidget(self.export_button)
        bottom.addWidget(self.export_status, 1)
        outer.addLayout(bottom)
        self.advice: dict[str, Any] | None = None

    def set_busy(self, text: str) -> None:
        self.verdict.setText(text)

    def set_error(self, message: str) -> None:
        self.verdict.setText(f"No recommendation: {message}")

    def set_advice(self, advice: Mapping[str, Any]) -> None:
        self.advice = dict(advice)
        self.verdict.setText(str(advice.get("verdict") or "No verdict was given."))
        self.choice.setText(f"Recommended: {present.choice_text(advice.get('choice'))}")
        while self.expected.rowCount():
            self.expected.removeRow(0)
        for name, value, basis in present.expected_rows(advice.get("expected") or {}):
            label = QLabel(f"{value}  <i>({basis})</i>")
            self.expected.addRow(f"{name}:", label)
        reasons = advice.get("reasons") or []
        self.reasons.setText("<ul>" + "".join(f"<li>{r}</li>" for r in reasons) + "</ul>")
        moe = advice.get("moe_vs_dense")
        if isinstance(moe, Mapping):
            moe = moe.get("verdict") or moe.get("summary") or _text(moe)
        self.moe_vs_dense.setText(str(moe or "–"))
        self._fill_alternatives(advice.get("alternatives") or [])
        # a verdict without a choice (nothing fits) has no numbers, alternatives or recipe
        self.numbers_box.setVisible(self.expected.rowCount() > 0)
        self.alt_box.setVisible(bool(advice.get("alternatives")))
        self.recipe_box.setVisible(bool(advice.get("recipe")))
        recipe = advice.get("recipe") or {}
        for key, text in self.recipe_texts.items():
            step = recipe.get(key)
            text.setPlainText(step if isinstance(step, str) else _text(step))
            self.copy_buttons[key].setEnabled(bool(step))
        caveats = advice.get("caveats") or []
        self.caveats.setText("\n".join(f"• {c}" for c in caveats) or "–")
        self.export_button.setEnabled(True)

    def _fill_alternatives(self, alternatives: list[Mapping[str, Any]]) -> None:
        columns = present.ALTERNATIVE_COLUMNS
        self.alternatives.clear()
        self.alternatives.setColumnCount(len(columns))
        self.alternatives.setHorizontalHeaderLabels(list(columns))
        self.alternatives.setRowCount(len(alternatives))
        for i, alt in enumerate(alternatives):
            for j, text in enumerate(present.alternative_row(alt)):
                self.alternatives.setItem(i, j, QTableWidgetItem(text))
        self.alternatives.resizeColumnsToContents()

    def copy_recipe(self, key: str) -> None:
        QGuiApplication.clipboard().setText(self.recipe_texts[key].toPlainText())
        self.export_status.setText(f"Copied the {dict(RECIPES)[key]} recipe.")

    def _ask_export_path(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export PDF report", str(Path.home() / "fitbench-report.pdf"), "PDF (*.pdf)"
        )
        if path:
            self.export_requested.emit(Path(path))

    def set_export_status(self, text: str) -> None:
        self.export_status.setText(text)
