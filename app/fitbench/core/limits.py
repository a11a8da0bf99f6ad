"""What a real model can have: the bounds every count read from a file is checked against.

A header, a catalog entry or a results record is input; one absurd number in it (2^31 blocks,
a 2^40-token vocabulary) would otherwise become a loop or an allocation that never ends. The
bounds are llama.cpp's own where it has them (LLAMA_MAX_LAYERS, LLAMA_MAX_EXPERTS, LLAMA_MAX_SEQ
in src/llama-hparams.h and llama-cparams.h) and otherwise a wide margin over the largest
published model (vocabularies of 262k tokens, embeddings of 16k, contexts of 10M tokens), so
no real file is refused. The gguf reader checks headers against HPARAM_LIMITS, the catalog
its [models.arch] tables, the results schema every record's counts.
"""

from __future__ import annotations

from typing import Any

MAX_LAYERS = 512  # LLAMA_MAX_LAYERS
MAX_EXPERTS = 1024  # LLAMA_MAX_EXPERTS
MAX_SEQUENCES = 256  # LLAMA_MAX_SEQ: parallel sequences in one context
MAX_EMBD = 1 << 17
MAX_FF = 1 << 20
MAX_HEADS = 1 << 12
MAX_HEAD_DIM = 1 << 16
MAX_VOCAB = 1 << 20  # 4x the largest (Gemma 3: 262,144 tokens)
MAX_CONTEXT = 1 << 27  # tokens of context (train or runtime)
MAX_GPUS = 256  # devices in one machine's record
MAX_REPETITIONS = 100_000  # samples of one test
MAX_MODEL_BYTES = 1 << 50  # 1 PiB of weights
MAX_PARAMS = 1 << 46  # 70 trillion parameters
MAX_MEMORY_BYTES = 1 << 50  # VRAM/RAM of one machine
INT32_MAX = (1 << 31) - 1  # llama.cpp's int fields (n_gpu_layers, n_threads, ...)

# `<architecture>.<key>` in a GGUF header -> (lowest, highest, may be a per-layer array)
HPARAM_LIMITS: dict[str, tuple[int, int, bool]] = {
    "block_count": (0, MAX_LAYERS, False),
    "leading_dense_block_count": (0, MAX_LAYERS, False),
    "nextn_predict_layers": (0, MAX_LAYERS, False),
    "context_length": (0, MAX_CONTEXT, False),
    "embedding_length": (0, MAX_EMBD, False),
    "feed_forward_length": (0, MAX_FF, True),
    "expert_feed_forward_length": (0, MAX_FF, True),
    "expert_shared_feed_forward_length": (0, MAX_FF, True),
    "attention.head_count": (0, MAX_HEADS, True),
    "attention.head_count_kv": (0, MAX_HEADS, True),
    "attention.key_length": (0, MAX_HEAD_DIM, False),
    "attention.value_length": (0, MAX_HEAD_DIM, False),
    "rope.dimension_count": (0, MAX_HEAD_DIM, False),
    "expert_count": (0, MAX_EXPERTS, False),
    "expert_used_count": (0, MAX_EXPERTS, False),
    "expert_shared_count": (0, MAX_EXPERTS, False),
    "vocab_size": (0, MAX_VOCAB, False),
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def hparam_problem(key: str, value: Any) -> str | None:
    """Why `value` cannot be the hyperparameter `key` (without the architecture prefix) of a
    real model, or None when it can (or the key is not one FitBench computes with)."""
    limits = HPARAM_LIMITS.get(key)
    if limits is None:
        return None
    low, high, per_layer = limits
    if per_layer and isinstance(value, list):
        if len(value) > MAX_LAYERS:
            return f"has {len(value)} per-layer entries (at most {MAX_LAYERS} layers)"
        for v in value:
            if not (_is_int(v) and low <= v <= high):
                return f"has a per-layer entry {_short(v)} outside {low}..{high}"
        return None
    if not _is_int(value):
        kind = "an integer or a per-layer list of integers" if per_layer else "an integer"
        return f"is {type(value).__name__} {_short(value)}, not {kind}"
    if not low <= value <= high:
        return f"is {value}, outside what a real model can have ({low}..{high})"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
