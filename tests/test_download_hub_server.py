"""The local Hub server speaks what huggingface_hub needs (so the download tests mean something)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,  # RemoteEntryNotFoundError's base; the only name before hub 1.0
    GatedRepoError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from fitbench.core.hub_http import TRANSPORT_ERRORS, stream_get
from hub_server import HubServer


def _get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """GET through huggingface_hub's own session (requests, httpx or httpx2, by its version)."""
    with stream_get(url, headers, connect_s=10, read_s=10) as r:
        body = b"".join(r.iter_bytes())
        return r.status_code, dict(r.raw.headers), body


def test_lfs_file_downloads_through_redirect_with_metadata(hub_server: HubServer) -> None:
    data = os.urandom(300_000)
    f = hub_server.add_file("org/repo", "m.gguf", data)
    meta = get_hf_file_metadata(hf_hub_url("org/repo", "m.gguf"))
    assert meta.etag == f.sha256 and meta.size == len(data)
    assert meta.commit_hash == hub_server.commit("org/repo")
    assert meta.location.startswith(hub_server.cdn_url)
    path = hf_hub_download("org/repo", "m.gguf")
    assert Path(path).read_bytes() == data
    assert f"snapshots/{hub_server.commit('org/repo')}/m.gguf" in path


def test_small_text_file_is_served_without_redirect(hub_server: HubServer) -> None:
    hub_server.add_file("org/repo", "README.md", b"hello")
    path = hf_hub_download("org/repo", "README.md")
    assert Path(path).read_bytes() == b"hello"
    assert all(r.status != 302 for r in hub_server.requests)


def test_model_info_paths_info_and_tree(hub_server: HubServer) -> None:
    f = hub_server.add_file("org/repo", "m.gguf", b"x" * 1000)
    hub_server.add_file("org/repo", "README.md", b"hello")
    info = HfApi().model_info("org/repo", files_metadata=True)
    assert info.sha == hub_server.commit("org/repo")
    by_name = {s.rfilename: s for s in info.siblings or []}
    assert by_name["m.gguf"].lfs is not None and by_name["m.gguf"].lfs.sha256 == f.sha256
    assert by_name["README.md"].lfs is None and by_name["README.md"].size == 5
    (entry,) = HfApi().get_paths_info("org/repo", ["m.gguf"])
    assert entry.size == 1000
    assert sorted(e.path for e in HfApi().list_repo_tree("org/repo")) == ["README.md", "m.gguf"]


def test_range_request_through_redirect(hub_server: HubServer) -> None:
    data = os.urandom(5000)
    hub_server.add_file("org/repo", "m.gguf", data)
    url = f"{hub_server.url}/org/repo/resolve/main/m.gguf"
    status, headers, body = _get(url, Range="bytes=100-199")
    assert status == 206 and body == data[100:200]
    assert {k.lower(): v for k, v in headers.items()}["content-range"] == "bytes 100-199/5000"
    assert _get(url, Range="bytes=-10")[2] == data[-10:]
    assert _get(url, Range="bytes=6000-")[0] == 416


def test_errors_map_to_huggingface_hub_exceptions(hub_server: HubServer) -> None:
    hub_server.add_file("org/repo", "m.gguf", b"x")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/nope", "m.gguf")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("org/repo", "other.gguf")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("org/repo", "m.gguf", revision="v9")


def test_private_and_gated_repos_need_a_token(hub_server: HubServer) -> None:
    hub_server.add_file("org/priv", "m.gguf", b"secret bytes", private=True)
    hub_server.add_file("org/gated", "m.gguf", b"gated bytes", gated=True)
    hub_server.tokens.add("hf_test_token")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/priv", "m.gguf")
    with pytest.raises(GatedRepoError):
        hf_hub_download("org/gated", "m.gguf")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/priv", "m.gguf", token="hf_wrong")
    path = hf_hub_download("org/priv", "m.gguf", token="hf_test_token")
    assert Path(path).read_bytes() == b"secret bytes"


def test_revision_by_commit_hash(hub_server: HubServer) -> None:
    hub_server.add_file("org/repo", "m.gguf", b"abc")
    commit = hub_server.commit("org/repo")
    path = hf_hub_download("org/repo", "m.gguf", revision=commit)
    assert Path(path).read_bytes() == b"abc"


def test_drop_and_corrupt_switches(hub_server: HubServer) -> None:
    data = os.urandom(3_000_000)
    f = hub_server.add_file("org/repo", "m.gguf", data)
    url = f"{hub_server.cdn_url}/cdn/{f.sha256}/m.gguf"
    hub_server.drop_connection_after(1000)
    with pytest.raises(TRANSPORT_ERRORS):
        _get(url)
    assert hub_server.drops_done == 1
    assert _get(url)[2] == data  # only once
    f.corrupt = True
    body = _get(url)[2]
    assert len(body) == len(data) and body != data
    assert sum(a != b for a, b in zip(body, data, strict=True)) == len(f.corrupt_positions()) == 4
