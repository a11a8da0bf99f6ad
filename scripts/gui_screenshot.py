"""Run the real app, let "Benchmark my machine" be clicked, save a screenshot of the verdict.

    DISPLAY=:99 QT_QPA_PLATFORM=xcb .venv/bin/python scripts/gui_screenshot.py --out shot.png

Prints JSON lines on stdout: {"event": "ready", "button": [x, y], "window": id} once the window
has painted (the global centre of the button, for `xdotool mousemove x y click 1`), then
{"event": "verdict", "text": ..., "screenshot": path} when the recommendation is shown.
`--click` presses the button itself (QTest on the live window) instead of waiting for a click.
`--tabs-dir DIR` also saves every tab after the verdict (machine, models, benchmark,
recommendation, history with the latest two runs compared) and the what-if picker: the list
open, then the Models and Recommendation tabs predicted for `--what-if` (default 2x RTX 3090).
`--tiny-twins DIR` measures the test suite's tiny twins (seconds) instead of the quick sweep of
the catalog models (minutes); its results say "twin" like any other twin result.
Exit status: 0 with a verdict, 1 when the flow failed, 2 on timeout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
WAIT_FOR_ADVICE = object()  # a tour step: wait until the what-if recommendation arrived


MAX_PNG_BYTES = 250_000  # docs screenshots stay well under 300 KB


def save_png(image: Any, path: Path) -> None:
    """Save a screenshot; one over MAX_PNG_BYTES is saved again with a 256-colour palette
    (UI colours are flat, so text and plots stay sharp)."""
    from PySide6.QtGui import QImage

    image.save(str(path))
    if path.stat().st_size > MAX_PNG_BYTES:
        image.toImage().convertToFormat(QImage.Format.Format_Indexed8).save(str(path))


def emit(**data: Any) -> None:
    print(json.dumps(data), flush=True)


def tiny_factory(directory: Path) -> Any:
    """Configs over the tiny twins of tests/twin_fixtures, with a catalog that names them."""
    sys.path.insert(0, str(REPO / "tests"))
    from gui_helpers import install_tiny_catalog, tiny_config
    from twin_fixtures import make_tiny_twin

    directory.mkdir(parents=True, exist_ok=True)
    dense = make_tiny_twin(directory, moe=False)
    moe = make_tiny_twin(directory, moe=True)
    install_tiny_catalog()
    configs = [
        tiny_config(dense, "tiny-dense"),
        tiny_config(moe, "tiny-moe"),
        tiny_config(dense, "tiny-dense", n_gpu_layers=2),
        tiny_config(moe, "tiny-moe", n_gpu_layers=2),
    ]
    return lambda hardware, settings: configs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    parser.add_argument("--bench-out", type=Path, help="also save the Benchmark tab (plots) here")
    parser.add_argument("--click", action="store_true", help="press the button from inside")
    parser.add_argument("--tiny-twins", type=Path, help="measure tiny twins written here")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before giving up")
    parser.add_argument("--size", default="1280x900", help="window size WxH")
    parser.add_argument("--tabs-dir", type=Path, help="save every tab and the what-if picker here")
    parser.add_argument("--what-if", default="2x RTX 3090", help="GPU spec for the what-if shots")
    args = parser.parse_args(argv)

    from PySide6.QtCore import QItemSelectionModel, QPoint, Qt, QTimer
    from PySide6.QtTest import QTest

    from fitbench.ui.app import create_app
    from fitbench.ui.main_window import MainWindow

    app = create_app()
    factory = tiny_factory(args.tiny_twins) if args.tiny_twins else None
    window = MainWindow()
    if factory is not None:
        window.controller.configs_factory = factory
    width, height = (int(v) for v in args.size.split("x"))
    window.resize(width, height)
    window.move(0, 0)
    status = {"code": 2}

    def ready() -> None:
        button = window.bench_panel.run_button
        centre = button.mapToGlobal(QPoint(button.width() // 2, button.height() // 2))
        emit(event="ready", button=[centre.x(), centre.y()], window=int(window.winId()))
        if args.click:
            QTimer.singleShot(200, lambda: QTest.mouseClick(button, Qt.MouseButton.LeftButton))

    def grab(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        screen = window.screen()
        image = screen.grabWindow(window.winId()) if screen is not None else window.grab()
        if image.isNull():  # platforms that cannot read the window back
            image = window.grab()
        save_png(image, path)

    def shoot_bench() -> None:
        assert args.bench_out is not None
        grab(args.bench_out)
        window.show_advice()
        QTimer.singleShot(800, shoot)

    def shoot() -> None:
        grab(args.out)
        emit(
            event="verdict",
            text=window.advice_panel.verdict.text(),
            screenshot=str(args.out),
        )
        status["code"] = 0
        if args.tabs_dir is not None:
            QTimer.singleShot(100, lambda: tour(args.tabs_dir))
        else:
            window.close()

    def tour(directory: Path) -> None:
        """Every tab, then the what-if picker, each after the GUI had time to repaint."""
        history = window.history_panel
        steps: list[tuple[float, Any]] = []

        def tab(widget: Any, name: str) -> None:
            steps.append((0.2, lambda: window.tabs.setCurrentWidget(widget)))
            steps.append((1.2, lambda: grab(directory / f"tab-{name}.png")))

        def compare_latest() -> None:
            n = min(2, history.runs.rowCount())
            history.runs.clearSelection()
            flags = (
                QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
            )
            for row in range(n):
                history.runs.selectionModel().select(history.runs.model().index(row, 0), flags)
            if n:
                history.compare_button.click()

        def open_picker() -> None:
            window.tabs.setCurrentWidget(window.models_panel)
            window.settings_bar.what_if.showPopup()

        def grab_screen(path: Path) -> None:
            screen = window.screen()
            if screen is not None:  # the open list is a window of its own: grab the screen
                save_png(screen.grabWindow(0, 0, 0, window.width(), window.height()), path)

        def pick() -> None:
            window.settings_bar.what_if.hidePopup()
            window.settings_bar.choose_what_if(args.what_if)

        tab(window.machine_panel, "machine")
        tab(window.models_panel, "models")
        tab(window.bench_panel, "benchmark")
        tab(window.advice_panel, "recommendation")
        steps.append((0.2, compare_latest))
        tab(history, "history")
        steps.append((0.5, open_picker))
        steps.append((1.0, lambda: grab_screen(directory / "what-if-picker.png")))
        steps.append((0.2, pick))
        steps.append((0.2, lambda: window.tabs.setCurrentWidget(window.models_panel)))
        steps.append((1.0, WAIT_FOR_ADVICE))
        steps.append((0.2, lambda: grab(directory / "tab-what-if-models.png")))
        steps.append((0.2, lambda: window.tabs.setCurrentWidget(window.advice_panel)))
        steps.append((1.2, WAIT_FOR_ADVICE))
        steps.append((0.2, lambda: grab(directory / "what-if-recommendation.png")))
        steps.append((0.2, lambda: emit(event="tour", directory=str(directory))))
        steps.append((0.1, window.close))

        def advice_pending() -> bool:
            return window.advice_panel.verdict.text().startswith("Predicting") or (
                window.models_panel.status.text().startswith("Planning")
            )

        def run(i: int = 0) -> None:
            if i >= len(steps):
                return
            delay, step = steps[i]
            if step is WAIT_FOR_ADVICE:  # the what-if advice is a job: wait for its answer
                if advice_pending():
                    QTimer.singleShot(500, lambda: run(i))
                    return
            else:
                step()
            QTimer.singleShot(int(delay * 1000), lambda: run(i + 1))

        directory.mkdir(parents=True, exist_ok=True)
        run()

    def done(outcome: Any) -> None:
        if outcome.advice is None:
            emit(event="failed", reason=outcome.advice_error)
            status["code"] = 1
            window.close()
            return
        window.raise_()
        if args.bench_out is not None:
            window.tabs.setCurrentWidget(window.bench_panel)
            QTimer.singleShot(1500, shoot_bench)  # let the plots repaint first
        else:
            QTimer.singleShot(1500, shoot)

    def failed(message: str) -> None:
        emit(event="failed", reason=message)
        status["code"] = 1
        window.close()

    window.first_paint.connect(lambda: QTimer.singleShot(300, ready))
    window.controller.outcome_ready.connect(done)
    window.controller.sweep_finished.connect(
        lambda: None if window.controller.outcome else failed(window.advice_panel.verdict.text())
    )
    QTimer.singleShot(int(args.timeout * 1000), window.close)
    window.show()
    app.exec()
    return status["code"]


if __name__ == "__main__":
    raise SystemExit(main())
