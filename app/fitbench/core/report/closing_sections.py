"""Report sections 5-7: predicted vs measured, caveats in plain words, appendix."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fitbench.core.report import figures, fmt
from fitbench.core.report.capped import MAX_ROWS, listed, thin
from fitbench.core.report.configs import Config, Names, Record, twin_caveats
from fitbench.core.report.model import (
    AttachmentNote,
    Bullets,
    KeyValues,
    Paragraph,
    Section,
    Table,
    basis_label,
)
from fitbench.core.report.results_section import NOISY_SHARE, gpu_share_percent, placement_of
from fitbench.core.report.verdict_section import EXPECTED

# -- 5. predicted vs measured --------------------------------------------------------------------


def _predicted_expected(advice: dict[str, Any], names: Names) -> list[tuple[str, str, str]]:
    rows = []
    for c in [advice.get("choice") or {}, *(advice.get("alternatives") or [])]:
        expected = c.get("expected") if c is not advice.get("choice") else advice.get("expected")
        name = c.get("model_name") or names.name(c.get("model_id", ""))
        what = f"{name} {c.get('quant', '')}".strip()
        for key, label, formatter in EXPECTED:
            entry = (expected or {}).get(key)
            if isinstance(entry, dict) and entry.get("basis") == "predicted":
                rows.append((what, label, f"{formatter(entry.get('value'))} (PREDICTED)"))
    return rows


def _residual_cell(key: str, value: Any) -> str:
    # the header carries the unit of *_ts columns (humanize_key with_unit), so the cell is bare
    return fmt.num(value) if key.endswith("_ts") else fmt.value(key, value)


def _largest_errors(residuals: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most MAX_ROWS residuals, the largest errors, in their order."""
    if len(residuals) <= MAX_ROWS:
        return list(residuals)

    def size(ir: tuple[int, dict[str, Any]]) -> float:
        e = ir[1].get("error_pct")
        return -abs(float(e)) if isinstance(e, int | float) else 0.0

    largest = sorted(enumerate(residuals), key=size)[:MAX_ROWS]
    return [r for _, r in sorted(largest, key=lambda ir: ir[0])]


def _residual_table(all_residuals: Sequence[dict[str, Any]]) -> Table:
    residuals = _largest_errors(all_residuals)
    hidden = len(all_residuals) - len(residuals)
    keys = list(dict.fromkeys(k for r in residuals for k in r))
    # predicted columns shout, so no predicted number can be mistaken for a measurement
    headers = tuple(
        fmt.humanize_key(k, with_unit=True).replace("Predicted", "PREDICTED") for k in keys
    )
    numeric = tuple(
        all(isinstance(r.get(k), int | float) or r.get(k) is None for r in residuals) for k in keys
    )
    longest = [max(len(str(r.get(k, ""))) for r in residuals) for k in keys]
    weights = tuple(3.6 if n > 24 else 1.0 for n in longest)
    rows = tuple(tuple(_residual_cell(k, r.get(k)) for k in keys) for r in residuals)
    return Table(
        title="The predictor's residuals on the measured points",
        headers=headers,
        rows=rows,
        weights=weights,
        numeric=numeric,
        note="Error = (PREDICTED − measured) ÷ measured, for every point the predictor was "
        "calibrated on"
        + (
            f"; the {len(residuals)} largest errors of {len(all_residuals)} points are listed, "
            "the figure below plots the others too."
            if hidden
            else "."
        ),
    )


def _residual_points(residuals: Sequence[dict[str, Any]]) -> tuple[list[figures.Point], str]:
    if not residuals:
        return [], ""
    keys = list(residuals[0])
    pred = next((k for k in keys if k.lower().startswith("predicted")), None)
    meas = next((k for k in keys if k.lower().startswith("measured")), None)
    if pred is None or meas is None:
        return [], ""
    pts = [
        figures.Point(float(r[pred]), float(r[meas]), str(r.get("kind") or "measured points"))
        for r in residuals
        if isinstance(r.get(pred), int | float)
        and isinstance(r.get(meas), int | float)
        and r[pred] > 0
        and r[meas] > 0
    ]
    units = sorted({str(r["unit"]) for r in residuals if r.get("unit")})
    if not units:
        units = ["t/s"] if pred.endswith("_ts") else []
    return thin(pts), " or ".join(units) or "value"


def _constants(constants: dict[str, Any]) -> Table | KeyValues:
    """Fitted constants: a table when each says its value, unit and prior, else plain facts."""
    if constants and all(isinstance(v, dict) and "value" in v for v in constants.values()):
        return Table(
            title="Predictor constants (fitted to this machine's measurements)",
            headers=("Constant", "Value", "Unit", "Prior", "Where the prior came from", "Fitted"),
            rows=tuple(
                (
                    fmt.humanize_key(name),
                    fmt.num(c.get("value")),
                    str(c.get("unit") or ""),
                    fmt.num(c.get("prior")),
                    str(c.get("prior_source") or fmt.DASH),
                    "yes" if c.get("fitted") else "no (prior kept)",
                )
                for name, c in constants.items()
            ),
            weights=(2.2, 1.0, 0.9, 1.0, 4.0, 1.2),
            numeric=(False, True, False, True, False, False),
        )
    return KeyValues(title="Predictor constants", rows=tuple(fmt.flatten(constants)))


def _accuracy(predictor: dict[str, Any]) -> str:
    mae = predictor.get("mae_pct")
    if not isinstance(mae, dict) or not mae:
        return ""
    parts = ", ".join(f"{kind} {float(v):.0f}%" for kind, v in mae.items())
    n = predictor.get("n_points")
    return (
        f"Mean absolute error of the predictor{f' over {n} measured points' if n else ''}: {parts}."
    )


def predicted_section(advice: dict[str, Any] | None, names: Names) -> Section:
    s = Section("5. Predicted vs measured")
    if not advice:
        s.para("No predictions were made for this report: every number in it was measured.", "note")
        return s
    s.para(
        "FitBench predicts numbers it could not measure (a placement, batch size or real file "
        "that was not run) from a bandwidth and compute model calibrated on the measured points. "
        "Every predicted number is marked PREDICTED; how far the model was off on the measured "
        "points is below.",
        "note",
    )
    rows = _predicted_expected(advice, names)
    if rows:
        s.add(
            Table(
                title="Predicted numbers in the recommendation",
                headers=("Deployment", "Metric", "Value"),
                rows=tuple(rows),
                weights=(3.0, 3.0, 2.0),
                numeric=(False, False, True),
            )
        )
    elif advice.get("expected"):
        s.para("The recommendation's expected numbers were all measured.", "body")
    else:
        s.para("The advice recommended no deployment, so it expects no numbers.", "body")
    moe_vs_dense = advice.get("moe_vs_dense") or {}
    ratio_rows = [
        (
            "parallel sequences",
            f"B = {float(p.get('batch') or 0):g}",
            f"{p['ratio']:.2f}×",
            basis_label(p.get("basis", "")),
        )
        for p in moe_vs_dense.get("by_batch") or []
        if p.get("ratio") is not None
    ] + [
        (
            "GPU offload",
            f"{gpu_share_percent(p.get('gpu_fraction')):.0f}% of layers on GPU",
            f"{p['ratio']:.2f}×",
            basis_label(p.get("basis", "")),
        )
        for p in moe_vs_dense.get("by_offload") or []
        if p.get("ratio") is not None
    ]
    if ratio_rows:
        s.add(
            Table(
                title="MoE ÷ dense generation speed",
                headers=("Varied", "At", "Ratio", "Basis"),
                rows=tuple(ratio_rows),
                weights=(2.0, 2.4, 1.0, 2.6),
                numeric=(False, False, True, False),
            )
        )
    predictor = advice.get("predictor") or {}
    if _accuracy(predictor):
        s.para(_accuracy(predictor), "body")
    if predictor.get("constants"):
        s.add(_constants(predictor["constants"]))
    residuals = [r for r in predictor.get("residuals") or [] if isinstance(r, dict)]
    if residuals:
        s.add(_residual_table(residuals))
        pts, unit = _residual_points(residuals)
        if pts:
            s.add(
                figures.predicted_vs_measured(
                    pts,
                    unit,
                    "Each point is one measured configuration: the model's PREDICTED value "
                    "against the measurement. Points on the dashed line were predicted exactly.",
                )
            )
    else:
        s.para("The predictor reported no residuals.", "note")
    return s


# -- 6. caveats ----------------------------------------------------------------------------------


def caveats_section(
    records: Sequence[Record],
    configs: Sequence[Config],
    names: Names,
    advice: dict[str, Any] | None,
    hardware: dict[str, Any] | None,
    samples: Sequence[dict[str, Any]] | None,
) -> Section:
    s = Section("6. Caveats")
    items: list[str] = [str(c) for c in (advice or {}).get("caveats") or []]
    # the advice's caveats come first; a generic one here is added only if it says nothing alike
    said = " ".join(items).lower()
    sources = {c.source for c in configs}
    if sources & {"twin", "scaled-twin"} and "twin" not in said:
        items.append(
            "Some numbers were measured on twins: files with the real model's exact tensor "
            "layout and quantization types but random weights. Speed depends mostly on the "
            "layout, so twins run at nearly the real speed, but the answers they produce are "
            "meaningless, and an MoE's expert routing on random weights and random token ids is "
            "not the routing it would see on real text."
        )
    # how far the real files may be from the twins measured here, unless the advice said it
    advised = " ".join(items)
    items.extend(t for t in twin_caveats(configs, names) if t not in advised)
    if "scaled-twin" in sources:
        items.append(
            "Scaled twins have fewer layers than the real model; their numbers were scaled to "
            "the full layer count, which assumes every layer costs the same. On a CPU this was "
            "measured 8-16% optimistic for generation and 15-30% for prompts (Mixtral, full "
            "twin vs 4- and 8-layer twins): part of the cost per token grows with depth."
        )
    models = {c.model_id for c in configs}
    if not any(names.is_moe(m) for m in models) or all(names.is_moe(m) for m in models):
        items.append(
            "Only one of the two models was measured, so the MoE-vs-dense comparison rests on "
            "one side alone."
        )
    failed = [c for c in configs if c.status != "ok"]
    if failed:
        listed = "; ".join(
            f"{names.name(c.model_id)} {c.quant}, {placement_of(c)}: {c.status}" for c in failed[:8]
        )
        items.append(
            f"{len(failed)} configuration(s) did not finish every test ({listed}"
            f"{'; …' if len(failed) > 8 else ''}). Out-of-memory results show a placement that "
            "does not fit, not a slow one."
        )
    noisy = [c for c in configs for t in ("tg", "pp") if (c.stddev_share(t) or 0.0) > NOISY_SHARE]
    if noisy:
        items.append(
            f"{len(set(id(c) for c in noisy))} configuration(s) varied by more than "
            f"{NOISY_SHARE:.0%} between repetitions. Other programs, thermal throttling or power "
            "limits may have interfered; re-run them on an idle machine before relying on them."
        )
    base = [r["vram_base_bytes"] for r in records if r["vram_base_bytes"]]
    if base and max(base) > 1024**3:
        items.append(
            f"Up to {fmt.gib(max(base))} of VRAM was already in use by other programs before the "
            "model was loaded; that memory was not available to the benchmark."
        )
    for gpu in (hardware or {}).get("gpus") or []:
        procs = gpu.get("processes") if isinstance(gpu, dict) else None
        if procs:
            items.append(
                f"Other processes were using GPU {gpu.get('index', '?')} ({gpu.get('name', '')}) "
                f"when the machine was examined ({len(procs)} process(es))."
            )
    if (
        advice
        and "predicted" not in said
        and any(
            isinstance(e, dict) and e.get("basis") == "predicted"
            for e in (advice.get("expected") or {}).values()
        )
    ):
        items.append(
            "Some expected numbers in the verdict are PREDICTED, not measured; section 5 shows "
            "how far the predictions were off where a measurement exists."
        )
    if not advice:
        items.append("No recommendation was computed; the report only shows measurements.")
    items.append(
        "Speeds were measured with short prompts and short generations on this machine only; "
        "long contexts, other llama.cpp versions and other drivers change them."
    )
    s.add(Bullets(tuple(dict.fromkeys(items))))
    return s


# -- 7. appendix ---------------------------------------------------------------------------------


def _settings_text(settings: Any) -> str:
    """One line per setting, and per entry of a list (one per configuration): complete, but
    compact enough that a sweep's settings take a page, not ten."""
    if not isinstance(settings, dict):
        return _compact(settings)
    lines: list[str] = []
    for key, value in sorted(settings.items()):
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.extend(f"{key}[{i}]: {_compact(v)}" for i, v in enumerate(value))
        else:
            lines.append(f"{key}: {_compact(value)}")
    return "\n".join(lines)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(", ", ": "), default=str)


def appendix_section(
    records: Sequence[Record],
    advice: dict[str, Any] | None,
    run_meta: dict[str, Any],
    raw_filename: str,
    raw_sha256: str,
    n_records: int | None = None,
) -> Section:
    s = Section("7. Appendix: settings, versions and raw results")

    def distinct(name: str) -> str:
        values = sorted({str(r[name]) for r in records if r[name] not in (None, "")})
        return listed(values) or fmt.DASH

    s.add(
        KeyValues(
            title="Versions",
            rows=(
                ("FitBench", distinct("fitbench_version")),
                ("llama-cpp-python", distinct("llama_cpp_python_version")),
                ("llama.cpp commit", distinct("build_commit")),
                ("llama.cpp build number", distinct("build_number")),
                ("ggml backends", distinct("backends")),
                ("Result schema version", distinct("schema_version")),
            ),
        )
    )
    if run_meta:
        facts = {k: v for k, v in run_meta.items() if k != "settings"}
        if facts:
            s.add(KeyValues(title="Run metadata", rows=tuple(fmt.flatten(facts))))
        if run_meta.get("settings"):
            s.add(Paragraph("Run settings, as saved with the run", "heading"))
            s.add(Paragraph(_settings_text(run_meta["settings"]), "code"))
    limits = (advice or {}).get("limits") or {}
    if isinstance(limits, dict) and limits:
        s.add(KeyValues(title="Limits the advice applied", rows=tuple(fmt.flatten(limits))))
    n = n_records if n_records is not None else len(records)
    s.add(AttachmentNote(filename=raw_filename, n_records=n, sha256=raw_sha256))
    return s
