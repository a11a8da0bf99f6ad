"""The results history: SQLite in the user data dir; nothing measured is ever lost.

Every record is committed on its own (WAL journal, synchronous=FULL) as soon as the runner has
it, before the next test starts; a crash of the app or the machine loses at most the test that
was running. Records are stored whole (the validated JSON of core.results.schema) plus a few
indexed columns for queries. Finished tests are also rows of a `llama_bench` table with
llama-bench's columns and SQL types (its `-o sql` output), so llama.cpp's
scripts/compare-llama-bench.py reads this database as it reads llama-bench's own.

A record is never dropped because the database is busy or full: a write that finds the database
locked retries with backoff for `lock_wait_s`, then the record is queued, in memory and in a
pending file beside the database (`<db>.pending-<host>-<pid>.jsonl`), and written with the next
write that succeeds, at close, or by the next process that opens the store. Each run names its
owner (host:pid); a run left `running` by a process that is gone (SIGKILL, power loss) is marked
`interrupted` when the store is next opened for writing.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from fitbench.core import paths
from fitbench.core.results.schema import (
    FIELDS,
    LLAMA_BENCH_FIELDS,
    LLAMA_BENCH_RUN_PREFIX,
    LLAMA_BENCH_TABLE,
    ResultError,
    iter_jsonl,
    to_json,
    validate,
    write_jsonl,
)

log = logging.getLogger(__name__)

# 2: runs.owner (host:pid of the process running it), so a run whose process died is found;
# 3: the llama_bench table (finished tests in llama-bench's SQL columns)
SCHEMA_VERSION = 3
BUSY_TIMEOUT_S = 10.0  # SQLite's own wait for a lock, per attempt
LOCK_WAIT_S = 60.0  # how long a write retries a locked database before queueing the record

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    started TEXT NOT NULL,
    finished TEXT,
    hardware_fingerprint TEXT NOT NULL DEFAULT '',
    settings TEXT NOT NULL DEFAULT '{}',
    hardware TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'running',
    note TEXT NOT NULL DEFAULT '',
    owner TEXT NOT NULL DEFAULT ''
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
_LB_INSERT = (
    f"INSERT INTO {LLAMA_BENCH_TABLE}(record_id, {', '.join(_LB_COLUMNS)}) "
    f"VALUES ({', '.join('?' * (len(_LB_COLUMNS) + 1))})"
)


def _llama_bench_row(record_id: int, rec: Mapping[str, Any]) -> tuple[Any, ...]:
    return (record_id, *(_sql_text(rec[c]) for c in _LB_COLUMNS))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _sql_text(value: Any) -> Any:
    """An index column's text: a path from os.fsdecode may hold surrogates (undecodable bytes),
    which SQLite's UTF-8 cannot store; the record's JSON keeps them escaped, exactly."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


def _is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _owner_alive(owner: str, started: str) -> bool:
    """False only when the owner is a process on this host that is gone (or whose pid now
    belongs to a process started after the run)."""
    host, _, pid_text = owner.rpartition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another machine (a shared file) or an old record: not ours to judge
    try:
        proc = psutil.Process(int(pid_text))
        born = float(proc.create_time())
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True
    try:
        run_start = datetime.fromisoformat(started).timestamp()
    except ValueError:
        return True
    return born <= run_start + 1.0  # a recycled pid belongs to a process born later


def _version_error(path: Path, version: int) -> StoreError:
    return StoreError(
        f"the results database {path} was written by a newer FitBench (schema {version}; this "
        f"one knows up to {SCHEMA_VERSION}); it is left untouched. Update FitBench, or point "
        "FITBENCH_HOME elsewhere to start a separate history"
    )


class Store:
    """One connection, usable from one thread at a time (a lock guards it for the GUI)."""

    def __init__(
        self, path: Path, *, read_only: bool = False, lock_wait_s: float = LOCK_WAIT_S
    ) -> None:
        self.path = path
        self.lock_wait_s = lock_wait_s
        self._lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []  # records the database did not take yet
        self._pending_finish: dict[str, tuple[str, str, str]] = {}  # run_id: (time, status, note)
        self._pending_file = path.with_name(
            f"{path.name}.pending-{socket.gethostname()}-{os.getpid()}.jsonl"
        )
        if read_only:
            # Readers (history, exports) never create, migrate or lock the database: a GUI
            # opening its history while a sweep creates or writes the file must not wait.
            try:
                self._db = sqlite3.connect(
                    f"{path.resolve().as_uri()}?mode=ro",
                    uri=True,
                    timeout=BUSY_TIMEOUT_S,
                    check_same_thread=False,
                )
                (version,) = self._db.execute("PRAGMA user_version").fetchone()
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"the results database {path} cannot be read ({exc})") from None
            if version > SCHEMA_VERSION:
                self._db.close()
                raise _version_error(path, version)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            timeout = min(BUSY_TIMEOUT_S, max(lock_wait_s, 0.1))
            self._db = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False)
            # Only a new or older database takes the write lock here: a reader (the GUI's
            # history) opening the store while a sweep writes must not queue behind it.
            (version,) = self._db.execute("PRAGMA user_version").fetchone()
            if version > SCHEMA_VERSION:
                self._db.close()
                raise _version_error(path, version)  # migrating down would lose what it added
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA foreign_keys=ON")
            if version != SCHEMA_VERSION:
                with self._db:
                    self._db.executescript(_SCHEMA + _LB_TABLE_SQL)
                    columns = {r[1] for r in self._db.execute("PRAGMA table_info(runs)")}
                    if "owner" not in columns:  # schema 1
                        self._db.execute(
                            "ALTER TABLE runs ADD COLUMN owner TEXT NOT NULL DEFAULT ''"
                        )
                    if 0 < version < 3:
                        self._backfill_llama_bench()
                    self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"the results database {path} cannot be opened ({exc}); move it aside to start "
                "a fresh one (the old file keeps its data)"
            ) from None
        self._recover()

    def has_schema(self) -> bool:
        """False for a file another process has created but not yet filled in."""
        with self._lock:
            (n,) = self._db.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' "
                "AND name IN ('runs', 'records')"
            ).fetchone()
        return bool(n == 2)

    def close(self) -> None:
        if self._pending or self._pending_finish:
            with contextlib.suppress(StoreError):
                self.flush_pending()
            if self._pending:
                log.warning(
                    "%d result record(s) could not be written to %s; they are kept in %s and "
                    "go into the database when FitBench next opens it",
                    len(self._pending),
                    self.path,
                    self._pending_file,
                )
        with self._lock:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Records queued because the database would not take them (locked, full)."""
        return len(self._pending)

    def _backfill_llama_bench(self) -> None:
        """A database of an older schema: its finished tests into the llama_bench table."""
        rows = self._db.execute("SELECT id, record FROM records WHERE status = 'ok'").fetchall()
        for record_id, raw in rows:
            self._db.execute(_LB_INSERT, _llama_bench_row(record_id, validate(json.loads(raw))))

    def _attempt(
        self,
        sql: str,
        args: tuple[Any, ...],
        then: Callable[[sqlite3.Cursor], None] | None = None,
    ) -> sqlite3.Cursor:
        """One statement (and `then`, in the same transaction) committed on its own, retried
        with backoff while the database is locked by another process, for up to lock_wait_s;
        other errors raise at once."""
        deadline = time.monotonic() + self.lock_wait_s
        delay = 0.05
        while True:
            with self._lock:
                try:
                    with self._db:  # one transaction, committed on exit
                        cur = self._db.execute(sql, args)
                        if then is not None:
                            then(cur)
                        return cur
                except sqlite3.OperationalError as exc:
                    if not _is_busy(exc) or time.monotonic() + delay > deadline:
                        raise
                    log.debug("%s is locked; retrying in %.2f s", self.path, delay)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _write(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            return self._attempt(sql, args)
        except sqlite3.DatabaseError as exc:
            raise StoreError(
                f"could not write to the results database {self.path}: {exc}"
            ) from None

    def _queue(self, record: dict[str, Any], exc: sqlite3.Error) -> None:
        self._pending.append(record)
        try:
            write_jsonl([record], self._pending_file)
            kept = f"queued in memory and in {self._pending_file}"
        except OSError as err:
            kept = f"queued in memory only ({self._pending_file}: {err.strerror or err})"
        log.warning(
            "the results database %s did not take a record (%s); %s, written when it can be",
            self.path,
            exc,
            kept,
        )

    def flush_pending(self) -> int:
        """Write the queued records and run endings; returns how many records went in."""
        done = 0
        while self._pending:
            record = self._pending[0]
            try:
                self._insert_record(record, dedupe=True)
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path} still does not take records ({exc})") from None
            self._pending.pop(0)
            done += 1
        if done:
            self._pending_file.unlink(missing_ok=True)
            log.info("wrote %d queued record(s) to %s", done, self.path)
        for run_id, (when, status, note) in list(self._pending_finish.items()):
            try:
                self._attempt(
                    "UPDATE runs SET finished = ?, status = ?, note = ? WHERE run_id = ?",
                    (when, status, note, run_id),
                )
            except sqlite3.DatabaseError as exc:
                raise StoreError(f"{self.path} still cannot be written ({exc})") from None
            del self._pending_finish[run_id]
        return done

    def _replay_pending_files(self) -> None:
        """Records another process (or this one, earlier) queued and never wrote: the files
        of processes on this host that are gone, and our own."""
        host = socket.gethostname()
        for file in sorted(self.path.parent.glob(f"{self.path.name}.pending-*.jsonl")):
            owner = file.name[len(self.path.name) + len(".pending-") : -len(".jsonl")]
            o_host, _, pid = owner.rpartition("-")
            if file != self._pending_file and (
                o_host != host or not pid.isdigit() or psutil.pid_exists(int(pid))
            ):
                continue
            try:
                records = list(iter_jsonl(file))
                for record in records:
                    self._insert_record(record, dedupe=True)
            except (ResultError, OSError, sqlite3.DatabaseError) as exc:
                log.warning("queued records in %s not written yet: %s", file, exc)
                continue
            file.unlink(missing_ok=True)
            log.warning("wrote %d queued record(s) from %s to %s", len(records), file, self.path)

    def _recover(self) -> None:
        """Mark runs whose process is gone (killed, crashed, machine off) as interrupted."""
        self._replay_pending_files()
        with self._lock:
            rows = self._db.execute(
                "SELECT run_id, owner, started FROM runs WHERE status = 'running' AND owner != ''"
            ).fetchall()
        for run_id, owner, started in rows:
            if _owner_alive(owner, started):
                continue
            try:
                self._attempt(
                    "UPDATE runs SET status = 'interrupted', note = ? "
                    "WHERE run_id = ? AND status = 'running'",
                    (f"the process that ran it ({owner}) ended without finishing it", run_id),
                )
            except sqlite3.DatabaseError as exc:
                log.debug("could not mark run %s interrupted: %s", run_id, exc)
                continue
            log.warning("run %s was left unfinished by a process that is gone: interrupted", run_id)

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
            "INSERT INTO runs(run_id, started, hardware_fingerprint, settings, hardware, owner) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                run_id,
                started or _now(),
                _sql_text(hardware_fingerprint),
                json.dumps(dict(settings or {}), default=str),
                json.dumps(dict(hardware or {}), default=str),
                _owner(),
            ),
        )
        return run_id

    def finish_run(self, run_id: str, status: str = "finished", note: str = "") -> None:
        """End a run; with the database unavailable the ending waits with the queued records
        (close() tries again) rather than failing the sweep."""
        self._pending_finish[run_id] = (_now(), status, note)
        try:
            self.flush_pending()
        except StoreError as exc:
            log.warning("run %s: %s; its ending is written later", run_id, exc)

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
        """Store a record; returns its row id, or 0 when it was queued (the database locked
        for longer than lock_wait_s, or full): queued records are never dropped."""
        rec = validate({**record, "run_id": run_id})
        if self._pending:
            with contextlib.suppress(StoreError):
                self.flush_pending()  # keep the order: older queued records first
        if not self._pending:
            try:
                return self._insert_record(rec)
            except sqlite3.OperationalError as exc:
                self._queue(rec, exc)
                return 0
            except sqlite3.DatabaseError as exc:
                raise StoreError(
                    f"could not write to the results database {self.path}: {exc}"
                ) from None
        self._queue(rec, sqlite3.OperationalError("earlier records are still queued"))
        return 0

    def _insert_record(self, rec: Mapping[str, Any], *, dedupe: bool = False) -> int:
        text = to_json(rec)
        run_id = rec["run_id"]
        if dedupe:  # a queued record may have gone in before its queue file was removed
            with self._lock:
                row = self._db.execute(
                    "SELECT id FROM records WHERE run_id = ? AND record = ?", (run_id, text)
                ).fetchone()
            if row is not None:
                return int(row[0])
        cur = self._attempt(
            "INSERT INTO records(run_id, config_id, model_id, quant, source, test, n_gpu_layers, "
            "n_cpu_moe, n_parallel, status, avg_ts, test_time, record) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                run_id,
                _sql_text(rec["config_id"]),
                _sql_text(rec["model_id"]),
                _sql_text(rec["quant"]),
                rec["source"],
                rec["test"],
                rec["n_gpu_layers"],
                rec["n_cpu_moe"],
                rec["n_parallel"],
                rec["status"],
                rec["avg_ts"],
                rec["test_time"],
                text,
            ),
            then=lambda c: self._llama_bench_insert(c, rec),
        )
        return int(cur.lastrowid or 0)

    def _llama_bench_insert(self, cur: sqlite3.Cursor, rec: Mapping[str, Any]) -> None:
        if rec["status"] == "ok":  # llama-bench writes only tests that finished
            self._db.execute(_LB_INSERT, _llama_bench_row(int(cur.lastrowid or 0), rec))

    def import_llama_bench(self, records: list[dict[str, Any]], source: str) -> str | None:
        """llama-bench records read from a file (schema.read_results) into History, once: the
        run id names the file's content, so reading the same file again adds nothing.
        Returns the run id, or None when no record came from llama-bench."""
        run_ids = {r["run_id"] for r in records if r["run_id"].startswith(LLAMA_BENCH_RUN_PREFIX)}
        if len(run_ids) != 1:
            return None
        run_id: str = next(iter(run_ids))
        with self._lock:
            if self._db.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone():
                return run_id
        started = min((r["test_time"] for r in records if r["test_time"]), default="")
        self._write(
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
        try:
            for rec in records:
                self._insert_record(validate({**rec, "run_id": run_id}), dedupe=True)
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
        # queued records are results too (an export while the database is locked keeps them)
        for rec in list(self._pending):
            if run_id is None or rec["run_id"] == run_id:
                yield dict(rec)

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
