"""Downloads through huggingface_hub against the local Hub server, with real twin GGUF bytes."""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from collections import namedtuple
from pathlib import Path

import pytest

from fitbench.core import gguf
from fitbench.core.download import hub as download
from fitbench.core.download.hub import (
    AccessDenied,
    DownloadCancelled,
    IncompatibleModel,
    InsufficientDiskSpace,
    IntegrityError,
    NotFoundOnHub,
    Progress,
)
from hub_server import HubServer

REPO = "org/tiny-GGUF"
NAME = "tiny.Q4_K_M.gguf"
SECRET = "hf_fitbenchTestSecret0123456789"


def _publish(hub: HubServer, twin: Path, **kwargs: object) -> object:
    return hub.add_file(REPO, NAME, twin, **kwargs)  # type: ignore[arg-type]


def test_full_download_lands_in_the_hf_cache_verified(
    hub_server: HubServer, tiny_dense_twin: Path
) -> None:
    f = _publish(hub_server, tiny_dense_twin)
    reports: list[Progress] = []
    result = download.download_file(REPO, NAME, progress=reports.append)
    assert result.path.read_bytes() == tiny_dense_twin.read_bytes()
    commit = hub_server.commit(REPO)
    hf_home = Path(os.environ["HF_HOME"])
    assert result.path == hf_home / "hub" / "models--org--tiny-GGUF" / "snapshots" / commit / NAME
    assert (hf_home / "hub" / "models--org--tiny-GGUF" / "refs" / "main").read_text() == commit
    assert result.verified and result.sha256 == f.sha256 and result.compat_checked  # type: ignore[attr-defined]
    assert result.bytes_fetched == f.size and not result.reused  # type: ignore[attr-defined]
    # progress: bytes, total, rate and ETA; the last report is complete
    last = [p for p in reports if p.phase == "download"][-1]
    assert last.done == last.total == f.size and last.rate > 0 and last.eta_s == 0  # type: ignore[attr-defined]
    # the downloaded twin is planned as it is: every weight byte of the file, on the CPU
    from fitbench.core.plan import memory

    manifest = gguf.read_header(result.path)
    plan = memory.plan(manifest, memory.Placement(n_gpu_layers=0), n_ctx=256)
    weights = sum(t.n_bytes for t in manifest.tensors)
    assert plan.devices["CPU"]["weights"] == weights and 0 < weights < result.size
    assert plan.ram_bytes > weights and plan.vram_total == 0
    # huggingface_hub itself now finds the file without any network
    from huggingface_hub import try_to_load_from_cache

    assert try_to_load_from_cache(REPO, NAME, cache_dir=hf_home / "hub") == str(result.path)
    # ... and benchmarked as it is, through the real worker and llama.cpp
    from fitbench.core.bench.config import BenchConfig, BenchTest
    from fitbench.core.bench.events import RecordReady
    from fitbench.core.bench.runner import run_sweep
    from fitbench.core.results.store import open_store

    cfg = BenchConfig(
        model_path=str(result.path),
        tests=(BenchTest("pp", n_prompt=16), BenchTest("tg", n_gen=4)),
        source="twin",
        n_gpu_layers=0,
        reps=1,
        n_threads=2,
        repack=False,
    )
    with open_store() as store:
        records = [e.record for e in run_sweep([cfg], store=store) if isinstance(e, RecordReady)]
    assert [(r["test"], r["status"]) for r in records] == [("pp", "ok"), ("tg", "ok")]
    assert all(r["model_filename"] == str(result.path) and r["avg_ts"] > 0 for r in records)


def test_second_call_reuses_the_cache_and_works_offline(
    hub_server: HubServer, tiny_dense_twin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish(hub_server, tiny_dense_twin)
    first = download.download_file(REPO, NAME)
    hub_server.reset_counters()
    again = download.download_file(REPO, NAME)
    assert again.reused and again.path == first.path and hub_server.bytes_served == 0
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    offline = download.download_file(REPO, NAME)
    assert offline.path == first.path and offline.reused and "unreachable" in offline.notes[0]


def test_dropped_connection_is_resumed_with_under_1_percent_refetched(
    hub_server: HubServer, tiny_dense_twin: Path
) -> None:
    f = _publish(hub_server, tiny_dense_twin)
    size = f.size  # type: ignore[attr-defined]
    hub_server.drop_connection_after(size // 2)
    result = download.download_file(REPO, NAME)
    assert hub_server.drops_done == 1
    assert result.path.read_bytes() == tiny_dense_twin.read_bytes() and result.verified
    # header reads for the compatibility check are `bytes=0-N` ranges; the download is the
    # plain GET that was cut off plus the `bytes=K-` GET that resumed it
    gets = [
        r
        for r in hub_server.requests
        if r.method == "GET"
        and r.path.startswith("/cdn/")
        and not (r.range or "").endswith("-0")
        and not re.match(r"bytes=0-\d+$", r.range or "")
    ]
    assert [r.range is None for r in gets] == [True, False], [r.range for r in gets]
    resumed_at = int(re.match(r"bytes=(\d+)-$", gets[1].range or "").group(1))  # type: ignore[union-attr]
    assert resumed_at > 0
    refetched = gets[0].body_bytes + gets[1].body_bytes - size
    assert 0 <= refetched < size / 100, refetched


def test_cancel_keeps_the_partial_and_a_restart_resumes_it(
    hub_server: HubServer, tiny_dense_twin: Path
) -> None:
    f = _publish(hub_server, tiny_dense_twin)
    size = f.size  # type: ignore[attr-defined]
    cancel = threading.Event()
    hub_server.throttle_bytes_per_s = size * 2  # ~0.5 s for the file: time to cancel mid-way

    def on_progress(p: Progress) -> None:
        if p.phase == "download" and p.done >= size // 3:
            cancel.set()

    with pytest.raises(DownloadCancelled):
        download.download_file(REPO, NAME, progress=on_progress, cancel=cancel)
    partials = list(Path(os.environ["HF_HOME"]).glob("hub/*/blobs/*.incomplete"))
    assert len(partials) == 1 and 0 < partials[0].stat().st_size < size
    kept = partials[0].stat().st_size
    hub_server.throttle_bytes_per_s = None
    hub_server.reset_counters()
    result = download.download_file(REPO, NAME)  # a new call, as after an app restart
    assert result.resumed_from == kept and result.bytes_fetched == size - kept
    assert hub_server.bytes_served == size - kept
    assert result.path.read_bytes() == tiny_dense_twin.read_bytes() and result.verified


def test_missing_repo_and_file_are_clear(hub_server: HubServer, tiny_dense_twin: Path) -> None:
    _publish(hub_server, tiny_dense_twin)
    with pytest.raises(NotFoundOnHub, match=r"repository org/nope not found"):
        download.download_file("org/nope", NAME)
    with pytest.raises(NotFoundOnHub, match=r"no file 'tiny.Q9.gguf' in org/tiny-GGUF"):
        download.download_file(REPO, "tiny.Q9.gguf")
    with pytest.raises(NotFoundOnHub, match=r"revision 'v2' not found"):
        download.download_file(REPO, NAME, revision="v2")
    with pytest.raises(download.DownloadError, match=r"not a safe repository path"):
        download.download_file(REPO, "../../etc/passwd")


def test_private_repo_401_without_token_then_success_and_the_token_never_leaks(
    hub_server: HubServer,
    tiny_dense_twin: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    _publish(hub_server, tiny_dense_twin, private=True)
    hub_server.tokens.add(SECRET)
    with pytest.raises(AccessDenied, match=r"HTTP 401.*HF_TOKEN") as no_token:
        download.download_file(REPO, NAME)
    monkeypatch.setenv("HF_TOKEN", SECRET[:-1] + "X")  # a wrong token
    with pytest.raises(AccessDenied) as wrong:
        download.download_file(REPO, NAME)
    monkeypatch.setenv("HF_TOKEN", SECRET)  # the standard way users give a token
    result = download.download_file(REPO, NAME)
    assert result.path.read_bytes() == tiny_dense_twin.read_bytes()
    assert any(r.authorized for r in hub_server.requests)
    # the CDN (another origin) never receives the token
    assert not any(r.authorized for r in hub_server.requests if r.path.startswith("/cdn/"))
    for text in (str(no_token.value), str(wrong.value), repr(result.to_dict()), caplog.text):
        assert SECRET not in text and SECRET[:-1] not in text


def test_gated_repo_says_how_to_get_access(hub_server: HubServer, tiny_dense_twin: Path) -> None:
    _publish(hub_server, tiny_dense_twin, gated=True)
    with pytest.raises(AccessDenied, match=r"gated: accept its licence"):
        download.download_file(REPO, NAME)


def test_corrupted_bytes_are_caught_and_quarantined(
    hub_server: HubServer, tiny_dense_twin: Path
) -> None:
    f = _publish(hub_server, tiny_dense_twin)
    f.corrupt = True  # type: ignore[attr-defined]
    with pytest.raises(IntegrityError, match=r"hash mismatch.*moved to") as err:
        download.download_file(REPO, NAME)
    moved = err.value.quarantined
    assert moved is not None and moved.is_file() and "quarantine" in str(moved)
    hub_root = Path(os.environ["HF_HOME"]) / "hub"
    assert not list(hub_root.glob("*/blobs/*")) and not list(hub_root.glob("*/snapshots/*/*"))
    f.corrupt = False  # type: ignore[attr-defined]
    assert download.download_file(REPO, NAME).verified  # a fresh copy after the bad one


def test_corrupted_cached_blob_is_caught_before_use(
    hub_server: HubServer, tiny_dense_twin: Path
) -> None:
    _publish(hub_server, tiny_dense_twin)
    result = download.download_file(REPO, NAME)
    blob = result.path.resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.chmod(0o644)
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"hash mismatch"):
        download.download_file(REPO, NAME)


def test_full_disk_is_refused_before_any_byte(
    hub_server: HubServer, tiny_dense_twin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _publish(hub_server, tiny_dense_twin)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda _p: usage(10**9, 10**9 - 10**6, 10**6))
    with pytest.raises(InsufficientDiskSpace, match=r"needs 0\.\d\d GB, 0\.00 GB are free in"):
        download.download_file(REPO, NAME)
    assert hub_server.bytes_served == 0  # checked before even the header is read


def test_disk_filling_up_mid_download_keeps_the_partial(
    hub_server: HubServer, tiny_dense_twin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from fitbench.core.download import http as download_http

    f = _publish(hub_server, tiny_dense_twin)
    real_open = download_http.open_partial

    class FillsUp:
        """The partial file on a disk with room for half the download: ENOSPC after that."""

        def __init__(self, path: Path) -> None:
            self._f = real_open(path)
            self.left = f.size // 2  # type: ignore[attr-defined]

        def write(self, data: bytes) -> int:
            if self.left < len(data):
                raise OSError(errno.ENOSPC, "No space left on device")
            self.left -= len(data)
            return int(self._f.write(data))

        def __getattr__(self, name: str) -> object:
            return getattr(self._f, name)

        def __enter__(self) -> FillsUp:
            return self

        def __exit__(self, *exc: object) -> None:
            self._f.close()

    monkeypatch.setattr(download_http, "open_partial", FillsUp)
    with pytest.raises(InsufficientDiskSpace, match=r"disk holding .* is full.*resumes"):
        download.download_file(REPO, NAME)
    monkeypatch.setattr(download_http, "open_partial", real_open)
    result = download.download_file(REPO, NAME)
    assert result.resumed_from > 0 and result.verified
    assert result.path.read_bytes() == tiny_dense_twin.read_bytes()


def test_incompatible_layout_is_refused_from_the_header(
    hub_server: HubServer, tmp_path: Path
) -> None:
    old = _per_expert_gguf(tmp_path / "old-mixtral.gguf")
    f = hub_server.add_file(REPO, "old.Q4_K_M.gguf", old)
    with pytest.raises(IncompatibleModel, match=r"ffn_down_exps") as err:
        download.download_file(REPO, "old.Q4_K_M.gguf")
    assert err.value.reasons
    assert f.bytes_served < f.size  # only the header was read, never the tensor data
    assert not list((Path(os.environ["HF_HOME"]) / "hub").glob("*/blobs/*"))


def _per_expert_gguf(path: Path) -> Path:
    """A small GGUF in the Dec-2023 Mixtral layout: one tensor per expert."""
    import numpy as np
    from gguf import GGUFWriter

    w = GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_expert_count(2)
    w.add_expert_used_count(1)
    rng = np.random.default_rng(0)
    w.add_tensor("token_embd.weight", rng.standard_normal((256, 64), dtype=np.float32))
    for e in range(2):
        for kind, shape in (("gate", (128, 64)), ("up", (128, 64)), ("down", (64, 128))):
            data = rng.standard_normal(shape, dtype=np.float32)
            w.add_tensor(f"blk.0.ffn_{kind}.{e}.weight", data)
    # enough tensor bytes that "header only" is clearly less than the file
    w.add_tensor("output.weight", rng.standard_normal((4096, 64), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path
