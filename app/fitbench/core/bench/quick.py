"""The one-click sweep: every catalog model at its default quant, placements worth measuring.

Per model, the file measured is, in this order of preference:
1. the real file, when it is downloaded (placements whose memory fits only);
2. a full twin, when the planner says a placement fits in RAM/VRAM and the twin fits on disk;
3. a scaled twin of a few blocks (source "scaled-twin"), whose per-block costs the predictor
   extrapolates to the full depth.
Nothing is ever measured on a file that would not fit in memory (it would stream from disk and
measure the disk). Placements: CPU-only, all-GPU, the largest that fits ("max-fit"), half the
layers and all experts on the CPU, each where it fits and the machine has a GPU llama.cpp can
use. Tests are short (pp 256, tg 64, 2 repetitions), plus the batch curve B = 1, 4, 16 on the
best placement.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from fitbench.core import paths
from fitbench.core.bench.config import BenchConfig, BenchTest, physical_cores
from fitbench.core.bench.models import resolve_path
from fitbench.core.gguf.manifest import ModelManifest
from fitbench.core.hardware.detect import HardwareReport, MachineMemory
from fitbench.core.model.catalog import Catalog, Model
from fitbench.core.plan import memory, search
from fitbench.core.plan.margin import DEFAULT_VRAM_MARGIN
from fitbench.core.twin import resolve
from fitbench.core.twin.resolve import ManifestSource
from fitbench.core.twin.writer import (
    cached_twins,
    clean_twin_cache,
    manifest_for,
    twin_for,
    twin_size,
)

QUICK_PROMPT = 256
QUICK_GEN = 64
QUICK_REPS = 2
QUICK_BATCHES = (1, 4, 16)
QUICK_BATCH_GEN = 32
QUICK_BATCH_GEN_CPU = 16  # CPU-only: B=16 x 32 steps alone would take minutes on a few cores
SCALED_LAYERS = 4  # blocks of a scaled twin with a GPU to run it
SCALED_LAYERS_CPU = 2  # CPU-only: every block costs seconds per test on a few cores
BUSY_CORES_PER_THREAD = 0.5  # cores used by others, per benchmark thread, that make it busy
BUSY_WINDOW_S = 0.25
DISK_MARGIN = 2 << 30

Progress = Callable[[str, int, int], None]  # (what, done bytes, total bytes)


@dataclass(frozen=True)
class Machine:
    """What the planner needs from a hardware report (HardwareReport or its to_dict()): the VRAM
    free at detection (what other processes hold is not there to take), the RAM available now."""

    gpu_vram: tuple[int, ...]
    ram_available: int
    threads: int

    @classmethod
    def from_hardware(cls, hardware: HardwareReport | Mapping[str, Any]) -> Machine:
        mem = MachineMemory.of(hardware)
        data = hardware if isinstance(hardware, Mapping) else hardware.to_dict()
        cpu = data.get("cpu") or {}
        return cls(
            # GPUs count only where this llama.cpp build can offload to them
            gpu_vram=mem.gpu_vram_bytes if mem.gpu_offload else (),
            ram_available=mem.available_ram_bytes,
            threads=int(cpu.get("physical_cores") or 0) or physical_cores(),
        )


@dataclass
class QuickPlan:
    configs: list[BenchConfig] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _fits(
    manifest: ModelManifest, placement: memory.Placement, m: Machine, n_ctx: int, n_par: int
) -> bool:
    plan = memory.plan(
        manifest, placement, n_ctx, n_par, n_gpus=len(m.gpu_vram) if placement.n_gpu_layers else 0
    )
    vram_ok = all(
        need <= DEFAULT_VRAM_MARGIN.usable(have)
        for need, have in zip(plan.vram_bytes, m.gpu_vram, strict=False)
    )
    return vram_ok and plan.ram_bytes <= m.ram_available - memory.DEFAULT_RAM_HEADROOM_BYTES


def placements(
    manifest: ModelManifest, m: Machine, n_ctx: int
) -> list[tuple[str, memory.Placement]]:
    """(name, placement) worth measuring that fit, best first (max-fit leads)."""
    n_layer = manifest.n_layer
    cpu = memory.Placement(0)
    split = tuple(float(v) for v in m.gpu_vram) if len(m.gpu_vram) > 1 else None
    if not m.gpu_vram:
        return [("CPU only", cpu)] if _fits(manifest, cpu, m, n_ctx, 1) else []
    wanted = [("all on GPU", memory.Placement(n_layer + 1, tensor_split=split))]
    plans = search.candidate_placements(
        manifest,
        m.gpu_vram,
        m.ram_available,
        n_ctx,
        layer_step=1,
    )
    best = search.best_fitting(plans)
    if best is not None:
        wanted.insert(0, ("max-fit", best.placement))
    wanted.append(("half the layers on GPU", memory.Placement(n_layer // 2, tensor_split=split)))
    if manifest.n_expert:
        wanted.append(
            ("experts on CPU", memory.Placement(n_layer + 1, n_cpu_moe=n_layer, tensor_split=split))
        )
    wanted.append(("CPU only", cpu))
    out: list[tuple[str, memory.Placement]] = []
    seen: set[tuple[int, int]] = set()
    for name, pl in wanted:
        key = (pl.offloaded(n_layer), pl.n_cpu_moe)
        if key in seen or not _fits(manifest, pl, m, n_ctx, 1):
            continue
        seen.add(key)
        out.append((name, pl))
    return out


def _disk_free() -> int:
    return shutil.disk_usage(paths.twins_dir()).free


def _choose_file(
    model: Model, quant: str, m: Machine, n_ctx: int, scaled_layers: int
) -> tuple[str, ModelManifest, int | None, list[tuple[str, memory.Placement]], str]:
    """(source, manifest, layers for twin_for, placements, note)."""
    found = resolve.of_quant(model, quant)  # the downloaded file, else the built-in manifest
    if found.source is ManifestSource.FILE:
        fit = placements(found.manifest, m, n_ctx)
        if fit:
            return "real", found.manifest, None, fit, f"{model.id}: the downloaded real file"
        found = resolve.builtin(model, quant)
    full = found.manifest
    fit = placements(full, m, n_ctx)
    if fit:
        size = twin_size(full)
        if size + DISK_MARGIN <= _disk_free():
            return "twin", full, None, fit, f"{model.id}: a full twin ({size / 1e9:.1f} GB)"
        why = f"its {size / 1e9:.1f} GB twin does not fit on disk"
    else:
        why = "the full model fits in no placement of this machine's memory"
    layers = min(scaled_layers, full.n_layer)
    scaled = manifest_for(model, quant, layers)
    note = f"{model.id}: {why}; measuring a scaled twin of {layers} of {full.n_layer} blocks"
    return "scaled-twin", scaled, layers, placements(scaled, m, n_ctx), note


def make_room_for_twin(model: Model, quant: str) -> list[Path]:
    """Evict least-recently-used cached twins when this model's full twin would not fit on disk
    (models are measured one after the other: one full-size twin at a time may be enough).
    Returns the twins removed."""
    cached = cached_twins()
    if any(p.name.startswith(f"{model.id}.{quant}.") for p in cached):
        return []
    needed = twin_size(manifest_for(model, quant)) + DISK_MARGIN
    free = _disk_free()
    cached_bytes = sum(p.stat().st_size for p in cached)
    if free >= needed or free + cached_bytes < needed:
        return []
    return clean_twin_cache(max_bytes=cached_bytes - (needed - free))


def cores_used_by_others(window_s: float = BUSY_WINDOW_S) -> float:
    """Cores' worth of CPU that other processes (and the hypervisor: steal) use right now.

    Not the load average: one minute after this process's own benchmark it still counts that
    benchmark's threads, which made `fitbench quick` call the machine busy before its second
    model every time."""
    me = psutil.Process()

    def busy() -> tuple[float, float]:
        t = psutil.cpu_times()
        total = sum(
            getattr(t, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal")
        )
        own = me.cpu_times()
        return total, own.user + own.system + own.children_user + own.children_system

    total0, own0 = busy()
    time.sleep(window_s)
    total1, own1 = busy()
    return max(0.0, (total1 - total0) - (own1 - own0)) / window_s


def _busy_note(threads: int) -> str:
    """A sentence when other processes already keep the cores busy (results will be slow)."""
    used = cores_used_by_others()
    if used > BUSY_CORES_PER_THREAD * threads:
        return (
            f"the machine is busy (other programs use {used:.1f} of its {threads} cores right "
            "now): they compete with the benchmark, so speeds will be low and noisy"
        )
    return ""


def quick_plan(
    hardware: Any,
    catalog: Catalog,
    *,
    prepare: bool = True,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    n_threads: list[int] | int | None = None,
    scaled_layers: int | None = None,
    n_prompt: int = QUICK_PROMPT,
    n_gen: int = QUICK_GEN,
    reps: int = QUICK_REPS,
    batches: tuple[int, ...] = QUICK_BATCHES,
    model_ids: list[str] | None = None,
) -> QuickPlan:
    """The configs of the quick sweep, with a note per model saying which file and why.

    prepare: write the twins now (they are cached; progress/cancel go to twin_for).
    """
    m = Machine.from_hardware(hardware)
    if scaled_layers is None:
        scaled_layers = SCALED_LAYERS if m.gpu_vram else SCALED_LAYERS_CPU
    batch_gen = QUICK_BATCH_GEN if m.gpu_vram else QUICK_BATCH_GEN_CPU
    if isinstance(n_threads, list):
        n_threads = n_threads[0] if n_threads else None
    threads = int(n_threads or m.threads)
    n_ctx = n_prompt + n_gen
    out = QuickPlan()
    busy = _busy_note(threads)
    if busy:
        out.notes.append(busy)
    for model in catalog.models:
        if model_ids is not None and model.id not in model_ids:
            continue
        quant = model.default_quant
        source, manifest, layers, fit, note = _choose_file(model, quant, m, n_ctx, scaled_layers)
        if not fit:
            out.notes.append(f"{model.id}: not even a scaled twin fits in memory; skipped")
            continue
        out.notes.append(note)
        if not prepare:
            path_fields: dict[str, Any] = {"model_path": "", "model_id": model.id, "quant": quant}
        elif source == "real":
            path_fields = resolve_path(
                Path(manifest.source), model_id=model.id, quant=quant
            ).config_fields()
        else:

            def on_progress(done: int, total: int, _id: str = model.id) -> None:
                if progress is not None:
                    progress(f"writing the twin of {_id}", done, total)

            path = twin_for(model.id, quant, layers, progress=on_progress, cancel=cancel)
            path_fields = resolve_path(path, model_id=model.id, quant=quant).config_fields()
        if source != "real":  # a real file keeps what its header says (a marked twin stays one)
            path_fields["source"] = source
        path_fields["n_layer_model"] = model.arch.n_layer
        path_fields["n_layer_file"] = manifest.n_layer
        base_tests = (BenchTest("pp", n_prompt=n_prompt), BenchTest("tg", n_gen=n_gen))
        for i, (name, pl) in enumerate(fit):
            tests: tuple[BenchTest, ...] = base_tests
            if i == 0:  # the batch curve on the best placement, where its KV cache fits
                curve = [
                    BenchTest("batch", n_gen=batch_gen, n_parallel=b)
                    for b in batches
                    if _fits(manifest, pl, m, batch_gen + 1, b)
                ]
                tests = base_tests + tuple(curve)
            n_cpu_moe = -1 if pl.n_cpu_moe >= manifest.n_layer else pl.n_cpu_moe
            cfg = BenchConfig(
                tests=tests,
                n_gpu_layers=pl.n_gpu_layers,
                n_cpu_moe=n_cpu_moe,
                tensor_split=pl.tensor_split or (),
                n_threads=threads,
                reps=reps,
                **path_fields,
            )
            out.configs.append(cfg.with_(label=f"{cfg.label} [{name}]", config_id=cfg.config_id))
    return out


def quick_configs(hardware: Any, catalog: Catalog, **kwargs: Any) -> list[BenchConfig]:
    """The quick sweep's configs (twins written as needed); see quick_plan for the options."""
    return quick_plan(hardware, catalog, **kwargs).configs
