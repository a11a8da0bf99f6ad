"""The report with the real advice: `fitbench report` computes it with advise.recommend.

Inputs are the SYNTHETIC H200 records and hardware of test_report_support.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import test_report_support as data
from fitbench.cli import main
from fitbench.core.report import ReportError, report_from_results_file
from fitbench.core.results.schema import write_jsonl

advise = pytest.importorskip("fitbench.core.advise.recommend")
pytestmark = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="poppler-utils not installed"
)


def pdf_text(pdf: Path) -> str:
    out = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True)
    return " ".join(out.stdout.split())


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    results = tmp_path / "h200.jsonl"
    write_jsonl(data.h200_records(), results)
    hardware = tmp_path / "detect.json"
    hardware.write_text(json.dumps(data.h200_hardware()), encoding="utf-8")
    return results, hardware


def test_cli_computes_the_advice_for_the_goal(
    tmp_path: Path, inputs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from fitbench.core.model import catalog

    results, hardware = inputs
    expected = advise.recommend(
        data.h200_records(),
        hardware=data.h200_hardware(),
        catalog=catalog.load(),
        goal="throughput",
    ).to_dict()
    pdf = tmp_path / "service.pdf"
    argv = ["report", "--results", str(results), "--pdf", str(pdf), "--hardware", str(hardware)]
    assert main([*argv, "--goal", "throughput"]) == 0
    assert "wrote" in capsys.readouterr().out
    text = pdf_text(pdf)
    # the verdict box shows the advice's verdict word for word
    assert flat(expected["verdict"]) in text
    assert expected["choice"]["model_name"] in text
    assert "Goal throughput" in text
    # the recipe and the predictor's accounting made it in
    # the downloaded file where there is one, else a Hub reference llama-server resolves itself
    assert "llama-server -m" in text or "llama-server -hf" in text
    assert "The predictor's residuals on the measured points" in text
    assert "Predictor constants (fitted to this machine's measurements)" in text


def test_unknown_goal_is_refused_before_any_work(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    results, _ = inputs
    with pytest.raises(ReportError, match="unknown goal 'fastest': choose one of interactive"):
        report_from_results_file(results, tmp_path / "r.pdf", goal="fastest")
    assert not (tmp_path / "r.pdf").exists()


def test_advice_resting_on_predictions_is_marked_so(tmp_path: Path) -> None:
    """Records of a model the catalog does not know: the advice cannot use them, so every
    expected number is predicted, and the report must say so wherever they appear."""
    records = data.h200_records()
    for r in records:
        r["model_id"] = "my-own-finetune"
    results = tmp_path / "adhoc.jsonl"
    write_jsonl(records, results)
    pdf = tmp_path / "r.pdf"
    report_from_results_file(results, pdf, hardware=data.h200_hardware())
    text = pdf_text(pdf)
    expected = text.split("Expected on this machine", 1)[1].split("Why", 1)[0]
    assert "predicted" in expected and "measured on a twin" not in expected
    assert "Predicted numbers in the recommendation" in text
    assert "(PREDICTED)" in text
    # the measurements of the unknown model are still reported, as measured
    assert "my-own-finetune" in text and "196 t/s measured on a twin" in text
