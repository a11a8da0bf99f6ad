"""GGUF headers of files on the Hub, read with HTTP range requests, and an on-disk header cache.

Only the header is fetched: the first range is FIRST_READ bytes and each next one asks just for
the missing bytes; a server that ignores Range is read only as far as needed, then the connection
is dropped. URL resolution, auth headers, HF_ENDPOINT and HF_TOKEN all go through huggingface_hub,
so a mirror or a gated repo behaves as it does for downloads. Error messages never carry a token.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from fitbench.core import paths
from fitbench.core.gguf.manifest import ModelManifest, TensorInfo
from fitbench.core.gguf.reader import (
    SPLIT_PART_RE,
    GGUFError,
    merge_shards,
    parse_growing,
    shard_names,
)
from fitbench.core.hub_http import (
    TRANSPORT_ERRORS,
    UNREACHABLE_ERRORS,
    build_hf_headers,
    stream_get,
    unreachable,
)

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
_TIMEOUT_S = 30.0
_TOKEN_LIKE = re.compile(r"hf_[A-Za-z0-9]{8,}")


def _scrub(text: str, token: str | None) -> str:
    if token:
        text = text.replace(token, "***")
    return _TOKEN_LIKE.sub("hf_***", text)


def _endpoint() -> str:
    # read at call time: huggingface_hub reads HF_ENDPOINT only once, at import
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


# ---------------------------------------------------------------------------- cache


def manifest_to_dict(manifest: ModelManifest) -> dict[str, Any]:
    return {
        "format": CACHE_FORMAT,
        "source": manifest.source,
        "version": manifest.version,
        "alignment": manifest.alignment,
        "data_offset": manifest.data_offset,
        "file_size": manifest.file_size,
        "metadata": manifest.metadata,
        "tensors": [
            [t.name, list(t.shape), t.ggml_type, t.offset, t.n_bytes] for t in manifest.tensors
        ],
        "extra": manifest.extra,
    }


def manifest_from_dict(data: dict[str, Any]) -> ModelManifest:
    if data.get("format") != CACHE_FORMAT:
        raise ValueError(f"header cache format {data.get('format')!r}, expected {CACHE_FORMAT}")
    extra = dict(data.get("extra", {}))
    if "kv_types" in extra:
        extra["kv_types"] = {k: (v[0], v[1]) for k, v in extra["kv_types"].items()}
    return ModelManifest(
        source=data["source"],
        metadata=data["metadata"],
        tensors=tuple(
            TensorInfo(name, tuple(shape), ggml_type, offset, n_bytes)
            for name, shape, ggml_type, offset, n_bytes in data["tensors"]
        ),
        version=data["version"],
        alignment=data["alignment"],
        data_offset=data["data_offset"],
        file_size=data["file_size"],
        extra=extra,
    )


def _cache_file(key: str) -> Any:
    folder = paths.cache_dir() / "gguf-headers"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / (hashlib.sha256(key.encode()).hexdigest()[:40] + ".json")


def cache_load(key: str) -> ModelManifest | None:
    path = _cache_file(key)
    try:
        return manifest_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring unreadable header cache %s: %s", path, exc)
        path.unlink(missing_ok=True)
        return None


def cache_store(key: str, manifest: ModelManifest) -> None:
    path = _cache_file(key)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(manifest_to_dict(manifest)), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:  # a cache that cannot be written only costs a re-read
        log.warning("cannot write header cache %s: %s", path, exc)
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- HTTP


class _RangeReader:
    """fetch(n) -> the first n bytes of a remote file, asking only for bytes not yet held."""

    def __init__(self, url: str, headers: dict[str, str], where: str, token: str | None) -> None:
        self.url = url
        self.headers = headers
        self.where = where
        self.token = token
        self.buf = bytearray()
        self.at_end = False
        self.requests = 0

    def __call__(self, n: int) -> bytes:
        if n > len(self.buf) and not self.at_end:
            self._get(len(self.buf), n)
        return bytes(self.buf[:n])

    def _get(self, start: int, end: int) -> None:
        headers = {**self.headers, "Range": f"bytes={start}-{end - 1}"}
        self.requests += 1
        try:
            with stream_get(self.url, headers, connect_s=_TIMEOUT_S, read_s=_TIMEOUT_S) as r:
                if r.status_code == 416:  # the range starts past the end of the file
                    self.at_end = True
                    return
                if r.status_code not in (200, 206):
                    raise _status_error(r.status_code, self.where)
                # 200: the server ignored Range and sends the whole file from byte 0
                skip = start if r.status_code == 200 else 0
                for chunk in r.iter_bytes():
                    if skip:
                        dropped = min(skip, len(chunk))
                        chunk, skip = chunk[dropped:], skip - dropped
                    self.buf += chunk[: end - len(self.buf)]
                    if len(self.buf) >= end:
                        return  # leaving the block closes the connection: no tensor data
                self.at_end = True
        except TRANSPORT_ERRORS as exc:
            raise GGUFError(
                _scrub(
                    f"{self.where}: network error while reading the header: {type(exc).__name__}",
                    self.token,
                )
            ) from None


def _status_error(status: int, where: str) -> GGUFError:
    if status in (401, 403):
        return GGUFError(
            f"{where}: access denied (HTTP {status}): the repo is private or gated; accept its "
            "licence on the Hub and set HF_TOKEN"
        )
    if status == 404:
        return GGUFError(f"{where}: not found on the Hub (HTTP 404)")
    return GGUFError(f"{where}: the Hub answered HTTP {status}")


def _hub_error(exc: Exception, where: str, repo_id: str, revision: str) -> GGUFError:
    if isinstance(exc, GatedRepoError):
        msg = f"{where}: {repo_id} is gated: accept its licence on the Hub and set HF_TOKEN"
    elif isinstance(exc, RepositoryNotFoundError):
        msg = f"{where}: repository {repo_id} not found (or private: set HF_TOKEN)"
    elif isinstance(exc, RevisionNotFoundError):
        msg = f"{where}: revision {revision!r} not found in {repo_id}"
    elif isinstance(exc, EntryNotFoundError):
        msg = f"{where}: no such file in {repo_id} at {revision!r} (HTTP 404)"
    elif isinstance(exc, HfHubHTTPError) and exc.response is not None:
        return _status_error(exc.response.status_code, where)
    else:
        msg = f"{where}: the Hub request failed: {type(exc).__name__}"
    return GGUFError(msg)


def _read_one(
    repo_id: str,
    filename: str,
    revision: str,
    token: str | None,
    *,
    use_cache: bool,
    file_size: int | None = None,
) -> ModelManifest:
    """The header of one remote file; `file_size` overrides the size (split parts: the total)."""
    endpoint = _endpoint()
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
    where = url
    alias = f"{endpoint}|{repo_id}|{revision}|{filename}|{file_size}"
    try:
        meta = get_hf_file_metadata(url, token=token, endpoint=endpoint, timeout=_TIMEOUT_S)
    except UNREACHABLE_ERRORS as exc:
        cached = cache_load(alias) if use_cache else None
        if cached is not None:
            log.info("%s: Hub unreachable (%s), using the cached header", where, type(exc).__name__)
            return replace(cached, extra={**cached.extra, "from_cache": True})
        raise GGUFError(f"{where}: {unreachable(endpoint, exc)}, and no cached header") from None
    except (HfHubHTTPError, EntryNotFoundError) as exc:
        raise GGUFError(_scrub(str(_hub_error(exc, where, repo_id, revision)), token)) from None
    key = f"{endpoint}|{repo_id}|{filename}|{meta.etag}|{meta.commit_hash}|{file_size}"
    if use_cache and meta.etag:
        cached = cache_load(key)
        if cached is not None:
            return replace(cached, extra={**cached.extra, "from_cache": True})
    headers = build_hf_headers(token=token)
    if urlsplit(meta.location).netloc != urlsplit(url).netloc:
        headers.pop("authorization", None)  # as huggingface_hub does: no token for the CDN
        headers.pop("Authorization", None)
    reader = _RangeReader(meta.location, headers, where, token)
    manifest = parse_growing(reader, where, file_size if file_size is not None else meta.size)
    manifest = replace(
        manifest,
        extra={
            **manifest.extra,
            "repo_id": repo_id,
            "filename": filename,
            "revision": revision,
            "commit": meta.commit_hash,
            "etag": meta.etag,
            "remote_size": meta.size,
            "bytes_fetched": len(reader.buf),
            "range_requests": reader.requests,
        },
    )
    if use_cache:
        cache_store(key, manifest)
        cache_store(alias, manifest)
    return manifest


def _remote_size(repo_id: str, filename: str, revision: str, token: str | None) -> int | None:
    """Size of a remote file, or None if there is no such file (404)."""
    endpoint = _endpoint()
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
    try:
        return get_hf_file_metadata(url, token=token, endpoint=endpoint, timeout=_TIMEOUT_S).size
    except EntryNotFoundError:
        return None
    except UNREACHABLE_ERRORS as exc:
        raise GGUFError(f"{url}: {unreachable(endpoint, exc)}") from None
    except HfHubHTTPError as exc:
        raise GGUFError(_scrub(str(_hub_error(exc, url, repo_id, revision)), token)) from None


def read_remote_header(
    repo_id: str,
    filename: str,
    revision: str = "main",
    token: str | None = None,
    *,
    parts: tuple[str, ...] | list[str] | None = None,
    use_cache: bool = True,
) -> ModelManifest:
    """The manifest of a GGUF file on the Hub, without downloading tensor data.

    `filename` may be a llama.cpp shard (`-00001-of-00003.gguf`: every shard's header is read),
    a TheBloke part (`x.gguf-split-a`), or, with `parts`, the joined name of split parts
    (only the first part holds the header; the others are sized with HEAD requests).
    """
    names = shard_names(filename)
    if names is not None:
        shards = [_read_one(repo_id, n, revision, token, use_cache=use_cache) for n in names]
        return merge_shards(shards, shards[0].source)
    if parts is None and SPLIT_PART_RE.match(filename):
        joined = SPLIT_PART_RE.match(filename).group("joined")  # type: ignore[union-attr]
        parts = []
        for letter in "abcdefghijklmnopqrstuvwxyz":
            name = f"{joined}-split-{letter}"
            if letter != "a" and _remote_size(repo_id, name, revision, token) is None:
                break
            parts.append(name)
    if parts:
        sizes = [_remote_size(repo_id, p, revision, token) for p in parts]
        missing = [p for p, s in zip(parts, sizes, strict=True) if s is None]
        if missing:
            raise GGUFError(f"{repo_id}: split part(s) not found on the Hub: {', '.join(missing)}")
        total = sum(s for s in sizes if s is not None)
        manifest = _read_one(
            repo_id, parts[0], revision, token, use_cache=use_cache, file_size=total
        )
        part_info = [{"source": p, "file_size": s} for p, s in zip(parts, sizes, strict=True)]
        return replace(manifest, extra={**manifest.extra, "parts": part_info})
    return _read_one(repo_id, filename, revision, token, use_cache=use_cache)


_RESOLVE = re.compile(
    r"^(?P<endpoint>https?://.+?)/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$"
)


def read_url_header(url: str) -> ModelManifest:
    """A header from a Hub resolve URL (through read_remote_header) or any range-capable URL."""
    m = _RESOLVE.match(url)
    if m and m.group("endpoint").rstrip("/") == _endpoint():
        return read_remote_header(m.group("repo"), m.group("file"), m.group("rev"))
    reader = _RangeReader(url, {}, url, None)
    return parse_growing(reader, url, None)
