"""Start the desktop app."""

from __future__ import annotations

import sys

from PySide6.QtCore import QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from fitbench.core import paths


def create_app() -> QApplication:
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication(sys.argv[:1])
    app.setApplicationName("FitBench")
    app.setOrganizationName("FitBench")
    app.setDesktopFileName("fitbench")
    icon = paths.assets_dir() / "icons" / "fitbench.svg"
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    return app


def run_app(quit_after_paint: bool = False) -> int:
    from fitbench.ui.main_window import MainWindow

    app = create_app()
    window = MainWindow()
    if quit_after_paint:
        # the auto-started hardware detection is still running at first paint; nobody is there
        # to answer "stop it and quit?", so stop it and quit once it has reported back
        window.confirm_stop = lambda: True  # type: ignore[method-assign]
        window.first_paint.connect(lambda: QTimer.singleShot(0, app.quit))
    window.show()
    return app.exec()


def main() -> int:
    from fitbench.core import logsetup

    logsetup.setup()
    return run_app()
