"""Several GPUs: how this llama.cpp shares a model between devices, and splits that fit each one.

The rules follow the llama.cpp vendored in llama-cpp-python 0.3.36 (paths under its src/ and
ggml/src/), bit for bit where they are arithmetic:

- split_mode "layer" (llama-model.cpp `load_tensors`): the offloaded layers (the repeating blocks
  plus the output layer, index n_layer) go to devices by cumulative, normalised `tensor_split`
  computed in float32; layer il goes to the first device whose split point is > (il - start) /
  n_offloaded. An all-zero or absent tensor_split means each device's *free* memory at load time.
  The output layer is simply the last offloaded layer, so it lands on the last device with layers.
  `main_gpu` is ignored. The KV cache of a layer lives with the layer.
- split_mode "none" (llama.cpp `llama_prepare_model_devices`): only `main_gpu` is a device.
- split_mode "row": layers are assigned exactly as for "layer" (`get_layer_buft_list` does not
  look at the split mode), matrices go to the device's split buffer type. The CUDA backend of
  this llama.cpp has no split buffers any more (ggml-org/llama.cpp#24216, "CUDA: remove -sm row"):
  the load fails with "device CUDA0 does not support split buffers". See ROW_SPLIT_CUDA.
- split_mode "tensor" (tensor parallelism through a meta device, llama-model.cpp
  `llama_meta_device_get_split_state`): every offloaded tensor is cut along one axis (attention by
  heads, FFN by n_ff, output by vocab rows) in proportion to tensor_split (all zero: equal parts),
  rounded down to a granularity, with the rounding rotated by layer; norms and the MoE router are
  mirrored on every GPU; the KV cache is cut by KV heads. Flash attention is required.
- Pipeline parallelism (llama-context.cpp): with several devices, split_mode "layer", every layer
  offloaded and no tensor overrides (n_cpu_moe is one), the scheduler keeps GGML_SCHED_MAX_COPIES
  (4) copies of every input of a device's graph splits (ggml-backend.cpp, n_copies).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from fitbench.core.gguf.manifest import ModelManifest, TensorInfo
from fitbench.core.plan.placement import (
    SPLIT_MODES,
    Placement,
    SplitError,
    check_split,
    split_points,
)

if TYPE_CHECKING:
    from fitbench.core.plan.memory import MemoryPlan

SCHED_MAX_COPIES = 4  # ggml's GGML_SCHED_MAX_COPIES default (ggml/CMakeLists.txt)
ROW_SPLIT_CUDA = (
    "split mode 'row' does not load on CUDA with this llama.cpp (llama-cpp-python 0.3.36): "
    "its CUDA backend dropped split buffers (ggml-org/llama.cpp#24216) and the load fails with "
    "'device CUDA0 does not support split buffers'; use split mode 'layer' or 'tensor'"
)


def default_tensor_split(free_bytes: Sequence[int]) -> tuple[float, ...]:
    """What llama.cpp uses when tensor_split is absent or all zero: each GPU's free memory."""
    return tuple(float(f) for f in free_bytes)


def layer_devices(
    n_layer: int,
    n_gpu_layers: int,
    n_gpus: int,
    split_mode: str = "layer",
    main_gpu: int = 0,
    tensor_split: Sequence[float] | None = None,
) -> list[int | None]:
    """Device of layers 0..n_layer (the last one is the output layer): a GPU index or None (CPU);
    Placement.layer_devices holds the rule."""
    split = tuple(tensor_split) if tensor_split is not None else None
    return Placement(n_gpu_layers, 0, split, main_gpu, split_mode).layer_devices(n_layer, n_gpus)


def layers_per_gpu(devices: Sequence[int | None], n_gpus: int) -> list[int]:
    """Offloaded layers (blocks and the output layer) on each GPU."""
    return [sum(1 for d in devices if d == g) for g in range(n_gpus)]


def uses_pipeline_parallel(
    n_layer: int, n_gpu_layers: int, n_devices: int, split_mode: str, n_cpu_moe: int
) -> bool:
    """llama-context.cpp: several devices, layer split, every layer offloaded, KV offloaded,
    no tensor overrides (n_cpu_moe is implemented as one). CUDA has async compute and events."""
    all_offloaded = Placement(n_gpu_layers).all_on_gpu(n_layer)
    return n_devices > 1 and all_offloaded and split_mode == "layer" and n_cpu_moe == 0


def pipeline_copy_bytes(n_tokens: int, n_embd: int, n_kv: int, flash_attn: bool) -> int:
    """Extra compute-buffer bytes on each GPU under pipeline parallelism: the (copies - 1) extra
    copies of a split's inputs (the hidden state from the previous device, the KQ mask, the
    positions), kept alive for the whole graph. Derived from ggml-backend.cpp, not calibrated."""
    mask = (2 if flash_attn else 4) * n_kv
    per_token = 4 * n_embd + mask + 4
    return (SCHED_MAX_COPIES - 1) * n_tokens * per_token


# --- tensor parallelism (split_mode "tensor") ------------------------------------------------

_LAYER = re.compile(r"^blk\.(\d+)\.(.+)$")
# (pattern on the name after "blk.N.", split axis, tensor whose block size sets the granularity,
# granularity kind); anything else is mirrored on every GPU
_TP_RULES: tuple[tuple[re.Pattern[str], int, str, str], ...] = (
    (re.compile(r"^attn_q\.weight$"), 1, "attn_output.weight", "q"),
    (re.compile(r"^attn_k\.weight$"), 1, "attn_output.weight", "kv"),
    (re.compile(r"^attn_v\.weight$"), 1, "attn_output.weight", "v"),
    (re.compile(r"^attn_output\.weight$"), 0, "attn_output.weight", "out"),
    (re.compile(r"^ffn_(up|gate)\.weight$"), 1, "ffn_down.weight", "ffn"),
    (re.compile(r"^ffn_(up|gate)_exps\.weight$"), 1, "ffn_down_exps.weight", "ffn"),
    (re.compile(r"^ffn_down\.weight$"), 0, "ffn_down.weight", "ffn"),
    (re.compile(r"^ffn_down_exps\.weight$"), 0, "ffn_down_exps.weight", "ffn"),
)


def _block_size(ggml_type: int) -> int:
    return int(GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)][0])


def _row_bytes(ggml_type: int, n: int) -> int:
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    return n // block * size


@dataclass(frozen=True)
class TensorParallel:
    """How split_mode "tensor" cuts each tensor of a llama-architecture model across n GPUs."""

    manifest: ModelManifest
    n_gpus: int
    tensor_split: tuple[float, ...]  # all zero or empty: equal parts (llama.cpp's default here)
    n_head: int
    n_head_kv: tuple[int, ...]  # per layer
    head_k: int
    head_v: int

    def __post_init__(self) -> None:
        types = {t.name: t.ggml_type for t in self.manifest.tensors}
        object.__setattr__(self, "_types", types)

    def _type_of(self, name: str, fallback: int) -> int:
        types: dict[str, int] = self.__dict__["_types"]
        return types.get(name, fallback)

    def _granularity(self, kind: str, il: int, block: int) -> int:
        if kind == "ffn":
            return math.lcm(block, 128)
        n_gqa = max(1, self.n_head // max(1, self.n_head_kv[il]))
        n_embd_q = n_gqa * self.head_k
        perf = block
        # "to handle head sizes like 80, only increase granularity while it doesn't cause
        # underutilization" (llama-model.cpp get_split_granularity)
        while perf < 128 and perf * self.n_gpus < n_embd_q:
            perf *= 2
        g_q = math.lcm(n_embd_q, perf)
        g_head = g_q // self.head_k
        g_kv = g_q // n_gqa
        return {
            "q": g_q,
            "out": g_head * self.head_v,
            "kv": g_kv,
            "v": (g_kv // self.head_k) * self.head_v,
        }[kind]

    def cut(self, ne: int, granularity: int, rotation: int) -> list[int]:
        """Elements of one axis on each GPU (llama_meta_device_get_split_state)."""
        n = self.n_gpus
        shares = list(self.tensor_split[:n]) + [0.0] * max(0, n - len(self.tensor_split))
        scan: list[np.float32] = []
        for j in range(n):
            value = np.float32(shares[(j + rotation) % n])
            scan.append(np.float32(scan[-1] + value) if scan else value)
        out = [0] * n
        low = 0
        for j in range(n - 1):
            if scan[-1] == 0:
                high = ne * (j + 1) // n
            else:
                high = int(np.float32(np.float32(ne) * scan[j]) / scan[-1])
            high -= high % granularity
            out[(j + rotation) % n] = high - low
            low = high
        out[(n - 1 + rotation) % n] = ne - low
        return out

    def weight_bytes(self, t: TensorInfo) -> list[int]:
        """Bytes of one offloaded tensor on each GPU."""
        n = self.n_gpus
        m = _LAYER.match(t.name)
        if m is None:
            if t.name != "output.weight":
                return [t.n_bytes] * n  # output_norm, a duplicated tied embedding: mirrored
            parts = self.cut(t.shape[1], 1, self.manifest.n_layer % n)
            return [t.n_bytes * p // t.shape[1] for p in parts]
        il, rest = int(m.group(1)), m.group(2)
        for pattern, axis, ref, kind in _TP_RULES:
            if pattern.match(rest):
                block = _block_size(self._type_of(f"blk.{il}.{ref}", t.ggml_type))
                g = self._granularity(kind, il, block)
                parts = self.cut(t.shape[axis], g, il % n)
                return [t.n_bytes * p // t.shape[axis] for p in parts]
        return [t.n_bytes] * n  # norms, the MoE router: mirrored

    def kv_bytes(self, il: int, type_k: int, type_v: int, cells: int) -> list[int]:
        """One layer's K and V cache on each GPU: cut by KV heads (cache_k_l / cache_v_l)."""
        ref = self._type_of(f"blk.{il}.attn_output.weight", 0)
        block = _block_size(ref)
        n = self.n_gpus
        k = self.cut(self.head_k * self.n_head_kv[il], self._granularity("kv", il, block), il % n)
        v = self.cut(self.head_v * self.n_head_kv[il], self._granularity("v", il, block), il % n)
        return [(_row_bytes(type_k, k[g]) + _row_bytes(type_v, v[g])) * cells for g in range(n)]

    def shares(self) -> list[float]:
        """Each GPU's share of the cut tensors (for the compute-buffer estimate)."""
        n = self.n_gpus
        s = list(self.tensor_split[:n]) + [0.0] * max(0, n - len(self.tensor_split))
        total = sum(s)
        return [x / total for x in s] if total > 0 else [1.0 / n] * n


# --- per-GPU fit and splits that fit -----------------------------------------------------------


@dataclass(frozen=True)
class GpuFit:
    index: int
    need_bytes: int
    have_bytes: int
    usable_bytes: int  # have minus the headroom
    layers: int  # offloaded layers on this GPU (split modes layer/none)

    @property
    def fits(self) -> bool:
        return self.need_bytes <= self.usable_bytes

    @property
    def spare_bytes(self) -> int:
        return self.usable_bytes - self.need_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpu": self.index,
            "need_bytes": self.need_bytes,
            "have_bytes": self.have_bytes,
            "usable_bytes": self.usable_bytes,
            "layers": self.layers,
            "fits": self.fits,
            "basis": "predicted",
        }


def gpu_fits(plan: MemoryPlan, gpus_vram_bytes: Sequence[int], headroom: float) -> list[GpuFit]:
    """Need vs usable VRAM (after `headroom`, a fraction) on each GPU of a plan."""
    pl = plan.placement
    n = len(gpus_vram_bytes)
    n_layer = len(plan.layer_devices) - 1 if plan.layer_devices else 0
    if pl.split_mode == "tensor":
        counts = pl.layers_per_gpu(n_layer, n)
    else:
        counts = layers_per_gpu(plan.layer_devices, n)
    return [
        GpuFit(
            index=g,
            need_bytes=plan.vram_bytes[g] if g < len(plan.vram_bytes) else 0,
            have_bytes=int(have),
            usable_bytes=int(have * (1 - headroom)),
            layers=counts[g],
        )
        for g, have in enumerate(gpus_vram_bytes)
    ]


def placement_problem(placement: Placement, n_gpus: int, backend: str = "cuda") -> str:
    """Why llama.cpp would refuse this placement outright, or ""."""
    try:
        check_split(placement.split_mode, n_gpus, placement.main_gpu)
    except SplitError as exc:
        return str(exc)
    if placement.split_mode == "row" and n_gpus > 1 and backend == "cuda":
        return ROW_SPLIT_CUDA
    return ""


@dataclass(frozen=True)
class SplitProposal:
    tensor_split: tuple[float, ...] | None  # None: nothing to split (one GPU, or nothing offloaded)
    plan: MemoryPlan
    gpus: tuple[GpuFit, ...]

    @property
    def fits(self) -> bool:
        return all(g.fits for g in self.gpus)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tensor_split": list(self.tensor_split) if self.tensor_split else None,
            "split_mode": self.plan.placement.split_mode,
            "fits_every_gpu": self.fits,
            "gpus": [g.to_dict() for g in self.gpus],
            "basis": "predicted",
        }


def _layer_costs(manifest: ModelManifest, n_cpu_moe: int, kv_per_layer: Sequence[int]) -> list[int]:
    """GPU bytes each offloadable layer brings (weights on the GPU + its KV cache); the last entry
    is the output layer (with a tied embedding duplicated onto it)."""
    n_layer = manifest.n_layer
    costs = [0] * (n_layer + 1)
    names = set()
    for t in manifest.tensors:
        names.add(t.name)
        layer = t.layer
        if t.name.startswith("token_embd"):
            continue
        if layer is None:
            costs[n_layer] += t.n_bytes
        elif not (t.is_expert and layer < n_cpu_moe):
            costs[min(layer, n_layer - 1)] += t.n_bytes
    if "output.weight" not in names:
        costs[n_layer] += sum(t.n_bytes for t in manifest.tensors if t.name == "token_embd.weight")
    for il in range(n_layer):
        costs[il] += kv_per_layer[il]
    return costs


def _greedy_counts(costs: Sequence[int], fixed: int, usable: Sequence[int]) -> list[int]:
    """Layer counts per GPU, in order, that spread the load so the fullest GPU (need / usable) is
    as empty as can be: bisect on the fill fraction f, each GPU takes layers up to f * usable."""

    def fill(f: float) -> list[int] | None:
        counts, i = [], 0
        for cap in usable:
            room = f * cap - fixed
            load, taken = 0, 0
            while i < len(costs) and load + costs[i] <= room:
                load += costs[i]
                i += 1
                taken += 1
            counts.append(taken)
        return counts if i == len(costs) else None

    lo, hi = 0.0, 1.0
    while fill(hi) is None:
        hi *= 2
        if hi > 1e6:
            return [len(costs)] + [0] * (len(usable) - 1)
    for _ in range(50):
        mid = (lo + hi) / 2
        if fill(mid) is None:
            lo = mid
        else:
            hi = mid
    result = fill(hi)
    assert result is not None
    return result


def propose_split(
    manifest: ModelManifest,
    gpus_vram_bytes: Sequence[int],
    placement: Placement,
    n_ctx: int,
    n_parallel: int = 1,
    *,
    vram_headroom: float = 0.05,
    **plan_kwargs: Any,
) -> SplitProposal:
    """The tensor_split for `placement` that leaves the most spare room on the fullest GPU.

    split_mode "layer": layer counts per GPU (llama.cpp maps a split of k0:k1:... to exactly k0
    layers on GPU0, k1 on GPU1, ...), chosen so that every GPU is filled to the same fraction of
    its usable VRAM; the result is re-planned and each GPU checked. split_mode "tensor": shares
    proportional to each GPU's usable VRAM after its runtime. Other modes are planned as given.
    """
    from fitbench.core.plan import memory  # memory imports this module for its placement rules

    n = len(gpus_vram_bytes)
    usable = [int(v * (1 - vram_headroom)) for v in gpus_vram_bytes]

    def finish(pl: Placement) -> SplitProposal:
        mp = memory.plan(manifest, pl, n_ctx, n_parallel, n_gpus=n, **plan_kwargs)
        return SplitProposal(
            pl.tensor_split, mp, tuple(gpu_fits(mp, gpus_vram_bytes, vram_headroom))
        )

    act = placement.offloaded(manifest.n_layer)
    if n < 2 or act == 0 or placement.split_mode in ("none", "row"):
        return finish(placement)
    runtime = plan_kwargs.get("gpu_runtime_bytes")  # None: the calibrated CUDA context
    runtime = memory.GPU_RUNTIME_BYTES if runtime is None else int(runtime)
    if placement.split_mode == "tensor":
        shares = tuple(float(max(u - runtime, 1)) for u in usable)
        return finish(_with_split(placement, shares))
    # fixed per-GPU costs (compute buffer, runtime, pipeline copies) from an equal-split plan
    ref = memory.plan(
        manifest, _with_split(placement, (1.0,) * n), n_ctx, n_parallel, n_gpus=n, **plan_kwargs
    )
    fixed = max(
        sum(v for k, v in ref.devices[f"GPU{g}"].items() if k not in ("weights", "kv"))
        for g in range(n)
    )
    kv_per_layer = memory.kv_bytes_per_layer(
        manifest, ref.kv_cells, plan_kwargs.get("type_k", "f16"), plan_kwargs.get("type_v", "f16")
    )
    n_cpu_moe = placement.n_cpu_moe if placement.n_cpu_moe >= 0 else manifest.n_layer
    costs = _layer_costs(manifest, n_cpu_moe, kv_per_layer)[manifest.n_layer + 1 - act :]
    counts = _greedy_counts(costs, fixed, usable)
    best = finish(_with_split(placement, tuple(float(c) for c in counts)))
    if best.fits:
        return best
    # the greedy works on estimates: try moving single layers between neighbours
    for g in range(n - 1):
        for delta in (-1, 1):
            moved = list(counts)
            moved[g] -= delta
            moved[g + 1] += delta
            if min(moved) < 0:
                continue
            trial = finish(_with_split(placement, tuple(float(c) for c in moved)))
            if trial.fits or _worst(trial) < _worst(best):
                best = trial
    return best


def _worst(p: SplitProposal) -> float:
    return max(g.need_bytes / max(g.usable_bytes, 1) for g in p.gpus)


def _with_split(placement: Placement, split: tuple[float, ...]) -> Placement:
    from dataclasses import replace

    return replace(placement, tensor_split=split)


__all__ = [
    "ROW_SPLIT_CUDA",
    "SCHED_MAX_COPIES",
    "SPLIT_MODES",
    "GpuFit",
    "SplitError",
    "SplitProposal",
    "TensorParallel",
    "check_split",
    "default_tensor_split",
    "gpu_fits",
    "layer_devices",
    "layers_per_gpu",
    "pipeline_copy_bytes",
    "placement_problem",
    "propose_split",
    "split_points",
    "uses_pipeline_parallel",
]
