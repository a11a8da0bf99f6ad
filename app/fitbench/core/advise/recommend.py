"""Recommend a deployment for the user's goal, with its reasons, from measurements and predictions.

For both models x every catalog quant x every placement (and batch sizes, for a service), the
numbers come from measurements of that configuration where they exist and from the calibrated
predictor elsewhere, each labelled measured-real / measured-twin / predicted. Every option must
fit with headroom; the goal then picks:
- interactive (one user): the highest tg whose time to first token is under a limit;
- throughput (a service): the highest aggregate tokens/s at the batch where p95 inter-token
  latency stays under a limit;
both above a quality floor (published scores, and the quant's perplexity cost).

Advice.to_dict() is the contract for the report and the GUI.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fitbench.core import settings
from fitbench.core.advise import moe_story
from fitbench.core.advise.candidates import (
    GIB,
    PPL_REFERENCE,
    PREDICTED,
    Candidate,
    CandidateBuilder,
    Capacity,
    Evidence,
    QualityFloor,
    capacity_of,
    placements_for,
)
from fitbench.core.advise.hardware_change import cheapest_change, hardware_needed
from fitbench.core.advise.memory import SOURCE_FILE, MemoryFn, PlannedMemory, default_manifest
from fitbench.core.advise.recipe import (
    TOOLS,
    RunSettings,
    ToolPlacement,
    can_express,
    recipe,
    run_settings,
)
from fitbench.core.advise.text import Explainer, speed_of
from fitbench.core.advise.user_models import UserModel, user_models, with_user_costs
from fitbench.core.gguf.manifest import ModelManifest
from fitbench.core.model.catalog import Catalog, Model
from fitbench.core.plan.margin import MarginLike, margin_of
from fitbench.core.plan.placement import Placement
from fitbench.core.predict.fit import (
    Calibration,
    machine_of,
    physical_cores,
)
from fitbench.core.predict.layer_costs import LayerCosts, catalog_costs, from_manifest
from fitbench.core.predict.model import (
    PredictError,
    Predictor,
    catalog_costs_for,
)
from fitbench.core.predict.speeds import calibrate_on, is_what_if
from fitbench.core.twin import resolve

GOALS = settings.GOALS
BATCHES = (1, 2, 4, 8, 16, 32, 64)
DEFAULT_TTFT_MAX_MS = 3000.0  # a 512-token prompt answered within 3 s
DEFAULT_ITL_P95_MAX_MS = 200.0  # 5 tokens/s for each user, about reading speed
TIE_TOLERANCE = 0.01  # llama-bench's run-to-run noise: closer than 1% is a tie


class AdviceError(ValueError):
    """Inputs the advice cannot use; the message says what is wrong and what to do."""


@dataclass
class Advice:
    goal: str
    choice: Candidate | None
    verdict: str
    alternatives: list[Candidate]
    reasons: list[str]
    caveats: list[str]
    recipe: dict[str, Any] | None
    moe_vs_dense: dict[str, Any] | None
    calibration: Calibration
    hardware_fingerprint: str
    hardware_needed: list[dict[str, Any]] = field(default_factory=list)
    limits: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    below_floor: dict[str, Any] | None = None  # nothing met the floor: the best that runs
    cheapest_change: dict[str, Any] | None = None  # ... and the least hardware that would

    def to_dict(self) -> dict[str, Any]:
        choice = None
        expected = None
        if self.choice is not None:
            full = self.choice.to_dict()
            choice = {k: full[k] for k in ("model_id", "model_name", "quant", "placement", "ctx")}
            choice["batch"] = self.choice.batch
            expected = full["expected"]
        return {
            "goal": self.goal,
            "choice": choice,
            "expected": expected,
            "verdict": self.verdict,
            "alternatives": [c.to_dict() for c in self.alternatives],
            "reasons": self.reasons,
            "caveats": self.caveats,
            "recipe": self.recipe,
            "moe_vs_dense": self.moe_vs_dense,
            "predictor": self.calibration.to_dict(),
            "hardware_fingerprint": self.hardware_fingerprint,
            "hardware_needed": self.hardware_needed,
            "limits": self.limits,
            "memory": self.memory,
            "below_floor": self.below_floor,
            "cheapest_change": self.cheapest_change,
        }


def _fingerprint(records: Sequence[Mapping[str, Any]], hardware: Mapping[str, Any]) -> str:
    try:
        return machine_of(records, hardware)
    except PredictError as exc:
        raise AdviceError(str(exc)) from None


def _speed(c: Candidate, goal: str) -> float:
    return speed_of(c, goal)


def _quality_rank(c: Candidate) -> tuple[float, float]:
    """Goal "quality": the least perplexity the quant adds (the highest quantization), then
    the better published score; larger is better."""
    q = c.quality
    return (-(q.ppl_increase if q.ppl_increase is not None else 99.0), q.mmlu or 0.0)


def _tiebreak(c: Candidate) -> tuple[float, float, float, float]:
    q = c.quality
    return (
        -(q.mmlu or 0.0),
        q.ppl_increase if q.ppl_increase is not None else 99.0,
        c.vram_bytes.value or 0.0,
        c.ram_bytes.value or 0.0,
    )


def _pick(
    pool: list[Candidate], score: Callable[[Candidate], float]
) -> tuple[Candidate, list[Candidate]]:
    """The best score; among options within TIE_TOLERANCE of it, better quality, less memory."""
    best = max(score(c) for c in pool)
    tied = [c for c in pool if score(c) >= best - abs(best) * TIE_TOLERANCE]
    tied.sort(key=_tiebreak)
    return tied[0], tied[1:]


def _pareto(pool: list[Candidate], goal: str) -> list[Candidate]:
    """Options no other option beats on speed, memory and quality at once.

    Each model x quant enters with its fastest placement: placements of one file differ in
    speed, not in quality or total memory, so they would only crowd the table.
    """
    per_file: dict[tuple[str, str], Candidate] = {}
    for c in sorted(pool, key=lambda c: (-_speed(c, goal), *_tiebreak(c))):
        per_file.setdefault((c.model.id, c.quant), c)
    pool = list(per_file.values())

    def objectives(c: Candidate) -> tuple[float, ...]:
        q = c.quality
        memory = (c.vram_bytes.value or 0) + (c.ram_bytes.value or 0)
        ppl = q.ppl_increase if q.ppl_increase is not None else 99.0
        return (_speed(c, goal), -memory, q.mmlu or 0.0, -ppl)

    scored = [(objectives(c), c) for c in pool]
    front = []
    for s, c in scored:
        dominated = any(
            all(o >= v for o, v in zip(t, s, strict=True)) and t != s for t, _ in scored
        )
        if not dominated:
            front.append(c)
    front.sort(key=lambda c: (-_speed(c, goal), *_tiebreak(c)))
    return front


def _gib(n: float | None) -> str:
    return f"{(n or 0) / GIB:.1f} GiB"


@dataclass
class _Context:
    catalog: Catalog
    builder: CandidateBuilder
    capacity: Capacity
    floor: QualityFloor
    ctx: int
    costs: dict[tuple[str, str], LayerCosts]
    planner: PlannedMemory | None

    def costs_of(self, model: Model, quant: str) -> LayerCosts:
        """Per-block bytes from the manifest the memory planner uses, so speed and memory
        describe the same file; the catalog's costs when there is no such manifest."""
        key = (model.id, quant)
        if key not in self.costs:
            manifest = self.planner.manifest(model, quant) if self.planner else None
            self.costs[key] = (
                from_manifest(manifest, f"{model.id}/{quant}")
                if manifest is not None
                else catalog_costs(model, quant)
            )
        return self.costs[key]

    def build(self, model: Model, quant: str, placement: Placement, batch: int) -> Candidate:
        return self.builder.build(
            model, quant, self.costs_of(model, quant), placement, self.ctx, batch
        )


def recommend(
    records: Sequence[Mapping[str, Any]],
    *,
    hardware: Mapping[str, Any],
    catalog: Catalog,
    goal: str = "interactive",
    ctx: int = 4096,
    vram_headroom: MarginLike = None,
    ram_headroom_bytes: int = 2 * GIB,
    ttft_max_ms: float = DEFAULT_TTFT_MAX_MS,
    itl_p95_max_ms: float = DEFAULT_ITL_P95_MAX_MS,
    quality_floor: QualityFloor | None = None,
    prompt_tokens: int = 512,
    batches: Sequence[int] = BATCHES,
    memory_fn: MemoryFn | None = None,
    min_tps: float | None = None,
) -> Advice:
    if goal not in GOALS:
        raise AdviceError(f"goal must be one of {', '.join(GOALS)}, got {goal!r}")
    if ctx < 1 or prompt_tokens < 1 or not batches or min(batches) < 1:
        raise AdviceError("ctx, prompt tokens and batch sizes must be positive")
    if isinstance(vram_headroom, float | int) and not 0 <= vram_headroom < 1:
        raise AdviceError(f"VRAM headroom is a fraction in [0, 1), got {vram_headroom}")
    vram_margin = margin_of(vram_headroom)
    if min_tps is not None and min_tps <= 0:
        raise AdviceError(f"the speed target must be positive, got {min_tps} tokens/s")
    if goal == "quality" and min_tps is None:
        min_tps = settings.DEFAULT_MIN_TPS
    if not records:
        raise AdviceError(
            "no result records to advise from: run `fitbench bench --quick --out FILE` first"
        )
    if not catalog.models:
        raise AdviceError("the model catalog is empty: nothing to recommend")
    fingerprint = _fingerprint(records, hardware)
    users = user_models(records, catalog)
    catalog = Catalog((*catalog.models, *(u.model for u in users)))
    costs_for = with_user_costs(catalog_costs_for(catalog), users)
    fitted = calibrate_on(hardware, records, costs_for)
    has_gpu, points, calibration = fitted.has_gpu, fitted.points, fitted.calibration
    # measurements of this machine say nothing exact about another card: all predicted there
    evidence = Evidence([] if is_what_if(hardware) else records, costs_for, has_gpu)
    capacity = capacity_of(hardware, has_gpu, vram_margin, ram_headroom_bytes)
    floor = quality_floor or QualityFloor()
    threads = physical_cores(hardware)
    machine_run = run_settings(records, "", "", ctx=ctx, batch=1, threads=threads)
    planner = None
    if memory_fn is None:  # the planner of `fitbench plan`, so both agree on what fits
        planner = memory_fn = PlannedMemory(
            capacity.gpu_vram_bytes,
            vram_headroom=vram_margin,
            manifest_for=_manifests_with(users),
            # plan what the recipes run: the KV cache and flash attention as benchmarked
            type_k=machine_run.type_k,
            type_v=machine_run.type_v,
            flash_attn=bool(machine_run.flash_attn),
            n_ubatch=machine_run.n_ubatch,
        )
    builder = CandidateBuilder(
        evidence=evidence,
        predictor=Predictor(calibration.values, has_gpu),
        capacity=capacity,
        memory_fn=memory_fn,
        prompt_tokens=prompt_tokens,
    )
    cx = _Context(catalog, builder, capacity, floor, ctx, {}, planner)
    for u in users:
        cx.costs[(u.model.id, u.quant)] = u.costs
    batch_list = sorted(set(batches)) if goal == "throughput" else [1]

    def meets(c: Candidate) -> bool:
        if goal == "quality":
            return (c.tg_ts.value or 0) >= (min_tps or 0)
        return _meets(c, goal, ttft_max_ms, itl_p95_max_ms)

    options: list[Candidate] = []  # fits and meets the floor, one per config at its best batch
    within: list[Candidate] = []  # ... and meets the latency limit (the speed target)
    below: list[Candidate] = []  # fits, below the quality floor (the fallback)
    fitting_models: set[str] = set()
    for model in catalog.models:
        for q in model.quants:
            costs = cx.costs_of(model, q.quant)
            for placement in placements_for(costs, has_gpu):
                base = cx.build(model, q.quant, placement, 1)
                if not base.fits:
                    continue  # a larger batch needs more memory still
                fitting_models.add(model.id)
                if not floor.allows(base.quality):
                    below.append(base)
                    continue
                per_config = [base]
                for b in batch_list:
                    if b > 1:
                        c = cx.build(model, q.quant, placement, b)
                        if not c.fits:
                            break  # memory only grows with the batch
                        per_config.append(c)
                ok = [c for c in per_config if meets(c)]
                within.extend(ok)
                options.append(
                    max(ok, key=lambda c: _speed(c, goal))
                    if ok
                    else min(per_config, key=lambda c: _latency(c, goal))
                )
    limits = {
        "ttft_max_ms": ttft_max_ms,
        "itl_p95_max_ms": itl_p95_max_ms,
        "min_tps": min_tps,
        "prompt_tokens": prompt_tokens,
        "batches": batch_list,
        "quality_floor": floor.to_dict(),
        "vram_margin": vram_margin.to_dict(),
        "ram_headroom_bytes": ram_headroom_bytes,
        "vram_usable_bytes": capacity.vram_bytes,
        "ram_usable_bytes": capacity.ram_bytes,
    }
    explain = Explainer(goal, limits, calibration, points, evidence, planner)
    if within and goal == "quality":
        choice, tied = _pick_quality(within)
    elif within:
        choice, tied = _pick(within, lambda c: _speed(c, goal))
    elif options:  # nothing meets the limit: the quickest (the fastest, for a speed target)
        if goal == "quality":
            choice, tied = _pick(options, lambda c: _speed(c, goal))
        else:
            choice, tied = _pick(options, lambda c: -_latency(c, goal))
        explain.missed_limit(choice)
    else:
        choice, tied = None, []
    alternatives = [c for c in _pareto(options, goal) if not _same(c, choice)][:8]
    needed = [
        n
        for m in catalog.models
        if m.id not in fitting_models and (n := hardware_needed(cx, m)) is not None
    ]
    story = _moe_vs_dense(cx, choice, batches, has_gpu)
    paths = {(u.model.id, u.quant): u.path for u in users}
    fallback = change = None
    if choice is None:
        fallback = _below_floor(cx, below, goal, records, threads, paths)
        change = cheapest_change(cx, goal)
    return Advice(
        goal=goal,
        choice=choice,
        verdict=explain.verdict(choice, fitting_models, fallback, change),
        alternatives=alternatives,
        reasons=explain.reasons(choice, tied, options, catalog, fitting_models, needed, story),
        caveats=_what_if_caveat(fitted.what_if) + explain.caveats(choice, records),
        recipe=_recipe(cx, choice, goal, records, threads, paths),
        moe_vs_dense=story,
        calibration=calibration,
        hardware_fingerprint=fingerprint,
        hardware_needed=needed,
        limits=limits,
        memory=_memory_info(planner),  # last: every manifest the advice read is known by now
        below_floor=fallback,
        cheapest_change=change,
    )


def _what_if_caveat(how: str) -> list[str]:
    if not how:
        return []
    return [
        f"What-if hardware: every speed is predicted for cards this machine does not have, from "
        f"{how}; the ratios are on paper, and kernels and caches differ between architectures."
    ]


def _pick_quality(pool: list[Candidate]) -> tuple[Candidate, list[Candidate]]:
    """Goal "quality": the best quality that meets the speed target; of one model quant, its
    fastest placement; among equal quality, the fastest, then the least memory."""
    best = max(_quality_rank(c) for c in pool)
    same = [c for c in pool if _quality_rank(c) == best]
    same.sort(key=lambda c: (-speed_of(c, "quality"), *_tiebreak(c)))
    return same[0], []


def _manifests_with(
    users: Sequence[UserModel],
) -> Callable[[Model, str], tuple[ModelManifest, str]]:
    """The planner's manifests: a user model's own header, else the catalog's rule."""
    own = {(u.model.id, u.quant): u.manifest for u in users}

    def manifest_for(model: Model, quant: str) -> tuple[ModelManifest, str]:
        found = own.get((model.id, quant))
        return (found, SOURCE_FILE) if found is not None else default_manifest(model, quant)

    return manifest_for


def _model_path(model: Model, quant: str, paths: Mapping[tuple[str, str], Path]) -> Path | None:
    """The real file on this machine: a user's own, else the download (never the Hub)."""
    return paths.get((model.id, quant)) or resolve.local_file(model, quant)


def _tool_placements(cx: _Context, choice: Candidate, goal: str) -> dict[str, ToolPlacement]:
    """Per tool, the recommended placement where the tool can run it, else the fastest
    placement the tool can express that fits this machine's plan, with its own numbers."""
    costs = cx.costs_of(choice.model, choice.quant)
    n = costs.n_layer
    own = {"tg_ts": choice.tg_ts.to_dict(2), "aggregate_ts": choice.aggregate_ts.to_dict(1)}
    out: dict[str, ToolPlacement] = {}
    pool: list[Candidate] | None = None
    for tool in TOOLS:
        why_not = can_express(tool, choice.placement, n)
        if not why_not:
            out[tool] = ToolPlacement(choice.placement, "", own)
            continue
        if pool is None:
            pool = [
                c
                for p in placements_for(costs, cx.capacity.has_gpu)
                if p != choice.placement
                and (c := cx.build(choice.model, choice.quant, p, choice.batch)).fits
            ]
        mine = [c for c in pool if not can_express(tool, c.placement, n)]
        if not mine:  # cannot happen with a GPU (CPU only is always expressible)
            out[tool] = ToolPlacement(Placement(0, 0), f"{why_not}; it runs on the CPU only.")
            continue
        best = max(mine, key=lambda c: (speed_of(c, goal), -(c.vram_bytes.value or 0)))
        speed_then, speed_now = speed_of(best, goal), speed_of(choice, goal)
        basis = (best.tg_ts if goal != "throughput" else best.aggregate_ts).basis
        out[tool] = ToolPlacement(
            best.placement,
            f"{why_not}, so this recipe runs {best.gpu_layers_label} instead, the fastest "
            f"placement it can express that fits: {speed_then:.1f} tokens/s ({basis}) against "
            f"{speed_now:.1f} for the recommended placement.",
            {"tg_ts": best.tg_ts.to_dict(2), "aggregate_ts": best.aggregate_ts.to_dict(1)},
        )
    return out


def _recipe(
    cx: _Context,
    choice: Candidate | None,
    goal: str,
    records: Sequence[Mapping[str, Any]],
    threads: int,
    paths: Mapping[tuple[str, str], Path],
) -> dict[str, Any] | None:
    if choice is None:
        return None
    planner, ctx = cx.planner, cx.ctx

    def placed(p: Placement) -> Placement:
        # the memory plan holds only with the layer split it assumed
        split = (
            planner.tensor_split(choice.model, choice.quant, p, ctx, choice.batch)
            if planner
            else None
        )
        return replace(p, tensor_split=split)

    tools = {
        tool: replace(tp, placement=placed(tp.placement))
        for tool, tp in _tool_placements(cx, choice, goal).items()
    }
    run_cfg: RunSettings = run_settings(
        records, choice.model.id, choice.quant, ctx=ctx, batch=choice.batch, threads=threads
    )
    out = recipe(
        choice.model,
        choice.quant,
        placed(choice.placement),
        ctx,
        choice.batch,
        threads,
        settings=run_cfg,
        tools=tools,
        model_path=_model_path(choice.model, choice.quant, paths),
    )
    split = tools["llama_server"].placement.tensor_split
    if split:
        text = ":".join(f"{x:g}" for x in split)
        out["notes"].append(
            f"The memory plan splits the layers {text} over the GPUs; without "
            "--tensor-split llama.cpp splits by free memory and a GPU may run out."
        )
    return out


def _below_floor(
    cx: _Context,
    below: list[Candidate],
    goal: str,
    records: Sequence[Mapping[str, Any]],
    threads: int,
    paths: Mapping[tuple[str, str], Path],
) -> dict[str, Any] | None:
    """Nothing meets the quality floor: the best option that runs here anyway, labelled."""
    if not below:
        return None
    best, _ = _pick(below, lambda c: _speed(c, goal))
    return {
        **best.to_dict(),
        "below_floor": True,
        "why": f"below the quality floor: {cx.floor.why_not(best.quality)}",
        "recipe": _recipe(cx, best, goal, records, threads, paths),
    }


def _memory_info(planner: PlannedMemory | None) -> dict[str, Any]:
    """Where VRAM and RAM come from, per model/quant the advice weighed."""
    if planner is None:
        return {"method": "given by the caller (memory_fn)", "manifests": {}, "estimated": []}
    return {
        "method": "fitbench.core.plan.memory.plan, as `fitbench plan` (predicted)",
        "manifests": dict(planner.sources),
        "estimated": planner.estimated,
    }


def _meets(c: Candidate, goal: str, ttft_max_ms: float, itl_p95_max_ms: float) -> bool:
    if goal == "interactive":
        return (c.ttft_ms.value or 0) <= ttft_max_ms
    return (c.itl_p95_ms.value or 0) <= itl_p95_max_ms


def _latency(c: Candidate, goal: str) -> float:
    return float((c.ttft_ms if goal == "interactive" else c.itl_p95_ms).value or 0.0)


def _same(a: Candidate, b: Candidate | None) -> bool:
    return b is not None and (a.model.id, a.quant, a.placement, a.batch) == (
        b.model.id,
        b.quant,
        b.placement,
        b.batch,
    )


def _best_side(cx: _Context, model: Model, quant: str) -> moe_story.Side:
    costs = cx.costs_of(model, quant)
    has_gpu = cx.capacity.has_gpu
    fitting = [
        c for p in placements_for(costs, has_gpu) if (c := cx.build(model, quant, p, 1)).fits
    ]
    if fitting:
        best = max(fitting, key=lambda c: c.tg_ts.value or 0)
        return moe_story.Side(model, quant, best.placement, True, best)
    full = Placement(costs.n_layer + 1 if has_gpu else 0, 0)
    return moe_story.Side(model, quant, full, False, cx.build(model, quant, full, 1))


def _moe_vs_dense(
    cx: _Context, choice: Candidate | None, batches: Sequence[int], has_gpu: bool
) -> dict[str, Any] | None:
    moe = next((m for m in cx.catalog.models if m.arch.is_moe), None)
    dense = next((m for m in cx.catalog.models if not m.arch.is_moe), None)
    if moe is None or dense is None:
        return None
    moe_quants = {q.quant for q in moe.quants}
    dense_quants = {q.quant for q in dense.quants}
    common = moe_quants & dense_quants
    if choice is not None and choice.quant in common:
        quant_m = quant_d = choice.quant
    elif moe.default_quant in common:
        quant_m = quant_d = moe.default_quant
    else:
        quant_m, quant_d = moe.default_quant, dense.default_quant
    return moe_story.story(
        _best_side(cx, moe, quant_m),
        _best_side(cx, dense, quant_d),
        build=cx.build,
        batches=sorted(set(batches)),
        has_gpu=has_gpu,
    )


__all__ = [
    "BATCHES",
    "GOALS",
    "PPL_REFERENCE",
    "PREDICTED",
    "Advice",
    "AdviceError",
    "QualityFloor",
    "recommend",
]
