"""Free disk space where models go: huggingface_hub's cache directory."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass
class DiskInfo:
    path: str  # the model cache directory
    measured_at: str  # the nearest existing directory the figures were read from
    free_bytes: int | None
    total_bytes: int | None


def model_cache_dir() -> Path:
    """huggingface_hub's cache directory, read from the environment now (as the hub resolves it).

    Computed here rather than read from huggingface_hub.constants, which freezes the environment
    at import time and would miss an HF_HOME set later (tests, the GUI's settings).
    """
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    hf_home = os.environ.get("HF_HOME")
    if hf_home:
        return Path(hf_home).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def detect_disk(notes: list[str], path: Path | None = None) -> DiskInfo:
    target = path if path is not None else model_cache_dir()
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        usage = shutil.disk_usage(existing)
    except OSError as exc:
        notes.append(f"Free disk space at the model cache {target} could not be read: {exc}.")
        return DiskInfo(str(target), str(existing), None, None)
    return DiskInfo(str(target), str(existing), int(usage.free), int(usage.total))
