"""One file from the Hub into huggingface_hub's blob store, resumable across calls and restarts.

Why not plain `hf_hub_download`: huggingface_hub 2.4 writes to a process-unique temporary file
and deletes it on any failure (cancel, crash, lost network after its retries), so a 40 GB
download interrupted at 39 GB starts over; and it hands bytes over in 10 MiB chunks, so cancel
and progress are coarse. Here the bytes go to `blobs/<etag>.incomplete` (the name huggingface_hub
gives its own unfinished downloads, so its cache tools see and prune it), the SHA-256 (or git blob
id) is computed while streaming, and only a verified file is renamed to `blobs/<etag>`;
`hf_hub_download` then links it into `snapshots/` as usual, so every other tool sees an ordinary
cache entry.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fitbench.core.hub_http import (
    TRANSPORT_ERRORS,
    RetryableError,
    build_hf_headers,
    hf_raise_for_status,
    stream_get,
)

log = logging.getLogger(__name__)

CHUNK_LOG_EVERY_S = 0.1
MAX_RETRIES = 5  # consecutive failures without a single new byte
_CONNECT_S, _READ_S = 30.0, 60.0


class DownloadError(Exception):
    """A download failed; the message says what to do and never contains a token."""


class DownloadCancelled(DownloadError):
    """Stopped on request; the partial file is kept and the next call resumes it."""


class InsufficientDiskSpace(DownloadError):
    pass


class IntegrityError(DownloadError):
    def __init__(self, message: str, quarantined: Path | None = None) -> None:
        super().__init__(message)
        self.quarantined = quarantined


@dataclass(frozen=True)
class Progress:
    """One progress report. `phase`: "download", "verify" (hashing local bytes) or "join"."""

    phase: str
    filename: str
    done: int
    total: int | None
    rate: float  # bytes/s, smoothed
    eta_s: float | None
    file_index: int = 1
    file_count: int = 1

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.total else None


ProgressCallback = Callable[[Progress], None]


class ProgressMeter:
    """Turns byte counts into throttled Progress reports with a smoothed rate and an ETA."""

    def __init__(
        self,
        callback: ProgressCallback | None,
        phase: str,
        filename: str,
        total: int | None,
        done: int = 0,
        file_index: int = 1,
        file_count: int = 1,
    ) -> None:
        self.callback = callback
        self.phase, self.filename, self.total = phase, filename, total
        self.done = done
        self.file_index, self.file_count = file_index, file_count
        self.rate = 0.0
        self._t_last = self._t_report = time.monotonic()
        self._done_last = done

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._t_report >= CHUNK_LOG_EVERY_S:
            self._update_rate(now)
            self.report()

    def _update_rate(self, now: float) -> None:
        dt = now - self._t_last
        if dt > 0:
            instant = (self.done - self._done_last) / dt
            # exponential smoothing over ~1 s so the ETA does not jump with every chunk
            alpha = min(1.0, dt / 1.0)
            self.rate = instant if self.rate == 0 else (1 - alpha) * self.rate + alpha * instant
            self._t_last, self._done_last = now, self.done
        self._t_report = now

    def report(self, final: bool = False) -> None:
        if final:
            self._update_rate(time.monotonic())
        if self.callback is None:
            return
        eta = None
        if self.total is not None and self.rate > 0:
            eta = max(self.total - self.done, 0) / self.rate
        self.callback(
            Progress(
                self.phase,
                self.filename,
                self.done,
                self.total,
                self.rate,
                eta,
                self.file_index,
                self.file_count,
            )
        )


def new_hasher(etag: str) -> Any:
    """LFS files: the etag is the SHA-256 of the content; small git files: the git blob SHA-1."""
    if len(etag) == 64:
        return hashlib.sha256()
    return None  # a git blob id needs the size first: see GitBlobHasher


class GitBlobHasher:
    def __init__(self, size: int) -> None:
        self.size = size
        self._h = hashlib.sha1(b"blob %d\0" % size)

    def update(self, data: bytes | memoryview) -> None:
        self._h.update(data)

    def hexdigest(self) -> str:
        return self._h.hexdigest()


def make_hasher(etag: str, size: int) -> Any:
    h = new_hasher(etag)
    if h is not None:
        return h
    if len(etag) == 40:
        return GitBlobHasher(size)
    return None  # an etag we cannot check (not from the Hub): size check only


class ThreadedHasher:
    """Hash on a second thread: hashlib releases the GIL, so hashing overlaps network reads."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=64)
        self._thread = threading.Thread(target=self._run, name="fitbench-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self.inner.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def finish(self) -> Any:
        """Wait until every chunk is hashed; returns the inner hasher."""
        self._queue.put(None)
        self._thread.join()
        return self.inner


def hash_file(
    path: Path, hasher: Any, meter: ProgressMeter | None, cancel: threading.Event | None
) -> None:
    with path.open("rb") as fh:
        while chunk := fh.read(8 << 20):
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled(f"cancelled while verifying {path.name}")
            hasher.update(chunk)
            if meter is not None:
                meter.add(len(chunk))


def open_partial(path: Path) -> Any:
    """The partial file, opened for appending (a seam: tests simulate a full disk here)."""
    return path.open("ab")


def _no_space(path: Path) -> InsufficientDiskSpace:
    return InsufficientDiskSpace(
        f"the disk holding {path.parent} is full; the partial download was kept and resumes "
        "next time. Free some space there, or point HF_HOME (or HF_HUB_CACHE) at a larger disk."
    )


def stream_to_partial(
    url: str,
    resolve_url: str,
    partial: Path,
    size: int,
    hasher: Any,
    token: str | bool | None,
    meter: ProgressMeter,
    cancel: threading.Event | None,
    refresh_url: Callable[[], str] | None = None,
) -> tuple[int, Any]:
    """Append the rest of the file at `url` to `partial` (Range requests), hashing as it goes.

    `hasher` must already hold the bytes in `partial`. Returns the body bytes received and the
    hasher (a new one if the server ignored Range and the file restarted). Dropped
    connections are resumed from the last byte written, MAX_RETRIES times in a row at most.
    """
    headers = build_hf_headers(token=token)
    if urlsplit(url).netloc != urlsplit(resolve_url).netloc:
        # as huggingface_hub does: the token stays on the Hub, never goes to the CDN
        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
    bg = ThreadedHasher(hasher) if hasher is not None else None
    try:
        received, bg = _stream_loop(url, headers, partial, size, bg, meter, cancel, refresh_url)
    finally:
        hasher = bg.finish() if bg is not None else None
    meter.report(final=True)
    return received, hasher


def _stream_loop(
    url: str,
    headers: dict[str, str],
    partial: Path,
    size: int,
    bg: ThreadedHasher | None,
    meter: ProgressMeter,
    cancel: threading.Event | None,
    refresh_url: Callable[[], str] | None,
) -> tuple[int, ThreadedHasher | None]:
    received = 0
    failures = 0
    with open_partial(partial) as out:
        while True:
            have = out.tell()
            if have >= size:
                break
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled(f"cancelled at {have} of {size} bytes ({partial.name})")
            req_headers = {**headers, "Range": f"bytes={have}-"} if have else dict(headers)
            got_before = received
            try:
                with stream_get(url, req_headers, connect_s=_CONNECT_S, read_s=_READ_S) as response:
                    if response.status_code in (401, 403) and refresh_url is not None:
                        # signed CDN URLs expire: ask the Hub for a fresh one, then retry
                        url = refresh_url()
                        raise RetryableError("CDN URL expired")
                    hf_raise_for_status(response.raw)
                    if have and response.status_code == 200:
                        # the server ignored Range: start over rather than corrupt the file
                        log.warning("%s: server ignored Range; restarting from byte 0", url)
                        out.seek(0)
                        out.truncate()
                        if bg is not None:
                            bg = ThreadedHasher(_restart_hasher(bg.finish()))
                        meter.done -= have
                    for chunk in response.iter_bytes():
                        if cancel is not None and cancel.is_set():
                            raise DownloadCancelled(
                                f"cancelled at {out.tell()} of {size} bytes ({partial.name})"
                            )
                        if out.tell() + len(chunk) > size:
                            raise DownloadError(
                                f"{url}: the server sent more than the {size} bytes it announced"
                            )
                        try:
                            out.write(chunk)
                        except OSError as exc:
                            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                                raise _no_space(partial) from None
                            raise
                        if bg is not None:
                            bg.update(chunk)
                        received += len(chunk)
                        meter.add(len(chunk))
            except TRANSPORT_ERRORS as exc:
                out.flush()
                failures = 0 if received > got_before else failures + 1
                if failures > MAX_RETRIES:
                    raise DownloadError(
                        f"network error downloading {partial.name} after {MAX_RETRIES} retries "
                        f"({type(exc).__name__}); run the download again to resume from byte "
                        f"{out.tell()}"
                    ) from None
                log.info("%s: %s at byte %d, resuming", url, type(exc).__name__, out.tell())
                delay = 0.0 if failures <= 1 else min(2.0 ** (failures - 2), 8.0)
                if cancel is not None and cancel.wait(delay):
                    continue  # the loop top raises DownloadCancelled
                if cancel is None and delay:
                    time.sleep(delay)
                continue
            out.flush()
            if out.tell() < size:
                # the body ended early without an error: treat as a dropped connection
                failures = 0 if received > got_before else failures + 1
                if failures > MAX_RETRIES:
                    raise DownloadError(
                        f"{partial.name}: the server keeps ending the transfer at byte "
                        f"{out.tell()} of {size}"
                    )
        os.fsync(out.fileno())
    return received, bg


def _restart_hasher(hasher: Any) -> Any:
    if hasher is None:
        return None
    if isinstance(hasher, GitBlobHasher):
        return GitBlobHasher(hasher.size)
    return hashlib.sha256()
