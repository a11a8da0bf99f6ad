"""Render assets/icons/fitbench.svg to PNGs at the sizes desktops ask for (high-DPI included).

Run after editing the SVG: `.venv/bin/python scripts/make_icons.py`. Uses Qt's own SVG renderer,
so no extra tool is needed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
ICONS = Path(__file__).resolve().parents[1] / "assets" / "icons"


def render(svg: Path, size: int, out: Path) -> None:
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg}: not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    if not image.save(str(out)):
        raise SystemExit(f"{out}: cannot be written")


def main() -> int:
    _app = QGuiApplication(sys.argv[:1])
    svg = ICONS / "fitbench.svg"
    for size in SIZES:
        out = ICONS / f"fitbench-{size}.png"
        render(svg, size, out)
        print(out.relative_to(ICONS.parents[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
