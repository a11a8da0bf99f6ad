"""`fitbench quick` end to end, as `make run` runs it without a display: detect, plan, benchmark
(real worker, real llama.cpp), recommend, PDF - on the tiny twins' catalog entries."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from fitbench.cli import main
from fitbench.core.results.schema import read_jsonl
from gui_helpers import install_tiny_catalog


def test_quick_runs_the_whole_job_and_writes_results_advice_and_pdf(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install_tiny_catalog()
    pdf = tmp_path / "report.pdf"
    argv = ["quick", "--pdf", str(pdf), "--model", "tiny-dense", "--model", "tiny-moe"]
    assert main([*argv, "-t", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["failed"] == 0 and summary["records"] >= 4
    records = read_jsonl(Path(summary["results"]))
    assert {r["model_id"] for r in records} == {"tiny-dense", "tiny-moe"}
    assert {r["source"] for r in records} == {"twin"}  # never unlabelled, never "real"
    assert {"pp", "tg"} <= {r["test"] for r in records}
    # where llama.cpp's AMX buffers crash (this VM's CPU), the first model's sweep turns repacking
    # off and the second model starts without it
    by_model = [[r for r in records if r["model_id"] == m] for m in ("tiny-dense", "tiny-moe")]
    if any(r["repack"] is False for r in by_model[0]):
        assert all(r["repack"] is False for r in by_model[1])
    advice = json.loads(Path(summary["advice"]).read_text())
    assert advice["verdict"] == summary["verdict"] and advice["verdict"]
    assert summary["pdf"] == str(pdf) and summary["pages"] >= 2
    text = subprocess.run(
        ["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Tiny dense" in text and "Tiny MoE" in text
    assert " ".join(advice["verdict"].split()[:4]) in " ".join(text.split())
