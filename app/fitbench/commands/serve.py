"""`fitbench serve`: llama.cpp's llama-server with a given deployment, until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from fitbench.commands._common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE

HELP = "start llama-server (continuous batching) with a deployment; stop it with Ctrl-C"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "llama-server comes from $FITBENCH_LLAMA_SERVER, else PATH, else the cached build of "
        "scripts/build-llama-server. Arguments after -- go to llama-server unchanged. "
        "Then measure it: fitbench load --url http://127.0.0.1:PORT"
    )
    add = parser.add_argument
    add("-m", "--model", required=True, metavar="ID|PATH", help="catalog id or a GGUF path")
    add("--quant", default=None, help="quantization for catalog ids (default: the model's)")
    add("-ngl", "--n-gpu-layers", dest="ngl", type=int, default=None, help="layers on the GPU")
    add("-ncmoe", "--n-cpu-moe", dest="ncmoe", type=int, default=None, help="experts kept on CPU")
    add("-c", "--ctx-size", dest="ctx", type=int, default=None, help="context, shared by slots")
    add("-np", "--parallel", type=int, default=None, help="server slots (concurrent sequences)")
    add("-fa", "--flash-attn", dest="fa", choices=("on", "off", "auto"), default=None)
    add("-t", "--threads", type=int, default=None)
    add(
        "--repack",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="weight repacking for the CPU (llama.cpp's default on); --no-repack where "
        "llama.cpp's AMX kernels crash",
    )
    add("--host", default="127.0.0.1")
    add("--port", type=int, default=8080)
    add("--log", type=Path, default=None, metavar="FILE", help="server log (default: log dir)")
    add("--ready-timeout", type=float, default=600.0, metavar="SECONDS")
    add("server_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from fitbench.core import paths
    from fitbench.core.bench.models import ModelSpecError, resolve
    from fitbench.core.hardware.detect import detect
    from fitbench.core.model.catalog import CatalogError
    from fitbench.core.serve.records import (
        deployment_of,
        register_deployment,
        unregister_deployment,
    )
    from fitbench.core.serve.server import LlamaServer, ServeOptions, ServerError, find_llama_server

    binary = find_llama_server()
    if binary is None:
        print(
            "fitbench serve: no llama-server: set $FITBENCH_LLAMA_SERVER, put llama-server on "
            "PATH, or build it with scripts/build-llama-server",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    try:
        model = resolve(args.model, args.quant)
    except (ModelSpecError, CatalogError, ValueError) as exc:
        print(f"fitbench serve: {exc}", file=sys.stderr)
        return EXIT_USAGE
    extra = [a for a in args.server_args if a != "--"]
    options = ServeOptions(
        model_path=model.path,
        host=args.host,
        port=args.port,
        n_gpu_layers=args.ngl,
        n_cpu_moe=args.ncmoe,
        ctx_size=args.ctx,
        parallel=args.parallel,
        flash_attn=args.fa,
        threads=args.threads,
        repack=args.repack,
        extra=extra,
    )
    log_path = args.log or paths.log_dir() / f"llama-server-{time.strftime('%Y%m%d-%H%M%S')}.log"
    server = LlamaServer(binary.path, options, log_path)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        print(f"llama-server: {binary.describe()}", file=sys.stderr)
        print(f"model: {model.path} ({model.source}); log: {log_path}", file=sys.stderr)
        server.start()
        server.wait_ready(args.ready_timeout)
        # `fitbench load` on this port labels its levels with this deployment
        register_deployment(
            args.port,
            deployment_of(
                options,
                model_id=model.model_id,
                quant=model.quant,
                source=model.source,
                n_layer=model.n_layer_model,
                hardware_fingerprint=detect(probe_bandwidth=False, llama=False).fingerprint,
            ),
        )
        print(f"ready: {server.base_url} (Ctrl-C stops it)", flush=True)
        assert server.process is not None
        exit_code = server.process.wait()
        print(f"llama-server exited with {exit_code}:\n{server.log_tail()}", file=sys.stderr)
        return EXIT_FAILURE
    except ServerError as exc:
        print(f"fitbench serve: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        stopped = server.stop()
        print(f"stopped llama-server (exit {stopped})", file=sys.stderr)
        return EXIT_OK
    finally:
        server.stop()
        unregister_deployment(args.port)
        signal.signal(signal.SIGTERM, previous)
