"""`fitbench recommend` end to end: JSON contract, human output, clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from fitbench.cli import main
from fitbench.core.plan.margin import DEFAULT_VRAM_MARGIN

DATA = Path(__file__).parent / "data"
RESULTS = DATA / "predict_h200_facts.jsonl"
HARDWARE = DATA / "predict_h200_hardware.json"


def test_json_output_has_the_contract(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["recommend", "--results", str(RESULTS), "--hardware", str(HARDWARE), "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    for key in ("choice", "expected", "alternatives", "reasons", "recipe", "verdict", "caveats"):
        assert key in d
    assert d["choice"]["model_id"] == "mixtral-8x7b-instruct"
    assert d["expected"]["tg_ts"]["basis"] == "measured-twin"
    assert d["recipe"]["llama_server"].startswith("llama-server ")
    assert d["moe_vs_dense"]["by_batch"] and d["predictor"]["constants"]


def test_throughput_goal_and_human_output(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(
        [
            "recommend",
            "--results",
            str(RESULTS),
            "--hardware",
            str(HARDWARE),
            "--goal",
            "throughput",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert out.startswith("Serve Mixtral 8x7B")
    assert "parallel sequences" in out and "(measured-twin)" in out
    assert "Reasons:" in out and "llama-server" in out


def test_results_of_two_machines_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mixed = tmp_path / "mixed.jsonl"
    lines = RESULTS.read_text().splitlines()
    other = json.loads(lines[0])
    other["hardware_fingerprint"] = "laptop-1234"
    mixed.write_text("\n".join([*lines, json.dumps(other)]) + "\n")
    rc = main(["recommend", "--results", str(mixed), "--hardware", str(HARDWARE)])
    err = capsys.readouterr().err
    assert rc == 1
    assert "2 different machines" in err and "laptop-1234" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("content", ["", "{not json\n", '{"avg_ts": "fast"}\n'])
def test_bad_results_files(
    tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    rc = main(["recommend", "--results", str(bad), "--hardware", str(HARDWARE)])
    err = capsys.readouterr().err
    assert rc == 1 and str(bad) in err and "Traceback" not in err


def test_bad_hardware_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hw = tmp_path / "hw.json"
    hw.write_text("[1, 2]")
    rc = main(["recommend", "--results", str(RESULTS), "--hardware", str(hw)])
    assert rc == 1 and "fitbench detect --json" in capsys.readouterr().err
    shutil.copy(HARDWARE, hw)
    missing = tmp_path / "absent.json"
    rc = main(["recommend", "--results", str(RESULTS), "--hardware", str(missing)])
    assert rc == 1 and "cannot read the hardware file" in capsys.readouterr().err


def test_results_from_another_machine_than_this_one(capsys: pytest.CaptureFixture[str]) -> None:
    """Without --hardware the current machine is detected; H200 results do not belong to it."""
    rc = main(["recommend", "--results", str(RESULTS)])
    err = capsys.readouterr().err
    assert rc == 1 and "measured on machine facts-md-h200" in err and "--json" in err


def test_quality_goal_and_what_if_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    """Best quality at >= N tokens/s, for a card this machine lacks; and `quick` takes the goal."""
    from fitbench.cli import build_parser

    argv = ["recommend", "--results", str(RESULTS), "--hardware", str(HARDWARE)]
    rc = main([*argv, "--goal", "quality", "--min-tps", "20", "--gpu", "RTX 4090", "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["goal"] == "quality" and d["limits"]["min_tps"] == 20
    assert d["expected"]["tg_ts"]["value"] >= 20
    assert d["expected"]["tg_ts"]["basis"] == "predicted"
    assert d["limits"]["vram_usable_bytes"] == DEFAULT_VRAM_MARGIN.usable(24 * 1024**3)
    assert main([*argv, "--goal", "quality", "--gpu", "RTX 4090"]) == 0
    out = capsys.readouterr().out
    assert "the best quality that reaches 10 tokens/s" in out and "Run it:" in out
    quick = build_parser().parse_args(["quick", "--goal", "quality", "--min-tps", "15"])
    assert (quick.goal, quick.min_tps) == ("quality", 15.0)
