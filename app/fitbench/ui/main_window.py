"""The FitBench main window."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QPaintEvent
from PySide6.QtWidgets import QLabel, QMainWindow, QTabWidget, QVBoxLayout, QWidget


class MainWindow(QMainWindow):
    first_paint = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("FitBench")
        self.resize(1200, 800)
        self._painted = False
        self.tabs = QTabWidget()
        for title in ("Machine", "Models", "Benchmark", "Recommendation", "History"):
            page = QWidget()
            layout = QVBoxLayout(page)
            layout.addWidget(QLabel(f"{title}: coming in a later issue."))
            self.tabs.addTab(page, title)
        self.setCentralWidget(self.tabs)

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            self.first_paint.emit()
