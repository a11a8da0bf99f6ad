"""`fitbench bench`: llama-bench's flags, labelled output, JSONL, the stored history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fitbench.cli import main
from fitbench.core.results.schema import read_jsonl
from fitbench.core.results.store import open_store


def test_bench_runs_lists_of_settings_and_writes_everywhere(
    tmp_path: Path, tiny_moe_twin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "r.jsonl"
    argv = ["bench", "-m", str(tiny_moe_twin), "-p", "16", "-n", "4", "-r", "1", "-t", "2"]
    argv += ["-ncmoe", "0,all", "--batch", "2", "--repack", "0", "--out", str(out)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 6  # 2 loads x (pp, tg, batch)
    assert all("measured on twin" in ln for ln in lines)  # never an unlabelled number
    assert any("B2 tg4" in ln for ln in lines) and any("ncmoe   4" in ln for ln in lines)
    recs = read_jsonl(out)
    assert [r["n_cpu_moe"] for r in recs] == [0, 0, 0, 4, 4, 4]
    with open_store() as db:
        (run,) = db.list_runs()
        assert run.n_records == 6 and run.status == "finished"
        assert run.settings["argv"] and len(run.settings["configs"]) == 2

    export = tmp_path / "export.jsonl"
    assert main(["bench", "--export-run", run.run_id, "--out", str(export)]) == 0
    assert len(read_jsonl(export)) == 6
    assert main(["bench", "--list-runs", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert listed[0]["run_id"] == run.run_id


def test_bench_json_output(tiny_dense_twin: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "-m", str(tiny_dense_twin), "-p", "8", "-n", "0", "-r", "1", "--repack", "0"]
    assert main([*argv, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    (rec,) = data["records"]
    assert rec["test"] == "pp" and rec["n_prompt"] == 8 and rec["status"] == "ok"
    assert rec["run_id"] == data["run_id"] and rec["hardware_fingerprint"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["-ngl", "x"], "-ngl"),
        (["-fa", "maybe"], "-fa"),
        (["-ctk", "q3"], "KV cache type"),
        (["-p", "8-1+1,5*"], "-p"),
        (["--test-timeout", "-1"], "--test-timeout must be >= 0"),
    ],
)
def test_bad_flags_are_clear_errors(
    tiny_dense_twin: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    assert main(["bench", "-m", str(tiny_dense_twin), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_model_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "-m", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "neither a catalog model" in err and "mixtral-8x7b-instruct" in err
    assert main(["bench", "-m", "/nowhere/x.gguf"]) == 2
    assert "model file not found: /nowhere/x.gguf" in capsys.readouterr().err


def test_tensor_split_mode_reaches_llama_cpp_and_its_refusal_is_explained(
    tiny_dense_twin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("a GPU build loads with -sm tensor; this checks the CPU-only refusal")
    argv = ["bench", "-m", str(tiny_dense_twin), "-p", "8", "-n", "0", "-r", "1", "--repack", "0"]
    assert main([*argv, "-sm", "tensor", "--json"]) == 1  # every load failed
    (rec,) = json.loads(capsys.readouterr().out)["records"]
    assert rec["status"] == "error" and rec["split_mode"] == "tensor"
    # llama.cpp logs this at error level without saying "error": the record still carries it
    assert "LLAMA_SPLIT_MODE_TENSOR needs >= 1 devices" in rec["error"]
