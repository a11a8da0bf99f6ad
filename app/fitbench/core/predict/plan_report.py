"""`fitbench plan` and `fitbench models`: the memory plan of every placement of a model quant and
its predicted speed, before any download.

The model's manifest comes from fitbench.core.twin.resolve (local file > Hub header > built-in),
the machine from detection, a `fitbench detect --json` file or what-if sizes, the memory from the
planner (fitbench.core.plan.memory) and the speeds from the predictor (speeds.speed_model).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from gguf import LlamaFileType

from fitbench.core import gguf
from fitbench.core.gguf.manifest import ModelManifest
from fitbench.core.hardware import detect as hardware
from fitbench.core.model import catalog
from fitbench.core.plan import llama_fit, memory, search
from fitbench.core.plan.margin import VramMargin, margin_of
from fitbench.core.predict.layer_costs import LayerCosts, from_manifest
from fitbench.core.predict.speeds import SpeedModel, speed_model
from fitbench.core.results import schema as results
from fitbench.core.twin import resolve
from fitbench.core.twin.resolve import ManifestSource

log = logging.getLogger(__name__)

# where the manifest came from, in the plan's words
SOURCE_WORDS = {
    ManifestSource.FILE: "local file header",
    ManifestSource.REMOTE: "remote header (HTTP range read from the Hub)",
    ManifestSource.BUILTIN: (
        "built-in manifest (offline: catalog architecture + llama.cpp quant rules)"
    ),
}


@dataclass(frozen=True)
class Resolved:
    """The model quant being planned: its names, manifest and where the manifest came from."""

    model: str
    quant: str
    manifest: ModelManifest
    source: str
    file_bytes: int


@dataclass(frozen=True)
class PlanSettings:
    """The run the plan is for (`fitbench plan`'s flags; `models` keeps the defaults)."""

    ctx: int = 4096
    parallel: int = 1
    ubatch: int = 512
    flash_attn: bool = False
    vram_headroom_pct: float | None = None  # None: the default margin (plan.margin)
    ram_headroom_bytes: int = memory.DEFAULT_RAM_HEADROOM_BYTES
    results: Path | None = None  # results JSONL of this machine: calibrates the speeds

    @property
    def margin(self) -> VramMargin:
        pct = self.vram_headroom_pct
        return margin_of(None) if pct is None else VramMargin.percent(pct)


@dataclass(frozen=True)
class Machine:
    """GPU VRAM and host RAM to plan for, and the machine the speed predictions assume."""

    gpus_vram_bytes: list[int]  # what planning counts per GPU: free at detection, or total
    ram_bytes: int
    source: str  # detected, hardware file <name>, what-if, or "<one> + what-if"
    hardware: dict[str, Any]
    vram_basis: str = "free"  # "free", "total" (what-if) or "what-if" (--vram-gb)
    vram_words: tuple[str, ...] = ()  # per GPU: free, used by whom, what is planned against

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpus_vram_bytes": self.gpus_vram_bytes,
            "ram_bytes": self.ram_bytes,
            "source": self.source,
            "vram_basis": self.vram_basis,
            "vram_words": list(self.vram_words),
        }


def _file_type(manifest: ModelManifest) -> str:
    try:
        return LlamaFileType(manifest.metadata["general.file_type"]).name.removeprefix("MOSTLY_")
    except (KeyError, ValueError, TypeError):
        return "unknown"


def resolve_model(model_arg: str, quant: str | None, offline: bool = False) -> Resolved:
    """The manifest of a path or a catalog quant: local file > remote header > built-in."""
    path = Path(model_arg).expanduser()
    if path.suffix == ".gguf" or "gguf-split" in path.name or path.exists():
        m = resolve.of_file(path).manifest
        return Resolved(
            path.name,
            quant or _file_type(m),
            m,
            SOURCE_WORDS[ManifestSource.FILE],
            m.file_size or 0,
        )
    model = catalog.load().get(model_arg)
    qf = model.quant(quant or model.default_quant)
    found = resolve.of_quant(model, qf.quant, remote=not offline)
    m = found.manifest
    size = qf.size if found.source is ManifestSource.BUILTIN else m.file_size or qf.size
    return Resolved(model.id, qf.quant, m, SOURCE_WORDS[found.source], size)


def detect_hardware(full: bool = True) -> dict[str, Any]:
    """This machine (cgroup-aware RAM, llama.cpp's devices when `full`)."""
    try:
        data: dict[str, Any] = hardware.detect(probe_bandwidth=full, llama=full).to_dict()
        return data
    except Exception:  # fall back to psutil: planning must not fail on a detection problem
        log.debug("hardware detection failed", exc_info=True)
        total = int(psutil.virtual_memory().total)
        return {"gpus": [], "ram": {"total_bytes": total, "usable_bytes": total}}


def machine(
    vram_gb: Sequence[float] | None,
    ram_gb: float | None,
    hardware_file: Path | None = None,
    vram: str = "free",
) -> Machine:
    """The machine to plan for: detected, from a hardware file, or the what-if sizes given
    (VRAM per GPU in GB; zeros drop out). vram: "free" plans against the VRAM free at detection
    (the default: what other processes hold is not there), "total" against each GPU's total as
    if nothing else ran (a what-if)."""
    if hardware_file is not None:
        hw = hardware.read_json(hardware_file)
        source = f"hardware file {hardware_file.name}"
    else:
        # both sizes given: a quick look at the CPU only (no probes), the rest is what-if
        hw = detect_hardware(full=vram_gb is None or ram_gb is None)
        source = "detected"
    mem = hardware.MachineMemory.of(hw, vram)
    gpus, ram = list(mem.gpu_vram_bytes), mem.usable_ram_bytes
    basis, words = mem.vram_basis, tuple(mem.vram_words())
    if vram_gb is not None:
        gpus = [int(v * 1e9) for v in vram_gb if v > 0]
        basis = "what-if"
        words = tuple(f"what-if GPU{i}: {g / 2**30:.1f} GiB, all free" for i, g in enumerate(gpus))
        # a what-if GPU: offloading assumed; its bandwidth is the predictor's guess
        hw = {**hw, "gpus": [{"name": "what-if GPU", "vram_total_bytes": g} for g in gpus]}
        hw["llama_cpp"] = {**(hw.get("llama_cpp") or {}), "gpu_offload": bool(gpus)}
    if ram_gb is not None:
        ram = int(ram_gb * 1e9)
    if vram_gb is not None and ram_gb is not None:
        source = "what-if"
    elif vram_gb is not None or ram_gb is not None:
        source += " + what-if"
    return Machine(gpus, ram, source, hw, basis, words)


def speeds(
    resolved: Resolved, hw: dict[str, Any], results_file: Path | None
) -> tuple[SpeedModel, LayerCosts]:
    """The speed predictor for this machine (calibrated on `results_file`) and the file's costs."""
    costs = from_manifest(resolved.manifest, f"{resolved.model}/{resolved.quant}")
    records = results.read_jsonl(results_file) if results_file is not None else []
    model = speed_model(
        hw,
        records,
        catalog=catalog.load(),
        own_costs=(resolved.model, resolved.quant, costs),
        results_name=results_file.name if results_file is not None else "the results",
    )
    return model, costs


def plan_report(resolved: Resolved, mach: Machine, settings: PlanSettings) -> dict[str, Any]:
    """Every placement's memory and predicted speed, and the best that fits (JSON-ready)."""
    m = resolved.manifest
    plans = search.candidate_placements(
        m,
        mach.gpus_vram_bytes,
        mach.ram_bytes,
        n_ctx=settings.ctx,
        n_parallel=settings.parallel,
        vram_headroom=settings.margin,
        ram_headroom_bytes=settings.ram_headroom_bytes,
        flash_attn=settings.flash_attn,
        n_ubatch=settings.ubatch,
    )
    best = search.best_fitting(plans)
    fit = llama_fit.llama_cpp_fit_details(
        m, mach.gpus_vram_bytes, settings.ctx, settings.parallel, n_ubatch=settings.ubatch
    )
    compat = gguf.check_compatibility(m)
    model, costs = speeds(resolved, mach.hardware, settings.results)

    def row(p: memory.PlacementPlan) -> dict[str, Any]:
        return {**p.to_dict(m.n_layer), **model.speeds(costs, p.n_gpu_layers, p.n_cpu_moe)}

    llama_cpp = fit.to_dict()
    if fit.placement is not None:
        # FitBench's plan and predicted speed of llama.cpp's choice, with this run's settings
        same = [p for p in plans if p.placement == fit.placement]
        same = same or [_plan_one(m, mach, settings, fit.placement)]
        llama_cpp["plan"] = row(same[0])

    return {
        "model": resolved.model,
        "quant": resolved.quant,
        "manifest_source": resolved.source,
        "basis": "predicted (memory plan from the tensor manifest)",
        "file_bytes": resolved.file_bytes,
        "weights_bytes": m.weights_bytes,
        "kv_bytes_per_token": memory.kv_bytes_per_token(m),
        "n_layer": m.n_layer,
        "n_expert": m.n_expert,
        "ctx": settings.ctx,
        "parallel": settings.parallel,
        "hardware": mach.to_dict(),
        "vram_margin": {**settings.margin.to_dict(), "basis": "predicted"},
        "compatible": compat.ok,
        "compat_reasons": compat.reasons,
        "speed": model.to_dict(),
        "placements": [row(p) for p in plans],
        "best": row(best) if best else None,
        "llama_cpp_fit": llama_cpp,
    }


def _plan_one(
    m: ModelManifest, mach: Machine, settings: PlanSettings, pl: memory.Placement
) -> memory.PlacementPlan:
    mp = memory.plan(
        m, pl, settings.ctx, settings.parallel, flash_attn=settings.flash_attn,
        n_ubatch=settings.ubatch, n_gpus=len(mach.gpus_vram_bytes),
    )  # fmt: skip
    fits = search.gpu_fits(mp, mach.gpus_vram_bytes, settings.margin)
    ram_ok = mp.ram_bytes <= mach.ram_bytes - settings.ram_headroom_bytes
    ok = all(g.fits for g in fits) and ram_ok
    return memory.PlacementPlan(mp, ok, "" if ok else "does not fit FitBench's plan")


def catalog_rows(mach: Machine, settings: PlanSettings, offline: bool) -> list[dict[str, Any]]:
    """`fitbench models`: every catalog quant, its size and its best-fitting placement; a quant
    that cannot be planned gets a row with the error."""
    out = []
    for model in catalog.load().models:
        for q in model.quants:
            row: dict[str, Any] = {
                "model": model.id,
                "name": model.name,
                "kind": model.kind,
                "quant": q.quant,
                "size_bytes": q.size,
                "parts": list(q.parts),
            }
            try:
                report = plan_report(resolve_model(model.id, q.quant, offline), mach, settings)
            except (gguf.GGUFError, catalog.CatalogError, ValueError) as exc:
                row["error"] = str(exc)
                out.append(row)
                continue
            row.update(
                manifest_source=report["manifest_source"],
                weights_bytes=report["weights_bytes"],
                compatible=report["compatible"],
                compat_reasons=report["compat_reasons"],
                best=report["best"],
                basis=report["basis"],
                speed_basis=report["speed"]["basis"],
            )
            out.append(row)
    return out


__all__ = [
    "SOURCE_WORDS",
    "Machine",
    "PlanSettings",
    "Resolved",
    "catalog_rows",
    "detect_hardware",
    "machine",
    "plan_report",
    "resolve_model",
    "speeds",
]
