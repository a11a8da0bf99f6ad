"""Shared inputs of the advice tests: the shipped catalog cut to a few quants, the measured H200
records with their hardware, and a CPU-only machine."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from fitbench.core.advise.candidates import GIB
from fitbench.core.model import catalog
from fitbench.core.results import schema as results

DATA = Path(__file__).parent / "data"
MIXTRAL, LLAMA = "mixtral-8x7b-instruct", "llama-2-70b-chat"


def catalog_with(quants: tuple[str, ...] = ("Q4_K_M",)) -> catalog.Catalog:
    """The shipped catalog cut to a few quants (keeps each recommendation fast)."""
    models = tuple(
        dataclasses.replace(m, quants=tuple(q for q in m.quants if q.quant in quants))
        for m in catalog.load().models
    )
    return catalog.Catalog(models)


def h200(vram_gib: float | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The H200 fixture's records and hardware; vram_gib shrinks its GPU (a what-if card)."""
    records = results.read_jsonl(DATA / "predict_h200_facts.jsonl")
    hardware = json.loads((DATA / "predict_h200_hardware.json").read_text())
    if vram_gib is not None:
        hardware["gpus"][0]["vram_total_bytes"] = int(vram_gib * GIB)
    return records, hardware


def cpu_machine(ram_gib: float, fingerprint: str = "cpu-box") -> dict[str, Any]:
    return {
        "fingerprint": fingerprint,
        "cpu": {"physical_cores": 8, "ram_bandwidth_gbps": 50.0},
        "ram": {"total_bytes": int(ram_gib * GIB), "usable_bytes": int(ram_gib * GIB)},
        "gpus": [],
        "llama_cpp": {"gpu_offload": False},
    }
