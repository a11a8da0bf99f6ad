"""`fitbench quick --serve`'s serving step: the fastest full-depth placement of a model's sweep,
served and loaded at 1, 2, 4, 8 users, levels stored beside the results; never fatal."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from fitbench.commands.quick import _serve_step
from fitbench.core.serve.records import read_levels
from fitbench.core.serve.server import ENV_VAR, find_llama_server

STANDIN = Path(__file__).with_name("serve_standin.py")
REAL_SERVER = find_llama_server()  # at import: the real cache dir, before conftest isolates it


def _record(path: Path, ngl: int, tg: float, source: str = "twin") -> dict[str, Any]:
    return {"status": "ok", "source": source, "test": "tg", "model_filename": str(path),
            "model_id": "llama-2-70b-chat", "quant": "Q4_K_M", "n_layer_model": 80,
            "n_gpu_layers": ngl, "n_cpu_moe": 0, "avg_ts": tg, "n_parallel": 1}  # fmt: skip


def test_the_fastest_placement_is_served_and_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_dense_twin: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    exe = tmp_path / "llama-server"
    exe.write_text(f'#!/bin/sh\necho "$@" >> "{tmp_path}/argv"\n'
                   f'exec "{sys.executable}" "{STANDIN}" "$@"\n')  # fmt: skip
    exe.chmod(0o755)
    monkeypatch.setenv(ENV_VAR, str(exe))
    monkeypatch.setenv("FITBENCH_STANDIN_CONFIG", json.dumps({"ttft_ms": 10, "itl_ms": 2}))
    records = [_record(tiny_dense_twin, 0, 5.0), _record(tiny_dense_twin, 99, 50.0),
               _record(tiny_dense_twin, 99, 500.0, source="scaled-twin")]  # fmt: skip
    out = tmp_path / "run.jsonl"
    _serve_step(records, "fp-1", 2, out)
    argv = (tmp_path / "argv").read_text()
    assert "-ngl 99" in argv and "-np 8" in argv and "-t 2" in argv
    levels = [line["level"]["concurrency"] for line in read_levels()]
    assert levels == [1, 2, 4, 8]
    assert [json.loads(x)["level"]["concurrency"] for x in
            out.with_suffix(".load.jsonl").read_text().splitlines()] == levels  # fmt: skip
    assert read_levels()[0]["hardware_fingerprint"] == "fp-1"
    assert "C=8" in capsys.readouterr().err


def test_no_server_is_a_note_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_dense_twin: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing"))
    _serve_step([_record(tiny_dense_twin, 0, 5.0)], "fp", None, tmp_path / "r.jsonl")
    assert "failed, the run goes on" in capsys.readouterr().err
    _serve_step([_record(tiny_dense_twin, 0, 5.0, source="scaled-twin")], "fp", None,
                tmp_path / "r.jsonl")  # fmt: skip
    assert "no full-size file" in capsys.readouterr().err


@pytest.mark.slow
def test_the_serving_step_with_the_real_llama_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_dense_twin: Path,
) -> None:  # fmt: skip
    """quick --serve's step through the real llama-server on this CPU (skipped without one)."""
    if REAL_SERVER is None:
        pytest.skip("no llama-server (`make test` builds one)")
    monkeypatch.setenv(ENV_VAR, str(REAL_SERVER.path))
    record = _record(tiny_dense_twin, 0, 50.0) | {"repack": False}  # AMX crashes on some VMs
    _serve_step([record], "fp-real", 2, tmp_path / "run.jsonl")
    stored = read_levels()
    assert [line["level"]["concurrency"] for line in stored] == [1, 2, 4, 8]
    for line in stored:
        assert line["level"]["failed"] == 0 and line["level"]["ok"] >= 4
        assert line["deployment"]["repack"] is False and line["basis"] == "measured-twin"
