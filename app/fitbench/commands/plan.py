"""`fitbench plan`: VRAM, RAM and predicted speed of every placement of one model quant, before
any download."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fitbench.commands._common import EXIT_FAILURE, EXIT_OK, load_hardware_json, print_json
from fitbench.core import gguf
from fitbench.core.gguf.manifest import ModelManifest
from fitbench.core.model import catalog
from fitbench.core.plan import memory, search
from fitbench.core.predict import fit as predict_fit
from fitbench.core.predict.layer_costs import from_manifest
from fitbench.core.predict.speeds import SpeedModel, speed_model
from fitbench.core.results import schema as results

HELP = "memory plan: VRAM, RAM and predicted speed for every placement, before any download"
GiB = 1 << 30
log = logging.getLogger(__name__)

# where the manifest came from, as shown to the user
SOURCE_FILE = "local file header"
SOURCE_REMOTE = "remote header (HTTP range read from the Hub)"
SOURCE_BUILTIN = "built-in manifest (offline: catalog architecture + llama.cpp quant rules)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="catalog id or path to a .gguf file")
    parser.add_argument("--quant", help="quantization (catalog models; default: the model's)")
    parser.add_argument("--ctx", type=int, default=4096, help="context per sequence (tokens)")
    parser.add_argument("--parallel", type=int, default=1, help="parallel sequences")
    parser.add_argument("--ubatch", type=int, default=512, help="physical batch size")
    parser.add_argument("--flash-attn", action="store_true", help="plan with flash attention")
    parser.add_argument("--vram-headroom", type=float, default=5.0, help="%% of VRAM kept free")
    parser.add_argument(
        "--ram-headroom-gb",
        type=float,
        help=f"GB of RAM kept free (default {memory.DEFAULT_RAM_HEADROOM_BYTES / 1e9:.2f}, "
        "i.e. 2 GiB, as the advice)",
    )
    add_machine_arguments(parser)
    parser.add_argument(
        "--results",
        type=Path,
        help="results JSONL of this machine (fitbench bench --out): calibrates the predicted "
        "speeds on its measurements",
    )
    parser.add_argument("--offline", action="store_true", help="never ask the Hub")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_machine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vram-gb", help="what-if: GPU VRAM in GB, comma-separated per GPU")
    parser.add_argument("--ram-gb", type=float, help="what-if: host RAM in GB")
    parser.add_argument(
        "--hardware",
        type=Path,
        help="plan for the machine of this file (`fitbench detect --json`) instead of this one",
    )


@dataclass(frozen=True)
class Resolved:
    model: str
    quant: str
    manifest: ModelManifest
    source: str
    file_bytes: int


def _local_catalog_file(model: catalog.Model, quant: str) -> str | None:
    from fitbench.core.download import hub as download

    try:
        path = download.local_path(model, quant)
    except Exception:  # a missing or broken download is "not local", never a planning failure
        log.debug("no local file for %s %s", model.id, quant, exc_info=True)
        return None
    return str(path) if path else None


def _file_type(manifest: ModelManifest) -> str:
    from gguf import LlamaFileType

    try:
        return LlamaFileType(manifest.metadata["general.file_type"]).name.removeprefix("MOSTLY_")
    except (KeyError, ValueError, TypeError):
        return "unknown"


def resolve(model_arg: str, quant: str | None, offline: bool = False) -> Resolved:
    """The manifest of a path or a catalog quant: local file > remote header > built-in."""
    from pathlib import Path

    path = Path(model_arg).expanduser()
    if path.suffix == ".gguf" or "gguf-split" in path.name or path.exists():
        manifest = gguf.read_header(path)
        return Resolved(
            path.name, quant or _file_type(manifest), manifest, SOURCE_FILE, manifest.file_size or 0
        )
    model = catalog.load().get(model_arg)
    qf = model.quant(quant or model.default_quant)
    local = _local_catalog_file(model, qf.quant)
    if local:
        manifest = gguf.read_header(local)
        return Resolved(model.id, qf.quant, manifest, SOURCE_FILE, manifest.file_size or qf.size)
    if not offline:
        try:
            manifest = gguf.read_remote_header(
                model.repo,
                qf.file if not qf.parts else qf.parts[0],
                model.revision,
                parts=qf.parts or None,
            )
            return Resolved(
                model.id, qf.quant, manifest, SOURCE_REMOTE, manifest.file_size or qf.size
            )
        except gguf.GGUFError as exc:
            log.info("remote header unavailable, using the built-in manifest: %s", exc)
    from fitbench.core.twin import writer as twin

    manifest = twin.manifest_for(model, qf.quant)
    return Resolved(model.id, qf.quant, manifest, SOURCE_BUILTIN, qf.size)


def machine(
    vram_gb: str | None, ram_gb: float | None, hardware_file: Path | None = None
) -> dict[str, Any]:
    """GPU VRAM and host RAM to plan for (detected, from a hardware file, or the what-if values
    given), and under "hardware" the machine the speed predictions assume."""
    if hardware_file is not None:
        hw = load_hardware_json(hardware_file)
        source = f"hardware file {hardware_file.name}"
    else:
        # both sizes given: a quick look at the CPU only (no probes), the rest is what-if
        hw = detect_hardware(full=vram_gb is None or ram_gb is None)
        source = "detected"
    gpus, ram = capacities(hw)
    if vram_gb is not None:
        gpus = [int(float(v) * 1e9) for v in vram_gb.split(",") if v.strip() and float(v) > 0]
        # a what-if GPU: offloading assumed; its bandwidth is the predictor's guess
        hw = {**hw, "gpus": [{"name": "what-if GPU", "vram_total_bytes": g} for g in gpus]}
        hw["llama_cpp"] = {**(hw.get("llama_cpp") or {}), "gpu_offload": bool(gpus)}
    if ram_gb is not None:
        ram = int(ram_gb * 1e9)
    if vram_gb is not None and ram_gb is not None:
        source = "what-if"
    elif vram_gb is not None or ram_gb is not None:
        source += " + what-if"
    return {"gpus_vram_bytes": gpus, "ram_bytes": ram, "source": source, "hardware": hw}


def capacities(hw: dict[str, Any]) -> tuple[list[int], int]:
    """VRAM per GPU and usable RAM as fitbench.core.hardware.detect computes them: NVML's GPUs, else
    llama.cpp's device memory (Metal, Vulkan); RAM capped by the container's limit."""
    from fitbench.core.hardware import detect as hardware

    try:
        report = hardware.HardwareReport.from_dict(hw)
        return list(report.gpu_vram_bytes()), int(report.usable_ram_bytes)
    except (KeyError, TypeError, ValueError):  # a partial hardware dict: the same rules on it
        ram = hw.get("ram") or {}
        usable = int(ram.get("usable_bytes") or ram.get("total_bytes") or 0)
        return predict_fit.gpu_vram_bytes(hw), usable


def detect_hardware(full: bool = True) -> dict[str, Any]:
    """This machine (core.hardware.detect: cgroup-aware RAM, llama.cpp's devices when `full`)."""
    try:
        from fitbench.core.hardware import detect as hardware

        report = hardware.detect(probe_bandwidth=full, llama=full)
        data: dict[str, Any] = report.to_dict()
        return data
    except Exception:  # fall back to psutil: planning must not fail on a detection problem
        log.debug("hardware detection failed", exc_info=True)
        import psutil

        total = int(psutil.virtual_memory().total)
        return {"gpus": [], "ram": {"total_bytes": total, "usable_bytes": total}}


def speeds(
    resolved: Resolved, hw: dict[str, Any], results_file: Path | None
) -> tuple[SpeedModel, Any]:
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


def plan_report(resolved: Resolved, hw: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    m = resolved.manifest
    headroom_gb = getattr(args, "ram_headroom_gb", None)
    plans = search.candidate_placements(
        m,
        hw["gpus_vram_bytes"],
        hw["ram_bytes"],
        n_ctx=args.ctx,
        n_parallel=args.parallel,
        vram_headroom=args.vram_headroom / 100,
        ram_headroom_bytes=memory.DEFAULT_RAM_HEADROOM_BYTES
        if headroom_gb is None
        else int(headroom_gb * 1e9),
        flash_attn=args.flash_attn,
        n_ubatch=args.ubatch,
    )
    best = search.best_fitting(plans)
    compat = gguf.check_compatibility(m)
    model, costs = speeds(resolved, hw["hardware"], getattr(args, "results", None))

    def row(p: memory.PlacementPlan) -> dict[str, Any]:
        return {**p.to_dict(m.n_layer), **model.speeds(costs, p.n_gpu_layers, p.n_cpu_moe)}

    machine_info = {k: v for k, v in hw.items() if k != "hardware"}
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
        "ctx": args.ctx,
        "parallel": args.parallel,
        "hardware": machine_info,
        "compatible": compat.ok,
        "compat_reasons": compat.reasons,
        "speed": model.to_dict(),
        "placements": [row(p) for p in plans],
        "best": row(best) if best else None,
    }


def _gb(n: int | float) -> str:
    return f"{n / 1e9:6.2f} GB"


def print_text(r: dict[str, Any]) -> None:
    hw = r["hardware"]
    gpus = ", ".join(_gb(v).strip() for v in hw["gpus_vram_bytes"]) or "no GPU"
    print(
        f"{r['model']} {r['quant']}: file {_gb(r['file_bytes']).strip()}, "
        f"weights {_gb(r['weights_bytes']).strip()}, "
        f"KV {r['kv_bytes_per_token'] / 1024:.0f} KiB/token"
    )
    print(f"  from: {r['manifest_source']}")
    print(f"  machine ({hw['source']}): {gpus}; RAM {_gb(hw['ram_bytes']).strip()}")
    if not r["compatible"]:
        print("  INCOMPATIBLE with the installed llama.cpp: " + "; ".join(r["compat_reasons"]))
    print(f"  predicted memory at ctx {r['ctx']} x {r['parallel']} sequence(s), and speed:")
    print(f"  speed: {r['speed']['basis']}")
    for note in r["speed"]["notes"]:
        print(f"  note: {note}")
    head = f"{'placement':38s} {'VRAM':>10s} {'RAM':>10s} {'tg128 t/s':>10s} {'pp512 t/s':>10s}"
    print(f"  {head}  fits")
    for p in r["placements"]:
        fits = "yes" if p["fits"] else f"no ({p['reason']})"
        print(
            f"  {p['label']:38s} {_gb(p['vram_bytes'])} {_gb(p['ram_bytes'])} "
            f"{p['predicted_tg_ts']:10.2f} {p['predicted_pp_ts']:10.1f}  {fits}"
        )
    best = r["best"]
    print(
        f"  best fitting: {best['label']}, {best['predicted_tg_ts']:.2f} tokens/s generation, "
        f"{best['predicted_pp_ts']:.1f} tokens/s prompt (predicted)"
        if best
        else "  best fitting: none"
    )


def run(args: argparse.Namespace) -> int:
    if args.ctx <= 0 or args.parallel <= 0:
        print("fitbench plan: --ctx and --parallel must be positive", file=sys.stderr)
        return EXIT_FAILURE
    try:
        resolved = resolve(args.model, args.quant, args.offline)
        hw = machine(args.vram_gb, args.ram_gb, args.hardware)
        report = plan_report(resolved, hw, args)
    except (gguf.GGUFError, catalog.CatalogError, results.ResultError, ValueError) as exc:
        print(f"fitbench plan: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print_json(report)
    else:
        print_text(report)
    return EXIT_OK
