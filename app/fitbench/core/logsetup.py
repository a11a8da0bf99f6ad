"""Logging: a user-visible log file in the platform log dir; stderr for warnings (all with -v)."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from fitbench.core import paths

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def log_file() -> Path:
    return paths.log_dir() / "fitbench.log"


def setup(verbose: bool = False) -> Path:
    root = logging.getLogger()
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        if getattr(handler, "_fitbench", False):
            root.removeHandler(handler)
            handler.close()
    path = log_file()
    file_handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=5_000_000, backupCount=3, encoding="utf-8"
    )
    file_handler.setLevel(logging.DEBUG)
    file_handler.setFormatter(logging.Formatter(FORMAT))
    stream = logging.StreamHandler()
    stream.setLevel(logging.DEBUG if verbose else logging.WARNING)
    stream.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    for handler in (file_handler, stream):
        setattr(handler, "_fitbench", True)  # noqa: B010 - marks our own handlers
        root.addHandler(handler)
    return path
