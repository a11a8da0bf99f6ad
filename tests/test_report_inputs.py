"""The report with bad or partial input: clear errors, no partial files; and `fitbench report`.

Inputs are the SYNTHETIC H200 records of test_report_support.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageChops

import test_report_support as data
from fitbench.cli import main
from fitbench.core import outfile
from fitbench.core.report import ReportError, report_from_results_file
from fitbench.core.report.pdf import WARNING_FILL
from fitbench.core.results.schema import write_jsonl

needs_poppler = pytest.mark.skipif(
    shutil.which("pdftotext") is None or shutil.which("pdfdetach") is None,
    reason="poppler-utils not installed (apt-get install -y poppler-utils)",
)


def pdf_text(pdf: Path) -> str:
    out = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True, check=True)
    return " ".join(out.stdout.split())


@pytest.fixture
def results(tmp_path: Path) -> Path:
    path = tmp_path / "run.jsonl"
    write_jsonl(data.h200_records(), path)
    return path


def entries(folder: Path) -> list[str]:
    """What is in the folder, besides the per-test home dirs of conftest.py."""
    return sorted(p.name for p in folder.iterdir() if p.name != "home")


def test_empty_results_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(ReportError, match=r"empty\.jsonl: no result records"):
        report_from_results_file(empty, tmp_path / "r.pdf", compute=False)
    assert entries(tmp_path) == ["empty.jsonl"]


def test_corrupt_results_file_names_file_and_line(tmp_path: Path, results: Path) -> None:
    lines = results.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3][:40]  # a line cut short, as a crash mid-write leaves it
    results.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ReportError, match=r"run\.jsonl:4: not a JSON line"):
        report_from_results_file(results, tmp_path / "r.pdf", compute=False)
    assert not (tmp_path / "r.pdf").exists()


def test_binary_file_is_not_a_results_file(tmp_path: Path) -> None:
    junk = tmp_path / "model.gguf"
    junk.write_bytes(b"GGUF\x03\x00\x00\x00\xff\xfe\x00\x80" * 10)
    with pytest.raises(ReportError, match=r"model\.gguf"):
        report_from_results_file(junk, tmp_path / "r.pdf", compute=False)


def test_missing_results_file(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="results file not found"):
        report_from_results_file(tmp_path / "nope.jsonl", tmp_path / "r.pdf", compute=False)


def test_results_from_two_machines_are_refused(tmp_path: Path, results: Path) -> None:
    other = data.h200_records()[:3]
    for r in other:
        r["hardware_fingerprint"] = data.OTHER_FINGERPRINT
    write_jsonl(other, results)
    with pytest.raises(ReportError) as exc:
        report_from_results_file(results, tmp_path / "r.pdf", compute=False)
    message = str(exc.value)
    assert data.FINGERPRINT in message and data.OTHER_FINGERPRINT in message
    assert "--fingerprint" in message
    assert entries(tmp_path) == ["run.jsonl"]


@needs_poppler
def test_fingerprint_picks_one_machine_and_its_lines_only(tmp_path: Path, results: Path) -> None:
    other = data.h200_records()[:3]
    for r in other:
        r["hardware_fingerprint"] = data.OTHER_FINGERPRINT
    write_jsonl(other, results)
    pdf = tmp_path / "r.pdf"
    report_from_results_file(results, pdf, compute=False, fingerprint=data.FINGERPRINT)
    (tmp_path / "att").mkdir()
    subprocess.run(["pdfdetach", "-saveall", "-o", str(tmp_path / "att"), str(pdf)], check=True)
    lines = (tmp_path / "att" / "run.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(data.h200_records())
    assert {json.loads(line)["hardware_fingerprint"] for line in lines} == {data.FINGERPRINT}
    with pytest.raises(ReportError, match="no records with hardware fingerprint"):
        report_from_results_file(results, pdf, compute=False, fingerprint="nosuchmachine")


def test_advice_or_hardware_for_another_machine_is_refused(tmp_path: Path, results: Path) -> None:
    advice = data.h200_advice()
    advice["hardware_fingerprint"] = data.OTHER_FINGERPRINT
    with pytest.raises(ReportError, match="the advice is for machine laptop"):
        report_from_results_file(results, tmp_path / "r.pdf", advice=advice)
    hardware = data.h200_hardware()
    hardware["fingerprint"] = data.OTHER_FINGERPRINT
    with pytest.raises(ReportError, match="hardware description is for machine laptop"):
        report_from_results_file(results, tmp_path / "r.pdf", hardware=hardware, compute=False)
    assert entries(tmp_path) == ["run.jsonl"]


@pytest.mark.parametrize("where", ["missing-folder", "parent-is-a-file", "out-is-a-folder"])
def test_unwritable_output_path(tmp_path: Path, results: Path, where: str) -> None:
    target = {
        "missing-folder": tmp_path / "no" / "such" / "r.pdf",
        "parent-is-a-file": results / "r.pdf",
        "out-is-a-folder": tmp_path,
    }[where]
    with pytest.raises(ReportError, match="cannot write the report to"):
        report_from_results_file(results, target, compute=False)
    assert entries(tmp_path) == ["run.jsonl"]


def test_failed_write_leaves_no_partial_file_and_keeps_the_old_one(
    tmp_path: Path, results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(b"%PDF- an earlier report")

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(outfile.os, "replace", disk_full)
    with pytest.raises(ReportError, match="No space left on device"):
        report_from_results_file(results, pdf, compute=False)
    assert entries(tmp_path) == ["r.pdf", "run.jsonl"]
    assert pdf.read_bytes() == b"%PDF- an earlier report"


def test_bad_page_size(tmp_path: Path, results: Path) -> None:
    with pytest.raises(ReportError, match="page size must be one of A4, Letter"):
        report_from_results_file(results, tmp_path / "r.pdf", compute=False, page_size="A5")
    assert entries(tmp_path) == ["run.jsonl"]


@needs_poppler
def test_large_raw_results_go_beside_the_pdf(tmp_path: Path, results: Path) -> None:
    from fitbench.core.report import build_report, write_pdf
    from fitbench.core.results.schema import read_jsonl

    report = build_report(read_jsonl(results), None, None, raw_filename="run.jsonl")
    written = write_pdf(
        report, tmp_path / "r.pdf", raw_jsonl=results.read_bytes(), max_embed_bytes=1000
    )
    assert written.attachment == "beside"
    assert written.beside == tmp_path / "r.run.jsonl"
    assert written.beside.read_bytes() == results.read_bytes()
    listing = subprocess.run(
        ["pdfdetach", "-list", str(written.pdf)], capture_output=True, text=True, check=True
    ).stdout
    assert "0 embedded files" in listing
    assert "were written beside this PDF as r.run.jsonl" in pdf_text(written.pdf)


@needs_poppler
def test_without_advice_the_verdict_says_so(tmp_path: Path, results: Path) -> None:
    pdf = tmp_path / "r.pdf"
    problem = "the advice job was cancelled"  # what the GUI passes when its advice job failed
    report_from_results_file(results, pdf, compute=False, advice_problem=problem)
    text = pdf_text(pdf)
    assert "No recommendation was computed for these results" in text
    assert f"FitBench could not compute one: {problem}" in text
    assert "No predictions were made for this report: every number in it was measured" in text
    # the measurements are all still there, with their basis
    assert "Fastest generation per model" in text
    assert "196 t/s measured on a twin" in text
    # the warning box is the only yellow area: its colour must not leak into table rows
    # (figures may have a few antialiased pixels of that colour, a leaked row has thousands)
    subprocess.run(["pdftoppm", "-r", "30", "-png", str(pdf), str(tmp_path / "p")], check=True)
    yellow = {}
    for png in sorted(tmp_path.glob("p-*.png")):
        rgb = Image.open(png).convert("RGB")
        distance = ImageChops.difference(rgb, Image.new("RGB", rgb.size, WARNING_FILL))
        mask = Image.eval(distance.convert("L"), lambda v: 255 if v < 8 else 0)
        yellow[png.name] = (mask.histogram()[255], mask.getbbox())
    count, (_x0, y0, _x1, y1) = yellow.pop(sorted(yellow)[0])
    assert count > 1000 and y1 - y0 < 25, "page 1: the warning box (about 21 mm at 30 dpi)"
    assert all(n < 500 for n, _box in yellow.values()), yellow


@needs_poppler
def test_records_without_timestamps_memory_or_batch_tests(tmp_path: Path) -> None:
    """A minimal llama-bench-like file: figures that cannot be drawn say so instead."""
    records = [
        r for r in data.h200_records() if r["test"] == "tg" and r["model_id"] == data.MIXTRAL
    ]
    for r in records:
        r.update(test_time="", vram_peak_bytes=None, ram_peak_bytes=None, hardware_fingerprint="")
    path = tmp_path / "bare.jsonl"
    write_jsonl(records, path)
    pdf = tmp_path / "r.pdf"
    written = report_from_results_file(path, pdf, compute=False)
    text = pdf_text(pdf)
    assert "No parallel-sequence (batch) test finished" in text
    assert "No memory was recorded during the run" in text
    assert "Only one of the two models was measured" in text
    assert "Figure: Generation speed vs GPU offload" in text
    assert written.pages >= 3


# -- the command ----------------------------------------------------------------------------------


@needs_poppler
def test_cli_writes_the_report(
    tmp_path: Path, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hw = tmp_path / "hw.json"
    hw.write_text(json.dumps(data.h200_hardware()), encoding="utf-8")
    pdf = tmp_path / "out.pdf"
    code = main(
        [
            "report",
            "--results",
            str(results),
            "--pdf",
            str(pdf),
            "--hardware",
            str(hw),
            "--no-advice",
            "--page-size",
            "Letter",
            "--json",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["pdf"] == str(pdf) and summary["raw_results"] == "embedded"
    assert summary["pages"] >= 5
    text = pdf_text(pdf)
    assert "NVIDIA H200" in text and "4800 GB/s" in text and "gen 5 x16" in text


def test_cli_errors_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    code = main(["report", "--results", str(empty), "--pdf", str(tmp_path / "r.pdf")])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("fitbench report: error: ") and "no result records" in err
    assert "Traceback" not in err
    assert entries(tmp_path) == ["empty.jsonl"]


def test_cli_bad_hardware_file(
    tmp_path: Path, results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hw = tmp_path / "hw.json"
    hw.write_text("{not json", encoding="utf-8")
    code = main(
        [
            "report",
            "--results",
            str(results),
            "--pdf",
            str(tmp_path / "r.pdf"),
            "--hardware",
            str(hw),
        ]
    )
    assert code == 1
    assert "hw.json: not a hardware JSON file" in capsys.readouterr().err
    assert not (tmp_path / "r.pdf").exists()


def test_only_the_pdf_is_left_in_the_target_folder(tmp_path: Path, results: Path) -> None:
    """The temp file lives in the target folder (a rename never crosses file systems) and is
    gone once the PDF is in place."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    report_from_results_file(results, out_dir / "r.pdf", compute=False)
    assert entries(out_dir) == ["r.pdf"]
    assert os.path.getsize(out_dir / "r.pdf") > 10_000
