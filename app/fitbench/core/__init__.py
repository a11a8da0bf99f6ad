"""Qt-free core of FitBench: everything here imports and runs without PySide6 or pyqtgraph."""
