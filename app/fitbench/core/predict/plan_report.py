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
from fitbench.core.plan import memory, search
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
    vram_headroom_pct: float = 5.0
    ram_headroom_bytes: int = memory.DEFAULT_RAM_HEADROOM_BYTES
    results: Path | None = None  # results JSONL of this machine: calibrates the speeds


@dataclass(frozen=True)
class Machine:
    """GPU VRAM and host RAM to plan for, and the machine the speed predictions assume."""

    gpus_vram_bytes: list[int]
    ram_bytes: int
    source: str  # detected, hardware file <name>, what-if, or "<one> + what-if"
    hardware: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpus_vram_bytes": self.gpus_vram_bytes,
            "ram_bytes": self.ram_bytes,
            "source": self.source,
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
    vram_gb: Sequence[float] | None, ram_gb: float | None, hardware_file: Path | None = None
) -> Machine:
    """The machine to plan for: detected, from a hardware file, or the what-if sizes given
    (VRAM per GPU in GB; zeros drop out)."""
    if hardware_file is not None:
        hw = hardware.read_json(hardware_file)
        source = f"hardware file {hardware_file.name}"
    else:
        # both sizes given: a quick look at the CPU only (no probes), the rest is what-if
        hw = detect_hardware(full=vram_gb is None or ram_gb is None)
        source = "detected"
    mem = hardware.MachineMemory.of(hw)
    gpus, ram = list(mem.gpu_vram_bytes), mem.usable_ram_bytes
    if vram_gb is not None:
        gpus = [int(v * 1e9) for v in vram_gb if v > 0]
        # a what-if GPU: offloading assumed; its bandwidth is the predictor's guess
        hw = {**hw, "gpus": [{"name": "what-if GPU", "vram_total_bytes": g} for g in gpus]}
        hw["llama_cpp"] = {**(hw.get("llama_cpp") or {}), "gpu_offload": bool(gpus)}
    if ram_gb is not None:
        ram = int(ram_gb * 1e9)
    if vram_gb is not None and ram_gb is not None:
        source = "what-if"
    elif vram_gb is not None or ram_gb is not None:
        source += " + what-if"
    return Machine(gpus, ram, source, hw)


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
        vram_headroom=settings.vram_headroom_pct / 100,
        ram_headroom_bytes=settings.ram_headroom_bytes,
        flash_attn=settings.flash_attn,
        n_ubatch=settings.ubatch,
    )
    best = search.best_fitting(plans)
    compat = gguf.check_compatibility(m)
    model, costs = speeds(resolved, mach.hardware, settings.results)

    def row(p: memory.PlacementPlan) -> dict[str, Any]:
        return {**p.to_dict(m.n_layer), **model.speeds(costs, p.n_gpu_layers, p.n_cpu_moe)}

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
        "compatible": compat.ok,
        "compat_reasons": compat.reasons,
        "speed": model.to_dict(),
        "placements": [row(p) for p in plans],
        "best": row(best) if best else None,
    }


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
