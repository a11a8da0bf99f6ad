"""Unfinished downloads are the Hub's `.incomplete` files: huggingface_hub's cache scan and
`hf cache` see them, `fitbench cache` lists and prunes them; offline mode says so."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from huggingface_hub import scan_cache_dir

from fitbench.cli import main
from fitbench.core import paths
from fitbench.core.download import housekeeping
from fitbench.core.download import hub as download
from fitbench.core.download.hub import DownloadCancelled, DownloadError, Progress
from fitbench.core.hardware.disk import model_cache_dir as hf_cache_dir
from hub_server import HubServer

REPO = "org/tiny-GGUF"
NAME = "tiny.Q4_K_M.gguf"


def _interrupt(hub: HubServer, twin: Path) -> tuple[Path, int]:
    """Start a download and stop it a third of the way: the state a crash or outage leaves."""
    f = hub.add_file(REPO, NAME, twin)
    size = f.size
    cancel = threading.Event()
    hub.throttle_bytes_per_s = size * 2

    def on_progress(p: Progress) -> None:
        if p.phase == "download" and p.done >= size // 3:
            cancel.set()

    with pytest.raises(DownloadCancelled):
        download.download_file(REPO, NAME, progress=on_progress, cancel=cancel)
    hub.throttle_bytes_per_s = None
    (partial,) = hf_cache_dir().glob("*/blobs/*.incomplete")
    assert len(partial.name.removesuffix(".incomplete")) == 64  # blobs/<sha256>.incomplete
    return partial, size


def test_interrupted_download_is_seen_by_the_hub_tools_and_pruned(
    hub_server: HubServer, tiny_dense_twin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    partial, size = _interrupt(hub_server, tiny_dense_twin)
    kept = partial.stat().st_size
    assert 0 < kept < size

    info = scan_cache_dir(hf_cache_dir())
    if hasattr(info, "incomplete_files"):  # huggingface_hub >= 2 scans unfinished downloads
        assert [f.file_path for f in info.incomplete_files] == [partial]
        assert info.incomplete_size_on_disk > 0
    hf = Path(sys.executable).with_name("hf")
    if hf.exists() and hasattr(info, "incomplete_files"):
        out = subprocess.run(
            [str(hf), "cache", "ls"], capture_output=True, text=True, env=os.environ, check=True
        )
        assert "1 incomplete download" in out.stdout + out.stderr

    assert main(["cache", "list", "--partial", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["path"] for e in listed["entries"]] == [str(partial)]
    assert listed["total_bytes"] >= kept

    assert main(["cache", "prune", "--json"]) == 0
    pruned = json.loads(capsys.readouterr().out)
    assert pruned["kinds"] == ["partial"] and [e["path"] for e in pruned["entries"]] == [
        str(partial)
    ]
    assert not partial.exists()
    if hasattr(info, "incomplete_files"):
        assert not scan_cache_dir(hf_cache_dir()).incomplete_files

    hub_server.reset_counters()
    result = download.download_file(REPO, NAME)  # nothing left to resume: a full, verified fetch
    assert result.resumed_from == 0 and result.verified
    assert result.path.read_bytes() == tiny_dense_twin.read_bytes()


def test_a_partial_file_of_an_older_fitbench_is_resumed(
    hub_server: HubServer, tiny_dense_twin: Path
) -> None:
    partial, _ = _interrupt(hub_server, tiny_dense_twin)
    legacy = partial.with_name(partial.name.replace(".incomplete", ".fitbench-partial"))
    partial.rename(legacy)
    kept = legacy.stat().st_size
    assert [e.path for e in housekeeping.cache_entries(("partial",))] == [legacy]
    result = download.download_file(REPO, NAME)
    assert result.resumed_from == kept and result.verified
    assert not legacy.exists() and not partial.exists()


def test_cache_lists_twins_and_results_and_prunes_only_what_is_named(
    tiny_dense_twin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    twin = paths.twins_dir() / "x.fitbench-twin.gguf"
    shutil.copy(tiny_dense_twin, twin)
    paths.results_db().write_bytes(b"x" * 5000)
    sizes = housekeeping.cache_sizes()
    assert sizes["twin"][0] == 1 and sizes["results"][0] == 1
    assert housekeeping.twin_cache_size() >= twin.stat().st_size // 2  # allocated blocks

    assert main(["cache"]) == 0
    text = capsys.readouterr().out
    assert "twin: 1 file(s)" in text and str(paths.results_db()) in text

    assert main(["cache", "prune", "--all", "--dry-run"]) == 0
    assert twin.exists() and paths.results_db().exists()
    assert main(["cache", "prune"]) == 0  # default: unfinished downloads only
    assert twin.exists() and paths.results_db().exists()
    assert [e.path for e in housekeeping.clear_twins()] == [twin] and not twin.exists()
    assert main(["cache", "prune", "--results"]) == 0
    assert not paths.results_db().exists()


def test_offline_mode_says_so_and_how_to_leave_it(
    hub_server: HubServer, tiny_dense_twin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    hub_server.add_file(REPO, NAME, tiny_dense_twin)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # huggingface_hub reads it at import
    with pytest.raises(DownloadError) as err:
        download.download_file(REPO, NAME)
    msg = str(err.value)
    assert "offline mode is on (HF_HUB_OFFLINE=1)" in msg and "HF_HUB_OFFLINE=0" in msg
    assert "cannot reach" not in msg and NAME in msg
