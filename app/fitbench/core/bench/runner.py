"""The sweep runner: one worker process per config, events out, every record stored at once.

`run_sweep()` is a generator of `events.Event`; every `yield` is a cancellation point. The GUI
drives it on a worker thread and forwards the events as signals; the CLI prints them.

- A worker that crashes (segfault, abort, CUDA error) or is killed (the kernel's OOM killer) is
  that config's outcome: a record with status crash|oom|error is stored for each test it did not
  finish, and the sweep goes on with the next config.
- `cancel` stops the running worker (terminate, then kill after 1 s) and ends the sweep.
- A worker that makes no progress is stopped the same way; that test is recorded as `timeout`
  and the sweep goes on. Progress is the worker's heartbeat (model loaded, test started,
  warm-up and every repetition done, each with its duration and tokens); once the worker has
  timed some tokens, a stall is STALL_FACTOR times the time the next repetition should take at
  the slowest rate seen, at least `stall_floor_s`; before that (and at most) `test_timeout_s`.
- A SIGKILL is `oom` only with evidence (sampler.OomWatch), else `killed`.
- Each finished record goes to the SQLite store (and `out_jsonl`) before the next test starts:
  the worker streams records as soon as a test ends and the runner commits them as they arrive.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any, cast

import psutil

from fitbench.core.bench.config import DEFAULT_TEST_TIMEOUT_S, BenchConfig
from fitbench.core.bench.events import (
    ConfigFailed,
    ConfigStarted,
    Event,
    RecordReady,
    Sample,
    SweepFinished,
    SweepStarted,
)
from fitbench.core.bench.sampler import DEFAULT_INTERVAL_S, MemorySampler, OomWatch, Peaks
from fitbench.core.bench.worker import MARK, WorkerExit
from fitbench.core.results.schema import Known, Measured, build_record, validate, write_jsonl
from fitbench.core.results.store import Store

log = logging.getLogger(__name__)

POLL_S = 0.25  # an idle runner checks cancel and forwards samples this often (GUI traces: 2 Hz)
STALL_FACTOR = 10.0  # a repetition this many times slower than expected is a stall
STALL_FLOOR_S = 60.0  # never call a stall sooner (a busy machine, a slow first context)
TERMINATE_GRACE_S = 1.0
STDERR_TAIL_CHARS = 1500  # of llama.cpp's last words, quoted in a failure's error


@dataclass
class _Attempt:
    """What one worker process did."""

    records: list[dict[str, Any]] = field(default_factory=list)
    done: set[int] = field(default_factory=set)
    current: int | None = None
    buffers: dict[str, int] = field(default_factory=dict)
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=60))
    # the record's build, model and effective parts as the worker reported them; the tests it
    # does not finish are recorded with these, as a finished one would be
    known: Known = field(default_factory=lambda: Known(llama_cpp_python_version=_lcp_version()))
    outcome: WorkerExit | None = None  # how the worker ended
    cancelled: bool = False
    timed_out: bool = False
    vram_base_per_gpu: list[int] | None = None  # NVML before the load, per GPU
    last_progress: float = field(default_factory=time.monotonic)
    ns_per_token: float | None = None  # the slowest rate a timed repetition showed
    warm_ns_per_token: float | None = None  # the running test's warm-up rate, until then
    rep_tokens: int = 0  # the most tokens one repetition of the running test may process
    stall_s: float | None = None  # the bound that ended it, when it stalled
    stopped: bool = False  # the process was in the stopped state when it stalled

    def memory_fields(self, peaks: Peaks) -> Measured:
        """The memory a record reports: the sampler's peaks and the VRAM before the load."""
        base = self.vram_base_per_gpu
        return {
            "ram_peak_bytes": peaks.ram_bytes,
            "vram_peak_bytes": peaks.vram_bytes,
            "vram_peak_per_gpu": peaks.vram_per_gpu,
            "vram_base_bytes": sum(base) if base else None,
            "vram_base_per_gpu": base,
        }


def _lcp_version() -> str:
    """llama-cpp-python's version without importing it (the worker reports the one it ran)."""
    try:
        return metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        return ""


# the signals that end a run (cli.Terminated, KeyboardInterrupt): held back while a worker
# starts, so that one arriving then finds the worker owned by code that stops it
_ENDING_SIGNALS = {signal.SIGINT, signal.SIGTERM} | (
    {signal.SIGHUP} if hasattr(signal, "SIGHUP") else set()
)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _ENDING_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _WorkerProcess:
    def __init__(self, cfg: BenchConfig, python: str) -> None:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with _signals_held():
            self.proc = subprocess.Popen(
                [python, "-m", "fitbench.core.bench.worker", "-", "--ack"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                encoding="utf-8",
                errors="replace",
                env=env,
                start_new_session=True,  # the terminal's Ctrl-C reaches the runner, which stops it
            )
            self.lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
        try:  # a signal held above is handled here at the latest: no orphan worker
            self._send(cfg.to_json())
            for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr)):
                threading.Thread(
                    target=self._pump, args=(name, stream), name=f"worker-{name}", daemon=True
                ).start()
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise

    def _pump(self, name: str, stream: IO[str] | None) -> None:
        assert stream is not None
        with stream:
            for line in stream:
                self.lines.put((name, line.rstrip("\n")))
        self.lines.put((name, None))

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def _send(self, line: str) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(line + "\n")
            stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # the worker is gone; its exit status tells why

    def ack(self) -> None:
        self._send("ok")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        """Terminate, then kill: the worker is gone within TERMINATE_GRACE_S + a little."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=TERMINATE_GRACE_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


class SweepRunner:
    def __init__(
        self,
        configs: list[BenchConfig],
        *,
        store: Store,
        out_jsonl: Path | None,
        cancel: threading.Event | None,
        hardware: Mapping[str, Any] | None,
        hardware_fingerprint: str,
        settings: Mapping[str, Any] | None,
        python: str,
        sample_interval_s: float,
        test_timeout_s: float | None,
        stall_floor_s: float = STALL_FLOOR_S,
    ) -> None:
        self.configs = configs
        self.store = store
        self.out_jsonl = out_jsonl
        self.cancel = cancel or threading.Event()
        self.hardware = dict(hardware or {})
        self.fingerprint = hardware_fingerprint
        self.settings = dict(settings or {})
        self.python = python
        self.test_timeout_s = test_timeout_s or None
        self.stall_floor_s = stall_floor_s
        self.t0 = time.monotonic()
        self.sampler = MemorySampler(origin=self.t0, interval_s=sample_interval_s)
        self.run_id = ""
        self.n_records = 0
        self.n_failed = 0
        self.repack_off = False  # set after llama.cpp's AMX kernels crashed once in this sweep

    def _persist(self, record: dict[str, Any]) -> dict[str, Any]:
        record = validate(
            {**record, "run_id": self.run_id, "hardware_fingerprint": self.fingerprint}
        )
        self.store.add_record(self.run_id, record)  # queues, never drops, when the db is busy
        if self.out_jsonl is not None:
            try:
                write_jsonl([record], self.out_jsonl)  # the line is whole or absent
            except OSError as exc:
                # the database has the record; a full disk must not end the sweep
                log.error(
                    "could not append to %s (%s); the record is in the database: "
                    "`fitbench bench --export-run %s --out FILE` writes the file later",
                    self.out_jsonl,
                    exc.strerror or exc,
                    self.run_id,
                )
        if record.get("disturbed"):
            log.warning(
                "%s %s: the run was disturbed (%s); stored flagged `disturbed`",
                record["model_id"],
                record["test"],
                record["disturbed"],
            )
        self.n_records += 1
        return record

    def events(self) -> Generator[Event, None, None]:
        self.run_id = self.store.add_run(
            settings={**self.settings, "configs": [c.to_dict() for c in self.configs]},
            hardware=self.hardware,
            hardware_fingerprint=self.fingerprint,
        )
        status = "interrupted"
        try:
            yield SweepStarted(self.run_id, len(self.configs), None)
            durations: list[float] = []
            for index, cfg in enumerate(self.configs):
                if self.cancel.is_set():
                    break
                if self.repack_off and cfg.repack:
                    cfg = cfg.with_(repack=False, config_id=cfg.config_id, label=cfg.label)
                left = len(self.configs) - index
                remaining = sum(durations) / len(durations) * left if durations else None
                yield ConfigStarted(
                    self.run_id, cfg.config_id, index, len(self.configs), cfg.label, remaining
                )
                started = time.monotonic()
                yield from self._run_config(cfg)
                durations.append(time.monotonic() - started)
            status = "cancelled" if self.cancel.is_set() else "finished"
        finally:
            self.sampler.close()
            self.store.finish_run(self.run_id, status)
        yield SweepFinished(
            self.run_id,
            self.n_records,
            self.n_failed,
            status == "cancelled",
            time.monotonic() - self.t0,
        )

    def _run_config(self, cfg: BenchConfig) -> Iterator[Event]:
        attempt = yield from self._attempt(cfg)
        outcome = attempt.outcome
        if outcome is None or outcome.cancelled:
            return
        missing = [i for i in range(len(cfg.tests)) if i not in attempt.done]
        amx = any(name.upper().startswith("AMX") for name in attempt.buffers)
        if missing and outcome.crashed and amx and cfg.repack:
            # llama.cpp's AMX weight buffers crash on some CPUs/VMs (ggml-org/llama.cpp#20824);
            # plain CPU buffers work everywhere, so the tests left run again without repacking
            log.warning("llama.cpp crashed in AMX buffers; %s again without repack", cfg.label)
            self.repack_off = True
            cfg = cfg.with_(
                repack=False,
                tests=tuple(cfg.tests[i] for i in missing),
                config_id=cfg.config_id,
                label=cfg.label,
            )
            attempt = yield from self._attempt(cfg)
            outcome = attempt.outcome
            if outcome is None or outcome.cancelled:
                return
            missing = [i for i in range(len(cfg.tests)) if i not in attempt.done]
        failed = [r for r in attempt.records if r["status"] != "ok"]
        if missing:
            current = attempt.current
            status, error = outcome.status, outcome.description
            measured = attempt.memory_fields(self.sampler.peaks())
            for i in missing:
                first_line = error.splitlines()[0]
                why = error if current in (i, None) else f"not run: {first_line}"
                rec = build_record(
                    cfg, cfg.tests[i], attempt.known, measured, status=status, error=why
                )
                yield RecordReady(self._persist(rec))
            self.n_failed += 1
            yield ConfigFailed(cfg.config_id, cfg.label, status, error)
        elif failed:
            self.n_failed += 1
            yield ConfigFailed(cfg.config_id, cfg.label, failed[0]["status"], failed[0]["error"])

    def stall_limit(self, attempt: _Attempt) -> float | None:
        """How long the worker may go without a heartbeat (see the module doc)."""
        limit = self.test_timeout_s
        rate = attempt.ns_per_token or attempt.warm_ns_per_token
        if rate is not None and attempt.rep_tokens:
            expected = rate * attempt.rep_tokens / 1e9
            derived = max(self.stall_floor_s, STALL_FACTOR * expected)
            limit = derived if limit is None else min(limit, derived)
        return limit

    def _stalled(self, attempt: _Attempt, pid: int) -> bool:
        limit = self.stall_limit(attempt)
        if limit is None or time.monotonic() - attempt.last_progress <= limit:
            return False
        attempt.stall_s = limit
        with contextlib.suppress(psutil.Error):
            attempt.stopped = psutil.Process(pid).status() == psutil.STATUS_STOPPED
        return True

    def _samples(self, config_id: str) -> Iterator[Event]:
        for p in self.sampler.drain():
            yield Sample(config_id, p.t_s, p.vram_bytes, p.ram_bytes)

    def _attempt(self, cfg: BenchConfig) -> Generator[Event, None, _Attempt]:
        """Run one worker on `cfg` until it exits or the sweep is cancelled."""
        attempt = _Attempt()
        base = self.sampler.vram_now()
        attempt.vram_base_per_gpu = list(base) if base else None
        oom_watch = OomWatch()
        worker: _WorkerProcess | None = None
        open_streams = 2
        try:  # from here on, whatever unwinds (cancel, SIGTERM, a closed generator) stops it
            worker = _WorkerProcess(cfg, self.python)
            self.sampler.start(worker.pid)
            while open_streams:
                if self.cancel.is_set():
                    worker.stop()
                    attempt.cancelled = True
                    break
                if self._stalled(attempt, worker.pid):
                    log.warning("%s: no progress in %.0f s", cfg.label, attempt.stall_s)
                    worker.stop()
                    attempt.timed_out = True
                    break
                try:
                    stream, line = worker.lines.get(timeout=POLL_S)
                except queue.Empty:
                    yield from self._samples(cfg.config_id)
                    continue
                if line is None:
                    open_streams -= 1
                elif stream == "out":
                    record = self._on_record(attempt, line)
                    if record is not None:
                        worker.ack()  # stored: the worker may start the next test
                        yield from self._samples(cfg.config_id)
                        yield RecordReady(record)
                elif self._on_stderr(attempt, line):
                    worker.ack()
            try:
                returncode: int | None = worker.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # output closed but the process lingers
                worker.stop()
                returncode = worker.proc.returncode
            killed = returncode == -9 and not attempt.timed_out and not attempt.cancelled
            attempt.outcome = WorkerExit(
                returncode=returncode or 0,
                test=cfg.tests[attempt.current].name if attempt.current is not None else "",
                stderr_tail="\n".join(attempt.stderr_tail)[-STDERR_TAIL_CHARS:],
                timeout_s=attempt.stall_s if attempt.timed_out else None,
                cancelled=attempt.cancelled,
                oom_evidence=oom_watch.evidence(self.sampler.max_ram()) if killed else "",
                stopped=attempt.stopped,
            )
        finally:
            if worker is not None:
                if worker.proc.poll() is None:  # the consumer stopped iterating: never leave one
                    worker.stop()
                worker.close()
            self.sampler.stop()
        yield from self._samples(cfg.config_id)
        outcome = attempt.outcome
        if outcome is not None and outcome.cancelled:
            test = cfg.tests[attempt.current] if attempt.current is not None else cfg.tests[0]
            measured = attempt.memory_fields(self.sampler.peaks())
            rec = build_record(
                cfg, test, attempt.known, measured, status=outcome.status, error=str(outcome)
            )
            yield RecordReady(self._persist(rec))
            yield ConfigFailed(cfg.config_id, cfg.label, outcome.status, str(outcome))
        return attempt

    def _on_record(self, attempt: _Attempt, line: str) -> dict[str, Any] | None:
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            attempt.stderr_tail.append(line)  # a library printed to stdout: keep it as context
            return None
        if not isinstance(raw, dict):
            return None
        self.sampler.sample_once()  # a test shorter than the sampling interval still gets one
        peaks = self.sampler.peaks()
        raw.update(attempt.memory_fields(peaks))
        record = self._persist(raw)
        attempt.last_progress = time.monotonic()
        index = attempt.current if attempt.current is not None else len(attempt.done)
        attempt.done.add(index)
        attempt.records.append(record)
        if attempt.current is None:  # load failures come without test_start, one per test
            attempt.done = set(range(len(attempt.records)))
        return record

    def _on_stderr(self, attempt: _Attempt, line: str) -> bool:
        """Handle a stderr line; True when the worker waits for an ack (test_start)."""
        if not line.startswith(MARK):
            attempt.stderr_tail.append(line)
            log.debug("worker: %s", line)
            return False
        try:
            event = json.loads(line[len(MARK) :])
        except json.JSONDecodeError:
            return False
        log.debug("worker event: %s", event)
        kind = event.get("event")
        if kind in ("test_start", "loaded", "warm", "rep", "rerun"):
            attempt.last_progress = time.monotonic()
        if kind in ("warm", "rep"):
            ns, tokens = event.get("ns"), event.get("tokens")
            if isinstance(ns, int) and isinstance(tokens, int) and tokens > 0:
                rate = ns / tokens
                if kind == "rep":  # the slowest rate any timed repetition showed
                    attempt.ns_per_token = max(attempt.ns_per_token or 0.0, rate)
                else:  # a warm-up's fixed costs make its rate an overestimate: a fallback
                    attempt.warm_ns_per_token = rate
        if kind == "rerun":
            log.warning(
                "%s: the repetitions disagree (%s, t/s %s); running it once more",
                event.get("test"),
                event.get("reason"),
                ", ".join(f"{x:.1f}" for x in event.get("samples_ts") or []),
            )
        if kind == "test_start":
            attempt.current = int(event["index"])
            attempt.warm_ns_per_token = None
            # a repetition's tokens, the depth it first fills included: the stall bound's scale
            tokens = event.get("tokens", event.get("n_ctx", 0))
            attempt.rep_tokens = tokens if isinstance(tokens, int) else 0
            self.sampler.reset_peaks()
            self.sampler.sample_once()
            return True
        if kind in ("loading", "loaded"):
            attempt.known.update(cast(Known, event.get("fields") or {}))
        if kind == "loaded":
            attempt.buffers = dict(event.get("buffers") or {})
        return False


def run_sweep(
    configs: Iterable[BenchConfig],
    *,
    store: Store,
    out_jsonl: Path | None = None,
    cancel: threading.Event | None = None,
    hardware: Mapping[str, Any] | None = None,
    hardware_fingerprint: str = "",
    settings: Mapping[str, Any] | None = None,
    python: str | None = None,
    sample_interval_s: float = DEFAULT_INTERVAL_S,
    test_timeout_s: float | None = DEFAULT_TEST_TIMEOUT_S,
    stall_floor_s: float = STALL_FLOOR_S,
) -> Generator[Event, None, None]:
    """Run every config in its own worker process; yields events (see module doc).
    `test_timeout_s`: the longest a worker may go without progress (None or 0: no fixed limit;
    the stall bound derived from its heartbeats still applies)."""
    runner = SweepRunner(
        list(configs),
        store=store,
        out_jsonl=out_jsonl,
        cancel=cancel,
        hardware=hardware,
        hardware_fingerprint=hardware_fingerprint,
        settings=settings,
        python=python or sys.executable,
        sample_interval_s=sample_interval_s,
        test_timeout_s=test_timeout_s,
        stall_floor_s=stall_floor_s,
    )
    return runner.events()
