"""Reports summarise, for any size of results file (issue 21, item 7).

A 100k-line JSONL took 178 s and 737 MB for a 2,182-page PDF. The file is now streamed (at most
MAX_RECORDS records kept: the latest result of each test, then the most recent), the raw results
are hashed and copied in blocks, and tables show the most relevant configurations with a note.
benchmarks/report_scale.py measures time and peak RSS at 1k/10k/100k records.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import fuzz_headers as fz
import test_report_support as data
from fitbench.core.report import ReportError, from_file, report_from_results_file
from fitbench.core.report.capped import MAX_ROWS, most_relevant
from fitbench.core.report.configs import group
from fitbench.core.report.raw import RawResults
from fitbench.core.results.schema import write_jsonl

REPO = Path(__file__).resolve().parents[1]
needs_poppler = pytest.mark.skipif(
    shutil.which("pdftotext") is None or shutil.which("pdfdetach") is None,
    reason="poppler-utils not installed",
)


def _sweeps(n_runs: int) -> list[dict[str, Any]]:
    """The H200 records measured `n_runs` times: the same tests, a different speed each run."""
    out = []
    for run in range(n_runs):
        for r in data.h200_records():
            r = dict(r)
            r["run_id"] = f"run{run}"
            r["test_time"] = f"2026-01-{run % 28 + 1:02d}T{run // 28 % 24:02d}:00:00Z"
            if r["avg_ts"]:
                r["avg_ts"] = float(r["avg_ts"]) + run
            out.append(r)
    return out


def test_a_long_history_keeps_the_latest_result_of_each_test(tmp_path: Path) -> None:
    results = tmp_path / "long.jsonl"
    records = _sweeps(30)
    write_jsonl(records, results)
    per_run = len(data.h200_records())
    read = from_file.read_results(results, max_records=2 * per_run)
    assert read.total == len(records) and read.omitted == len(records) - len(read.records)
    assert len(read.records) <= 2 * per_run
    # every test of the sweep is there once, from the last run
    assert len(read.records) == per_run
    assert {r["run_id"] for r in read.records} == {"run29"}
    # under the cap nothing is dropped
    assert len(from_file.read_results(results).records) == len(records)


def test_past_the_cap_the_most_recent_tests_are_kept(tmp_path: Path) -> None:
    results = tmp_path / "wide.jsonl"
    records = []
    for i in range(300):  # 300 placements, one test each: 300 slots
        r = data._tg(data.MIXTRAL, i % 30, 10.0 + i, data.T0, n_cpu_moe=i // 30)
        r["run_id"] = f"run{i}"
        records.append(r)
    write_jsonl(records, results)
    read = from_file.read_results(results, max_records=50)
    assert read.total == 300 and len(read.records) == 50
    assert [r["run_id"] for r in read.records] == [f"run{n}" for n in range(250, 300)]


def test_tables_show_the_most_relevant_configurations() -> None:
    records = [
        data._tg(data.MIXTRAL, ngl, 10.0 + ngl + cmoe / 10, data.T0, n_cpu_moe=cmoe)
        for ngl in range(34)
        for cmoe in (0, 8)
    ]
    slow = data._tg(data.LLAMA70, 3, 1.0, data.T0)  # the slowest: but the advice chose it
    configs = group([*records, slow])
    advice = {"choice": {"model_id": data.LLAMA70, "quant": slow["quant"]}}
    advice["choice"]["placement"] = {"n_gpu_layers": 3, "n_cpu_moe": 0}
    shown, hidden = most_relevant(configs, advice)
    assert len(configs) > MAX_ROWS and len(shown) == MAX_ROWS and hidden == len(configs) - MAX_ROWS
    assert any(c.model_id == data.LLAMA70 for c in shown)
    fastest = sorted((c.ts("tg") or 0.0 for c in configs), reverse=True)[: MAX_ROWS - 1]
    assert sorted(c.ts("tg") or 0.0 for c in shown if c.model_id == data.MIXTRAL) == sorted(fastest)
    assert shown == [c for c in configs if c in shown]  # in the report's usual order


def test_raw_results_are_the_bytes_scanned(tmp_path: Path) -> None:
    results = tmp_path / "r.jsonl"
    write_jsonl(data.h200_records(), results)
    original = results.read_bytes()
    raw = RawResults.scan(results)
    with results.open("ab") as f:  # a bench still appending: the attachment is what was read
        f.write(b'{"appended": true}\n')
    assert raw.read() == original and raw.n_bytes == len(original)
    results.write_bytes(original.replace(b"h200", b"H200", 1) + b"more\n")
    with pytest.raises(ReportError, match="changed while the report was written"):
        raw.read()


@needs_poppler
def test_a_report_past_the_cap_says_so_and_attaches_every_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(from_file, "MAX_RECORDS", 40)
    results = tmp_path / "long.jsonl"
    write_jsonl(_sweeps(10), results)
    pdf = tmp_path / "r.pdf"
    report_from_results_file(results, pdf, compute=False)
    text = " ".join(
        subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True).stdout.split()
    )
    n = len(_sweeps(10))
    assert f"{n} in the file; this report summarises the latest result of each test" in text
    subprocess.run(["pdfdetach", "-saveall", "-o", str(tmp_path), str(pdf)], check=True)
    assert (tmp_path / "long.jsonl").read_bytes() == results.read_bytes()


def test_a_large_generated_file_makes_a_short_report_promptly(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "report_scale", REPO / "benchmarks/report_scale.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules["report_scale"] = bench
    spec.loader.exec_module(bench)
    results = tmp_path / "big.jsonl"
    bench.generate(results, 4000)
    with fz.time_bound(180):  # main took ~130 s for 10k records here, 42 s for 1k
        written = report_from_results_file(
            results, tmp_path / "r.pdf", compute=False, hardware=bench.HARDWARE
        )
    assert written.pages < 30
