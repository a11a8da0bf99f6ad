"""Memory planner: for a model, a placement and a context, the bytes on every device.

It follows llama.cpp (llama-cpp-python 0.3.36, src/llama-model.cpp load_tensors) exactly where the
rule is a rule, and uses constants measured against llama.cpp where it is a size llama.cpp only
knows at run time (compute buffers); docs/memory.md records those measurements.

Placement rules of this llama.cpp:
- layers 0..n_layer-1 plus the output layer (index n_layer) are the n_layer+1 offloadable layers;
  n_gpu_layers counts from the end: layers il >= n_layer + 1 - n_gpu_layers go to the GPU, so the
  output layer is the first to be offloaded (n_gpu_layers=1: only the output on the GPU);
- token embeddings (the input layer) always stay on the host;
- n_cpu_moe = N keeps the routed-expert tensors of layers 0..N-1 on the CPU (`blk.i.ffn_*_exps`);
- several GPUs: fitbench.core.plan.multigpu holds llama.cpp's split rules (layer split in float32 as
  llama.cpp computes it, row, tensor parallelism, pipeline-parallel input copies);
- the KV cache of a layer lives with the layer (offload_kqv, the default).
Host RAM: llama.cpp maps the file with MAP_POPULATE and unmaps only what lies before the first and
after the last CPU-resident tensor, so the expected RSS holds that whole file range.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from fitbench.core.gguf.manifest import ModelManifest, TensorInfo
from fitbench.core.plan import multigpu
from fitbench.core.plan.gpu_buffers import (
    GPU_RUNTIME_BYTES,
    TENSOR_COUNT_KEY,
    GpuShape,
    HostWeights,
    add_gpu_terms,
    compact_manifest,
)
from fitbench.core.plan.margin import DEFAULT_VRAM_MARGIN
from fitbench.core.plan.placement import Placement

MiB = 1 << 20
GiB = 1 << 30

# --- calibration (docs/memory.md, benchmarks/memory_calibrate.py; llama.cpp of llama-cpp-python
# 0.3.36, CPU backend, no_alloc loads of sparse Mixtral-8x7B / Llama-2-70B / tiny twins) ---------
# Compute buffer = max(attention phase, FFN phase), T = tokens per ubatch, n_kv = cells per stream:
#   attention, no flash-attn: T * (4*n_kv*n_head [KQ] + 4*n_kv [mask] + 20*n_embd + 8*n_embd_kv)
#   attention, flash-attn:    T * (2*n_kv [f16 mask] + 20*n_embd + 8*n_embd_kv)
#   FFN:                      T * (4*(3*n_ff*n_expert_used + 4*n_embd) + mask bytes per token)
#   output (logits):          T * 4*(n_vocab + 2*n_embd)
# Full-size Mixtral / Llama-2-70B shapes: within +-2% (n_ubatch 128/512, n_ctx 512..4096, with
# and without flash-attn); KV exact; tiny dense twins with flash-attn: up to +22% (over).
COMPUTE_ATTN_EMBD_F32 = 20
COMPUTE_ATTN_EMBD_KV_F32 = 8
COMPUTE_FFN_FF_F32 = 3
COMPUTE_FFN_EMBD_F32 = 4
# The output phase: llama.cpp reserves its graph with n_outputs = T (every token of a full ubatch
# returns logits), so the output matmul's result, T x n_vocab f32, lives beside its normed input
# and the residual stream. Invisible with 32k vocabularies (the FFN phase is larger); with 262k
# (Gemma 3) it is the whole buffer: 64.3 MiB at T=64 for gemma-3-270m, where the other phases
# give 2.2. No_alloc loads of a 262k-vocabulary header (tests/test_memory_planner.py): exact at
# T=64/320/512 with and without flash-attn, 0.25% under at n_ctx 2048 without it.
COMPUTE_OUTPUT_EMBD_F32 = 2
# The CPU backend's own work buffer (ggml-cpu cplan, malloc'd outside the compute buffer): without
# flash-attn the softmax(KQ) matrix is converted to f16 for the KQV product, 2*n_kv*T*n_head bytes.
# Measured as the RSS gap on full-context CPU runs (benchmarks/memory_rss.py): 8 MB tiny, 32 MB
# medium twins, as the formula gives.
CPU_WORK_KQ_F16 = 2
# VmRSS of a Python 3.11 process after `import llama_cpp` + llama_backend_init() (CPU build,
# 0.3.36), measured by benchmarks/memory_probe.py on the 2-core dev machine: 43.7 MB.
HOST_RUNTIME_BYTES = 44_000_000
# GPU side (CUDA context, cuBLAS, pool, op offload): core.plan.gpu_buffers, fitted on an H200.

# The old default, a share of each GPU's VRAM; what callers that pass a fraction still get (the
# GUI setting, the advice's vram_headroom). Planning without one uses DEFAULT_VRAM_MARGIN, a
# margin sized by the planner's measured error (plan.margin, docs/memory.md).
DEFAULT_VRAM_HEADROOM = 0.05
DEFAULT_RAM_HEADROOM_BYTES = 2 * GiB

_KV_TYPES = {
    "f32": 0,
    "f16": 1,
    "bf16": 30,
    "q8_0": 8,
    "q4_0": 2,
    "q4_1": 3,
    "q5_0": 6,
    "q5_1": 7,
    "iq4_nl": 20,
}


@dataclass(frozen=True)
class MemoryPlan:
    placement: Placement
    n_ctx: int
    n_parallel: int
    kv_cells: int  # KV cache cells in all, as llama.cpp sizes them (padded to 256 per stream)
    vram_bytes: tuple[int, ...]  # per GPU index
    ram_bytes: int  # host RAM the run needs (what must fit)
    rss_bytes: int  # expected process RSS after load (adds reclaimable mapped file pages)
    breakdown: dict[str, int]  # totals: weights, kv, compute, work, output, overhead
    devices: dict[str, dict[str, int]]  # "CPU", "GPU0", ...: weights/kv/compute/... bytes
    gpu_layers: int  # repeating layers on a GPU
    output_on_gpu: bool
    layer_devices: tuple[int | None, ...] = ()  # layers 0..n_layer (output last): GPU or None

    @property
    def vram_total(self) -> int:
        return sum(self.vram_bytes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["vram_bytes"] = list(self.vram_bytes)
        return data


@dataclass(frozen=True)
class PlacementPlan:
    plan: MemoryPlan
    fits: bool
    why_not: str = ""

    @property
    def placement(self) -> Placement:
        return self.plan.placement

    @property
    def n_gpu_layers(self) -> int:
        return self.plan.placement.n_gpu_layers

    @property
    def n_cpu_moe(self) -> int:
        return self.plan.placement.n_cpu_moe

    @property
    def vram_bytes(self) -> int:
        """All GPUs together (per GPU: plan.vram_bytes)."""
        return self.plan.vram_total

    @property
    def ram_bytes(self) -> int:
        return self.plan.ram_bytes

    @property
    def reason(self) -> str:
        return self.why_not

    def to_dict(self, n_layer: int | None = None) -> dict[str, Any]:
        """Flat: the fields `fitbench plan --json` prints for each placement."""
        pl = self.plan.placement
        return {
            "n_gpu_layers": pl.n_gpu_layers,
            "n_cpu_moe": pl.n_cpu_moe,
            "tensor_split": list(pl.tensor_split) if pl.tensor_split else None,
            "label": pl.label(n_layer),
            "vram_bytes": self.plan.vram_total,
            "vram_bytes_per_gpu": list(self.plan.vram_bytes),
            "ram_bytes": self.plan.ram_bytes,
            "rss_bytes": self.plan.rss_bytes,
            "fits": self.fits,
            "reason": self.why_not,
            "gpu_layers": self.plan.gpu_layers,
            "output_on_gpu": self.plan.output_on_gpu,
            "breakdown": dict(self.plan.breakdown),
            "basis": "predicted",
        }


def ggml_kv_type(name: str) -> int:
    try:
        return _KV_TYPES[name.lower()]
    except KeyError:
        raise ValueError(
            f"unknown KV cache type {name!r} (known: {', '.join(_KV_TYPES)})"
        ) from None


def _row_bytes(ggml_type: int, n: int) -> int:
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    return n // block * size


def _per_layer(value: Any, layer: int, default: int) -> int:
    if isinstance(value, list):
        return int(value[layer]) if layer < len(value) else default
    return int(value) if value is not None else default


@dataclass(frozen=True)
class _Hparams:
    n_layer: int
    n_embd: int
    n_head: int
    n_vocab: int
    n_ff: int
    n_expert_used: int
    head_k: int
    head_v: int
    n_head_kv: tuple[int, ...]

    def n_embd_k_gqa(self, il: int) -> int:
        return self.head_k * self.n_head_kv[il]

    def n_embd_v_gqa(self, il: int) -> int:
        return self.head_v * self.n_head_kv[il]


def _hparams(m: ModelManifest) -> _Hparams:
    n_layer = m.n_layer
    n_embd = int(m.arch_value("embedding_length", 0))
    n_head = _per_layer(m.arch_value("attention.head_count"), 0, 1) or 1
    if n_layer <= 0 or n_embd <= 0:
        raise ValueError(f"{m.source}: no block_count/embedding_length in the header")
    head_kv_raw = m.arch_value("attention.head_count_kv", n_head)
    n_vocab = int(m.arch_value("vocab_size", 0) or 0)
    if not n_vocab:
        tokens = m.metadata.get("tokenizer.ggml.tokens")
        embd = next((t for t in m.tensors if t.name == "token_embd.weight"), None)
        n_vocab = len(tokens) if isinstance(tokens, list) else (embd.shape[1] if embd else 0)
    n_ff = _per_layer(
        m.arch_value("expert_feed_forward_length") or m.arch_value("feed_forward_length"),
        0,
        4 * n_embd,
    )
    return _Hparams(
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_vocab=n_vocab,
        n_ff=n_ff,
        n_expert_used=max(1, m.n_expert_used),
        head_k=int(m.arch_value("attention.key_length", n_embd // n_head)),
        head_v=int(m.arch_value("attention.value_length", n_embd // n_head)),
        n_head_kv=tuple(_per_layer(head_kv_raw, il, n_head) for il in range(n_layer)),
    )


def kv_cells(n_ctx: int, n_parallel: int = 1) -> int:
    """Cells llama.cpp allocates for n_parallel sequences of n_ctx tokens each (non-unified KV:
    the context passed to llama.cpp is n_ctx * n_parallel; each stream is padded to 256)."""
    total = math.ceil(n_ctx * n_parallel / 256) * 256
    per_stream = math.ceil(total // n_parallel / 256) * 256
    return per_stream * n_parallel


def kv_bytes_per_layer(
    manifest: ModelManifest, cells: int, type_k: str = "f16", type_v: str = "f16"
) -> list[int]:
    """K + V cache bytes of each layer for `cells` KV cells."""
    hp = _hparams(manifest)
    tk, tv = ggml_kv_type(type_k), ggml_kv_type(type_v)
    return [
        (_row_bytes(tk, hp.n_embd_k_gqa(il)) + _row_bytes(tv, hp.n_embd_v_gqa(il))) * cells
        for il in range(hp.n_layer)
    ]


def kv_bytes_per_token(manifest: ModelManifest, type_k: str = "f16", type_v: str = "f16") -> int:
    hp = _hparams(manifest)
    tk, tv = ggml_kv_type(type_k), ggml_kv_type(type_v)
    return sum(
        _row_bytes(tk, hp.n_embd_k_gqa(il)) + _row_bytes(tv, hp.n_embd_v_gqa(il))
        for il in range(hp.n_layer)
    )


def compute_buffer_bytes(hp: _Hparams, n_kv: int, n_tokens: int, flash_attn: bool) -> int:
    """One backend's compute buffer for a full graph (calibrated constants above)."""
    e_kv = max(hp.n_embd_k_gqa(il) for il in range(hp.n_layer))
    shared = COMPUTE_ATTN_EMBD_F32 * hp.n_embd + COMPUTE_ATTN_EMBD_KV_F32 * e_kv
    mask = (2 if flash_attn else 4) * n_kv
    attention = mask + shared + (0 if flash_attn else 4 * n_kv * hp.n_head)
    ffn = 4 * (COMPUTE_FFN_FF_F32 * hp.n_ff * hp.n_expert_used + COMPUTE_FFN_EMBD_F32 * hp.n_embd)
    output = 4 * (hp.n_vocab + COMPUTE_OUTPUT_EMBD_F32 * hp.n_embd)
    return n_tokens * max(attention, ffn + mask, output)


def _tensor_device(t: TensorInfo, layer_dev: list[int | None], p: Placement) -> int | None:
    n_layer = len(layer_dev) - 1
    if t.name.startswith("token_embd"):
        return None
    layer = t.layer
    if layer is None:
        return layer_dev[n_layer]
    if t.is_expert and layer < p.n_cpu_moe:
        return None
    return layer_dev[min(layer, n_layer - 1)]


def plan(
    manifest: ModelManifest,
    placement: Placement,
    n_ctx: int,
    n_parallel: int = 1,
    type_k: str = "f16",
    type_v: str = "f16",
    flash_attn: bool = False,
    n_ubatch: int = 512,
    *,
    n_gpus: int | None = None,
    gpu_runtime_bytes: int | None = None,
    host_runtime_bytes: int = HOST_RUNTIME_BYTES,
) -> MemoryPlan:
    """Bytes per device for this placement. n_gpus defaults to len(tensor_split), else 1 when
    anything is offloaded, else 0 (a CPU-only run); n_gpus=1 with n_gpu_layers=0 is a CPU run on
    a CUDA build (a CUDA context, and op offload of big batches). Split mode "tensor" plans with
    flash attention, which llama.cpp turns on for it. gpu_runtime_bytes replaces the calibrated
    per-GPU runtime (CUDA context, plus cuBLAS when the plan's batches use it)."""
    if n_ctx <= 0 or n_parallel <= 0 or n_ubatch <= 0:
        raise ValueError("n_ctx, n_parallel and n_ubatch must be positive")
    p = placement
    flash_attn = flash_attn or p.split_mode == "tensor"
    if not flash_attn and ggml_kv_type(type_v) not in (0, 1, 30):
        raise ValueError(f"a quantized V cache ({type_v}) needs flash attention in llama.cpp")
    hp = _hparams(manifest)
    if n_gpus is None:
        n_gpus = len(p.tensor_split) if p.tensor_split else (0 if p.cpu_only else 1)
    layer_dev = p.layer_devices(hp.n_layer, n_gpus)
    tp = None
    if p.split_mode == "tensor" and n_gpus > 1:
        tp = multigpu.TensorParallel(
            manifest, n_gpus, tuple(p.tensor_split or ()), hp.n_head, hp.n_head_kv,
            hp.head_k, hp.head_v,
        )  # fmt: skip
    names = ["CPU"] + [f"GPU{g}" for g in range(n_gpus)]
    dev: dict[str, dict[str, int]] = {
        n: {"weights": 0, "kv": 0, "compute": 0, "work": 0, "output": 0, "overhead": 0}
        for n in names
    }

    def key(d: int | None) -> str:
        return "CPU" if d is None else f"GPU{d}"

    cpu_tensors: list[TensorInfo] = []
    counts: dict[str, int] = manifest.extra.get(TENSOR_COUNT_KEY) or {}
    host = HostWeights()
    for t in manifest.tensors:
        d = _tensor_device(t, layer_dev, p)
        host.add(t, d, counts.get(t.name, 1))
        if tp is not None and d is not None:
            for g, part in enumerate(tp.weight_bytes(t)):
                dev[key(g)]["weights"] += part
            continue
        # row split: 2-D matrices only (expert tensors are 3-D: MUL_MAT_ID has no split buffers)
        if p.split_mode == "row" and d is not None and n_gpus > 1 and len(t.shape) == 2:
            fractions = list(p.tensor_split or (1.0,) * n_gpus)
            for g, f in enumerate(fractions[:n_gpus]):
                dev[key(g)]["weights"] += int(t.n_bytes * f / sum(fractions))
            continue
        dev[key(d)]["weights"] += t.n_bytes
        if d is None:
            cpu_tensors.append(t)
    if "output.weight" not in {t.name for t in manifest.tensors}:
        # tied embeddings: llama.cpp duplicates token_embd as the output matrix on its device
        embd = next((t for t in manifest.tensors if t.name == "token_embd.weight"), None)
        if embd is not None and layer_dev[hp.n_layer] is not None:
            owners: list[int | None] = [layer_dev[hp.n_layer]]
            if tp is not None:
                owners = list(range(n_gpus))  # mirrored on every GPU under "tensor"
            for g_owner in owners:
                dev[key(g_owner)]["weights"] += embd.n_bytes

    cells = kv_cells(n_ctx, n_parallel)
    tk, tv = ggml_kv_type(type_k), ggml_kv_type(type_v)
    for il in range(hp.n_layer):
        if tp is not None and layer_dev[il] is not None:
            for g, part in enumerate(tp.kv_bytes(il, tk, tv, cells)):
                dev[key(g)]["kv"] += part
            continue
        kv = (_row_bytes(tk, hp.n_embd_k_gqa(il)) + _row_bytes(tv, hp.n_embd_v_gqa(il))) * cells
        dev[key(layer_dev[il])]["kv"] += kv

    n_ctx_llama = n_ctx * n_parallel
    n_tokens = min(n_ubatch, n_ctx_llama)  # llama.cpp caps n_batch (and n_ubatch) at n_ctx
    n_kv_stream = cells // n_parallel
    full_graph = compute_buffer_bytes(hp, n_kv_stream, n_tokens, flash_attn)
    gpus_with_layers = {d for d in layer_dev if d is not None}
    cpu_work = 0 if flash_attn else CPU_WORK_KQ_F16 * n_kv_stream * n_tokens * hp.n_head
    if n_gpus == 0 or not gpus_with_layers:
        dev["CPU"]["compute"] = full_graph
        dev["CPU"]["work"] = cpu_work
    else:
        for g in gpus_with_layers:
            dev[key(g)]["compute"] = full_graph
        if tp is not None:  # each GPU computes its share of heads and n_ff (not calibrated)
            for g, share in enumerate(tp.shares()):
                hp_share = replace(
                    hp, n_ff=math.ceil(hp.n_ff * share), n_head=math.ceil(hp.n_head * share)
                )
                dev[key(g)]["compute"] = compute_buffer_bytes(hp_share, n_kv_stream, n_tokens, True)
        n_devices = 1 if p.split_mode in ("none", "tensor") else n_gpus
        if multigpu.uses_pipeline_parallel(
            hp.n_layer, p.n_gpu_layers, n_devices, p.split_mode, p.n_cpu_moe
        ):
            extra = multigpu.pipeline_copy_bytes(n_tokens, hp.n_embd, n_kv_stream, flash_attn)
            for g in gpus_with_layers:
                dev[key(g)]["compute"] += extra
        # host side: the input embeddings always, the whole graph if layers stay on the CPU
        any_cpu_layer = any(d is None for d in layer_dev)
        dev["CPU"]["compute"] = full_graph + cpu_work if any_cpu_layer else n_tokens * 4 * hp.n_embd
    if n_gpus:
        # a CUDA context on every GPU llama.cpp uses: with split mode "none" only main_gpu; ops
        # on host weights go to the scheduler's first GPU backend (main_gpu under "none")
        add_gpu_terms(
            dev,
            host,
            GpuShape(
                n_embd=hp.n_embd,
                n_vocab=hp.n_vocab,
                ffn_width=hp.n_ff * hp.n_expert_used,
                ffn_out=hp.n_embd * hp.n_expert_used,
            ),
            n_tokens=n_tokens,
            gpus_with_layers=gpus_with_layers,
            runtime_gpus=[p.main_gpu] if p.split_mode == "none" else list(range(n_gpus)),
            offload_gpu=p.main_gpu if p.split_mode == "none" else 0,
            output_on_host=layer_dev[hp.n_layer] is None,
            flash_attn=flash_attn,
            gpu_runtime_bytes=gpu_runtime_bytes,
        )
    dev["CPU"]["output"] = 4 * hp.n_vocab * n_parallel
    dev["CPU"]["overhead"] = host_runtime_bytes

    # RSS: the mapped file range from the first to the last CPU-resident tensor stays populated
    if cpu_tensors and manifest.data_offset is not None:
        first = min(t.offset for t in cpu_tensors)
        last = max(t.offset + t.n_bytes for t in cpu_tensors)
        mapped = last - first
    else:
        mapped = dev["CPU"]["weights"]
    host_anon = sum(v for k, v in dev["CPU"].items() if k != "weights")
    ram = dev["CPU"]["weights"] + host_anon
    rss = max(mapped, dev["CPU"]["weights"]) + host_anon
    vram = tuple(sum(dev[key(g)].values()) for g in range(n_gpus))
    breakdown = {
        k: sum(d[k] for d in dev.values())
        for k in ("weights", "kv", "compute", "work", "output", "overhead")
    }
    return MemoryPlan(
        placement=p,
        n_ctx=n_ctx,
        n_parallel=n_parallel,
        kv_cells=cells,
        vram_bytes=vram,
        ram_bytes=ram,
        rss_bytes=rss,
        breakdown=breakdown,
        devices=dev,
        gpu_layers=sum(1 for d in layer_dev[:-1] if d is not None),
        output_on_gpu=layer_dev[-1] is not None,
        layer_devices=tuple(layer_dev),
    )


__all__ = [
    "DEFAULT_RAM_HEADROOM_BYTES",
    "DEFAULT_VRAM_HEADROOM",
    "DEFAULT_VRAM_MARGIN",
    "GPU_RUNTIME_BYTES",
    "MemoryPlan",
    "Placement",
    "PlacementPlan",
    "compact_manifest",
    "compute_buffer_bytes",
    "kv_bytes_per_layer",
    "kv_bytes_per_token",
    "kv_cells",
    "plan",
]
