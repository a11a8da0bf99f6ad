"""FitBench and llama-bench read each other, against real llama-bench output (tests/data/
llama-bench, see its README): the record has every llama-bench field with its type and order;
llama-bench's JSONL, JSON and SQL output are read wherever FitBench reads results and join
History; llama.cpp's compare-llama-bench.py reads FitBench's JSONL and results database unchanged.
"""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fitbench.cli import main
from fitbench.core import paths
from fitbench.core.bench.config import BenchConfig, BenchTest
from fitbench.core.results import schema as results
from fitbench.core.results import store as history
from fitbench.core.results.build_info import llama_build

DATA = Path(__file__).parent / "data" / "llama-bench"
COMPARE = DATA / "compare-llama-bench.py"
JSON_TYPES = {str: str, int: int, float: float, bool: bool, list: list}


def _golden() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / "llama-bench.jsonl").read_text().splitlines()]


def _sqlite(tmp_path: Path) -> Path:
    """llama-bench -o sql | sqlite3 db: its SQL output loaded as the sqlite3 shell would."""
    db = tmp_path / "llama-bench.sqlite"
    with sqlite3.connect(db) as con:
        con.executescript((DATA / "llama-bench.sql").read_text())
    return db


def _fitbench_records(n: int = 2) -> list[dict[str, Any]]:
    """Records as the worker builds them (one builder for every path), for a pp and a tg test."""
    specs = (BenchTest("pp", n_prompt=16), BenchTest("tg", n_gen=4))
    cfg = BenchConfig(model_path="/m/tiny.Q4_K_M.gguf", tests=specs, quant="Q4_K_M", n_threads=4)
    out = []
    for spec in specs:
        for i in range(n):
            measured: results.Measured = {
                "avg_ns": 1_000_000 + i,
                "stddev_ns": 10,
                "avg_ts": 100.0 + i,
                "stddev_ts": 1.0,
                "samples_ns": [1_000_000],
                "samples_ts": [100.0],
            }
            known: results.Known = {"model_type": "llama ?B Q4_K - Medium", "flash_attn": False}
            out.append(results.build_record(cfg, spec, known, measured))
    return out


def test_the_record_has_every_llama_bench_field_in_its_order_and_type() -> None:
    golden = _golden()
    assert list(golden[0]) == list(results.LLAMA_BENCH_FIELDS)
    rec = json.loads(results.to_json(_fitbench_records(1)[0]))
    for name, value in golden[0].items():
        assert isinstance(value, JSON_TYPES[results.FIELDS[results.FIELD_NAMES.index(name)].type])
        assert type(rec[name]) is type(value), (name, rec[name], value)
    assert rec["flash_attn"] == 0 and rec["load_mode"] == "mmap" and rec["devices"] == "auto"
    assert list(rec)[: len(results.LLAMA_BENCH_FIELDS)] == list(results.LLAMA_BENCH_FIELDS)


def test_build_commit_comes_from_the_linked_llama_cpp() -> None:
    build = llama_build()
    rec = _fitbench_records(1)[0]
    assert rec["build_commit"] == build["build_commit"] != ""
    assert rec["build_number"] == build["build_number"] == 0  # not in the shared library
    assert "-dirty" not in rec["build_commit"]


def test_older_fitbench_spellings_still_read(tmp_path: Path) -> None:
    old = results.to_json(results.new_record()).replace('"flash_attn":-1', '"flash_attn":true')
    old = old.replace('"load_mode":"mmap"', '"use_mmap":false')
    path = tmp_path / "old.jsonl"
    path.write_text(old + "\n")
    (rec,) = results.read_results(path)
    assert rec["flash_attn"] == 1 and rec["load_mode"] == "none"


@pytest.mark.parametrize("fmt", ["jsonl", "json", "sqlite"])
def test_llama_bench_output_is_read_in_every_format(fmt: str, tmp_path: Path) -> None:
    if fmt == "sqlite":
        path = _sqlite(tmp_path)
        with sqlite3.connect(path) as con:
            con.row_factory = sqlite3.Row
            golden = [dict(r) for r in con.execute("SELECT * FROM llama_bench")]
    elif fmt == "json":
        path = DATA / "llama-bench.json"
        golden = json.loads(path.read_text())
    else:
        path, golden = DATA / "llama-bench.jsonl", _golden()
    recs = results.read_results(path)
    assert len(recs) == len(golden) == 2
    for rec, want in zip(recs, golden, strict=True):
        for name in results.LLAMA_BENCH_FIELDS:
            if fmt == "sqlite" and name.startswith("samples_"):
                assert rec[name] is None  # its SQL output has no samples
            elif results.FIELDS[results.FIELD_NAMES.index(name)].type is bool:
                assert rec[name] is bool(want[name]), name  # SQL holds 0/1
            elif isinstance(want[name], float):
                assert rec[name] == pytest.approx(want[name], rel=1e-6), name
            else:
                assert rec[name] == want[name], name
        assert rec["model_id"] == Path(want["model_filename"]).stem
        assert rec["quant"] == "Q4_K_M" and rec["status"] == "ok"
        assert rec["run_id"].startswith("llama-bench-")
    assert [r["test"] for r in recs] == ["pp", "tg"]


def test_recommend_and_report_take_llama_bench_results_into_history(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hardware = Path(__file__).parent / "data" / "predict_h200_hardware.json"
    jsonl = DATA / "llama-bench.jsonl"
    rc = main(["recommend", "--results", str(jsonl), "--hardware", str(hardware), "--json"])
    out = capsys.readouterr()
    assert "must be bool" not in out.err and "unnamed model" not in out.out + out.err
    runs = history.list_runs()
    assert len(runs) == 1 and runs[0].status == "imported" and runs[0].n_records == 2
    pdf = tmp_path / "r.pdf"
    assert main(["report", "--results", str(jsonl), "--pdf", str(pdf), "--no-advice"]) == 0, (
        capsys.readouterr().err
    )
    assert pdf.stat().st_size > 0
    assert len(history.list_runs()) == 1  # the same file is imported once
    recs = history.records(runs[0].run_id)
    assert [r["test"] for r in recs] == ["pp", "tg"]
    assert {r["model_id"] for r in recs} == {"tiny-dense-Q4_K_M"}
    assert rc in (0, 1)  # advice on a twin of no catalog model may say so; reading succeeded


def _compare(path: Path, commit: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(COMPARE),
            "-t",
            "llama-bench",
            "-i",
            str(path),
            "-b",
            commit,
            "-c",
            commit,
        ],
        capture_output=True,
        text=True,
        cwd=cwd,  # outside any git repository: baseline and compare come from -b/-c
        timeout=120,
    )


needs_compare_deps = pytest.mark.skipif(
    importlib.util.find_spec("git") is None or importlib.util.find_spec("tabulate") is None,
    reason="compare-llama-bench.py imports GitPython and tabulate (the dev extra)",
)


@needs_compare_deps
def test_compare_llama_bench_reads_its_own_output(tmp_path: Path) -> None:
    commit = _golden()[0]["build_commit"]
    for path in (DATA / "llama-bench.jsonl", _sqlite(tmp_path)):
        done = _compare(path, commit, tmp_path)
        assert done.returncode == 0, done.stderr
        assert "pp16" in done.stdout and "tg4" in done.stdout


@needs_compare_deps
def test_compare_llama_bench_reads_fitbench_jsonl_and_database(tmp_path: Path) -> None:
    recs = _fitbench_records()
    jsonl = tmp_path / "fitbench.jsonl"
    results.write_jsonl(recs, jsonl)
    with history.open_store() as store:
        run_id = store.add_run()
        for rec in recs:
            store.add_record(run_id, rec)
        store.add_record(run_id, {**recs[0], "status": "oom", "avg_ts": 0.0})  # not compared
    commit = recs[0]["build_commit"]
    for path in (jsonl, paths.results_db()):
        done = _compare(path, commit, tmp_path)
        assert done.returncode == 0, done.stderr
        assert "pp16" in done.stdout and "tg4" in done.stdout, done.stdout
        assert "100.50" in done.stdout  # the mean of the two measured runs, not the failure


def test_a_schema_1_database_gets_its_llama_bench_table(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    with history.Store(db) as store:
        run_id = store.add_run()
        store.add_record(run_id, _fitbench_records(1)[0])
    with sqlite3.connect(db) as con:  # as schema 1 left it
        con.execute("DROP TABLE llama_bench")
        con.execute("PRAGMA user_version=1")
    with history.Store(db) as store:
        pass
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*), MAX(avg_ts) FROM llama_bench").fetchone() == (1, 100.0)
