"""The Recommendation panel: the verdict, the numbers with their basis, alternatives, recipe."""

from __future__ import annotations

import html
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
        self.what_if = QLabel("")
        self.what_if.setObjectName("warning")
        self.what_if.setWordWrap(True)
        self.what_if.setVisible(False)
        layout.addWidget(self.what_if)
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
        # nothing fits: what a person can do instead (best option that runs, cheapest change)
        self.actions_box = QGroupBox("What you can do")
        self.actions_text = QLabel("")
        self.actions_text.setWordWrap(True)
        self.actions_text.setTextFormat(Qt.TextFormat.RichText)
        self.actions_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        QVBoxLayout(self.actions_box).addWidget(self.actions_text)
        self.actions_box.setVisible(False)
        layout.addWidget(self.actions_box)

        self.numbers_box = QGroupBox("Expected on this machine")
        self.expected = QFormLayout(self.numbers_box)
        layout.addWidget(self.numbers_box)
        self.reasons = QLabel("")
        self.reasons.setWordWrap(True)
        self.reasons.setTextFormat(Qt.TextFormat.RichText)
        self.reasons_box = QGroupBox("Why")
        QVBoxLayout(self.reasons_box).addWidget(self.reasons)
        layout.addWidget(self.reasons_box)
        self.moe_vs_dense = QLabel("")
        self.moe_vs_dense.setWordWrap(True)
        self.moe_box = QGroupBox("MoE vs dense on this machine")
        QVBoxLayout(self.moe_box).addWidget(self.moe_vs_dense)
        layout.addWidget(self.moe_box)

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
        caveat_box = QGroupBox("Caveats: what was not measured")
        QVBoxLayout(caveat_box).addWidget(self.caveats)
        layout.addWidget(caveat_box)
        layout.addStretch(1)  # boxes keep their height; spare room goes below, not inside them

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

    def set_what_if(self, spec: str) -> None:
        self.what_if.setText(
            f"<b>What if: {html.escape(spec)}.</b> Predicted for this machine's CPU and RAM with "
            "those GPUs: nothing below was measured on them."
            if spec
            else ""
        )
        self.what_if.setVisible(bool(spec))

    def set_busy(self, text: str) -> None:
        self.verdict.setText(text)

    def set_error(self, message: str) -> None:
        self.verdict.setText(f"No recommendation: {message}")

    def set_advice(self, advice: Mapping[str, Any]) -> None:
        self.advice = dict(advice)
        self.verdict.setText(str(advice.get("verdict") or "No verdict was given."))
        choice = advice.get("choice")
        self.choice.setText(f"Recommended: {present.choice_text(choice)}" if choice else "")
        self.choice.setVisible(bool(choice))
        actions = present.no_fit_actions(advice)
        self.actions_text.setText(
            "".join(f"<p><b>{title}:</b> {html.escape(text)}</p>" for title, text in actions)
        )
        self.actions_box.setVisible(bool(actions))
        while self.expected.rowCount():
            self.expected.removeRow(0)
        for name, value, basis in present.expected_rows(advice.get("expected") or {}):
            label = QLabel(f"{value}  <i>({basis})</i>")
            self.expected.addRow(f"{name}:", label)
        # a reason that repeats a "What you can do" sentence is said once, there
        said = [text for _title, text in actions]
        reasons = [r for r in advice.get("reasons") or [] if not any(t in str(r) for t in said)]
        self.reasons.setText("<ul>" + "".join(f"<li>{r}</li>" for r in reasons) + "</ul>")
        self.reasons_box.setVisible(bool(reasons))
        moe = advice.get("moe_vs_dense")
        if isinstance(moe, Mapping):
            moe = moe.get("verdict") or moe.get("summary") or _text(moe)
        self.moe_vs_dense.setText(str(moe or "–"))
        self.moe_box.setVisible(bool(moe))
        self._fill_alternatives(advice.get("alternatives") or [])
        # a verdict without a choice (nothing fits) has no numbers, alternatives or recipe
        self.numbers_box.setVisible(self.expected.rowCount() > 0)
        self.alt_box.setVisible(bool(advice.get("alternatives")))
        # nothing fits: the recipe of the best option that runs anyway, when the advice has one
        best = present.best_feasible(advice) or {}
        recipe = advice.get("recipe") or (best.get("recipe") if not choice else None) or {}
        self.recipe_box.setTitle(
            "Deployment recipe" if advice.get("recipe") else "Recipe: the best option that runs"
        )
        self.recipe_box.setVisible(bool(recipe))
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
