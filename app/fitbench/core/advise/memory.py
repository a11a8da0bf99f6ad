"""VRAM and RAM of each deployment the advice weighs: the memory planner of `fitbench plan`.

The advice and `fitbench plan` must agree on what fits, so the advice asks the same planner
(fitbench.core.plan.memory.plan) on the same tensor manifest: the downloaded real file's header when
the file is on this machine, else the built-in manifest of the catalog quant (architecture +
llama.cpp's quantization rules; `fitbench plan --offline` uses the same). Only a quant with no
manifest at all falls back to a coarse estimate, and the advice says which ones did.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from fitbench.core import gguf
from fitbench.core.gguf.manifest import ModelManifest
from fitbench.core.model.catalog import Model
from fitbench.core.plan import memory
from fitbench.core.plan.margin import MarginLike
from fitbench.core.plan.placement import Placement
from fitbench.core.plan.search import propose_split
from fitbench.core.predict.layer_costs import LayerCosts
from fitbench.core.twin import resolve
from fitbench.core.twin.resolve import ManifestSource
from fitbench.core.twin.writer import TwinError

log = logging.getLogger(__name__)

# (model, quant, costs, placement, ctx, n_parallel) -> (VRAM bytes, RAM bytes)
MemoryFn = Callable[[Model, str, LayerCosts, Placement, int, int], tuple[int, int]]

SOURCE_FILE = "the downloaded file's header"
SOURCE_BUILTIN = "the built-in manifest (catalog architecture + llama.cpp quant rules)"
SOURCE_ESTIMATE = "a coarse estimate (no tensor manifest for this quant)"
SOURCE_WORDS = {
    ManifestSource.FILE: SOURCE_FILE,
    ManifestSource.REMOTE: "the Hub file's header",
    ManifestSource.BUILTIN: SOURCE_BUILTIN,
}

# the coarse estimate's runtime terms (only for quants without a manifest)
_GPU_RUNTIME_BYTES = memory.GPU_RUNTIME_BYTES
_HOST_RUNTIME_BYTES = 512 * 1024**2  # the Python process, llama.cpp and the vocabulary


def estimate_memory(
    model: Model, quant: str, costs: LayerCosts, placement: Placement, ctx: int, n_parallel: int
) -> tuple[int, int]:
    """Bytes per side without a tensor manifest: weights where they live, KV cache, buffers.

    Coarse (compute buffers from the logits and attention scores of one 512-token ubatch); the
    planner replaces it wherever a manifest can be had.
    """
    n = costs.n_layer
    first_gpu = n - placement.blocks_on_gpu(n)
    vram = ram = 0.0
    kv_block = ctx * n_parallel * costs.kv_bytes_per_token_per_layer
    for i, b in enumerate(costs.blocks):
        on_gpu = i >= first_gpu
        experts_gpu = on_gpu and i >= placement.experts_on_cpu(n)
        vram += (b.dense_bytes + kv_block) if on_gpu else 0
        ram += 0 if on_gpu else b.dense_bytes + kv_block
        vram += b.expert_bytes if experts_gpu else 0
        ram += 0 if experts_gpu else b.expert_bytes
    n_vocab = costs.output_params // max(costs.n_embd, 1)
    # token embeddings stay on the host (a row lookup); same size as the output matrix here
    ram += costs.output_bytes + _HOST_RUNTIME_BYTES
    compute = 512 * n_vocab * 4 + 512 * ctx * 4 * max(costs.n_embd // 128, 1)
    if placement.output_on_gpu(n):
        vram += costs.output_bytes
    else:
        ram += costs.output_bytes
    if not placement.cpu_only:
        vram += _GPU_RUNTIME_BYTES + compute
    else:
        ram += compute
    return int(vram), int(ram)


def compact_manifest(manifest: ModelManifest) -> ModelManifest:
    """The same model for the planner with each block's tensors summed into two (non-expert,
    expert): plans are byte-identical (tests/test_advise.py checks it) and about 4x faster,
    which matters when the advice plans thousands of configurations. The planner owns the
    rules (it weighs some tensors one by one): memory.compact_manifest."""
    return memory.compact_manifest(manifest)


def default_manifest(model: Model, quant: str) -> tuple[ModelManifest, str]:
    """The downloaded file's header, else the built-in manifest (never the network: the advice
    weighs every catalog quant); a download whose header cannot be read is planned as built-in."""
    try:
        found = resolve.of_quant(model, quant)
    except (gguf.GGUFError, OSError) as exc:  # only the local file's header is read here
        log.warning(
            "cannot read %s/%s (%s); planning from the built-in manifest", model.id, quant, exc
        )
        found = resolve.builtin(model, quant)
    return found.manifest, SOURCE_WORDS[found.source]


class PlannedMemory:
    """A MemoryFn that runs fitbench.core.plan.memory.plan, exactly as `fitbench plan` does.

    gpus_vram_bytes: this machine's GPUs (several share the layers in proportion to their VRAM,
    as `fitbench plan` splits them). Manifests are read once per (model, quant), plans once per
    configuration.
    """

    def __init__(
        self,
        gpus_vram_bytes: Sequence[int],
        *,
        vram_headroom: MarginLike = None,
        manifest_for: Callable[[Model, str], tuple[ModelManifest, str]] = default_manifest,
        **plan_kwargs: Any,
    ) -> None:
        self.gpus_vram_bytes = tuple(int(v) for v in gpus_vram_bytes)
        n = len(self.gpus_vram_bytes)
        self.split = tuple(float(v) for v in self.gpus_vram_bytes) if n > 1 else None
        self.vram_headroom = vram_headroom
        self._manifest_for = manifest_for
        self._plan_kwargs = plan_kwargs
        self._manifests: dict[tuple[str, str], ModelManifest | None] = {}
        self._compact: dict[tuple[str, str], ModelManifest] = {}
        self._plans: dict[tuple[Any, ...], memory.MemoryPlan | None] = {}
        self.sources: dict[str, str] = {}  # "model/quant" -> where its numbers come from

    def manifest(self, model: Model, quant: str) -> ModelManifest | None:
        key = (model.id, quant)
        if key not in self._manifests:
            try:
                manifest, source = self._manifest_for(model, quant)
            except (ValueError, KeyError, TwinError) as exc:
                log.info("no manifest for %s/%s (%s): estimating its memory", *key, exc)
                manifest, source = None, SOURCE_ESTIMATE
            self._manifests[key] = manifest
            if manifest is not None:
                self._compact[key] = compact_manifest(manifest)
            self.sources[f"{model.id}/{quant}"] = source
        return self._manifests[key]

    def plan(
        self, model: Model, quant: str, placement: Placement, ctx: int, n_parallel: int
    ) -> memory.MemoryPlan | None:
        key = (model.id, quant, placement, ctx, n_parallel)
        if key in self._plans:
            return self._plans[key]
        result = None
        if self.manifest(model, quant) is not None:
            manifest = self._compact[(model.id, quant)]
            # no GPU here: placements that offload are planned for one (hardware_needed)
            n_gpus = len(self.gpus_vram_bytes) or (0 if placement.cpu_only else 1)
            pl = replace(
                placement,
                n_cpu_moe=placement.experts_on_cpu(manifest.n_layer),
                tensor_split=self.split,
            )
            if n_gpus > 1 and not placement.cpu_only:
                # the layer split `fitbench plan` proposes for several GPUs (the recipe says it)
                result = propose_split(
                    manifest,
                    self.gpus_vram_bytes,
                    pl,
                    ctx,
                    n_parallel,
                    vram_headroom=self.vram_headroom,
                    **self._plan_kwargs,
                ).plan
            else:
                result = memory.plan(
                    manifest, pl, ctx, n_parallel, n_gpus=n_gpus, **self._plan_kwargs
                )
        self._plans[key] = result
        return result

    def tensor_split(
        self, model: Model, quant: str, placement: Placement, ctx: int, n_parallel: int
    ) -> tuple[float, ...] | None:
        """The per-GPU layer split the plan assumed (several GPUs only), for the recipe."""
        mp = self.plan(model, quant, placement, ctx, n_parallel)
        if mp is None or len(self.gpus_vram_bytes) < 2 or placement.cpu_only:
            return None
        return mp.placement.tensor_split

    def per_gpu(
        self, model: Model, quant: str, placement: Placement, ctx: int, n_parallel: int
    ) -> tuple[int, ...] | None:
        mp = self.plan(model, quant, placement, ctx, n_parallel)
        return None if mp is None else mp.vram_bytes

    def __call__(
        self,
        model: Model,
        quant: str,
        costs: LayerCosts,
        placement: Placement,
        ctx: int,
        n_parallel: int,
    ) -> tuple[int, int]:
        mp = self.plan(model, quant, placement, ctx, n_parallel)
        if mp is None:
            return estimate_memory(model, quant, costs, placement, ctx, n_parallel)
        return mp.vram_total, mp.ram_bytes

    @property
    def estimated(self) -> list[str]:
        return [k for k, v in self.sources.items() if v == SOURCE_ESTIMATE]


__all__ = [
    "SOURCE_BUILTIN",
    "SOURCE_ESTIMATE",
    "SOURCE_FILE",
    "MemoryFn",
    "PlannedMemory",
    "compact_manifest",
    "default_manifest",
    "estimate_memory",
]
