"""The seed's claim, measured on this machine: how much faster is the MoE than the dense model?

Mixtral reads only 2 of its 8 experts per token, so at batch 1 it moves about a fifth of the
bytes Llama 2 70B moves. Two things eat that advantage: parallel sequences (B tokens touch up to
min(8, 2B) experts) and memory (all of Mixtral must be resident, so on a small GPU more of it
sits in slow RAM). This module puts a ratio on each batch size and each offload fraction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from fitbench.core.advise.candidates import Candidate, worst_basis
from fitbench.core.model.catalog import Model
from fitbench.core.plan.placement import Placement

GPU_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)

# (model, quant, placement, batch) -> Candidate
BuildFn = Callable[[Model, str, Placement, int], Candidate]


@dataclass(frozen=True)
class Side:
    model: Model
    quant: str
    placement: Placement  # the best placement that fits here, else full offload (hypothetical)
    fits: bool
    tg: Candidate


def _fmt_ratio(r: float) -> str:
    return f"{r:.1f}x" if r < 10 else f"{r:.0f}x"


def _placement_at(model: Model, fraction: float) -> Placement:
    n = model.arch.n_layer
    return Placement(n + 1 if fraction >= 1.0 else round(fraction * n), 0)


def story(
    moe: Side,
    dense: Side,
    *,
    build: BuildFn,
    batches: Sequence[int],
    has_gpu: bool,
) -> dict[str, Any]:
    by_batch = []
    for b in batches:
        m = build(moe.model, moe.quant, moe.placement, b)
        d = build(dense.model, dense.quant, dense.placement, b)
        if not (m.aggregate_ts.value and d.aggregate_ts.value):
            continue
        by_batch.append(
            {
                "batch": b,
                "ratio": round(m.aggregate_ts.value / d.aggregate_ts.value, 3),
                "basis": worst_basis(m.aggregate_ts.basis, d.aggregate_ts.basis),
                "moe_ts": round(m.aggregate_ts.value, 2),
                "dense_ts": round(d.aggregate_ts.value, 2),
                "fits": m.fits and d.fits,
            }
        )
    by_offload = []
    for f in GPU_FRACTIONS if has_gpu else (0.0,):
        m = build(moe.model, moe.quant, _placement_at(moe.model, f), 1)
        d = build(dense.model, dense.quant, _placement_at(dense.model, f), 1)
        if not (m.tg_ts.value and d.tg_ts.value):
            continue
        by_offload.append(
            {
                "gpu_fraction": f,
                "ratio": round(m.tg_ts.value / d.tg_ts.value, 3),
                "basis": worst_basis(m.tg_ts.basis, d.tg_ts.basis),
                "moe_ts": round(m.tg_ts.value, 2),
                "dense_ts": round(d.tg_ts.value, 2),
                "fits": m.fits and d.fits,
            }
        )
    return {
        "moe_model": moe.model.id,
        "dense_model": dense.model.id,
        "quant": {"moe": moe.quant, "dense": dense.quant},
        "placement": {
            "moe": {
                "n_gpu_layers": moe.placement.n_gpu_layers,
                "n_cpu_moe": moe.placement.n_cpu_moe,
            },
            "dense": {"n_gpu_layers": dense.placement.n_gpu_layers, "n_cpu_moe": 0},
        },
        "by_batch": by_batch,
        "by_offload": by_offload,
        "verdict": verdict(moe, dense, by_batch, by_offload, has_gpu),
    }


def verdict(
    moe: Side,
    dense: Side,
    by_batch: list[dict[str, Any]],
    by_offload: list[dict[str, Any]],
    has_gpu: bool,
) -> str:
    mn, dn = moe.model.name, dense.model.name
    gb = 1e9
    m1, d1 = moe.tg, dense.tg
    parts = []
    if m1.tg_ts.value and d1.tg_ts.value:
        ratio = m1.tg_ts.value / d1.tg_ts.value
        parts.append(
            f"For one user, {mn} ({moe.quant}) generates {_fmt_ratio(ratio)} as fast as {dn} "
            f"({dense.quant}): {m1.tg_ts.value:.1f} vs {d1.tg_ts.value:.1f} tokens/s "
            f"({worst_basis(m1.tg_ts.basis, d1.tg_ts.basis)}), because it reads about "
            f"{m1.active_bytes / gb:.1f} GB of weights per token against "
            f"{d1.active_bytes / gb:.1f} GB."
        )
    if len(by_batch) >= 2:
        first, last = by_batch[0], by_batch[-1]
        trend = "shrinks" if last["ratio"] < first["ratio"] else "holds"
        parts.append(
            f"With parallel sequences the advantage {trend}: {_fmt_ratio(first['ratio'])} at batch "
            f"{first['batch']}, {_fmt_ratio(last['ratio'])} at batch {last['batch']} "
            f"({last['basis']}), since {last['batch']} sequences touch nearly all 8 experts of "
            "every layer while the dense model reads its weights once for all of them."
        )
    if has_gpu and len(by_offload) >= 2:
        full = next((o for o in by_offload if o["gpu_fraction"] == 1.0), by_offload[-1])
        half = next((o for o in by_offload if o["gpu_fraction"] == 0.5), by_offload[0])
        parts.append(
            f"By offload fraction: with every layer on the GPU the ratio is "
            f"{_fmt_ratio(full['ratio'])}, with half of each model's layers on the GPU "
            f"{_fmt_ratio(half['ratio'])} ({half['basis']}); what matters on a small GPU is that "
            "the models differ in how many layers fit at all."
        )
    parts.append(
        f"But all {m1.weights_bytes / gb:.1f} GB of {mn} must be resident even though a token "
        f"reads only {m1.active_bytes / gb:.1f} GB; {dn} needs {d1.weights_bytes / gb:.1f} GB."
    )
    if moe.fits and dense.fits:
        parts.append("Both fit on this machine.")
    elif moe.fits or dense.fits:
        yes, no = (mn, dn) if moe.fits else (dn, mn)
        parts.append(f"Only {yes} fits on this machine; {no} is shown as it would run if it fit.")
    else:
        parts.append("Neither fits on this machine; the figures show how they would compare.")
    return " ".join(parts)
