"""Remote headers over real HTTP (tests/hub_server.py) through huggingface_hub: ranges only."""

from __future__ import annotations

from pathlib import Path

import pytest

from fitbench.core import gguf
from fitbench.core.gguf import reader as gguf_header
from hub_server import HubServer
from test_gguf_builders import LlamaShape, Q, write_llama_gguf

REPO = "org/model-GGUF"
TOKEN = "hf_abcdefghijklmnopqrstuvwxyz0123"


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    # ~3 MB of tensor data behind a small header: a full download would be obvious
    shape = LlamaShape(n_layer=4, n_embd=512, n_ff=1024, n_head=8, n_head_kv=4, n_vocab=600)
    return write_llama_gguf(tmp_path / "m.Q8_0.gguf", shape, Q.Q8_0)


def test_remote_header_equals_local_and_skips_tensor_data(
    hub_server: HubServer, big_file: Path
) -> None:
    f = hub_server.add_file(REPO, big_file.name, big_file)
    local = gguf.read_header(big_file)
    remote = gguf.read_remote_header(REPO, big_file.name)
    assert remote.tensors == local.tensors
    assert remote.metadata == local.metadata
    assert remote.file_size == big_file.stat().st_size
    assert remote.source.startswith(hub_server.url)
    # only the first range (1 MiB) was sent, never the ~3 MB of tensor data
    assert f.bytes_served <= gguf_header.FIRST_READ < big_file.stat().st_size
    assert remote.extra["bytes_fetched"] == f.bytes_served
    assert all(r.range for r in hub_server.requests if r.method == "GET")


def test_range_grows_only_by_the_missing_bytes(
    hub_server: HubServer, big_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gguf_header, "FIRST_READ", 512)
    f = hub_server.add_file(REPO, big_file.name, big_file)
    remote = gguf.read_remote_header(REPO, big_file.name, use_cache=False)
    header_end = gguf.read_header(big_file).data_offset
    assert remote.extra["range_requests"] > 3
    assert header_end is not None
    # each request asks for the bytes not yet held: no byte is sent twice
    assert f.bytes_served == remote.extra["bytes_fetched"] < 2 * header_end


def test_cached_header_needs_no_range_and_survives_an_offline_hub(
    hub_server: HubServer, big_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from huggingface_hub import constants

    hub_server.add_file(REPO, big_file.name, big_file)
    first = gguf.read_remote_header(REPO, big_file.name)
    hub_server.reset_counters()
    again = gguf.read_remote_header(REPO, big_file.name)
    assert again.tensors == first.tensors and again.extra["from_cache"]
    assert not [r for r in hub_server.requests if r.method == "GET"]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    offline = gguf.read_remote_header(REPO, big_file.name)
    assert offline.tensors == first.tensors and offline.extra["from_cache"]


def test_missing_file_and_unreachable_hub_fail_clearly(
    hub_server: HubServer, big_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_server.add_file(REPO, big_file.name, big_file)
    with pytest.raises(gguf.GGUFError, match="no such file") as err:
        gguf.read_remote_header(REPO, "nope.gguf")
    assert "nope.gguf" in str(err.value)
    with pytest.raises(gguf.GGUFError, match="not found"):
        gguf.read_remote_header("org/absent", big_file.name)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    with pytest.raises(gguf.GGUFError, match="cannot reach"):
        gguf.read_remote_header(REPO, "never-cached.gguf")


def test_gated_repo_needs_a_token_and_errors_never_show_it(
    hub_server: HubServer, big_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub_server.add_file("org/gated", big_file.name, big_file, gated=True)
    hub_server.tokens.add(TOKEN)
    with pytest.raises(gguf.GGUFError, match="HF_TOKEN"):
        gguf.read_remote_header("org/gated", big_file.name)
    with pytest.raises(gguf.GGUFError) as err:
        gguf.read_remote_header("org/gated", big_file.name, token=TOKEN + "x")
    assert TOKEN not in str(err.value)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    m = gguf.read_remote_header("org/gated", big_file.name)
    assert m.n_layer == 4


def test_split_parts_on_the_hub(hub_server: HubServer, big_file: Path) -> None:
    raw = big_file.read_bytes()
    half = len(raw) // 2
    hub_server.add_file(REPO, "m.Q8_0.gguf-split-a", raw[:half])
    b = hub_server.add_file(REPO, "m.Q8_0.gguf-split-b", raw[half:])
    by_probe = gguf.read_remote_header(REPO, "m.Q8_0.gguf-split-a", use_cache=False)
    by_parts = gguf.read_remote_header(
        REPO, "m.Q8_0.gguf", parts=["m.Q8_0.gguf-split-a", "m.Q8_0.gguf-split-b"]
    )
    for m in (by_probe, by_parts):
        assert m.file_size == len(raw)
        assert m.tensors == gguf.read_header(big_file).tensors
    assert b.bytes_served == 0  # part b holds no header: only its size was asked (HEAD)
