"""llama.cpp through llama-cpp-python's low-level ctypes API, the way llama-bench drives it.

Only the benchmark worker imports this module (it loads the llama.cpp shared libraries). What the
Python wrapper leaves out is bound here through ctypes: the CPU buffer type for tensor overrides
(experts on the CPU), a ggml thread pool attached to the context (llama-bench does the same), and
the load log, which names the bytes placed in every buffer type.

Hot loops avoid per-token allocations: one `llama_batch` is allocated per context and filled
through numpy views of its arrays, and logits are requested only where a test needs them.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from fitbench.core.hardware import llama_backends

GGML_MAX_N_THREADS = 512  # ggml.h; sizes ggml_threadpool_params.cpumask
GGML_BACKEND_DEVICE_TYPE_CPU = 0
# llama.cpp's LLM_FFN_EXPS_REGEX (common/common.h): the routed-expert tensors of one block
FFN_EXPS_REGEX = r"\.ffn_(up|down|gate|gate_up)_(ch|)exps"

KV_TYPES: dict[str, int] = {
    "f32": 0,
    "f16": 1,
    "q4_0": 2,
    "q4_1": 3,
    "q5_0": 6,
    "q5_1": 7,
    "q8_0": 8,
    "iq4_nl": 20,
    "bf16": 30,
}
SPLIT_MODES = {"none": 0, "layer": 1, "row": 2, "tensor": 3}  # llama.h llama_split_mode


class LlamaError(RuntimeError):
    """llama.cpp refused to do something; the message says what and, where known, why."""


def _lib_dir() -> Path:
    # llama-cpp-python loads its libraries from LLAMA_CPP_LIB_PATH when set (a separate build)
    folder = llama_backends.lib_dir()
    if folder is None:  # not reached: llama_cpp is imported above
        raise LlamaError("llama-cpp-python is not installed")
    return folder


def _load_lib(stem: str) -> ctypes.CDLL:
    # already loaded as a dependency of libllama; loading again returns the same instance
    for pattern in (f"lib{stem}.so", f"lib{stem}.dylib", f"{stem}.dll", f"lib{stem}*.so*"):
        for path in sorted(_lib_dir().glob(pattern)):
            return ctypes.CDLL(str(path), mode=getattr(ctypes, "RTLD_GLOBAL", 0))
    raise LlamaError(f"llama-cpp-python's {stem} library is not in {_lib_dir()}")


class ThreadpoolParams(ctypes.Structure):
    _fields_ = [
        ("cpumask", ctypes.c_bool * GGML_MAX_N_THREADS),
        ("n_threads", ctypes.c_int),
        ("prio", ctypes.c_int),
        ("poll", ctypes.c_uint32),
        ("strict_cpu", ctypes.c_bool),
        ("paused", ctypes.c_bool),
    ]


class BuftOverride(ctypes.Structure):
    """struct llama_model_tensor_buft_override (llama.h); the Python wrapper does not define it."""

    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


def _bind(lib: ctypes.CDLL, name: str, restype: Any, *argtypes: Any) -> Any:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


class Libs:
    """The ggml/llama entry points the Python wrapper does not bind."""

    def __init__(self) -> None:
        base = _load_lib("ggml-base")
        cpu = _load_lib("ggml-cpu")
        ggml = _load_lib("ggml")
        llama = llama_cpp.llama_cpp._lib
        ptr, size = ctypes.c_void_p, ctypes.c_size_t

        self.cpu_buffer_type = _bind(base, "ggml_backend_cpu_buffer_type", ptr)
        self.buft_name = _bind(base, "ggml_backend_buft_name", ctypes.c_char_p, ptr)
        self.threadpool_params_default = _bind(
            base, "ggml_threadpool_params_default", ThreadpoolParams, ctypes.c_int
        )
        self.threadpool_new = _bind(
            cpu, "ggml_threadpool_new", ptr, ctypes.POINTER(ThreadpoolParams)
        )
        self.threadpool_free = _bind(cpu, "ggml_threadpool_free", None, ptr)
        self.dev_count = _bind(ggml, "ggml_backend_dev_count", size)
        self.dev_get = _bind(ggml, "ggml_backend_dev_get", ptr, size)
        self.dev_name = _bind(base, "ggml_backend_dev_name", ctypes.c_char_p, ptr)
        self.dev_description = _bind(base, "ggml_backend_dev_description", ctypes.c_char_p, ptr)
        self.dev_type = _bind(base, "ggml_backend_dev_type", ctypes.c_int, ptr)
        self.attach_threadpool = _bind(llama, "llama_attach_threadpool", None, ptr, ptr, ptr)
        self.detach_threadpool = _bind(llama, "llama_detach_threadpool", None, ptr)
        # graph tensors, for eval-callback diagnostics (benchmarks/moe_routing.py)
        self.tensor_name = _bind(base, "ggml_get_name", ctypes.c_char_p, ptr)
        self.tensor_nbytes = _bind(base, "ggml_nbytes", size, ptr)
        self.tensor_get = _bind(base, "ggml_backend_tensor_get", None, ptr, ptr, size, size)


_libs: Libs | None = None


def libs() -> Libs:
    global _libs
    if _libs is None:
        _libs = Libs()
    return _libs


# --- logging -------------------------------------------------------------------------------------

_MODEL_BUFFER = re.compile(r"(\S+) model buffer size\s*=\s*([\d.]+) MiB")
_KV_BUFFER = re.compile(r"(\S+) KV buffer size\s*=\s*([\d.]+) MiB")
_COMPUTE_BUFFER = re.compile(r"(\S+) compute buffer size\s*=\s*([\d.]+) MiB")


@dataclass
class LoadLog:
    """llama.cpp's log, kept while loading; echoed to stderr when verbose."""

    verbose: bool = False
    lines: list[str] = field(default_factory=list)
    # logged at error level: llama.cpp's often do not say so ("LLAMA_SPLIT_MODE_TENSOR needs >= 1
    # devices"), so failure summaries take these as well as lines that mention an error
    errors: list[str] = field(default_factory=list)
    capturing: bool = True
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def text(self) -> str:
        with self._lock:
            return "".join(self.lines)

    def clear(self) -> None:
        with self._lock:
            self.lines.clear()
            self.errors.clear()

    def buffers(self, kind: str = "model") -> dict[str, int]:
        """Bytes per buffer type from the log, e.g. {"CPU_Mapped": ..., "CPU": ...}."""
        pattern = {"model": _MODEL_BUFFER, "kv": _KV_BUFFER, "compute": _COMPUTE_BUFFER}[kind]
        out: dict[str, int] = {}
        for name, mib in pattern.findall(self.text()):
            out[name] = out.get(name, 0) + int(float(mib) * 1024 * 1024)
        return out


_log: LoadLog = LoadLog()


def _on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    if not _log.capturing and not _log.verbose:
        return
    line = text.decode("utf-8", errors="replace")
    if _log.capturing:
        with _log._lock:
            _log.lines.append(line)
            if level == 4:
                _log.errors.append(line)
    if _log.verbose or level in (3, 4):  # ggml.h: 3 warn, 4 error; these always reach the user
        sys.stderr.write(line)
        sys.stderr.flush()


# the ctypes callback object lives as long as the module: llama.cpp keeps calling it
_log_callback = llama_cpp.llama_log_callback(_on_log)


def install_log(verbose: bool) -> LoadLog:
    _log.verbose = verbose
    llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
    return _log


# --- devices -------------------------------------------------------------------------------------


def backend_devices() -> list[tuple[str, str, int]]:
    """(name, description, type) of every ggml device: CPU, CUDA0, ..."""
    lib = libs()
    out = []
    for i in range(lib.dev_count()):
        dev = lib.dev_get(i)
        out.append(
            (
                (lib.dev_name(dev) or b"").decode(),
                (lib.dev_description(dev) or b"").decode(),
                lib.dev_type(dev),
            )
        )
    return out


def gpu_names() -> list[str]:
    return [desc for _name, desc, kind in backend_devices() if kind != GGML_BACKEND_DEVICE_TYPE_CPU]


def backends_string() -> str:
    """As llama-bench reports it: non-CPU backends, or "CPU"."""
    names = sorted({re.sub(r"\d+$", "", n) for n, _d, k in backend_devices() if k != 0})
    return ",".join(names) if names else "CPU"


# --- model ---------------------------------------------------------------------------------------


def expert_patterns(n_cpu_moe: int) -> list[str]:
    """llama.cpp's --n-cpu-moe: the expert tensors of blocks 0..n-1, one regex each."""
    return [f"blk\\.{i}{FFN_EXPS_REGEX}" for i in range(n_cpu_moe)]


@dataclass
class Overrides:
    """A NULL-terminated llama_model_tensor_buft_override array and the strings it points to."""

    patterns: list[str]
    array: Any = None
    _keep: list[bytes] = field(default_factory=list)

    def build(self) -> Any:
        if not self.patterns:
            return None
        cpu = libs().cpu_buffer_type()
        n = len(self.patterns)
        array = (BuftOverride * (n + 1))()
        self._keep = [p.encode() for p in self.patterns]
        for i, raw in enumerate(self._keep):
            array[i].pattern = raw
            array[i].buft = cpu
        array[n].pattern = None
        array[n].buft = None
        self.array = array
        return array

    def describe(self) -> str:
        """llama-bench's tensor_buft_overrides string: pattern=BUFT;..."""
        if not self.patterns:
            return "none"
        name = (libs().buft_name(libs().cpu_buffer_type()) or b"CPU").decode()
        return ";".join(f"{p}={name}" for p in self.patterns)


@dataclass
class ModelInfo:
    desc: str
    size: int
    n_params: int
    n_layer: int
    n_vocab: int
    add_bos: bool
    bos: int


class Model:
    def __init__(
        self,
        path: Path,
        *,
        n_gpu_layers: int,
        overrides: Overrides,
        split_mode: str = "layer",
        main_gpu: int = 0,
        tensor_split: list[float] | None = None,
        use_mmap: bool = True,
        repack: bool = True,
    ) -> None:
        params = llama_cpp.llama_model_default_params()
        # weight repacking into the CPU's extra buffer types (AMX, AVX512 layouts); llama-bench's
        # --repack, on by default
        params.use_extra_bufts = repack
        params.n_gpu_layers = n_gpu_layers
        params.split_mode = SPLIT_MODES[split_mode]
        params.main_gpu = main_gpu
        n_dev = llama_cpp.llama_max_devices()
        self._split = (ctypes.c_float * max(n_dev, 1))()
        for i, share in enumerate((tensor_split or [])[:n_dev]):
            self._split[i] = share
        params.tensor_split = self._split
        if not use_mmap:
            # llama.cpp replaced use_mmap by load_mode (llama-cpp-python 0.3.33); a ctypes
            # struct takes any attribute silently, so set the field this build has
            if any(name == "load_mode" for name, *_ in type(params)._fields_):
                params.load_mode = 0  # LLAMA_LOAD_MODE_NONE: read into buffers
            else:
                params.use_mmap = False
        self._overrides = overrides
        array = overrides.build()
        if array is not None:
            params.tensor_buft_overrides = ctypes.cast(array, ctypes.c_void_p)
        # os.fsencode: the path's own bytes, also where they are not UTF-8 (a surrogate-escaped
        # str from os.fsdecode); str.encode() failed there and the model was never measured
        self.ptr = llama_cpp.llama_model_load_from_file(os.fsencode(path), params)
        if not self.ptr:
            raise LlamaError(f"llama.cpp could not load {path}")
        vocab = llama_cpp.llama_model_get_vocab(self.ptr)
        buf = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(self.ptr, buf, ctypes.sizeof(buf))
        self.info = ModelInfo(
            desc=buf.value.decode(errors="replace"),
            size=int(llama_cpp.llama_model_size(self.ptr)),
            n_params=int(llama_cpp.llama_model_n_params(self.ptr)),
            n_layer=int(llama_cpp.llama_model_n_layer(self.ptr)),
            n_vocab=int(llama_cpp.llama_vocab_n_tokens(vocab)),
            add_bos=bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
            bos=int(llama_cpp.llama_vocab_bos(vocab)),
        )

    def close(self) -> None:
        if self.ptr:
            llama_cpp.llama_model_free(self.ptr)
            self.ptr = None


# --- context -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContextParams:
    n_ctx: int
    n_batch: int = 2048
    n_ubatch: int = 512
    n_seq_max: int = 1
    n_threads: int = 1
    type_k: str = "f16"
    type_v: str = "f16"
    flash_attn: bool | None = None  # None: llama.cpp decides (llama-bench's default, "auto")
    offload_kqv: bool = True
    poll: int = 50
    # a llama_cpp.ggml_backend_sched_eval_callback; diagnostics only (it splits the graph)
    cb_eval: Any = None


class Context:
    """One llama_context with its thread pool and one preallocated batch."""

    def __init__(self, model: Model, p: ContextParams) -> None:
        self.model = model
        self.p = p
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx = p.n_ctx
        cp.n_batch = p.n_batch
        cp.n_ubatch = p.n_ubatch
        cp.n_seq_max = p.n_seq_max
        cp.n_threads = p.n_threads
        cp.n_threads_batch = p.n_threads
        cp.type_k = KV_TYPES[p.type_k]
        cp.type_v = KV_TYPES[p.type_v]
        cp.flash_attn_type = -1 if p.flash_attn is None else int(p.flash_attn)
        cp.offload_kqv = p.offload_kqv
        cp.kv_unified = True  # B parallel sequences share one KV buffer (batched decode)
        cp.swa_full = False
        cp.no_perf = True
        if p.cb_eval is not None:
            cp.cb_eval = p.cb_eval
        self.ptr = llama_cpp.llama_init_from_model(model.ptr, cp)
        if not self.ptr:
            raise LlamaError(
                f"llama.cpp could not create a context (n_ctx {p.n_ctx}, batch {p.n_batch}, "
                f"{p.n_seq_max} sequences); the KV cache or compute buffers may not fit"
            )
        lib = libs()
        tpp = lib.threadpool_params_default(p.n_threads)
        tpp.poll = p.poll
        self._threadpool = lib.threadpool_new(ctypes.byref(tpp))
        if not self._threadpool:
            raise LlamaError(f"ggml could not create a thread pool of {p.n_threads} threads")
        lib.attach_threadpool(self.ptr, self._threadpool, None)
        llama_cpp.llama_set_n_threads(self.ptr, p.n_threads, p.n_threads)
        self.memory = llama_cpp.llama_get_memory(self.ptr)
        self._batch_cap = max(p.n_batch, p.n_seq_max)
        self._batch = llama_cpp.llama_batch_init(self._batch_cap, 0, 1)
        cap = self._batch_cap
        self._tok = np.ctypeslib.as_array(self._batch.token, shape=(cap,))
        self._pos = np.ctypeslib.as_array(self._batch.pos, shape=(cap,))
        self._nseq = np.ctypeslib.as_array(self._batch.n_seq_id, shape=(cap,))
        self._out = np.ctypeslib.as_array(self._batch.logits, shape=(cap,))
        self._seq: list[Any] = [self._batch.seq_id[i] for i in range(cap)]
        self._nseq[:] = 1
        for i in range(cap):
            self._seq[i][0] = 0

    def close(self) -> None:
        if self.ptr:
            llama_cpp.llama_batch_free(self._batch)
            libs().detach_threadpool(self.ptr)
            llama_cpp.llama_free(self.ptr)
            libs().threadpool_free(self._threadpool)
            self.ptr = None

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- memory --

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self.memory, False)

    def seq_pos_max(self, seq: int = 0) -> int:
        return int(llama_cpp.llama_memory_seq_pos_max(self.memory, seq))

    def state_get(self, seq: int = 0) -> bytes:
        size = llama_cpp.llama_state_seq_get_size(self.ptr, seq)
        buf = (ctypes.c_uint8 * size)()
        llama_cpp.llama_state_seq_get_data(self.ptr, buf, size, seq)
        return bytes(buf)

    def state_set(self, data: bytes, seq: int = 0) -> bool:
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        return bool(llama_cpp.llama_state_seq_set_data(self.ptr, buf, len(data), seq))

    # -- decoding --

    def _decode(self, n: int) -> None:
        self._batch.n_tokens = n
        rc = llama_cpp.llama_decode(self.ptr, self._batch)
        if rc != 0:
            why = {1: "no KV cache slot (context full)", 2: "aborted"}.get(rc, "decode error")
            raise LlamaError(f"llama_decode returned {rc}: {why}")

    def decode_prompt(self, tokens: np.ndarray, start_pos: int, logits_last: bool) -> None:
        """Feed a prompt in n_batch chunks to sequence 0 (as llama-bench's test_prompt)."""
        n_batch = self.p.n_batch
        done = 0
        total = len(tokens)
        while done < total:
            n = min(n_batch, total - done)
            self._tok[:n] = tokens[done : done + n]
            self._pos[:n] = np.arange(start_pos + done, start_pos + done + n, dtype=np.int32)
            self._out[:n] = 0
            if logits_last and done + n == total:
                self._out[n - 1] = 1
            self._decode(n)
            done += n

    def prepare_single(self) -> None:
        """One token of sequence 0 with logits, as llama-bench's test_gen asks for."""
        self._out[0] = 1
        self._seq[0][0] = 0

    def decode_one(self, token: int, pos: int) -> None:
        self._tok[0] = token
        self._pos[0] = pos
        self._decode(1)

    def prepare_parallel(self, n_seq: int) -> None:
        """Batch rows 0..B-1 belong to sequences 0..B-1, each with logits (batched decode)."""
        for i in range(n_seq):
            self._seq[i][0] = i
        self._out[:n_seq] = 1

    def decode_parallel(self, tokens: np.ndarray, pos: int) -> None:
        n = len(tokens)
        self._tok[:n] = tokens
        self._pos[:n] = pos
        self._decode(n)

    def reset_seq_ids(self) -> None:
        for i in range(self._batch_cap):
            self._seq[i][0] = 0

    def synchronize(self) -> None:
        llama_cpp.llama_synchronize(self.ptr)

    def last_logits_argmax(self) -> int:
        ptr = llama_cpp.llama_get_logits_ith(self.ptr, -1)
        if not ptr:
            raise LlamaError("llama.cpp returned no logits for the last prompt token")
        row = np.ctypeslib.as_array(ptr, shape=(self.model.info.n_vocab,))
        return int(row.argmax())
