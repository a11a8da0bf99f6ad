"""The FitBench main window: settings on top, one tab per step, a controller behind it."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence, QPaintEvent
from PySide6.QtWidgets import (
    QLabel,
    QMainWindow,
    QMessageBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from fitbench.ui.advice_panel import AdvicePanel
from fitbench.ui.bench_panel import BenchPanel
from fitbench.ui.controller import Controller
from fitbench.ui.history_panel import HistoryPanel
from fitbench.ui.machine_panel import MachinePanel
from fitbench.ui.models_panel import ModelsPanel
from fitbench.ui.serving_panel import ServingPanel
from fitbench.ui.settings_bar import SettingsBar
from fitbench.ui.sweep_model import SweepModel

TABS = ("&Machine", "Mo&dels", "&Benchmark", "&Recommendation", "Histor&y")


class MainWindow(QMainWindow):
    first_paint = Signal()

    def __init__(self, *, autostart: bool = True) -> None:
        """`autostart` detects the hardware as soon as the event loop runs (off in some tests)."""
        super().__init__()
        self.setWindowTitle("FitBench")
        self.resize(1200, 820)
        self._painted = False
        self._closing = False
        self.sweep_model = SweepModel()
        central = QWidget()
        layout = QVBoxLayout(central)
        self.settings_bar = SettingsBar()
        layout.addWidget(self.settings_bar)
        self.tabs = QTabWidget()
        self.machine_panel = MachinePanel()
        self.models_panel = ModelsPanel()
        self.bench_panel = BenchPanel(self.sweep_model)
        self.advice_panel = AdvicePanel()
        self.history_panel = HistoryPanel()
        for title, panel in zip(
            TABS,
            (
                self.machine_panel,
                self.models_panel,
                self.bench_panel,
                self.advice_panel,
                self.history_panel,
            ),
            strict=True,
        ):
            self.tabs.addTab(panel, title)
        self.tabs.addTab(ServingPanel(), "Ser&ving")
        layout.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self.status_label = QLabel("")
        self.statusBar().addWidget(self.status_label, 1)
        self._add_shortcuts()
        self.controller = Controller(self)
        self.controller.runner.job_started.connect(self._jobs_changed)
        self.controller.runner.job_finished.connect(self._jobs_changed)
        self.tabs.setCurrentWidget(self.bench_panel)
        self.bench_panel.run_button.setFocus()
        if autostart:
            QTimer.singleShot(0, self.controller.detect)
            QTimer.singleShot(0, self.controller.load_history)

    def _add_shortcuts(self) -> None:
        for i in range(len(TABS)):
            action = QAction(self)
            action.setShortcut(QKeySequence(f"Ctrl+{i + 1}"))
            action.triggered.connect(lambda _=False, i=i: self.tabs.setCurrentIndex(i))
            self.addAction(action)
        run = QAction("Benchmark my machine", self)
        run.setShortcut(QKeySequence("Ctrl+B"))
        run.triggered.connect(self.bench_panel.run_button.click)
        self.addAction(run)
        quit_action = QAction("Quit", self)
        quit_action.setShortcut(QKeySequence(QKeySequence.StandardKey.Quit))
        quit_action.triggered.connect(self.close)
        self.addAction(quit_action)

    def show_advice(self) -> None:
        self.tabs.setCurrentWidget(self.advice_panel)
        self.advice_panel.export_button.setFocus(Qt.FocusReason.OtherFocusReason)

    def _jobs_changed(self, _job: object = None) -> None:
        names = [job.name for job in self.controller.runner.active]
        self.status_label.setText(("Working: " + ", ".join(names)) if names else "Ready.")

    def paintEvent(self, event: QPaintEvent) -> None:
        super().paintEvent(event)
        if not self._painted:
            self._painted = True
            self.first_paint.emit()

    def confirm_stop(self) -> bool:
        """Asked when closing during a run; tests replace it to answer without a dialog."""
        answer = QMessageBox.question(
            self,
            "Quit FitBench?",
            "A benchmark or download is still running. Stop it and quit? "
            "Results measured so far are kept; a download can be resumed later.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:
        if not self.controller.busy:
            self.bench_panel.timer.stop()
            self.bench_panel.plots.timer.stop()
            event.accept()
            return
        event.ignore()
        if self._closing:
            return
        # only work a person started is worth a question; detection or planning just stops
        if self.controller.long_work_running and not self.confirm_stop():
            return
        # Stop the workers, then close once every job has reported back: the GUI keeps running
        # (no blocking wait) and no worker is left emitting into a destroyed window.
        self._closing = True
        self.status_label.setText("Stopping the running jobs before quitting…")
        self.controller.runner.all_finished.connect(self.close)
        self.controller.stop_all()
