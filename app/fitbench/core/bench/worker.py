"""The benchmark worker: one model load and its tests, in a child process.

    python -m fitbench.core.bench.worker CONFIG.json|- [--ack]

CONFIG.json: a BenchConfig as JSON; "-" reads it from the first line of stdin. With --ack (the
runner's mode) the worker waits for an "ok" line on stdin after every event and record (Acks).

stdout: one validated result record per finished test, as a JSON line, flushed at once.
stderr: progress as `@fitbench {json}` lines (events: loading, loaded, test_start, warm, rep,
        rerun, test_end), plus llama.cpp's warnings and errors (everything with `verbose`).
        `warm` and `rep` come after the warm-up and each repetition with its duration and token
        count: the runner's heartbeat, from which it derives how long a stall may last.
Exit 0 when every test ran (failed tests are records with a status), 2 for a bad config, 3 when
the model could not be loaded (a failure record per test is written first).

The protocol follows llama-bench (tools/llama-bench/llama-bench.cpp): random token ids, a warm-up
run, `reps` timed repetitions, a fresh context per test with n_ctx = depth + prompt + generated
tokens, prompts fed in n_batch chunks with logits for the last token only, generation one token
at a time with a synchronize after each, and depth states cached between repetitions.
"""

from __future__ import annotations

import json
import os
import platform
import re
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __name__ == "__main__":
    # The worker process loads llama_cpp before numpy: the other order segfaulted at model load
    # on a CUDA 13 image (H200). Importers of this module (tests) keep the lazy import.
    import llama_cpp  # noqa: F401

import numpy as np

from fitbench.core.bench.config import INJECT_ENV, BenchConfig, BenchTest, ConfigError
from fitbench.core.hardware.llama_backends import load_backends
from fitbench.core.plan.placement import Placement
from fitbench.core.results.schema import Known, Measured, build_record, utc_now

if TYPE_CHECKING:  # the worker loads llama_lowlevel (and llama.cpp) only when it runs
    from fitbench.core.bench.llama_lowlevel import LoadLog

MARK = "@fitbench "
EXIT_BAD_CONFIG = 2
EXIT_LOAD_FAILED = 3
_OOM_WORDS = re.compile(
    r"out of memory|failed to allocate|unable to allocate|cudaMalloc failed|"
    r"ErrorOutOfDeviceMemory|cannot allocate memory",
    re.IGNORECASE,
)
_OVERRIDDEN = re.compile(r"tensor (\S+) \((\d+) MiB (\S+)\) buffer type overridden to (\S+)")


def emit(event: str, **data: Any) -> None:
    sys.stderr.write(MARK + json.dumps({"event": event, **data}) + "\n")
    sys.stderr.flush()


def classify_failure(text: str) -> str:
    """oom when llama.cpp's words say memory ran out, else error."""
    return "oom" if _OOM_WORDS.search(text) else "error"


# A run whose repetitions differ this much was disturbed (stopped, swapped, another job on the
# cores): quiet reps of one test on one machine stay within a few percent of each other
SPREAD_MAX_RATIO = 3.0
SPREAD_MAX_CV = 0.5
# ...by more than this: repetitions of a few milliseconds (tiny twins, a fast GPU) jitter by
# several times on a busy machine without anything worth a re-run having happened
SPREAD_MIN_NS = 100_000_000


def sample_spread(samples_ns: list[int]) -> str:
    """Why these repetition times look disturbed, or "" when they agree."""
    if len(samples_ns) < 2 or min(samples_ns) <= 0:
        return ""
    if max(samples_ns) - min(samples_ns) < SPREAD_MIN_NS:
        return ""
    ratio = max(samples_ns) / min(samples_ns)
    cv = statistics.stdev(samples_ns) / statistics.fmean(samples_ns)
    if ratio > SPREAD_MAX_RATIO or cv > SPREAD_MAX_CV:
        return f"repetitions differ {ratio:.1f}x (slowest/fastest), CV {cv:.2f}"
    return ""


# signals of a crash inside the process (llama.cpp, a driver), as opposed to being stopped
CRASH_SIGNALS = frozenset(
    {signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE, signal.SIGABRT}
)


@dataclass(frozen=True)
class WorkerExit:
    """How one worker process ended, as the runner saw it (after qutebrowser's ProcessOutcome).

    `returncode` is Popen's: negative for a signal. The runner sets `timeout_s` when it stopped
    a worker that made no progress for that long, and `cancelled` when the user stopped it; both
    take precedence over the exit status the stop itself caused. `test` is the test that was
    running ("" while loading) and `stderr_tail` llama.cpp's last words.
    """

    returncode: int
    test: str = ""
    stderr_tail: str = ""
    timeout_s: float | None = None
    cancelled: bool = False
    # what says memory ran out (sampler.OomWatch: the cgroup's or the kernel's OOM-kill
    # counter moved, or the peak RSS reached what was available); "" when nothing does
    oom_evidence: str = ""
    stopped: bool = False  # the process was seen stopped (SIGSTOP, a debugger) when it stalled

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode < 0 else None

    @property
    def exit_code(self) -> int | None:
        return self.returncode if self.returncode >= 0 else None

    @property
    def was_successful(self) -> bool:
        return self.returncode == 0 and self.timeout_s is None and not self.cancelled

    @property
    def crashed(self) -> bool:
        """Killed by a crash signal of its own (segfault, abort, ...), not stopped."""
        return not self.cancelled and self.timeout_s is None and self.signal in CRASH_SIGNALS

    @property
    def signal_name(self) -> str:
        sig = self.signal
        if sig is None:
            return ""
        return signal.Signals(sig).name if sig in signal.Signals.__members__.values() else str(sig)

    @property
    def status(self) -> str:
        """The status of the tests this worker left unfinished."""
        if self.cancelled:
            return "cancelled"
        if self.timeout_s is not None:
            return "timeout"
        if self.signal == signal.SIGKILL:
            # the OOM killer, a user, a scheduler or a watchdog: only evidence says which
            return "oom" if self.oom_evidence else "killed"
        if self.signal is not None:
            oom = self.signal == signal.SIGABRT and classify_failure(self.stderr_tail) == "oom"
            return "oom" if oom else "crash"
        return classify_failure(self.stderr_tail)

    @property
    def description(self) -> str:
        """Why the tests left did not finish, in words for a person."""
        if self.cancelled:
            return "cancelled by the user"
        if self.timeout_s is not None:
            step = f"{self.test} to finish" if self.test else "the model to load"
            if self.stopped:
                return (
                    f"nothing happened for {self.timeout_s:.0f} s (waiting for {step}): the "
                    "worker process was stopped (SIGSTOP or a debugger), so the runner ended it; "
                    "nothing it measured across the stop is kept"
                )
            return (
                f"nothing happened for {self.timeout_s:.0f} s (waiting for {step}); the worker "
                "was stopped. A placement that streams weights from disk or a GPU driver that "
                "hangs looks like this; `fitbench bench --test-timeout SECONDS` sets the limit"
            )
        where = f" during {self.test}" if self.test else ""
        tail = f"\n{self.stderr_tail}" if self.stderr_tail else ""
        if self.signal == signal.SIGKILL and self.oom_evidence:
            return (
                f"the worker was killed (SIGKILL){where} by the out-of-memory killer "
                f"({self.oom_evidence}): the placement needs more RAM than is free"
            )
        if self.signal == signal.SIGKILL:
            return (
                f"the worker was killed (SIGKILL){where} with no sign of memory pressure (no "
                "OOM kill counted, peak RSS well below the free RAM): a user, a job scheduler "
                "or a watchdog, not the placement"
            )
        if self.signal is not None:
            return f"llama.cpp crashed ({self.signal_name}){where}{tail}"
        return f"the worker exited with code {self.returncode}{where}{tail}"

    def __str__(self) -> str:
        return self.description


def cpu_info() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _inject(cfg: BenchConfig, where: str) -> None:
    """Test-only faults, honoured only when FITBENCH_ALLOW_INJECT=1: `segfault@<where>`,
    `sleep@<where>` (sleep 60 s), `hang@<where>` (sleep, ignoring SIGTERM), `exit@<where>`;
    where = load | test<N> | after<N>. And `stop@rep<N>` / `stoponce@rep<N>`: the worker
    SIGSTOPs itself inside the timed part of repetition N (every run / the first run only),
    for whoever watches it to SIGCONT, as a stopped or swapped-out process would be."""
    if not cfg.inject or os.environ.get(INJECT_ENV) != "1":
        return
    action, _, at = cfg.inject.partition("@")
    if at != where:
        return
    if action == "segfault":
        import ctypes

        ctypes.string_at(0)  # a real SIGSEGV inside the process, as a llama.cpp crash would be
    elif action == "sleep":
        time.sleep(60)
    elif action == "hang":  # ignores SIGTERM, as a worker stuck in a driver call would
        import signal

        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(60)
    elif action == "exit":
        os._exit(1)


class _RepFault:
    """`stop@rep<N>` / `stoponce@rep<N>` (see _inject)."""

    def __init__(self, cfg: BenchConfig) -> None:
        self.rep = -1
        self.once = False
        if cfg.inject and os.environ.get(INJECT_ENV) == "1":
            action, _, at = cfg.inject.partition("@")
            if action in ("stop", "stoponce") and at.startswith("rep") and at[3:].isdigit():
                self.rep, self.once = int(at[3:]), action == "stoponce"

    def __call__(self, rep: int) -> None:
        if rep == self.rep:
            if self.once:
                self.rep = -1
            os.kill(os.getpid(), signal.SIGSTOP)


class Worker:
    def __init__(self, cfg: BenchConfig) -> None:
        from fitbench.core.bench import llama_lowlevel as ll

        self.ll = ll
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)
        self.log = ll.install_log(cfg.verbose)
        self.model: Any = None
        self.overrides: Any = None
        self.load_s: float | None = None
        self.buffers: dict[str, dict[str, int]] = {}
        self.overridden: list[str] = []
        self.has_gpu = False
        self.known: Known = {}  # the record's build, model and effective parts, once learnt
        self.depth_state: tuple[int, bytes] | None = None  # llama-bench's cstate
        self.rep_fault = _RepFault(cfg)

    # -- loading --

    def load(self) -> None:
        import llama_cpp

        ll, cfg = self.ll, self.cfg
        # a GGML_BACKEND_DL build (the release bundle) registers its CPU variant and CUDA here
        load_backends()
        llama_cpp.llama_backend_init()
        self.has_gpu = bool(ll.gpu_names())
        self.known = self.build_fields()
        # all blocks: one pattern, as llama.cpp's --cpu-moe (llama.cpp compiles every pattern
        # for every tensor, so never one per possible block)
        every = cfg.n_cpu_moe < 0
        patterns = [ll.FFN_EXPS_REGEX] if every else ll.expert_patterns(cfg.n_cpu_moe)
        self.overrides = ll.Overrides(patterns)
        emit("loading", path=cfg.model_path, fields=self.known)
        self.log.capturing = True
        self.log.clear()
        t0 = time.perf_counter()
        self.model = ll.Model(
            Path(cfg.model_path),
            n_gpu_layers=cfg.n_gpu_layers,
            overrides=self.overrides,
            split_mode=cfg.split_mode,
            main_gpu=cfg.main_gpu,
            tensor_split=list(cfg.tensor_split),
            use_mmap=cfg.use_mmap,
            repack=cfg.repack,
        )
        self.load_s = time.perf_counter() - t0
        self.buffers["model"] = self.log.buffers("model")
        self.overridden = [m[0] for m in _OVERRIDDEN.findall(self.log.text())]
        self.known.update(self.load_fields())
        emit(
            "loaded",
            load_s=self.load_s,
            buffers=self.buffers["model"],
            overridden=self.overridden,
            n_layer=self.model.info.n_layer,
            fields=self.known,
        )

    # -- record fields --

    def effective_placement(self) -> tuple[int, int]:
        """(n_gpu_layers, n_cpu_moe) as they took effect; nothing is offloaded without a GPU."""
        n_layer = self.model.info.n_layer
        placement = Placement(self.cfg.n_gpu_layers).effective(n_layer, self.has_gpu)
        expert_layers = {
            int(m.group(1)) for m in map(re.compile(r"blk\.(\d+)\.").match, self.overridden) if m
        }
        return placement.n_gpu_layers, len(expert_layers)

    def build_fields(self) -> Known:
        import llama_cpp

        return {
            "cpu_info": cpu_info(),
            "gpu_info": ", ".join(self.ll.gpu_names()),
            "backends": self.ll.backends_string(),
            "llama_cpp_python_version": llama_cpp.__version__,
        }

    def load_fields(self) -> Known:
        """What the loaded model settled: its description and the placement in effect."""
        info = self.model.info
        ngl, ncmoe = self.effective_placement()
        return {
            "model_type": info.desc,
            "model_size": info.size,
            "model_n_params": info.n_params,
            "n_gpu_layers": ngl,
            "n_cpu_moe": ncmoe,
            "tensor_buft_overrides": self.overrides.describe() if self.cfg.n_cpu_moe else "none",
            "n_layer_file": info.n_layer,
        }

    def load_measured(self) -> Measured:
        if self.model is None:
            return {"load_s": self.load_s}
        return {"load_s": self.load_s, "buffer_bytes": dict(self.buffers)}

    def failure(self, spec: BenchTest, status: str, error: str) -> dict[str, Any]:
        return build_record(
            self.cfg, spec, self.known, self.load_measured(), status=status, error=error
        )

    # -- tests --

    def _tokens(self, n: int, bos_first: bool) -> np.ndarray:
        toks = self.rng.integers(0, self.model.info.n_vocab, n, dtype=np.int32)
        if bos_first and n and self.model.info.add_bos:
            toks[0] = self.model.info.bos
        return toks

    def _context(self, spec: BenchTest) -> Any:
        cfg = self.cfg
        n_ctx = spec.n_ctx if spec.kind == "batch" else spec.n_depth + spec.n_prompt + spec.n_gen
        params = self.ll.ContextParams(
            n_ctx=max(n_ctx, 1),
            n_batch=max(cfg.n_batch, spec.n_parallel),
            n_ubatch=cfg.n_ubatch,
            n_seq_max=spec.n_parallel,
            n_threads=cfg.n_threads,
            type_k=cfg.type_k,
            type_v=cfg.type_v,
            flash_attn=cfg.flash_attn,
            offload_kqv=not cfg.no_kv_offload,
            poll=cfg.poll,
        )
        self.log.capturing = True
        self.log.clear()
        ctx = self.ll.Context(self.model, params)
        text = self.log.text()
        self.buffers["kv"] = self.log.buffers("kv")
        self.buffers["compute"] = self.log.buffers("compute")
        self.log.capturing = False  # nothing is kept (or formatted) while timing
        self.flash_attn_used: bool | None = cfg.flash_attn
        if "Flash Attention enabled" in text:
            self.flash_attn_used = True
        elif "Flash Attention not supported" in text:
            self.flash_attn_used = False
        return ctx

    def _prompt(self, ctx: Any, n: int, start: int) -> None:
        ctx.decode_prompt(self._tokens(n, bos_first=True), start, logits_last=True)
        ctx.synchronize()

    def _gen(self, ctx: Any, n: int, times: list[int] | None) -> None:
        info = self.model.info
        toks = self._tokens(n, bos_first=False)
        token = info.bos if info.add_bos else int(toks[0])
        pos = ctx.seq_pos_max(0) + 1
        ctx.prepare_single()
        clock = time.perf_counter_ns
        last = clock()
        for i in range(n):
            ctx.decode_one(token, pos + i)
            ctx.synchronize()
            token = int(toks[i])
            if times is not None:
                now = clock()
                times.append(now - last)
                last = now

    def _fill_depth(self, ctx: Any, depth: int) -> None:
        """Prefill `depth` tokens, or restore them from the state saved at that depth."""
        if self.depth_state and self.depth_state[0] == depth and ctx.state_set(self.depth_state[1]):
            return
        ctx.clear()
        self._prompt(ctx, depth, 0)
        self.depth_state = (depth, ctx.state_get())

    def run_test(self, spec: BenchTest) -> dict[str, Any]:
        """One test; a run whose repetitions disagree (sample_spread) runs once more, and a
        second disturbed run is stored with `disturbed` saying why."""
        record = self._run_once(spec)
        why = sample_spread(record["samples_ns"] or [])
        if not why:
            return record
        emit("rerun", test=spec.name, reason=why, samples_ts=record["samples_ts"])
        record = self._run_once(spec)
        again = sample_spread(record["samples_ns"] or [])
        if again:
            record["disturbed"] = f"{again}, and {why} in a first run"
        return record

    def _run_once(self, spec: BenchTest) -> dict[str, Any]:
        ctx = self._context(spec)
        try:
            run: Callable[[Any, BenchTest], tuple[list[int], list[int], list[int]]]
            run = self._batch if spec.kind == "batch" else self._single
            test_time = utc_now()
            samples, itl, ttft = run(ctx, spec)
        finally:
            ctx.close()
        n_tokens = spec.n_prompt + spec.n_gen * spec.n_parallel
        ts = [1e9 * n_tokens / s for s in samples]
        measured: Measured = {
            **self.load_measured(),
            "test_time": test_time,
            "avg_ns": int(statistics.fmean(samples)),
            "stddev_ns": int(statistics.stdev(samples)) if len(samples) > 1 else 0,
            "avg_ts": statistics.fmean(ts),
            "stddev_ts": statistics.stdev(ts) if len(ts) > 1 else 0.0,
            "samples_ns": samples,
            "samples_ts": ts,
            "ttft_ms": statistics.fmean(ttft) / 1e6 if ttft else None,
            "itl_ms_p50": _percentile(itl, 50),
            "itl_ms_p95": _percentile(itl, 95),
            "itl_ms_p99": _percentile(itl, 99),
        }
        known: Known = {**self.known, "flash_attn": self.flash_attn_used}
        return build_record(self.cfg, spec, known, measured)

    def _single(self, ctx: Any, spec: BenchTest) -> tuple[list[int], list[int], list[int]]:
        cfg = self.cfg
        n_prompt = spec.n_prompt
        n_gen = spec.n_gen
        clock = time.perf_counter_ns
        if cfg.warmup:
            t_warm = clock()
            if n_prompt:
                self._prompt(ctx, n_prompt, 0)
            if n_gen:
                self._gen(ctx, 1, None)
            emit("warm", ns=clock() - t_warm, tokens=n_prompt + min(n_gen, 1))
        samples: list[int] = []
        itl: list[int] = []
        ttft: list[int] = []
        for rep in range(cfg.reps):
            ctx.clear()
            if spec.n_depth:
                self._fill_depth(ctx, spec.n_depth)
            t0 = clock()
            self.rep_fault(rep)
            if n_prompt:
                self._prompt(ctx, n_prompt, spec.n_depth)
                if spec.kind == "ttft":
                    ctx.last_logits_argmax()  # the first token is chosen from these logits
                ttft.append(clock() - t0)
            if n_gen:
                self._gen(ctx, n_gen, itl)
            samples.append(clock() - t0)
            emit("rep", ns=samples[-1], tokens=n_prompt + n_gen)
        if spec.kind == "tg":
            ttft = []
        return samples, itl, ttft

    def _batch(self, ctx: Any, spec: BenchTest) -> tuple[list[int], list[int], list[int]]:
        import llama_cpp

        cfg = self.cfg
        n_seq = spec.n_parallel
        ctx.prepare_parallel(n_seq)
        clock = time.perf_counter_ns
        if cfg.warmup:
            t_warm = clock()
            ctx.decode_parallel(self._tokens(n_seq, bos_first=False), 0)
            ctx.synchronize()
            emit("warm", ns=clock() - t_warm, tokens=n_seq)
        samples: list[int] = []
        itl: list[int] = []
        for _ in range(cfg.reps):
            ctx.clear()
            start = 0
            if spec.n_depth:
                ctx.reset_seq_ids()
                self._fill_depth(ctx, spec.n_depth)
                for s in range(1, n_seq):
                    llama_cpp.llama_memory_seq_cp(ctx.memory, 0, s, -1, -1)
                ctx.prepare_parallel(n_seq)
                start = spec.n_depth
            steps = [self._tokens(n_seq, bos_first=False) for _ in range(spec.n_gen)]
            t0 = last = clock()
            for i in range(spec.n_gen):
                ctx.decode_parallel(steps[i], start + i)
                ctx.synchronize()
                now = clock()
                itl.append(now - last)
                last = now
            samples.append(clock() - t0)
            emit("rep", ns=samples[-1], tokens=n_seq * spec.n_gen)
        return samples, itl, []


def _percentile(values_ns: list[int], q: float) -> float | None:
    if not values_ns:
        return None
    return float(np.percentile(np.asarray(values_ns, dtype=np.float64), q)) / 1e6


def _print_record(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


class Acks:
    """With a runner attached (`--ack`), wait for its "ok" after each test_start and record.

    The runner answers once it has reset the memory peaks for the test, or committed the record
    to the store, so every record is stored before the next test starts and progress events and
    records are handled in order although they travel on two pipes. End of input means the
    runner is gone: the worker stops at once instead of running on unobserved.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        if enabled:
            threading.Thread(target=_exit_with_parent, name="parent-watch", daemon=True).start()

    def wait(self) -> None:
        if self.enabled and not sys.stdin.readline():
            os._exit(0)


def _exit_with_parent(interval_s: float = 0.5) -> None:
    """Stop when the runner is gone (killed without cleanup): a test may run for minutes
    before the next ack would notice, and an orphan keeps the GPU and the cores busy."""
    parent = os.getppid()
    while True:
        time.sleep(interval_s)
        if os.getppid() != parent:
            os._exit(0)


def run(cfg: BenchConfig, acks: Acks | None = None) -> int:
    acks = acks or Acks(False)
    worker = Worker(cfg)
    _inject(cfg, "load")
    try:
        worker.load()
    except Exception as exc:  # llama.cpp's refusal becomes one record per planned test
        text = f"{exc}\n{worker.log.text()[-4000:]}"
        status = classify_failure(text)
        for spec in cfg.tests:
            _print_record(worker.failure(spec, status, _summary(exc, worker.log)))
            acks.wait()
        return EXIT_LOAD_FAILED
    for index, spec in enumerate(cfg.tests):
        tokens = spec.n_depth + spec.n_prompt + spec.n_gen * spec.n_parallel
        emit("test_start", index=index, test=spec.name, n_ctx=spec.n_ctx, tokens=tokens)
        acks.wait()
        _inject(cfg, f"test{index}")
        t0 = time.perf_counter()
        try:
            record = worker.run_test(spec)
        except Exception as exc:  # a context that does not fit, a failed decode: this test only
            worker.log.capturing = False
            record = worker.failure(
                spec,
                classify_failure(f"{exc}\n{worker.log.text()}"),
                _summary(exc, worker.log),
            )
        _print_record(record)
        acks.wait()
        emit("test_end", index=index, status=record["status"], s=time.perf_counter() - t0)
        _inject(cfg, f"after{index}")
    if worker.model is not None:
        worker.model.close()
    return 0


def _summary(exc: BaseException, log: LoadLog) -> str:
    """The exception plus llama.cpp's last error lines: what a person needs to see."""
    flagged = {ln.strip() for ln in log.errors}
    errors = [
        ln
        for ln in log.text().splitlines()
        if ln.strip() in flagged or re.search(r"error|fail|out of memory", ln, re.I)
    ]
    tail = "\n".join(errors[-5:])
    return f"{exc}" + (f"\n{tail}" if tail else "")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    ack = "--ack" in args
    if ack:
        args.remove("--ack")
    if len(args) != 1:
        print("usage: python -m fitbench.core.bench.worker CONFIG.json|- [--ack]", file=sys.stderr)
        return EXIT_BAD_CONFIG
    try:
        # with "-" the config is the first line of stdin; acks follow on the same stream
        text = sys.stdin.readline() if args[0] == "-" else Path(args[0]).read_text("utf-8")
        cfg = BenchConfig.from_json(text)
    except (OSError, ConfigError) as exc:
        print(f"fitbench worker: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    return run(cfg, Acks(ack))


if __name__ == "__main__":
    raise SystemExit(main())
