"""Calibrate the speed predictor on measured points, and check it on points it never saw.

The constants start from the detected hardware (the prior: spec bandwidths scaled by the
efficiency llama.cpp reaches, the measured RAM probe) and are fitted by least squares on the
relative errors of the measured points, so 2 t/s and 2000 t/s count alike. A weak pull towards
the prior keeps constants that no measurement informs where they were, and every constant stays
positive. Each fit reports its constants (with their priors) and the residual of every point.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fitbench.core.hardware.detect import MachineMemory
from fitbench.core.hardware.gpu_specs import GpuSpec, from_nvml_name
from fitbench.core.predict.model import FEATURES, GB, KINDS, Observation, PredictError

_DISPLAY: dict[str, tuple[str, str, Callable[[float], float]]] = {
    "gpu_read": ("gpu_bandwidth", "GB/s", lambda v: 1 / (v * GB)),
    "cpu_read": ("cpu_bandwidth", "GB/s", lambda v: 1 / (v * GB)),
    "pcie_copy": ("pcie_bandwidth", "GB/s", lambda v: 1 / (v * GB)),
    "overhead": ("overhead_per_step", "ms", lambda v: v * 1e3),
    "gpu_matrix": ("gpu_matrix_compute", "TFLOPS", lambda v: 1 / (v * 1e12)),
    "gpu_vector": ("gpu_vector_compute", "TFLOPS", lambda v: 1 / (v * 1e12)),
    "cpu_compute": ("cpu_compute", "GFLOPS", lambda v: 1 / (v * 1e9)),
}


def _get(d: Mapping[str, Any] | None, *keys: str) -> Any:
    for key in keys:
        if not isinstance(d, Mapping):
            return None
        d = d.get(key)
    return d


def machine_of(records: Iterable[Mapping[str, Any]], hardware: Mapping[str, Any]) -> str:
    """The hardware fingerprint the records were measured on; PredictError when they come from
    several machines, or from another machine than `hardware` (a calibration is per machine)."""
    prints: dict[str, int] = {}
    for r in records:
        fp = str(r.get("hardware_fingerprint") or "")
        if fp:
            prints[fp] = prints.get(fp, 0) + 1
    if len(prints) > 1:
        listed = ", ".join(f"{fp} ({n} records)" for fp, n in prints.items())
        raise PredictError(
            f"the results come from {len(prints)} different machines ({listed}); advice and "
            "calibration are for one machine: pass the results of one machine only"
        )
    hw_fp = str(hardware.get("fingerprint") or "")
    rec_fp = next(iter(prints), "")
    if hw_fp and rec_fp and hw_fp != rec_fp:
        raise PredictError(
            f"the results were measured on machine {rec_fp}, but the hardware described is "
            f"{hw_fp}; give the hardware of the machine that ran them (its `fitbench detect "
            "--json`)"
        )
    return rec_fp or hw_fp


def gpu_vram_bytes(hardware: Mapping[str, Any]) -> list[int]:
    """Total VRAM per GPU from a hardware dict (MachineMemory's rules)."""
    return list(MachineMemory.of(hardware).gpu_vram_bytes)


def has_gpu_offload(hardware: Mapping[str, Any]) -> bool:
    """A GPU and a llama.cpp build that can offload to it (unknown build support counts as yes)."""
    memory = MachineMemory.of(hardware)
    return bool(memory.gpu_vram_bytes) and memory.gpu_offload is not False


def ram_bandwidth_gbps(hardware: Mapping[str, Any]) -> float | None:
    for path in (("cpu", "ram_bandwidth_gbps"), ("ram", "bandwidth_gbps"), ("ram_bandwidth_gbps",)):
        value = _get(hardware, *path)
        if isinstance(value, int | float) and value > 0:
            return float(value)
    return None


def physical_cores(hardware: Mapping[str, Any]) -> int:
    for key in ("cores_physical", "physical_cores", "cores", "cores_logical", "logical_cores"):
        value = _get(hardware, "cpu", key)
        if isinstance(value, int) and value > 0:
            return value
    return 4


@dataclass(frozen=True)
class Prior:
    """Starting constants (seconds per unit, in FEATURES order) and where each came from."""

    values: np.ndarray
    sources: dict[str, str]


def gpu_spec_of(gpu: Mapping[str, Any]) -> GpuSpec | None:
    """The GPU table's row of a detected (or what-if) GPU, by the name NVML gives it."""
    name = str(gpu.get("name") or "")
    total = gpu.get("vram_total_bytes")
    return from_nvml_name(name, int(total) if total else None) if name else None


def gpu_bandwidths(hardware: Mapping[str, Any]) -> list[tuple[float, str]]:
    """Spec memory bandwidth of each GPU and where it comes from: detected, else the table."""
    out = []
    for g in hardware.get("gpus") or []:
        if not isinstance(g, Mapping):
            continue
        if (g.get("bandwidth_gbps") or 0) > 0:
            out.append((float(g["bandwidth_gbps"]), "the detected"))
        elif (spec := gpu_spec_of(g)) is not None:
            out.append((spec.bandwidth_gbs, f"the {spec.name} spec sheet's"))
    return out


def prior_from_hardware(hardware: Mapping[str, Any]) -> Prior:
    gpus = [g for g in hardware.get("gpus") or [] if isinstance(g, Mapping)]
    sources: dict[str, str] = {}
    spec = gpu_bandwidths(hardware)
    if spec:
        # llama.cpp reaches 50-80% of a GPU's spec bandwidth (facts.md); start at 60%
        bw, where = min(spec)
        gpu_bw = 0.6 * bw
        sources["gpu_read"] = f"60% of {where} {bw:.0f} GB/s"
    else:
        gpu_bw = 500.0
        sources["gpu_read"] = "a 500 GB/s guess (no GPU bandwidth detected)"
    ram = ram_bandwidth_gbps(hardware)
    cpu_bw = ram if ram else 20.0
    sources["cpu_read"] = (
        f"the measured RAM probe, {ram:.1f} GB/s" if ram else "a 20 GB/s guess (no RAM probe)"
    )
    pcie_values = (
        [
            float(v)
            for g in gpus
            if isinstance(v := _get(g, "pcie", "bandwidth_gbps"), int | float) and v > 0
        ]
        or [
            float(v)
            for v in [_get(hardware, "pcie", "bandwidth_gbps")]
            if isinstance(v, int | float)
        ]
        or [
            float(v)
            for g in gpus
            if (spec_g := gpu_spec_of(g)) and (v := spec_g.pcie_gbs) is not None
        ]
    )
    pcie_bw = 0.8 * min(pcie_values) if pcie_values else 12.0
    sources["pcie_copy"] = (
        f"80% of the detected {min(pcie_values):.0f} GB/s link"
        if pcie_values
        else "12 GB/s (PCIe 3.0 x16 in practice)"
    )
    has_gpu = has_gpu_offload(hardware)
    overhead = 1e-3 if has_gpu else 0.3e-3
    sources["overhead"] = "1 ms a step with a GPU (kernel launches), 0.3 ms without"
    cores = physical_cores(hardware)
    sources["gpu_matrix"] = "50 TFLOPS (a modern GPU's quantized matrix kernels)"
    sources["gpu_vector"] = "20 TFLOPS"
    sources["cpu_compute"] = f"{cores} cores x 40 GFLOPS"
    values = np.array(
        [
            1 / (gpu_bw * GB),
            1 / (cpu_bw * GB),
            1 / (pcie_bw * GB),
            overhead,
            1 / 50e12,
            1 / 20e12,
            1 / (cores * 40e9),
        ]
    )
    return Prior(values, sources)


@dataclass(frozen=True)
class Residual:
    label: str
    kind: str
    measured: float
    predicted: float
    unit: str

    @property
    def error_pct(self) -> float:
        return (self.predicted - self.measured) / self.measured * 100.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "point": self.label,
            "kind": self.kind,
            "measured": round(self.measured, 4),
            "predicted": round(self.predicted, 4),
            "unit": self.unit,
            "error_pct": round(self.error_pct, 2),
        }


def _unit(kind: str) -> str:
    return "ms" if kind == "ttft" else "t/s"


@dataclass(frozen=True)
class Calibration:
    """Fitted constants (seconds per unit, FEATURES order) and how well they explain the data."""

    values: np.ndarray
    prior: Prior
    informed: tuple[bool, ...]  # whether any measurement constrains each constant
    residuals: tuple[Residual, ...] = ()
    # constants the data pushed to their floor: not a limit on any measured point (e.g. CPU
    # compute when every CPU step is bandwidth bound); their value means "much faster than needed"
    at_floor: tuple[bool, ...] = ()
    n_points: int = 0

    def seconds(self, features: np.ndarray) -> float:
        return float(features @ self.values)

    def constants(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for j, name in enumerate(FEATURES):
            label, unit, show = _DISPLAY[name]
            out[label] = {
                "value": round(show(float(self.values[j])), 4),
                "unit": unit,
                "prior": round(show(float(self.prior.values[j])), 4),
                "prior_source": self.prior.sources.get(name, ""),
                "fitted": self.informed[j],
                "not_limiting": bool(self.at_floor and self.at_floor[j]),
            }
        return out

    def mae_pct(self, kind: str | None = None) -> float | None:
        errors = [abs(r.error_pct) for r in self.residuals if kind is None or r.kind == kind]
        return sum(errors) / len(errors) if errors else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "constants": self.constants(),
            "residuals": [r.to_dict() for r in self.residuals],
            "n_points": self.n_points,
            "mae_pct": {k: round(m, 2) for k in KINDS if (m := self.mae_pct(k)) is not None},
        }


def residuals(
    calibration_values: np.ndarray, points: Iterable[Observation]
) -> tuple[Residual, ...]:
    return tuple(
        Residual(
            o.label,
            o.kind,
            o.measured,
            o.value(float(o.features @ calibration_values)),
            _unit(o.kind),
        )
        for o in points
    )


def calibrate(
    points: Sequence[Observation], prior: Prior, *, prior_weight: float = 0.03
) -> Calibration:
    """Least squares on relative errors, constants kept positive, a weak pull towards the prior.

    Each constant is solved as a multiple of its prior (well conditioned whatever the units).
    A constant that wants to go to zero or below is held at a floor and the rest refitted.
    """
    n_feat = len(FEATURES)
    if not points:
        return Calibration(prior.values.copy(), prior, (False,) * n_feat)
    a = np.array([o.features * prior.values / o.seconds for o in points])
    informed = tuple(bool(np.any(a[:, j] > 1e-6)) for j in range(n_feat))
    floor = 1e-3
    fixed: dict[int, float] = {}
    scale = np.ones(n_feat)
    for _ in range(n_feat + 1):
        free = [j for j in range(n_feat) if j not in fixed]
        rhs = np.ones(len(points)) - sum(
            (a[:, j] * v for j, v in fixed.items()), np.zeros(len(points))
        )
        rows = np.vstack([a[:, free], prior_weight * np.eye(len(free))])
        target = np.concatenate([rhs, prior_weight * np.ones(len(free))])
        solution, *_ = np.linalg.lstsq(rows, target, rcond=None)
        for j, s in zip(free, solution, strict=True):
            scale[j] = s
        for j, v in fixed.items():
            scale[j] = v
        negative = [j for j in free if scale[j] < floor]
        if not negative:
            break
        for j in negative:
            fixed[j] = floor
    values = prior.values * scale
    return Calibration(
        values=values,
        prior=prior,
        informed=informed,
        residuals=residuals(values, points),
        n_points=len(points),
        at_floor=tuple(j in fixed for j in range(n_feat)),
    )


@dataclass(frozen=True)
class Holdout:
    """Points predicted by a calibration that never saw them."""

    rows: tuple[Residual, ...]
    fits: tuple[Calibration, ...] = field(default=(), repr=False)

    def mae_pct(self, kind: str | None = None) -> float | None:
        errors = [abs(r.error_pct) for r in self.rows if kind is None or r.kind == kind]
        return sum(errors) / len(errors) if errors else None


def holdout(
    points: Sequence[Observation], prior: Prior, held_out: Callable[[Observation], bool]
) -> Holdout:
    """Fit on the points not held out, predict the held-out ones."""
    train = [o for o in points if not held_out(o)]
    test = [o for o in points if held_out(o)]
    if not train or not test:
        raise PredictError("a hold-out split needs points on both sides")
    fit = calibrate(train, prior)
    return Holdout(residuals(fit.values, test), (fit,))


def leave_one_group_out(
    points: Sequence[Observation], prior: Prior, group: Callable[[Observation], Any]
) -> Holdout:
    """Each group of points (e.g. one placement) predicted by a fit on all the others."""
    rows: list[Residual] = []
    fits: list[Calibration] = []
    for key in dict.fromkeys(group(o) for o in points):

        def in_group(o: Observation, key: Any = key) -> bool:
            return bool(group(o) == key)

        part = holdout(points, prior, in_group)
        rows.extend(part.rows)
        fits.extend(part.fits)
    return Holdout(tuple(rows), tuple(fits))
