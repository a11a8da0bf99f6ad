"""PySide6 + pyqtgraph front end: windows, widgets and plots wired to core jobs. No logic here."""
