"""The one job abstraction: real generators on a real QThreadPool, signals on the GUI thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from typing import Any

import pytest
from PySide6.QtCore import QThreadPool

from fitbench.ui.jobs import Job, JobContext, JobRunner


@pytest.fixture
def pool() -> Generator[QThreadPool, None, None]:
    pool = QThreadPool()
    pool.setMaxThreadCount(2)
    yield pool
    pool.waitForDone(5000)


def test_generator_progress_then_result_on_the_gui_thread(qtbot, pool) -> None:
    threads: list[str] = []

    def work(ctx: JobContext) -> Generator[int, None, str]:
        threads.append(threading.current_thread().name)
        yield from range(3)
        return "done"

    job = Job(work, name="count")
    seen: list[Any] = []
    delivered_on: list[str] = []
    job.progress.connect(
        lambda v: (seen.append(v), delivered_on.append(threading.current_thread().name))
    )
    results: list[str] = []
    job.result.connect(results.append)
    with qtbot.waitSignals([job.result, job.finished], timeout=5000):
        job.start(pool)
    assert results == ["done"]
    assert seen == [0, 1, 2]
    assert threads and threads[0] != threading.main_thread().name
    assert set(delivered_on) == {threading.main_thread().name}
    assert job.is_done and not job.is_running


def test_cancel_closes_the_generator_and_emits_cancelled(qtbot, pool) -> None:
    cleaned = threading.Event()

    def forever(ctx: JobContext) -> Generator[int, None, None]:
        try:
            i = 0
            while True:
                time.sleep(0.01)
                yield i
                i += 1
        finally:
            cleaned.set()

    job = Job(forever, name="forever")
    results: list[Any] = []
    job.result.connect(results.append)
    with qtbot.waitSignal(job.progress, timeout=5000):
        job.start(pool)
    with qtbot.waitSignals([job.cancelled, job.finished], timeout=5000):
        job.cancel()
    assert cleaned.is_set()
    assert results == []


def test_generator_that_honours_cancel_itself_still_delivers_its_last_events(qtbot, pool) -> None:
    def sweep(ctx: JobContext) -> Generator[str, None, str]:
        while not ctx.cancel.wait(0.01):
            yield "tick"
        yield "sweep finished (cancelled)"
        return "unused"

    job = Job(sweep, name="sweep", close_on_cancel=False)
    seen: list[str] = []
    job.progress.connect(seen.append)
    with qtbot.waitSignal(job.progress, timeout=5000):
        job.start(pool)
    with qtbot.waitSignal(job.cancelled, timeout=5000):
        job.cancel()
    qtbot.waitUntil(lambda: bool(seen) and seen[-1] == "sweep finished (cancelled)", timeout=5000)


def test_an_exception_becomes_a_readable_error_signal(qtbot, pool) -> None:
    def broken(ctx: JobContext) -> Generator[int, None, None]:
        yield 1
        raise ValueError("models.toml:3: quant 'Q9' is not known")

    job = Job(broken, name="broken")
    errors: list[str] = []
    job.error.connect(errors.append)
    with qtbot.waitSignals([job.error, job.finished], timeout=5000):
        job.start(pool)
    assert errors == ["models.toml:3: quant 'Q9' is not known"]


def test_plain_function_reports_progress_and_rate_limits_droppable_reports(qtbot, pool) -> None:
    def download_like(ctx: JobContext) -> int:
        for done in range(1000):
            ctx.progress({"done_bytes": done}, droppable=True)
        ctx.progress({"done_bytes": 1000})  # a final report is never dropped
        return 1000

    job = Job(download_like, name="download", min_progress_interval_s=10.0)
    seen: list[dict[str, int]] = []
    job.progress.connect(seen.append)
    with qtbot.waitSignal(job.result, timeout=5000):
        job.start(pool)
    assert seen == [{"done_bytes": 0}, {"done_bytes": 1000}]


def test_runner_keeps_jobs_until_finished_and_says_when_all_are_done(qtbot) -> None:
    runner = JobRunner()
    gate = threading.Event()

    def wait_for_gate(ctx: JobContext) -> str:
        gate.wait(5)
        return "ok"

    job = Job(wait_for_gate, name="gated")
    runner.submit(job, "bench")
    assert runner.active == [job]
    with qtbot.waitSignal(runner.all_finished, timeout=5000):
        gate.set()
    assert runner.active == []
    with pytest.raises(RuntimeError, match="already started"):
        job.start(runner.pools["general"])
    for pool in runner.pools.values():
        pool.waitForDone(5000)


def test_signal_emit_keeps_reference_counts_intact() -> None:
    """PySide6 6.12.0 dropped a reference to True on every Python emit(): on Python 3.11 the
    app aborted ("bool_dealloc") after a few hundred progress reports. pyproject excludes it."""
    import sys

    from PySide6.QtCore import QObject, Signal

    class Emitter(QObject):
        ping = Signal(object)

    emitter = Emitter()
    got: list[int] = []
    emitter.ping.connect(got.append)
    before = sys.getrefcount(True)
    for i in range(200):
        emitter.ping.emit(i)
    assert got == list(range(200))
    assert sys.getrefcount(True) >= before - 20
