"""Where FitBench keeps its files.

Functions, not constants: tests redirect the XDG variables (or FITBENCH_HOME) per test, and every
call must see the current environment.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import platformdirs

APP = "fitbench"


def _home_override() -> Path | None:
    home = os.environ.get("FITBENCH_HOME")
    return Path(home) if home else None


def _dir(kind: str) -> Path:
    override = _home_override()
    if override is not None:
        path = override / kind
    else:
        getter = {
            "config": platformdirs.user_config_path,
            "data": platformdirs.user_data_path,
            "cache": platformdirs.user_cache_path,
            "log": platformdirs.user_log_path,
        }[kind]
        path = getter(APP, appauthor=False)
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_dir() -> Path:
    return _dir("config")


def data_dir() -> Path:
    return _dir("data")


def cache_dir() -> Path:
    return _dir("cache")


def log_dir() -> Path:
    return _dir("log")


def results_db() -> Path:
    return data_dir() / "results.sqlite3"


def twins_dir() -> Path:
    path = data_dir() / "twins"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _repo_root() -> Path:
    # app/fitbench/core/paths.py -> repository root (source checkouts and editable installs)
    return Path(__file__).resolve().parents[3]


def shipped_file(name: str) -> Path:
    """A file shipped with FitBench: inside the wheel under fitbench/data, else the repo root."""
    packaged = resources.files("fitbench") / "data" / name
    if packaged.is_file() or packaged.is_dir():
        return Path(str(packaged))
    return _repo_root() / name


def models_toml() -> Path:
    return shipped_file("models.toml")


def assets_dir() -> Path:
    return shipped_file("assets")
