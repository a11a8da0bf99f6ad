"""The raw results a report carries: the results file's bytes (or one machine's lines), streamed.

A results file can hold 100k records (190 MB); the report never holds it in memory. `scan` reads
it once for its size and SHA-256 (what the appendix prints); `chunks` streams exactly those bytes
again into the PDF attachment or the file beside it, and fails if they changed in between (a
bench appending to the file is fine: only the bytes scanned are attached).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fitbench.core.report.model import ReportError

_BLOCK = 1 << 20


def _lines(path: Path, limit: int | None = None) -> Iterator[bytes]:
    """The file's lines (with their newline), stopping at `limit` bytes."""
    with path.open("rb") as f:
        left = limit
        for line in f:
            if left is not None:
                if left <= 0:
                    return
                line = line[:left]
                left -= len(line)
            yield line


def _on_machine(line: bytes, fingerprint: str) -> bool:
    try:
        data = json.loads(line)
    except ValueError:
        return False
    return isinstance(data, dict) and data.get("hardware_fingerprint") == fingerprint


@dataclass(frozen=True)
class RawResults:
    path: Path
    fingerprint: str | None  # only this machine's lines (a file from several machines)
    n_bytes: int  # of the attachment
    sha256: str  # of the attachment
    source_bytes: int  # bytes of the file that were scanned; anything appended later is left out

    @classmethod
    def scan(cls, path: Path, fingerprint: str | None = None) -> RawResults:
        path = Path(path)
        try:
            size = path.stat().st_size
            digest = hashlib.sha256()
            n = 0
            for chunk in cls._source(path, fingerprint, size):
                digest.update(chunk)
                n += len(chunk)
        except OSError as exc:
            raise ReportError(
                f"cannot read the results file {path}: {exc.strerror or exc}"
            ) from None
        return cls(path, fingerprint, n, digest.hexdigest(), size)

    @staticmethod
    def _source(path: Path, fingerprint: str | None, limit: int) -> Iterator[bytes]:
        if fingerprint:
            for line in _lines(path, limit):
                if line.strip() and _on_machine(line, fingerprint):
                    yield line.rstrip(b"\r\n") + b"\n"
            return
        with path.open("rb") as f:
            left = limit
            while left > 0:
                block = f.read(min(_BLOCK, left))
                if not block:
                    return
                left -= len(block)
                yield block

    def chunks(self) -> Iterator[bytes]:
        """The attachment's bytes, as scanned; ReportError if the file changed meanwhile."""
        digest = hashlib.sha256()
        try:
            for chunk in self._source(self.path, self.fingerprint, self.source_bytes):
                digest.update(chunk)
                yield chunk
        except OSError as exc:
            raise ReportError(
                f"cannot read the results file {self.path}: {exc.strerror or exc}"
            ) from None
        if digest.hexdigest() != self.sha256:
            raise ReportError(
                f"{self.path} changed while the report was written (not only appended to); "
                "write the report again"
            )

    def read(self) -> bytes:
        return b"".join(self.chunks())
