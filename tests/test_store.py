"""The SQLite results store: runs, records, export, survival of a dying process."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fitbench.core import paths
from fitbench.core.results import store
from fitbench.core.results.schema import new_record, read_jsonl


def _record(test: str = "tg", status: str = "ok", **extra: object) -> dict[str, object]:
    return new_record(
        model_id="m", quant="Q4_K_M", source="twin", test=test, status=status, **extra
    )


def test_runs_and_records_round_trip(tmp_path: Path) -> None:
    with store.open_store() as db:
        assert db.path == paths.results_db()
        run = db.add_run(settings={"reps": 2}, hardware={"cpu": "x"}, hardware_fingerprint="hw1")
        db.add_record(run, _record("pp", avg_ts=100.0, n_prompt=64))
        db.add_record(run, _record("tg", status="oom", error="cudaMalloc failed"))
        db.finish_run(run)
        runs = db.list_runs()
        assert [r.run_id for r in runs] == [run]
        assert runs[0].n_records == 2 and runs[0].status == "finished"
        assert runs[0].settings == {"reps": 2} and runs[0].hardware_fingerprint == "hw1"
        recs = db.records(run)
        assert [r["test"] for r in recs] == ["pp", "tg"]
        assert all(r["run_id"] == run for r in recs)
        assert recs[1]["status"] == "oom" and "cudaMalloc" in recs[1]["error"]
        out = tmp_path / "x" / "run.jsonl"
        assert db.export_jsonl(run, out) == 2
    assert [r["avg_ts"] for r in read_jsonl(out)] == [100.0, 0.0]
    assert store.records(run)[0]["n_prompt"] == 64  # module-level helpers open the default db


def test_store_uses_wal_and_is_readable_by_plain_sqlite() -> None:
    with store.open_store() as db:
        run = db.add_run()
        db.add_record(run, _record())
        mode = sqlite3.connect(db.path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        n = sqlite3.connect(db.path).execute("SELECT COUNT(*) FROM records").fetchone()[0]
        assert n == 1


def test_a_record_survives_a_process_that_dies_without_closing(tmp_path: Path) -> None:
    db_path = tmp_path / "results.sqlite3"
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from fitbench.core.results import store
        from fitbench.core.results.schema import new_record
        db = store.open_store(Path({str(db_path)!r}))
        run = db.add_run(run_id="r1")
        db.add_record(run, new_record(model_id="m", test="pp", avg_ts=5.0))
        os._exit(9)  # no close, no atexit: as if the app was killed
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    with store.open_store(db_path) as db:
        assert [r["avg_ts"] for r in db.records("r1")] == [5.0]
        assert db.list_runs()[0].finished is None  # the run never finished, its data is there


def test_unusable_database_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "results.sqlite3"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(store.StoreError, match=r"results\.sqlite3"):
        store.open_store(bad)


def test_unknown_run_and_empty_export_are_clear_errors(tmp_path: Path) -> None:
    with store.open_store() as db:
        run = db.add_run()
        with pytest.raises(store.StoreError, match="no records"):
            db.export_jsonl(run, tmp_path / "x.jsonl")
        with pytest.raises(store.StoreError, match=r"no run 'nope'"):
            db.get_run("nope")


def test_a_reader_opens_the_store_while_a_sweep_holds_the_write_lock(tmp_path: Path) -> None:
    """The GUI's history opens the store while a sweep writes; it must not need the lock."""
    path = tmp_path / "results.sqlite3"
    store.open_store(path).close()
    writer = sqlite3.connect(path)
    writer.execute("BEGIN IMMEDIATE")  # what a sweep's record write holds for a moment
    try:
        with store.open_store(path) as reader:  # before the fix: "database is locked" after 10 s
            assert reader.list_runs() == []
    finally:
        writer.rollback()
        writer.close()


def test_history_readers_never_create_or_lock_the_database(tmp_path: Path) -> None:
    db = paths.results_db()
    assert store.list_runs() == [] and store.records() == []
    assert not db.exists()  # reading the history of a new install creates nothing
    db.write_bytes(b"")  # a sweep has just created the file, no tables yet
    assert store.list_runs() == []
    db.unlink()
    with store.open_store() as writer_store:
        run_id = writer_store.add_run(settings={"argv": ["bench"]})
        writer = sqlite3.connect(db)
        writer.execute("BEGIN IMMEDIATE")  # a sweep in the middle of a write
        try:
            assert [r.run_id for r in store.list_runs()] == [run_id]
        finally:
            writer.rollback()
            writer.close()
