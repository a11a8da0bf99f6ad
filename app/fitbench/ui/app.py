"""Start the desktop app: application object, icons, style, light/dark palette."""

from __future__ import annotations

import sys

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

from fitbench.core import paths

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def app_icon() -> QIcon:
    """Every rendered size (crisp at any scale factor), plus the SVG for anything larger."""
    icons = paths.assets_dir() / "icons"
    icon = QIcon()
    for size in ICON_SIZES:
        png = icons / f"fitbench-{size}.png"
        if png.is_file():
            icon.addFile(str(png))
    svg = icons / "fitbench.svg"
    if svg.is_file():
        icon.addFile(str(svg))
    return icon


def _dark_palette() -> QPalette:
    pal = QPalette()
    base, window, text = QColor(30, 30, 30), QColor(45, 45, 45), QColor(225, 225, 225)
    for role, colour in (
        (QPalette.ColorRole.Window, window),
        (QPalette.ColorRole.WindowText, text),
        (QPalette.ColorRole.Base, base),
        (QPalette.ColorRole.AlternateBase, window),
        (QPalette.ColorRole.Text, text),
        (QPalette.ColorRole.Button, window),
        (QPalette.ColorRole.ButtonText, text),
        (QPalette.ColorRole.ToolTipBase, window),
        (QPalette.ColorRole.ToolTipText, text),
        (QPalette.ColorRole.Highlight, QColor(42, 130, 218)),
        (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255)),
        (QPalette.ColorRole.Link, QColor(100, 170, 255)),
        (QPalette.ColorRole.PlaceholderText, QColor(150, 150, 150)),
    ):
        pal.setColor(role, colour)
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(120, 120, 120))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(120, 120, 120))
    return pal


def follow_color_scheme(app: QApplication) -> None:
    """Light/dark follows the system. Styles that do not (Fusion on many Linux desktops) get a
    dark palette when the system says dark, and the standard one back when it says light."""
    hints = QGuiApplication.styleHints()

    def apply() -> None:
        dark = hints.colorScheme() == Qt.ColorScheme.Dark
        looks_dark = app.palette().color(QPalette.ColorRole.Window).lightness() < 128
        if dark and not looks_dark:
            app.setStyle(QStyleFactory.create("Fusion"))
            app.setPalette(_dark_palette())
        elif not dark and looks_dark:
            app.setPalette(app.style().standardPalette())

    apply()
    hints.colorSchemeChanged.connect(lambda _scheme: apply())


def create_app() -> QApplication:
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication(sys.argv[:1])
    app.setApplicationName("FitBench")
    app.setOrganizationName("FitBench")
    app.setDesktopFileName("fitbench")
    app.setWindowIcon(app_icon())
    style = paths.assets_dir() / "style.qss"
    if style.is_file():
        app.setStyleSheet(style.read_text(encoding="utf-8"))
    follow_color_scheme(app)
    return app


def run_app(quit_after_paint: bool = False) -> int:
    import pyqtgraph as pg

    from fitbench.ui.main_window import MainWindow

    app = create_app()
    pg.setConfigOptions(antialias=True)
    window = MainWindow()
    if quit_after_paint:
        # closing (not quitting) lets start-up jobs finish first; the last window then quits
        window.first_paint.connect(lambda: QTimer.singleShot(0, window.close))
    window.show()
    return app.exec()


def main() -> int:
    from fitbench.core import logsetup

    logsetup.setup()
    return run_app()
