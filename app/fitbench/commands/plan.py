"""`fitbench plan`: VRAM and RAM of every placement of one model quant, before any download."""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from typing import Any

from fitbench.commands._common import EXIT_FAILURE, EXIT_OK, print_json
from fitbench.core import catalog, gguf, memory
from fitbench.core.tensors import ModelManifest

HELP = "memory plan: VRAM and RAM for every placement, before any download"
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
    parser.add_argument("--vram-gb", help="what-if: GPU VRAM in GB, comma-separated per GPU")
    parser.add_argument("--ram-gb", type=float, help="what-if: host RAM in GB")
    parser.add_argument("--vram-headroom", type=float, default=5.0, help="%% of VRAM kept free")
    parser.add_argument("--ram-headroom-gb", type=float, default=2.0, help="GB of RAM kept free")
    parser.add_argument("--offline", action="store_true", help="never ask the Hub")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


@dataclass(frozen=True)
class Resolved:
    model: str
    quant: str
    manifest: ModelManifest
    source: str
    file_bytes: int


def _local_catalog_file(model: catalog.Model, quant: str) -> str | None:
    try:
        from fitbench.core import download
    except ImportError:
        return None
    finder = getattr(download, "local_path", None)
    if finder is None:
        return None
    try:
        path = finder(model, quant)
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
    from fitbench.core import twin

    manifest = twin.manifest_for(model, qf.quant)
    return Resolved(model.id, qf.quant, manifest, SOURCE_BUILTIN, qf.size)


def machine(vram_gb: str | None, ram_gb: float | None) -> dict[str, Any]:
    """GPU VRAM and host RAM to plan for: detected, or the what-if values given."""
    gpus: list[int] | None = None
    ram: int | None = None
    source = "what-if"
    if vram_gb is not None:
        gpus = [int(float(v) * 1e9) for v in vram_gb.split(",") if v.strip() and float(v) > 0]
    if ram_gb is not None:
        ram = int(ram_gb * 1e9)
    if gpus is None or ram is None:
        detected = detect_memory()
        gpus = detected["gpus_vram_bytes"] if gpus is None else gpus
        ram = detected["ram_bytes"] if ram is None else ram
        source = "detected" if (vram_gb, ram_gb) == (None, None) else "detected + what-if"
    return {"gpus_vram_bytes": gpus, "ram_bytes": ram, "source": source}


def detect_memory() -> dict[str, Any]:
    """VRAM per GPU and usable RAM from fitbench.core.hardware (NVML, cgroup-aware)."""
    try:
        from fitbench.core import hardware

        report = hardware.detect(probe_bandwidth=False, llama=False)
        return {
            "gpus_vram_bytes": [g.vram_total_bytes for g in report.gpus],
            "ram_bytes": report.ram.usable_bytes,
        }
    except Exception:  # fall back to psutil: planning must not fail on a detection problem
        log.debug("hardware detection failed", exc_info=True)
        import psutil

        return {"gpus_vram_bytes": [], "ram_bytes": int(psutil.virtual_memory().total)}


def plan_report(resolved: Resolved, hw: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    m = resolved.manifest
    plans = memory.candidate_placements(
        m,
        hw["gpus_vram_bytes"],
        hw["ram_bytes"],
        n_ctx=args.ctx,
        n_parallel=args.parallel,
        vram_headroom=args.vram_headroom / 100,
        ram_headroom_bytes=int(args.ram_headroom_gb * 1e9),
        flash_attn=args.flash_attn,
        n_ubatch=args.ubatch,
    )
    best = memory.best_fitting(plans)
    compat = gguf.check_compatibility(m)
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
        "hardware": hw,
        "compatible": compat.ok,
        "compat_reasons": compat.reasons,
        "placements": [p.to_dict(m.n_layer) for p in plans],
        "best": best.to_dict(m.n_layer) if best else None,
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
    print(f"  predicted memory at ctx {r['ctx']} x {r['parallel']} sequence(s):")
    print(f"  {'placement':38s} {'VRAM':>10s} {'RAM':>10s}  fits")
    for p in r["placements"]:
        fits = "yes" if p["fits"] else f"no ({p['reason']})"
        print(f"  {p['label']:38s} {_gb(p['vram_bytes'])} {_gb(p['ram_bytes'])}  {fits}")
    best = r["best"]
    print(f"  best fitting: {best['label'] if best else 'none'}")


def run(args: argparse.Namespace) -> int:
    if args.ctx <= 0 or args.parallel <= 0:
        print("fitbench plan: --ctx and --parallel must be positive", file=sys.stderr)
        return EXIT_FAILURE
    try:
        resolved = resolve(args.model, args.quant, args.offline)
        hw = machine(args.vram_gb, args.ram_gb)
        report = plan_report(resolved, hw, args)
    except (gguf.GGUFError, catalog.CatalogError, ValueError) as exc:
        print(f"fitbench plan: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print_json(report)
    else:
        print_text(report)
    return EXIT_OK
