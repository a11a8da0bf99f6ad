"""Synthetic tensor data for twins: valid for each type, with a trained model's magnitudes.

Quantized blocks come from ggml's own quantizer (the libggml-base that llama-cpp-python ships)
run on synthetic weights shaped like a trained model's: heavy-tailed values with a per-row spread
around std 0.02. So block scales, sub-block scales and mins are distributed like a real
quantization's, for every type ggml can quantize, and can never be NaN/Inf. A pool of such
blocks per (type, role) is generated once and streamed repeatedly from different start blocks.

The spread of block scales within a matrix follows its role (DATA_RULE 2, issue 24): on CPUs
the values of the scales moved generation speed. A twin whose layers carried, tensor by tensor,
the real gemma-3-270m file's own set of scale values (in the twin's order) ran within 1% of the
real file at 2 threads where the twin of one spread for every matrix ran ~5% faster; matching
only the magnitude, the pooled shape or each tensor's median did not
(docs/dev/2026-12-06c-twin-fidelity/). Real files spread their scales by role alike: attn_v and
ffn_down narrow, attn_q and attn_k wide (two architectures, benchmarks/twin_scales.py).
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import os
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

T = GGMLQuantizationType
# weights per pool: ~2.4 MB of Q4_K, 16 MB of F32. A twin repeats its pool; at 1 thread on a CPU
# the 1 Mi-weight pool of DATA_RULE 1 ran ~3% faster than fresh data, a 16 Mi one ~1%
# (docs/dev/2026-12-06b-twin-fidelity/); each pool costs ~0.3 s per Mi weights to make.
POOL_WEIGHTS = 1 << 22
_ROW = 4096  # pool row length: a multiple of every block size
WEIGHT_STD = 0.02  # typical std of a trained llama-family projection matrix
# Which data rule a twin was written with: part of the twin cache's file names and of the twin
# marker, so that a changed rule rewrites cached twins instead of measuring old data.
DATA_RULE = 2
# The standard deviation of log2|block scale| around its tensor's median, by role: the mean of
# two real files (gemma-3-270m Q4_K_M: gemma3; SmolLM2-135M Q4_1: llama), whose roles agree
# within ~0.1 but attn_k/ffn_gate (~0.17). `benchmarks/twin_scales.py` measures them.
SCALE_SPREAD = {
    "attn_q": 0.71,
    "attn_k": 0.64,
    "attn_v": 0.34,
    "attn_output": 0.50,
    "ffn_gate": 0.45,
    "ffn_up": 0.34,
    "ffn_down": 0.31,
    "token_embd": 0.57,
    "output": 0.57,
}
DEFAULT_SPREAD = 0.48  # the mean of those roles, for matrices of other names
# The shape of those centred log2 scales in units of their tensor's standard deviation, pooled
# over both files' matrices: percentiles SHAPE_P -> SHAPE_Z (heavier tails than a normal's).
SHAPE_P = (0.01, 0.1, 1.0, 5.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99)
SHAPE_Z = (-4.6, -3.29, -2.19, -1.42, -1.06, -0.54, 0.0, 0.59, 1.25, 1.72, 2.97, 5.68, 6.04)


class TwinDataError(RuntimeError):
    """Synthetic data cannot be made for a tensor type; the message names the type."""


def _ggml_lib_path() -> Path:
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise TwinDataError("llama-cpp-python is not installed: it provides ggml's quantizer")
    lib_dir = Path(next(iter(spec.submodule_search_locations))) / "lib"
    # llama-cpp-python itself honours LLAMA_CPP_LIB_PATH (a llama.cpp built separately)
    dirs = [Path(d) for d in [os.environ.get("LLAMA_CPP_LIB_PATH", "")] if d] + [lib_dir]
    names = {"win32": ["ggml-base.dll"], "darwin": ["libggml-base.dylib"]}.get(
        sys.platform, ["libggml-base.so"]
    )
    for directory in dirs:
        for name in names:
            if (directory / name).is_file():
                return directory / name
    where = ", ".join(str(d) for d in dirs)
    raise TwinDataError(f"ggml's base library not found in {where} (looked for {names})")


@functools.cache
def _ggml() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(_ggml_lib_path()))
    lib.ggml_quantize_chunk.restype = ctypes.c_size_t
    lib.ggml_quantize_chunk.argtypes = [
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_void_p,
    ]
    lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
    lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
    lib.ggml_validate_row_data.restype = ctypes.c_bool
    lib.ggml_validate_row_data.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    return lib


def validate(ggml_type: int, data: bytes | bytearray | memoryview) -> bool:
    """ggml's own check (no NaN/Inf scales, valid for the type), as llama.cpp's --check-tensors."""
    buf = (ctypes.c_char * len(data)).from_buffer_copy(data)
    return bool(_ggml().ggml_validate_row_data(ggml_type, buf, len(data)))


def _weights(rng: np.random.Generator, n: int, std: float) -> np.ndarray:
    """Trained-model-like weights: Student-t tails, per-row std spread lognormally around std."""
    rows = n // _ROW
    row_std = std * rng.lognormal(0.0, 0.35, size=(rows, 1))
    t = rng.standard_t(df=5, size=(rows, _ROW)) / np.sqrt(5 / 3)  # unit variance
    return np.ascontiguousarray((t * row_std).astype(np.float32))


def _spread_blocks(values: np.ndarray, block: int, spread: float) -> np.ndarray:
    """values with each quantization block rescaled so that log2 of the blocks' absolute maxima
    (what sets their scale d) spread like a real matrix's of that role, about the same median."""
    blocks = values.reshape(-1, block)
    amax = np.maximum(np.abs(blocks).max(axis=1), np.finfo(np.float32).tiny)
    logs = np.log2(amax)
    ranks = (np.argsort(np.argsort(logs, kind="stable")) + 0.5) * (100.0 / len(logs))
    target = np.median(logs) + spread * np.interp(ranks, SHAPE_P, SHAPE_Z)
    scaled = blocks * np.exp2(target - logs)[:, None]
    return np.ascontiguousarray(scaled.astype(np.float32).ravel())


def _quantize(ggml_type: int, src: np.ndarray) -> bytes:
    lib = _ggml()
    rows, n_per_row = src.shape
    block, size = GGML_QUANT_SIZES[T(ggml_type)]
    out = np.empty(rows * n_per_row // block * size, dtype=np.uint8)
    imatrix = None
    if lib.ggml_quantize_requires_imatrix(ggml_type):
        # importance = mean squared activation per column; a flat one is a valid neutral choice
        imatrix = np.ones(n_per_row, dtype=np.float32)
    written = lib.ggml_quantize_chunk(
        ggml_type,
        src.ctypes.data,
        out.ctypes.data,
        0,
        rows,
        n_per_row,
        imatrix.ctypes.data if imatrix is not None else None,
    )
    if written != out.nbytes:
        raise TwinDataError(f"ggml quantized {written} bytes, expected {out.nbytes}")
    return out.tobytes()


def tensor_role(name: str, n_dims: int) -> str:
    """What kind of values a tensor holds: its magnitudes differ (norm weights are ~1)."""
    if n_dims == 1 and "norm" in name:
        return "norm"
    if n_dims == 1 and name.endswith("rope_freqs.weight"):
        return "ones"
    if n_dims == 1:
        return "bias"
    if "ffn_gate_inp" in name:
        return "router"
    role = matrix_role(name)
    return role if role in SCALE_SPREAD else "matrix"


def matrix_role(name: str) -> str:
    """A matrix's role from its llama.cpp name: "blk.3.ffn_down_exps.weight" -> "ffn_down"
    (an MoE's experts and shared experts play their dense counterpart's role)."""
    role = name.split(".")[-2] if name.startswith("blk.") else name.removesuffix(".weight")
    return role.removesuffix("_exps").removesuffix("_shexp")


@functools.cache
def block_pool(ggml_type: int, role: str) -> bytes:
    """POOL_WEIGHTS weights of synthetic data of one type and role, as the bytes of a file."""
    rng = np.random.default_rng(zlib.crc32(f"{ggml_type}/{role}".encode()))
    n = POOL_WEIGHTS
    if role == "norm":
        values = rng.normal(1.0, 0.05, size=n).astype(np.float32)
    elif role == "ones":
        values = np.ones(n, dtype=np.float32)
    elif role == "bias":
        values = rng.normal(0.0, WEIGHT_STD, size=n).astype(np.float32)
    else:
        values = _weights(rng, n, WEIGHT_STD).ravel()
    t = T(ggml_type)
    block = GGML_QUANT_SIZES[t][0]
    if block > 1 and role not in ("norm", "ones", "bias", "router"):
        values = _spread_blocks(values, block, SCALE_SPREAD.get(role, DEFAULT_SPREAD))
    if t == T.F32:
        return values.tobytes()
    if t == T.F16:
        return values.astype(np.float16).tobytes()
    if t == T.BF16:
        return (values.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    if t in (T.I8, T.I16, T.I32, T.I64):
        # integer tensors are indices (e.g. expert routing tables): 0 is always in range
        return bytes(n * GGML_QUANT_SIZES[t][1])
    if t == T.F64:
        return values.astype(np.float64).tobytes()
    try:
        return _quantize(ggml_type, values.reshape(-1, _ROW))
    except OSError as exc:
        raise TwinDataError(f"ggml cannot quantize type {t.name}: {exc}") from None


def tensor_chunks(name: str, n_dims: int, ggml_type: int, n_bytes: int) -> Iterator[memoryview]:
    """The tensor's bytes as views into the pool, starting at a block chosen from its name."""
    try:
        block_bytes = GGML_QUANT_SIZES[T(ggml_type)][1]
    except ValueError:
        raise TwinDataError(f"tensor {name!r}: unknown ggml type {ggml_type}") from None
    pool = memoryview(block_pool(ggml_type, tensor_role(name, n_dims)))
    n_blocks = len(pool) // block_bytes
    start = zlib.crc32(name.encode()) % n_blocks * block_bytes
    left = n_bytes
    view = pool[start:]
    while left > 0:
        piece = view[: min(len(view), left)]
        yield piece
        left -= len(piece)
        view = pool
