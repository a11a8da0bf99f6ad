"""Per-level statistics of a load run: latency percentiles, counts and rates."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

PERCENTILES = (50, 95, 99)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def summary_ms(seconds: Sequence[float]) -> dict[str, float | None]:
    """{"p50", "p95", "p99"} in milliseconds, rounded to microseconds."""
    out: dict[str, float | None] = {}
    for q in PERCENTILES:
        value = percentile(seconds, q)
        out[f"p{q}"] = None if value is None else round(value * 1000.0, 3)
    return out


@dataclass
class RequestResult:
    """One request: times are time.perf_counter() seconds; token_times are arrival times of the
    stream chunks that carried output text (one token each on llama-server)."""

    start: float  # the request was issued
    sent: float = 0.0  # its headers started going out (0: never sent)
    end: float = 0.0
    token_times: list[float] = field(default_factory=list)
    output_tokens: int = 0  # the server's usage count when it sends one, else len(token_times)
    error: str = ""  # "" when ok; else a kind: http_<status>, timeout, broken_stream, connect, ...
    detail: str = ""  # a short, secret-free description of the error

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def origin(self) -> float:
        return self.sent or self.start

    @property
    def ttft(self) -> float | None:
        return self.token_times[0] - self.origin if self.token_times else None

    @property
    def itls(self) -> list[float]:
        t = self.token_times
        return [b - a for a, b in itertools.pairwise(t)]


@dataclass
class ClientOverhead:
    """What the load generator itself cost: if these approach the latencies it reports, the
    numbers describe the client, not the server."""

    chunk_handling_s: list[float] = field(default_factory=list)  # receipt -> parsed and recorded
    loop_lag_s: list[float] = field(default_factory=list)  # event-loop wake-up delays
    send_delay_s: list[float] = field(default_factory=list)  # issued -> headers going out
    stale_retries: int = 0  # requests sent again: their kept-alive connection had been closed
    cpu_s: float = 0.0  # this process's CPU time during the level
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        handling = self.chunk_handling_s
        lag = self.loop_lag_s
        return {
            "chunk_handling_us": {
                "mean": round(sum(handling) / len(handling) * 1e6, 2) if handling else None,
                "p99": _round(percentile(handling, 99), 1e6),
            },
            "event_loop_lag_ms": {
                "p50": _round(percentile(lag, 50), 1e3),
                "p99": _round(percentile(lag, 99), 1e3),
                "max": _round(max(lag) if lag else None, 1e3),
            },
            "send_delay_ms": {
                "p50": _round(percentile(self.send_delay_s, 50), 1e3),
                "p99": _round(percentile(self.send_delay_s, 99), 1e3),
            },
            "cpu_share": round(self.cpu_s / self.wall_s, 3) if self.wall_s > 0 else None,
            "stale_connection_retries": self.stale_retries,
        }


def _round(value: float | None, scale: float) -> float | None:
    return None if value is None else round(value * scale, 3)


# A steady window shorter than this (seconds) is too short to rate: the level's whole-run rate
# stands instead
MIN_STEADY_S = 1.0


def steady_rate(
    results: Sequence[RequestResult], window: tuple[float, float] | None
) -> float | None:
    """Output tokens/s while every user of the level was active (window: from the last user's
    first request to the first user's last answer); None when there is no such window."""
    if window is None:
        return None
    t0, t1 = window
    if t1 - t0 < MIN_STEADY_S:
        return None
    n = sum(1 for r in results if r.ok for t in r.token_times if t0 <= t <= t1)
    return n / (t1 - t0)


def level_summary(
    concurrency: int,
    results: Sequence[RequestResult],
    duration_s: float,
    overhead: ClientOverhead,
    steady_window: tuple[float, float] | None = None,
    ramp_s: float = 0.0,
) -> dict[str, Any]:
    """One level in the shape of `fitbench load --json` (the issue's keys first, then extras).

    output_tokens_per_s is the steady-state rate (every user active) where the level had such a
    window, else tokens over the whole level; output_tokens_per_s_whole is always the latter
    (it includes the users' staggered start and the last requests' tail)."""
    ok = [r for r in results if r.ok]
    ttfts = [t for r in ok if (t := r.ttft) is not None]
    itls = [d for r in ok for d in r.itls]
    e2es = [r.end - r.origin for r in ok]
    out_tokens = sum(r.output_tokens for r in ok)
    errors = Counter(r.error for r in results if not r.ok)
    whole = round(out_tokens / duration_s, 3) if duration_s > 0 else None
    steady = steady_rate(results, steady_window)
    return {
        "concurrency": concurrency,
        "ok": len(ok),
        "failed": len(results) - len(ok),
        "ttft_ms": summary_ms(ttfts),
        "itl_ms": summary_ms(itls),
        "e2e_ms": summary_ms(e2es),
        "requests_per_s": round(len(ok) / duration_s, 4) if duration_s > 0 else None,
        "output_tokens_per_s": round(steady, 3) if steady is not None else whole,
        "output_tokens_per_s_whole": whole,
        "throughput_window": (
            f"steady: all {concurrency} users active for "
            f"{steady_window[1] - steady_window[0]:.1f} s"
            if steady is not None and steady_window is not None
            else "whole level"
        ),
        "ramp_s": round(ramp_s, 3),
        "errors": dict(sorted(errors.items())),
        "error_examples": _examples(results),
        "output_tokens": out_tokens,
        "duration_s": round(duration_s, 4),
        "client_overhead": overhead.to_dict(),
    }


def _examples(results: Sequence[RequestResult], limit: int = 3) -> list[str]:
    seen: dict[str, str] = {}
    for r in results:
        if r.error and r.error not in seen and len(seen) < limit:
            seen[r.error] = f"{r.error}: {r.detail}" if r.detail else r.error
    return list(seen.values())
