"""The results history: SQLite in the user data dir; nothing measured is ever lost.

Every record is committed on its own (WAL journal, synchronous=FULL) as soon as the runner has
it, before the next test starts; a crash of the app or the machine loses at most the test that
was running. Records are stored whole (the validated JSON of core.results.schema) plus a few
indexed columns for queries. Finished tests are also rows of a `llama_bench` table with
llama-bench's columns and SQL types (its `-o sql` output), so llama.cpp's
scripts/compare-llama-bench.py reads this database as it reads llama-bench's own.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fitbench.core import paths
from fitbench.core.results.schema import (
    FIELDS,
    LLAMA_BENCH_FIELDS,
    LLAMA_BENCH_RUN_PREFIX,
    LLAMA_BENCH_TABLE,
    to_json,
    validate,
    write_jsonl,
)

SCHEMA_VERSION = 2  # 2: the llama_bench table

# llama-bench's SQL columns (sql_printer): its fields less the sample lists; bool and int are
# INTEGER, float REAL, text TEXT
_LB_COLUMNS = tuple(f for f in LLAMA_BENCH_FIELDS if not f.startswith("samples_"))
_SQL_TYPES = {str: "TEXT", bool: "INTEGER", int: "INTEGER", float: "REAL"}
_TYPES = {f.name: f.type for f in FIELDS}
_LB_TABLE_SQL = (
    f"CREATE TABLE IF NOT EXISTS {LLAMA_BENCH_TABLE} (\n    record_id INTEGER, "
    + ", ".join(f"{c} {_SQL_TYPES[_TYPES[c]]}" for c in _LB_COLUMNS)
    + "\n);\n"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started TEXT NOT NULL,
    finished TEXT,
    hardware_fingerprint TEXT NOT NULL DEFAULT '',
    settings TEXT NOT NULL DEFAULT '{}',
    hardware TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'running',
    note TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    config_id TEXT NOT NULL DEFAULT '',
    model_id TEXT NOT NULL DEFAULT '',
    quant TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL DEFAULT '',
    test TEXT NOT NULL DEFAULT '',
    n_gpu_layers INTEGER,
    n_cpu_moe INTEGER,
    n_parallel INTEGER,
    status TEXT NOT NULL DEFAULT '',
    avg_ts REAL,
    test_time TEXT NOT NULL DEFAULT '',
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_run ON records(run_id);
CREATE INDEX IF NOT EXISTS records_model ON records(model_id, quant, test);
CREATE INDEX IF NOT EXISTS runs_fingerprint ON runs(hardware_fingerprint);
"""


def _llama_bench_row(record_id: int, rec: Mapping[str, Any]) -> tuple[Any, ...]:
    return (record_id, *(rec[c] for c in _LB_COLUMNS))


_LB_INSERT = (
    f"INSERT INTO {LLAMA_BENCH_TABLE}(record_id, {', '.join(_LB_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (len(_LB_COLUMNS) + 1))})"
)


class StoreError(RuntimeError):
    """The results database cannot be used; the message names the file and what to do."""


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    started: str
    finished: str | None
    hardware_fingerprint: str
    settings: dict[str, Any]
    hardware: dict[str, Any]
    status: str
    n_records: int


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Store:
    """One connection, usable from one thread at a time (a lock guards it for the GUI)."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self._lock = threading.Lock()
        if read_only:
            # Readers (history, exports) never create, migrate or lock the database: a GUI
            # opening its history while a sweep creates or writes the file must not wait.
            try:
                self._db = sqlite3.connect(
                    f"{path.resolve().as_uri()}?mode=ro",
                    uri=True,
                    timeout=10.0,
                    check_same_thread=False,
                )
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"the results database {path} cannot be read ({exc})") from None
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(path), timeout=10.0, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            # Only a new database takes the write lock here: a reader (the GUI's history) opening
            # the store while a sweep writes must not queue behind it for the busy timeout.
            (version,) = self._db.execute("PRAGMA user_version").fetchone()
            if version != SCHEMA_VERSION:
                with self._db:
                    self._db.executescript(_SCHEMA + _LB_TABLE_SQL)
                    if version < 2:
                        self._backfill_llama_bench()
                    self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"the results database {path} cannot be opened ({exc}); move it aside to start "
                "a fresh one (the old file keeps its data)"
            ) from None

    def _backfill_llama_bench(self) -> None:
        """A database of schema 1: its finished tests into the llama_bench table."""
        rows = self._db.execute("SELECT id, record FROM records WHERE status = 'ok'").fetchall()
        for record_id, raw in rows:
            self._db.execute(_LB_INSERT, _llama_bench_row(record_id, validate(json.loads(raw))))

    def has_schema(self) -> bool:
        """False for a file another process has created but not yet filled in."""
        with self._lock:
            (n,) = self._db.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' "
                "AND name IN ('runs', 'records')"
            ).fetchone()
        return bool(n == 2)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        with self._lock:
            try:
                with self._db:  # one transaction, committed on exit
                    return self._db.execute(sql, args)
            except sqlite3.DatabaseError as exc:
                raise StoreError(
                    f"could not write to the results database {self.path}: {exc}"
                ) from None

    # -- runs --

    def add_run(
        self,
        *,
        settings: Mapping[str, Any] | None = None,
        hardware: Mapping[str, Any] | None = None,
        hardware_fingerprint: str = "",
        run_id: str | None = None,
        started: str | None = None,
    ) -> str:
        run_id = run_id or uuid.uuid4().hex[:16]
        self._write(
            "INSERT INTO runs(run_id, started, hardware_fingerprint, settings, hardware) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                run_id,
                started or _now(),
                hardware_fingerprint,
                json.dumps(dict(settings or {}), default=str),
                json.dumps(dict(hardware or {}), default=str),
            ),
        )
        return run_id

    def finish_run(self, run_id: str, status: str = "finished", note: str = "") -> None:
        self._write(
            "UPDATE runs SET finished = ?, status = ?, note = ? WHERE run_id = ?",
            (_now(), status, note, run_id),
        )

    def list_runs(self) -> list[RunInfo]:
        with self._lock:
            rows = self._db.execute(
                "SELECT r.run_id, r.started, r.finished, r.hardware_fingerprint, r.settings, "
                "r.hardware, r.status, (SELECT COUNT(*) FROM records x WHERE x.run_id = r.run_id) "
                "FROM runs r ORDER BY r.started DESC, r.rowid DESC"
            ).fetchall()
        return [
            RunInfo(
                row[0],
                row[1],
                row[2],
                row[3],
                json.loads(row[4]),
                json.loads(row[5]),
                row[6],
                row[7],
            )
            for row in rows
        ]

    def get_run(self, run_id: str) -> RunInfo:
        for run in self.list_runs():
            if run.run_id == run_id:
                return run
        raise StoreError(f"no run {run_id!r} in {self.path} (fitbench bench --list shows the runs)")

    # -- records --

    def add_record(self, run_id: str, record: Mapping[str, Any]) -> int:
        rec = validate({**record, "run_id": run_id})
        with self._lock:
            try:
                with self._db:  # one transaction: the record and its llama_bench row
                    record_id = self._insert(rec)
            except sqlite3.DatabaseError as exc:
                raise StoreError(
                    f"could not write to the results database {self.path}: {exc}"
                ) from None
        return record_id

    def _insert(self, rec: Mapping[str, Any]) -> int:
        cur = self._db.execute(
            "INSERT INTO records(run_id, config_id, model_id, quant, source, test, n_gpu_layers, "
            "n_cpu_moe, n_parallel, status, avg_ts, test_time, record) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                rec["run_id"],
                rec["config_id"],
                rec["model_id"],
                rec["quant"],
                rec["source"],
                rec["test"],
                rec["n_gpu_layers"],
                rec["n_cpu_moe"],
                rec["n_parallel"],
                rec["status"],
                rec["avg_ts"],
                rec["test_time"],
                to_json(rec),
            ),
        )
        record_id = int(cur.lastrowid or 0)
        if rec["status"] == "ok":  # llama-bench writes only tests that finished
            self._db.execute(_LB_INSERT, _llama_bench_row(record_id, rec))
        return record_id

    def import_llama_bench(self, records: list[dict[str, Any]], source: str) -> str | None:
        """llama-bench records read from a file (schema.read_results) into History, once: the
        run id names the file's content, so reading the same file again adds nothing.
        Returns the run id, or None when no record came from llama-bench."""
        run_ids = {r["run_id"] for r in records if r["run_id"].startswith(LLAMA_BENCH_RUN_PREFIX)}
        if len(run_ids) != 1:
            return None
        run_id: str = next(iter(run_ids))
        with self._lock:
            try:
                with self._db:
                    if self._db.execute(
                        "SELECT 1 FROM runs WHERE run_id = ?", (run_id,)
                    ).fetchone():
                        return run_id
                    started = min((r["test_time"] for r in records if r["test_time"]), default="")
                    self._db.execute(
                        "INSERT INTO runs(run_id, started, finished, settings, status, note) "
                        "VALUES (?, ?, ?, ?, 'imported', ?)",
                        (
                            run_id,
                            started or _now(),
                            _now(),
                            json.dumps({"imported_from": source}),
                            f"llama-bench results imported from {source}",
                        ),
                    )
                    for rec in records:
                        self._insert(validate({**rec, "run_id": run_id}))
            except sqlite3.DatabaseError as exc:
                raise StoreError(
                    f"could not write to the results database {self.path}: {exc}"
                ) from None
        return run_id

    def iter_records(self, run_id: str | None = None) -> Iterator[dict[str, Any]]:
        with self._lock:
            if run_id is None:
                rows = self._db.execute("SELECT record FROM records ORDER BY id").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT record FROM records WHERE run_id = ? ORDER BY id", (run_id,)
                ).fetchall()
        for (raw,) in rows:
            yield validate(json.loads(raw))  # older records in today's schema

    def records(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """The records of one run (all runs with None), in the order they were measured."""
        return list(self.iter_records(run_id))

    def export_jsonl(self, run_id: str, path: Path) -> int:
        """Write one run's records to a JSONL file (replacing it); returns how many."""
        recs = self.records(run_id)
        if not recs:
            raise StoreError(f"run {run_id!r} has no records in {self.path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".partial")
        tmp.unlink(missing_ok=True)
        write_jsonl(recs, tmp)
        tmp.replace(path)
        return len(recs)


def open_store(path: Path | None = None) -> Store:
    """The results store at `path` (default: fitbench.core.paths.results_db())."""
    return Store(path or paths.results_db())


# module-level conveniences over a store, for callers that keep one around


def add_run(store: Store, **kwargs: Any) -> str:
    return store.add_run(**kwargs)


def add_record(store: Store, run_id: str, record: Mapping[str, Any]) -> int:
    return store.add_record(run_id, record)


def finish_run(store: Store, run_id: str, status: str = "finished", note: str = "") -> None:
    store.finish_run(run_id, status, note)


def list_runs(store: Store | None = None) -> list[RunInfo]:
    if store is not None:
        return store.list_runs()
    path = paths.results_db()
    if not path.exists():
        return []  # nothing measured yet; a reader does not create the database
    with Store(path, read_only=True) as reader:
        return reader.list_runs() if reader.has_schema() else []


def records(run_id: str | None = None, store: Store | None = None) -> list[dict[str, Any]]:
    if store is not None:
        return store.records(run_id)
    path = paths.results_db()
    if not path.exists():
        return []
    with Store(path, read_only=True) as reader:
        return reader.records(run_id) if reader.has_schema() else []


def export_jsonl(run_id: str, path: Path, store: Store | None = None) -> int:
    if store is not None:
        return store.export_jsonl(run_id, path)
    with open_store() as fresh:
        return fresh.export_jsonl(run_id, path)


def import_llama_bench(records: list[dict[str, Any]], source: Path) -> str | None:
    """Add llama-bench records read from `source` to History (the default store), once."""
    if not any(r["run_id"].startswith(LLAMA_BENCH_RUN_PREFIX) for r in records):
        return None
    with open_store() as store:
        return store.import_llama_bench(records, str(source))
