"""The result record, defined once: its fields as data, one builder, one validator.

Every finished (or failed) test is one flat record (a dict) whose fields are listed in `FIELDS`,
as llama-bench keeps its schema in `test::get_fields()` / `get_field_type()`. The first group
mirrors llama-bench's JSONL output so llama.cpp tooling can read FitBench files; the second group
is FitBench's own. Each field also names the `Part` of a run it comes from, which is what lets
one builder (`build_record`) serve both the worker (measured tests) and the runner (tests a
worker did not finish): the config and the test give the same values on both paths, and the
rest is what the caller knows. The worker, the store, the predictor, the advice and the report
all speak this schema and nothing else.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TypedDict

from fitbench import __version__
from fitbench.core import limits as L
from fitbench.core.results.build_info import llama_build

SCHEMA_VERSION = 1

log = logging.getLogger(__name__)

Origin = Literal["llama-bench", "fitbench"]
# Where a field's value comes from:
#   build      the llama.cpp build and machine the worker ran on (the worker reports them)
#   model      what llama.cpp says about the loaded file
#   config     the benchmark config, identical on every path
#   effective  what llama.cpp settled for the config's request (offloaded layers, experts kept on
#              the CPU, flash attention); the request itself while the model never loaded
#   test       the test's shape
#   measured   timings, latencies, memory
#   run        the sweep that stored it
#   outcome    ok or why not
Part = Literal["build", "model", "config", "effective", "test", "measured", "run", "outcome"]
PARTS: tuple[Part, ...] = (
    "build",
    "model",
    "config",
    "effective",
    "test",
    "measured",
    "run",
    "outcome",
)
SOURCES = ("real", "twin", "scaled-twin")
STATUSES = ("ok", "oom", "killed", "crash", "error", "timeout", "cancelled")
TESTS = ("pp", "tg", "ttft", "batch", "depth")
ERROR_MAX_CHARS = 2000  # the tail of a failure's text: llama.cpp's last words matter most


@dataclass(frozen=True)
class Field:
    name: str
    part: Part
    type: type
    doc: str
    origin: Origin
    default: Any = None


def _lb(name: str, part: Part, typ: type, doc: str, default: Any = None) -> Field:
    return Field(name, part, typ, doc, "llama-bench", default)


def _fb(name: str, part: Part, typ: type, doc: str, default: Any = None) -> Field:
    return Field(name, part, typ, doc, "fitbench", default)


FIELDS: tuple[Field, ...] = (
    # llama-bench's fields, in its order and with its types (tools/llama-bench/llama-bench.cpp,
    # test::get_fields / get_field_type, llama.cpp 0c1e570 as vendored by llama-cpp-python 0.3.36)
    _lb(
        "build_commit",
        "build",
        str,
        "llama.cpp commit of the library that ran the test (short hash, as llama-bench writes it)",
        "",
    ),
    _lb(
        "build_number",
        "build",
        int,
        "llama.cpp build number (0: the shared library does not carry it)",
        0,
    ),
    _lb("cpu_info", "build", str, "CPU model", ""),
    _lb("gpu_info", "build", str, "GPU names, comma separated", ""),
    _lb("backends", "build", str, "ggml backends in the build (CPU, CUDA, ...)", ""),
    _lb("model_filename", "config", str, "path of the GGUF that was loaded", ""),
    _lb("model_type", "model", str, "llama.cpp's model description", ""),
    _lb("model_size", "model", int, "bytes of tensor data", 0),
    _lb("model_n_params", "model", int, "parameters", 0),
    _lb("n_batch", "config", int, "logical batch size", 2048),
    _lb("n_ubatch", "config", int, "physical batch size", 512),
    _lb("n_threads", "config", int, "CPU threads", 0),
    _lb("cpu_mask", "config", str, "CPU affinity mask", "0x0"),
    _lb("cpu_strict", "config", bool, "strict CPU placement", False),
    _lb("poll", "config", int, "polling level", 50),
    _lb("type_k", "config", str, "KV cache K type", "f16"),
    _lb("type_v", "config", str, "KV cache V type", "f16"),
    _lb(
        "n_gpu_layers",
        "effective",
        int,
        "layers offloaded to the GPU (llama.cpp counts from the last), as they took effect; "
        "the config's request (negative: all) when the model never loaded",
        0,
    ),
    _lb("n_cpu_moe", "effective", int, "expert tensors of the first N layers kept on the CPU", 0),
    _lb("split_mode", "config", str, "none, layer or row", "layer"),
    _lb("main_gpu", "config", int, "main GPU index", 0),
    _lb("no_kv_offload", "config", bool, "KV cache kept on the CPU", False),
    _lb(
        "flash_attn",
        "effective",
        int,
        "flash attention: 1 on, 0 off, -1 auto (llama.cpp decides; the request while the model "
        "never loaded)",
        -1,
    ),
    _lb("devices", "config", str, "devices used, '/' separated; auto: llama.cpp's choice", "auto"),
    _lb("tensor_split", "config", str, "proportions per GPU, '/' separated", "0.00"),
    _lb("tensor_buft_overrides", "effective", str, "tensor pattern=buffer overrides", "none"),
    _lb("load_mode", "config", str, "how weights are loaded: mmap, none (read), auto, ...", "mmap"),
    _lb("lazy_mode", "config", str, "lazy tensor loading: auto, on, off", "auto"),
    _lb("embeddings", "config", bool, "embeddings mode", False),
    _lb("no_op_offload", "config", int, "op offload disabled", 0),
    _lb("no_host", "config", bool, "no host (pinned) buffer types", False),
    _lb(
        "repack",
        "config",
        bool,
        "weights repacked into the CPU's extra buffer types (AMX, ...)",
        True,
    ),
    _lb("fit_target", "config", int, "llama.cpp's own fit: target MiB left free (0: off)", 0),
    _lb("fit_min_ctx", "config", int, "llama.cpp's own fit: smallest context (0: off)", 0),
    _lb("n_prompt", "test", int, "prompt tokens processed", 0),
    _lb("n_gen", "test", int, "tokens generated", 0),
    _lb("n_depth", "test", int, "tokens already in the KV cache before the test", 0),
    _lb("test_time", "measured", str, "ISO-8601 UTC time the test started", ""),
    _lb("avg_ns", "measured", int, "mean duration of one repetition", 0),
    _lb("stddev_ns", "measured", int, "standard deviation of the duration", 0),
    _lb("avg_ts", "measured", float, "mean tokens per second", 0.0),
    _lb("stddev_ts", "measured", float, "standard deviation of tokens per second", 0.0),
    _lb("samples_ns", "measured", list, "every repetition's duration", None),
    _lb("samples_ts", "measured", list, "every repetition's tokens per second", None),
    # FitBench's own
    _fb("schema_version", "run", int, "version of this record schema", SCHEMA_VERSION),
    _fb("run_id", "run", str, "one sweep; groups records", ""),
    _fb("config_id", "config", str, "one model load + placement within a run", ""),
    _fb("test", "test", str, "pp | tg | ttft | batch | depth", ""),
    _fb("model_id", "config", str, "catalog id, or the file stem for an ad-hoc file", ""),
    _fb("quant", "config", str, "quantization (Q4_K_M, ...)", ""),
    _fb("source", "config", str, "real | twin | scaled-twin: what file was measured", "real"),
    _fb("file_sha256", "config", str, "hash identifying the file (header hash for twins)", ""),
    _fb("n_layer_model", "effective", int, "layers of the full model", 0),
    _fb(
        "n_layer_file", "effective", int, "layers in the measured file (fewer for a scaled twin)", 0
    ),
    _fb("n_parallel", "test", int, "parallel sequences (B) for batch tests", 1),
    _fb("ttft_ms", "measured", float, "time to first token for n_prompt tokens", None),
    _fb("itl_ms_p50", "measured", float, "inter-token latency, median", None),
    _fb("itl_ms_p95", "measured", float, "inter-token latency, 95th percentile", None),
    _fb("itl_ms_p99", "measured", float, "inter-token latency, 99th percentile", None),
    _fb(
        "vram_peak_bytes",
        "measured",
        int,
        "peak VRAM in use on the GPUs during the test (NVML)",
        None,
    ),
    _fb("vram_peak_per_gpu", "measured", list, "peak VRAM per GPU index", None),
    _fb("vram_base_bytes", "measured", int, "VRAM in use before the model was loaded", None),
    _fb(
        "vram_base_per_gpu",
        "measured",
        list,
        "VRAM in use per GPU index before the model was loaded",
        None,
    ),
    _fb("ram_peak_bytes", "measured", int, "peak RSS of the worker during the test", None),
    _fb("load_s", "measured", float, "model load time", None),
    _fb(
        "buffer_bytes",
        "measured",
        dict,
        "llama.cpp's buffers from its log: {model|kv|compute: {CPU: n}}",
        None,
    ),
    _fb("hardware_fingerprint", "run", str, "hash of the machine's relevant hardware", ""),
    _fb("llama_cpp_python_version", "build", str, "llama-cpp-python version", ""),
    _fb("fitbench_version", "build", str, "FitBench version", ""),
    _fb(
        "disturbed",
        "measured",
        str,
        "why the repetitions disagree (run twice, disturbed both times); empty when they agree",
        "",
    ),
    _fb(
        "status",
        "outcome",
        str,
        "ok | oom | killed (SIGKILL without evidence of memory pressure) | crash | error | "
        "timeout | cancelled",
        "ok",
    ),
    _fb("error", "outcome", str, "why a test did not finish", ""),
)

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
LLAMA_BENCH_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.origin == "llama-bench")
_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}


def part_fields(*parts: Part) -> tuple[str, ...]:
    """Names of the fields of the given parts, in schema order."""
    return tuple(f.name for f in FIELDS if f.part in parts)


class ResultError(ValueError):
    """A result record or results file that cannot be used, with the reason."""


def new_record(**values: Any) -> dict[str, Any]:
    """A complete record: defaults for everything not given; unknown names are an error."""
    record = {
        f.name: (list(f.default) if isinstance(f.default, list) else f.default) for f in FIELDS
    }
    record.update(values)
    return validate(record)


# The counts and measures a record can hold: a file is input, and one absurd number (2^63-1
# prompt tokens) would otherwise become a loop in the predictor or a figure that never ends.
# Lowest, highest; wide enough for every real llama.cpp run (limits.py says where each is from).
_BOUNDS: dict[str, tuple[float, float]] = {
    "model_size": (0, L.MAX_MODEL_BYTES),
    "model_n_params": (0, L.MAX_PARAMS),
    "n_batch": (0, L.MAX_CONTEXT),
    "n_ubatch": (0, L.MAX_CONTEXT),
    "n_threads": (-1, L.INT32_MAX),
    "poll": (0, 100),
    "n_gpu_layers": (-L.INT32_MAX - 1, L.INT32_MAX),
    "n_cpu_moe": (-L.INT32_MAX - 1, L.INT32_MAX),
    "main_gpu": (-1, L.MAX_GPUS),
    "no_op_offload": (0, 1),
    "n_prompt": (0, L.MAX_CONTEXT),
    "n_gen": (0, L.MAX_CONTEXT),
    "n_depth": (0, L.MAX_CONTEXT),
    "avg_ns": (0, 1 << 62),
    "stddev_ns": (0, 1 << 62),
    "avg_ts": (0, 1e12),
    "stddev_ts": (0, 1e12),
    "schema_version": (0, 1 << 16),
    "n_layer_model": (0, L.MAX_LAYERS),
    "n_layer_file": (0, L.MAX_LAYERS),
    "n_parallel": (1, L.MAX_SEQUENCES),
    "ttft_ms": (0, 1e9),
    "itl_ms_p50": (0, 1e9),
    "itl_ms_p95": (0, 1e9),
    "itl_ms_p99": (0, 1e9),
    "vram_peak_bytes": (0, L.MAX_MEMORY_BYTES),
    "vram_base_bytes": (0, L.MAX_MEMORY_BYTES),
    "ram_peak_bytes": (0, L.MAX_MEMORY_BYTES),
    "load_s": (0, 1e7),
}
# list fields: (most items, lowest item, highest item)
_LIST_BOUNDS: dict[str, tuple[int, float, float]] = {
    "samples_ns": (L.MAX_REPETITIONS, 0, 1 << 62),
    "samples_ts": (L.MAX_REPETITIONS, 0, 1e12),
    "vram_peak_per_gpu": (L.MAX_GPUS, 0, L.MAX_MEMORY_BYTES),
    "vram_base_per_gpu": (L.MAX_GPUS, 0, L.MAX_MEMORY_BYTES),
}
_BUFFER_KINDS_MAX = 64  # buffer_bytes: kinds (model, kv, compute) x devices, each at most this


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _span(low: float, high: float) -> str:
    return f"{low:g}..{high:g}" if isinstance(high, float) else f"{low}..{high}"


def _check_bounds(name: str, value: Any) -> None:
    """A value of the right type that no real run can produce is an error naming the field."""
    if value is None:
        return
    if name in _BOUNDS:
        low, high = _BOUNDS[name]
        if not low <= value <= high:
            raise ResultError(f"field {name!r} is {value}, outside {_span(low, high)}")
    elif name in _LIST_BOUNDS:
        most, low, high = _LIST_BOUNDS[name]
        if len(value) > most:
            raise ResultError(f"field {name!r} has {len(value)} items (at most {most})")
        for item in value:
            if not (_is_number(item) and low <= item <= high):
                raise ResultError(f"field {name!r} has an item {item!r} outside {_span(low, high)}")
    elif name == "buffer_bytes":
        if len(value) > _BUFFER_KINDS_MAX:
            raise ResultError(
                f"field {name!r} has {len(value)} entries (at most {_BUFFER_KINDS_MAX})"
            )
        for inner in value.values():
            if not isinstance(inner, dict) or len(inner) > _BUFFER_KINDS_MAX:
                raise ResultError(
                    f"field {name!r} must map kinds to at most {_BUFFER_KINDS_MAX} devices"
                )
            for n in inner.values():
                if not (_is_number(n) and 0 <= n <= L.MAX_MEMORY_BYTES):
                    raise ResultError(
                        f"field {name!r} has a buffer size {n!r} outside 0..{L.MAX_MEMORY_BYTES}"
                    )


def _check_type(field: Field, value: Any) -> Any:
    if value is None:
        return None
    if field.type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if field.type is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, field.type) or (field.type is int and isinstance(value, bool)):
        raise ResultError(
            f"field {field.name!r} must be {field.type.__name__}, got {type(value).__name__}"
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise ResultError(f"field {field.name!r} is not a finite number: {value}")
    return value


def _upgrade(record: Mapping[str, Any]) -> dict[str, Any]:
    """Older FitBench spellings in today's schema: `use_mmap` (llama-bench now writes
    load_mode) and flash_attn as a bool or None (llama-bench writes -1/0/1)."""
    out = dict(record)
    if "use_mmap" in out:
        mmap = out.pop("use_mmap")
        if mmap is not None and "load_mode" not in out:
            out["load_mode"] = "mmap" if mmap else "none"
    fa = out.get("flash_attn", -1)
    if fa is None:
        out["flash_attn"] = -1
    elif isinstance(fa, bool):
        out["flash_attn"] = int(fa)
    return out


def validate(record: Mapping[str, Any]) -> dict[str, Any]:
    record = _upgrade(record)
    unknown = set(record) - set(_BY_NAME)
    if unknown:
        raise ResultError(f"unknown result fields: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for field in FIELDS:
        out[field.name] = _check_type(field, record.get(field.name, field.default))
        _check_bounds(field.name, out[field.name])
    if out["source"] not in SOURCES:
        raise ResultError(f"source must be one of {SOURCES}, got {out['source']!r}")
    if out["status"] not in STATUSES:
        raise ResultError(f"status must be one of {STATUSES}, got {out['status']!r}")
    return out


class RecordConfig(Protocol):
    """What the builder reads from a benchmark config (bench.config.BenchConfig is one)."""

    @property
    def model_path(self) -> str: ...
    @property
    def model_id(self) -> str: ...
    @property
    def quant(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def file_sha256(self) -> str: ...
    @property
    def config_id(self) -> str: ...
    @property
    def n_layer_model(self) -> int: ...
    @property
    def n_layer_file(self) -> int: ...
    @property
    def n_gpu_layers(self) -> int: ...
    @property
    def n_cpu_moe(self) -> int: ...
    @property
    def split_mode(self) -> str: ...
    @property
    def main_gpu(self) -> int: ...
    @property
    def tensor_split(self) -> Sequence[float]: ...
    @property
    def use_mmap(self) -> bool: ...
    @property
    def repack(self) -> bool: ...
    @property
    def n_threads(self) -> int: ...
    @property
    def n_batch(self) -> int: ...
    @property
    def n_ubatch(self) -> int: ...
    @property
    def type_k(self) -> str: ...
    @property
    def type_v(self) -> str: ...
    @property
    def flash_attn(self) -> bool | None: ...
    @property
    def no_kv_offload(self) -> bool: ...
    @property
    def poll(self) -> int: ...


class RecordTest(Protocol):
    """What the builder reads from one test of a config (bench.config.BenchTest is one)."""

    @property
    def n_prompt(self) -> int: ...
    @property
    def n_gen(self) -> int: ...
    @property
    def n_depth(self) -> int: ...
    @property
    def n_parallel(self) -> int: ...
    @property
    def record_test(self) -> str: ...


class Known(TypedDict, total=False):
    """The build, model and effective parts as the worker learnt them; it sends them to the
    runner in its progress events, so a record of a test it did not finish carries the same."""

    build_commit: str
    build_number: int
    cpu_info: str
    gpu_info: str
    backends: str
    llama_cpp_python_version: str
    model_type: str
    model_size: int
    model_n_params: int
    n_gpu_layers: int
    n_cpu_moe: int
    tensor_buft_overrides: str
    flash_attn: bool | None
    n_layer_file: int  # layers of the loaded file; the config's count wins when it has one


class Measured(TypedDict, total=False):
    """The measured part: what a test (or the sampler around it) took and used."""

    test_time: str
    avg_ns: int
    stddev_ns: int
    avg_ts: float
    stddev_ts: float
    samples_ns: list[int]
    samples_ts: list[float]
    ttft_ms: float | None
    itl_ms_p50: float | None
    itl_ms_p95: float | None
    itl_ms_p99: float | None
    vram_peak_bytes: int | None
    vram_peak_per_gpu: list[int] | None
    vram_base_bytes: int | None
    vram_base_per_gpu: list[int] | None
    ram_peak_bytes: int | None
    load_s: float | None
    buffer_bytes: dict[str, dict[str, int]] | None


def from_config(config: RecordConfig) -> dict[str, object]:
    """The config part of a record: a function of the config alone, on every path."""
    return {
        "model_filename": config.model_path,
        "n_batch": config.n_batch,
        "n_ubatch": config.n_ubatch,
        "n_threads": config.n_threads,
        "poll": config.poll,
        "type_k": config.type_k,
        "type_v": config.type_v,
        "split_mode": config.split_mode,
        "main_gpu": config.main_gpu,
        "no_kv_offload": config.no_kv_offload,
        "tensor_split": "/".join(f"{x:.2f}" for x in config.tensor_split) or "0.00",
        # FitBench asks for mmap on or off; llama.cpp's "auto" is never requested
        "load_mode": "mmap" if config.use_mmap else "none",
        "repack": config.repack,
        "config_id": config.config_id,
        "model_id": config.model_id or Path(config.model_path).stem,
        "quant": config.quant,
        "source": config.source,
        "file_sha256": config.file_sha256,
    }


def from_test(test: RecordTest) -> dict[str, object]:
    return {
        "n_prompt": test.n_prompt,
        "n_gen": test.n_gen,
        "n_depth": test.n_depth,
        "n_parallel": test.n_parallel,
        "test": test.record_test,
    }


def utc_now() -> str:
    """A record's test_time: ISO-8601 UTC to the second, as llama-bench writes it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_record(
    config: RecordConfig,
    test: RecordTest,
    known: Known | None = None,
    measured: Measured | None = None,
    *,
    status: str = "ok",
    error: str = "",
) -> dict[str, Any]:
    """The record of one test: a measured one (the worker) or one that did not finish (the
    worker or the runner); both give the same keys and the same config and test values.

    `known`: what the worker reported of the build, the loaded model and the effective placement;
    what it did not learn falls back to the config's request. `measured`: timings and memory;
    test_time is now unless given.
    """
    known = {**llama_build(), **(known or {})}
    n_layer_loaded = known.get("n_layer_file", 0)
    values: dict[str, object] = {
        **from_config(config),
        **from_test(test),
        # the effective part, as requested, for a model that never loaded
        "n_gpu_layers": config.n_gpu_layers,
        "n_cpu_moe": max(config.n_cpu_moe, 0),
        "flash_attn": config.flash_attn,
        **known,
        "n_layer_file": config.n_layer_file or n_layer_loaded,
        "n_layer_model": config.n_layer_model or config.n_layer_file or n_layer_loaded,
        "fitbench_version": __version__,
        "test_time": utc_now(),
        **(measured or {}),
        "status": status,
        "error": error[-ERROR_MAX_CHARS:],
    }
    return new_record(**values)


def to_json(record: Mapping[str, Any]) -> str:
    return json.dumps(validate(record), separators=(",", ":"), sort_keys=False)


def _line_bytes(record: Mapping[str, Any]) -> bytes:
    # to_json escapes everything outside ASCII, so a path with undecodable bytes (a surrogate
    # from os.fsdecode) travels as \udcXX and the line is always valid UTF-8
    return (to_json(record) + "\n").encode("ascii")


def _drop_torn_tail(fd: int, path: Path) -> None:
    """A file that does not end in a newline ends in half a record (a write that failed
    before FitBench wrote lines whole): appending after it would glue the next record to it
    and poison the line for every reader, so the torn bytes go, with a warning."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return
    start = max(0, size - (1 << 20))
    tail = os.pread(fd, size - start, start)
    cut = tail.rfind(b"\n")
    keep = start + cut + 1 if cut >= 0 else (0 if start == 0 else size)
    if keep == size:
        return  # a last line longer than 1 MiB: not ours to judge
    torn = tail[keep - start :]
    try:
        whole = json.loads(torn)
    except ValueError:
        whole = None
    if isinstance(whole, dict):  # a complete record missing its newline (a hand edit)
        os.write(fd, b"\n")
        return
    os.ftruncate(fd, keep)
    log.warning(
        "%s: dropped a torn last line (%d bytes of an interrupted write) before appending",
        path,
        size - keep,
    )


def _append_whole(fd: int, data: bytes) -> None:
    """One O_APPEND write per line: whole or absent. A short or failed write (ENOSPC, EFBIG,
    EDQUOT) is cut back to where the line began, so no half line stays behind."""
    written = 0
    try:
        while written < len(data):
            n = os.write(fd, data[written:])
            if n <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written += n
    except OSError:
        if written:
            end = os.lseek(fd, 0, os.SEEK_CUR)  # O_APPEND: the end of this line's bytes
            # only when nobody appended after us; otherwise the torn line is left for readers
            # (and the next writer) to report
            if os.fstat(fd).st_size == end:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, end - written)
        raise


def write_jsonl(records: Iterable[Mapping[str, Any]], path: Path) -> None:
    """Append records, each as one line written whole or not at all (see _append_whole);
    processes appending to the same file never interleave within a line."""
    lines = [_line_bytes(record) for record in records]  # validate all before writing any
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o644)  # read too: the torn-tail check looks at the last bytes
    try:
        _drop_torn_tail(fd, path)
        for line in lines:
            _append_whole(fd, line)
    finally:
        os.close(fd)


SQLITE_MAGIC = b"SQLite format 3\x00"
LLAMA_BENCH_TABLE = "llama_bench"  # llama-bench -o sql | sqlite3 db.sqlite; compare-llama-bench.py
LLAMA_BENCH_RUN_PREFIX = "llama-bench-"


def is_llama_bench(raw: Mapping[str, Any]) -> bool:
    """A record written by llama-bench (FitBench always writes schema_version and test)."""
    return "schema_version" not in raw and "test" not in raw and "avg_ts" in raw


def llama_bench_test(n_prompt: int, n_gen: int, n_depth: int) -> str:
    """FitBench's test name for a llama-bench test: pp<N>, tg<N> (at depth: "depth"); a
    combined pp+tg test (-pg) has none of FitBench's names and gets ""."""
    if n_prompt and n_gen:
        return ""
    kind = "pp" if n_prompt else "tg"
    return "depth" if n_depth else kind


_QUANT_IN_NAME = re.compile(r"(?<![A-Za-z0-9])(I?Q\d_[A-Z0-9]+(?:_[A-Z0-9]+)?|BF16|F16|F32)", re.I)
_SIZE_WORDS = {"Small": "S", "Medium": "M", "Large": "L", "Extra Small": "XS", "Tiny": "XXS"}


def llama_bench_quant(model_filename: str, model_type: str) -> str:
    """The quantization from a file name (x.Q4_K_M.gguf), else from llama.cpp's description
    ("llama 7B Q4_K - Medium" -> Q4_K_M); "" when neither says."""
    m = _QUANT_IN_NAME.search(Path(model_filename).name)
    if m:
        return m.group(1).upper()
    m = re.search(r"\b(I?Q\d_[A-Z0-9]+|BF16|F16|F32)(?: - (\w+(?: \w+)?))?$", model_type)
    if not m:
        return ""
    size = _SIZE_WORDS.get(m.group(2) or "", "")
    return f"{m.group(1)}_{size}" if size else m.group(1)


def from_llama_bench(raw: Mapping[str, Any], run_id: str = "") -> dict[str, Any]:
    """A llama-bench record (a JSONL line, a JSON array item or a row of its SQL table) as a
    FitBench record: its fields kept, its model named from the file name (else model_type)."""
    values: dict[str, Any] = {}
    for name, value in raw.items():
        field = _BY_NAME.get(name)
        if field is None:
            continue
        if field.type is bool and isinstance(value, int) and not isinstance(value, bool):
            value = bool(value)  # SQL rows hold booleans as 0/1
        elif field.type is str and value is not None and not isinstance(value, str):
            value = str(value)
        values[name] = value
    n_prompt, n_gen = int(values.get("n_prompt") or 0), int(values.get("n_gen") or 0)
    n_depth = int(values.get("n_depth") or 0)
    filename = str(values.get("model_filename") or "")
    values["model_id"] = Path(filename).stem or str(values.get("model_type") or "") or "llama-bench"
    values["quant"] = llama_bench_quant(filename, str(values.get("model_type") or ""))
    values["test"] = llama_bench_test(n_prompt, n_gen, n_depth)
    values["run_id"] = run_id
    values["config_id"] = values.get("config_id") or "llama-bench"
    return validate(values)


def _file_run_id(data: bytes) -> str:
    import hashlib

    return LLAMA_BENCH_RUN_PREFIX + hashlib.sha256(data).hexdigest()[:12]


def _file_run_id_of(path: Path) -> str:
    """_file_run_id of the file's bytes, read in blocks (results files can be large)."""
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return LLAMA_BENCH_RUN_PREFIX + digest.hexdigest()[:12]


def _one(raw: Any, where: str, run_id: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ResultError(f"{where}: expected a JSON object")
    try:
        if is_llama_bench(raw):
            return from_llama_bench(raw, run_id)
        # tolerate fields a newer FitBench or llama-bench added: keep what we know
        return validate({k: v for k, v in raw.items() if k in _BY_NAME or k == "use_mmap"})
    except ResultError as exc:
        raise ResultError(f"{where}: {exc}") from None


def _read_sqlite(path: Path) -> list[dict[str, Any]]:
    """FitBench's results database (every run), or llama-bench's SQL output in a database."""
    import sqlite3

    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.DatabaseError as exc:
        raise ResultError(f"{path}: cannot open the SQLite file ({exc})") from None
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "records" in tables and "runs" in tables:  # FitBench's own
            rows = db.execute("SELECT record FROM records ORDER BY id").fetchall()
            return [_one(json.loads(r[0]), f"{path}: record {i}", "") for i, r in enumerate(rows)]
        if LLAMA_BENCH_TABLE in tables:
            cur = db.execute(f"SELECT * FROM {LLAMA_BENCH_TABLE}")
            names = [d[0] for d in cur.description]
            run_id = _file_run_id_of(path)
            return [
                from_llama_bench(dict(zip(names, row, strict=True)), run_id)
                for row in cur.fetchall()
            ]
        raise ResultError(
            f"{path}: no results table (expected FitBench's `records` or llama-bench's "
            f"`{LLAMA_BENCH_TABLE}`; found {', '.join(sorted(tables)) or 'none'})"
        )
    except sqlite3.DatabaseError as exc:
        raise ResultError(f"{path}: cannot read the SQLite file ({exc})") from None
    finally:
        db.close()


def _file_start(path: Path) -> bytes:
    with path.open("rb") as fh:
        head = fh.read(4096)
    return head


def iter_results(path: Path, notes: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Records of a results file, by its content: FitBench or llama-bench JSONL (streamed: any
    size), a JSON array (llama-bench -o json), or SQLite (FitBench's database, llama-bench's
    -o sql loaded into one). llama-bench records get a run_id naming the file's content
    (llama-bench-<sha256[:12]>)."""
    if not path.is_file():
        raise ResultError(f"results file not found: {path}")
    head = _file_start(path)
    if head.startswith(SQLITE_MAGIC):
        yield from _read_sqlite(path)
    elif head.lstrip().startswith(b"["):
        data = path.read_bytes()  # llama-bench's JSON arrays hold one run: small
        try:
            items = json.loads(data.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            what = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
            raise ResultError(f"{path}: not a JSON array ({what})") from None
        run_id = _file_run_id(data)
        for i, item in enumerate(items):
            yield _one(item, f"{path}: item {i + 1}", run_id)
    else:
        yield from iter_jsonl(path, notes)


def read_results(path: Path, notes: list[str] | None = None) -> list[dict[str, Any]]:
    """Every record of a results file (any format iter_results reads); at least one."""
    records = list(iter_results(path, notes))
    if not records:
        raise ResultError(f"{path}: no result records in the file")
    return records


def iter_jsonl(path: Path, notes: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Records of a JSONL results file (FitBench's or llama-bench's); a corrupt line is an error
    naming file and line, except a torn last line (no newline: a write that was interrupted),
    which is skipped and reported in `notes` and the log."""
    if not path.is_file():
        raise ResultError(f"results file not found: {path}")
    run_id = ""  # llama-bench lines only: hashing a large FitBench file for nothing is a 2nd read
    with path.open("rb") as fh:
        lineno = 0
        for raw_line in fh:
            lineno += 1
            if not raw_line.strip():
                continue
            try:
                raw = json.loads(raw_line)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                if not raw_line.endswith(b"\n"):
                    note = (
                        f"{path}:{lineno}: skipped a torn last line ({len(raw_line)} bytes of "
                        "an interrupted write)"
                    )
                    log.warning("%s", note)
                    if notes is not None:
                        notes.append(note)
                    return
                what = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
                raise ResultError(f"{path}:{lineno}: not a JSON line ({what})") from None
            if not run_id and isinstance(raw, dict) and is_llama_bench(raw):
                run_id = _file_run_id_of(path)
            yield _one(raw, f"{path}:{lineno}", run_id)


def read_jsonl(path: Path, notes: list[str] | None = None) -> list[dict[str, Any]]:
    """Records of a results file; any format read_results reads (the name is historical)."""
    return read_results(path, notes)
