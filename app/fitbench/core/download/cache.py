"""Where downloads live: huggingface_hub's cache layout, quarantine, joined split parts.

Paths are computed from the environment at call time (huggingface_hub reads HF_HOME/HF_ENDPOINT
once, at import; FitBench's tests and users may change them later). The cache directory itself
is the hardware stage's model_cache_dir (the disk whose free space `fitbench detect` reports).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants

from fitbench.core import paths
from fitbench.core.download.http import (
    DownloadCancelled,
    DownloadError,
    ProgressCallback,
    ProgressMeter,
)
from fitbench.core.hardware.disk import model_cache_dir


@dataclass(frozen=True)
class RemoteFile:
    repo_id: str
    filename: str
    commit: str
    etag: str
    size: int
    url: str  # where the bytes are (the CDN location for LFS files)
    resolve_url: str


# -- locations ---------------------------------------------------------------------------------


def hf_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def quarantine_dir() -> Path:
    path = paths.cache_dir() / "quarantine"
    path.mkdir(parents=True, exist_ok=True)
    return path


def joined_dir() -> Path:
    """Where joined split-part files live (they are not repository files, so not in the cache)."""
    path = paths.data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def repo_folder(repo_id: str) -> str:
    return "models--" + repo_id.replace("/", "--")


def blob_path(rf: RemoteFile) -> Path:
    return model_cache_dir() / repo_folder(rf.repo_id) / "blobs" / rf.etag


INCOMPLETE_SUFFIX = ".incomplete"
LEGACY_PARTIAL_SUFFIX = ".fitbench-partial"  # FitBench before 0.1.x: invisible to the Hub's tools


def partial_path(rf: RemoteFile) -> Path:
    """Where the bytes of an unfinished download go: `blobs/<etag>.incomplete`, the name
    huggingface_hub gives its own, so `hf cache ls/scan/prune` (scan_cache_dir's
    incomplete_files) count and remove it, and hf_hub_download of huggingface_hub < 2 resumes it.
    A partial file left by an older FitBench is renamed to it."""
    blob = blob_path(rf)
    path = blob.with_name(blob.name + INCOMPLETE_SUFFIX)
    legacy = blob.with_name(blob.name + LEGACY_PARTIAL_SUFFIX)
    if legacy.exists() and not path.exists():
        os.replace(legacy, path)
    return path


def pointer_path(rf: RemoteFile) -> Path:
    return model_cache_dir() / repo_folder(rf.repo_id) / "snapshots" / rf.commit / rf.filename


def verified_marker(etag: str) -> Path:
    path = paths.cache_dir() / "verified"
    path.mkdir(parents=True, exist_ok=True)
    return path / etag


def stamp(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size} {st.st_mtime_ns}"


def existing_parent(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def quarantine(path: Path, rf: RemoteFile, actual: str) -> Path:
    target = quarantine_dir() / repo_folder(rf.repo_id) / f"{rf.filename}.{actual[:16]}.bad"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(path), target)
    return target


# -- joining split parts -----------------------------------------------------------------------


def join(
    sources: list[Path],
    dest: Path,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
) -> str:
    """Concatenate `sources` into `dest` (temp + rename); returns the SHA-256 of the result."""
    total = sum(p.stat().st_size for p in sources)
    tmp = dest.with_name(dest.name + ".joining")
    meter = ProgressMeter(progress, "join", dest.name, total)
    h = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for src in sources:
                with src.open("rb") as fh:
                    while chunk := fh.read(8 << 20):
                        if cancel is not None and cancel.is_set():
                            raise DownloadCancelled(f"cancelled while joining {dest.name}")
                        out.write(chunk)
                        h.update(chunk)
                        meter.add(len(chunk))
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if tmp.stat().st_size != total:
        tmp.unlink()
        raise DownloadError(f"joining {dest.name} produced the wrong size; nothing was kept")
    os.replace(tmp, dest)
    digest = h.hexdigest()
    dest.with_name(dest.name + ".sha256").write_text(f"{digest}  {dest.name}\n")
    meter.report(final=True)
    return digest


def remove_from_cache(rf: RemoteFile) -> None:
    """Drop a part (pointer + blob) once joined: llama.cpp cannot use it, it only takes space."""
    pointer, blob = pointer_path(rf), blob_path(rf)
    if pointer.is_symlink() or pointer.exists():
        pointer.unlink()
    blob.unlink(missing_ok=True)
    verified_marker(rf.etag).unlink(missing_ok=True)


def sidecar_sha(dest: Path) -> str:
    side = dest.with_name(dest.name + ".sha256")
    return side.read_text().split()[0] if side.exists() else ""
