"""A local Hugging Face Hub look-alike: enough of the HTTP API for huggingface_hub 2.x to download.

Two listening sockets on 127.0.0.1 share one state: the "hub" (resolve + API endpoints) and a
"cdn" on a second ephemeral port. LFS files are answered on the hub with a 302 to the cdn, as the
real Hub does; because the cdn is another origin, huggingface_hub takes the file metadata from the
302 itself (X-Linked-Size / X-Linked-Etag) and strips the Authorization header for the GET, exactly
the code path it takes against huggingface.co.

Implemented (as huggingface_hub 2.4 reads it; see file_download.py get_hf_file_metadata/http_get
and hf_api.py model_info/get_paths_info/list_repo_tree):
- HEAD/GET /{repo}/resolve/{revision}/{filename}: ETag, X-Repo-Commit, Content-Length,
  Accept-Ranges; LFS files: 302 + Location (cdn) + X-Linked-Size + X-Linked-Etag (the sha256);
  non-LFS files: 200 with ETag = git blob sha1.
- HEAD/GET /cdn/{sha256}/{filename}: the bytes; Range (bytes=a-b, a-, -n) -> 206 + Content-Range;
  unsatisfiable -> 416.
- GET /api/models/{repo}[/revision/{rev}] (?blobs=true adds size + lfs {sha256,size,pointerSize}),
  POST /api/models/{repo}/paths-info/{rev}, GET /api/models/{repo}/tree/{rev}[/{path}].
- Errors with the X-Error-Code huggingface_hub maps: RepoNotFound (404, or 401 for a private repo
  without a valid token), RevisionNotFound, EntryNotFound (404), GatedRepo (401).
- The revision may be a branch name or the 40-hex commit the server reports for it.

Fault switches (all thread-safe, for tests): drop the connection after N body bytes (once or
more), serve corrupted bytes (headers still announce the true sha256), throttle, count bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

_CHUNK = 1 << 20
_TEXT_SUFFIXES = (".md", ".json", ".txt", ".gitattributes", ".yaml", ".yml")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_API_RE = re.compile(r"^/api/models/([^/]+/[^/]+)(?:/(revision|paths-info|tree)/([^/]+)(/.*)?)?$")


def _git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
    ).encode()


@dataclass
class HubFile:
    """One file of one revision of one repo, as the server knows it."""

    repo_id: str
    filename: str
    revision: str
    size: int
    sha256: str
    lfs: bool
    data: bytes | None = None  # in memory ...
    path: Path | None = None  # ... or served from disk (large files)
    corrupt: bool = False  # serve flipped bytes (corrupt_positions); headers keep the true sha256
    bytes_served: int = 0
    gets: int = 0

    @property
    def etag(self) -> str:
        """What the Hub puts in ETag: the git blob id (of the LFS pointer for LFS files)."""
        if self.lfs:
            return _git_blob_sha1(_lfs_pointer(self.sha256, self.size))
        assert self.data is not None
        return _git_blob_sha1(self.data)

    def corrupt_positions(self) -> list[int]:
        half = _CHUNK // 2
        return sorted({*range(half, self.size, _CHUNK), self.size - 1}) if self.size else []

    def read(self, start: int, length: int) -> bytes:
        if self.data is not None:
            chunk = self.data[start : start + length]
        else:
            assert self.path is not None
            with self.path.open("rb") as fh:
                fh.seek(start)
                chunk = fh.read(length)
        if self.corrupt and chunk:
            # flip the middle byte of every MiB and the last byte: deterministic, and clear of
            # the GGUF header so the damage shows only in the hash
            buf = bytearray(chunk)
            for pos in self.corrupt_positions():
                if start <= pos < start + len(buf):
                    buf[pos - start] ^= 0xFF
            chunk = bytes(buf)
        return chunk


@dataclass
class Repo:
    repo_id: str
    private: bool = False
    gated: bool = False
    files: dict[str, dict[str, HubFile]] = field(default_factory=dict)  # revision -> name -> file

    def commit(self, revision: str) -> str:
        h = hashlib.sha1(f"{self.repo_id}@{revision}".encode())
        for name, f in sorted(self.files.get(revision, {}).items()):
            h.update(f"{name}:{f.sha256}:{f.size}".encode())
        return h.hexdigest()

    def resolve_revision(self, revision: str) -> str | None:
        if revision in self.files:
            return revision
        if _COMMIT_RE.match(revision):
            for rev in self.files:
                if self.commit(rev) == revision:
                    return rev
        return None


@dataclass
class RequestLog:
    method: str
    path: str
    range: str | None
    authorized: bool  # an Authorization header was present (its value is never stored)
    status: int = 0
    body_bytes: int = 0


class HubServer:
    """The state and both sockets. Use through the `hub_server` fixture (tests/hub_fixtures.py)."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.tokens: set[str] = set()  # tokens that open private/gated repos
        self.requests: list[RequestLog] = []
        self.bytes_served = 0  # body bytes of file content sent by resolve + cdn GETs
        self.throttle_bytes_per_s: float | None = None
        self._drop_after: int | None = None
        self._drop_times = 0
        self.drops_done = 0
        self._lock = threading.Lock()
        self._hub = _Server(("127.0.0.1", 0), _Handler, self)
        self._cdn = _Server(("127.0.0.1", 0), _Handler, self)
        self.url = f"http://127.0.0.1:{self._hub.server_address[1]}"
        self.cdn_url = f"http://127.0.0.1:{self._cdn.server_address[1]}"
        self._threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            for s in (self._hub, self._cdn)
        ]
        for t in self._threads:
            t.start()

    # -- set-up -------------------------------------------------------------------------------

    def add_file(
        self,
        repo_id: str,
        filename: str,
        data_or_path: bytes | str | Path,
        revision: str = "main",
        private: bool = False,
        gated: bool = False,
        lfs: bool | None = None,
    ) -> HubFile:
        """Publish a file. Bytes are kept in memory; a Path is served from disk (hashed once)."""
        if isinstance(data_or_path, bytes):
            data: bytes | None = data_or_path
            path = None
            size = len(data_or_path)
            sha256 = hashlib.sha256(data_or_path).hexdigest()
        else:
            data = None
            path = Path(data_or_path)
            size = path.stat().st_size
            h = hashlib.sha256()
            with path.open("rb") as fh:
                while chunk := fh.read(_CHUNK * 4):
                    h.update(chunk)
            sha256 = h.hexdigest()
        if lfs is None:
            lfs = not filename.endswith(_TEXT_SUFFIXES)
        if not lfs and data is None:
            assert path is not None
            data = path.read_bytes()
        hub_file = HubFile(repo_id, filename, revision, size, sha256, lfs, data=data, path=path)
        with self._lock:
            repo = self.repos.setdefault(repo_id, Repo(repo_id))
            repo.private = repo.private or private
            repo.gated = repo.gated or gated
            repo.files.setdefault(revision, {})[filename] = hub_file
        return hub_file

    def file(self, repo_id: str, filename: str, revision: str = "main") -> HubFile:
        return self.repos[repo_id].files[revision][filename]

    def commit(self, repo_id: str, revision: str = "main") -> str:
        return self.repos[repo_id].commit(revision)

    def drop_connection_after(self, n_bytes: int, times: int = 1) -> None:
        """The next `times` file GETs longer than `n_bytes` send `n_bytes`, then the socket closes.

        Shorter responses (e.g. a header read with a small Range) pass untouched.
        """
        with self._lock:
            self._drop_after = n_bytes
            self._drop_times = times

    def reset_counters(self) -> None:
        with self._lock:
            self.bytes_served = 0
            self.requests.clear()
            for repo in self.repos.values():
                for files in repo.files.values():
                    for f in files.values():
                        f.bytes_served = 0
                        f.gets = 0

    def close(self) -> None:
        for s in (self._hub, self._cdn):
            s.shutdown()
            s.server_close()
        for t in self._threads:
            t.join(timeout=5)

    # -- used by the handler ------------------------------------------------------------------

    def _take_drop(self, length: int) -> int | None:
        """The cut-off point for a response of `length` bytes (only responses it would cut)."""
        with self._lock:
            if self._drop_times <= 0 or self._drop_after is None or self._drop_after >= length:
                return None
            self._drop_times -= 1
            self.drops_done += 1
            return self._drop_after

    def _count(self, f: HubFile, n: int) -> None:
        with self._lock:
            self.bytes_served += n
            f.bytes_served += n

    def _by_sha(self, sha256: str) -> HubFile | None:
        for repo in self.repos.values():
            for files in repo.files.values():
                for f in files.values():
                    if f.sha256 == sha256:
                        return f
        return None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type, hub: HubServer) -> None:
        super().__init__(address, handler)
        self.hub = hub


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- dispatch -----------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def do_POST(self) -> None:
        self._dispatch(head=False)

    def _dispatch(self, head: bool) -> None:
        hub = self.server.hub
        entry = RequestLog(
            self.command,
            self.path,
            self.headers.get("Range"),
            "authorization" in {k.lower() for k in self.headers},
        )
        with hub._lock:
            hub.requests.append(entry)
        url = urlsplit(self.path)
        path = unquote(url.path)
        try:
            if path.startswith("/cdn/"):
                self._cdn(path, head, entry)
            elif path.startswith("/api/models/"):
                self._api(path, parse_qs(url.query), entry)
            elif "/resolve/" in path:
                self._resolve(path, head, entry)
            else:
                raise _HubError(404, None, "Not Found")
        except _HubError as err:
            entry.status = err.status
            body = json.dumps({"error": err.message}).encode()
            self.send_response(err.status)
            if err.code:
                self.send_header("X-Error-Code", err.code)
            self.send_header("X-Error-Message", err.message)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # -- access -------------------------------------------------------------------------------

    def _repo(self, repo_id: str) -> Repo:
        hub = self.server.hub
        repo = hub.repos.get(repo_id)
        if repo is None:
            raise _HubError(404, "RepoNotFound", "Repository not found")
        if repo.private or repo.gated:
            auth = self.headers.get("Authorization", "")
            token = auth[7:] if auth.startswith("Bearer ") else None
            if token not in hub.tokens:
                if repo.gated and not repo.private:
                    raise _HubError(401, "GatedRepo", "Access to this model is restricted.")
                # what huggingface.co answers for a private repo without (valid) credentials
                raise _HubError(401, "RepoNotFound", "Invalid username or password.")
        return repo

    def _files(self, repo: Repo, revision: str) -> tuple[str, dict[str, HubFile]]:
        rev = repo.resolve_revision(revision)
        if rev is None:
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return rev, repo.files[rev]

    # -- endpoints ----------------------------------------------------------------------------

    def _resolve(self, path: str, head: bool, entry: RequestLog) -> None:
        m = re.match(r"^/(?:models/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if not m:
            raise _HubError(404, None, "Not Found")
        repo_id, revision, filename = m.groups()
        repo = self._repo(repo_id)
        rev, files = self._files(repo, revision)
        commit = repo.commit(rev)
        f = files.get(filename)
        if f is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Error-Message", "Entry not found")
            self.send_header("X-Repo-Commit", commit)
            self.send_header("Content-Length", "0")
            self.end_headers()
            entry.status = 404
            return
        if f.lfs:
            cdn = self.server.hub.cdn_url
            self.send_response(302)
            self.send_header("Location", f"{cdn}/cdn/{f.sha256}/{quote(filename)}?sig=local")
            self.send_header("X-Repo-Commit", commit)
            self.send_header("ETag", f'"{f.etag}"')
            self.send_header("X-Linked-Etag", f'"{f.sha256}"')
            self.send_header("X-Linked-Size", str(f.size))
            self.send_header("Content-Length", "0")
            self.end_headers()
            entry.status = 302
            return
        self._send_content(f, head, entry, {"X-Repo-Commit": commit, "ETag": f'"{f.etag}"'})

    def _cdn(self, path: str, head: bool, entry: RequestLog) -> None:
        parts = path.split("/", 3)  # "", "cdn", sha256, filename
        f = self.server.hub._by_sha(parts[2]) if len(parts) >= 3 else None
        if f is None:
            raise _HubError(404, None, "NoSuchKey")
        self._send_content(f, head, entry, {"ETag": f'"{f.sha256}"'})

    def _send_content(
        self, f: HubFile, head: bool, entry: RequestLog, extra: dict[str, str]
    ) -> None:
        hub = self.server.hub
        start, end = 0, f.size - 1
        status = 200
        rng = self.headers.get("Range")
        if rng:
            m = re.match(r"^bytes=(\d*)-(\d*)$", rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                raise _HubError(416, None, "Invalid range")
            a, b = m.groups()
            if a:
                start = int(a)
                end = min(int(b), f.size - 1) if b else f.size - 1
            else:
                start = max(f.size - int(b), 0)
            if start >= f.size or start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{f.size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                entry.status = 416
                return
            status = 206
        length = end - start + 1 if f.size else 0
        self.send_response(status)
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{f.size}")
        self.end_headers()
        entry.status = status
        if head:
            return
        with hub._lock:
            f.gets += 1
        drop_at = hub._take_drop(length)
        budget = length if drop_at is None else min(drop_at, length)
        sent = 0
        pos = start
        while sent < budget:
            n = min(_CHUNK, budget - sent)
            chunk = f.read(pos, n)
            # counted before the write: a client may read the last byte and look at the count
            # before this thread runs again
            hub._count(f, len(chunk))
            try:
                self.wfile.write(chunk)
            except OSError:
                hub._count(f, -len(chunk))
                raise
            sent += len(chunk)
            pos += len(chunk)
            entry.body_bytes = sent
            if hub.throttle_bytes_per_s:
                time.sleep(len(chunk) / hub.throttle_bytes_per_s)
        if drop_at is not None and budget < length:
            self.wfile.flush()
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _api(self, path: str, query: dict[str, list[str]], entry: RequestLog) -> None:
        m = _API_RE.match(path)
        if not m:
            raise _HubError(404, None, "Not Found")
        repo_id, kind, revision, sub = m.groups()
        repo = self._repo(repo_id)
        rev, files = self._files(repo, revision or "main")
        commit = repo.commit(rev)
        if kind == "paths-info":
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode()) if length else {}
            wanted = form.get("paths", [])
            body: Any = [self._tree_entry(files[p]) for p in wanted if p in files]
        elif kind == "tree":
            prefix = (sub or "/").lstrip("/")
            body = [self._tree_entry(f) for n, f in sorted(files.items()) if n.startswith(prefix)]
        else:
            blobs = query.get("blobs", ["false"])[0].lower() == "true"
            siblings = []
            for name, f in sorted(files.items()):
                sib: dict[str, Any] = {"rfilename": name}
                if blobs:
                    sib["size"] = f.size
                    sib["blobId"] = f.etag
                    if f.lfs:
                        sib["lfs"] = {
                            "sha256": f.sha256,
                            "size": f.size,
                            "pointerSize": len(_lfs_pointer(f.sha256, f.size)),
                        }
                siblings.append(sib)
            body = {
                "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "modelId": repo_id,
                "author": repo_id.split("/")[0],
                "sha": commit,
                "private": repo.private,
                "gated": "auto" if repo.gated else False,
                "disabled": False,
                "tags": ["gguf"],
                "library_name": "gguf",
                "siblings": siblings,
            }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        entry.status = 200
        self.wfile.write(data)

    @staticmethod
    def _tree_entry(f: HubFile) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "file", "path": f.filename, "size": f.size, "oid": f.etag}
        if f.lfs:
            out["lfs"] = {
                "oid": f.sha256,
                "size": f.size,
                "pointerSize": len(_lfs_pointer(f.sha256, f.size)),
            }
        return out
