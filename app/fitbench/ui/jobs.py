"""The one job abstraction of the app: long work off the GUI thread, reported through signals.

A job wraps a function `fn(ctx)`. If it returns a generator, each yielded value is a progress
report and a cancellation point (as superqt's GeneratorWorker); the generator's return value is
the result. A plain function may report progress with `ctx.progress(value)` and must poll
`ctx.cancel`. Exactly one of `result`, `error` or `cancelled` is emitted, then `finished`.

Signals are emitted from the pool thread; Qt queues them to receivers on the GUI thread, so no
widget is ever touched from a worker. Jobs run in named QThreadPools (one pool per concern, as
Picard does): "bench" runs one job at a time (benchmarks are exclusive), "downloads" a few.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, QThreadPool, Signal, Slot

log = logging.getLogger(__name__)

POOL_SIZES = {"general": 2, "downloads": 3, "bench": 1}


class JobContext:
    """What the job's function sees: the cancel event and a progress reporter."""

    def __init__(self, job: Job, min_interval_s: float) -> None:
        self._job = job
        self.cancel = threading.Event()
        self._min_interval_s = min_interval_s
        self._last_emit = 0.0

    @property
    def cancelled(self) -> bool:
        return self.cancel.is_set()

    def progress(self, value: Any, *, droppable: bool = False) -> None:
        """Report progress; `droppable` reports (e.g. byte counters) are rate-limited."""
        now = time.monotonic()
        if droppable and now - self._last_emit < self._min_interval_s:
            return
        self._last_emit = now
        self._job.progress.emit(value)


class Job(QObject):
    progress = Signal(object)
    result = Signal(object)
    error = Signal(str)
    cancelled = Signal()
    finished = Signal()

    def __init__(
        self,
        fn: Callable[[JobContext], Any],
        *,
        name: str,
        close_on_cancel: bool = True,
        min_progress_interval_s: float = 0.05,
    ) -> None:
        """`close_on_cancel=False` keeps iterating after cancel, for generators (like the sweep
        runner) that honour the cancel event themselves and still have final events to yield."""
        super().__init__()
        self.name = name
        self._fn = fn
        self._close_on_cancel = close_on_cancel
        self.ctx = JobContext(self, min_progress_interval_s)
        self._running = False
        self._done = False

    @property
    def is_running(self) -> bool:
        return self._running

    @property
    def is_done(self) -> bool:
        return self._done

    def cancel(self) -> None:
        self.ctx.cancel.set()

    def start(self, pool: QThreadPool) -> None:
        if self._running or self._done:
            raise RuntimeError(f"job {self.name!r} was already started")
        self._running = True
        pool.start(self._run)

    def run_here(self) -> None:
        """Run on the calling thread (scripts and tests that want no thread)."""
        self._running = True
        self._run()

    def _iterate(self, gen: Generator[Any, None, Any]) -> Any:
        while True:
            try:
                value = next(gen)
            except StopIteration as stop:
                return stop.value
            self.progress.emit(value)
            if self.ctx.cancelled and self._close_on_cancel:
                gen.close()  # runs the generator's finally blocks
                return None

    def _run(self) -> None:
        outcome: tuple[str, Any] = ("cancelled", None)
        try:
            value = self._fn(self.ctx)
            if isinstance(value, Generator):
                value = self._iterate(value)
            if not self.ctx.cancelled:
                outcome = ("result", value)
        except Exception as exc:
            if self.ctx.cancelled:  # e.g. DownloadCancelled: the stop we asked for
                log.info("job %s stopped on cancel: %s", self.name, exc)
            else:
                log.warning("job %s failed", self.name, exc_info=True)
                outcome = ("error", describe_error(exc))
        finally:
            self._running = False
            self._done = True
        kind, payload = outcome
        if kind == "result":
            self.result.emit(payload)
        elif kind == "error":
            self.error.emit(payload)
        else:
            self.cancelled.emit()
        self.finished.emit()


def describe_error(exc: BaseException) -> str:
    """One line for a person; the traceback is in the log file."""
    text = str(exc).strip()
    if isinstance(exc, (ValueError, OSError, RuntimeError)) and text:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class JobRunner(QObject):
    """Owns the pools and keeps each job alive until it has finished."""

    job_started = Signal(object)
    job_finished = Signal(object)
    all_finished = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.pools: dict[str, QThreadPool] = {}
        for name, size in POOL_SIZES.items():
            pool = QThreadPool(self)
            pool.setMaxThreadCount(size)
            self.pools[name] = pool
        self._jobs: list[Job] = []

    def submit(self, job: Job, pool: str = "general") -> Job:
        self._jobs.append(job)
        # A bound slot of this QObject, not a lambda: Qt then queues the call to the GUI thread
        # and drops it if the runner is gone (a lambda's finished call was seen to go missing).
        job.finished.connect(self._job_done)
        job.start(self.pools[pool])
        self.job_started.emit(job)
        return job

    @Slot()
    def _job_done(self) -> None:
        job = self.sender()
        if isinstance(job, Job):
            self._on_finished(job)

    def _on_finished(self, job: Job) -> None:
        # A job can finish after the window (and this runner's C++ side) was destroyed, e.g. a
        # cancelled sweep reporting back during teardown: nobody is left to tell.
        if not shiboken6.isValid(self):
            return
        if job in self._jobs:
            self._jobs.remove(job)
        self.job_finished.emit(job)
        if not self._jobs:
            self.all_finished.emit()

    @property
    def active(self) -> list[Job]:
        """Jobs not yet done (a done job counts as finished even before its signal arrives)."""
        return [job for job in self._jobs if not job.is_done]

    def cancel_all(self) -> None:
        for job in self._jobs:
            job.cancel()
