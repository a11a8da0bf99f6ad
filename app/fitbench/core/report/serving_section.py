"""The section "Serving N users on this machine": `fitbench load` levels of the deployments
FitBench served here (quick --serve, or serve + load), per model: TTFT and ITL curves against
the number of users, and the largest number of users that meets the latency goal.

Every number here is measured through llama-server (measured-real / measured-twin, by the file
it served); nothing is predicted. No levels for this machine: no section.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from matplotlib.axes import Axes

from fitbench.core.report.configs import Names
from fitbench.core.report.figures import (
    Figure,
    Series,
    _legend,
    _new,
    _plot_series,
    _png,
    _style_axes,
)
from fitbench.core.report.model import Basis, Bullets, Paragraph, Section, Table
from fitbench.core.serve.records import levels_for_machine
from fitbench.core.twin.fidelity import served_fidelity

DEFAULT_ITL_P95_MAX_MS = 200.0
DEFAULT_TTFT_P99_MAX_MS = 5000.0


def latest_runs(lines: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Per model, the levels of its newest load run (one line per level, newest run wins)."""
    runs: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
    for line in lines:
        model = str((line.get("deployment") or {}).get("model_id"))
        runs.setdefault(model, {}).setdefault(str(line.get("started")), []).append(line)
    out = {}
    for model, by_start in runs.items():
        newest = max(by_start)
        by_level = {int(ln["level"]["concurrency"]): ln for ln in by_start[newest]}
        out[model] = [by_level[c] for c in sorted(by_level)]
    return out


def _meets(level: Mapping[str, Any], itl_max: float, ttft_max: float) -> bool:
    itl, ttft = level["itl_ms"].get("p95"), level["ttft_ms"].get("p99")
    return (
        bool(level.get("ok"))
        and not level.get("failed")
        and itl is not None
        and (ttft is not None and itl <= itl_max and ttft <= ttft_max)
    )


def users_within(lines: Sequence[Mapping[str, Any]], itl_max: float, ttft_max: float) -> int:
    """The largest level that, with every smaller one, meets both limits with no failures."""
    users = 0
    for line in lines:
        if not _meets(line["level"], itl_max, ttft_max):
            break
        users = int(line["level"]["concurrency"])
    return users


def _basis(line: Mapping[str, Any]) -> Basis:
    value = str(line.get("basis"))
    return cast(Basis, value) if value in ("measured-real", "measured-twin") else "measured-twin"


def _curve_figure(
    runs: Mapping[str, Sequence[Mapping[str, Any]]], names: Names, key: str, pct: str, what: str
) -> Figure:
    series = []
    for group, (model, lines) in enumerate(runs.items()):
        pts = [
            (float(ln["level"]["concurrency"]), float(ln["level"][key][pct]))
            for ln in lines
            if ln["level"][key].get(pct) is not None
        ]
        if pts:
            xs, ys = zip(*pts, strict=True)
            series.append(Series(names.name(model), xs, ys, _basis(lines[0]), group))
    fig = _new()
    ax: Axes = fig.add_subplot()
    _plot_series(ax, series)
    ax.set_xscale("log", base=2)
    xs_all = sorted({x for s in series for x in s.x})
    if xs_all:
        ax.set_xticks(xs_all, [f"{x:g}" for x in xs_all])
    ax.set_xlabel("concurrent users (closed loop, log scale)", fontsize=8.5)
    ax.set_ylabel(f"{what} {pct} (ms)", fontsize=8.5)
    title = f"{what} ({pct}) vs concurrent users, llama-server"
    ax.set_title(title, fontsize=10, fontweight="bold")
    _style_axes(ax)
    _legend(ax)
    alt = "; ".join(
        f"{s.label}: "
        + ", ".join(f"{x:g} users -> {y:.0f} ms" for x, y in zip(s.x, s.y, strict=True))
        for s in series
    )
    caption = f"Measured with fitbench load against llama-server; every point is measured ({what})."
    return _png(fig, title, caption, alt)


def serving_section(
    fingerprint: str, names: Names, advice: Mapping[str, Any] | None = None
) -> list[Section]:
    """[] when nothing was served on this machine; else the one section."""
    runs = latest_runs(levels_for_machine(fingerprint))
    if not runs:
        return []
    limits = (advice or {}).get("limits") or {}
    itl_max = float(limits.get("itl_p95_max_ms") or DEFAULT_ITL_P95_MAX_MS)
    ttft_max = float(limits.get("ttft_p99_max_ms") or DEFAULT_TTFT_P99_MAX_MS)
    served = {model: users_within(lines, itl_max, ttft_max) for model, lines in runs.items()}
    best = max(served.values())
    s = Section(f"Serving {best} users on this machine")
    s.blocks.append(
        Paragraph(
            f"The latency goal: p95 inter-token latency <= {itl_max:g} ms and p99 time to first "
            f"token <= {ttft_max:g} ms, with no failed request. Each model was served by "
            "llama-server (continuous batching, one slot per user) and measured with fitbench "
            "load: users send their next request as soon as the last one ends."
        )
    )
    s.blocks.append(
        Bullets(
            tuple(
                f"{names.name(model)}: {served[model]} users meet the goal"
                + _deployment_words(runs[model][0])
                for model in runs
            )
        )
    )
    rows = []
    for model, lines in runs.items():
        for ln in lines:
            lv = ln["level"]
            rows.append(
                (
                    names.name(model),
                    str(lv["concurrency"]),
                    f"{lv['ok']}/{lv['ok'] + lv['failed']}",
                    _ms(lv["ttft_ms"], "p50") + " / " + _ms(lv["ttft_ms"], "p99"),
                    _ms(lv["itl_ms"], "p50") + " / " + _ms(lv["itl_ms"], "p95"),
                    f"{lv.get('output_tokens_per_s') or 0:.1f}",
                    _basis_cell(ln, names, model),
                )
            )
    s.blocks.append(
        Table(
            title="Latency and throughput per number of users",
            headers=(
                "Model",
                "Users",
                "OK",
                "TTFT p50 / p99 ms",
                "ITL p50 / p95 ms",
                "tok/s",
                "Basis",
            ),
            rows=tuple(rows),
            numeric=(False, True, True, True, True, True, False),
            note=_workload_note(next(iter(runs.values()))[0]),
        )
    )
    s.blocks.append(_curve_figure(runs, names, "ttft_ms", "p99", "time to first token"))
    s.blocks.append(_curve_figure(runs, names, "itl_ms", "p95", "inter-token latency"))
    return [s]


def _ms(summary: Mapping[str, Any], key: str) -> str:
    value = summary.get(key)
    return "-" if value is None else f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _basis_cell(line: Mapping[str, Any], names: Names, model: str) -> str:
    """measured-real, or measured-twin with the range the real file falls in (twin/fidelity)."""
    basis = str(line.get("basis"))
    fid = served_fidelity(
        line.get("deployment") or {},
        int(line["level"]["concurrency"]),
        architecture=names.architecture.get(model, ""),
        moe=names.is_moe(model),
    )
    return basis if fid is None else f"{basis}, {fid.short}"


def _deployment_words(line: Mapping[str, Any]) -> str:
    dep = line.get("deployment") or {}
    words = dep.get("placement_words") or ""
    return f" ({dep.get('quant', '')}, {words}, {line.get('basis')})" if words else ""


def _workload_note(line: Mapping[str, Any]) -> str:
    return (
        f"Prompts of {line.get('prompt_tokens')} tokens ({line.get('prompt_tokens_method')}), "
        f"{line.get('max_tokens')} output tokens per request; client: {line.get('client')}."
    )
