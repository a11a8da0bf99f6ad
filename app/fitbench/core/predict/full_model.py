"""The full model's speed from a scaled twin's measurement: the one place it is computed.

A scaled twin keeps K of a model's n blocks (source "scaled-twin"); what it measures is the
speed of that slice, several times the full model's on the same machine. Every display (the
GUI, the PDF report, `fitbench quick` and `fitbench bench`) shows the figure from here as the
number, labelled predicted, and the slice's own measurement as detail.

How: the calibrated predictor (predict.model / predict.fit, calibrated on all the records given)
costs the record's test twice, on the slice it ran (the kept blocks' real tensor types) and on the
full-depth model at the same share of layers on the GPU. The measured time is scaled by the ratio
of the two predictions, so the figure stays anchored to what this record measured and the
predictor only supplies how much more the missing blocks cost. On a quiet CPU that method was
8-16% optimistic for generation (docs/twins.md, "Scaled-twin extrapolation").
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fitbench.core.model import catalog as catalog_module
from fitbench.core.plan.placement import Placement
from fitbench.core.predict.fit import calibrate, has_gpu_offload, prior_from_hardware
from fitbench.core.predict.layer_costs import LayerCosts, catalog_costs
from fitbench.core.predict.model import observation, observations

log = logging.getLogger(__name__)

SCALED_TWIN = "scaled-twin"


def is_scaled(record: Mapping[str, Any]) -> bool:
    """A record of a slice of the model: a scaled twin, or any file with fewer blocks."""
    n_file, n_model = int(record.get("n_layer_file") or 0), int(record.get("n_layer_model") or 0)
    return record.get("source") == SCALED_TWIN or bool(n_file and n_model and n_file < n_model)


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2g}" if value < 1 else f"{value:.1f}"


@dataclass(frozen=True)
class FullModelFigure:
    """A scaled twin's measurement and the full model's predicted figure for the same test."""

    kind: str  # tg | pp | batch | ttft | pg (predict.model.record_kind)
    value: float | None  # the full model's figure; None when the model's costs are unknown
    measured: float  # what the slice measured, same unit
    unit: str  # "t/s", or "ms" for ttft
    n_layer_file: int
    n_layer_model: int
    full_placement: Placement | None = None
    why_not: str = ""  # why there is no figure, when value is None

    basis = "predicted"

    @property
    def slice_words(self) -> str:
        return f"slice of {self.n_layer_file}/{self.n_layer_model} blocks"

    @property
    def short(self) -> str:
        """The number a table cell shows: '≈1.9 t/s predicted'."""
        if self.value is None:
            return "no full-model figure"
        return f"≈{_num(self.value)} {self.unit} predicted"

    @property
    def detail(self) -> str:
        """'slice of 2/80 blocks measured 9.0 t/s'."""
        return f"{self.slice_words} measured {_num(self.measured)} {self.unit}"

    @property
    def text(self) -> str:
        """'≈1.9 t/s predicted for the full model (slice of 2/80 blocks measured 9.0 t/s)'."""
        if self.value is None:
            return f"no full-model figure ({self.detail}; {self.why_not})"
        return f"{self.short} for the full model ({self.detail})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "value": None if self.value is None else round(self.value, 4),
            "basis": self.basis,
            "measured_slice": round(self.measured, 4),
            "unit": self.unit,
            "n_layer_file": self.n_layer_file,
            "n_layer_model": self.n_layer_model,
            "text": self.text,
        }


def full_placement(p: Placement, n_file: int, n_model: int) -> Placement:
    """The full model's placement with the same share of layers (and of experts) on the GPU."""
    off = p.offloaded(n_file)
    if off <= 0:
        ngl = 0
    elif off >= n_file + 1:
        ngl = n_model + 1
    else:
        ngl = min(n_model, max(1, round(off * (n_model + 1) / (n_file + 1))))
    cpu_moe = p.experts_on_cpu(n_file)
    if cpu_moe >= n_file:
        ncmoe = n_model if cpu_moe else 0
    else:
        ncmoe = round(cpu_moe * n_model / n_file) if n_file else 0
    return Placement(ngl, ncmoe, p.tensor_split, p.main_gpu, p.split_mode)


@functools.lru_cache(maxsize=32)
def _costs(model_id: str, quant: str, layers: int | None) -> LayerCosts | None:
    try:
        model = catalog_module.load().get(model_id)
        return catalog_costs(model, quant, layers=layers)
    except (ValueError, OSError) as exc:
        log.debug("no costs for %s/%s (%s)", model_id, quant, exc)
        return None


def _costs_for(record: Mapping[str, Any]) -> LayerCosts | None:
    """Costs of the file a record measured: the slice for a scaled twin, else the full model."""
    model_id, quant = str(record.get("model_id") or ""), str(record.get("quant") or "")
    if not model_id or not quant:
        return None
    n_file = int(record.get("n_layer_file") or 0)
    return _costs(model_id, quant, n_file if is_scaled(record) else None)


def full_model_figures(
    records: Sequence[Mapping[str, Any]], hardware: Mapping[str, Any] | None = None
) -> list[FullModelFigure | None]:
    """One entry per record, in order: the full-model figure of each finished scaled-twin test,
    None for every other record (a real file or full twin is shown as measured).

    The predictor is calibrated on all `records` (the records of one machine) from the priors of
    `hardware` (the detected machine; None: generic guesses, which the records then correct).
    """
    out: list[FullModelFigure | None] = [None] * len(records)
    wanted = [i for i, r in enumerate(records) if is_scaled(r) and r.get("status", "ok") == "ok"]
    if not wanted:
        return out
    hw = dict(hardware or {})
    # without the hardware: a GPU took part where a record offloaded and saw VRAM in use
    has_gpu = (
        has_gpu_offload(hw)
        if hw
        else any(int(r.get("n_gpu_layers") or 0) and r.get("vram_peak_bytes") for r in records)
    )
    calibration = calibrate(observations(records, _costs_for, has_gpu), prior_from_hardware(hw))
    for i in wanted:
        r = records[i]
        n_file, n_model = int(r.get("n_layer_file") or 0), int(r.get("n_layer_model") or 0)
        slice_costs = _costs_for(r)
        measured = observation(r, slice_costs, has_gpu) if slice_costs is not None else None
        if measured is None:
            continue  # no tokens/s or ttft to show (or an unusable record)
        unit = "ms" if measured.kind == "ttft" else "t/s"
        target = full_placement(Placement.from_record(r), n_file, n_model)
        full_costs = _costs(str(r.get("model_id")), str(r.get("quant")), None)
        raw = r.get("ttft_ms") if measured.kind == "ttft" else r.get("avg_ts")
        slice_only = FullModelFigure(
            kind=measured.kind,
            value=None,
            measured=float(raw or measured.measured),
            unit=unit,
            n_layer_file=n_file,
            n_layer_model=n_model,
        )
        if full_costs is None:
            out[i] = replace(slice_only, why_not="the full model's layer costs are unknown")
            continue
        full_record = {**r, **target.record_fields(), "n_layer_file": n_model}
        full = observation(full_record, full_costs, has_gpu)
        slice_s = calibration.seconds(measured.features)
        if full is None or slice_s <= 0:
            continue
        seconds = measured.seconds * calibration.seconds(full.features) / slice_s
        out[i] = replace(slice_only, value=full.value(seconds), full_placement=target)
    return out


def display_value(record: Mapping[str, Any], figure: FullModelFigure | None) -> float | None:
    """The tokens/s (or ms) a display shows for a record: the full-model figure of a scaled twin
    (None when there is none: never the slice's speed), else what was measured."""
    if is_scaled(record):
        return None if figure is None else figure.value
    value = record.get("ttft_ms") if record.get("test") == "ttft" else record.get("avg_ts")
    return None if value is None else float(value)
