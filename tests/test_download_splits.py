"""Split parts joined into one file, shards kept side by side, catalog entries by model id."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fitbench.core import gguf, paths
from fitbench.core.download import hub as download
from gui_helpers import tiny_model_toml
from hub_server import HubServer

REPO = "org/tiny-GGUF"


def _publish_parts(hub: HubServer, twin: Path, joined: str, n_parts: int = 2) -> bytes:
    data = twin.read_bytes()
    cut = len(data) // n_parts
    for i in range(n_parts):
        chunk = data[i * cut : (i + 1) * cut if i < n_parts - 1 else len(data)]
        hub.add_file(REPO, f"{joined}-split-{'abc'[i]}", chunk)
    return data


def test_split_parts_are_found_joined_verified_and_removed(
    hub_server: HubServer, tiny_dense_twin: Path
) -> None:
    data = _publish_parts(hub_server, tiny_dense_twin, "tiny.Q6_K.gguf")
    phases: set[str] = set()
    result = download.download_file(REPO, "tiny.Q6_K.gguf", progress=lambda p: phases.add(p.phase))
    assert result.path.name == "tiny.Q6_K.gguf" and result.path.read_bytes() == data
    assert result.path.is_relative_to(paths.data_dir())
    assert result.sha256 == hashlib.sha256(data).hexdigest() and result.verified
    assert result.compat_checked and {"download", "join"} <= phases
    # the parts were only a vehicle: gone from the HF cache once joined
    assert not list((Path(os.environ["HF_HOME"]) / "hub").glob("*/blobs/*"))
    # the joined file is one GGUF that llama.cpp itself loads (in a child process, as always)
    assert gguf.read_header(result.path).n_layer > 0
    load = (
        "import sys, llama_cpp; m = llama_cpp.Llama(sys.argv[1], n_ctx=64, verbose=False); "
        "print(m.n_vocab())"
    )
    proc = subprocess.run(
        [sys.executable, "-c", load, str(result.path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and int(proc.stdout.split()[-1]) > 0, proc.stderr[-2000:]
    hub_server.reset_counters()
    again = download.download_file(REPO, "tiny.Q6_K.gguf")
    assert again.reused and again.path == result.path and hub_server.bytes_served == 0


def test_asking_for_a_part_name_gets_the_joined_file_and_parts_can_be_kept(
    hub_server: HubServer, tiny_dense_twin: Path
) -> None:
    data = _publish_parts(hub_server, tiny_dense_twin, "tiny.Q8_0.gguf", n_parts=3)
    result = download.download_file(REPO, "tiny.Q8_0.gguf-split-a", keep_parts=True)
    assert result.path.name == "tiny.Q8_0.gguf" and result.path.read_bytes() == data
    kept = sorted(p.name for p in Path(os.environ["HF_HOME"]).glob("hub/*/snapshots/*/*"))
    assert kept == [f"tiny.Q8_0.gguf-split-{c}" for c in "abc"]


def test_catalog_quant_with_parts_by_model_id(hub_server: HubServer, tiny_dense_twin: Path) -> None:
    data = _publish_parts(hub_server, tiny_dense_twin, "tiny.Q6_K.gguf")
    hub_server.add_file(REPO, "tiny.Q4_K_M.gguf", tiny_dense_twin)
    (paths.config_dir() / "models.toml").write_text(TINY_CATALOG, encoding="utf-8")
    joined = download.download_quant("tiny", "Q6_K")
    assert joined.path.read_bytes() == data
    default = download.download_quant("tiny")  # the default quant
    assert default.path.name == "tiny.Q4_K_M.gguf" and default.verified


def test_shards_are_kept_side_by_side_in_one_snapshot(hub_server: HubServer) -> None:
    names = [f"big-Q4_K_M-{i:05d}-of-00003.gguf" for i in (1, 2, 3)]
    for i, name in enumerate(names):
        hub_server.add_file(REPO, name, os.urandom(10_000 + i))
    result = download.download_file(REPO, names[0], check_compat=False)
    assert result.path.name == names[0] and len(result.files) == 3
    assert {p.parent for p in result.files} == {result.path.parent}  # where llama.cpp looks
    assert sorted(p.name for p in result.files) == names and result.verified


def test_a_missing_part_is_an_error_not_a_short_file(hub_server: HubServer) -> None:
    hub_server.add_file(REPO, "x.gguf-split-b", b"orphan part b")
    with pytest.raises(download.NotFoundOnHub, match=r"no file 'x.gguf'"):
        download.download_file(REPO, "x.gguf")


TINY_CATALOG = tiny_model_toml(
    "tiny",
    "Tiny",
    repo=REPO,
    quants_toml="""[[models.quants]]
quant = "Q4_K_M"
file = "tiny.Q4_K_M.gguf"

[[models.quants]]
quant = "Q6_K"
file = "tiny.Q6_K.gguf"
parts = ["tiny.Q6_K.gguf-split-a", "tiny.Q6_K.gguf-split-b"]
""",
)
