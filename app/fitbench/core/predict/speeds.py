"""Predicted speed of each placement of a memory plan (what `fitbench plan` shows next to memory).

The same predictor the advice uses (fitbench.core.predict.model): its constants start from the
detected hardware and, given benchmark results of this machine, are calibrated on them. Every
number it gives is a prediction and is labelled so; the basis says how much it rests on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from fitbench.core.hardware.gpu_specs import GpuSpec, MeasuredFigures, speed_ratios
from fitbench.core.model.catalog import Catalog
from fitbench.core.predict.fit import (
    Calibration,
    calibrate,
    gpu_bandwidths,
    gpu_spec_of,
    has_gpu_offload,
    machine_of,
    prior_from_hardware,
)
from fitbench.core.predict.layer_costs import LayerCosts
from fitbench.core.predict.model import (
    FEATURES,
    CostsFor,
    Observation,
    Placement,
    Predictor,
    catalog_costs_for,
    observations,
)

PP_TOKENS = 512  # llama-bench's pp512 and tg128
TG_TOKENS = 128


@dataclass(frozen=True)
class SpeedModel:
    calibration: Calibration
    has_gpu: bool
    basis: str  # in words: uncalibrated, or calibrated on how many measurements
    notes: list[str] = field(default_factory=list)

    @property
    def predictor(self) -> Predictor:
        return Predictor(self.calibration.values, self.has_gpu)

    def speeds(
        self, costs: LayerCosts, n_gpu_layers: int, n_cpu_moe: int = 0, n_ubatch: int = 512
    ) -> dict[str, float]:
        """Predicted pp512 and tg128 tokens/s of one placement."""
        pred, p = self.predictor, Placement(n_gpu_layers, n_cpu_moe)
        return {
            "predicted_tg_ts": round(pred.tg_ts(costs, p, n_gen=TG_TOKENS), 2),
            "predicted_pp_ts": round(pred.pp_ts(costs, p, PP_TOKENS, n_ubatch), 1),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "basis": self.basis,
            "tests": f"pp{PP_TOKENS}, tg{TG_TOKENS} (llama-bench's defaults)",
            "notes": list(self.notes),
            "predictor": self.calibration.to_dict(),
        }


@dataclass(frozen=True)
class Calibrated:
    """The predictor's constants for one machine and the measurements they were fitted on."""

    calibration: Calibration
    points: list[Observation]
    has_gpu: bool
    what_if: str = ""  # how the constants were carried to what-if cards, "" for this machine


WHAT_IF = "what_if"  # the key of a what-if hardware dict: {"reference": hw, "cards": [names]}


def what_if_hardware(hardware: Mapping[str, Any], cards: Sequence[GpuSpec]) -> dict[str, Any]:
    """This machine with its GPUs replaced by `cards` (what-if hardware, `--gpu`): VRAM,
    bandwidth and PCIe from the GPU table; the machine it was measured on is kept as the
    reference, so its calibration carries over, scaled by the cards' ratios."""
    reference = dict(hardware.get(WHAT_IF, {}).get("reference") or hardware)
    gpus = [
        {
            "index": i,
            "name": card.name,
            "vram_total_bytes": card.vram_bytes,
            "vram_free_bytes": card.vram_bytes,  # a card of one's own: all of it free
            "bandwidth_gbps": card.bandwidth_gbs,
            "spec": "the GPU table (gpus.toml)",
        }
        for i, card in enumerate(cards)
    ]
    names = [card.name for card in cards]
    return {
        **reference,
        "gpus": gpus,
        "llama_cpp": {**(reference.get("llama_cpp") or {}), "gpu_offload": bool(cards)},
        WHAT_IF: {"reference": reference, "cards": names},
    }


def is_what_if(hardware: Mapping[str, Any]) -> bool:
    return bool(hardware.get(WHAT_IF))


def _reference_figures(hardware: Mapping[str, Any]) -> GpuSpec | MeasuredFigures | None:
    gpus = [g for g in hardware.get("gpus") or [] if isinstance(g, Mapping)]
    specs = [spec for g in gpus if (spec := gpu_spec_of(g)) is not None]
    if specs and len(specs) == len(gpus):
        return min(specs, key=lambda s: s.bandwidth_gbs)
    bandwidths = gpu_bandwidths(hardware)
    return MeasuredFigures(min(bandwidths)[0]) if bandwidths else None


def scaled_to_cards(
    calibration: Calibration, reference: Mapping[str, Any], target: Mapping[str, Any]
) -> tuple[Calibration, str]:
    """This machine's calibrated constants for the target's cards: GPU reads scaled by the
    bandwidth ratio, GPU kernels by the tensor throughput ratio, host copies by the PCIe ratio
    (gpu_specs.speed_ratios); CPU constants stay this machine's. Without a GPU here to scale
    from, the GPU constants are the target's priors (its spec sheet)."""
    target_specs = [s for g in target.get("gpus") or [] if (s := gpu_spec_of(g)) is not None]
    ref = _reference_figures(reference) if has_gpu_offload(reference) else None
    values = calibration.values.copy()
    index = {name: j for j, name in enumerate(FEATURES)}
    if not target_specs:
        return calibration, "no GPU"
    slowest = min(target_specs, key=lambda s: s.bandwidth_gbs)
    if ref is None:
        prior = prior_from_hardware(target).values
        for name in ("gpu_read", "pcie_copy", "gpu_matrix", "gpu_vector"):
            values[index[name]] = prior[index[name]]
        how = f"GPU constants from the {slowest.name}'s spec sheet (no GPU here to scale from)"
    else:
        ratios = speed_ratios(ref, slowest)
        values[index["gpu_read"]] /= ratios.bandwidth
        if ratios.compute:
            values[index["gpu_matrix"]] /= ratios.compute
            values[index["gpu_vector"]] /= ratios.compute
        if ratios.pcie:
            values[index["pcie_copy"]] /= ratios.pcie
        here = ref.name if isinstance(ref, GpuSpec) else "this machine's GPU"
        how = (
            f"this machine's calibration scaled from {here} to the {slowest.name} "
            f"(bandwidth x{ratios.bandwidth:.2f}"
            + (f", compute x{ratios.compute:.2f}" if ratios.compute else "")
            + (f", PCIe x{ratios.pcie:.2f}" if ratios.pcie else "")
            + ")"
        )
    return replace(calibration, values=np.asarray(values)), how


def calibrate_on(
    hardware: Mapping[str, Any], records: Sequence[Mapping[str, Any]], costs_for: CostsFor
) -> Calibrated:
    """The one calibration of the speed predictor (`fitbench plan` and the advice): constants
    from the detected hardware, fitted on the records whose model costs `costs_for` knows.
    What-if hardware is calibrated on the machine the records come from, then scaled to its
    cards (scaled_to_cards)."""
    if is_what_if(hardware):
        reference = hardware[WHAT_IF]["reference"]
        here = calibrate_on(reference, records, costs_for)
        scaled, how = scaled_to_cards(here.calibration, reference, hardware)
        return Calibrated(scaled, here.points, has_gpu_offload(hardware), how)
    has_gpu = has_gpu_offload(hardware)
    points = observations(records, costs_for, has_gpu)
    return Calibrated(calibrate(points, prior_from_hardware(hardware)), points, has_gpu)


UNCALIBRATED = "predicted (uncalibrated: detected hardware only)"


def speed_model(
    hardware: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]] = (),
    *,
    catalog: Catalog | None = None,
    own_costs: tuple[str, str, LayerCosts] | None = None,
    results_name: str = "the results",
) -> SpeedModel:
    """The predictor for `hardware`, calibrated on `records` when there are usable ones.

    own_costs: (model id, quant, costs) of the file being planned, so that its own records
    calibrate too when it is not a catalog model. Raises PredictError (a ValueError) for
    records of another machine.
    """
    notes = []
    if hardware.get("gpus") and not has_gpu_offload(hardware):
        notes.append(
            "llama.cpp here cannot offload to the GPU (a CPU-only build?): speeds are predicted "
            "as llama.cpp would run, on the CPU, whatever the placement"
        )
    if records:
        machine_of(records, hardware)
    catalog_costs = catalog_costs_for(catalog) if catalog is not None else None

    def costs_for(record: Mapping[str, Any]) -> LayerCosts | None:
        found = catalog_costs(record) if catalog_costs is not None else None
        if found is None and own_costs is not None:
            model_id, quant, costs = own_costs
            same = (record.get("model_id"), str(record.get("quant") or "").upper())
            if same == (model_id, quant.upper()):
                return costs
        return found

    fitted = calibrate_on(hardware, records, costs_for)
    if fitted.what_if:
        notes.append(f"what-if GPU: {fitted.what_if}; predicted, not measured on that card")
    if not fitted.points:
        if records:
            notes.append(
                f"none of the {len(records)} records in {results_name} could calibrate the "
                "predictor (no finished pp/tg/batch tests of a known model)"
            )
        return SpeedModel(fitted.calibration, fitted.has_gpu, UNCALIBRATED, notes)
    fit = fitted.calibration.mae_pct() or 0.0
    basis = (
        f"predicted (calibrated on {len(fitted.points)} measurements of this machine from "
        f"{results_name}; fit error {fit:.0f}%)"
    )
    return SpeedModel(fitted.calibration, fitted.has_gpu, basis, notes)


__all__ = [
    "PP_TOKENS",
    "TG_TOKENS",
    "Calibrated",
    "SpeedModel",
    "calibrate_on",
    "is_what_if",
    "scaled_to_cards",
    "speed_model",
    "what_if_hardware",
]
