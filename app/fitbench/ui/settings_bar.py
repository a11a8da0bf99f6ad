"""Goal, context length and headroom: one row of controls, saved as soon as they change."""

from __future__ import annotations

import logging
from dataclasses import replace

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QWidget,
)

from fitbench.core import settings as core_settings
from fitbench.core.settings import Settings

log = logging.getLogger(__name__)

GOAL_TEXT = {
    "interactive": "Interactive (one user: fastest replies)",
    "throughput": "Throughput (a service: most tokens/s in total)",
}


class SettingsBar(QWidget):
    changed = Signal(object)  # Settings
    what_if_changed = Signal(str)  # a GPU spec such as "2x RTX 3090", "" for this machine

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings, self.problems = core_settings.load()
        for problem in self.problems:
            log.warning("settings: %s", problem)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.goal = QComboBox()
        for key, text in GOAL_TEXT.items():
            self.goal.addItem(text, key)
        self.goal.setToolTip("What the recommendation optimises for")
        self.ctx = QSpinBox()
        self.ctx.setRange(256, 1_048_576)
        self.ctx.setSingleStep(1024)
        self.ctx.setSuffix(" tokens")
        self.ctx.setToolTip("Context length the memory plan reserves KV cache for")
        self.vram = QDoubleSpinBox()
        self.vram.setRange(0.0, 50.0)
        self.vram.setSuffix(" % VRAM")
        # 0 is the planner's own margin, sized from its measured error (plan/margin.py)
        self.vram.setSpecialValueText("auto VRAM margin")
        self.vram.setToolTip(
            "VRAM left free on each GPU beyond the memory plan: auto = 384 MiB + 0.5% "
            "(the planner was within ~100 MiB of measured VRAM), or a percentage"
        )
        self.ram = QDoubleSpinBox()
        self.ram.setRange(0.0, 512.0)
        self.ram.setSuffix(" GiB RAM")
        self.ram.setToolTip("RAM left free for the desktop and other programs")
        for text, widget in (
            ("&Goal:", self.goal),
            ("&Context:", self.ctx),
            ("&Headroom:", self.vram),
            ("", self.ram),
        ):
            if text:
                label = QLabel(text)
                label.setBuddy(widget)
                layout.addWidget(label)
            layout.addWidget(widget)
        layout.addStretch(1)
        # what-if hardware: plan and advise for other GPUs (predicted); not saved, a look only
        self.what_if = QComboBox()
        # long card names must not widen the window: the open list shows them in full
        self.what_if.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.what_if.setMinimumContentsLength(24)
        self.what_if.view().setMinimumWidth(320)
        self.what_if.addItem("This machine (detected)", "")
        self.what_if.setToolTip(
            "What if this machine had these GPUs? The Models tab's fit badges, the plan and the "
            "recommendation are then predicted for them (CPU and RAM stay this machine's)."
        )
        what_if_label = QLabel("&Machine:")
        what_if_label.setBuddy(self.what_if)
        layout.addWidget(what_if_label)
        layout.addWidget(self.what_if)
        self.what_if.currentIndexChanged.connect(
            lambda _i: self.what_if_changed.emit(str(self.what_if.currentData() or ""))
        )
        self._show(self.settings)
        self.goal.currentIndexChanged.connect(self._edited)
        self.ctx.editingFinished.connect(self._edited)
        self.vram.editingFinished.connect(self._edited)
        self.ram.editingFinished.connect(self._edited)

    def set_what_if_choices(self, specs: list[str]) -> None:
        self.what_if.blockSignals(True)
        while self.what_if.count() > 1:
            self.what_if.removeItem(1)
        for spec in specs:
            self.what_if.addItem(f"What if: {spec} (predicted)", spec)
        self.what_if.blockSignals(False)

    def choose_what_if(self, spec: str) -> None:
        """Pick a what-if machine as a person would ("" for this machine)."""
        index = self.what_if.findData(spec)
        if index < 0:
            raise ValueError(f"no what-if choice {spec!r}")
        self.what_if.setCurrentIndex(index)

    def _show(self, s: Settings) -> None:
        self.goal.setCurrentIndex(max(0, self.goal.findData(s.goal)))
        self.ctx.setValue(s.ctx)
        self.vram.setValue(s.vram_headroom_pct)
        self.ram.setValue(s.ram_headroom_gib)

    def _edited(self) -> None:
        new = replace(
            self.settings,
            goal=str(self.goal.currentData()),
            ctx=self.ctx.value(),
            vram_headroom_pct=self.vram.value(),
            ram_headroom_gib=self.ram.value(),
        )
        self.update_settings(new)

    def update_settings(self, new: Settings) -> None:
        if new == self.settings:
            return
        self.settings = new.validated()
        core_settings.save(self.settings)
        self._show(self.settings)
        self.changed.emit(self.settings)
