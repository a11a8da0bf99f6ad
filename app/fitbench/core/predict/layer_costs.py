"""What one forward step of a model costs per block: bytes to read and multiply-adds to do.

The speed predictor needs, for each transformer block, the bytes of its non-expert weights (read
in full every step), the bytes of its routed experts (only the touched ones are read), and the
parameter counts behind them (compute). A `LayerCosts` is built from a tensor manifest (exact:
a real header, or the offline manifest of a catalog quant) or, when no manifest can be had, from
the catalog's architecture scaled to the file size (an estimate, and labelled as one).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from fitbench.core.gguf.manifest import ModelManifest
from fitbench.core.model.catalog import Arch, Model

log = logging.getLogger(__name__)

KV_BYTES_F16 = 2


@dataclass(frozen=True)
class BlockCost:
    dense_bytes: int  # attention, norms, router: read in full every step
    expert_bytes: int  # every routed expert of the block (0 for a dense model)
    dense_params: int
    expert_params: int


@dataclass(frozen=True)
class LayerCosts:
    label: str
    blocks: tuple[BlockCost, ...]
    output_bytes: int  # llama.cpp's "output layer": the output projection and its norm
    output_params: int
    n_expert: int
    n_expert_used: int
    n_embd: int
    kv_bytes_per_token_per_layer: int  # f16 K + V of one token in one block
    basis: str  # "manifest" or "catalog estimate"
    n_layer_model: int = 0  # full depth when these costs describe a scaled twin

    @property
    def n_layer(self) -> int:
        return len(self.blocks)

    @property
    def is_moe(self) -> bool:
        return self.n_expert > 0

    @property
    def weights_bytes(self) -> int:
        return self.output_bytes + sum(b.dense_bytes + b.expert_bytes for b in self.blocks)

    @property
    def active_bytes_per_token(self) -> float:
        """Weights read to generate one token alone (top-k of n experts)."""
        share = self.n_expert_used / self.n_expert if self.is_moe else 1.0
        return self.output_bytes + sum(b.dense_bytes + b.expert_bytes * share for b in self.blocks)

    @property
    def active_params_per_token(self) -> float:
        share = self.n_expert_used / self.n_expert if self.is_moe else 1.0
        return self.output_params + sum(
            b.dense_params + b.expert_params * share for b in self.blocks
        )

    def scaled_to(self, n_layer: int) -> LayerCosts:
        """The model at another depth: its average block repeated (extrapolates to full depth)."""
        if n_layer < 1:
            raise ValueError(f"{self.label}: cannot scale to {n_layer} layers")
        n = self.n_layer
        mean = BlockCost(
            dense_bytes=round(sum(b.dense_bytes for b in self.blocks) / n),
            expert_bytes=round(sum(b.expert_bytes for b in self.blocks) / n),
            dense_params=round(sum(b.dense_params for b in self.blocks) / n),
            expert_params=round(sum(b.expert_params for b in self.blocks) / n),
        )
        return replace(self, blocks=(mean,) * n_layer, n_layer_model=0)


def from_manifest(manifest: ModelManifest, label: str = "") -> LayerCosts:
    n_layer = manifest.n_layer
    if n_layer < 1:
        raise ValueError(f"{manifest.source}: the manifest has no block count")
    dense_b = [0] * n_layer
    expert_b = [0] * n_layer
    dense_p = [0] * n_layer
    expert_p = [0] * n_layer
    output_bytes = output_params = 0
    for t in manifest.tensors:
        layer = t.layer
        if layer is None:
            # token_embd is a row lookup, not a matmul: one row per token, negligible; the rest
            # (output matrix, output_norm) lives with llama.cpp's output layer
            if not t.name.startswith("token_embd"):
                output_bytes += t.n_bytes
            if t.name.startswith("output."):
                output_params += t.n_elements
            continue
        if layer >= n_layer:
            raise ValueError(f"{manifest.source}: tensor {t.name} beyond block_count {n_layer}")
        if t.is_expert:
            expert_b[layer] += t.n_bytes
            expert_p[layer] += t.n_elements
        else:
            dense_b[layer] += t.n_bytes
            dense_p[layer] += t.n_elements
    n_embd = int(manifest.arch_value("embedding_length", 0))
    n_head = int(manifest.arch_value("attention.head_count", 1)) or 1
    n_head_kv = manifest.arch_value("attention.head_count_kv", n_head)
    if isinstance(n_head_kv, list):  # per-layer head counts: take the largest, a safe bound
        n_head_kv = max(n_head_kv)
    head_dim = n_embd // n_head if n_head else 0
    blocks = tuple(
        BlockCost(dense_b[i], expert_b[i], dense_p[i], expert_p[i]) for i in range(n_layer)
    )
    return LayerCosts(
        label=label or manifest.source,
        blocks=blocks,
        output_bytes=output_bytes,
        output_params=output_params,
        n_expert=manifest.n_expert,
        n_expert_used=manifest.n_expert_used,
        n_embd=n_embd,
        kv_bytes_per_token_per_layer=2 * int(n_head_kv) * head_dim * KV_BYTES_F16,
        basis="manifest",
        n_layer_model=int(manifest.extra.get("n_layer_model", 0) or 0),
    )


def from_arch(arch: Arch, file_bytes: int, label: str = "") -> LayerCosts:
    """An estimate: parameter counts from the architecture, one average bits-per-weight."""
    head_dim = arch.head_dim
    kv_dim = arch.n_head_kv * head_dim
    attn = 2 * arch.n_embd * arch.n_embd + 2 * arch.n_embd * kv_dim + 2 * arch.n_embd
    ffn = 3 * arch.n_embd * arch.n_ff
    if arch.is_moe:
        dense_p, expert_p = attn + arch.n_embd * arch.n_expert, ffn * arch.n_expert
    else:
        dense_p, expert_p = attn + ffn, 0
    embd = arch.n_vocab * arch.n_embd
    total = arch.n_layer * (dense_p + expert_p) + 2 * embd
    if total <= 0 or file_bytes <= 0:
        raise ValueError(f"{label or arch.architecture}: no parameters or no file size to scale")
    bytes_per_param = file_bytes / total
    block = BlockCost(
        dense_bytes=round(dense_p * bytes_per_param),
        expert_bytes=round(expert_p * bytes_per_param),
        dense_params=dense_p,
        expert_params=expert_p,
    )
    return LayerCosts(
        label=label or arch.architecture,
        blocks=(block,) * arch.n_layer,
        output_bytes=round(embd * bytes_per_param),
        output_params=embd,
        n_expert=arch.n_expert,
        n_expert_used=arch.n_expert_used,
        n_embd=arch.n_embd,
        kv_bytes_per_token_per_layer=2 * kv_dim * KV_BYTES_F16,
        basis="catalog estimate",
    )


def catalog_costs(model: Model, quant: str, layers: int | None = None) -> LayerCosts:
    """Costs of a catalog quant: its offline manifest (exact), else an estimate from the arch.

    With `layers`, the scaled twin of that many blocks (what a scaled-twin record measured).
    """
    label = f"{model.id}/{quant}"
    try:
        from fitbench.core.twin import writer as twin

        return from_manifest(twin.manifest_for(model, quant, layers=layers), label)
    except (ImportError, ValueError, KeyError) as exc:
        log.debug("no manifest for %s (%s): estimating from the catalog", label, exc)
    costs = from_arch(model.arch, model.quant(quant).size, label)
    return costs if layers is None else costs.scaled_to(layers)
