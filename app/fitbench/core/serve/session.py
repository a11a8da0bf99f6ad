"""Serve one deployment and measure it under load, start to stop: `fitbench quick --serve` and the
GUI's Serving view.

The server gets a free local port, its levels are stored (records.load_results_path) with the
deployment that produced them, and it is stopped whatever happens (cancel, an error, a level
over its time budget). Bounded: after a level that took longer than max_level_s the higher
levels are skipped (said so in the result), so a slow machine never turns the optional serving
step into an hour.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fitbench.core.serve.client import Endpoint
from fitbench.core.serve.loadgen import LoadConfig, run_load
from fitbench.core.serve.records import deployment_of, level_context, load_results_path
from fitbench.core.serve.server import (
    LlamaServer,
    ServeOptions,
    ServerCancelled,
    ServerError,
    find_llama_server,
)

QUICK_LEVELS = (1, 2, 4, 8)
QUICK_LOAD = LoadConfig(
    concurrency=QUICK_LEVELS,
    requests=4,
    requests_per_user=2,
    prompt_tokens=128,
    max_tokens=32,
    timeout_s=120.0,
)


class Cancelled(Exception):
    pass


@dataclass(frozen=True)
class ServeTarget:
    """What to serve: a file FitBench knows (catalog id, quant, real or twin) and a placement."""

    model_path: Path
    model_id: str
    quant: str
    source: str  # real | twin
    n_layer: int
    n_gpu_layers: int = 0
    n_cpu_moe: int = 0
    threads: int | None = None
    repack: bool | None = None  # False where the sweep found llama.cpp's AMX kernels crash


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_and_load(
    target: ServeTarget,
    config: LoadConfig = QUICK_LOAD,
    *,
    log_path: Path,
    hardware_fingerprint: str = "",
    out_jsonl: Path | None = None,
    on_level: Callable[[dict[str, Any]], None] | None = None,
    on_partial: Callable[[dict[str, Any]], None] | None = None,
    on_status: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
    max_level_s: float = 120.0,
    ready_timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Start llama-server with target's deployment, run the load levels, stop it. Returns
    {"deployment", "levels", "skipped", "server"}; raises ServerError (no binary, it did not
    start) and Cancelled."""
    binary = find_llama_server()
    if binary is None:
        raise ServerError("no llama-server: `make run` or scripts/build-llama-server builds it")
    slots = max(config.concurrency)
    options = ServeOptions(
        model_path=target.model_path,
        port=free_port(),
        n_gpu_layers=target.n_gpu_layers,
        n_cpu_moe=target.n_cpu_moe or None,
        # each slot holds one request: its prompt, its output and llama-server's chat template
        ctx_size=slots * (config.prompt_tokens + config.max_tokens + 128),
        parallel=slots,
        threads=target.threads,
        repack=target.repack,
    )
    deployment = deployment_of(
        options,
        model_id=target.model_id,
        quant=target.quant,
        source=target.source,
        n_layer=target.n_layer,
        hardware_fingerprint=hardware_fingerprint,
    )
    say = on_status or (lambda _text: None)
    outs: list[Path] = [load_results_path(), *([out_jsonl] if out_jsonl else [])]
    levels: list[dict[str, Any]] = []
    skipped: list[int] = []
    with LlamaServer(binary.path, options, log_path) as server:
        say(f"starting llama-server ({binary.source}) on port {options.port}")
        try:
            server.wait_ready(ready_timeout_s, cancel.is_set if cancel is not None else None)
        except ServerCancelled:
            raise Cancelled from None
        endpoint = Endpoint(server.base_url)
        for i, concurrency in enumerate(config.concurrency):
            if cancel is not None and cancel.is_set():
                raise Cancelled
            say(f"load: {concurrency} users")
            started = time.monotonic()
            one = replace(config, concurrency=(concurrency,))
            result = _run(endpoint, one, outs, deployment, cancel, on_partial)
            levels += result["levels"]
            if on_level is not None:
                on_level(result["levels"][0])
            if time.monotonic() - started > max_level_s:
                skipped = list(config.concurrency[i + 1 :])
                break
    return {"deployment": deployment, "levels": levels, "skipped": skipped, "server": str(binary)}


def _run(
    endpoint: Endpoint,
    config: LoadConfig,
    outs: Sequence[Path],
    deployment: dict[str, Any],
    cancel: threading.Event | None,
    on_partial: Callable[[dict[str, Any]], None] | None,
) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        task = asyncio.create_task(
            run_load(
                endpoint,
                config,
                out_jsonl=outs,
                on_partial=on_partial,
                context=level_context(deployment),
            )
        )
        while not task.done():
            if cancel is not None and cancel.is_set():
                task.cancel()
                raise Cancelled
            await asyncio.wait({task}, timeout=0.1)
        return task.result()

    return asyncio.run(main())
