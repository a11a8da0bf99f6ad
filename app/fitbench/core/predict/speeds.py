"""Predicted speed of each placement of a memory plan (what `fitbench plan` shows next to memory).

The same predictor the advice uses (fitbench.core.predict.model): its constants start from the
detected hardware and, given benchmark results of this machine, are calibrated on them. Every
number it gives is a prediction and is labelled so; the basis says how much it rests on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fitbench.core.model.catalog import Catalog
from fitbench.core.predict.fit import (
    Calibration,
    calibrate,
    has_gpu_offload,
    machine_of,
    prior_from_hardware,
)
from fitbench.core.predict.layer_costs import LayerCosts
from fitbench.core.predict.model import (
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


def calibrate_on(
    hardware: Mapping[str, Any], records: Sequence[Mapping[str, Any]], costs_for: CostsFor
) -> Calibrated:
    """The one calibration of the speed predictor (`fitbench plan` and the advice): constants
    from the detected hardware, fitted on the records whose model costs `costs_for` knows."""
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
    "speed_model",
]
