"""Every deployment the advice weighs: model x quant x placement x batch, each number labelled.

A candidate's numbers come from a measurement of exactly that configuration where one exists
(a real file beats a twin) and from the calibrated predictor elsewhere. Scaled-twin measurements
only ever inform the predictor: on their own they describe a model of the wrong depth.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fitbench.core.advise.memory import MemoryFn, PlannedMemory
from fitbench.core.model.catalog import Model
from fitbench.core.plan.margin import MarginLike, VramMargin, margin_of
from fitbench.core.plan.placement import Placement
from fitbench.core.predict.fit import gpu_vram_bytes
from fitbench.core.predict.layer_costs import LayerCosts
from fitbench.core.predict.model import Predictor, normalise, record_kind
from fitbench.core.twin.fidelity import Fidelity, record_fidelity

GIB = 1024**3
MEASURED_REAL, MEASURED_TWIN, PREDICTED = "measured-real", "measured-twin", "predicted"
BASES = (MEASURED_REAL, MEASURED_TWIN, PREDICTED)

# Perplexity added by each quantization, from llama.cpp's own table (tools/quantize/quantize.cpp,
# measured on Llama-3-8B): the quant-level part of the quality floor.
PPL_INCREASE: dict[str, float] = {
    "Q2_K": 3.5199,
    "Q2_K_S": 3.1836,
    "Q3_K_S": 1.6321,
    "Q3_K_M": 0.6569,
    "Q3_K_L": 0.5562,
    "Q4_0": 0.4685,
    "Q4_1": 0.4511,
    "Q4_K_S": 0.2689,
    "Q4_K_M": 0.1754,
    "Q5_0": 0.1316,
    "Q5_1": 0.1062,
    "Q5_K_S": 0.1049,
    "Q5_K_M": 0.0569,
    "Q6_K": 0.0217,
    "Q8_0": 0.0026,
    "F16": 0.0020,
}
PPL_REFERENCE = "llama.cpp's quantize table, measured on Llama-3-8B"


@dataclass(frozen=True)
class Value:
    value: float | None
    basis: str
    # a twin's number: how far the real file's may be; `time` says the value is a duration
    # (the real file slower means a longer one)
    fidelity: Fidelity | None = None
    time: bool = False

    @property
    def real_range(self) -> tuple[float, float] | None:
        """Where the real file's figure lies, for a number measured on a twin."""
        if self.fidelity is None or self.value is None:
            return None
        low, high = self.fidelity.bounds(float(self.value))
        if self.time:  # a speed x (1 + d) takes time / (1 + d)
            v = float(self.value)
            low, high = v / (1 + self.fidelity.high), v / (1 + self.fidelity.low)
        return low, high

    @property
    def basis_words(self) -> str:
        """The basis as sentences cite it, with a twin's band: "measured-twin, real file ±1%"."""
        return self.basis if self.fidelity is None else f"{self.basis}, {self.fidelity.short}"

    def to_dict(self, digits: int = 2) -> dict[str, Any]:
        value = None if self.value is None else round(float(self.value), digits)
        out: dict[str, Any] = {"value": value, "basis": self.basis}
        rng = self.real_range
        if self.fidelity is not None and rng is not None:
            out["uncertainty"] = round(self.fidelity.uncertainty, 4)
            out["real_range"] = [round(rng[0], digits), round(rng[1], digits)]
            out["twin_caveat"] = self.fidelity.text
        return out


def worst_basis(*bases: str) -> str:
    return max(bases, key=BASES.index) if bases else PREDICTED


@dataclass(frozen=True)
class Quality:
    mmlu: float | None
    mt_bench: float | None
    ppl_increase: float | None  # None: the quant is not in llama.cpp's table

    def to_dict(self) -> dict[str, Any]:
        return {
            "mmlu": self.mmlu,
            "mt_bench": self.mt_bench,
            "ppl_increase": self.ppl_increase,
            "basis": f"published scores of the unquantized model; quant cost from {PPL_REFERENCE}",
        }


@dataclass(frozen=True)
class QualityFloor:
    """The least quality the user accepts: published scores and the quant's perplexity cost."""

    min_mmlu: float | None = None
    min_mt_bench: float | None = None
    # Q4_K_M (+0.18) and better by default: llama.cpp's usual balance of size and quality
    max_ppl_increase: float | None = 0.2

    def allows(self, q: Quality) -> bool:
        return not self.why_not(q)

    def why_not(self, q: Quality) -> str:
        if self.min_mmlu is not None and (q.mmlu is None or q.mmlu < self.min_mmlu):
            return f"MMLU {q.mmlu} is below the floor of {self.min_mmlu}"
        if self.min_mt_bench is not None and (q.mt_bench is None or q.mt_bench < self.min_mt_bench):
            return f"MT-Bench {q.mt_bench} is below the floor of {self.min_mt_bench}"
        if self.max_ppl_increase is not None:
            if q.ppl_increase is None:
                return "its quantization has no published perplexity cost"
            if q.ppl_increase > self.max_ppl_increase:
                return (
                    f"its quantization adds {q.ppl_increase:+.2f} perplexity, more than the "
                    f"{self.max_ppl_increase:+.2f} allowed"
                )
        return ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "min_mmlu": self.min_mmlu,
            "min_mt_bench": self.min_mt_bench,
            "max_ppl_increase": self.max_ppl_increase,
        }


def quality_of(model: Model, quant: str) -> Quality:
    return Quality(model.mmlu, model.mt_bench, PPL_INCREASE.get(quant.upper()))


@dataclass(frozen=True)
class Capacity:
    """What this machine offers the model after the headroom left for everything else."""

    vram_bytes: int  # all GPUs together (llama.cpp splits layers across them)
    ram_bytes: int
    n_gpus: int
    has_gpu: bool
    vram_margin: VramMargin
    ram_headroom_bytes: int
    gpu_vram_bytes: tuple[int, ...] = ()  # each GPU's total, before headroom

    def fits(self, vram: float, ram: float, per_gpu: Sequence[int] | None = None) -> bool:
        """Within the usable RAM, and VRAM per GPU as `fitbench plan` checks it when the plan
        per GPU is known (else all GPUs together)."""
        if ram > self.ram_bytes:
            return False
        if per_gpu is not None and len(per_gpu) == self.n_gpus and vram <= sum(per_gpu):
            return all(
                need <= self.vram_margin.usable(have)
                for need, have in zip(per_gpu, self.gpu_vram_bytes, strict=True)
            )
        return vram <= self.vram_bytes


def capacity_of(
    hardware: Mapping[str, Any], has_gpu: bool, vram_margin: MarginLike, ram_headroom_bytes: int
) -> Capacity:
    margin = margin_of(vram_margin)
    gpus = gpu_vram_bytes(hardware) if has_gpu else []
    ram_info = hardware.get("ram") or {}
    ram_total = int(ram_info.get("usable_bytes") or ram_info.get("total_bytes") or 0)
    return Capacity(
        vram_bytes=sum(margin.usable(g) for g in gpus),
        ram_bytes=max(0, ram_total - ram_headroom_bytes),
        n_gpus=len(gpus),
        has_gpu=has_gpu,
        vram_margin=margin,
        ram_headroom_bytes=ram_headroom_bytes,
        gpu_vram_bytes=tuple(gpus),
    )


def placements_for(costs: LayerCosts, has_gpu: bool) -> list[Placement]:
    """Every n_gpu_layers from CPU-only to all, and for MoE all-on-GPU with experts of N on CPU."""
    if not has_gpu:
        return [Placement(0, 0)]
    n = costs.n_layer
    out = [Placement(ngl, 0) for ngl in range(n + 2)]
    if costs.is_moe:
        out += [Placement(n + 1, ncmoe) for ncmoe in range(1, n + 1)]
    return out


def _record_key(record: Mapping[str, Any], costs: LayerCosts, has_gpu: bool) -> tuple[Any, ...]:
    p = normalise(
        costs,
        Placement(int(record.get("n_gpu_layers") or 0), int(record.get("n_cpu_moe") or 0)),
        has_gpu,
    )
    return (record.get("model_id"), str(record.get("quant") or "").upper(), p)


class Evidence:
    """Full-depth measurements indexed by configuration; real files win over twins."""

    def __init__(
        self,
        records: Iterable[Mapping[str, Any]],
        costs_for: Callable[[Mapping[str, Any]], LayerCosts | None],
        has_gpu: bool,
    ) -> None:
        self.by_config: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
        self.failures: dict[tuple[Any, ...], str] = {}
        ratios: list[float] = []
        for r in records:
            n_file, n_model = int(r.get("n_layer_file") or 0), int(r.get("n_layer_model") or 0)
            if r.get("source") == "scaled-twin" or (n_file and n_model and n_file < n_model):
                continue
            costs = costs_for(r)
            if costs is None:
                continue
            key = _record_key(r, costs, has_gpu)
            status = r.get("status", "ok")
            if status == "cancelled":  # the user stopped it: says nothing about the placement
                continue
            if status != "ok":
                self.failures[key] = f"{status}: {r.get('error') or 'no detail'}"
                continue
            self.by_config.setdefault(key, []).append(r)
            p50, p95 = r.get("itl_ms_p50"), r.get("itl_ms_p95")
            if p50 and p95 and p50 > 0:
                ratios.append(float(p95) / float(p50))
        # p95/p50 of the inter-token latency, as measured here; 1.1 when nothing says
        self.p95_over_p50 = statistics.median(ratios) if ratios else 1.1
        self.p95_ratio_measured = bool(ratios)

    @staticmethod
    def _basis(r: Mapping[str, Any]) -> str:
        return MEASURED_REAL if r.get("source") == "real" else MEASURED_TWIN

    def _best(self, rows: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
        if not rows:
            return None
        # a real file over a twin, then the newest
        return max(rows, key=lambda r: (-BASES.index(self._basis(r)), str(r.get("test_time"))))

    def find(
        self, key: tuple[Any, ...], kind: str, n_parallel: int = 1, n_prompt: int | None = None
    ) -> Mapping[str, Any] | None:
        rows = []
        for r in self.by_config.get(key, []):
            k = record_kind(r)
            b = int(r.get("n_parallel") or 1)
            if kind == "tg" and not (k == "tg" or (k == "batch" and b == 1)):
                continue
            if kind == "batch" and not (k == "batch" and b == n_parallel):
                continue
            if kind in ("pp", "ttft") and k != kind:
                continue
            if n_prompt is not None and int(r.get("n_prompt") or 0) != n_prompt:
                continue
            rows.append(r)
        if kind == "tg":  # a plain tg test beats a batch test of one sequence
            plain = [r for r in rows if record_kind(r) == "tg"]
            rows = plain or rows
        return self._best(rows)

    def value(
        self, record: Mapping[str, Any] | None, field: str, model: Model | None = None
    ) -> Value | None:
        """The record's `field`; a twin's speed or latency carries its fidelity band (`model`:
        the catalog's architecture and MoE flag, which a record's description may lack)."""
        if record is None or record.get(field) in (None, 0):
            return None
        fid = None
        if model is not None and not field.endswith("_bytes"):  # a twin's memory is exact
            fid = record_fidelity(
                record,
                architecture=model.arch.architecture,
                moe=model.is_moe,
            )
        return Value(float(record[field]), self._basis(record), fid, field.endswith("_ms"))

    def memory_peaks(self, key: tuple[Any, ...]) -> tuple[Value | None, Value | None]:
        rows = self.by_config.get(key, [])
        vram = [r for r in rows if r.get("vram_peak_bytes")]
        ram = [r for r in rows if r.get("ram_peak_bytes")]
        best_v = max(vram, key=lambda r: int(r["vram_peak_bytes"]), default=None)
        best_r = max(ram, key=lambda r: int(r["ram_peak_bytes"]), default=None)
        return self.value(best_v, "vram_peak_bytes"), self.value(best_r, "ram_peak_bytes")


@dataclass(frozen=True)
class Candidate:
    model: Model
    quant: str
    placement: Placement
    ctx: int
    batch: int
    pp_ts: Value
    tg_ts: Value
    ttft_ms: Value
    itl_p95_ms: Value
    aggregate_ts: Value
    vram_bytes: Value
    ram_bytes: Value
    quality: Quality
    fits: bool
    failed: str  # a measured failure (oom, crash) at this placement, else ""
    n_layer: int
    active_bytes: float  # weights read to make one token alone
    weights_bytes: int

    @property
    def gpu_layers_label(self) -> str:
        """In words, since llama.cpp's n_gpu_layers counts the output layer first."""
        return self.placement.words(self.n_layer)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model.id,
            "model_name": self.model.name,
            "kind": self.model.kind,
            "quant": self.quant,
            "placement": {
                "n_gpu_layers": self.placement.n_gpu_layers,
                "n_cpu_moe": self.placement.n_cpu_moe,
                "description": self.gpu_layers_label,
            },
            "ctx": self.ctx,
            "batch": self.batch,
            "expected": {
                "pp_ts": self.pp_ts.to_dict(1),
                "tg_ts": self.tg_ts.to_dict(2),
                "aggregate_ts": self.aggregate_ts.to_dict(1),
                "ttft_ms": self.ttft_ms.to_dict(1),
                "itl_p95_ms": self.itl_p95_ms.to_dict(1),
                "vram_bytes": self.vram_bytes.to_dict(0),
                "ram_bytes": self.ram_bytes.to_dict(0),
            },
            "quality": self.quality.to_dict(),
        }


@dataclass(frozen=True)
class CandidateBuilder:
    """Numbers for one configuration: measured where measured, predicted elsewhere."""

    evidence: Evidence
    predictor: Predictor
    capacity: Capacity
    memory_fn: MemoryFn
    prompt_tokens: int

    def build(
        self, model: Model, quant: str, costs: LayerCosts, placement: Placement, ctx: int,
        batch: int,
    ) -> Candidate:  # fmt: skip
        ev, pred = self.evidence, self.predictor
        key = (model.id, quant.upper(), placement)
        tg = ev.value(ev.find(key, "tg"), "avg_ts", model) or Value(
            pred.tg_ts(costs, placement), PREDICTED
        )
        pp = ev.value(ev.find(key, "pp"), "avg_ts", model) or Value(
            pred.pp_ts(costs, placement, self.prompt_tokens), PREDICTED
        )
        ttft = ev.value(ev.find(key, "ttft", n_prompt=self.prompt_tokens), "ttft_ms", model)
        if ttft is None:  # prompt time + first token, from the best numbers we have
            assert pp.value and tg.value
            ttft = Value(self.prompt_tokens / pp.value * 1e3 + 1e3 / tg.value, PREDICTED)
        if batch == 1:
            aggregate = tg
            step_record = ev.find(key, "tg")
        else:
            step_record = ev.find(key, "batch", n_parallel=batch)
            aggregate = ev.value(step_record, "avg_ts", model) or Value(
                pred.batch_ts(costs, placement, batch), PREDICTED
            )
        itl = ev.value(step_record, "itl_ms_p95", model)
        if itl is None:
            assert aggregate.value
            step_ms = batch / aggregate.value * 1e3
            itl = Value(step_ms * ev.p95_over_p50, PREDICTED)
        vram_plan, ram_plan = self.memory_fn(model, quant, costs, placement, ctx, batch)
        per_gpu = (
            self.memory_fn.per_gpu(model, quant, placement, ctx, batch)
            if isinstance(self.memory_fn, PlannedMemory)
            else None
        )
        vram_meas, ram_meas = ev.memory_peaks(key)
        # the larger of plan and measured peak: a measurement at a short context can undershoot
        vram = vram_meas if vram_meas and (vram_meas.value or 0) > vram_plan else None
        ram = ram_meas if ram_meas and (ram_meas.value or 0) > ram_plan else None
        vram = vram or Value(float(vram_plan), PREDICTED)
        ram = ram or Value(float(ram_plan), PREDICTED)
        failed = ev.failures.get(key, "")
        return Candidate(
            model=model,
            quant=quant,
            placement=placement,
            ctx=ctx,
            batch=batch,
            pp_ts=pp,
            tg_ts=tg,
            ttft_ms=ttft,
            itl_p95_ms=itl,
            aggregate_ts=aggregate,
            vram_bytes=vram,
            ram_bytes=ram,
            quality=quality_of(model, quant),
            fits=self.capacity.fits(vram.value or 0, ram.value or 0, per_gpu) and not failed,
            failed=failed,
            n_layer=costs.n_layer,
            active_bytes=costs.active_bytes_per_token,
            weights_bytes=costs.weights_bytes,
        )
