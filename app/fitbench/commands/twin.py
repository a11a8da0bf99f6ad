"""`fitbench twin`: write a shape-faithful twin of a catalog model, a local GGUF or a GGUF URL."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from fitbench.commands._common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, print_json
from fitbench.core.gguf.manifest import ModelManifest
from fitbench.core.model import catalog
from fitbench.core.twin.writer import (
    TwinError,
    TwinInfo,
    describe_twin,
    manifest_for,
    scale_manifest,
    twin_of,
    twin_size,
    write_twin,
)

HELP = "write a shape-faithful random-weight twin of a GGUF model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        metavar="ID|PATH|URL",
        help="a catalog model id (built offline from its architecture), a local .gguf file or an "
        "http(s) URL of one (its header is copied exactly)",
    )
    parser.add_argument(
        "--quant", help="quantization for a catalog model (default: its default quant)"
    )
    parser.add_argument(
        "--layers",
        type=int,
        metavar="K",
        help="scaled twin: keep K blocks spread over the depth (the kept indices are recorded)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="PATH",
        help="write it to exactly this file (a new or regular file; never a device, folder or "
        "symbolic link). The metadata inside marks it as a twin whatever its name; "
        "default: the twin cache (*.fitbench-twin.gguf)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _is_file_or_url(text: str) -> bool:
    return text.startswith(("http://", "https://")) or text.endswith(".gguf") or Path(text).exists()


def _manifest(args: argparse.Namespace) -> tuple[ModelManifest, str]:
    if _is_file_or_url(args.model):
        if args.quant:
            raise TwinError(
                f"--quant applies to catalog models; the twin of {args.model} keeps its types"
            )
        from fitbench.core.gguf import GGUFError, read_header

        try:
            manifest = read_header(args.model)
        except GGUFError as exc:
            raise TwinError(str(exc)) from None
        if args.layers:
            manifest = scale_manifest(manifest, args.layers)
        return manifest, Path(args.model).stem
    model = catalog.load().get(args.model)
    return manifest_for(model, args.quant or model.default_quant, args.layers), model.id


class _Progress:
    """A percentage on stderr, at most a few times a second."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.quiet or (now - self.last < 0.5 and done < total):
            return
        self.last = now
        print(f"\r  {done / 1e9:7.2f} / {total / 1e9:.2f} GB", end="", file=sys.stderr)
        if done >= total:
            print(file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    if args.layers is not None and args.layers < 1:
        print("fitbench twin: --layers must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    try:
        manifest, label = _manifest(args)
        progress = _Progress(quiet=args.json or not sys.stderr.isatty())
        if args.out is not None:
            info = write_twin(manifest, args.out, progress=progress)
        else:
            info = describe_twin(twin_of(manifest, label=label, progress=progress))
    except (TwinError, catalog.CatalogError, ValueError) as exc:
        print(f"fitbench twin: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print_json(_as_dict(info, manifest))
    else:
        print(f"{info.kind} of {info.source}: {info.path}")
        blocks = f"{len(info.layers_kept)} of {info.n_layer_model} blocks"
        print(f"  {info.size_bytes / 1e9:.3f} GB, {blocks}")
        if info.seconds:
            print(f"  written in {info.seconds:.1f} s ({info.mb_per_s:.0f} MB/s)")
        print("  synthetic weights: speed and memory are the real model's, outputs are noise")
    return EXIT_OK


def _as_dict(info: TwinInfo, manifest: ModelManifest) -> dict[str, object]:
    return {
        "path": str(info.path),
        "kind": info.kind,
        "source": info.source,
        "size_bytes": info.size_bytes,
        "n_layer_model": info.n_layer_model,
        "layers_kept": list(info.layers_kept),
        "seconds": round(info.seconds, 3),
        "mb_per_s": round(info.mb_per_s, 1),
        "header": info.extra.get("header", ""),
        "predicted_size_bytes": twin_size(manifest),
    }
