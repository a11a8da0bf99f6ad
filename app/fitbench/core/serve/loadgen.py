"""The load generator: concurrency levels of streamed requests, closed-loop or Poisson arrivals.

Closed loop (the default): C workers, each sending its next request as soon as its last one ends,
until --requests have been sent; C is the number of users. Poisson: requests arrive at --rate per
second with exponential gaps (seeded, so two runs send the same schedule), at most C in flight.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx2

from fitbench.core.serve.client import Endpoint, stream_request
from fitbench.core.serve.prompt import prompt_text, run_tag
from fitbench.core.serve.stats import ClientOverhead, RequestResult, level_summary

_LAG_TICK_S = 0.005
PARTIAL_EVERY_S = 0.5


@dataclass(frozen=True)
class LoadConfig:
    concurrency: tuple[int, ...] = (1, 4, 16)
    requests: int = 32  # per level
    requests_per_user: int = 0  # > 0: a level sends max(requests, this x its concurrency)
    prompt_tokens: int = 128
    max_tokens: int = 64
    arrival: str = "closed"  # closed | poisson
    rate: float = 0.0  # requests per second, poisson only
    timeout_s: float = 60.0  # no byte for this long: the request counts as a timeout
    seed: int = 0
    # closed loop: user u of C sends its first request u/C of the ramp after the level starts, so
    # that users are spread over a request's cycle as real users are, not in lockstep (same
    # prompt and answer lengths would keep them in lockstep: every prompt would queue behind all
    # the others at once). None: the previous level's median end-to-end time; 0: all at once.
    ramp_s: float | None = None


@dataclass(frozen=True)
class PromptPlan:
    n_words: int
    method: str  # how prompt_tokens was met: "approx: 1 word ~ 1 token" or "/tokenize"
    measured_tokens: int | None = None
    tag: str = ""  # this run's prompt tag (prompt.run_tag)
    first_index: int = 0  # the request index a level starts at: no two levels share a prompt


def _client(endpoint: Endpoint, config: LoadConfig, concurrency: int) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(
        timeout=httpx2.Timeout(config.timeout_s, connect=min(config.timeout_s, 10.0)),
        limits=httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        trust_env=False,  # a proxy from the environment would measure the proxy
    )


async def calibrate_prompt(endpoint: Endpoint, prompt_tokens: int, tag: str = "") -> PromptPlan:
    """Word count for about prompt_tokens tokens (the run's tag included): measured with
    llama-server's /tokenize when the server has it, else the one-word-one-token approximation
    (the tag then counts as one word)."""
    approx = PromptPlan(max(1, prompt_tokens - (1 if tag else 0)), "approx: 1 word ~ 1 token",
                        tag=tag)  # fmt: skip
    if prompt_tokens <= 0:
        return approx
    base = endpoint.url().split("/v1/")[0]
    async with httpx2.AsyncClient(timeout=10.0, trust_env=False) as client:

        async def count(n_words: int) -> int | None:
            try:
                response = await client.post(
                    base + "/tokenize",
                    json={"content": prompt_text(n_words, 100, tag)},
                    headers=endpoint.headers(),
                )
                tokens = response.json().get("tokens") if response.status_code == 200 else None
            except (httpx2.HTTPError, ValueError, AttributeError):
                return None
            return len(tokens) if isinstance(tokens, list) else None

        measured = await count(prompt_tokens)
        if not measured:
            return approx
        # tokens = fixed (template, the tag) + per_word x words: fitted on two counts
        half = max(1, prompt_tokens // 2)
        other = await count(half) if half != prompt_tokens else None
        if other is not None and measured > other:
            per_word = (measured - other) / (prompt_tokens - half)
            fixed = measured - per_word * prompt_tokens
        else:
            per_word, fixed = measured / prompt_tokens, 0.0
        n_words = max(1, round((prompt_tokens - fixed) / per_word))
        measured = await count(n_words) or measured
        for _ in range(2):  # words differ in length: correct on the count of this very prompt
            step = round((prompt_tokens - measured) / per_word)
            if step == 0:
                break
            n_words = max(1, n_words + step)
            measured = await count(n_words) or measured
        return PromptPlan(n_words, "/tokenize", measured, tag=tag)


async def discover_model(endpoint: Endpoint) -> str:
    """The first model the server lists at /v1/models; "" when it lists none or has no such route
    (vLLM and SGLang need the name in every request, llama-server does not)."""
    base = endpoint.url().split("/v1/")[0]
    try:
        async with httpx2.AsyncClient(timeout=10.0, trust_env=False) as client:
            response = await client.get(base + "/v1/models", headers=endpoint.headers())
            data = response.json().get("data") if response.status_code == 200 else None
    except (httpx2.HTTPError, ValueError, AttributeError):
        return ""
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return str(data[0].get("id", ""))
    return ""


async def _watch_loop_lag(samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(_LAG_TICK_S)
        samples.append(max(0.0, time.perf_counter() - before - _LAG_TICK_S))


async def run_level(
    endpoint: Endpoint,
    config: LoadConfig,
    concurrency: int,
    plan: PromptPlan,
    on_partial: Callable[[dict[str, Any]], None] | None = None,
    ramp_s: float = 0.0,
) -> dict[str, Any]:
    """One concurrency level; the summary dict of stats.level_summary. on_partial gets the
    summary of the requests finished so far (at most every PARTIAL_EVERY_S), for live views.
    ramp_s: closed loop only, user u starts u/C x ramp_s after the first (LoadConfig.ramp_s)."""
    overhead = ClientOverhead()
    first_start: list[float] = []  # per user: its first request issued
    last_end: list[float] = []  # per user: its last request answered
    n_requests = level_requests(config, concurrency)
    results: list[RequestResult] = []
    next_index = 0
    stop = asyncio.Event()
    lag_task = asyncio.create_task(_watch_loop_lag(overhead.loop_lag_s, stop))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    last_partial = 0.0
    async with _client(endpoint, config, concurrency) as client:

        async def one(index: int) -> None:
            nonlocal last_partial
            prompt = prompt_text(plan.n_words, plan.first_index + index, plan.tag)
            results.append(
                await stream_request(client, endpoint, prompt, config.max_tokens, overhead)
            )
            now = time.perf_counter()
            if on_partial is not None and now - last_partial >= PARTIAL_EVERY_S:
                last_partial = now
                on_partial(level_summary(concurrency, results, now - wall0, ClientOverhead()))

        if config.arrival == "poisson":
            rng = random.Random(config.seed)
            slots = asyncio.Semaphore(concurrency)
            tasks: list[asyncio.Task[None]] = []

            async def gated(index: int) -> None:
                async with slots:
                    await one(index)

            for index in range(n_requests):
                if index:
                    await asyncio.sleep(rng.expovariate(config.rate))
                tasks.append(asyncio.create_task(gated(index)))
            await asyncio.gather(*tasks)
        else:

            async def worker(user: int) -> None:
                nonlocal next_index
                if ramp_s > 0 and user:
                    await asyncio.sleep(ramp_s * user / concurrency)
                started = False
                while next_index < n_requests:
                    index, next_index = next_index, next_index + 1
                    if not started:
                        first_start.append(time.perf_counter())
                        started = True
                    await one(index)
                if started:
                    last_end.append(time.perf_counter())

            await asyncio.gather(*(worker(u) for u in range(concurrency)))
    overhead.wall_s = time.perf_counter() - wall0
    overhead.cpu_s = time.process_time() - cpu0
    stop.set()
    await lag_task
    window = None
    if len(first_start) == concurrency and len(last_end) == concurrency:
        window = (max(first_start), min(last_end))
    return level_summary(
        concurrency, results, overhead.wall_s, overhead, window, ramp_s if first_start else 0.0
    )


async def run_load(
    endpoint: Endpoint,
    config: LoadConfig,
    *,
    out_jsonl: Path | Sequence[Path] | None = None,
    on_level: Callable[[dict[str, Any]], None] | None = None,
    on_partial: Callable[[dict[str, Any]], None] | None = None,
    context: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every level in turn; each level is appended to out_jsonl (one path or several; with the
    run's context) and passed to on_level as soon as it finishes, so an interrupted sweep keeps
    what it measured."""
    if not endpoint.model:
        found = await discover_model(endpoint)
        if found:
            endpoint = Endpoint(
                endpoint.base_url, endpoint.kind, found, endpoint.api_key, endpoint.ignore_eos
            )
    outs = [out_jsonl] if isinstance(out_jsonl, Path) else list(out_jsonl or ())
    for path in outs:
        path.parent.mkdir(parents=True, exist_ok=True)
    plan = await calibrate_prompt(endpoint, config.prompt_tokens, run_tag())
    run_context = describe_run(endpoint, config, plan) | (context or {})
    levels: list[dict[str, Any]] = []
    previous_e2e_s = 0.0
    for concurrency in config.concurrency:
        ramp = previous_e2e_s if config.ramp_s is None else config.ramp_s
        level = await run_level(endpoint, config, concurrency, plan, on_partial, ramp)
        previous_e2e_s = float((level.get("e2e_ms") or {}).get("p50") or 0.0) / 1e3
        plan = replace(plan, first_index=plan.first_index + level_requests(config, concurrency))
        levels.append(level)
        for path in outs:
            with path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(run_context | {"level": level}) + "\n")
        if on_level is not None:
            on_level(level)
    return {"levels": levels} | run_context


def level_requests(config: LoadConfig, concurrency: int) -> int:
    """Requests sent at one level: enough that each user sends several when asked, so the p99
    of a high level rests on more than one request per user."""
    return max(config.requests, config.requests_per_user * concurrency)


def describe_run(endpoint: Endpoint, config: LoadConfig, plan: PromptPlan) -> dict[str, Any]:
    """What was measured and how; never the API key."""
    return {
        "url": endpoint.url(),
        "model": endpoint.model,
        "endpoint": endpoint.kind,
        "arrival": config.arrival,
        "rate": config.rate if config.arrival == "poisson" else None,
        "requests_per_level": config.requests,
        "requests_per_user": config.requests_per_user or None,
        "prompt_tokens": config.prompt_tokens,
        "prompt_words": plan.n_words,
        "prompt_tokens_method": plan.method,
        "prompt_tokens_measured": plan.measured_tokens,
        "max_tokens": config.max_tokens,
        "ignore_eos": endpoint.ignore_eos,
        "timeout_s": config.timeout_s,
        "ramp": (
            "previous level's median end-to-end time"
            if config.ramp_s is None
            else f"{config.ramp_s:g} s"
        )
        if config.arrival == "closed"
        else None,
        "authenticated": bool(endpoint.api_key),
        "client": f"httpx2 {httpx2.__version__}, asyncio",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def parse_levels(text: str) -> tuple[int, ...]:
    """ "1,4,16" -> (1, 4, 16); a clear ValueError for anything else."""
    try:
        levels = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(
            f"--concurrency: {text!r} is not a comma-separated list of integers"
        ) from None
    if not levels or any(c < 1 for c in levels):
        raise ValueError("--concurrency: give one or more levels >= 1, e.g. 1,4,16")
    return levels


def validate(config: LoadConfig) -> None:
    if config.requests < 1:
        raise ValueError("--requests must be >= 1")
    if config.requests_per_user < 0:
        raise ValueError("--requests-per-user must be >= 0")
    if config.max_tokens < 1:
        raise ValueError("--max-tokens must be >= 1")
    if config.prompt_tokens < 0:
        raise ValueError("--prompt-tokens must be >= 0")
    if config.timeout_s <= 0:
        raise ValueError("--timeout must be > 0")
    if config.ramp_s is not None and config.ramp_s < 0:
        raise ValueError("--ramp-s must be >= 0 (0: every user starts at once)")
    if config.arrival not in ("closed", "poisson"):
        raise ValueError("--arrival is closed or poisson")
    if config.arrival == "poisson" and config.rate <= 0:
        raise ValueError("--arrival poisson needs --rate R > 0 (requests per second)")
