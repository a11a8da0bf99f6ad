"""Spec sheets of the NVIDIA GPUs people own, shipped as gpus.toml beside this module.

What-if hardware ("would this run on an RTX 4090?", "on 2x RTX 3090?") needs the target card's
memory, bandwidth and compute instead of a flat guess. The table answers three questions:

- which card a name means: `lookup("4090")`, `parse_gpu_spec("2x RTX 3090")`, and
  `from_nvml_name("NVIDIA H100 80GB HBM3")` for the card NVML found in this machine;
- which real cards hold a given amount of memory: `cards_with_at_least(24 * GiB)`;
- how much faster or slower another card is on paper: `speed_ratios(here, there)`.

Every row says where its figures come from (`source`, `checked`, `checked_at`, `fp16_basis`);
docs/gpus.md describes the columns and how to add a card.
"""

from __future__ import annotations

import difflib
import functools
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

from fitbench.core.hardware.nvml import PCIE_LANE_GBPS

GIB = 1024**3
UNVERIFIED = "unverified"

# Words people add or drop freely: "NVIDIA GeForce RTX 4090" and "4090" are the same card.
_NOISE_WORDS = ("nvidia", "geforce", "tesla", "rtx", "generation")
_COUNT_PREFIX = re.compile(r"^\s*(\d+)\s*(?:x|\*|×)\s*(.+?)\s*$", re.IGNORECASE)


class GpuTableError(ValueError):
    """gpus.toml holds a row that does not parse (a packaging or editing mistake)."""


class UnknownGpuError(ValueError):
    """A GPU name that matches no row; `close_matches` holds the names it resembles."""

    def __init__(self, text: str, close_matches: list[str]) -> None:
        self.text = text
        self.close_matches = close_matches
        hint = f" Did you mean: {', '.join(close_matches)}?" if close_matches else ""
        super().__init__(
            f"Unknown GPU {text!r}.{hint} The cards FitBench knows are in docs/gpus.md."
        )


@dataclass(frozen=True)
class GpuSpec:
    name: str
    aliases: tuple[str, ...]
    nvml_names: tuple[str, ...]
    architecture: str
    compute_capability: str
    form_factor: str  # "PCIe card", "SXM2", "SXM4", "SXM5"
    vram_gib: float  # the vendor's "GB", which is binary
    memory_type: str
    bandwidth_gbs: float  # decimal GB/s, peak
    fp16_tensor_tflops: float | None  # dense, FP16 accumulate
    fp16_basis: str
    fp32_accumulate_half_rate: bool
    pcie_gen: int | None
    pcie_lanes: int | None
    nvlink_gbs: float | None
    tdp_w: int | None
    source: str  # the vendor page the figures belong to, or "unverified"
    vendor_page: str
    checked: tuple[str, ...]  # fields confirmed through a stored public page
    checked_at: tuple[str, ...]
    note: str = ""

    @property
    def vram_bytes(self) -> int:
        return round(self.vram_gib * GIB)

    @property
    def pcie_gbs(self) -> float | None:
        """Host link bandwidth, one direction, in GB/s (theoretical, after line encoding)."""
        if self.pcie_gen is None or self.pcie_lanes is None:
            return None
        per_lane = PCIE_LANE_GBPS.get(self.pcie_gen)
        return None if per_lane is None else per_lane * self.pcie_lanes

    @property
    def verified(self) -> bool:
        return self.source != UNVERIFIED

    def tensor_tflops(self, *, fp32_accumulate: bool = False) -> float | None:
        """Dense FP16 tensor throughput; GeForce cards halve it with FP32 accumulate."""
        if self.fp16_tensor_tflops is None:
            return None
        if fp32_accumulate and self.fp32_accumulate_half_rate:
            return self.fp16_tensor_tflops / 2
        return self.fp16_tensor_tflops

    def label(self) -> str:
        return f"{self.name} ({self.vram_gib:g} GiB, {self.bandwidth_gbs:g} GB/s)"


@dataclass(frozen=True)
class MeasuredFigures:
    """This machine's card as measured or detected, where it has no row (or a row is not wanted)."""

    bandwidth_gbs: float
    fp16_tensor_tflops: float | None = None
    pcie_gbs: float | None = None


class SpeedRatios(NamedTuple):
    """target / reference, each None where either side lacks the figure."""

    bandwidth: float
    compute: float | None
    pcie: float | None


def normalize(text: str) -> str:
    """The lookup key of a GPU name: lower case, letters and digits only, noise words dropped."""
    words = re.findall(r"[a-z]+|[0-9]+", text.lower())  # "rtx4090" is "rtx 4090"
    return "".join(w for w in words if w not in _NOISE_WORDS)


# -- loading ----------------------------------------------------------------------------------


def _table_text() -> str:
    return resources.files("fitbench.core.hardware").joinpath("gpus.toml").read_text("utf-8")


def _opt_float(row: dict[str, Any], key: str) -> float | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise GpuTableError(f"{row.get('name')!r}: {key} must be a number, not {value!r}")
    return float(value)


def _opt_int(row: dict[str, Any], key: str) -> int | None:
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise GpuTableError(f"{row.get('name')!r}: {key} must be an integer, not {value!r}")
    return value


def _str(row: dict[str, Any], key: str, *, required: bool = True) -> str:
    value = row.get(key, None if required else "")
    if not isinstance(value, str) or (required and not value.strip()):
        raise GpuTableError(f"{row.get('name')!r}: {key} must be a non-empty string, not {value!r}")
    return value


def _strs(row: dict[str, Any], key: str) -> tuple[str, ...]:
    value = row.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise GpuTableError(f"{row.get('name')!r}: {key} must be a list of strings, not {value!r}")
    return tuple(value)


def _row(row: dict[str, Any]) -> GpuSpec:
    vram = _opt_float(row, "vram_gib")
    bandwidth = _opt_float(row, "bandwidth_gbs")
    if vram is None or vram <= 0 or bandwidth is None or bandwidth <= 0:
        raise GpuTableError(f"{row.get('name')!r}: vram_gib and bandwidth_gbs must be positive")
    half_rate = row.get("fp32_accumulate_half_rate", False)
    if not isinstance(half_rate, bool):
        raise GpuTableError(f"{row.get('name')!r}: fp32_accumulate_half_rate must be true or false")
    return GpuSpec(
        name=_str(row, "name"),
        aliases=_strs(row, "aliases"),
        nvml_names=_strs(row, "nvml_names"),
        architecture=_str(row, "architecture"),
        compute_capability=_str(row, "compute_capability"),
        form_factor=_str(row, "form_factor"),
        vram_gib=vram,
        memory_type=_str(row, "memory_type"),
        bandwidth_gbs=bandwidth,
        fp16_tensor_tflops=_opt_float(row, "fp16_tensor_tflops"),
        fp16_basis=_str(row, "fp16_basis", required=False),
        fp32_accumulate_half_rate=half_rate,
        pcie_gen=_opt_int(row, "pcie_gen"),
        pcie_lanes=_opt_int(row, "pcie_lanes"),
        nvlink_gbs=_opt_float(row, "nvlink_gbs"),
        tdp_w=_opt_int(row, "tdp_w"),
        source=_str(row, "source"),
        vendor_page=_str(row, "vendor_page"),
        checked=_strs(row, "checked"),
        checked_at=_strs(row, "checked_at"),
        note=_str(row, "note", required=False),
    )


def parse_table(text: str) -> tuple[GpuSpec, ...]:
    """Parse gpus.toml text; raises GpuTableError on a bad row or a name two rows claim."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise GpuTableError(f"gpus.toml does not parse: {exc}") from exc
    rows = data.get("gpu")
    if not isinstance(rows, list) or not rows:
        raise GpuTableError("gpus.toml has no [[gpu]] rows")
    specs = tuple(_row(row) for row in rows)
    _alias_index(specs)  # refuse a table whose names collide
    return specs


@functools.cache
def gpu_table() -> tuple[GpuSpec, ...]:
    """Every row of the shipped table, in file order."""
    return parse_table(_table_text())


def load_table(path: Path) -> tuple[GpuSpec, ...]:
    """A table from another file (tests, a user's own additions)."""
    return parse_table(path.read_text("utf-8"))


def _alias_index(specs: tuple[GpuSpec, ...]) -> dict[str, GpuSpec]:
    index: dict[str, GpuSpec] = {}
    for spec in specs:
        for alias in (spec.name, *spec.aliases):
            key = normalize(alias)
            if not key:
                raise GpuTableError(f"{spec.name!r}: alias {alias!r} has no letters or digits")
            other = index.get(key)
            if other is not None and other is not spec:
                raise GpuTableError(f"alias {alias!r} names both {other.name!r} and {spec.name!r}")
            index[key] = spec
    return index


@functools.cache
def _shipped_index() -> dict[str, GpuSpec]:
    return _alias_index(gpu_table())


# -- lookups ----------------------------------------------------------------------------------


def _close_matches(text: str, specs: tuple[GpuSpec, ...], index: dict[str, GpuSpec]) -> list[str]:
    key = normalize(text)
    names: list[str] = []
    if key:
        # "a100" is part of several keys ("a10080gb", "a100pcie40gb"): name them all
        names.extend(spec.name for k, spec in index.items() if key in k)
        for k in difflib.get_close_matches(key, list(index), n=6, cutoff=0.6):
            names.append(index[k].name)
    seen: list[str] = []
    for name in names:
        if name not in seen:
            seen.append(name)
    return seen[:8]


def lookup(text: str, table: tuple[GpuSpec, ...] | None = None) -> GpuSpec:
    """The card a name means ("RTX 4090", "4090", "rtx4090", "H100 SXM", "A100 80GB").

    A bare name without form factor means the SXM board for A100/H100/H200 and the SXM2 board
    for "V100 16GB" (what clouds rent); say "PCIe" for the card. Raises UnknownGpuError naming
    close matches.
    """
    specs = gpu_table() if table is None else table
    index = _shipped_index() if table is None else _alias_index(specs)
    spec = index.get(normalize(text))
    if spec is None:
        raise UnknownGpuError(text, _close_matches(text, specs, index))
    return spec


def parse_gpu_spec(text: str, table: tuple[GpuSpec, ...] | None = None) -> list[GpuSpec]:
    """Cards from what a user types after --gpu: "RTX 4090", "2x RTX 3090", "2 x 3090", "2*3090",
    or several kinds joined by "+" ("RTX 4090 + RTX 3090"). One list entry a physical card."""
    parts = [p for p in re.split(r"\s*\+\s*", text.strip()) if p]
    if not parts:
        raise UnknownGpuError(text, [])
    cards: list[GpuSpec] = []
    for part in parts:
        count = 1
        match = _COUNT_PREFIX.match(part)
        if match:
            count = int(match.group(1))
            part = match.group(2)
            if not 1 <= count <= 64:
                raise ValueError(f"GPU count must be 1 to 64, not {count} (in {text!r})")
        cards.extend([lookup(part, table)] * count)
    return cards


def from_nvml_name(
    nvml_name: str, total_bytes: int | None = None, table: tuple[GpuSpec, ...] | None = None
) -> GpuSpec | None:
    """The row of a card as NVML names it ("NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 4090").

    Some boards share one NVML name (RTX 3080 10 and 12 GB, RTX 4060 Ti and 5060 Ti 8 and
    16 GB); `total_bytes` (NVML's memory total) picks the nearest. None for a card the table
    lacks, laptop GPUs included: a measured machine then simply has no spec figures.
    """
    specs = gpu_table() if table is None else table
    key = normalize(nvml_name)
    if not key:
        return None
    candidates = [s for s in specs if key in {normalize(n) for n in s.nvml_names}]
    if not candidates:
        index = _shipped_index() if table is None else _alias_index(specs)
        return index.get(key)
    if len(candidates) == 1 or total_bytes is None:
        return candidates[0]
    return min(candidates, key=lambda s: abs(s.vram_bytes - total_bytes))


def cards_with_at_least(
    vram_bytes: int,
    *,
    min_bandwidth_gbs: float | None = None,
    table: tuple[GpuSpec, ...] | None = None,
) -> list[GpuSpec]:
    """Real cards whose spec VRAM is at least `vram_bytes` (what hardware would suffice).

    Smallest sufficient VRAM first (the cheapest way to fit), and within one size the fastest
    memory first. Compares against the spec size: the caller adds its own margin for what the
    driver and other processes keep.
    """
    specs = gpu_table() if table is None else table
    fits = [
        s
        for s in specs
        if s.vram_bytes >= vram_bytes
        and (min_bandwidth_gbs is None or s.bandwidth_gbs >= min_bandwidth_gbs)
    ]
    return sorted(fits, key=lambda s: (s.vram_bytes, -s.bandwidth_gbs, s.name))


def _ratio(target: float | None, reference: float | None) -> float | None:
    if target is None or reference is None or reference <= 0:
        return None
    return target / reference


def speed_ratios(
    reference: GpuSpec | MeasuredFigures, target: GpuSpec, *, fp32_accumulate: bool = False
) -> SpeedRatios:
    """How the target card compares on paper with the reference (this machine's card).

    The predictor calibrates on this machine: it learns what fraction of this card's spec
    bandwidth token generation reaches, what fraction of its tensor throughput prompt
    processing reaches, and how fast weights cross its PCIe link. A prediction for another card
    assumes the same fractions there, so it is this machine's calibrated figure times these
    ratios:

        tg there  ~ tg here  x bandwidth ratio   (decoding reads every weight once a token)
        pp there  ~ pp here  x compute ratio     (prompt batches are matrix-matrix products)
        host-transfer-bound time there ~ time here / pcie ratio

    and is labelled predicted: the fractions differ between architectures (caches, kernels), so
    the further the target is from the reference, the rougher the figure. `fp32_accumulate`
    compares the FP32-accumulate rates (GeForce halves them). Each ratio is target / reference,
    None where either side lacks the figure (bandwidth is always known).
    """
    if isinstance(reference, GpuSpec):
        ref_bw = reference.bandwidth_gbs
        ref_tflops = reference.tensor_tflops(fp32_accumulate=fp32_accumulate)
        ref_pcie = reference.pcie_gbs
    else:
        ref_bw = reference.bandwidth_gbs
        ref_tflops = reference.fp16_tensor_tflops
        ref_pcie = reference.pcie_gbs
    if ref_bw <= 0:
        raise ValueError(f"reference bandwidth must be positive, not {ref_bw}")
    return SpeedRatios(
        bandwidth=target.bandwidth_gbs / ref_bw,
        compute=_ratio(target.tensor_tflops(fp32_accumulate=fp32_accumulate), ref_tflops),
        pcie=_ratio(target.pcie_gbs, ref_pcie),
    )
