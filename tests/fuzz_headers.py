"""Tiny GGUF files with hostile headers, and the pipeline every one must survive.

`base_kvs()` / `base_tensors()` describe a 2-block llama model small enough that a whole file
(header and tensor data) is about 4 KB; `build()` writes one with any metadata or tensors changed.
`pipeline(path)` runs what `fitbench plan` and `fitbench twin` do with a file (read the header,
plan every placement with predicted speeds, lay out the twin's header) and returns the outcome:
"ok", or "error: <message>" for the errors the commands report in one line. Anything else (an
exception of another kind, a MemoryError, running past the time bound) is raised: a traceback,
a crash or a hang. tests/data/fuzz/ holds a committed corpus of such files (make_corpus()).
"""

from __future__ import annotations

import signal
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from fitbench.core import gguf
from fitbench.core.gguf.manifest import TensorInfo
from fitbench.core.gguf.reader import KV
from fitbench.core.gguf.writer import align, serialize_header
from fitbench.core.model.catalog import CatalogError
from fitbench.core.predict import plan_report
from fitbench.core.twin.writer import TwinError, twin_header

V = GGUFValueType
Q = GGMLQuantizationType
CORPUS = Path(__file__).parent / "data" / "fuzz"
TIME_BOUND_S = 20.0  # per file, on a loaded 2-core machine; a real plan takes well under 1 s

# the exceptions the commands print as one line (plan: ValueError family; twin: TwinError too)
CLEAN_ERRORS: tuple[type[BaseException], ...] = (ValueError, TwinError, CatalogError)


def base_kvs() -> list[KV]:
    u32 = V.UINT32
    return [
        KV("general.architecture", V.STRING, "llama"),
        KV("general.name", V.STRING, "fuzz"),
        KV("general.file_type", u32, 7),
        KV("llama.block_count", u32, 2),
        KV("llama.context_length", u32, 256),
        KV("llama.embedding_length", u32, 32),
        KV("llama.feed_forward_length", u32, 64),
        KV("llama.attention.head_count", u32, 4),
        KV("llama.attention.head_count_kv", u32, 2),
        KV("llama.vocab_size", u32, 32),
        KV("llama.rope.dimension_count", u32, 8),
        KV("llama.attention.layer_norm_rms_epsilon", V.FLOAT32, 1e-5),
    ]


def base_tensors() -> list[tuple[str, tuple[int, ...], int]]:
    """Enough tensors for a plan (embedding, a norm and a matrix per block; the output tied to
    the embedding), the smallest shapes Q8_0 allows: the whole file is about 4 KB."""
    q8, f32 = int(Q.Q8_0), int(Q.F32)
    tensors = [("token_embd.weight", (32, 32), q8)]
    for i in range(2):
        tensors += [
            (f"blk.{i}.attn_norm.weight", (32,), f32),
            (f"blk.{i}.attn_q.weight", (32, 32), q8),
        ]
    tensors += [("output_norm.weight", (32,), f32)]
    return tensors


def tensor_infos(specs: list[tuple[str, tuple[int, ...], int]]) -> tuple[TensorInfo, ...]:
    out, offset = [], 0
    for name, shape, ggml_type in specs:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        n = 1
        for d in shape:
            n *= d
        n_bytes = n // block * size
        out.append(TensorInfo(name, shape, ggml_type, offset, n_bytes))
        offset = align(offset + n_bytes, 32)
    return tuple(out)


def build(
    kvs: list[KV] | None = None, tensors: list[tuple[str, tuple[int, ...], int]] | None = None
) -> bytes:
    """A whole GGUF file: the header and zeroed tensor data (zero is valid for every type)."""
    infos = tensor_infos(base_tensors() if tensors is None else tensors)
    header = serialize_header(base_kvs() if kvs is None else kvs, infos)
    data = max((t.offset + t.n_bytes for t in infos), default=0)
    return header + bytes(data)


def with_kv(key: str, vtype: GGUFValueType, value: Any, item: GGUFValueType | None = None) -> bytes:
    """The base file with one key set (added if absent) to a value of any GGUF type."""
    kvs = [kv for kv in base_kvs() if kv.key != key] + [KV(key, vtype, value, item)]
    return build(kvs)


def patch_u64(data: bytes, offset: int, value: int) -> bytes:
    """The file with the little-endian u64 at `offset` replaced (tensor/KV counts, lengths)."""
    out = bytearray(data)
    struct.pack_into("<Q", out, offset, value)
    return bytes(out)


def int_width(kv: KV) -> int:
    """Bytes of an integer metadata value (UINT8..INT64)."""
    return {"8": 1, "16": 2, "32": 4, "64": 8}[kv.vtype.name.removeprefix("U")[3:]]


class Hang(Exception):
    """The pipeline ran past the time bound."""


@contextmanager
def time_bound(seconds: float = TIME_BOUND_S) -> Iterator[None]:
    def fire(signum: int, frame: Any) -> None:
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _what_if() -> plan_report.Machine:
    gpus = [24_000_000_000]
    hardware = {"gpus": [{"name": "what-if GPU", "vram_total_bytes": gpus[0]}], "cpu": {}}
    return plan_report.Machine(gpus, 64_000_000_000, "what-if", hardware)


def pipeline(path: Path) -> str:
    """What `plan` and `twin` do with the file, as "ok" or "error: ..." (see the module doc)."""
    with time_bound():
        try:
            manifest = gguf.read_header(path)
            resolved = plan_report.Resolved(path.name, "fuzz", manifest, "file", 0)
            plan_report.plan_report(resolved, _what_if(), plan_report.PlanSettings())
            twin_header(manifest)
        except CLEAN_ERRORS as exc:
            message = str(exc)
            if not message.strip():
                raise AssertionError(f"{type(exc).__name__} with an empty message") from exc
            return f"error: {message}"
    return "ok"


def corpus_cases() -> dict[str, bytes]:
    """The committed corpus: each a header that once hung, crashed or allocated without bound,
    or a near miss of one."""
    base = build()
    n_kv_at, n_tensors_at = 16, 8  # GGUF v3: magic, version u32, n_tensors u64, n_kv u64
    q81 = [(n, s, int(Q.Q8_1) if t == int(Q.Q8_0) else t) for n, s, t in base_tensors()]
    q8k = [("token_embd.weight", (256, 4), int(Q.Q8_K)), *base_tensors()[1:]]
    return {
        "block-count-2e31.gguf": with_kv("llama.block_count", V.UINT32, 2**31),
        "block-count-u64-max.gguf": with_kv("llama.block_count", V.UINT64, 2**64 - 1),
        "block-count-string.gguf": with_kv("llama.block_count", V.STRING, "many"),
        "block-count-negative.gguf": with_kv("llama.block_count", V.INT32, -5),
        "expert-count-2e31.gguf": with_kv("llama.expert_count", V.UINT32, 2**31),
        "vocab-size-2e40.gguf": with_kv("llama.vocab_size", V.UINT64, 2**40),
        "embedding-2e31.gguf": with_kv("llama.embedding_length", V.UINT32, 2**31),
        "head-count-kv-array-huge.gguf": with_kv(
            "llama.attention.head_count_kv", V.ARRAY, [2, 2**32 - 1], V.UINT32
        ),
        "head-count-zero.gguf": with_kv("llama.attention.head_count", V.UINT32, 0),
        "context-2e62.gguf": with_kv("llama.context_length", V.UINT64, 2**62),
        "alignment-zero.gguf": with_kv("general.alignment", V.UINT32, 0),
        "tensor-count-huge.gguf": patch_u64(base, n_tensors_at, 2**40),
        "kv-count-huge.gguf": patch_u64(base, n_kv_at, 2**40),
        "q8_1-tensors.gguf": build(tensors=q81),
        "q8_k-tensor.gguf": build(tensors=q8k),
        "truncated.gguf": base[: len(base) // 2],
        "valid.gguf": base,
    }


def make_corpus(folder: Path = CORPUS) -> None:
    """(Re)write the committed corpus: `python -c 'import fuzz_headers as f; f.make_corpus()'`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in corpus_cases().items():
        (folder / name).write_bytes(data)
