"""Child process for the memory benchmarks: load one GGUF with llama.cpp and report its memory.

    python benchmarks/memory_probe.py '{"model": "...", "n_ctx": 512, ...}'

Prints one JSON object: the buffer sizes llama.cpp logs while loading (model, KV, compute,
output buffers per buffer type, in bytes rounded to its 0.01 MiB log precision) and, for a real
load (no_alloc false), the process's RSS (VmRSS, RssAnon, RssFile) before and after a decode.
With no_alloc true llama.cpp only simulates the allocations (llama_model_params.no_alloc).
"""

from __future__ import annotations

import ctypes
import json
import re
import sys
from typing import Any

_MIB = 1024 * 1024
_BUFFER_LINE = re.compile(
    r"(?P<where>\w+):\s+(?P<buft>\S+)\s+(?P<kind>model|KV|compute|output) buffer size\s*=\s*"
    r"(?P<mib>[\d.]+) MiB"
)
_KV_TOTAL = re.compile(r"llama_kv_cache: size =\s*(?P<mib>[\d.]+) MiB")


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def main(raw: str) -> dict[str, Any]:
    args = json.loads(raw)
    baseline_before_import = _status()
    import llama_cpp

    lines: list[str] = []

    @llama_cpp.llama_log_callback  # type: ignore[misc]
    def collect(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        lines.append(text.decode("utf-8", errors="replace"))

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    llama_cpp.llama_backend_init()
    baseline = _status()

    mparams = llama_cpp.llama_model_default_params()
    mparams.n_gpu_layers = int(args.get("n_gpu_layers", 0))
    mparams.no_alloc = bool(args.get("no_alloc", False))
    mparams.use_extra_bufts = bool(args.get("use_extra_bufts", True))
    if mparams.no_alloc:  # llama.cpp simulates allocations only without mmap
        mparams.load_mode = 0  # LLAMA_LOAD_MODE_NONE
    model = llama_cpp.llama_model_load_from_file(args["model"].encode(), mparams)
    if not model:
        return {"error": "model load failed", "log": "".join(lines)[-4000:]}
    after_model = _status()

    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = int(args.get("n_ctx", 512))
    cparams.n_batch = int(args.get("n_batch", args.get("n_ubatch", 512)))
    cparams.n_ubatch = int(args.get("n_ubatch", 512))
    cparams.n_seq_max = int(args.get("n_seq_max", 1))
    cparams.n_threads = cparams.n_threads_batch = int(args.get("n_threads", 2))
    fa = args.get("flash_attn", False)
    cparams.flash_attn_type = (
        llama_cpp.LLAMA_FLASH_ATTN_TYPE_ENABLED if fa else llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    )
    ctx = llama_cpp.llama_init_from_model(model, cparams)
    if not ctx:
        return {"error": "context creation failed", "log": "".join(lines)[-4000:]}
    after_ctx = _status()

    after_decode: dict[str, int] = {}
    if not mparams.no_alloc and args.get("decode_tokens", 0):
        n = int(args["decode_tokens"])
        step = int(cparams.n_batch)
        rc = 0
        for start in range(0, n, step):  # positions continue from what the cache holds
            k = min(step, n - start)
            tokens = (llama_cpp.llama_token * k)(*[3 + (start + i) % 200 for i in range(k)])
            rc = llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(tokens, k))
            if rc != 0:
                break
        if rc != 0:
            return {"error": f"llama_decode returned {rc}"}
        after_decode = _status()

    text = "".join(lines)
    buffers: list[dict[str, Any]] = []
    for m in _BUFFER_LINE.finditer(text):
        buffers.append(
            {
                "kind": m.group("kind"),
                "buft": m.group("buft"),
                "bytes": round(float(m.group("mib")) * _MIB),
            }
        )
    kv_total = _KV_TOTAL.search(text)
    return {
        "args": args,
        "buffers": buffers,
        "kv_total_bytes": round(float(kv_total.group("mib")) * _MIB) if kv_total else None,
        "status_before_import": baseline_before_import,
        "status_baseline": baseline,
        "status_after_model": after_model,
        "status_after_context": after_ctx,
        "status_after_decode": after_decode,
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
