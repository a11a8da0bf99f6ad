"""Predict what was not measured: a speed model a person can read, calibrated on this machine.

One forward step (one token of B sequences, or one ubatch of a prompt) costs

    t = gpu_bytes / gpu_bandwidth + cpu_bytes / cpu_bandwidth + pcie_bytes / pcie_bandwidth
        + overhead + flops / compute_rate(device, kernel)

- bytes: weights the step reads where they live. A MoE block reads its non-expert weights and
  only the experts its tokens were routed to (2 of 8 for one token; with B tokens the expected
  number of distinct experts, n * (1 - (1 - k/n)^B), which is <= min(n, k*B)). The KV cache is
  read too (depth x bytes per token).
- pcie: with a GPU, llama.cpp runs the matmuls of CPU-resident weights on the GPU for steps of
  >= 32 tokens, copying those weights over PCIe every step; that caps prompt speed with partial
  offload.
- compute: 2 flops per weight per token. GPUs use vector kernels up to 8 tokens a step (llama.cpp
  MMVQ) and matrix kernels above; the two have very different rates, so they are two constants.

Seven constants, each starting from the detected hardware (a prior) and calibrated by least
squares on the measured points of this machine: see predict_fit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from fitbench.core.model.catalog import Catalog
from fitbench.core.plan.placement import Placement as Placement  # re-exported for callers
from fitbench.core.predict.layer_costs import LayerCosts, catalog_costs

GB = 1e9
VECTOR_KERNEL_MAX_TOKENS = 8  # llama.cpp CUDA: MMVQ for <= 8 columns, MMQ/cuBLAS above
OP_OFFLOAD_MIN_TOKENS = 32  # llama.cpp: CPU-weight matmuls go to the GPU from 32 tokens a step
DEFAULT_N_UBATCH = 512

# name, display unit, how a value in seconds-per-unit is shown in that unit
FEATURES: tuple[str, ...] = (
    "gpu_read",
    "cpu_read",
    "pcie_copy",
    "overhead",
    "gpu_matrix",
    "gpu_vector",
    "cpu_compute",
)
KINDS = ("tg", "pp", "batch", "ttft", "pg")


class PredictError(ValueError):
    """Measurements or inputs the predictor cannot use; the message says which and why."""


def experts_touched(n_expert: int, n_used: int, n_tokens: int) -> float:
    """Expected distinct experts one block reads for n_tokens tokens under uniform routing."""
    if n_expert <= 0 or n_tokens <= 0:
        return 0.0
    return n_expert * (1.0 - (1.0 - n_used / n_expert) ** n_tokens)


def normalise(costs: LayerCosts, placement: Placement, has_gpu: bool) -> Placement:
    """What llama.cpp really does with this placement on this model (Placement.effective)."""
    return placement.effective(costs.n_layer, has_gpu, moe=costs.is_moe)


def step_features(
    costs: LayerCosts,
    placement: Placement,
    *,
    n_tokens: int,
    n_seqs: int,
    depth: float,
    n_outputs: int,
    has_gpu: bool,
) -> np.ndarray:
    """The amounts one step moves and computes, in the order of FEATURES (times them = seconds)."""
    p = normalise(costs, placement, has_gpu)
    n = costs.n_layer
    first_gpu_block = n - p.blocks_on_gpu(n)
    output_on_gpu = p.output_on_gpu(n)
    op_offload = has_gpu and n_tokens >= OP_OFFLOAD_MIN_TOKENS
    share = (
        experts_touched(costs.n_expert, costs.n_expert_used, n_tokens) / costs.n_expert
        if costs.is_moe
        else 0.0
    )
    used = costs.n_expert_used / costs.n_expert if costs.is_moe else 0.0
    kv_read = n_seqs * depth * costs.kv_bytes_per_token_per_layer
    attn_flops = n_tokens * 4.0 * depth * costs.n_embd
    gpu_read = cpu_read = pcie = gpu_flops = cpu_flops = 0.0

    def place(on_gpu: bool, weight_bytes: float, read_bytes: float, flops: float) -> None:
        nonlocal gpu_read, cpu_read, pcie, gpu_flops, cpu_flops
        if on_gpu:
            gpu_read += read_bytes
            gpu_flops += flops
        elif op_offload:  # the whole tensor crosses PCIe, then the GPU computes
            pcie += weight_bytes
            gpu_flops += flops
        else:
            cpu_read += read_bytes
            cpu_flops += flops

    for i, b in enumerate(costs.blocks):
        on_gpu = i >= first_gpu_block
        place(on_gpu, b.dense_bytes, b.dense_bytes, n_tokens * 2.0 * b.dense_params)
        if b.expert_bytes:
            experts_on_gpu = on_gpu and i >= p.n_cpu_moe
            place(
                experts_on_gpu,
                b.expert_bytes,
                b.expert_bytes * share,
                n_tokens * 2.0 * b.expert_params * used,
            )
        # attention over the cache: the KV of a block lives with the block, never crosses PCIe
        if on_gpu:
            gpu_read += kv_read
            gpu_flops += attn_flops
        else:
            cpu_read += kv_read
            cpu_flops += attn_flops
    place(
        output_on_gpu,
        costs.output_bytes,
        costs.output_bytes,
        2.0 * n_outputs * costs.output_params,
    )
    vector = n_tokens <= VECTOR_KERNEL_MAX_TOKENS
    return np.array(
        [
            gpu_read,
            cpu_read,
            pcie,
            1.0,
            0.0 if vector else gpu_flops,
            gpu_flops if vector else 0.0,
            cpu_flops,
        ]
    )


def prompt_features(
    costs: LayerCosts,
    placement: Placement,
    *,
    n_prompt: int,
    n_ubatch: int,
    depth: float,
    has_gpu: bool,
) -> np.ndarray:
    """A prompt of n_prompt tokens, processed in ubatches of n_ubatch (logits for the last only)."""
    ubatch = max(1, n_ubatch)
    full, rest = divmod(max(0, n_prompt), ubatch)
    total = np.zeros(len(FEATURES))
    # step_features is linear in depth, so the full ubatches sum to `full` steps at their mean
    # depth: the same numbers as one step per ubatch, in constant time for any prompt length
    if full:
        total += full * step_features(
            costs, placement, n_tokens=ubatch, n_seqs=1, depth=depth + full * ubatch / 2,
            n_outputs=1, has_gpu=has_gpu,
        )  # fmt: skip
    if rest:
        total += step_features(
            costs, placement, n_tokens=rest, n_seqs=1, depth=depth + full * ubatch + rest / 2,
            n_outputs=1, has_gpu=has_gpu,
        )  # fmt: skip
    return total


@dataclass(frozen=True)
class Observation:
    """One measured quantity, the features that explain it, and its time in seconds."""

    kind: str  # tg | pp | batch | ttft | pg
    features: np.ndarray
    seconds: float
    tokens: float  # tokens the seconds produced (converts back to t/s); 0 for ttft
    record: Mapping[str, Any]

    def value(self, seconds: float) -> float:
        """The quantity in the unit people read: t/s, or ms for ttft."""
        if self.kind == "ttft":
            return seconds * 1e3
        return self.tokens / seconds

    @property
    def measured(self) -> float:
        return self.value(self.seconds)

    @property
    def label(self) -> str:
        r = self.record
        extra = f" B={r.get('n_parallel')}" if self.kind == "batch" else ""
        moe = f" ncmoe={r.get('n_cpu_moe')}" if r.get("n_cpu_moe") else ""
        return (
            f"{r.get('model_id')}/{r.get('quant')} {self.kind} ngl={r.get('n_gpu_layers')}"
            f"{moe}{extra} ({r.get('source')})"
        )


def record_kind(record: Mapping[str, Any]) -> str | None:
    n_prompt, n_gen = int(record.get("n_prompt") or 0), int(record.get("n_gen") or 0)
    if record.get("test") == "ttft" or (record.get("ttft_ms") and not record.get("avg_ts")):
        return "ttft" if record.get("ttft_ms") and n_prompt > 0 else None
    if int(record.get("n_parallel") or 1) > 1 or record.get("test") == "batch":
        return "batch" if n_gen > 0 else None
    if n_gen > 0 and n_prompt == 0:
        return "tg"
    if n_prompt > 0 and n_gen == 0:
        return "pp"
    if n_prompt > 0 and n_gen > 0:
        return "pg"
    return None


def observation(record: Mapping[str, Any], costs: LayerCosts, has_gpu: bool) -> Observation | None:
    """The observation a finished record gives; None for failed or unusable records."""
    if record.get("status", "ok") != "ok":
        return None
    kind = record_kind(record)
    if kind is None:
        return None
    placement = Placement.from_record(record)
    n_prompt, n_gen = int(record.get("n_prompt") or 0), int(record.get("n_gen") or 0)
    depth = float(record.get("n_depth") or 0)
    n_ubatch = int(record.get("n_ubatch") or DEFAULT_N_UBATCH)
    avg_ts = float(record.get("avg_ts") or 0.0)

    def decode(n_seqs: int, at: float) -> np.ndarray:
        return step_features(
            costs, placement, n_tokens=n_seqs, n_seqs=n_seqs, depth=at, n_outputs=n_seqs,
            has_gpu=has_gpu,
        )  # fmt: skip

    def prompt(at: float) -> np.ndarray:
        return prompt_features(
            costs, placement, n_prompt=n_prompt, n_ubatch=n_ubatch, depth=at, has_gpu=has_gpu
        )

    if kind == "ttft":
        ttft_s = float(record["ttft_ms"]) / 1e3
        return Observation(kind, prompt(depth) + decode(1, depth + n_prompt), ttft_s, 0, record)
    if avg_ts <= 0 or not math.isfinite(avg_ts):
        return None
    if kind == "tg":
        return Observation(kind, decode(1, depth + n_gen / 2), 1 / avg_ts, 1, record)
    if kind == "pp":
        return Observation(kind, prompt(depth), n_prompt / avg_ts, n_prompt, record)
    if kind == "batch":
        b = int(record.get("n_parallel") or 1)
        feats = decode(b, depth + n_prompt + n_gen / 2)
        return Observation(kind, feats, b / avg_ts, b, record)
    total = n_prompt + n_gen  # llama-bench's pg: prompt then generation, one rate for both
    feats = prompt(depth) + n_gen * decode(1, depth + n_prompt + n_gen / 2)
    return Observation(kind, feats, total / avg_ts, total, record)


@dataclass(frozen=True)
class Predictor:
    """Predicted speeds of one model's costs at a placement, from calibrated constants."""

    constants: np.ndarray  # seconds per unit of each FEATURES entry (a Calibration's values)
    has_gpu: bool

    def _seconds(self, feats: np.ndarray) -> float:
        return max(float(feats @ self.constants), 1e-9)

    def step_seconds(
        self, costs: LayerCosts, placement: Placement, n_parallel: int = 1, depth: float = 0.0
    ) -> float:
        feats = step_features(
            costs, placement, n_tokens=n_parallel, n_seqs=n_parallel, depth=depth,
            n_outputs=n_parallel, has_gpu=self.has_gpu,
        )  # fmt: skip
        return self._seconds(feats)

    def tg_ts(
        self, costs: LayerCosts, placement: Placement, n_gen: int = 128, depth: int = 0
    ) -> float:
        return 1.0 / self.step_seconds(costs, placement, 1, depth + n_gen / 2)

    def batch_ts(
        self,
        costs: LayerCosts,
        placement: Placement,
        n_parallel: int,
        n_gen: int = 128,
        depth: int = 0,
    ) -> float:
        """Aggregate generation tokens/s of n_parallel sequences decoded together."""
        return n_parallel / self.step_seconds(costs, placement, n_parallel, depth + n_gen / 2)

    def pp_ts(
        self, costs: LayerCosts, placement: Placement, n_prompt: int = 512,
        n_ubatch: int = DEFAULT_N_UBATCH, depth: int = 0,
    ) -> float:  # fmt: skip
        feats = prompt_features(
            costs,
            placement,
            n_prompt=n_prompt,
            n_ubatch=n_ubatch,
            depth=depth,
            has_gpu=self.has_gpu,
        )
        return n_prompt / self._seconds(feats)

    def ttft_ms(self, costs: LayerCosts, placement: Placement, n_prompt: int = 512) -> float:
        feats = prompt_features(
            costs, placement, n_prompt=n_prompt, n_ubatch=DEFAULT_N_UBATCH, depth=0,
            has_gpu=self.has_gpu,
        )  # fmt: skip
        return (self._seconds(feats) + self.step_seconds(costs, placement, 1, n_prompt)) * 1e3


CostsFor = Callable[[Mapping[str, Any]], LayerCosts | None]


def observations(
    records: Iterable[Mapping[str, Any]], costs_for: CostsFor, has_gpu: bool
) -> list[Observation]:
    """Usable observations of the records whose model costs are known."""
    out = []
    for record in records:
        costs = costs_for(record)
        if costs is None:
            continue
        obs = observation(record, costs, has_gpu)
        if obs is not None:
            out.append(obs)
    return out


def catalog_costs_for(catalog: Catalog) -> CostsFor:
    """Costs of the file a record measured: its catalog quant, at the file's depth for scaled twins.

    Records of files outside the catalog give None (they cannot be extrapolated to a full model).
    """
    cache: dict[tuple[str, str, int | None], LayerCosts | None] = {}

    def costs_for(record: Mapping[str, Any]) -> LayerCosts | None:
        model_id, quant = str(record.get("model_id") or ""), str(record.get("quant") or "")
        n_file, n_model = (
            int(record.get("n_layer_file") or 0),
            int(record.get("n_layer_model") or 0),
        )
        layers = n_file if n_file and n_model and n_file < n_model else None
        key = (model_id, quant, layers)
        if key not in cache:
            try:
                model = catalog.get(model_id)
                cache[key] = catalog_costs(model, quant, layers=layers)
            except ValueError:
                cache[key] = None
        return cache[key]

    return costs_for
