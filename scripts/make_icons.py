"""Render assets/icons/fitbench.svg to the PNG sizes of the freedesktop hicolor icon theme.

Writes assets/icons/hicolor/<N>x<N>/apps/fitbench.png for every size in SIZES (and the SVG as
hicolor/scalable/apps/fitbench.svg). Rendered with Qt's own SVG renderer, so no extra tool is
needed; the PNGs are committed, run this again after changing the SVG:

    .venv/bin/python scripts/make_icons.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SVG = REPO_ROOT / "assets" / "icons" / "fitbench.svg"
HICOLOR = REPO_ROOT / "assets" / "icons" / "hicolor"
# hicolor's usual fixed sizes: panels and menus (16-48), launchers (64-256), HiDPI stores (512)
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def render(svg: Path, out_dir: Path, sizes: tuple[int, ...] = SIZES) -> list[Path]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"{svg}: not a valid SVG")
    written = []
    for size in sizes:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        target = out_dir / f"{size}x{size}" / "apps" / "fitbench.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not image.save(str(target), "PNG"):
            raise SystemExit(f"{target}: could not write the PNG")
        written.append(target)
    scalable = out_dir / "scalable" / "apps" / "fitbench.svg"
    scalable.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(svg, scalable)
    written.append(scalable)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--svg", type=Path, default=SVG)
    parser.add_argument("--out", type=Path, default=HICOLOR)
    args = parser.parse_args()
    for path in render(args.svg, args.out):
        print(path.relative_to(args.out.parent) if path.is_relative_to(args.out.parent) else path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
