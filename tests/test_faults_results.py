"""Issue 21, item 5: faults do not pass as results.

A stopped worker is a stall found within a bound derived from its own heartbeat (not the
1800 s test timeout); repetitions that disagree are run again and, still disturbed, stored
flagged; a SIGKILL is an out-of-memory kill only with evidence.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from fitbench.core.bench import events as ev
from fitbench.core.bench.config import INJECT_ENV, BenchConfig, BenchTest
from fitbench.core.bench.runner import run_sweep
from fitbench.core.bench.sampler import OomWatch
from fitbench.core.bench.worker import WorkerExit, sample_spread
from fitbench.core.results.store import open_store
from gui_helpers import bench_workers


@pytest.fixture(autouse=True)
def _allow_injection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(INJECT_ENV, "1")


def _cfg(path: Path, inject: str = "", reps: int = 3, **kw: Any) -> BenchConfig:
    return BenchConfig(
        model_path=str(path),
        tests=(BenchTest("tg", n_gen=16),),
        reps=reps,
        n_threads=2,
        source="twin",
        repack=False,
        inject=inject,
        **kw,
    )


def _resume_stopped_workers(stop: threading.Event, paused_s: float) -> list[int]:
    """SIGCONT each worker `paused_s` after it stopped itself; returns the pids resumed."""
    resumed: list[int] = []
    seen_stopped: dict[int, float] = {}
    while not stop.is_set():
        for w in bench_workers():
            try:
                stopped = w.status() == psutil.STATUS_STOPPED
            except psutil.NoSuchProcess:
                continue
            if stopped:
                since = seen_stopped.setdefault(w.pid, time.monotonic())
                if time.monotonic() - since >= paused_s:
                    os.kill(w.pid, signal.SIGCONT)
                    resumed.append(w.pid)
                    seen_stopped.pop(w.pid)
        time.sleep(0.02)
    return resumed


def _sweep_with_resumer(cfg: BenchConfig, paused_s: float, **kw: Any) -> tuple[list[Any], int]:
    stop = threading.Event()
    resumed: list[int] = []
    thread = threading.Thread(
        target=lambda: resumed.extend(_resume_stopped_workers(stop, paused_s)), daemon=True
    )
    thread.start()
    try:
        with open_store() as db:
            list(run_sweep([cfg], store=db, **kw))
            records = db.records()
    finally:
        stop.set()
        thread.join()
    return records, len(resumed)


def test_a_stopped_worker_is_a_stall_found_long_before_the_test_timeout(
    tiny_dense_twin: Path,
) -> None:
    """Before: nothing was said until the 1800 s default test timeout."""
    with open_store() as db:
        seen = list(run_sweep([_cfg(tiny_dense_twin, "stop@rep1")], store=db, stall_floor_s=3.0))
        (rec,) = db.records()
    assert rec["status"] == "timeout"
    # the bound: 10x what a repetition took (the floor, 3 s, on a quiet machine); the default
    # test timeout (1800 s) still applies, unused
    bound = float(rec["error"].split("nothing happened for ")[1].split(" s")[0])
    assert 3 <= bound < 120
    assert "was stopped (SIGSTOP" in rec["error"]
    (failed,) = [e for e in seen if isinstance(e, ev.ConfigFailed)]
    assert failed.status == "timeout"
    assert not bench_workers()


def test_a_run_disturbed_once_is_measured_again(
    tiny_dense_twin: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: stored ok at 79.7 t/s from samples [4.2, 155.2] after a SIGSTOP/SIGCONT."""
    records, resumed = _sweep_with_resumer(_cfg(tiny_dense_twin, "stoponce@rep1"), 1.0)
    (rec,) = records
    assert resumed == 1
    assert any("running it once more" in r.getMessage() for r in caplog.records)
    assert rec["status"] == "ok"
    assert max(rec["samples_ns"]) < 1e9  # the stored numbers are the re-run's: no 1 s stop
    # on a quiet machine the re-run agrees; a busy one may disturb it too, and then it says so
    assert (rec["disturbed"] == "") == (sample_spread(rec["samples_ns"]) == "")


def test_a_run_disturbed_twice_is_stored_flagged(
    tiny_dense_twin: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records, resumed = _sweep_with_resumer(_cfg(tiny_dense_twin, "stop@rep1"), 1.0)
    (rec,) = records
    assert resumed == 2  # the first run and the re-run
    assert rec["status"] == "ok"
    assert "slowest/fastest" in rec["disturbed"] and "in a first run" in rec["disturbed"]
    assert any("disturbed" in r.getMessage() for r in caplog.records)
    assert any("running it once more" in r.getMessage() for r in caplog.records)


MS = 1_000_000


@pytest.mark.parametrize(
    ("samples", "disturbed"),
    [
        ([100 * MS, 105 * MS, 98 * MS], False),
        ([int(1e9 / 4.2), int(1e9 / 155.2)], True),  # the issue's [4.2, 155.2] t/s
        ([100 * MS, 310 * MS], True),  # slowest/fastest > 3
        ([100 * MS, 100 * MS, 100 * MS, 280 * MS], True),  # 2.8x, but CV 0.62 > 0.5
        ([1 * MS, 20 * MS], False),  # 20x, but 19 ms: a tiny model's jitter on a busy machine
        ([100 * MS], False),  # one repetition: nothing to compare
    ],
)
def test_sample_spread(samples: list[int], disturbed: bool) -> None:
    assert bool(sample_spread(samples)) is disturbed


def test_a_sigkill_without_evidence_is_killed_not_oom(tiny_dense_twin: Path) -> None:
    """Before: any SIGKILL was recorded `oom` ("needs more RAM")."""
    cfg = _cfg(tiny_dense_twin, "sleep@test0")
    with open_store() as db:
        for event in run_sweep([cfg], store=db):
            if isinstance(event, ev.Sample) and bench_workers():
                for w in bench_workers():
                    w.kill()
        (rec,) = db.records()
    assert rec["status"] == "killed"
    assert "SIGKILL" in rec["error"] and "no sign of memory pressure" in rec["error"]


def _fake_cgroup(root: Path, oom_kills: int, vmstat_kills: int) -> None:
    (root / "proc/self").mkdir(parents=True, exist_ok=True)
    (root / "proc/self/mountinfo").write_text(
        "30 1 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    )
    (root / "proc/self/cgroup").write_text("0::/bench\n")
    group = root / "sys/fs/cgroup/bench"
    group.mkdir(parents=True, exist_ok=True)
    (group / "memory.max").write_text(f"{8 << 30}\n")
    (group / "memory.current").write_text(f"{1 << 30}\n")
    (group / "memory.stat").write_text("inactive_file 0\n")
    (group / "memory.events").write_text(f"low 0\nhigh 0\nmax 3\noom 1\noom_kill {oom_kills}\n")
    (root / "proc/vmstat").write_text(f"nr_free_pages 1\noom_kill {vmstat_kills}\n")


def test_oom_evidence_comes_from_the_counters_or_the_peak_rss(tmp_path: Path) -> None:
    _fake_cgroup(tmp_path, 0, 5)
    watch = OomWatch(tmp_path)
    assert watch.before.available_bytes == 7 << 30  # the cgroup's room
    assert watch.evidence(peak_rss=1 << 30) == ""  # nothing moved, RSS far below
    _fake_cgroup(tmp_path, 1, 5)
    assert "cgroup's OOM-kill counter went from 0 to 1" in watch.evidence(peak_rss=None)
    _fake_cgroup(tmp_path, 0, 6)
    assert "kernel's OOM-kill counter went from 5 to 6" in watch.evidence(peak_rss=None)
    _fake_cgroup(tmp_path, 0, 5)
    assert "peak RSS 6.50 GiB of 7.00 GiB available" in watch.evidence(peak_rss=int(6.5 * 2**30))
    assert WorkerExit(-9, "tg16", oom_evidence=watch.evidence(int(6.5 * 2**30))).status == "oom"
    assert WorkerExit(-9, "tg16", oom_evidence=watch.evidence(1 << 30)).status == "killed"


def test_this_machine_has_readable_counters() -> None:
    """The real /proc and cgroup files parse (None where a counter does not exist)."""
    counters = OomWatch().before
    assert counters.available_bytes > 0
    assert counters.kernel is None or counters.kernel >= 0
