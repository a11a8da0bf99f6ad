from __future__ import annotations

from fitbench.ui.main_window import MainWindow


def test_main_window_opens_and_paints(qtbot) -> None:
    window = MainWindow()
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.first_paint, timeout=5000):
        window.show()
    assert window.windowTitle() == "FitBench"
