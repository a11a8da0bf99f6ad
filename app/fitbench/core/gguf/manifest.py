"""The tensor manifest of a GGUF model: what the header says, whoever read it.

One structure for a header parsed from a local file, a header read from the Hub over HTTP ranges,
and a manifest built offline from catalog architecture + llama.cpp's quantization rules (twins).
The memory planner, the twin writer and the compatibility check all work on it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

_LAYER = re.compile(r"^blk\.(\d+)\.")
# merged expert tensors (ffn_gate_exps...) and the old per-expert layout (ffn_gate.3.weight)
_EXPERT = re.compile(r"^blk\.\d+\.ffn_(gate|up|down)(_exps|\.\d+)\.")
_SHARED_EXPERT = re.compile(r"^blk\.\d+\.ffn_(gate|up|down)_shexp\.")


def type_name(ggml_type: int) -> str:
    try:
        return GGMLQuantizationType(ggml_type).name
    except ValueError:
        return f"unknown({ggml_type})"


def tensor_nbytes(shape: tuple[int, ...], ggml_type: int) -> int:
    """Bytes of a tensor of this shape and type (ggml's row-wise block layout)."""
    block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    n = 1
    for dim in shape:
        n *= dim
    if shape and shape[0] % block_size:
        raise ValueError(f"row length {shape[0]} is not a multiple of the block size {block_size}")
    return n // block_size * type_size


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order: ne[0] (the row length) first
    ggml_type: int
    offset: int  # from the start of the tensor data section
    n_bytes: int

    @property
    def type_name(self) -> str:
        return type_name(self.ggml_type)

    @property
    def layer(self) -> int | None:
        m = _LAYER.match(self.name)
        return int(m.group(1)) if m else None

    @property
    def is_expert(self) -> bool:
        """Routed-expert weights: what llama.cpp's n_cpu_moe / `-ot exps=CPU` keep on the CPU."""
        return bool(_EXPERT.match(self.name)) and not _SHARED_EXPERT.match(self.name)

    @property
    def n_elements(self) -> int:
        n = 1
        for dim in self.shape:
            n *= dim
        return n


@dataclass(frozen=True)
class ModelManifest:
    source: str  # a path, a Hub URL, or "manifest:<model id>/<quant>" for built-in manifests
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    version: int = 3
    alignment: int = 32
    data_offset: int | None = None  # where tensor data starts in the file (None if not a file)
    file_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def arch_value(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}", default)

    @property
    def n_layer(self) -> int:
        return int(self.arch_value("block_count", 0))

    @property
    def n_expert(self) -> int:
        return int(self.arch_value("expert_count", 0) or 0)

    @property
    def n_expert_used(self) -> int:
        return int(self.arch_value("expert_used_count", 0) or 0)

    @property
    def weights_bytes(self) -> int:
        return sum(t.n_bytes for t in self.tensors)

    @property
    def n_params(self) -> int:
        return sum(t.n_elements for t in self.tensors)

    def layer_tensors(self, layer: int) -> tuple[TensorInfo, ...]:
        return tuple(t for t in self.tensors if t.layer == layer)

    def layer_bytes(self, layer: int, experts: bool | None = None) -> int:
        """Bytes of one block; experts=True/False counts only expert/non-expert tensors."""
        return sum(
            t.n_bytes
            for t in self.tensors
            if t.layer == layer and (experts is None or t.is_expert == experts)
        )

    @property
    def is_twin(self) -> bool:
        return bool(self.metadata.get("fitbench.twin", False))
