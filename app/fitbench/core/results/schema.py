"""The result record, defined once.

Every finished test is one flat record (a dict) whose fields are listed here as data. The first
group mirrors llama-bench's JSONL output so llama.cpp tooling can read FitBench files; the second
group is FitBench's own. The worker, the store, the predictor, the advice and the report all speak
this schema and nothing else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

SCHEMA_VERSION = 1

Origin = Literal["llama-bench", "fitbench"]
SOURCES = ("real", "twin", "scaled-twin")
STATUSES = ("ok", "oom", "crash", "error", "timeout", "cancelled")
TESTS = ("pp", "tg", "ttft", "batch", "depth")


@dataclass(frozen=True)
class Field:
    name: str
    type: type
    doc: str
    origin: Origin
    default: Any = None


def _lb(name: str, typ: type, doc: str, default: Any = None) -> Field:
    return Field(name, typ, doc, "llama-bench", default)


def _fb(name: str, typ: type, doc: str, default: Any = None) -> Field:
    return Field(name, typ, doc, "fitbench", default)


FIELDS: tuple[Field, ...] = (
    # llama-bench's JSONL fields (tools/llama-bench/llama-bench.cpp, test::get_fields)
    _lb("build_commit", str, "llama.cpp commit of the library that ran the test", ""),
    _lb("build_number", int, "llama.cpp build number", 0),
    _lb("cpu_info", str, "CPU model", ""),
    _lb("gpu_info", str, "GPU names, comma separated", ""),
    _lb("backends", str, "ggml backends in the build (CPU, CUDA, ...)", ""),
    _lb("model_filename", str, "path of the GGUF that was loaded", ""),
    _lb("model_type", str, "llama.cpp's model description", ""),
    _lb("model_size", int, "bytes of tensor data", 0),
    _lb("model_n_params", int, "parameters", 0),
    _lb("n_batch", int, "logical batch size", 2048),
    _lb("n_ubatch", int, "physical batch size", 512),
    _lb("n_threads", int, "CPU threads", 0),
    _lb("cpu_mask", str, "CPU affinity mask", "0x0"),
    _lb("cpu_strict", bool, "strict CPU placement", False),
    _lb("poll", int, "polling level", 50),
    _lb("type_k", str, "KV cache K type", "f16"),
    _lb("type_v", str, "KV cache V type", "f16"),
    _lb("n_gpu_layers", int, "layers offloaded to the GPU (llama.cpp counts from the last)", 0),
    _lb("n_cpu_moe", int, "expert tensors of the first N layers kept on the CPU", 0),
    _lb("split_mode", str, "none, layer or row", "layer"),
    _lb("main_gpu", int, "main GPU index", 0),
    _lb("no_kv_offload", bool, "KV cache kept on the CPU", False),
    _lb("flash_attn", bool, "flash attention", False),
    _lb("tensor_split", str, "proportions per GPU, '/' separated", "0.00"),
    _lb("tensor_buft_overrides", str, "tensor pattern=buffer overrides", "none"),
    _lb("use_mmap", bool, "weights memory-mapped", True),
    _lb("embeddings", bool, "embeddings mode", False),
    _lb("no_op_offload", int, "op offload disabled", 0),
    _lb("repack", bool, "weights repacked into the CPU's extra buffer types (AMX, ...)", True),
    _lb("n_prompt", int, "prompt tokens processed", 0),
    _lb("n_gen", int, "tokens generated", 0),
    _lb("n_depth", int, "tokens already in the KV cache before the test", 0),
    _lb("test_time", str, "ISO-8601 UTC time the test started", ""),
    _lb("avg_ns", int, "mean duration of one repetition", 0),
    _lb("stddev_ns", int, "standard deviation of the duration", 0),
    _lb("avg_ts", float, "mean tokens per second", 0.0),
    _lb("stddev_ts", float, "standard deviation of tokens per second", 0.0),
    _lb("samples_ns", list, "every repetition's duration", None),
    _lb("samples_ts", list, "every repetition's tokens per second", None),
    # FitBench's own
    _fb("schema_version", int, "version of this record schema", SCHEMA_VERSION),
    _fb("run_id", str, "one sweep; groups records", ""),
    _fb("config_id", str, "one model load + placement within a run", ""),
    _fb("test", str, "pp | tg | ttft | batch | depth", ""),
    _fb("model_id", str, "catalog id, or the file stem for an ad-hoc file", ""),
    _fb("quant", str, "quantization (Q4_K_M, ...)", ""),
    _fb("source", str, "real | twin | scaled-twin: what file was measured", "real"),
    _fb("file_sha256", str, "hash identifying the file (header hash for twins)", ""),
    _fb("n_layer_model", int, "layers of the full model", 0),
    _fb("n_layer_file", int, "layers in the measured file (fewer for a scaled twin)", 0),
    _fb("n_parallel", int, "parallel sequences (B) for batch tests", 1),
    _fb("ttft_ms", float, "time to first token for n_prompt tokens", None),
    _fb("itl_ms_p50", float, "inter-token latency, median", None),
    _fb("itl_ms_p95", float, "inter-token latency, 95th percentile", None),
    _fb("itl_ms_p99", float, "inter-token latency, 99th percentile", None),
    _fb("vram_peak_bytes", int, "peak VRAM in use on the GPUs during the test (NVML)", None),
    _fb("vram_peak_per_gpu", list, "peak VRAM per GPU index", None),
    _fb("vram_base_bytes", int, "VRAM in use before the model was loaded", None),
    _fb("vram_base_per_gpu", list, "VRAM in use per GPU index before the model was loaded", None),
    _fb("ram_peak_bytes", int, "peak RSS of the worker during the test", None),
    _fb("load_s", float, "model load time", None),
    _fb(
        "buffer_bytes", dict, "llama.cpp's buffers from its log: {model|kv|compute: {CPU: n}}", None
    ),
    _fb("hardware_fingerprint", str, "hash of the machine's relevant hardware", ""),
    _fb("llama_cpp_python_version", str, "llama-cpp-python version", ""),
    _fb("fitbench_version", str, "FitBench version", ""),
    _fb("status", str, "ok | oom | crash | error | timeout | cancelled", "ok"),
    _fb("error", str, "why a test did not finish", ""),
)

FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
LLAMA_BENCH_FIELDS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.origin == "llama-bench")
_BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}


class ResultError(ValueError):
    """A result record or results file that cannot be used, with the reason."""


def new_record(**values: Any) -> dict[str, Any]:
    """A complete record: defaults for everything not given; unknown names are an error."""
    record = {
        f.name: (list(f.default) if isinstance(f.default, list) else f.default) for f in FIELDS
    }
    record.update(values)
    return validate(record)


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


def validate(record: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(record) - set(_BY_NAME)
    if unknown:
        raise ResultError(f"unknown result fields: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for field in FIELDS:
        out[field.name] = _check_type(field, record.get(field.name, field.default))
    if out["source"] not in SOURCES:
        raise ResultError(f"source must be one of {SOURCES}, got {out['source']!r}")
    if out["status"] not in STATUSES:
        raise ResultError(f"status must be one of {STATUSES}, got {out['status']!r}")
    return out


def to_json(record: Mapping[str, Any]) -> str:
    return json.dumps(validate(record), separators=(",", ":"), sort_keys=False)


def write_jsonl(records: Iterable[Mapping[str, Any]], path: Path) -> None:
    with path.open("a", encoding="utf-8") as fh:
        for record in records:
            fh.write(to_json(record) + "\n")
            fh.flush()


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a JSONL results file; a corrupt line is an error naming file and line."""
    if not path.is_file():
        raise ResultError(f"results file not found: {path}")
    with path.open("r", encoding="utf-8", errors="strict") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ResultError(f"{path}:{lineno}: not a JSON line ({exc.msg})") from None
            if not isinstance(raw, dict):
                raise ResultError(f"{path}:{lineno}: expected a JSON object")
            try:
                # tolerate fields a newer FitBench or llama-bench added: keep what we know
                known = {k: v for k, v in raw.items() if k in _BY_NAME}
                yield validate(known)
            except ResultError as exc:
                raise ResultError(f"{path}:{lineno}: {exc}") from None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = list(iter_jsonl(path))
    if not records:
        raise ResultError(f"{path}: no result records in the file")
    return records
