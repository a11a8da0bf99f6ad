"""What FitBench keeps on disk, with sizes, and removing it: `fitbench cache` and the GUI's
twin cache button call these.

Kinds:
  twin        twins in FitBench's twin cache (finished and half-written ones)
  partial     unfinished downloads: `blobs/<etag>.incomplete` in the Hugging Face cache (the
              name huggingface_hub gives its own, so `hf cache ls/prune` see the same files; it
              also counts those left by hf_hub_download), and `.fitbench-partial` files of older
              FitBench versions
  quarantine  downloads whose hash did not match, kept for inspection
  results     the results database (History); never removed unless asked for by name
Finished models in the Hugging Face cache are the Hub's to manage (`hf cache rm`), not listed here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fitbench.core import paths
from fitbench.core.download.cache import (
    INCOMPLETE_SUFFIX,
    LEGACY_PARTIAL_SUFFIX,
)
from fitbench.core.hardware.disk import model_cache_dir

Kind = Literal["twin", "partial", "quarantine", "results"]
KINDS: tuple[Kind, ...] = ("twin", "partial", "quarantine", "results")
DEFAULT_PRUNE: tuple[Kind, ...] = ("partial",)  # nothing finished and nothing measured


@dataclass(frozen=True)
class CacheEntry:
    kind: Kind
    path: Path
    size: int  # bytes on disk (allocated blocks: a sparse or half-written file counts as held)

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "path": str(self.path), "size": self.size}


def _size(path: Path) -> int:
    try:
        st = path.stat()
    except OSError:
        return 0
    blocks = getattr(st, "st_blocks", None)
    return blocks * 512 if blocks is not None else st.st_size


def _files(folder: Path, pattern: str) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(pattern) if p.is_file() and not p.is_symlink())


def _entries(kind: Kind) -> list[CacheEntry]:
    if kind == "twin":
        found = _files(paths.twins_dir(), "*")
    elif kind == "partial":
        hub = model_cache_dir()
        found = _files(hub, f"*/blobs/*{INCOMPLETE_SUFFIX}")
        found += _files(hub, f"*/blobs/*{LEGACY_PARTIAL_SUFFIX}")
    elif kind == "quarantine":
        found = _files(paths.cache_dir() / "quarantine", "**/*")
    else:
        db = paths.results_db()
        found = [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.is_file()]
    return [CacheEntry(kind, p, _size(p)) for p in found]


def cache_entries(kinds: Iterable[Kind] = KINDS) -> list[CacheEntry]:
    """Every file of the given kinds, by kind then path."""
    return [e for kind in kinds for e in _entries(kind)]


def cache_sizes(kinds: Iterable[Kind] = KINDS) -> dict[Kind, tuple[int, int]]:
    """{kind: (files, bytes)}."""
    out: dict[Kind, tuple[int, int]] = {}
    for kind in kinds:
        entries = _entries(kind)
        out[kind] = (len(entries), sum(e.size for e in entries))
    return out


def twin_cache_size() -> int:
    """Bytes held by the twin cache (the GUI shows it next to its clear button)."""
    return cache_sizes(("twin",))["twin"][1]


def prune(kinds: Iterable[Kind] = DEFAULT_PRUNE, *, dry_run: bool = False) -> list[CacheEntry]:
    """Remove the files of the given kinds; returns what was (or, dry_run, would be) removed.
    A file that vanished meanwhile is skipped; one that cannot be removed raises OSError."""
    removed: list[CacheEntry] = []
    for entry in cache_entries(kinds):
        if not dry_run:
            try:
                os.unlink(entry.path)
            except FileNotFoundError:
                continue
        removed.append(entry)
    return removed


def clear_twins() -> list[CacheEntry]:
    """Empty the twin cache (the GUI's clear button): twins are rebuilt on demand."""
    return prune(("twin",))
