"""Several GPUs: how this llama.cpp shares a model between devices, and splits that fit each one.

The rules follow the llama.cpp vendored in llama-cpp-python 0.3.36 (paths under its src/ and
ggml/src/), bit for bit where they are arithmetic:

- split_mode "layer" (llama-model.cpp `load_tensors`): the offloaded layers (the repeating blocks
  plus the output layer, index n_layer) go to devices by cumulative, normalised `tensor_split`
  computed in float32; layer il goes to the first device whose split point is > (il - start) /
  offloaded (Placement.offloaded). An all-zero or absent tensor_split means each device's *free*
  memory at load time.
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
from typing import Protocol

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


# --- what llama.cpp refuses -------------------------------------------------------------------


class SplitSettings(Protocol):
    """The split fields of a placement (this module sits below the planner and its types)."""

    @property
    def split_mode(self) -> str: ...

    @property
    def main_gpu(self) -> int: ...


def placement_problem(placement: SplitSettings, n_gpus: int, backend: str = "cuda") -> str:
    """Why llama.cpp would refuse this placement outright, or ""."""
    try:
        check_split(placement.split_mode, n_gpus, placement.main_gpu)
    except SplitError as exc:
        return str(exc)
    if placement.split_mode == "row" and n_gpus > 1 and backend == "cuda":
        return ROW_SPLIT_CUDA
    return ""


__all__ = [
    "ROW_SPLIT_CUDA",
    "SCHED_MAX_COPIES",
    "SPLIT_MODES",
    "SplitError",
    "TensorParallel",
    "check_split",
    "default_tensor_split",
    "layer_devices",
    "layers_per_gpu",
    "pipeline_copy_bytes",
    "placement_problem",
    "split_points",
    "uses_pipeline_parallel",
]
