"""Report section 1: the verdict, the recommended deployment, expected numbers and the recipe."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fitbench.core.plan.placement import Placement
from fitbench.core.report import fmt
from fitbench.core.report.configs import Config, Names
from fitbench.core.report.model import (
    Bullets,
    KeyValues,
    Paragraph,
    Section,
    Table,
    basis_label,
    basis_short,
)

# expected-number keys of the advice contract -> (label, formatter)
EXPECTED: tuple[tuple[str, str, Any], ...] = (
    ("tg_ts", "Generation speed, one sequence (tg)", fmt.ts),
    ("aggregate_ts", "Generation speed, all sequences together", fmt.ts),
    ("pp_ts", "Prompt processing (pp)", fmt.ts),
    ("ttft_ms", "Time to first token", fmt.ms),
    ("itl_p95_ms", "Inter-token latency, 95th percentile", fmt.ms),
    ("vram_bytes", "VRAM", fmt.gib),
    ("ram_bytes", "RAM", fmt.gib),
)

RECIPES: tuple[tuple[str, str], ...] = (
    ("llama_server", "llama-server (llama.cpp)"),
    ("llama_cpp_python", "llama-cpp-python"),
    ("ollama", "Ollama"),
    ("lm_studio", "LM Studio"),
    ("download", "Get the file"),
)


def expected_value(entry: Any, formatter: Any) -> tuple[str, str]:
    """(formatted value, basis) of one {"value", "basis"} entry of the advice."""
    if isinstance(entry, dict):
        return formatter(entry.get("value")), entry.get("basis", "")
    return formatter(entry), ""


def placement_text(placement: dict[str, Any], model_id: str, configs: Sequence[Config]) -> str:
    if placement.get("description"):
        text = str(placement["description"])
        return text[:1].upper() + text[1:]
    n_layer = max((c.n_layer for c in configs if c.model_id == model_id), default=0)
    return Placement.from_record(placement).short_words(n_layer)


def verdict_section(
    advice: dict[str, Any] | None, configs: Sequence[Config], names: Names, problem: str = ""
) -> Section:
    s = Section("1. Verdict and recommended deployment")
    s.para(
        "Every number in this report says how it was obtained: measured on the real model file, "
        "measured on a twin (a file with the real model's exact tensor layout and quantization "
        "but random weights), or PREDICTED by FitBench's speed model.",
        "note",
    )
    if not advice:
        why = (
            f"FitBench could not compute one: {problem}"
            if problem
            else "Run `fitbench report --results FILE --pdf OUT.pdf` without --no-advice."
        )
        s.para(
            "No recommendation was computed for these results: the report shows what was "
            f"measured. {why}",
            "warning",
        )
        return s
    s.para(advice.get("verdict") or "The advice gave no verdict.", "verdict")
    choice = advice.get("choice") or {}
    below = advice.get("below_floor") or {}
    if not choice and below:
        s.para(
            f"Below the quality floor, the best that runs here: {below.get('model_name')} at "
            f"{below.get('quant')} with {(below.get('placement') or {}).get('description')} "
            f"({below.get('why')}).",
            "warning",
        )
    elif not choice:
        s.para("Nothing that was considered fits this machine.", "warning")
    else:
        s.add(_deployment(advice, choice, configs, names))
    expected = advice.get("expected") or {}
    rows = []
    for key, label, formatter in EXPECTED:
        if key in expected:
            text, basis = expected_value(expected[key], formatter)
            rows.append((label, text, basis_label(basis)))
    if rows:
        s.add(
            Table(
                title="Expected on this machine",
                headers=("Metric", "Value", "Basis"),
                rows=tuple(rows),
                weights=(3.2, 1.6, 2.4),
                numeric=(False, True, False),
                font_size=8.5,
            )
        )
    if advice.get("reasons"):
        s.add(Paragraph("Why", "heading"))
        s.add(Bullets(tuple(str(r) for r in advice["reasons"])))
    change = advice.get("cheapest_change") or {}
    if change.get("sentence"):
        s.add(Paragraph("The cheapest change that meets the floors", "heading"))
        s.para(str(change["sentence"]), "body")
    needed = [
        str(n.get("sentence") or "; ".join(f"{k}: {v}" for k, v in fmt.flatten(n)))
        for n in advice.get("hardware_needed") or []
        if isinstance(n, dict)
    ]
    if needed:
        s.add(Paragraph("What it would take", "heading"))
        s.add(Bullets(tuple(needed)))
    alternatives = advice.get("alternatives") or []
    if alternatives:
        s.add(_alternatives_table(alternatives, configs, names))
    _recipe(s, advice.get("recipe") or {})
    if not choice and below:
        _recipe(s, below.get("recipe") or {}, "Recipe: the best option below the quality floor")
    return s


def _deployment(
    advice: dict[str, Any], choice: dict[str, Any], configs: Sequence[Config], names: Names
) -> KeyValues:
    model_id = choice.get("model_id", "")
    batch = choice.get("batch")
    return KeyValues(
        title="Recommended deployment",
        rows=(
            ("Model", choice.get("model_name") or names.name(model_id)),
            ("Quantization", choice.get("quant") or fmt.DASH),
            ("Placement", placement_text(choice.get("placement") or {}, model_id, configs)),
            ("Context", f"{choice['ctx']} tokens per sequence" if choice.get("ctx") else fmt.DASH),
            (
                "Parallel sequences",
                f"{batch} (one user)" if batch == 1 else str(batch) if batch else fmt.DASH,
            ),
            ("Goal", str(advice.get("goal") or fmt.DASH)),
        ),
    )


def _recipe(s: Section, recipe: dict[str, Any], title: str = "") -> None:
    if not recipe:
        return
    s.add(Paragraph(title or "Recipe: run the recommended deployment", "heading"))
    known = dict(RECIPES)
    tools: dict[str, Any] = recipe["tools"] if isinstance(recipe.get("tools"), dict) else {}
    for key, label in RECIPES:
        if recipe.get(key):
            entry = tools.get(key) or {}
            where = (entry.get("placement") or {}).get("description")
            suffix = f": {where}" if where and not entry.get("same_as_recommended", True) else ""
            s.add(Paragraph(label + suffix, "body"))
            s.add(Paragraph(str(recipe[key]), "code"))
    settings = recipe.get("settings")
    if isinstance(settings, dict) and settings:
        fa = settings.get("flash_attn")
        s.para(
            f"Settings {settings.get('source', '')}: context {settings.get('ctx')} tokens per "
            f"sequence, {settings.get('parallel')} parallel sequence(s), flash attention "
            f"{'auto' if fa is None else 'on' if fa else 'off'}, KV cache "
            f"{settings.get('type_k')}/{settings.get('type_v')}, {settings.get('threads')} "
            "threads.",
            "note",
        )
    skip = {"notes", "tools", "settings", "model_source"}
    for key, value in recipe.items():
        if key in known or key in skip or not value or isinstance(value, dict | list):
            continue
        s.add(Paragraph(fmt.humanize_key(key), "body"))
        s.add(Paragraph(str(value), "code"))
    notes = recipe.get("notes") or []
    if isinstance(notes, str):
        notes = [notes]
    if notes:
        s.add(Bullets(tuple(str(n) for n in notes)))


def _alternative_note(alt: dict[str, Any]) -> str:
    why = alt.get("verdict") or alt.get("reason") or alt.get("why")
    if why:
        return str(why)
    quality = alt.get("quality") or {}
    parts = []
    if quality.get("mmlu") is not None:
        parts.append(f"MMLU {quality['mmlu']}")
    if quality.get("mt_bench") is not None:
        parts.append(f"MT-Bench {quality['mt_bench']}")
    if quality.get("ppl_increase") is not None:
        parts.append(f"perplexity +{float(quality['ppl_increase']):.3g} from quantization")
    return ", ".join(parts)


def _alternatives_table(
    alternatives: Sequence[dict[str, Any]], configs: Sequence[Config], names: Names
) -> Table:
    rows = []
    for alt in alternatives:
        model_id = alt.get("model_id", "")
        expected = alt.get("expected") or {}
        tg, tg_basis = expected_value(expected.get("tg_ts"), fmt.ts)
        vram, vram_basis = expected_value(expected.get("vram_bytes"), fmt.gib)
        rows.append(
            (
                alt.get("model_name") or names.name(model_id),
                alt.get("quant") or fmt.DASH,
                placement_text(alt.get("placement") or {}, model_id, configs),
                f"{tg} ({basis_short(tg_basis)})" if tg != fmt.DASH else tg,
                f"{vram} ({basis_short(vram_basis)})" if vram != fmt.DASH else vram,
                _alternative_note(alt),
            )
        )
    return Table(
        title="Alternatives considered",
        headers=("Model", "Quant", "Placement", "tg", "VRAM", "Notes"),
        rows=tuple(rows),
        weights=(2.2, 1.0, 2.4, 1.6, 1.6, 2.8),
        numeric=(False, False, False, True, True, False),
    )
