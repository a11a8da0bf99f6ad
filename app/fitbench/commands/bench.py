"""`fitbench bench`: llama.cpp benchmarks with llama-bench's flags, plus batch/latency/depth."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from fitbench.commands._common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, print_json
from fitbench.core.bench import config as bench_config
from fitbench.core.bench import events as ev
from fitbench.core.bench.config import (
    DEFAULT_TEST_TIMEOUT_S,
    N_CPU_MOE_ALL,
    BenchConfig,
    ConfigError,
    parse_int_list,
)
from fitbench.core.bench.models import ModelSpecError
from fitbench.core.bench.quick import quick_plan
from fitbench.core.bench.runner import run_sweep
from fitbench.core.hardware import detect as hardware
from fitbench.core.model import catalog
from fitbench.core.model.catalog import Catalog, CatalogError
from fitbench.core.outfile import OutputPathError, check_output
from fitbench.core.predict.full_model import FullModelFigure, full_model_figures, is_scaled
from fitbench.core.results.store import StoreError, open_store
from fitbench.core.twin.fidelity import record_fidelity

HELP = "run llama.cpp benchmarks (llama-bench compatible flags)"

_SOURCE_WORDS = {"real": "real file", "twin": "twin", "scaled-twin": "scaled twin"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (
        "Lists take llama-bench's syntax: 0,8,16 or ranges 0-32+8, 1-64*2. "
        "Each -m, placement and context setting is one model load in its own worker process; "
        "every record goes to the results database at once (and to --out)."
    )
    add = parser.add_argument
    add(
        "-m",
        "--model",
        action="append",
        default=[],
        metavar="ID|PATH",
        help="catalog id (the real file if downloaded, else a twin) or a GGUF path; repeatable",
    )
    add("--quant", default=None, help="quantization for catalog ids (default: the model's default)")
    add(
        "--layers",
        type=int,
        default=None,
        metavar="K",
        help="catalog ids: measure a scaled twin of K blocks instead of the full model",
    )
    add("-p", "--n-prompt", default="512", metavar="LIST", help="prompt tokens (default 512)")
    add("-n", "--n-gen", default="128", metavar="LIST", help="generated tokens (default 128)")
    add(
        "-d",
        "--depth",
        default="0",
        metavar="LIST",
        help="tokens already in the KV cache (default 0)",
    )
    add(
        "--batch",
        default="",
        metavar="LIST",
        help="parallel sequences B for aggregate generation throughput (e.g. 1,2,4,8,16)",
    )
    add(
        "--ttft",
        default="",
        metavar="LIST",
        help="request tests: time to first token for prompts of these lengths, then -n tokens",
    )
    add("-r", "--repetitions", type=int, default=5, help="timed repetitions (default 5)")
    add("-t", "--threads", default="", metavar="LIST", help="threads (default: physical cores)")
    add(
        "-ngl",
        "--ngl",
        "--n-gpu-layers",
        dest="ngl",
        default=None,
        metavar="LIST",
        help="layers on the GPU; -1 = all (default: all with a GPU llama.cpp can use, else 0)",
    )
    add(
        "-ncmoe",
        "--n-cpu-moe",
        dest="ncmoe",
        default="0",
        metavar="LIST",
        help="keep the experts of the first N layers on the CPU; 'all' = every layer",
    )
    add(
        "-fa",
        "--flash-attn",
        dest="fa",
        default="auto",
        metavar="LIST",
        help="flash attention 0, 1 or auto (default auto)",
    )
    add("-ctk", "--cache-type-k", dest="ctk", default="f16", metavar="LIST", help="K cache type")
    add("-ctv", "--cache-type-v", dest="ctv", default="f16", metavar="LIST", help="V cache type")
    add("-b", "--batch-size", type=int, default=2048, help="logical batch size (default 2048)")
    add("-ub", "--ubatch-size", type=int, default=512, help="physical batch size (default 512)")
    add("-mg", "--main-gpu", type=int, default=0)
    add("-sm", "--split-mode", default="layer", choices=("none", "layer", "row", "tensor"))
    add("-ts", "--tensor-split", default="", metavar="A/B/...", help="share of layers per GPU")
    add(
        "--repack",
        type=int,
        choices=(0, 1),
        default=1,
        help="repack weights for the CPU (AMX, ...); 1 as llama-bench",
    )
    add("--mmap", type=int, choices=(0, 1), default=1, help="memory-map the model (default 1)")
    add("--no-warmup", action="store_true", help="skip the warm-up run")
    add(
        "--test-timeout",
        type=float,
        default=DEFAULT_TEST_TIMEOUT_S,
        metavar="SECONDS",
        help="stop a worker that loads or runs one test longer than this and record `timeout` "
        f"(default {DEFAULT_TEST_TIMEOUT_S:.0f}; 0: no limit)",
    )
    add("--out", type=Path, default=None, metavar="FILE", help="also append records as JSONL")
    add(
        "--quick",
        action="store_true",
        help="the one-click sweep: every catalog model, placements that fit, short tests",
    )
    add("--list-runs", action="store_true", help="list the runs in the results database")
    add("--export-run", default=None, metavar="RUN_ID", help="write a stored run to --out as JSONL")
    add("--json", action="store_true", help="machine-readable output")


def _parse_lists(args: argparse.Namespace) -> dict[str, Any]:
    def ints(text: str, name: str, negative: bool = False) -> list[int]:
        return parse_int_list(text, allow_negative=negative, name=name)

    ncmoe: list[int] = []
    for part in args.ncmoe.split(","):
        ncmoe += [N_CPU_MOE_ALL] if part.strip() == "all" else ints(part, "-ncmoe")
    fa: list[bool | None] = []
    for part in args.fa.split(","):
        part = part.strip().lower()
        if part not in ("0", "1", "auto", "on", "off"):
            raise ValueError(f"-fa: {part!r} is not 0, 1 or auto")
        fa.append(None if part == "auto" else part in ("1", "on"))
    split = tuple(float(x) for x in args.tensor_split.split("/")) if args.tensor_split else ()
    return {
        "n_prompt": ints(args.n_prompt, "-p"),
        "n_gen": ints(args.n_gen, "-n"),
        "depths": ints(args.depth, "-d"),
        "batches": ints(args.batch, "--batch") if args.batch else [],
        "ttft": ints(args.ttft, "--ttft") if args.ttft else [],
        "threads": ints(args.threads, "-t") if args.threads else [],
        "ngl": ints(args.ngl, "-ngl", negative=True) if args.ngl is not None else [-1],
        "ncmoe": ncmoe,
        "fa": fa,
        "ctk": [x.strip() for x in args.ctk.split(",")],
        "ctv": [x.strip() for x in args.ctv.split(",")],
        "tensor_split": split,
    }


def build_configs(args: argparse.Namespace) -> list[BenchConfig]:
    lists = _parse_lists(args)
    return bench_config.build_configs(
        models=args.model,
        quant=args.quant,
        twin_layers=args.layers,
        n_prompt=lists["n_prompt"],
        n_gen=lists["n_gen"],
        depths=lists["depths"],
        batch=lists["batches"],
        ttft=lists["ttft"],
        repetitions=args.repetitions,
        n_gpu_layers=lists["ngl"],
        n_cpu_moe=lists["ncmoe"],
        flash_attn=lists["fa"],
        type_k=lists["ctk"],
        type_v=lists["ctv"],
        n_threads=lists["threads"],
        n_batch=args.batch_size,
        n_ubatch=args.ubatch_size,
        main_gpu=args.main_gpu,
        split_mode=args.split_mode,
        tensor_split=lists["tensor_split"],
        repack=bool(args.repack),
        use_mmap=bool(args.mmap),
        warmup=not args.no_warmup,
    )


def _hardware() -> tuple[dict[str, Any], str, hardware.HardwareReport | None]:
    try:
        report = hardware.detect(probe_bandwidth=False)
        return report.to_dict(), report.fingerprint, report
    except Exception as exc:  # detection problems must not stop a benchmark
        print(
            f"fitbench bench: hardware detection failed ({exc}); runs stay unlabelled",
            file=sys.stderr,
        )
        return {}, "", None


def _fmt_bytes(n: int | None) -> str:
    return "-" if not n else f"{n / 2**30:.2f}G"


def format_new_record(records: list[dict[str, Any]], hw: dict[str, Any] | None) -> str:
    """The line of the last of `records`; a scaled twin's speed is the full model's predicted
    figure, the predictor calibrated on every record so far."""
    figures = full_model_figures(records, hw)[-1]
    return format_record(records[-1], figures, catalog.load_once_or_none())


def format_record(
    rec: dict[str, Any], figure: FullModelFigure | None = None, models: Catalog | None = None
) -> str:
    """One result line. A scaled twin (a slice of the model) shows `figure`, the full model's
    predicted speed, with the slice's own speed as detail: never the slice's speed alone. A twin's
    line ends with how far the real file may be from it (`models`: the catalog's architecture)."""
    name = f"{rec['model_id']} {rec['quant']}".strip()
    where = _SOURCE_WORDS.get(rec["source"], rec["source"])
    test = {
        "pp": f"pp{rec['n_prompt']}",
        "tg": f"tg{rec['n_gen']}",
        "depth": (f"pp{rec['n_prompt']}" if rec["n_prompt"] else f"tg{rec['n_gen']}")
        + f" @ d{rec['n_depth']}",
        "batch": f"B{rec['n_parallel']} tg{rec['n_gen']}",
        "ttft": f"ttft p{rec['n_prompt']}",
    }.get(rec["test"], rec["test"])
    if rec["status"] != "ok":
        first = (rec["error"] or "").splitlines()[0] if rec["error"] else ""
        speed = f"{rec['status'].upper()}: {first}"[:60]
    elif is_scaled(rec):
        value = None if figure is None else figure.value
        full = "no full-model figure" if value is None else f"≈{value:.2f} t/s predicted"
        speed = f"{full:>19} for the full model ({rec['n_layer_file']}/"
        speed += f"{rec['n_layer_model']}-block slice measured {rec['avg_ts']:.2f} t/s)"
    else:
        speed = f"{rec['avg_ts']:10.2f} ± {rec['stddev_ts']:.2f} t/s"
    extra = []
    if rec.get("ttft_ms") is not None and rec["status"] == "ok":
        slice_ = "slice " if is_scaled(rec) else ""
        extra.append(f"ttft {slice_}{rec['ttft_ms']:.1f} ms")
    if rec.get("itl_ms_p50") is not None and rec["status"] == "ok":
        slice_ = "slice " if is_scaled(rec) else ""
        extra.append(f"{slice_}itl p50/p99 {rec['itl_ms_p50']:.2f}/{rec['itl_ms_p99']:.2f} ms")
    extra.append(f"RAM {_fmt_bytes(rec.get('ram_peak_bytes'))}")
    if rec.get("vram_peak_bytes"):
        extra.append(f"VRAM {_fmt_bytes(rec['vram_peak_bytes'])}")
    place = f"ngl {rec['n_gpu_layers']:>3} ncmoe {rec['n_cpu_moe']:>3}"
    line = f"{name:<28} {'measured on ' + where:<24} {place}  {test:<14} {speed}  " + ", ".join(
        extra
    )
    fid = record_fidelity(rec, models) if rec["status"] == "ok" else None
    return line if fid is None else f"{line} | {fid.text}"


def _list_runs(as_json: bool) -> int:
    with open_store() as db:
        runs = db.list_runs()
    if as_json:
        print_json([r.__dict__ for r in runs])
        return EXIT_OK
    if not runs:
        print("no runs stored yet")
    for r in runs:
        print(
            f"{r.run_id}  {r.started}  {r.status:<11} {r.n_records:>4} records  "
            f"hw {r.hardware_fingerprint}"
        )
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.list_runs:
        return _list_runs(args.json)
    if args.export_run:
        if args.out is None:
            print("fitbench bench: --export-run needs --out FILE", file=sys.stderr)
            return EXIT_USAGE
        try:
            # a device, FIFO, folder or symbolic link at --out is refused, never replaced
            check_output(args.out, "the exported run", create_parent=True)
            with open_store() as db:
                n = db.export_jsonl(args.export_run, args.out)
        except (StoreError, OutputPathError) as exc:
            print(f"fitbench bench: {exc}", file=sys.stderr)
            return EXIT_FAILURE
        print(f"wrote {n} records to {args.out}")
        return EXIT_OK

    if args.test_timeout < 0:
        print("fitbench bench: --test-timeout must be >= 0 (0: no limit)", file=sys.stderr)
        return EXIT_USAGE
    hardware_dict, fingerprint, report = _hardware()
    try:
        if args.quick:
            if report is None:
                raise ValueError("--quick needs hardware detection, which failed")
            plan = quick_plan(
                report, catalog.load(), n_threads=_parse_lists(args)["threads"] or None
            )
            for note in plan.notes:
                print(f"quick: {note}", file=sys.stderr)
            configs = plan.configs
        else:
            if args.ngl is None and report is not None and not report.llama_cpp.gpu_offload:
                args.ngl = "0"  # nothing can be offloaded: say so in labels and records
            configs = build_configs(args)
    except (ValueError, ConfigError, ModelSpecError, CatalogError) as exc:
        print(f"fitbench bench: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not configs:
        print("fitbench bench: nothing to run", file=sys.stderr)
        return EXIT_USAGE

    cancel = threading.Event()
    records: list[dict[str, Any]] = []
    finished: ev.SweepFinished | None = None
    settings = {"argv": getattr(args, "argv", sys.argv[1:]), "quick": bool(args.quick)}
    with open_store() as store:
        sweep = run_sweep(
            configs,
            store=store,
            out_jsonl=args.out,
            cancel=cancel,
            hardware=hardware_dict,
            hardware_fingerprint=fingerprint,
            settings=settings,
            test_timeout_s=args.test_timeout,
        )
        try:
            for event in sweep:
                if isinstance(event, ev.SweepStarted):
                    print(
                        f"run {event.run_id}: {event.total_configs} model loads, results in "
                        f"{store.path}",
                        file=sys.stderr,
                    )
                elif isinstance(event, ev.ConfigStarted):
                    left = f", ~{event.remaining_s:.0f} s left" if event.remaining_s else ""
                    print(f"[{event.index + 1}/{event.total}] {event.label}{left}", file=sys.stderr)
                elif isinstance(event, ev.RecordReady):
                    records.append(event.record)
                    if not args.json:
                        print(format_new_record(records, hardware_dict), flush=True)
                elif isinstance(event, ev.ConfigFailed):
                    first = event.error.splitlines()[0] if event.error else ""
                    print(f"  {event.status}: {first}", file=sys.stderr)
                elif isinstance(event, ev.SweepFinished):
                    finished = event
        except KeyboardInterrupt:
            cancel.set()
            for _ in sweep:  # let the runner stop the worker and close the run
                pass
            print("cancelled; the finished tests are stored", file=sys.stderr)
            return 130
        finally:
            sweep.close()  # SIGTERM/SIGHUP (cli.Terminated): the run ends `interrupted` here
    assert finished is not None
    if args.json:
        print_json(
            {
                "run_id": finished.run_id,
                "records": records,
                "n_failed": finished.n_failed,
                "duration_s": finished.duration_s,
            }
        )
    else:
        print(
            f"run {finished.run_id}: {finished.n_records} records, {finished.n_failed} failed "
            f"model loads, {finished.duration_s:.1f} s",
            file=sys.stderr,
        )
    return EXIT_OK if finished.n_failed == 0 else EXIT_FAILURE
