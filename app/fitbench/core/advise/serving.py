"""The serving goal: which deployment serves the most users within a p95 inter-token latency and a
p99 time-to-first-token limit, and what to add when this machine is not enough.

A deployment is a model x quant x placement served by llama-server with S slots (-np S). For C
users (closed loop: each sends its next request when the last one ends), per level:
- measured, where `fitbench load` measured this deployment at C users on this machine (the load
  store, core/serve/records.py; labelled measured-real / measured-twin);
- predicted elsewhere, from the bench records through the calibrated predictor:
  * per-token time at C users ~ the decode step of a batch of min(C, S) sequences (the B=C
    `bench --batch` time where measured);
  * one request's cycle is the server's time for every active user's prompt plus max_tokens
    decode steps: the server processes all the prompts, and each one stalls every user's
    decoding while it runs (measured on an H200 with both full twins, docs/gpu/2026-12-06: a
    cycle of one prompt and the steps alone predicted 3-5x the served throughput at 32 users;
    this one is within 10%); output tokens/s = active users x max_tokens / cycle;
  * a prompt's time is the measured TTFT p50 of one user on this deployment where `fitbench
    load` measured it (the server's prompt path, its tokenizer and HTTP included: 60-100 ms
    above the bench's pp speed there), else prompt tokens / the bench's prompt speed;
  * TTFT = the prompt's processing time, times one plus the other
    prompts llama-server processes at the same time (a binomial quantile: each of the other
    active users is in its prompt phase for prompt_ms of every cycle), plus one decode step,
    plus the queue beyond the S slots ((C/S - 1) cycles in a closed loop);
  * ITL p95: the decode step x the measured p95/p50 ratio; when another user's prompt lands in
    more than 5% of a user's decode steps, the step that carries a prompt chunk (llama-server
    batches prompts with decodes) sets the p95 instead.
The number of users a deployment serves is the largest level at which it and every smaller level
meet both limits: a measured failure is never overruled by a prediction at a higher level.

Beyond one machine (users_wanted above what the best deployment serves): replicas of this machine
behind a load balancer (ceil(N / users per machine)), vLLM tensor parallelism over k GPUs of this
card, or llama.cpp's RPC backend pooling k machines' memory; all predicted from this machine's
curves, with the assumptions in the text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fitbench.core.advise.candidates import (
    GIB,
    PREDICTED,
    Candidate,
    CandidateBuilder,
    Evidence,
    QualityFloor,
    capacity_of,
    placements_for,
)
from fitbench.core.advise.memory import PlannedMemory
from fitbench.core.advise.recipe import recipe
from fitbench.core.model.catalog import Catalog, Model
from fitbench.core.plan.placement import Placement
from fitbench.core.predict.fit import machine_of, physical_cores
from fitbench.core.predict.layer_costs import LayerCosts, catalog_costs, from_manifest
from fitbench.core.predict.model import PredictError, Predictor, catalog_costs_for, normalise
from fitbench.core.predict.speeds import calibrate_on
from fitbench.core.twin import fidelity as twin_fidelity

LEVELS = (1, 2, 4, 8, 16, 32, 64, 128)
DEFAULT_ITL_P95_MAX_MS = 200.0
DEFAULT_TTFT_P99_MAX_MS = 5000.0
PROMPT_HIT_P95 = 0.05  # a prompt chunk in more than 5% of decode steps sets the p95 ITL
SERVER_N_BATCH = 2048  # llama-server's default logical batch: the largest prompt chunk per step
TP_EFFICIENCY = 0.8  # vLLM tensor parallel: per-token speed-up k x this (all-reduce), assumed
RPC_HOP_MS = 1.0  # llama.cpp RPC: network time per token per machine boundary, assumed (LAN)


class ServingError(ValueError):
    pass


@dataclass(frozen=True)
class Point:
    """One concurrency level of one deployment."""

    users: int
    slots: int
    ttft_p50_ms: float
    ttft_p99_ms: float
    itl_p50_ms: float
    itl_p95_ms: float
    output_tokens_per_s: float
    basis: str  # measured-real | measured-twin | measured | predicted

    def meets(self, itl_p95_max_ms: float, ttft_p99_max_ms: float) -> bool:
        return self.itl_p95_ms <= itl_p95_max_ms and self.ttft_p99_ms <= ttft_p99_max_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "slots": self.slots,
            "ttft_ms": {"p50": round(self.ttft_p50_ms, 1), "p99": round(self.ttft_p99_ms, 1)},
            "itl_ms": {"p50": round(self.itl_p50_ms, 2), "p95": round(self.itl_p95_ms, 2)},
            "output_tokens_per_s": round(self.output_tokens_per_s, 2),
            "basis": self.basis,
        }


@dataclass
class Deployment:
    model: Model
    quant: str
    placement: Placement
    n_layer: int
    slots: int  # the most -np slots whose memory fits
    curve: list[Point]
    users: int = 0  # the most users within the limits (0: not even one)
    vram_bytes: float = 0.0
    ram_bytes: float = 0.0
    # what its points measured on a twin mean for the real file (None: no such point)
    fidelity: twin_fidelity.Fidelity | None = None

    @property
    def serve_slots(self) -> int:
        """The -np to run: one slot per user served (more slots only hold memory)."""
        return min(self.slots, self.users) if self.users else self.slots

    @property
    def best(self) -> Point | None:
        return next((p for p in reversed(self.curve) if p.users == self.users), None)

    @property
    def measured(self) -> bool:
        return any(p.basis != PREDICTED for p in self.curve)

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {
            "model_id": self.model.id,
            "model_name": self.model.name,
            "quant": self.quant,
            "placement": {
                "n_gpu_layers": self.placement.n_gpu_layers,
                "n_cpu_moe": self.placement.n_cpu_moe,
                "description": self.placement.words(self.n_layer),
            },
            "slots": self.serve_slots,
            "max_slots": self.slots,
            "users": self.users,
            "at_users": self._point_dict(best) if best else None,
            "curve": [self._point_dict(p) for p in self.curve],
            "vram_bytes": int(self.vram_bytes),
            "ram_bytes": int(self.ram_bytes),
        }

    def _point_dict(self, point: Point) -> dict[str, Any]:
        """A point; one measured on a twin also gives the range the real file's throughput falls
        in (the twin's band, as the advice's other twin figures)."""
        out = point.to_dict()
        if point.basis == "measured-twin" and self.fidelity is not None:
            low, high = self.fidelity.bounds(point.output_tokens_per_s)
            out["output_tokens_per_s_real_range"] = [round(low, 2), round(high, 2)]
            out["uncertainty"] = round(self.fidelity.uncertainty, 4)
        return out


@dataclass
class ServingAdvice:
    choice: Deployment | None
    deployments: list[Deployment]
    verdict: str
    reasons: list[str]
    caveats: list[str]
    limits: dict[str, Any]
    recipe: dict[str, Any] | None
    beyond: list[dict[str, Any]] = field(default_factory=list)
    hardware_fingerprint: str = ""
    considered: list[Deployment] = field(default_factory=list)  # every one, best first

    def to_dict(self) -> dict[str, Any]:
        return {
            "goal": "serving",
            "choice": self.choice.to_dict() if self.choice else None,
            "verdict": self.verdict,
            "reasons": self.reasons,
            "caveats": self.caveats,
            "limits": self.limits,
            "recipe": self.recipe,
            "deployments": [d.to_dict() for d in self.deployments],
            "beyond_one_machine": self.beyond,
            "hardware_fingerprint": self.hardware_fingerprint,
        }


def binomial_quantile(n: int, p: float, q: float) -> int:
    """The smallest k with P(X <= k) >= q for X ~ Binomial(n, p)."""
    if n <= 0 or p <= 0:
        return 0
    p = min(p, 1.0)
    total = 0.0
    for k in range(n + 1):
        total += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if total >= q - 1e-12:
            return k
    return n


@dataclass(frozen=True)
class Workload:
    prompt_tokens: int = 512
    max_tokens: int = 256
    ctx: int = 4096  # per slot


def predict_point(
    users: int,
    slots: int,
    batch_candidate: Candidate,
    workload: Workload,
    p95_over_p50: float,
    prompt_ms: float | None = None,
) -> Point:
    """One predicted level from the numbers of a batch of `slots` sequences (see the module);
    prompt_ms: one prompt's measured time on the server (TTFT p50 of one user), if known."""
    c = batch_candidate
    step_ms = min(users, slots) / float(c.aggregate_ts.value or 1e-9) * 1e3
    return point_from(
        users, slots, step_ms, float(c.pp_ts.value or 1e-9), workload, p95_over_p50, prompt_ms
    )


def point_from(
    users: int,
    slots: int,
    step_ms: float,
    pp: float,
    workload: Workload,
    p95_over_p50: float,
    prompt_ms: float | None = None,
) -> Point:
    """A predicted level from the decode step of min(users, slots) sequences and the prompt
    speed (tokens/s), or one prompt's measured time on the server."""
    active = min(users, slots)
    if prompt_ms is None:
        prompt_ms = workload.prompt_tokens / pp * 1e3
    # the server's time per round of requests: every active user's prompt, then the decode steps
    cycle_ms = active * prompt_ms + workload.max_tokens * step_ms
    share = prompt_ms / cycle_ms if cycle_ms > 0 else 0.0
    queue_ms = max(0.0, users / slots - 1.0) * cycle_ms if users > slots else 0.0
    k50 = binomial_quantile(active - 1, share, 0.50)
    k99 = binomial_quantile(active - 1, share, 0.99)
    ttft50 = (1 + k50) * prompt_ms + step_ms + queue_ms
    ttft99 = (1 + k99) * prompt_ms + step_ms + queue_ms
    itl95 = step_ms * p95_over_p50
    chunks = max(1, math.ceil(workload.prompt_tokens / SERVER_N_BATCH))
    hit = (active - 1) * chunks / max(1, workload.max_tokens)
    if hit > PROMPT_HIT_P95:
        chunk_ms = min(workload.prompt_tokens, SERVER_N_BATCH) / pp * 1e3
        itl95 = max(itl95, step_ms + chunk_ms)
    tokens_per_s = active * workload.max_tokens / cycle_ms * 1e3 if cycle_ms > 0 else 0.0
    return Point(users, slots, ttft50, ttft99, step_ms, itl95, tokens_per_s, PREDICTED)


def measured_point(line: Mapping[str, Any]) -> Point | None:
    """A stored load level as a Point (None when it has no latencies: every request failed)."""
    level, dep = line.get("level") or {}, line.get("deployment") or {}
    ttft, itl = level.get("ttft_ms") or {}, level.get("itl_ms") or {}
    if not level.get("ok") or None in (ttft.get("p99"), itl.get("p95")):
        return None
    users = int(level["concurrency"])
    return Point(
        users=users,
        slots=int(dep.get("parallel") or users),
        ttft_p50_ms=float(ttft.get("p50") or ttft["p99"]),
        ttft_p99_ms=float(ttft["p99"]),
        itl_p50_ms=float(itl.get("p50") or itl["p95"]),
        itl_p95_ms=float(itl["p95"]),
        output_tokens_per_s=float(level.get("output_tokens_per_s") or 0.0),
        basis=str(line.get("basis") or "measured"),
    )


def _served_users(curve: Sequence[Point], itl_max: float, ttft_max: float) -> int:
    users = 0
    for p in curve:
        if not p.meets(itl_max, ttft_max):
            break
        users = p.users
    return users


class _Setup:
    """The advice's machinery, set up as `fitbench recommend` sets it up."""

    def __init__(
        self,
        records: Sequence[Mapping[str, Any]],
        hardware: Mapping[str, Any],
        catalog: Catalog,
        workload: Workload,
        vram_headroom: float,
        ram_headroom_bytes: int,
    ) -> None:
        costs_for = catalog_costs_for(catalog)
        fitted = calibrate_on(hardware, records, costs_for)
        self.has_gpu = fitted.has_gpu
        self.evidence = Evidence(records, costs_for, fitted.has_gpu)
        self.capacity = capacity_of(hardware, fitted.has_gpu, vram_headroom, ram_headroom_bytes)
        self.planner = PlannedMemory(self.capacity.gpu_vram_bytes, vram_headroom=vram_headroom)
        self.predictor = Predictor(fitted.calibration.values, fitted.has_gpu)
        self.builder = CandidateBuilder(
            evidence=self.evidence,
            predictor=self.predictor,
            capacity=self.capacity,
            memory_fn=self.planner,
            prompt_tokens=workload.prompt_tokens,
        )
        self.workload = workload
        self._costs: dict[tuple[str, str], LayerCosts] = {}

    def costs(self, model: Model, quant: str) -> LayerCosts:
        key = (model.id, quant)
        if key not in self._costs:
            manifest = self.planner.manifest(model, quant)
            self._costs[key] = (
                from_manifest(manifest, f"{model.id}/{quant}")
                if manifest is not None
                else catalog_costs(model, quant)
            )
        return self._costs[key]

    def build(self, model: Model, quant: str, placement: Placement, batch: int) -> Candidate:
        return self.builder.build(
            model, quant, self.costs(model, quant), placement, self.workload.ctx, batch
        )


def _measured_by_key(
    load_levels: Sequence[Mapping[str, Any]], setup: _Setup, catalog: Catalog
) -> dict[tuple[str, str, Placement], dict[int, Point]]:
    out: dict[tuple[str, str, Placement], dict[int, Point]] = {}
    ids = set(catalog.ids)
    for line in load_levels:
        dep = line.get("deployment") or {}
        if dep.get("model_id") not in ids or dep.get("source") == "scaled-twin":
            continue
        point = measured_point(line)
        if point is None:
            continue
        model = catalog.get(str(dep["model_id"]))
        quant = str(dep.get("quant") or "").upper()
        placement = Placement(int(dep.get("n_gpu_layers") or 0), int(dep.get("n_cpu_moe") or 0))
        key = (model.id, quant, normalise(setup.costs(model, quant), placement, setup.has_gpu))
        # the newest level at each concurrency wins (lines are in the order they were measured)
        out.setdefault(key, {})[point.users] = point
    return out


def _deployment(
    setup: _Setup,
    model: Model,
    quant: str,
    placement: Placement,
    levels: Sequence[int],
    measured: Mapping[int, Point],
) -> Deployment | None:
    costs = setup.costs(model, quant)
    fitting: dict[int, Candidate] = {}
    for b in levels:
        c = setup.build(model, quant, placement, b)
        if not c.fits:
            break  # memory only grows with the slots
        fitting[b] = c
    if not fitting and not measured:
        return None
    slots = max(fitting) if fitting else max(p.slots for p in measured.values())
    # one user's measured TTFT is the server's own time for one prompt (see the module)
    prompt_ms = measured[1].ttft_p50_ms if 1 in measured else None
    curve = []
    for users in levels:
        if users in measured:
            curve.append(measured[users])
        elif fitting:
            batch = min(users, slots)
            cand = fitting.get(batch) or setup.build(model, quant, placement, batch)
            curve.append(
                predict_point(
                    users, slots, cand, setup.workload, setup.evidence.p95_over_p50, prompt_ms
                )
            )
    top = fitting.get(slots)
    return Deployment(
        model=model,
        quant=quant,
        placement=placement,
        n_layer=costs.n_layer,
        slots=slots,
        curve=curve,
        vram_bytes=float(top.vram_bytes.value or 0) if top else 0.0,
        ram_bytes=float(top.ram_bytes.value or 0) if top else 0.0,
    )


def recommend_serving(
    records: Sequence[Mapping[str, Any]],
    load_levels: Sequence[Mapping[str, Any]] = (),
    *,
    hardware: Mapping[str, Any],
    catalog: Catalog,
    itl_p95_max_ms: float = DEFAULT_ITL_P95_MAX_MS,
    ttft_p99_max_ms: float = DEFAULT_TTFT_P99_MAX_MS,
    users_wanted: int | None = None,
    workload: Workload | None = None,
    levels: Sequence[int] = LEVELS,
    quality_floor: QualityFloor | None = None,
    vram_headroom: float = 0.05,
    ram_headroom_bytes: int = 2 * GIB,
) -> ServingAdvice:
    """The deployment that serves the most users within both limits (see the module)."""
    if itl_p95_max_ms <= 0 or ttft_p99_max_ms <= 0:
        raise ServingError("latency limits must be positive")
    if not records:
        raise ServingError(
            "no result records to advise from: run `fitbench bench --quick --out FILE` first"
        )
    workload = workload or Workload()
    levels = sorted(set(levels))
    try:
        fingerprint = machine_of(records, hardware)
    except PredictError as exc:
        raise ServingError(str(exc)) from None
    setup = _Setup(records, hardware, catalog, workload, vram_headroom, ram_headroom_bytes)
    floor = quality_floor or QualityFloor()
    mine = [
        line
        for line in load_levels
        if str(line.get("hardware_fingerprint") or fingerprint) == fingerprint
    ]
    measured = _measured_by_key(mine, setup, catalog)
    deployments: list[Deployment] = []
    for model in catalog.models:
        for q in model.quants:
            costs = setup.costs(model, q.quant)
            base = setup.build(model, q.quant, placements_for(costs, setup.has_gpu)[0], 1)
            if not floor.allows(base.quality):
                continue
            for placement in placements_for(costs, setup.has_gpu):
                key = (model.id, q.quant.upper(), normalise(costs, placement, setup.has_gpu))
                d = _deployment(setup, model, q.quant, placement, levels, measured.get(key, {}))
                if d is None:
                    continue
                d.users = _served_users(d.curve, itl_p95_max_ms, ttft_p99_max_ms)
                deployments.append(d)
    limits = {
        "itl_p95_max_ms": itl_p95_max_ms,
        "ttft_p99_max_ms": ttft_p99_max_ms,
        "prompt_tokens": workload.prompt_tokens,
        "max_tokens": workload.max_tokens,
        "ctx_per_user": workload.ctx,
        "levels": list(levels),
        "users_wanted": users_wanted,
        "quality_floor": floor.to_dict(),
    }

    def score(d: Deployment) -> tuple[int, int, float, float]:
        best = d.best
        return (
            d.users,
            int(d.measured),
            best.output_tokens_per_s if best else 0.0,
            -(d.vram_bytes + d.ram_bytes),
        )

    deployments.sort(key=score, reverse=True)
    for d in deployments:
        d.fidelity = _twin_fidelity(d, setup.has_gpu)
    choice = deployments[0] if deployments and deployments[0].users > 0 else None
    shown = _one_per_file(deployments)[:8]
    threads = physical_cores(hardware)
    advice = ServingAdvice(
        choice=choice,
        deployments=shown,
        verdict=_verdict(choice, deployments, limits),
        reasons=_reasons(choice, shown, limits),
        caveats=_caveats(choice, workload, setup.evidence.p95_ratio_measured),
        limits=limits,
        recipe=_recipe(choice, workload, threads),
        hardware_fingerprint=fingerprint,
        considered=deployments,
    )
    served = choice.users if choice else 0
    if users_wanted and users_wanted > served:
        models = [m for m in catalog.models if floor.allows(setup.build(
            m, m.default_quant, Placement(0, 0), 1).quality)]  # fmt: skip
        advice.beyond = beyond_one_machine(setup, deployments, models, users_wanted, limits, levels)
    return advice


def _one_per_file(deployments: Sequence[Deployment]) -> list[Deployment]:
    seen: set[tuple[str, str]] = set()
    out = []
    for d in deployments:
        if (d.model.id, d.quant) not in seen:
            seen.add((d.model.id, d.quant))
            out.append(d)
    return out


def _label(d: Deployment) -> str:
    return f"{d.model.name} {d.quant}, {d.placement.words(d.n_layer)}, -np {d.serve_slots}"


def _verdict(
    choice: Deployment | None, deployments: Sequence[Deployment], limits: Mapping[str, Any]
) -> str:
    itl, ttft = limits["itl_p95_max_ms"], limits["ttft_p99_max_ms"]
    lim = f"p95 ITL <= {itl:g} ms and p99 TTFT <= {ttft:g} ms"
    if choice is None:
        if not deployments:
            return "No deployment fits this machine's memory: nothing can be served here."
        return f"No deployment serves even one user here within {lim}."
    best = choice.best
    assert best is not None
    return (
        f"Serve {_label(choice)}: {choice.users} users within {lim} "
        f"({best.output_tokens_per_s:.1f} output tokens/s in all, {best.basis})."
    )


def _reasons(
    choice: Deployment | None, shown: Sequence[Deployment], limits: Mapping[str, Any]
) -> list[str]:
    out = []
    for d in shown:
        best = d.best
        if best is None:
            first = d.curve[0] if d.curve else None
            why = (
                f"at 1 user p95 ITL {first.itl_p95_ms:.0f} ms, p99 TTFT {first.ttft_p99_ms:.0f} ms"
                f" ({first.basis})"
                if first
                else "no level could be computed"
            )
            out.append(f"{_label(d)}: no user within the limits ({why}).")
            continue
        nxt = next((p for p in d.curve if p.users > d.users), None)
        limit = ""
        if nxt is not None:
            limit = (
                f"; at {nxt.users} users p95 ITL {nxt.itl_p95_ms:.0f} ms, p99 TTFT "
                f"{nxt.ttft_p99_ms:.0f} ms ({nxt.basis})"
            )
        out.append(
            f"{_label(d)}: {d.users} users, p95 ITL {best.itl_p95_ms:.0f} ms, p99 TTFT "
            f"{best.ttft_p99_ms:.0f} ms, {best.output_tokens_per_s:.1f} tokens/s ({best.basis})"
            f"{limit}."
        )
    return out


def _twin_fidelity(d: Deployment, has_gpu: bool) -> twin_fidelity.Fidelity | None:
    """What a served number measured on a twin means for the real file (twin/fidelity.py): an
    MoE's routing decides every step that carries several users' tokens."""
    twin_users = [p.users for p in d.curve if p.basis == "measured-twin"]
    if not twin_users:
        return None
    return twin_fidelity.fidelity(
        d.model.arch.architecture,
        has_gpu and d.placement.n_gpu_layers != 0,
        "tg",
        moe=d.model.is_moe,
        tokens=max(twin_users),
    )


def _twin_caveat(choice: Deployment | None) -> str | None:
    if choice is None or choice.fidelity is None:
        return None
    fid = choice.fidelity
    return f"Served numbers measured on a twin ({fid.short}): {fid.text}"


def _caveats(choice: Deployment | None, workload: Workload, ratio_measured: bool) -> list[str]:
    out = [
        f"Workload assumed: {workload.prompt_tokens}-token prompts, {workload.max_tokens} output "
        "tokens per request, each user sending the next request when the last one ends (closed "
        "loop, as `fitbench load` measures). Longer prompts raise TTFT and the p95 ITL of others.",
    ]
    if choice is not None and not choice.measured:
        out.append(
            "Every number of the chosen deployment is predicted: measure it with `fitbench serve` "
            "and `fitbench load` (or `fitbench quick --serve`), then ask again."
        )
    if choice is not None and 1 not in {p.users for p in choice.curve if p.basis != PREDICTED}:
        out.append(
            "Without a load measurement of one user the server's own prompt path (tokenizer, "
            "HTTP, scheduling) is unknown: on an H200 the throughput predicted from benchmarks "
            "alone was 7-38% above what the server delivered, more at more users; one user "
            "measured with `fitbench load` brought it within 2%."
        )
    if not ratio_measured:
        out.append("The p95/p50 inter-token ratio is assumed (1.1): no measured ITL tail.")
    if (twin := _twin_caveat(choice)) is not None:
        out.append(twin)
    return out


def _recipe(choice: Deployment | None, workload: Workload, threads: int) -> dict[str, Any] | None:
    if choice is None:
        return None
    slots = choice.serve_slots
    out = recipe(choice.model, choice.quant, choice.placement, workload.ctx, slots, threads)
    out["fitbench_serve"] = (
        f"fitbench serve -m {choice.model.id} --quant {choice.quant} "
        + " ".join(choice.placement.cli_args(choice.n_layer))
        + f" -np {slots} -c {workload.ctx * slots}"
    )
    out["fitbench_load"] = (
        "fitbench load --url http://127.0.0.1:8080 --concurrency "
        + ",".join(str(p.users) for p in choice.curve)
        + f" --prompt-tokens {workload.prompt_tokens} --max-tokens {workload.max_tokens}"
    )
    return out


def beyond_one_machine(
    setup: _Setup,
    deployments: Sequence[Deployment],
    models: Sequence[Model],
    users_wanted: int,
    limits: Mapping[str, Any],
    levels: Sequence[int],
) -> list[dict[str, Any]]:
    """Ways to serve users_wanted when this machine serves fewer; all predicted."""
    itl_max, ttft_max = float(limits["itl_p95_max_ms"]), float(limits["ttft_p99_max_ms"])
    out: list[dict[str, Any]] = []
    serving = [d for d in deployments if d.users > 0]
    if serving:
        best = max(serving, key=lambda d: d.users)
        n = math.ceil(users_wanted / best.users)
        point = best.best
        assert point is not None
        out.append(
            {
                "kind": "replicas",
                "machines": n,
                "deployment": _label(best),
                "users": n * best.users,
                "output_tokens_per_s": round(n * point.output_tokens_per_s, 1),
                "basis": PREDICTED,
                "text": (
                    f"{n} machines like this one, each serving {_label(best)} for "
                    f"{best.users} users, behind a load balancer that spreads users evenly: "
                    f"{n * best.users} users (predicted: this machine's curve times {n}; "
                    f"{point.basis} at {best.users} users)."
                ),
            }
        )
    by_model: dict[str, Deployment] = {}
    for d in deployments:  # sorted best first: each model's best deployment here
        by_model.setdefault(d.model.id, d)
    gpu = setup.capacity.gpu_vram_bytes
    for model in models:
        d_or_none = by_model.get(model.id)
        quant = d_or_none.quant if d_or_none else model.default_quant
        full = Placement(setup.costs(model, quant).n_layer + 1, 0)
        if not gpu:
            continue  # tensor parallelism and RPC offload need GPUs
        if d_or_none is None:
            out.append(_rpc(setup, model, quant, full, gpu))
        tp = [
            (k, _tp_users(setup, model, quant, full, k, levels, itl_max, ttft_max))
            for k in (2, 4, 8)
        ]
        k, users = next(((k, u) for k, u in tp if u >= users_wanted), tp[-1])
        if users == 0:
            continue
        groups = math.ceil(users_wanted / users)
        where = f"{k} GPUs like this one's" + (f", {groups} such groups" if groups > 1 else "")
        out.append(
            {
                "kind": "vllm-tensor-parallel",
                "gpus": k,
                "groups": groups,
                "model_id": model.id,
                "quant": quant,
                "users": users * groups,
                "basis": PREDICTED,
                "text": (
                    f"vLLM with --tensor-parallel-size {k} on {where}: {model.name} for about "
                    f"{users * groups} users (predicted: this machine's full-offload decode step "
                    f"divided by {k} x {TP_EFFICIENCY:g} for the all-reduce, {k}x the memory "
                    "for slots; vLLM's kernels are not llama.cpp's: measure it with "
                    "`fitbench load --url`)."
                ),
            }
        )
    return out


def _tp_users(
    setup: _Setup,
    model: Model,
    quant: str,
    full: Placement,
    k: int,
    levels: Sequence[int],
    itl_max: float,
    ttft_max: float,
) -> int:
    """Users served with tensor parallelism over k GPUs of this card (predicted)."""
    vram_total = setup.capacity.vram_margin.usable(sum(setup.capacity.gpu_vram_bytes[:1])) * k
    users = 0
    speedup = k * TP_EFFICIENCY
    for c in levels:
        cand = setup.build(model, quant, full, c)
        if (cand.vram_bytes.value or 0) > vram_total:
            break
        step_ms = c / float(cand.aggregate_ts.value or 1e-9) * 1e3 / speedup
        pp = float(cand.pp_ts.value or 1e-9) * speedup
        point = point_from(c, c, step_ms, pp, setup.workload, setup.evidence.p95_over_p50)
        if not point.meets(itl_max, ttft_max):
            break
        users = c
    return users


def _rpc(
    setup: _Setup, model: Model, quant: str, full: Placement, gpu: Sequence[int]
) -> dict[str, Any]:
    """llama.cpp's RPC backend: other machines' GPUs hold some layers (memory, not speed)."""
    one = setup.build(model, quant, full, 1)
    per_gpu = setup.capacity.vram_margin.usable(gpu[0])
    machines = max(2, math.ceil((one.vram_bytes.value or 0) / per_gpu))
    step_ms = 1e3 / float(one.tg_ts.value or 1e-9) + RPC_HOP_MS * (machines - 1)
    return {
        "kind": "llama.cpp-rpc",
        "machines": machines,
        "model_id": model.id,
        "quant": quant,
        "itl_ms_one_user": round(step_ms, 1),
        "basis": PREDICTED,
        "text": (
            f"{model.name} {quant} does not fit here; llama.cpp's RPC backend (rpc-server on "
            f"{machines - 1} more machine(s) like this one, llama-server --rpc HOST:PORT,...) "
            f"pools their GPUs' memory for full offload: about {step_ms:.0f} ms per token for "
            f"one user (predicted: the one-GPU full-offload step plus {RPC_HOP_MS:g} ms per "
            "machine boundary on a LAN; layers run one machine after another, so RPC adds "
            "memory, not speed)."
        ),
    }


__all__ = [
    "LEVELS",
    "Deployment",
    "Point",
    "ServingAdvice",
    "ServingError",
    "Workload",
    "beyond_one_machine",
    "binomial_quantile",
    "predict_point",
    "recommend_serving",
]
