"""Start the desktop app: application object, icons, style, light/dark palette."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

from PySide6.QtCore import QLibraryInfo, Qt, QTimer
from PySide6.QtGui import QColor, QGuiApplication, QIcon, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory

from fitbench.core import paths

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)

# What Qt's xcb platform plugin loads, and the Debian/Ubuntu package of each (as .ci/run installs
# them). Without one, Qt prints "could not load the Qt platform plugin" and aborts (exit 134).
XCB_LIBRARIES: dict[str, str] = {
    "libxcb.so.1": "libxcb1",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libfontconfig.so.1": "libfontconfig1",
    "libdbus-1.so.3": "libdbus-1-3",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
}


def _uses_xcb() -> bool:
    """Whether QApplication will pick Qt's X11 platform plugin."""
    if not sys.platform.startswith("linux"):
        return False
    platform = os.environ.get("QT_QPA_PLATFORM", "")
    if platform:
        return platform.split(":")[0].split(";")[0] == "xcb"
    return not os.environ.get("WAYLAND_DISPLAY")


def _package_of(soname: str) -> str:
    if soname in XCB_LIBRARIES:
        return XCB_LIBRARIES[soname]
    stem, _, version = soname.removeprefix("lib").partition(".so.")
    return f"lib{stem.lower()}{'-' if stem[-1:].isdigit() else ''}{version}"


def missing_xcb_libraries(libraries: dict[str, str] | None = None) -> dict[str, str]:
    """Libraries the xcb plugin needs that cannot be loaded here: {soname: package}. Checks
    each listed soname with the dynamic loader, and the plugin itself with ldd where present
    (which also catches what a newer Qt added)."""
    libraries = XCB_LIBRARIES if libraries is None else libraries
    missing: dict[str, str] = {}
    for soname, package in libraries.items():
        try:
            ctypes.CDLL(soname)
        except OSError:
            missing[soname] = package
    plugin = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms/libqxcb.so"
    ldd = shutil.which("ldd")
    if libraries is XCB_LIBRARIES and ldd and plugin.is_file():
        try:
            out = subprocess.run(
                [ldd, str(plugin)], capture_output=True, text=True, timeout=10
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            name, _, where = line.strip().partition(" => ")
            if where.strip() == "not found":
                missing.setdefault(name, _package_of(name))
    return missing


def xcb_problem() -> str:
    """What to install before Qt's xcb plugin would abort, or "" when nothing is missing."""
    if not _uses_xcb():
        return ""
    missing = missing_xcb_libraries()
    if not missing:
        return ""
    packages = " ".join(sorted(set(missing.values())))
    return (
        "fitbench: the desktop app cannot start: Qt's X11 (xcb) platform needs "
        f"{', '.join(sorted(missing))}, not found on this system.\n"
        f"  Debian/Ubuntu: sudo apt-get install {packages}\n"
        "  (other systems: the packages providing those libraries; on a Wayland desktop, "
        "QT_QPA_PLATFORM=wayland may work without them; the command-line tools work as is)"
    )


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

    problem = xcb_problem()
    if problem and not isinstance(QApplication.instance(), QApplication):
        print(problem, file=sys.stderr)
        return 1
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
