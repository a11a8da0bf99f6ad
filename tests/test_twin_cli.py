"""`fitbench twin` and the twin cache (twin_for / twin_of / clean_twin_cache)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from fitbench.cli import main
from fitbench.core import paths
from fitbench.core.model import catalog
from fitbench.core.twin.data import DATA_RULE
from fitbench.core.twin.writer import (
    TwinError,
    cached_twins,
    clean_twin_cache,
    read_twin_marker,
    twin_for,
)
from gui_helpers import tiny_model_toml
from twin_fixtures import load_llama

TINY_CATALOG = "schema = 1\n" + tiny_model_toml(
    "tiny-llama", "Tiny llama for tests", repo="fitbench/tiny-llama-GGUF"
)


@pytest.fixture
def tiny_catalog() -> Path:
    path = catalog.user_catalog_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(TINY_CATALOG)
    return path


def test_cli_twin_of_a_catalog_model_json(
    tiny_catalog: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(["twin", "--model", "tiny-llama", "--out", str(tmp_path / "t.gguf"), "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    path = Path(out["path"])
    assert path == tmp_path / "t.gguf" and path.is_file()  # --out as given
    assert out["kind"] == "twin" and out["header"] == "built-in"
    assert out["size_bytes"] == path.stat().st_size == out["predicted_size_bytes"]
    assert out["layers_kept"] == [0, 1, 2, 3] and out["mb_per_s"] > 0
    load_llama(path).close()


def test_cli_scaled_twin_of_a_local_file(
    tiny_dense_twin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(
        ["twin", "--model", str(tiny_dense_twin), "--layers", "3", "--out", str(tmp_path / "s")]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "scaled-twin" in text and "3 of 4 blocks" in text
    marker = read_twin_marker(tmp_path / "s")
    assert marker is not None and marker.layers_kept == (0, 2, 3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "no-such-model"], "no model 'no-such-model' in the catalog"),
        (["--model", "tiny-llama", "--quant", "Q9_X"], "unknown quantization 'Q9_X'"),
        (["--model", "/nowhere/model.gguf"], "/nowhere/model.gguf: no such file"),
        (["--model", "tiny-llama", "--layers", "0"], "--layers must be at least 1"),
    ],
)
def test_cli_bad_input_is_one_clear_line(
    tiny_catalog: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    rc = main(["twin", *argv, "--out", str(tmp_path / "x.gguf")])
    assert rc != 0
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_twin_for_caches_by_header_and_cleans_up(tiny_catalog: Path) -> None:
    first = twin_for("tiny-llama", "Q4_K_M")
    assert first.parent == paths.twins_dir() and first.name.endswith(".fitbench-twin.gguf")
    # a twin cached under another data rule is not reused (its name carries the rule)
    assert first.name.endswith(f".d{DATA_RULE}.fitbench-twin.gguf")
    inode = first.stat().st_ino
    assert twin_for("tiny-llama", "Q4_K_M") == first and first.stat().st_ino == inode
    scaled = twin_for("tiny-llama", "Q4_K_M", layers=2)
    assert scaled != first and ".L2." in scaled.name
    assert read_twin_marker(scaled).kind == "scaled-twin"  # type: ignore[union-attr]
    # the full twin is the least recently used: a cap that fits one twin evicts it
    old = time.time() - 100
    os.utime(first, (old, old))
    stale = paths.twins_dir() / "killed.fitbench-twin.gguf.123.partial"
    stale.write_bytes(b"x")
    os.utime(stale, (old - 7200, old - 7200))
    removed = clean_twin_cache(max_bytes=scaled.stat().st_size)
    assert set(removed) == {first, stale}
    assert cached_twins() == [scaled]


def test_twin_for_refuses_a_twin_larger_than_the_cap(
    tiny_catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FITBENCH_TWIN_CACHE_GB", "0.001")
    with pytest.raises(TwinError, match="FITBENCH_TWIN_CACHE_GB"):
        twin_for("tiny-llama", "Q4_K_M")
    assert cached_twins() == []
