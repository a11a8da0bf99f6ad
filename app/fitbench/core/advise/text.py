"""The advice in words: a one-sentence verdict, reasons that cite numbers, and caveats.

Every number in a sentence carries its basis (measured-real, measured-twin, predicted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fitbench.core.advise.candidates import (
    GIB,
    MEASURED_TWIN,
    PPL_REFERENCE,
    PREDICTED,
    Candidate,
    Evidence,
)
from fitbench.core.advise.memory import PlannedMemory
from fitbench.core.model.catalog import Catalog
from fitbench.core.predict.fit import Calibration, leave_one_group_out
from fitbench.core.predict.model import Observation

GB = 1e9
MAX_LOO_POINTS = 120  # leave-one-out refits every point; beyond this the in-sample error is shown


def _gib(n: float | None) -> str:
    return f"{(n or 0) / GIB:.1f} GiB"


def speed_of(c: Candidate, goal: str) -> float:
    """The speed a goal ranks by: all sequences together for a service, else one user's tg."""
    return float((c.aggregate_ts if goal == "throughput" else c.tg_ts).value or 0.0)


def _ratio(a: float, b: float) -> str:
    r = a / b if b else float("inf")
    return f"{r:.1f}x" if r < 10 else f"{r:.0f}x"


# what each speed-model constant means to a person, and the test that would measure it
_UNMEASURED: dict[str, tuple[str, str]] = {
    "gpu_bandwidth": (
        "how fast the GPU reads its memory",
        "a benchmark with layers on the GPU (`fitbench bench -ngl 99`)",
    ),
    "cpu_bandwidth": (
        "how fast the CPU reads RAM",
        "a CPU-only generation test (`fitbench bench -ngl 0`)",
    ),
    "pcie_bandwidth": (
        "how fast weights cross to the GPU when part of the model stays in RAM",
        "a partial offload with a long prompt (`fitbench bench -ngl 16 -p 512`)",
    ),
    "overhead_per_step": (
        "the fixed cost of each token",
        "any generation test (`fitbench bench -n 128`)",
    ),
    "gpu_matrix_compute": (
        "the GPU's arithmetic speed on prompts",
        "a prompt test with layers on the GPU (`fitbench bench -ngl 99 -p 512`)",
    ),
    "gpu_vector_compute": (
        "the GPU's arithmetic speed when generating for a few users",
        "a batch test on the GPU (`fitbench bench -ngl 99 --batch 4`)",
    ),
    "cpu_compute": (
        "the CPU's arithmetic speed on prompts",
        "a prompt test on the CPU (`fitbench bench -ngl 0 -p 512`)",
    ),
}


def _unmeasured_sentence(idle: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """The speed-model constants no measurement informed, said as what was not measured, what
    the numbers assume instead, and how to measure it."""
    parts, how = [], []
    for name, c in idle:
        meaning, test = _UNMEASURED.get(name, (name.replace("_", " "), "a benchmark"))
        source = str(c.get("prior_source") or "")
        # "60% of the detected 3350 GB/s" says where the figure came from; a bare guess does not
        whence = (
            f", {source}"
            if "of the detected" in source or "the measured" in source
            else ", a guess"
        )
        parts.append(f"{meaning} (assumed {c['prior']:g} {c['unit']}{whence})")
        how.append(test)
    return (
        "Not measured on this machine: "
        + "; ".join(parts)
        + ". Predicted numbers that depend on these rest on those assumptions and may be off "
        "by a factor of two; numbers measured here are not affected. To measure them: "
        + "; ".join(dict.fromkeys(how))
        + "."
    )


class Explainer:
    def __init__(
        self,
        goal: str,
        limits: Mapping[str, Any],
        calibration: Calibration,
        points: Sequence[Observation],
        evidence: Evidence,
        planner: PlannedMemory | None,
    ) -> None:
        self.goal = goal
        self.limits = limits
        self.calibration = calibration
        self.points = points
        self.evidence = evidence
        self.planner = planner  # None: the caller's memory_fn, which speaks for itself
        self.extra: list[str] = []

    def missed_limit(self, choice: Candidate) -> None:
        if self.goal == "quality":
            self.extra.append(
                f"No option that fits reaches {self.limits['min_tps']:g} tokens/s; this one is "
                f"the fastest, {choice.tg_ts.value or 0:.1f} tokens/s ({choice.tg_ts.basis_words})."
            )
        elif self.goal == "interactive":
            self.extra.append(
                f"No option that fits answers a {self.limits['prompt_tokens']}-token prompt "
                f"within {self.limits['ttft_max_ms']:.0f} ms; this one is the quickest, "
                f"{choice.ttft_ms.value or 0:.0f} ms ({choice.ttft_ms.basis_words})."
            )
        else:
            self.extra.append(
                f"No option keeps p95 inter-token latency under "
                f"{self.limits['itl_p95_max_ms']:.0f} ms; this one comes closest, "
                f"{choice.itl_p95_ms.value or 0:.0f} ms ({choice.itl_p95_ms.basis_words})."
            )

    def verdict(
        self,
        choice: Candidate | None,
        fitting_models: set[str],
        below_floor: Mapping[str, Any] | None = None,
        change: Mapping[str, Any] | None = None,
    ) -> str:
        if choice is None and below_floor:
            e = below_floor["expected"]
            text = (
                f"Nothing that meets the quality floor fits this machine. The best that runs is "
                f"{below_floor['model_name']} at {below_floor['quant']} with "
                f"{below_floor['placement']['description']}: {e['tg_ts']['value']} tokens/s "
                f"({e['tg_ts']['basis']}), {below_floor['why']}."
            )
            return text + (f" {change['sentence']}" if change else "")
        if choice is None and change:
            return f"Nothing fits this machine with the required headroom. {change['sentence']}"
        if choice is None:
            if fitting_models:
                return (
                    "Only quantizations below the quality floor fit this machine; lower the "
                    "floor or add memory (see what hardware would suffice)."
                )
            return (
                "Nothing fits this machine with the required headroom; see what hardware "
                "would suffice."
            )
        where = choice.gpu_layers_label
        if self.goal == "quality":
            return (
                f"Run {choice.model.name} at {choice.quant} with {where}: the best quality that "
                f"reaches {self.limits['min_tps']:g} tokens/s here, "
                f"{choice.tg_ts.value or 0:.1f} tokens/s ({choice.tg_ts.basis_words})."
            )
        if self.goal == "interactive":
            return (
                f"Run {choice.model.name} at {choice.quant} with {where}: "
                f"{choice.tg_ts.value or 0:.1f} tokens/s ({choice.tg_ts.basis_words}), "
                f"first token in {choice.ttft_ms.value or 0:.0f} ms for a "
                f"{self.limits['prompt_tokens']}-token prompt ({choice.ttft_ms.basis_words})."
            )
        return (
            f"Serve {choice.model.name} at {choice.quant} with {where} and {choice.batch} "
            f"parallel sequences: {choice.aggregate_ts.value or 0:.0f} tokens/s in total "
            f"({choice.aggregate_ts.basis_words}), p95 inter-token latency "
            f"{choice.itl_p95_ms.value or 0:.0f} ms ({choice.itl_p95_ms.basis_words})."
        )

    def _speed(self, c: Candidate) -> float:
        return speed_of(c, self.goal)

    def _speed_text(self, c: Candidate) -> str:
        if self.goal != "throughput":
            return f"{c.tg_ts.value or 0:.1f} tokens/s ({c.tg_ts.basis_words})"
        return (
            f"{c.aggregate_ts.value or 0:.0f} tokens/s at batch {c.batch} "
            f"({c.aggregate_ts.basis_words})"
        )

    def reasons(
        self,
        choice: Candidate | None,
        tied: list[Candidate],
        options: list[Candidate],
        catalog: Catalog,
        fitting_models: set[str],
        needed: list[dict[str, Any]],
        story: Mapping[str, Any] | None,
    ) -> list[str]:
        out: list[str] = list(self.extra)  # a missed latency limit comes first
        lim = self.limits
        if choice is not None:
            if self.extra:  # the latency limit was missed: that sentence says why this one
                pass
            elif self.goal == "quality":
                out.append(
                    f"Among {len(options)} options that fit with headroom and meet the quality "
                    f"floor, it has the best quality that still reaches {lim['min_tps']:g} "
                    f"tokens/s: {self._speed_text(choice)}; the highest quantization first "
                    "(least perplexity added), then the published score."
                )
            elif self.goal == "interactive":
                out.append(
                    f"Among {len(options)} options that fit with headroom and meet the quality "
                    f"floor, it generates fastest for one user: {self._speed_text(choice)}, with "
                    f"its first token in {choice.ttft_ms.value or 0:.0f} ms (limit "
                    f"{lim['ttft_max_ms']:.0f} ms)."
                )
            else:
                out.append(
                    f"Among {len(options)} options that fit and meet the quality floor, it serves "
                    f"the most tokens: {self._speed_text(choice)}, while each user still sees a "
                    f"token every {choice.itl_p95_ms.value or 0:.0f} ms at p95 (limit "
                    f"{lim['itl_p95_max_ms']:.0f} ms)."
                )
            if not lim["vram_usable_bytes"]:
                out.append(
                    f"With no GPU offload here it runs from RAM: {_gib(choice.ram_bytes.value)} "
                    f"({choice.ram_bytes.basis}) of {_gib(lim['ram_usable_bytes'])} usable, after "
                    f"keeping {_gib(lim['ram_headroom_bytes'])} free for everything else."
                )
            else:
                vram, ram = choice.vram_bytes, choice.ram_bytes
                out.append(
                    f"It needs {_gib(vram.value)} of VRAM ({vram.basis}) of "
                    f"{_gib(lim['vram_usable_bytes'])} usable and {_gib(ram.value)} of RAM "
                    f"({ram.basis}) of {_gib(lim['ram_usable_bytes'])} usable, after keeping "
                    f"{_margin_words(lim)} of VRAM per GPU and "
                    f"{_gib(lim['ram_headroom_bytes'])} of RAM free for everything else."
                )
            out.extend(self._versus_other_models(choice, options, catalog, fitting_models))
            out.extend(self._quality(choice, catalog))
            out.extend(self._moe(choice, story, catalog))
            if tied:
                out.append(
                    f"{len(tied)} other option(s) come within 1% of it (run-to-run noise); it "
                    "wins the tie on quality, then on memory: e.g. "
                    f"{tied[0].model.name} {tied[0].quant} with {tied[0].gpu_layers_label}, "
                    f"{self._speed_text(tied[0])}."
                )
        for n in needed:
            prefix = "" if fitting_models else "Nothing fits: "
            if fitting_models:
                prefix = "It does not fit here: "
            out.append(prefix + n["sentence"])
        return out

    def _versus_other_models(
        self,
        choice: Candidate,
        options: list[Candidate],
        catalog: Catalog,
        fitting_models: set[str],
    ) -> list[str]:
        out = []
        for model in catalog.models:
            if model.id == choice.model.id:
                continue
            theirs = [c for c in options if c.model.id == model.id]
            if theirs:
                best = max(theirs, key=self._speed)
                if abs(self._speed(best) - self._speed(choice)) <= 0.01 * self._speed(choice):
                    out.append(
                        f"The best {model.name} option, {best.quant} with "
                        f"{best.gpu_layers_label}, is as fast ({self._speed_text(best)}): a tie."
                    )
                    continue
                out.append(
                    f"The best {model.name} option, {best.quant} with {best.gpu_layers_label}, "
                    f"reaches {self._speed_text(best)}: "
                    f"{_ratio(self._speed(choice), self._speed(best))} slower than the choice."
                    if self._speed(best) <= self._speed(choice)
                    else f"The best {model.name} option, {best.quant} with "
                    f"{best.gpu_layers_label}, is faster ({self._speed_text(best)}) but "
                    + (
                        "of lower quality."
                        if self.goal == "quality"
                        else "misses the limits or the quality floor."
                    )
                )
            elif model.id in fitting_models:
                out.append(
                    f"{model.name} fits only at quantizations below the quality floor or beyond "
                    "the latency limit."
                )
            else:
                out.append(f"Only {choice.model.name} fits on this machine; {model.name} does not.")
        return out

    def _quality(self, choice: Candidate, catalog: Catalog) -> list[str]:
        q = choice.quality
        others = [m for m in catalog.models if m.id != choice.model.id]
        parts = []
        for m in others:
            if q.mmlu is not None and m.mmlu is not None:
                text = f"MMLU {q.mmlu} vs {m.mmlu}"
                if q.mt_bench is not None and m.mt_bench is not None:
                    text += f", MT-Bench {q.mt_bench} vs {m.mt_bench}"
                parts.append(f"{choice.model.name} vs {m.name}: {text} (published)")
        ppl = (
            f"{choice.quant} adds {q.ppl_increase:+.2f} perplexity ({PPL_REFERENCE})"
            if q.ppl_increase is not None
            else f"{choice.quant} has no published perplexity cost"
        )
        return ["Quality: " + "; ".join([*parts, ppl]) + "."]

    def _moe(
        self, choice: Candidate, story: Mapping[str, Any] | None, catalog: Catalog
    ) -> list[str]:
        if not story or not story.get("by_offload"):
            return []
        moe = catalog.get(story["moe_model"])
        offload = story["by_offload"]
        first_batch = story["by_batch"][0] if story.get("by_batch") else None
        full = next((o for o in offload if o["gpu_fraction"] == 1.0), None)
        ratios = ", ".join(
            f"{o['ratio']:.1f}x at {o['gpu_fraction']:.0%} on the GPU" for o in offload
        )
        out = []
        if first_batch:
            out.append(
                f"Why the MoE {'wins' if first_batch['ratio'] > 1 else 'loses'} here: per token "
                f"{moe.name} reads only its {moe.arch.n_expert_used} active experts of "
                f"{moe.arch.n_expert}, so for one user it runs "
                f"{first_batch['ratio']:.1f}x the dense model's speed ({first_batch['basis']}); "
                f"by offload fraction the ratio is {ratios}."
            )
        last = story["by_batch"][-1] if story.get("by_batch") else None
        if first_batch and last and last is not first_batch:
            out.append(
                f"With {last['batch']} parallel sequences nearly every expert is read each step, "
                f"and the ratio becomes {last['ratio']:.1f}x ({last['basis']})."
            )
        if full and choice.model.arch.is_moe and not choice.placement.all_on_gpu(choice.n_layer):
            out.append(
                f"All {choice.weights_bytes / GB:.1f} GB of {choice.model.name} must be resident; "
                f"with {choice.gpu_layers_label} its advantage is not the {full['ratio']:.1f}x of "
                "full offload."
            )
        return out

    def caveats(self, choice: Candidate | None, records: Sequence[Mapping[str, Any]]) -> list[str]:
        out = []
        if choice is not None:
            values = [
                choice.pp_ts,
                choice.tg_ts,
                choice.ttft_ms,
                choice.itl_p95_ms,
                choice.aggregate_ts,
            ]
            if any(v.basis == MEASURED_TWIN for v in values):
                fids = [v.fidelity for v in values if v.fidelity is not None]
                # verbatim, so the report finds them said and does not repeat them
                bands = "; ".join(dict.fromkeys(f.text for f in fids))
                widest_pct = round(max((f.uncertainty for f in fids), default=0) * 100, 1)
                out.append(
                    "Not measured on the real model file: some numbers come from a twin, a file "
                    "with the real file's exact layout but random weights"
                    + (f": {bands}" if bands else "")
                    + ". "
                    + (
                        f"So the real file's speeds may differ by up to {widest_pct:g}% from "
                        "these (the expected figures carry that range); "
                        if widest_pct
                        else ""
                    )
                    + "to be sure, download the model (Models tab, or `fitbench download`) and "
                    "run the benchmark again."
                )
            if any(v.basis == PREDICTED for v in values):
                out.append(self._accuracy())
            if self.goal == "throughput" and choice.batch >= max(self.limits["batches"]):
                out.append(
                    f"{choice.batch} parallel sequences is the most that was tried, and it still "
                    "met the latency limit, so more users at once may also work: measure it with "
                    f"`fitbench bench --batch {choice.batch * 2}`."
                )
            if choice.model.arch.is_moe:
                out.append(
                    "The benchmark feeds random tokens, which spread evenly over "
                    f"{choice.model.name}'s experts; real text picks some experts more often, so "
                    "real speeds (with many users at once most of all) may differ. Serving real "
                    "prompts is the way to see it."
                )
        scaled = sum(1 for r in records if r.get("source") == "scaled-twin")
        if scaled:
            out.append(
                f"The whole models were not run here: {scaled} measurement(s) ran on scaled "
                "twins, slices of a few of a model's blocks (the full file did not fit in "
                "memory or on disk). The full models' speeds are predicted from those slices; on "
                "a CPU such predictions came out 8-16% too fast for generation and 15-30% too "
                "fast for prompts, more so the fewer blocks the slice has. To measure the full "
                "model, run the benchmark on a machine where it fits."
            )
        if self.planner is not None and self.planner.estimated:
            out.append(
                "Memory of " + ", ".join(self.planner.estimated) + " is a rough estimate, not a "
                "plan: no tensor list is known for these files, so VRAM and RAM are the weights "
                "plus the context cache plus working buffers (or the peak measured, where "
                "larger). Download the file to plan it exactly."
            )
        if not self.evidence.p95_ratio_measured:
            out.append(
                "How much the time per token varies was not measured, so the slow-token latency "
                "(p95) assumes steps 10% slower than average; a generation test (`fitbench bench "
                "-n 128`) measures it."
            )
        idle = [(name, c) for name, c in self.calibration.constants().items() if not c["fitted"]]
        if idle:
            out.append(_unmeasured_sentence(idle))
        return out

    def _accuracy(self) -> str:
        n = len(self.points)
        if n == 0:
            return (
                "Predicted numbers rest on the detected hardware alone: no usable measurement "
                "calibrated the predictor."
            )
        if 2 <= n <= MAX_LOO_POINTS:
            h = leave_one_group_out(self.points, self.calibration.prior, id)
            errs = {k: h.mae_pct(k) for k in ("tg", "pp", "batch")}
            how = f"leave-one-out error over {n} measured points"
        else:
            errs = {k: self.calibration.mae_pct(k) for k in ("tg", "pp", "batch")}
            how = f"fit error over {n} measured point(s)"
        shown = ", ".join(f"{k} {v:.0f}%" for k, v in errs.items() if v is not None)
        return f"Numbers marked predicted come from the calibrated speed model ({how}: {shown})."


def _margin_words(limits: Mapping[str, Any]) -> str:
    """The VRAM margin the advice kept, in words (older advice files kept a fraction)."""
    margin = limits.get("vram_margin")
    if isinstance(margin, Mapping) and margin.get("words"):
        return str(margin["words"])
    return f"{float(limits.get('vram_headroom') or 0):.0%}"
