"""Small helpers shared by the command modules."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from fitbench.core.hardware.detect import read_json
from fitbench.core.hardware.gpu_specs import GpuSpec, parse_gpu_spec
from fitbench.core.predict.plan_report import Machine
from fitbench.core.predict.speeds import what_if_hardware

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


def not_implemented(name: str) -> int:
    print(f"fitbench {name}: not implemented yet", file=sys.stderr)
    return EXIT_USAGE


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def emit(data: dict[str, Any], as_json: bool, show: Callable[[dict[str, Any]], None]) -> int:
    """A command's result: JSON with --json, else `show` prints it for people."""
    if as_json:
        print_json(data)
    else:
        show(data)
    return EXIT_OK


def load_hardware_json(path: Path) -> dict[str, Any]:
    """The JSON object `fitbench detect --json` wrote; a clear ValueError naming the file."""
    return read_json(path)


GPU_HELP = (
    "what-if: plan and predict for these NVIDIA cards instead of this machine's GPUs, e.g. "
    '"RTX 4090" or "2x RTX 3090" (the cards FitBench knows are in docs/gpus.md); speeds are '
    "this machine's calibration scaled by the cards' spec ratios, labelled predicted"
)


def add_gpu_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpu", metavar="CARDS", help=GPU_HELP)


def what_if_cards(args: argparse.Namespace) -> list[GpuSpec] | None:
    """The cards of --gpu (None without it); UnknownGpuError (a ValueError) names close ones."""
    text = getattr(args, "gpu", None)
    if not text:
        return None
    if getattr(args, "vram_gb", None) is not None:
        raise ValueError("give --gpu or --vram-gb, not both: --gpu sets each card's VRAM")
    return parse_gpu_spec(text)


def with_what_if_gpus(machine: Machine, args: argparse.Namespace) -> Machine:
    """`fitbench plan` / `models`: the machine with --gpu's cards in place of its GPUs."""
    cards = what_if_cards(args)
    if cards is None:
        return machine
    return replace(
        machine,
        gpus_vram_bytes=[c.vram_bytes for c in cards],
        source=f"{machine.source} + what-if GPU {args.gpu}",
        hardware=what_if_hardware(machine.hardware, cards),
        vram_basis="what-if",
        vram_words=tuple(f"what-if {c.name}: {c.vram_bytes / 2**30:.1f} GiB" for c in cards),
    )


def hardware_with_what_if_gpus(
    hardware: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    """`fitbench recommend`: the hardware dict with --gpu's cards in place of its GPUs."""
    cards = what_if_cards(args)
    return hardware if cards is None else what_if_hardware(hardware, cards)
