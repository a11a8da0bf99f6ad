"""GPU-side terms of the memory planner (fitbench.core.plan.memory): what a CUDA build of llama.cpp
puts on a GPU beyond the weights, the KV cache and the graph's own compute buffer.

Fitted to NVML on one NVIDIA H200 (the CUDA build of llama-cpp-python 0.3.36's llama.cpp,
full-size Q4_K_M twins of Mixtral 8x7B and Llama 2 70B, docs/h200/2026-11-29); docs/memory.md
has every data point before and after, tests/test_memory_h200.py re-checks them. "Gap" below =
NVML peak minus llama.cpp's own CUDA buffers (model + KV + compute, from its log).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from fitbench.core.gguf.manifest import ModelManifest, TensorInfo

MiB = 1 << 20

# Per-GPU CUDA context with llama.cpp's kernels loaded: the smallest gap of any run (full
# offload, batches of <= 2 tokens, so no cuBLAS and an empty pool): 598.5..603.8 MiB.
GPU_RUNTIME_BYTES = 600 * MiB
# cuBLAS, created on the first GEMM llama.cpp hands to it: a matmul with a non-quantized weight
# (F32/F16/BF16, e.g. the MoE router ffn_gate_inp) over more than 3 tokens (ggml-cuda's mmvf
# limit on Ampere and later), or attention without flash-attn. Measured as the jump in the gap
# between 2 and 4 parallel sequences of Mixtral (598.5 -> 695.7 MiB); never seen on 70B Q4_K_M
# with flash-attn, which has no such matmul.
GPU_CUBLAS_BYTES = 97 * MiB
GPU_CUBLAS_MIN_TOKENS = 4
# Measured, not explained: with weights left on the host, the gap grows by 114 KiB per
# host-resident tensor (token_embd aside), also in generation tests (no op offload) run after a
# prompt test in the same process: it lives outside llama.cpp's buffers (the CUDA driver's side
# of the host-to-GPU weight copies is the likely owner). Least squares over 9 placements of both
# models (48..722 such tensors, 2.5..79 MiB): every residual within 3 MiB.
GPU_HOST_TENSOR_BYTES = 114 * 1024
# ggml-cuda's memory pool: MMQ quantizes each matmul's input to q8_1 (36 bytes per 32 values);
# the widest is the FFN-down input (n_ff x n_expert_used per token): 16.5 MiB at 512 tokens,
# the measured growth of the gap from batch 1 to pp512 (14 MiB on 70B, 15 MiB on Mixtral).
GPU_POOL_Q8_1_BYTES = 36
GPU_POOL_Q8_1_VALUES = 32
# Op offload (ggml-backend.cpp, ggml_backend_sched_backend_id_from_cur): an op whose weight is
# in a host buffer runs on the GPU when its batch is >= this many tokens
# (GGML_OP_OFFLOAD_MIN_BATCH; ggml-cuda get_op_batch_size: never GET_ROWS, i.e. token_embd):
# the scheduler copies the weight into the GPU compute buffer first (see op_offload_bytes).
OP_OFFLOAD_MIN_BATCH = 32

NON_QUANTIZED = (0, 1, 30)  # F32, F16, BF16: matmuls on such weights can go to cuBLAS
TENSOR_COUNT_KEY = "planner_tensor_count"  # manifest.extra: summary tensor -> tensors it sums


@dataclass(frozen=True)
class GpuShape:
    """The model dimensions the GPU terms need."""

    n_embd: int
    n_vocab: int
    ffn_width: int  # n_ff * n_expert_used: the FFN-down input per token
    ffn_out: int  # n_embd * n_expert_used: its output per token


@dataclass
class HostWeights:
    """What the GPU terms need to know, tensor by tensor, about the weights left on the host."""

    n_tensors: int = 0  # host-resident tensors, token_embd aside (GPU_HOST_TENSOR_BYTES)
    largest_layer_matmul: int = 0  # the biggest op-offload copy among the blocks' weights
    output: int = 0  # output.weight on the host
    embd: int = 0  # token_embd (the output matrix too when the embeddings are tied)
    dense_on_host: bool = False  # a non-quantized matmul weight (cuBLAS once offloaded)
    dense_on_gpu: bool = False

    def add(self, t: TensorInfo, device: int | None, count: int = 1) -> None:
        if t.name.startswith("token_embd"):
            self.embd = t.n_bytes if device is None else 0
            return
        matmul = len(t.shape) >= 2  # norms are 1-D
        dense = matmul and t.ggml_type in NON_QUANTIZED
        if device is not None:
            self.dense_on_gpu |= dense
            return
        self.n_tensors += count
        self.dense_on_host |= dense
        if t.name == "output.weight":
            self.output = t.n_bytes
        elif matmul and t.layer is not None:
            self.largest_layer_matmul = max(self.largest_layer_matmul, t.n_bytes)


def op_offload_bytes(shape: GpuShape, layer_w: int, host_output: int, n_tokens: int) -> int:
    """Peak of the GPU compute buffer while host-resident weights are offloaded, for a ubatch of
    n_tokens (llama.cpp reserves the buffer for a full ubatch, n_outputs = n_tokens).

    ggml-backend's scheduler starts a new graph split at every op whose weight sits in a host
    buffer and copies that weight into the split's GPU compute buffer; n_copies is 1 without
    pipeline parallelism, so ggml-alloc frees the copy after its op and the next copy reuses the
    space: one weight copy is live at a time, the largest being a layer's biggest matrix (the
    FFN-down, or the experts' ffn_down_exps, in Q6_K layers). Beside it lives the FFN-down
    product's working set, per token 4*(ffn_width [its input] + ffn_out [its output] + 3*n_embd
    [residual stream, FFN input, normed input]) bytes: Mixtral with every expert on the CPU,
    32..512 tokens: 367.5 MiB + that = llama.cpp's reported buffer within 0.6 MiB.
    The output matrix (when the output layer stays on the host) comes last with the logits
    (n_vocab) and its normed input (n_embd) per token; its copy reuses the hole left by the layer
    copies (the largest layer weight plus its working set, freed together) when it fits, else
    ggml-alloc places it past the end: Llama 2 70B at ngl 0 and 64 tokens, 205 MiB output
    (Q6_K) > 184 + 15 MiB hole, llama.cpp reports 399.8 MiB, this gives 413.6.
    """
    if n_tokens < OP_OFFLOAD_MIN_BATCH:
        return 0
    per_token = 4 * (shape.ffn_width + shape.ffn_out + 3 * shape.n_embd)
    peak = layer_w + n_tokens * per_token if layer_w else 0
    if host_output:
        output = host_output + n_tokens * 4 * (shape.n_vocab + shape.n_embd)
        peak = max(peak, output) if host_output <= peak else peak + output
    return peak


def pool_bytes(shape: GpuShape, n_tokens: int) -> int:
    """ggml-cuda's pool at its peak: the widest matmul input (FFN down) quantized to q8_1."""
    return math.ceil(n_tokens * shape.ffn_width / GPU_POOL_Q8_1_VALUES) * GPU_POOL_Q8_1_BYTES


def add_gpu_terms(
    dev: dict[str, dict[str, int]],
    host: HostWeights,
    shape: GpuShape,
    *,
    n_tokens: int,
    gpus_with_layers: set[int],
    runtime_gpus: list[int],
    offload_gpu: int,
    output_on_host: bool,
    flash_attn: bool,
    gpu_runtime_bytes: int | None,
) -> None:
    """Adds op offload (compute), the pool (work) and the runtime (overhead) to the GPUs of
    `dev` ("GPU0", ...), whose graph compute buffers are already there. offload_gpu is the
    scheduler's highest-priority GPU, which runs the offloaded ops; runtime_gpus have a CUDA
    context; gpu_runtime_bytes (not None) replaces the calibrated runtime of each."""
    host_output = (host.output or host.embd) if output_on_host else 0  # tied: token_embd
    offload = op_offload_bytes(shape, host.largest_layer_matmul, host_output, n_tokens)
    if offload:
        gpu = dev[f"GPU{offload_gpu}"]
        gpu["compute"] = max(gpu["compute"], offload)  # one buffer: the peaks do not add up
    compute_gpus = gpus_with_layers | ({offload_gpu} if offload else set())
    for g in compute_gpus:
        dev[f"GPU{g}"]["work"] = pool_bytes(shape, n_tokens)
    dense_on_gpu = host.dense_on_gpu or (offload > 0 and host.dense_on_host)
    cublas = n_tokens >= GPU_CUBLAS_MIN_TOKENS and (
        dense_on_gpu or (not flash_attn and bool(gpus_with_layers))
    )
    for g in runtime_gpus:
        if gpu_runtime_bytes is not None:
            dev[f"GPU{g}"]["overhead"] = gpu_runtime_bytes
            continue
        runtime = GPU_RUNTIME_BYTES + (GPU_CUBLAS_BYTES if cublas and g in compute_gpus else 0)
        if g == offload_gpu:
            runtime += GPU_HOST_TENSOR_BYTES * host.n_tensors
        dev[f"GPU{g}"]["overhead"] = runtime


def compact_manifest(manifest: ModelManifest) -> ModelManifest:
    """The same model for memory.plan in a few tensors per block, plans byte-identical in
    vram_bytes and ram_bytes (tests/test_advise.py checks it) and several times faster, for the
    advice's thousands of plans. Per block and group (routed experts / the rest) the tensors are
    summed into one, except those the GPU terms weigh one by one: the largest matrix (the
    op-offload copy) and non-quantized matrices (cuBLAS). extra[TENSOR_COUNT_KEY] keeps how many
    tensors each sum stands for. Embeddings and the output layer are kept as they are."""
    kept: list[TensorInfo] = []
    groups: dict[tuple[int, bool], list[TensorInfo]] = {}
    for t in manifest.tensors:
        layer = t.layer
        if layer is None:
            kept.append(t)
        else:
            groups.setdefault((layer, t.is_expert), []).append(t)
    counts: dict[str, int] = {}
    for (layer, expert), members in groups.items():
        largest = max(
            (t for t in members if len(t.shape) >= 2), key=lambda t: t.n_bytes, default=None
        )
        rest = []
        for t in members:
            if t is largest or (len(t.shape) >= 2 and t.ggml_type in NON_QUANTIZED):
                kept.append(t)
            else:
                rest.append(t)
        if rest:
            # the name keeps the group: llama.cpp's expert pattern matches ffn_up_exps
            name = f"blk.{layer}.{'ffn_up_exps' if expert else 'attn'}.planner_sum"
            offset = min(t.offset for t in rest)
            kept.append(TensorInfo(name, (1,), 0, offset, sum(t.n_bytes for t in rest)))
            counts[name] = len(rest)
    return replace(
        manifest, tensors=tuple(kept), extra={**manifest.extra, TENSOR_COUNT_KEY: counts}
    )


__all__ = [
    "GPU_CUBLAS_BYTES",
    "GPU_CUBLAS_MIN_TOKENS",
    "GPU_HOST_TENSOR_BYTES",
    "GPU_POOL_Q8_1_BYTES",
    "GPU_POOL_Q8_1_VALUES",
    "GPU_RUNTIME_BYTES",
    "NON_QUANTIZED",
    "OP_OFFLOAD_MIN_BATCH",
    "TENSOR_COUNT_KEY",
    "GpuShape",
    "HostWeights",
    "add_gpu_terms",
    "compact_manifest",
    "op_offload_bytes",
    "pool_bytes",
]
