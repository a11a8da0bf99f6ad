"""GGUF downloads from the Hugging Face Hub that survive real networks.

Files land in huggingface_hub's standard cache (HF_HOME / HF_HUB_CACHE / HF_ENDPOINT / HF_TOKEN
and `hf auth login` work as users expect; files fetched by other tools are reused). On top:

- the remote GGUF header is checked against the installed llama.cpp before any tensor data is
  fetched (fitbench.core.gguf: e.g. the old per-expert Mixtral layout is refused up front);
- free disk space is checked against the Hub's sizes before starting;
- bytes stream into a partial file that survives cancel, crashes and restarts (resumed with
  HTTP Range), with progress (bytes, rate, ETA) through a plain callback;
- SHA-256 (LFS) or git blob id (small files) verified while streaming; a mismatch moves the file
  to a quarantine folder and says so;
- TheBloke `*.gguf-split-a/-b` parts are joined into one file (streamed, temp + rename);
  llama.cpp shards (`-0000N-of-0000M.gguf`) are kept side by side in the snapshot;
- tokens: resolved by huggingface_hub, never logged, never in an error, result or report.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from fitbench.core.download import cache as store
from fitbench.core.download.cache import RemoteFile
from fitbench.core.download.http import (
    DownloadCancelled,
    DownloadError,
    InsufficientDiskSpace,
    IntegrityError,
    Progress,
    ProgressCallback,
    ProgressMeter,
    hash_file,
    make_hasher,
    stream_to_partial,
)
from fitbench.core.hardware.disk import model_cache_dir
from fitbench.core.hub_http import UNREACHABLE_ERRORS, get_token, offline_mode, unreachable
from fitbench.core.model import catalog as catalog_mod

__all__ = [
    "AccessDenied",
    "DownloadCancelled",
    "DownloadError",
    "DownloadResult",
    "IncompatibleModel",
    "InsufficientDiskSpace",
    "IntegrityError",
    "NotFoundOnHub",
    "Progress",
    "ProgressCallback",
    "RemoteFile",
    "download_file",
    "download_quant",
    "local_path",
    "remote_file",
]

log = logging.getLogger(__name__)

DISK_HEADROOM = 256 * 1024**2  # keep this much free beyond the file itself
_SPLIT_PART = re.compile(r"^(?P<joined>.+\.gguf)-split-(?P<letter>[a-z])$")
_SHARD = re.compile(r"^(?P<stem>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.gguf$")
_TOKEN_LIKE = re.compile(r"hf_[A-Za-z0-9]{6,}")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_HUB_FAILURES: tuple[type[Exception], ...] = (
    HfHubHTTPError,
    EntryNotFoundError,
    *UNREACHABLE_ERRORS,
)


class AccessDenied(DownloadError):
    pass


class NotFoundOnHub(DownloadError):
    pass


class IncompatibleModel(DownloadError):
    def __init__(self, message: str, reasons: list[str]) -> None:
        super().__init__(message)
        self.reasons = reasons


@dataclass(frozen=True)
class DownloadResult:
    path: Path  # what llama.cpp opens
    repo_id: str
    filename: str
    revision: str
    commit: str
    size: int
    files: tuple[Path, ...]  # every local file behind `path` (shards; joined: just the one)
    sha256: str = ""  # of `path` when known (single LFS file, or computed while joining)
    verified: bool = False  # every file's hash matched the Hub's
    reused: bool = False  # nothing had to be fetched
    bytes_fetched: int = 0  # body bytes received in this call
    resumed_from: int = 0  # bytes already on disk from an earlier, interrupted call
    compat_checked: bool = False
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["files"] = [str(p) for p in self.files]
        data["notes"] = list(self.notes)
        return data


# -- errors ------------------------------------------------------------------------------------


def _scrub(text: str, token: str | bool | None) -> str:
    """Remove anything token-like from a message that may quote a server or library."""
    for secret in (token if isinstance(token, str) else None, get_token()):
        if secret:
            text = text.replace(secret, "***")
    return _TOKEN_LIKE.sub("hf_***", text)


def _hub_error(exc: Exception, repo_id: str, filename: str, revision: str) -> DownloadError:
    endpoint = store.hf_endpoint()
    login = "log in with `hf auth login` or set HF_TOKEN"
    if isinstance(exc, GatedRepoError):
        return AccessDenied(
            f"{repo_id} is gated: accept its licence at {endpoint}/{repo_id}, then {login}"
        )
    if isinstance(exc, RepositoryNotFoundError):
        status = exc.response.status_code if exc.response is not None else 404
        if status == 401:
            return AccessDenied(
                f"{repo_id}: not found or private (HTTP 401); if it is private or gated, {login} "
                "with a token that can read it"
            )
        return NotFoundOnHub(f"repository {repo_id} not found on {endpoint}")
    if isinstance(exc, RevisionNotFoundError):
        return NotFoundOnHub(f"revision {revision!r} not found in {repo_id}")
    if isinstance(exc, EntryNotFoundError):
        return NotFoundOnHub(f"no file {filename!r} in {repo_id} at revision {revision!r}")
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        code = exc.response.status_code
        if code in (401, 403):
            return AccessDenied(f"{repo_id}/{filename}: access denied (HTTP {code}); {login}")
        return DownloadError(f"{repo_id}/{filename}: the Hub answered HTTP {code}")
    if isinstance(exc, UNREACHABLE_ERRORS):
        return DownloadError(f"{unreachable(endpoint, exc)}, and {filename} is not in the cache")
    return DownloadError(f"{repo_id}/{filename}: {type(exc).__name__}: {exc}")


def remote_file(
    repo_id: str, filename: str, revision: str = "main", token: str | bool | None = None
) -> RemoteFile:
    """Metadata from one HEAD request: commit, etag (SHA-256 for LFS files), size, location."""
    endpoint = store.hf_endpoint()
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint)
    meta = get_hf_file_metadata(url, token=token, endpoint=endpoint)
    if not meta.commit_hash or not meta.etag or meta.size is None:
        raise DownloadError(
            f"{url}: the server's answer lacks commit/etag/size; is HF_ENDPOINT ({endpoint}) a "
            "Hugging Face Hub?"
        )
    return RemoteFile(
        repo_id, filename, meta.commit_hash, meta.etag, meta.size, meta.location or url, url
    )


def _remote_or_none(
    repo_id: str, filename: str, revision: str, token: str | bool | None
) -> RemoteFile | None:
    try:
        return remote_file(repo_id, filename, revision, token)
    except EntryNotFoundError:
        return None


# -- checks ------------------------------------------------------------------------------------


def _preflight(need: int, where: Path, what: str) -> None:
    if need <= 0:
        return
    free = shutil.disk_usage(store.existing_parent(where)).free
    if free < need + DISK_HEADROOM:
        raise InsufficientDiskSpace(
            f"not enough free disk space for {what}: it needs {need / 1e9:.2f} GB, "
            f"{free / 1e9:.2f} GB are free in {store.existing_parent(where)}. Free some space "
            "there, or point HF_HOME (or HF_HUB_CACHE) at a larger disk."
        )


def _check_remote_compat(
    repo_id: str,
    first: str,
    commit: str,
    token: str | bool | None,
    parts: tuple[str, ...] | None,
) -> bool:
    """Refuse a file the installed llama.cpp cannot load, from its header alone."""
    from fitbench.core import gguf

    tok = token if isinstance(token, str) else None
    try:
        manifest = gguf.read_remote_header(repo_id, first, commit, tok, parts=parts)
    except gguf.GGUFError as exc:
        raise DownloadError(_scrub(f"cannot read the GGUF header: {exc}", token)) from None
    compat = gguf.check_compatibility(manifest)
    if not compat.ok:
        raise IncompatibleModel(
            f"{repo_id}/{first} cannot be loaded by the installed llama.cpp, so it was not "
            "downloaded: " + "; ".join(compat.reasons),
            list(compat.reasons),
        )
    return True


def _integrity_error(rf: RemoteFile, expected: str, actual: str, moved: Path) -> IntegrityError:
    return IntegrityError(
        f"{rf.repo_id}/{rf.filename}: content hash mismatch (the Hub says {expected}, the "
        f"downloaded bytes give {actual}); the file was moved to {moved}. Run the download again "
        "to fetch a fresh copy.",
        moved,
    )


# -- one file ----------------------------------------------------------------------------------


@dataclass
class _Fetched:
    path: Path
    received: int = 0
    resumed_from: int = 0
    verified: bool = False
    reused: bool = False


def _fetch_one(
    rf: RemoteFile,
    revision: str,
    token: str | bool | None,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    index: int,
    count: int,
    verify_cached: bool,
) -> _Fetched:
    blob, pointer = store.blob_path(rf), store.pointer_path(rf)
    if blob.exists():
        verified = _verify_existing(rf, blob, progress, cancel, index, count, verify_cached)
        return _Fetched(_link(rf, revision, token), verified=verified, reused=True)
    blob.parent.mkdir(parents=True, exist_ok=True)
    partial = store.partial_path(rf)
    have = partial.stat().st_size if partial.exists() else 0
    if have > rf.size:  # not this file any more: start over
        partial.unlink()
        have = 0
    hasher = make_hasher(rf.etag, rf.size)
    if have and hasher is not None:
        meter = ProgressMeter(progress, "verify", rf.filename, have, 0, index, count)
        hash_file(partial, hasher, meter, cancel)
        meter.report(final=True)
    meter = ProgressMeter(progress, "download", rf.filename, rf.size, have, index, count)

    def refresh() -> str:
        return remote_file(rf.repo_id, rf.filename, rf.commit, token).url

    received, hasher = stream_to_partial(
        rf.url, rf.resolve_url, partial, rf.size, hasher, token, meter, cancel, refresh
    )
    if hasher is not None:
        actual = hasher.hexdigest()
        if actual != rf.etag:
            raise _integrity_error(rf, rf.etag, actual, store.quarantine(partial, rf, actual))
    os.replace(partial, blob)
    if hasher is not None:
        store.verified_marker(rf.etag).write_text(store.stamp(blob))
    log.info("downloaded %s/%s (%d bytes, resumed from %d)", rf.repo_id, rf.filename, rf.size, have)
    pointer_path = _link(rf, revision, token)
    assert pointer_path == pointer or pointer_path.exists()
    return _Fetched(pointer_path, received, have, verified=hasher is not None)


def _verify_existing(
    rf: RemoteFile,
    blob: Path,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    index: int,
    count: int,
    verify_cached: bool,
) -> bool:
    """A blob already in the cache (maybe from another tool): hash it once, then trust a marker."""
    marker = store.verified_marker(rf.etag)
    if marker.exists() and marker.read_text() == store.stamp(blob):
        return True
    hasher = make_hasher(rf.etag, rf.size)
    if not verify_cached or hasher is None:
        return False
    meter = ProgressMeter(progress, "verify", rf.filename, rf.size, 0, index, count)
    hash_file(blob, hasher, meter, cancel)
    meter.report(final=True)
    actual = hasher.hexdigest()
    if actual != rf.etag:
        pointer = store.pointer_path(rf)
        if pointer.is_symlink():
            pointer.unlink()
        raise _integrity_error(rf, rf.etag, actual, store.quarantine(blob, rf, actual))
    marker.write_text(store.stamp(blob))
    return True


def _link(rf: RemoteFile, revision: str, token: str | bool | None) -> Path:
    """Let huggingface_hub link the blob into snapshots/<commit>/ (it downloads nothing here)."""
    path = Path(
        hf_hub_download(
            rf.repo_id,
            rf.filename,
            revision=rf.commit,
            cache_dir=model_cache_dir(),
            endpoint=store.hf_endpoint(),
            token=token,
        )
    )
    if revision != rf.commit and not _COMMIT.match(revision):
        ref = model_cache_dir() / store.repo_folder(rf.repo_id) / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        if not ref.exists() or ref.read_text() != rf.commit:
            ref.write_text(rf.commit)
    return path


# -- the public entry points -------------------------------------------------------------------


def _names_for(
    repo_id: str,
    filename: str,
    revision: str,
    token: str | bool | None,
    parts: tuple[str, ...] | None,
) -> tuple[list[RemoteFile], str | None]:
    """(remote files to fetch, joined file name or None)."""
    split = _SPLIT_PART.match(filename)
    if split and not parts:
        filename, parts = split.group("joined"), None
        first = remote_file(repo_id, f"{filename}-split-a", revision, token)
    elif parts:
        first = remote_file(repo_id, parts[0], revision, token)
    else:
        found = _remote_or_none(repo_id, filename, revision, token)
        if found is not None:
            shard = _SHARD.match(filename)
            if not shard:
                return [found], None
            stem, n = shard.group("stem"), int(shard.group("n"))
            names = [f"{stem}-{i:05d}-of-{n:05d}.gguf" for i in range(1, n + 1)]
            files = [remote_file(repo_id, name, found.commit, token) for name in names]
            return files, None
        # not there as one file: TheBloke uploads files over 50 GB as -split-a/-b parts
        first_or_none = _remote_or_none(repo_id, f"{filename}-split-a", revision, token)
        if first_or_none is None:
            raise NotFoundOnHub(f"no file {filename!r} in {repo_id} at revision {revision!r}")
        first = first_or_none
    files = [first]
    if parts:
        files += [remote_file(repo_id, p, first.commit, token) for p in parts[1:]]
    else:
        for letter in "bcdefghijklmnopqrstuvwxyz":
            nxt = _remote_or_none(repo_id, f"{filename}-split-{letter}", first.commit, token)
            if nxt is None:
                break
            files.append(nxt)
    return files, filename


def _offline_result(
    repo_id: str, filename: str, revision: str, exc: Exception
) -> DownloadResult | None:
    """The Hub is unreachable: a file already in the cache is still usable."""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(
        repo_id, filename, cache_dir=model_cache_dir(), revision=revision
    )
    if isinstance(cached, str):
        path = Path(cached)
        commit = path.parent.name
        note = f"Hub unreachable ({type(exc).__name__}): using the cached copy"
        return DownloadResult(
            path,
            repo_id,
            filename,
            revision,
            commit,
            path.stat().st_size,
            (path,),
            reused=True,
            notes=(note,),
        )
    joined = list((store.joined_dir() / store.repo_folder(repo_id)).glob(f"*/{filename}"))
    if joined:
        path = joined[0]
        note = f"Hub unreachable ({type(exc).__name__}): using the joined copy"
        return DownloadResult(
            path,
            repo_id,
            filename,
            revision,
            path.parent.name,
            path.stat().st_size,
            (path,),
            reused=True,
            notes=(note,),
        )
    return None


def download_file(
    repo_id: str,
    filename: str,
    revision: str = "main",
    *,
    token: str | bool | None = None,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    parts: tuple[str, ...] | None = None,
    check_compat: bool = True,
    keep_parts: bool = False,
    verify_cached: bool = True,
) -> DownloadResult:
    """Download `filename` (a single GGUF, the first shard of a set, or the joined name of split
    parts) from `repo_id`; returns where llama.cpp should open it. `token=None`: huggingface_hub's
    standard resolution (HF_TOKEN, then the stored login). Raises DownloadError subclasses with
    actionable messages; DownloadCancelled keeps the partial file for the next call.
    """
    started = time.monotonic()
    try:
        if offline_mode():
            # huggingface_hub < 1 decides this when its session is made, not per call
            raise OfflineModeIsEnabled("HF_HUB_OFFLINE is set")
        return _download(
            repo_id,
            filename,
            revision,
            token,
            progress,
            cancel,
            parts,
            check_compat,
            keep_parts,
            verify_cached,
            started,
        )
    except DownloadError as exc:
        # messages are ours, but some quote servers or libraries: scrub before they travel
        scrubbed = _scrub(str(exc), token)
        if scrubbed != str(exc):
            exc.args = (scrubbed,)
        raise
    except _HUB_FAILURES as exc:
        if isinstance(exc, UNREACHABLE_ERRORS) and not parts:
            offline = _offline_result(repo_id, filename, revision, exc)
            if offline is not None:
                return offline
        err = _hub_error(exc, repo_id, filename, revision)
        err.args = (_scrub(str(err), token),)
        raise err from None


def _download(
    repo_id: str,
    filename: str,
    revision: str,
    token: str | bool | None,
    progress: ProgressCallback | None,
    cancel: threading.Event | None,
    parts: tuple[str, ...] | None,
    check_compat: bool,
    keep_parts: bool,
    verify_cached: bool,
    started: float,
) -> DownloadResult:
    problem = catalog_mod.check_remote_name(filename)
    if problem or any(catalog_mod.check_remote_name(p) for p in parts or ()):
        raise DownloadError(f"file name {filename!r} is not a safe repository path: {problem}")
    files, joined_name = _names_for(repo_id, filename, revision, token, parts)
    commit = files[0].commit
    dest = None
    if joined_name is not None:
        dest = store.joined_dir() / store.repo_folder(repo_id) / commit / joined_name
        if dest.exists():
            return DownloadResult(
                dest,
                repo_id,
                joined_name,
                revision,
                commit,
                dest.stat().st_size,
                (dest,),
                sha256=store.sidecar_sha(dest),
                verified=True,
                reused=True,
                seconds=time.monotonic() - started,
            )
    missing = [rf for rf in files if not store.blob_path(rf).exists()]
    need = 0
    for rf in missing:
        partial = store.partial_path(rf)
        need += rf.size - (partial.stat().st_size if partial.exists() else 0)
    what = joined_name or files[0].filename
    _preflight(need, store.blob_path(files[0]).parent, what)
    if dest is not None:
        _preflight(sum(rf.size for rf in files) + need, dest.parent, f"{what} (joined)")
    compat_checked = False
    if check_compat and missing:
        part_names = tuple(rf.filename for rf in files) if joined_name else None
        first = joined_name or files[0].filename
        compat_checked = _check_remote_compat(repo_id, first, commit, token, part_names)
    fetched = [
        _fetch_one(rf, revision, token, progress, cancel, i + 1, len(files), verify_cached)
        for i, rf in enumerate(files)
    ]
    local = tuple(f.path for f in fetched)
    sha = files[0].etag if len(files) == 1 and len(files[0].etag) == 64 else ""
    path, size = local[0], sum(rf.size for rf in files)
    if dest is not None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        sha = store.join([p.resolve() for p in local], dest, progress, cancel)
        if not keep_parts:
            for rf in files:
                store.remove_from_cache(rf)
        path, local = dest, (dest,)
    return DownloadResult(
        path=path,
        repo_id=repo_id,
        filename=joined_name or files[0].filename,
        revision=revision,
        commit=commit,
        size=size,
        files=local,
        sha256=sha,
        verified=all(f.verified for f in fetched),
        reused=all(f.reused for f in fetched),
        bytes_fetched=sum(f.received for f in fetched),
        resumed_from=sum(f.resumed_from for f in fetched),
        compat_checked=compat_checked,
        seconds=time.monotonic() - started,
    )


def local_path(model: catalog_mod.Model, quant: str) -> Path | None:
    """The downloaded file of a catalog quant on this machine, else None; never asks the Hub.

    Looks where download_quant puts it: the Hugging Face cache (a single file or the first
    llama.cpp shard), or FitBench's joined copy of TheBloke-style split parts.
    """
    from huggingface_hub import try_to_load_from_cache

    q = model.quant(quant)
    if q.is_joined:
        joined = store.joined_dir() / store.repo_folder(model.repo)
        found = sorted(joined.glob(f"*/{q.file}"))
        return found[0] if found else None
    filename = q.parts[0] if q.is_sharded else q.file
    cached = try_to_load_from_cache(
        model.repo, filename, cache_dir=model_cache_dir(), revision=model.revision
    )
    return Path(cached) if isinstance(cached, str) and Path(cached).is_file() else None


def download_quant(
    model_id: str,
    quant: str | None = None,
    *,
    catalog: catalog_mod.Catalog | None = None,
    **kwargs: Any,
) -> DownloadResult:
    """A catalog entry: `model_id` at `quant` (default: the model's default quant)."""
    cat = catalog if catalog is not None else catalog_mod.load()
    model = cat.get(model_id)
    q = model.quant(quant or model.default_quant)
    parts = q.parts if q.is_joined else None
    filename = q.file if not q.is_sharded else q.parts[0]
    return download_file(model.repo, filename, model.revision, parts=parts, **kwargs)
