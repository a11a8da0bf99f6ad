"""When the advice cannot simply recommend: the least hardware that would run a model, and the
cheapest change that meets the floors (RAM to add, or real cards from the GPU table)."""

from __future__ import annotations

from typing import Any, Protocol

from fitbench.core.advise.candidates import (
    GIB,
    Candidate,
    Capacity,
    QualityFloor,
    placements_for,
    quality_of,
)
from fitbench.core.advise.text import speed_of
from fitbench.core.hardware.gpu_specs import cards_with_at_least
from fitbench.core.model.catalog import Catalog, Model
from fitbench.core.plan.placement import Placement
from fitbench.core.predict.layer_costs import LayerCosts


class Weighing(Protocol):
    """What the advice knows while it weighs options (recommend._Context)."""

    catalog: Catalog
    capacity: Capacity
    floor: QualityFloor

    def costs_of(self, model: Model, quant: str) -> LayerCosts: ...

    def build(self, model: Model, quant: str, placement: Placement, batch: int) -> Candidate: ...


def _gib(n: float | None) -> str:
    return f"{(n or 0) / GIB:.1f} GiB"


def hardware_needed(cx: Weighing, model: Model) -> dict[str, Any] | None:
    """The least hardware that runs `model`: its smallest quant above the quality floor."""
    allowed = [q for q in model.quants if cx.floor.allows(quality_of(model, q.quant))]
    if not allowed:
        return None
    quant = min(allowed, key=lambda q: cx.costs_of(model, q.quant).weights_bytes).quant
    costs = cx.costs_of(model, quant)
    n = costs.n_layer
    full = cx.build(model, quant, Placement(n + 1, 0), 1)
    cpu = cx.build(model, quant, Placement(0, 0), 1)
    cap = cx.capacity
    vram_needed = cap.vram_margin.have_for(int(full.vram_bytes.value or 0))
    ram_cpu_only = (cpu.ram_bytes.value or 0) + cap.ram_headroom_bytes
    ram_with_gpu = (full.ram_bytes.value or 0) + cap.ram_headroom_bytes
    cards = cards_with_at_least(int(vram_needed))[:3]
    named = f" (e.g. {', '.join(c.name for c in cards)})" if cards else ""
    return {
        "model_id": model.id,
        "quant": quant,
        "cards": [c.name for c in cards],
        "gpu_vram_bytes_full_offload": int(vram_needed),
        "ram_bytes_with_full_offload": int(ram_with_gpu),
        "ram_bytes_cpu_only": int(ram_cpu_only),
        "sentence": (
            f"{model.name} at {quant} (its smallest quant above the quality floor) needs a GPU "
            f"with {_gib(vram_needed)} of VRAM{named} for full offload (plus "
            f"{_gib(ram_with_gpu)} of RAM), or {_gib(ram_cpu_only)} of RAM to run on the CPU alone "
            f"({full.tg_ts.value or 0:.1f} vs {cpu.tg_ts.value or 0:.1f} tokens/s here, "
            "predicted); headroom for the rest of the system included."
        ),
    }


def cheapest_change(cx: Weighing, goal: str) -> dict[str, Any] | None:
    """The least hardware that makes an option meeting the quality floor fit: RAM to add with
    this machine's GPU as it is, or a GPU (real cards) that holds the whole model."""
    cap = cx.capacity
    ram_best: tuple[float, Candidate] | None = None
    gpu_best: tuple[int, Candidate] | None = None
    for model in cx.catalog.models:
        for q in model.quants:
            if not cx.floor.allows(quality_of(model, q.quant)):
                continue
            costs = cx.costs_of(model, q.quant)
            for p in placements_for(costs, cap.has_gpu):
                c = cx.build(model, q.quant, p, 1)
                vram, ram = c.vram_bytes.value or 0, c.ram_bytes.value or 0
                if vram <= cap.vram_bytes and ram > cap.ram_bytes:
                    short = ram - cap.ram_bytes
                    if ram_best is None or (short, -speed_of(c, goal)) < (
                        ram_best[0],
                        -speed_of(ram_best[1], goal),
                    ):
                        ram_best = (short, c)
            full = cx.build(model, q.quant, Placement(costs.n_layer + 1, 0), 1)
            vram_needed = cap.vram_margin.have_for(int(full.vram_bytes.value or 0))
            if (full.ram_bytes.value or 0) <= cap.ram_bytes and (
                gpu_best is None or vram_needed < gpu_best[0]
            ):
                gpu_best = (vram_needed, full)
    out: dict[str, Any] = {}
    sentences = []
    if ram_best is not None:
        short, c = ram_best
        total = cap.ram_bytes + cap.ram_headroom_bytes + short
        out["ram"] = {
            "add_bytes": int(short),
            "total_bytes": int(total),
            "model_id": c.model.id,
            "quant": c.quant,
            "placement": c.gpu_layers_label,
            "tg_ts": c.tg_ts.to_dict(2),
        }
        sentences.append(
            f"add {_gib(short)} of RAM ({_gib(total)} in all) to run {c.model.name} at "
            f"{c.quant} with {c.gpu_layers_label}: {c.tg_ts.value or 0:.1f} tokens/s "
            f"({c.tg_ts.basis})"
        )
    if gpu_best is not None:
        vram_needed, c = gpu_best
        cards = cards_with_at_least(int(vram_needed))[:3]
        if cards:
            names = ", ".join(card.label() for card in cards)
            out["gpu"] = {
                "vram_bytes": int(vram_needed),
                "cards": [card.name for card in cards],
                "model_id": c.model.id,
                "quant": c.quant,
            }
            sentences.append(
                f"a GPU with {_gib(vram_needed)} of VRAM holds all of {c.model.name} at "
                f"{c.quant}: e.g. {names}"
            )
    if not sentences:
        return None
    out["sentence"] = "To meet the floors: " + "; or ".join(sentences) + "."
    return out


__all__ = ["Weighing", "cheapest_change", "hardware_needed"]
