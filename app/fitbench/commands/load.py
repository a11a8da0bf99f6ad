"""`fitbench load`: TTFT, inter-token and end-to-end latency percentiles per concurrency level,
from any OpenAI-compatible streaming endpoint (llama-server, vLLM, TGI, SGLang, Ollama)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from fitbench.commands._common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, print_json

HELP = "load-test an OpenAI-compatible server: TTFT/ITL/e2e percentiles per concurrency level"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Each level's numbers come from every token's arrival time. Failed requests (HTTP "
        "errors, timeouts, broken streams) are counted, never fatal. The client's own overhead "
        "(chunk handling time, event-loop lag, CPU share) is reported with each level."
    )
    add = parser.add_argument
    add("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    add(
        "--model",
        default="",
        help="model name sent with each request (default: the server's first)",
    )
    add(
        "--api-key-env",
        default=None,
        metavar="VAR",
        help="read the API key from this environment variable (never printed nor stored)",
    )
    add("--endpoint", choices=("chat", "completions"), default="chat", help="default chat")
    add("--concurrency", default="1,4,16", metavar="LIST", help="levels, e.g. 1,4,16 (default)")
    add("--requests", type=int, default=32, metavar="N", help="requests per level (default 32)")
    add(
        "--requests-per-user",
        type=int,
        default=0,
        metavar="K",
        help="a level sends at least K x its concurrency requests (default: --requests only)",
    )
    add("--prompt-tokens", type=int, default=128, metavar="P", help="prompt length (default 128)")
    add("--max-tokens", type=int, default=64, metavar="T", help="tokens to generate (default 64)")
    add("--arrival", choices=("closed", "poisson"), default="closed", help="default closed")
    add("--rate", type=float, default=0.0, metavar="R", help="poisson: requests per second")
    add(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="a request with no data for this long is a timeout (default 60)",
    )
    add(
        "--ignore-eos",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="ask for exactly --max-tokens tokens (default on; off for strict OpenAI servers)",
    )
    add(
        "--ramp-s",
        type=float,
        default=None,
        metavar="SECONDS",
        help="closed loop: spread the users' first requests over this many seconds, as real "
        "users are spread (default: the previous level's median end-to-end time; 0: all at once)",
    )
    add("--seed", type=int, default=0, help="seed of the Poisson arrival schedule")
    add("--out", type=Path, default=None, metavar="F.jsonl", help="append one record per level")
    add(
        "--no-store",
        action="store_true",
        help="do not keep the levels in FitBench's load store (read by recommend and the report)",
    )
    add("--json", action="store_true", help="machine-readable output")


def _fmt(summary: dict[str, float | None]) -> str:
    parts = [f"{v:.1f}" if v is not None else "-" for v in summary.values()]
    return "/".join(parts)


def format_level(level: dict[str, Any]) -> str:
    rps = level["requests_per_s"]
    tps = level["output_tokens_per_s"]
    lag = level["client_overhead"]["event_loop_lag_ms"]["p99"]
    line = (
        f"C={level['concurrency']:<4} ok {level['ok']:>4} failed {level['failed']:>3}  "
        f"TTFT {_fmt(level['ttft_ms']):>20}  ITL {_fmt(level['itl_ms']):>17}  "
        f"e2e {_fmt(level['e2e_ms']):>23}  {rps or 0:7.2f} req/s {tps or 0:9.1f} tok/s  "
        f"client lag p99 {lag if lag is not None else '-'} ms"
    )
    if level["errors"]:
        line += "  errors " + ", ".join(f"{k} {v}" for k, v in level["errors"].items())
    return line


def run(args: argparse.Namespace) -> int:
    from fitbench.core.model import catalog
    from fitbench.core.serve.client import Endpoint
    from fitbench.core.serve.loadgen import LoadConfig, parse_levels, run_load, validate
    from fitbench.core.serve.records import (
        basis_of,
        deployment_for,
        level_context,
        load_results_path,
    )
    from fitbench.core.twin.fidelity import served_fidelity

    api_key = ""
    if args.api_key_env:
        api_key = os.environ.get(args.api_key_env, "")
        if not api_key:
            print(f"fitbench load: ${args.api_key_env} is not set or empty", file=sys.stderr)
            return EXIT_USAGE
    try:
        config = LoadConfig(
            concurrency=parse_levels(args.concurrency),
            requests=args.requests,
            requests_per_user=args.requests_per_user,
            prompt_tokens=args.prompt_tokens,
            max_tokens=args.max_tokens,
            arrival=args.arrival,
            rate=args.rate,
            timeout_s=args.timeout,
            seed=args.seed,
            ramp_s=args.ramp_s,
        )
        validate(config)
    except ValueError as exc:
        print(f"fitbench load: {exc}", file=sys.stderr)
        return EXIT_USAGE
    endpoint = Endpoint(args.url, args.endpoint, args.model, api_key, args.ignore_eos)
    if not args.json:
        print(
            "per level: TTFT, ITL and e2e as p50/p95/p99 ms; throughput of the ok requests "
            "while every user was active",
            file=sys.stderr,
        )

    # a server `fitbench serve` started here: its deployment labels every level (the advice needs
    # to know which model and placement a level measured, and a twin's numbers carry its band)
    deployment = deployment_for(args.url)

    def show(level: dict[str, Any]) -> None:
        if args.json:
            return
        fid = None
        if deployment:
            users = int(level.get("concurrency") or 1)
            fid = served_fidelity(deployment, users, catalog.load_once_or_none())
        print(format_level(level) + (f"  [twin: {fid.short}]" if fid else ""), flush=True)

    outs = [p for p in (args.out, None if args.no_store else load_results_path()) if p]
    if deployment and not args.json:
        print(
            f"deployment: {deployment.get('model_id')} {deployment.get('quant')}, "
            f"{deployment.get('placement_words', '')}, {deployment.get('parallel')} slots, "
            + (
                "measured on a twin (its band on each level)"
                if basis_of(deployment) == "measured-twin"
                else "the real file"
            ),
            file=sys.stderr,
        )
    try:
        result = asyncio.run(
            run_load(
                endpoint,
                config,
                out_jsonl=outs,
                on_level=show,
                context=level_context(deployment),
            )
        )
    except KeyboardInterrupt:
        print("cancelled; finished levels are in --out if given", file=sys.stderr)
        return 130
    except OSError as exc:  # --out not writable
        print(f"fitbench load: {endpoint.redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        print_json(result)
    elif args.out is not None:
        print(f"levels appended to {args.out}", file=sys.stderr)
    any_ok = any(level["ok"] for level in result["levels"])
    return EXIT_OK if any_ok else EXIT_FAILURE
