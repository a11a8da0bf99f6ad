"""Test set-up: Qt offscreen, every test with its own settings, data, cache and HF dirs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Before anything imports Qt: offscreen unless a test asks for a real X server.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "0")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """platformdirs, FitBench's home and the Hugging Face cache, all under this test's tmp."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("FITBENCH_HOME", str(home / "fitbench"))
    for var, sub in (
        ("XDG_CONFIG_HOME", "config"),
        ("XDG_DATA_HOME", "data"),
        ("XDG_CACHE_HOME", "cache"),
        ("XDG_STATE_HOME", "state"),
    ):
        monkeypatch.setenv(var, str(home / sub))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    yield home


# Shared fixtures live in their own modules (tests/ is on sys.path under pytest's prepend mode).
from hub_fixtures import *  # noqa: E402, F403
from twin_fixtures import *  # noqa: E402, F403
