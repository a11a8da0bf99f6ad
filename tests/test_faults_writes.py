"""Issue 21, item 4: write faults lose nothing and poison nothing.

A JSONL line is whole or absent (a full disk, a file-size limit), readers skip a torn last line
and say so, a locked database delays or queues a record but never drops it, a run whose process
dies is marked interrupted, and a model at a non-UTF-8 path is measured and kept.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from fitbench.core import paths
from fitbench.core.bench.config import BenchConfig, BenchTest
from fitbench.core.bench.runner import run_sweep
from fitbench.core.results import schema
from fitbench.core.results import store as results_store
from fitbench.core.results.schema import ResultError, new_record, read_jsonl, write_jsonl
from fitbench.core.results.store import Store, StoreError, open_store
from gui_helpers import bench_workers


def _rec(i: int = 0, **kw: object) -> dict[str, object]:
    return new_record(model_id="m", test="tg", n_gen=8, avg_ts=float(i), **kw)


# -- JSONL: whole or absent --


def test_a_torn_last_line_is_skipped_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    write_jsonl([_rec(1), _rec(2)], path)
    whole = path.read_bytes()
    path.write_bytes(whole + whole.splitlines(keepends=True)[0][:57])  # half a line, no newline
    notes: list[str] = []
    assert [r["avg_ts"] for r in read_jsonl(path, notes)] == [1.0, 2.0]
    assert len(notes) == 1 and "r.jsonl:3: skipped a torn last line (57 bytes" in notes[0]


def test_a_torn_line_in_the_middle_is_still_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    line = json.dumps(_rec(1)) + "\n"
    path.write_text(line + line[:40] + "\n" + line)
    with pytest.raises(ResultError, match=r"r\.jsonl:2: not a JSON line"):
        read_jsonl(path)


def test_appending_after_a_torn_line_drops_it_instead_of_gluing_to_it(tmp_path: Path) -> None:
    """The old failure: the next run appended after the half line and every reader then
    rejected the file ("r.jsonl:6: not a JSON line")."""
    path = tmp_path / "r.jsonl"
    write_jsonl([_rec(1)], path)
    path.write_bytes(path.read_bytes() + b'{"model_id":"m","te')
    write_jsonl([_rec(2)], path)
    assert [r["avg_ts"] for r in read_jsonl(path)] == [1.0, 2.0]
    assert path.read_bytes().endswith(b"}\n") and path.read_bytes().count(b"\n") == 2


def test_a_whole_last_record_without_its_newline_is_kept(tmp_path: Path) -> None:
    """A hand-edited file may lack the final newline: that record is whole, not torn."""
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps(_rec(1)))
    assert [r["avg_ts"] for r in read_jsonl(path)] == [1.0]
    write_jsonl([_rec(2)], path)
    assert [r["avg_ts"] for r in read_jsonl(path)] == [1.0, 2.0]


_FILL = textwrap.dedent(
    """
    import json, resource, signal, sys
    from pathlib import Path
    from fitbench.core.results.schema import new_record, write_jsonl
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal, as ENOSPC is
    path, limit = Path(sys.argv[1]), int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    n = 0
    try:
        while True:
            write_jsonl([new_record(model_id="m", test="tg", avg_ts=float(n))], path)
            n += 1
    except OSError as exc:
        print(json.dumps({"written": n, "errno": exc.errno}))
    """
)


def test_a_file_size_limit_leaves_only_whole_lines(tmp_path: Path) -> None:
    """RLIMIT_FSIZE in a child: the write that crosses the limit is short, the next fails with
    EFBIG, as a nearly full disk gives a short write and then ENOSPC."""
    path = tmp_path / "r.jsonl"
    line = len(json.dumps(_rec(0), separators=(",", ":"))) + 1
    limit = 5 * line + line // 2  # room for five and a half records
    proc = subprocess.run(
        [sys.executable, "-c", _FILL, str(path), str(limit)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["written"] == 5 and result["errno"] == 27  # EFBIG
    data = path.read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == 5  # no half line left behind
    write_jsonl([_rec(99)], path)  # a later run (disk freed) appends cleanly
    assert [r["avg_ts"] for r in read_jsonl(path)] == [0.0, 1.0, 2.0, 3.0, 4.0, 99.0]


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> object:
    """A 64 KiB tmpfs: a really full disk (ENOSPC). Needs root and mount rights."""
    where = tmp_path / "full"
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace')}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_a_full_disk_leaves_only_whole_lines(small_tmpfs: Path) -> None:
    path = small_tmpfs / "r.jsonl"
    written = 0
    with pytest.raises(OSError) as info:
        for i in range(10_000):
            write_jsonl([_rec(i, error="x" * 500)], path)
            written += 1
    assert info.value.errno == 28  # ENOSPC
    assert written > 10
    data = path.read_bytes()
    assert data.endswith(b"\n") and data.count(b"\n") == written
    assert len(read_jsonl(path)) == written


# -- the database: locked, newer, interrupted --


def _hold_lock(path: Path, seconds: float, started: threading.Event) -> None:
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    started.set()
    time.sleep(seconds)
    other.execute("ROLLBACK")
    other.close()


def test_a_database_locked_for_12_s_delays_the_record_but_keeps_it(tmp_path: Path) -> None:
    """Before: SQLite's 10 s busy timeout ran out, the record was dropped from the database and
    the JSONL and the sweep stopped."""
    path = tmp_path / "results.sqlite3"
    with open_store(path) as db:
        run = db.add_run()
        started = threading.Event()
        holder = threading.Thread(target=_hold_lock, args=(path, 12.0, started))
        holder.start()
        started.wait()
        t0 = time.monotonic()
        assert db.add_record(run, _rec(1)) > 0  # retried with backoff until the lock went
        waited = time.monotonic() - t0
        holder.join()
        assert 11.0 < waited < 30.0
        db.finish_run(run)
        assert [r["avg_ts"] for r in db.records(run)] == [1.0]
        assert db.list_runs()[0].status == "finished"


def test_a_record_the_locked_database_will_not_take_is_queued_not_dropped(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite3"
    db = Store(path, lock_wait_s=0.5)
    run = db.add_run()
    started = threading.Event()
    holder = threading.Thread(target=_hold_lock, args=(path, 4.0, started))
    holder.start()
    started.wait()
    assert db.add_record(run, _rec(1)) == 0  # queued
    assert db.pending == 1
    pending = list(tmp_path.glob("results.sqlite3.pending-*.jsonl"))
    assert len(pending) == 1 and len(read_jsonl(pending[0])) == 1  # on disk too
    assert [r["avg_ts"] for r in db.records(run)] == [1.0]  # an export still sees it
    holder.join()
    assert db.add_record(run, _rec(2)) > 0  # the queue goes first, in order
    assert db.pending == 0 and not list(tmp_path.glob("*.pending-*"))
    db.finish_run(run)
    db.close()
    with open_store(path) as again:
        assert [r["avg_ts"] for r in again.records(run)] == [1.0, 2.0]


def test_queued_records_of_a_dead_process_go_in_at_the_next_open(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite3"
    script = textwrap.dedent(
        f"""
        import os, sqlite3, threading
        from pathlib import Path
        from fitbench.core.results.store import Store
        from fitbench.core.results.schema import new_record
        db = Store(Path({str(path)!r}), lock_wait_s=0.3)
        run = db.add_run(run_id="r1")
        other = sqlite3.connect({str(path)!r}, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        # the lock is held by another connection: the record is queued
        assert db.add_record(run, new_record(model_id="m", avg_ts=7.0)) == 0
        os._exit(9)  # killed before the database was free again
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert len(list(tmp_path.glob("*.pending-*.jsonl"))) == 1
    with open_store(path) as db:
        assert [r["avg_ts"] for r in db.records("r1")] == [7.0]
        (run,) = db.list_runs()
        assert run.status == "interrupted"  # its process is gone
    assert not list(tmp_path.glob("*.pending-*.jsonl"))


def test_a_database_from_a_newer_fitbench_is_refused_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite3"
    open_store(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version={results_store.SCHEMA_VERSION + 1}")
    raw.commit()
    raw.close()
    before = path.read_bytes()
    for read_only in (False, True):
        with pytest.raises(StoreError, match=r"newer FitBench.*left untouched"):
            Store(path, read_only=read_only)
    assert path.read_bytes() == before
    (version,) = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()
    assert version == results_store.SCHEMA_VERSION + 1


def test_a_version_1_database_is_migrated_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite3"
    raw = sqlite3.connect(path)
    raw.executescript(results_store._SCHEMA.replace(",\n    owner TEXT NOT NULL DEFAULT ''", ""))
    raw.execute("INSERT INTO runs(run_id, started) VALUES ('old', '2024-01-01T00:00:00+00:00')")
    raw.execute("PRAGMA user_version=1")
    raw.commit()
    raw.close()
    with open_store(path) as db:
        (run,) = db.list_runs()
        assert run.run_id == "old" and run.status == "running"  # no owner: not judged
        db.add_run(run_id="new")
    (version,) = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()
    assert version == results_store.SCHEMA_VERSION


def _bench_child(twin: Path, out: Path) -> subprocess.Popen[str]:
    argv = ["-m", "fitbench", "bench", "-m", str(twin), "-p", "16", "-n", "4", "-r", "1"]
    argv += ["-t", "2", "--repack", "0", "-ngl", "0,1", "--out", str(out)]
    return subprocess.Popen(
        [sys.executable, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # a test run under nohup ignores SIGHUP, and children inherit that (by design: fitbench
        # keeps an ignored SIGHUP ignored); the child here is a fitbench started normally
        preexec_fn=_default_sighup,
    )


def _default_sighup() -> None:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except (psutil.ZombieProcess, psutil.NoSuchProcess):  # a probe process that just ended
        return ""


def _stop_worker_once_running(proc: subprocess.Popen[str]) -> list[psutil.Process]:
    """SIGSTOP the child's worker once it runs, so the sweep sits mid-run."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        workers = [
            c
            for c in psutil.Process(proc.pid).children(recursive=True)
            if "fitbench.core.bench.worker" in _cmdline(c)
        ]
        if workers:
            for w in workers:
                w.send_signal(signal.SIGSTOP)
            return workers
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("no worker started")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_marks_the_run_interrupted(
    tmp_path: Path, tiny_dense_twin: Path, sig: signal.Signals
) -> None:
    proc = _bench_child(tiny_dense_twin, tmp_path / "r.jsonl")
    try:
        workers = _stop_worker_once_running(proc)
    except BaseException:
        proc.kill()
        proc.communicate()  # closes its pipes: no unclosed files for a later test's gc
        raise
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:  # leave no stopped worker behind for the later tests
        proc.kill()
        proc.communicate()
        for w in workers:
            w.kill()
        raise
    assert proc.returncode == 128 + sig, err
    assert f"stopped by {sig.name}" in err and "Traceback" not in err
    for w in workers:  # the runner ended its worker, stopped or not
        assert not w.is_running() or w.status() == psutil.STATUS_ZOMBIE
    with Store(paths.results_db(), read_only=True) as db:  # a reader: it recovers nothing
        (run,) = db.list_runs()
    assert run.status == "interrupted" and run.finished


def test_a_sigkilled_bench_leaves_its_run_interrupted_at_the_next_start(
    tmp_path: Path, tiny_dense_twin: Path
) -> None:
    proc = _bench_child(tiny_dense_twin, tmp_path / "r.jsonl")
    try:
        workers = _stop_worker_once_running(proc)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    proc.kill()
    proc.communicate()
    for w in workers:  # stopped, it cannot notice its parent is gone: clean up after the test
        w.kill()
    with Store(paths.results_db(), read_only=True) as db:
        assert db.list_runs()[0].status == "running"  # what SIGKILL leaves
    with open_store() as db:  # the next start (a bench, the GUI) finds it
        (run,) = db.list_runs()
    assert run.status == "interrupted"
    assert (
        "ended without finishing it"
        in sqlite3.connect(paths.results_db()).execute("SELECT note FROM runs").fetchone()[0]
    )


def test_a_run_of_a_live_process_is_left_running(tmp_path: Path) -> None:
    with open_store() as writer:
        run = writer.add_run()
        with open_store() as second:  # another bench sharing the database
            assert [r.status for r in second.list_runs() if r.run_id == run] == ["running"]


# -- non-UTF-8 paths --


def test_a_model_at_a_non_utf8_path_is_measured_and_kept(
    tmp_path: Path, tiny_dense_twin: Path
) -> None:
    """Before: measured, then discarded (SQLite cannot store the path's surrogates)."""
    folder = Path(os.fsdecode(os.fsencode(str(tmp_path)) + b"/mod\xe9les"))
    folder.mkdir()
    model = folder / os.fsdecode(b"tiny-\xff.gguf")
    shutil.copyfile(tiny_dense_twin, model)
    out = tmp_path / "r.jsonl"
    cfg = BenchConfig(
        model_path=str(model),
        tests=(BenchTest("pp", n_prompt=8),),
        reps=1,
        n_threads=2,
        source="twin",
        repack=False,
    )
    with open_store() as db:
        events = list(run_sweep([cfg], store=db, out_jsonl=out))
        assert events
        (rec,) = db.records()
    assert rec["status"] == "ok" and rec["avg_ts"] > 0
    assert os.fsencode(rec["model_filename"]) == os.fsencode(str(model))  # the exact bytes
    (line,) = read_jsonl(out)
    assert os.fsencode(line["model_filename"]) == os.fsencode(str(model))
    out.read_bytes().decode("ascii")  # the line itself is plain ASCII JSON
    assert not bench_workers()


def test_schema_lines_escape_surrogates(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    weird = os.fsdecode(b"/models/\xff\xfe.gguf")
    write_jsonl([new_record(model_filename=weird)], path)
    assert read_jsonl(path)[0]["model_filename"] == weird
    assert schema.to_json(new_record(model_filename=weird)).isascii()
