"""A report summarises: tables, figures and lists are capped, the raw results hold the rest.

A results file of 100k records would otherwise make a 2,000-page PDF that takes minutes to lay
out. Each per-configuration table shows the MAX_ROWS most relevant configurations (the advice's
choice and alternatives, then the fastest measured, then the most recent) in their usual order,
with a note saying how many more the attached JSONL holds; figures draw at most MAX_SERIES lines
and MAX_POINTS points; a cell lists at most MAX_LISTED distinct values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fitbench.core.report.configs import Config

MAX_ROWS = 40
MAX_SERIES = 8
MAX_POINTS = 2000
MAX_LISTED = 12

T = TypeVar("T")


def _advised(advice: dict[str, Any] | None) -> list[tuple[str, str, int, int]]:
    """(model, quant, n_gpu_layers, n_cpu_moe) of the advice's choice, then its alternatives."""
    out = []
    for c in [(advice or {}).get("choice"), *((advice or {}).get("alternatives") or [])]:
        if isinstance(c, dict):
            p = c.get("placement") or {}
            out.append(
                (
                    str(c.get("model_id")),
                    str(c.get("quant")),
                    int(p.get("n_gpu_layers") or 0),
                    int(p.get("n_cpu_moe") or 0),
                )
            )
    return out


def _latest(c: Config) -> str:
    return max((str(r.get("test_time") or "") for r in c.records), default="")


def by_relevance(configs: Sequence[Config], advice: dict[str, Any] | None) -> list[Config]:
    """Most relevant first: what the advice chose or weighed, then the fastest generation, then
    the fastest prompt processing, then the most recently measured."""
    advised = _advised(advice)

    def rank(c: Config) -> tuple[Any, ...]:
        key = (c.model_id, c.quant, c.n_gpu_layers, c.n_cpu_moe)
        place = advised.index(key) if key in advised else len(advised)
        return (place, -(c.ts("tg") or 0.0), -(c.ts("pp") or 0.0))

    recent_first = sorted(configs, key=_latest, reverse=True)
    return sorted(recent_first, key=rank)  # stable: ties stay most recent first


def most_relevant(
    configs: Sequence[Config],
    advice: dict[str, Any] | None,
    most: int = MAX_ROWS,
    keep: Callable[[Config], bool] | None = None,
) -> tuple[list[Config], int]:
    """The `most` most relevant configurations (of those `keep` accepts) in their original order,
    and how many were left out."""
    pool = [c for c in configs if keep is None or keep(c)]
    if len(pool) <= most:
        return pool, 0
    chosen = {id(c) for c in by_relevance(pool, advice)[:most]}
    return [c for c in pool if id(c) in chosen], len(pool) - most


def more_note(hidden: int, shown: int, what: str = "configurations") -> str:
    if not hidden:
        return ""
    return (
        f"The {shown} most relevant of {shown + hidden} {what} (the advice's choice and "
        f"alternatives, then the fastest); the other {hidden} are in the attached raw results."
    )


def listed(values: Sequence[str], most: int = MAX_LISTED, sep: str = ", ") -> str:
    """The values joined, at most `most` of them, then 'and N more'."""
    if len(values) <= most:
        return sep.join(values)
    return f"{sep.join(values[:most])}{sep}and {len(values) - most} more"


def thin(items: Sequence[T], most: int = MAX_POINTS) -> list[T]:
    """At most `most` items, evenly spread over the sequence (first and last kept)."""
    n = len(items)
    if n <= most:
        return list(items)
    step = (n - 1) / (most - 1)
    return [items[round(i * step)] for i in range(most)]
