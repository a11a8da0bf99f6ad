"""`fitbench download`: the local path printed last, clear errors, no token anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fitbench.cli import main
from fitbench.core import paths
from hub_server import HubServer
from test_download_splits import TINY_CATALOG

REPO = "org/tiny-GGUF"
NAME = "tiny.Q4_K_M.gguf"
SECRET = "hf_cliTestSecret9876543210abcdef"


def test_download_by_repo_prints_the_path_last(
    hub_server: HubServer, tiny_dense_twin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub_server.add_file(REPO, NAME, tiny_dense_twin)
    assert main(["download", "--repo", REPO, "--file", NAME]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    path = Path(out[-1])
    assert path.is_file() and path.read_bytes() == tiny_dense_twin.read_bytes()
    assert "SHA-256 verified" in out[0]


def test_download_by_model_id_with_json(
    hub_server: HubServer, tiny_dense_twin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hub_server.add_file(REPO, NAME, tiny_dense_twin)
    (paths.config_dir() / "models.toml").write_text(TINY_CATALOG, encoding="utf-8")
    assert main(["download", "--model", "tiny", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert Path(data["path"]).is_file() and data["verified"] and data["commit"]


def test_errors_are_one_clear_line_without_traceback(
    hub_server: HubServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["download", "--repo", "org/none", "--file", NAME]) == 1
    err = capsys.readouterr().err
    assert "repository org/none not found" in err and "Traceback" not in err
    assert main(["download", "--model", "no-such-model"]) == 1
    assert "no model 'no-such-model'" in capsys.readouterr().err
    assert main(["download", "--repo", REPO]) == 2  # --file missing
    assert main(["download"]) == 2


def test_token_never_printed_or_logged(
    hub_server: HubServer,
    tiny_dense_twin: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    hub_server.add_file(REPO, NAME, tiny_dense_twin, private=True)
    hub_server.tokens.add(SECRET)
    monkeypatch.setenv("HF_TOKEN", SECRET + "wrong")
    assert main(["download", "--repo", REPO, "--file", NAME]) == 1
    failed = capsys.readouterr()
    monkeypatch.setenv("HF_TOKEN", SECRET)
    assert main(["download", "--repo", REPO, "--file", NAME, "--json"]) == 0
    ok = capsys.readouterr()
    logs = "".join(p.read_text(errors="replace") for p in paths.log_dir().rglob("*") if p.is_file())
    for text in (failed.out, failed.err, ok.out, ok.err, logs):
        assert SECRET not in text
