"""`fitbench quick`: the one-click job, headless.

detect -> plan -> benchmark both catalog models (real files where downloaded, else twins) ->
recommend -> PDF. Models are measured one after the other, so a machine whose disk holds only one
full-size twin at a time still measures both at full size (the twin cache makes room).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from fitbench.commands._common import EXIT_FAILURE, EXIT_OK, print_json
from fitbench.commands.bench import format_new_record
from fitbench.commands.recommend import add_goal_arguments
from fitbench.core.advise.recommend import recommend
from fitbench.core.bench import events as ev
from fitbench.core.bench.quick import make_room_for_twin, quick_plan
from fitbench.core.bench.runner import run_sweep
from fitbench.core.hardware import detect as hardware
from fitbench.core.model.catalog import Catalog
from fitbench.core.model.catalog import load as load_catalog
from fitbench.core.predict.full_model import full_model_figures, is_scaled
from fitbench.core.report import report_from_results_file
from fitbench.core.results.schema import read_jsonl
from fitbench.core.results.store import open_store
from fitbench.core.twin.fidelity import Fidelity, record_fidelity, widest

HELP = "the one-click job, headless: detect, plan, benchmark, recommend, PDF"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pdf", type=Path, default=Path("fitbench-report.pdf"), help="report to write"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="results JSONL (default: beside the PDF)"
    )
    add_goal_arguments(parser)
    parser.add_argument(
        "--model", action="append", default=None, metavar="ID", help="only these catalog ids"
    )
    parser.add_argument("-t", "--threads", type=int, default=None, help="CPU threads")
    parser.add_argument(
        "--serve",
        action="store_true",
        help="after each model's sweep, serve its best placement with llama-server and measure "
        "1, 2, 4 and 8 users (fitbench load; short and bounded); the report gains a section",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable summary")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _sweep(
    configs: list[Any], store: Any, out: Path, hw: dict[str, Any], fp: str, argv: list[str]
) -> list[Any]:
    cancel = threading.Event()
    records: list[Any] = []
    sweep = run_sweep(
        configs,
        store=store,
        out_jsonl=out,
        cancel=cancel,
        hardware=hw,
        hardware_fingerprint=fp,
        settings={"argv": argv, "quick": True},
    )
    try:
        for event in sweep:
            if isinstance(event, ev.ConfigStarted):
                left = f", ~{event.remaining_s:.0f} s left" if event.remaining_s else ""
                _say(f"[{event.index + 1}/{event.total}] {event.label}{left}")
            elif isinstance(event, ev.RecordReady):
                records.append(event.record)
                _say("  " + format_new_record(records, hw))
            elif isinstance(event, ev.ConfigFailed):
                first = event.error.splitlines()[0] if event.error else ""
                _say(f"  FAILED ({event.status}): {first}; the sweep goes on")
    except KeyboardInterrupt:
        cancel.set()
        for _ in sweep:
            pass
        raise
    return records


def _serve_step(records: list[Any], fingerprint: str, threads: int | None, out: Path) -> None:
    """quick --serve for one model: its fastest full-depth placement under load; every failure
    is a note, never the end of the run."""
    from fitbench.commands.load import format_level
    from fitbench.core import paths
    from fitbench.core.serve.server import ServerError
    from fitbench.core.serve.session import Cancelled, ServeTarget, serve_and_load

    full = [
        r
        for r in records
        if r.get("status") == "ok"
        and r.get("source") in ("real", "twin")
        and r.get("test") in ("tg", "batch")
        and Path(str(r.get("model_filename") or "")).is_file()
    ]
    if not full:
        _say("quick: serving skipped: no full-size file of this model was measured here")
        return
    best = max(full, key=lambda r: float(r.get("avg_ts") or 0) / int(r.get("n_parallel") or 1))
    target = ServeTarget(
        model_path=Path(str(best["model_filename"])),
        model_id=str(best["model_id"]),
        quant=str(best["quant"]),
        source=str(best["source"]),
        n_layer=int(best.get("n_layer_model") or 0),
        n_gpu_layers=int(best.get("n_gpu_layers") or 0),
        n_cpu_moe=int(best.get("n_cpu_moe") or 0),
        threads=threads,
        repack=False if any(r.get("repack") is False for r in records) else None,
    )
    _say(f"quick: serving {target.model_id} under load (1, 2, 4, 8 users)")
    log = paths.log_dir() / f"llama-server-quick-{target.model_id}.log"
    try:
        result = serve_and_load(
            target,
            log_path=log,
            hardware_fingerprint=fingerprint,
            out_jsonl=out.with_suffix(".load.jsonl"),
            on_level=lambda level: _say("  " + format_level(level)),
            on_status=lambda text: _say(f"  {text}"),
        )
    except (ServerError, Cancelled, OSError) as exc:
        _say(f"quick: serving {target.model_id} failed, the run goes on: {exc}")
        return
    if result["skipped"]:
        _say(f"  skipped {result['skipped']} users: the previous level took over 2 minutes")


def summary_table(
    records: list[dict[str, Any]], hw: dict[str, Any] | None, models: Catalog | None = None
) -> list[str]:
    """pp and tg per configuration, as a person should read them: a scaled twin's figures are
    the full model's (predicted, marked ≈), its slice's speeds follow as detail; a twin's row says
    how far the real file may be from it, and the table ends with those caveats in full."""
    figures = full_model_figures(records, hw)
    rows: dict[tuple[Any, ...], dict[str, str]] = {}
    caveats: dict[tuple[Any, ...], list[Fidelity | None]] = {}
    for rec, fig in zip(records, figures, strict=True):
        test = rec.get("test")
        if rec.get("status") != "ok" or test not in ("pp", "tg"):
            continue
        scaled = is_scaled(rec)
        where = "scaled twin" if scaled else str(rec.get("source"))
        key = (rec["model_id"], rec["quant"], where, rec["n_gpu_layers"], rec["n_cpu_moe"])
        row = rows.setdefault(key, {})
        caveats.setdefault(key, []).append(record_fidelity(rec, models))
        if not scaled:
            row[test] = f"{rec['avg_ts']:.2f}"
            continue
        row[test] = "≈?" if fig is None or fig.value is None else f"≈{fig.value:.2f}"
        row["blocks"] = f"slice of {rec['n_layer_file']}/{rec['n_layer_model']} blocks"
        row[f"slice {test}"] = f"{test} {rec['avg_ts']:.1f}"
    lines = [f"{'model':<34} {'file':<12} {'ngl':>5} {'pp t/s':>9} {'tg t/s':>9}  detail"]
    texts: dict[str, None] = {}
    for (model, quant, where, ngl, ncmoe), row in rows.items():
        details = []
        if "blocks" in row:
            measured = ", ".join(row[k] for k in ("slice pp", "slice tg") if k in row)
            details.append(f"{row['blocks']} measured {measured} t/s")
        fid = widest(caveats[(model, quant, where, ngl, ncmoe)])
        if fid is not None:
            details.append(fid.short)
            texts.update({f.text: None for f in caveats[(model, quant, where, ngl, ncmoe)] if f})
        ngl_text = f"{ngl}" + (f"/{ncmoe}" if ncmoe else "")
        lines.append(
            f"{model + ' ' + quant:<34} {where:<12} {ngl_text:>5} {row.get('pp', '-'):>9} "
            f"{row.get('tg', '-'):>9}  {'; '.join(details)}"
        )
    if any("blocks" in row for row in rows.values()):
        lines.append("≈: predicted for the full model from a scaled twin (a slice of its blocks)")
    lines.extend(texts)
    return lines


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    pdf: Path = args.pdf
    out: Path = args.out or pdf.with_suffix(".jsonl")
    if out.exists():
        out.unlink()  # this run's results only; earlier runs stay in the results store
    _say("quick: 1/5 detecting the hardware")
    report = hardware.detect(probe_bandwidth=True)
    hw = report.to_dict()
    for note in hw.get("notes", []):
        _say(f"  note: {note}")
    catalog = load_catalog()
    ids = args.model or list(catalog.ids)
    records: list[Any] = []
    plan_notes: list[str] = []
    with open_store() as store:
        for i, model_id in enumerate(ids):
            model = catalog.get(model_id)
            _say(f"quick: 2/5 planning {model.name} ({i + 1}/{len(ids)})")
            removed = make_room_for_twin(model, model.default_quant)
            if removed:
                _say(f"quick: removed {len(removed)} cached twin(s) to make room for {model.id}")
            plan = quick_plan(
                report,
                catalog,
                model_ids=[model_id],
                n_threads=args.threads,
            )
            for note in plan.notes:
                _say(f"  {note}")
            plan_notes.extend(plan.notes)
            configs = plan.configs
            if any(r.get("repack") is False for r in records):
                # llama.cpp's AMX buffers crashed in an earlier sweep (the runner retried without
                # repacking): later models start without them instead of crashing again
                configs = [
                    c.with_(repack=False, config_id=c.config_id, label=c.label) for c in configs
                ]
            _say(f"quick: 3/5 benchmarking {model.name}: {len(configs)} placements")
            swept = _sweep(configs, store, out, hw, report.fingerprint, list(args.argv))
            records.extend(swept)
            if args.serve:  # now: the next model's twin may take this one's disk space
                _serve_step(swept, report.fingerprint, args.threads, out)
    if not records:
        _say("quick: nothing was measured; no recommendation or report")
        return EXIT_FAILURE
    _say("quick: 4/5 recommending")
    advice = recommend(
        read_jsonl(out), hardware=hw, catalog=catalog, goal=args.goal, min_tps=args.min_tps
    ).to_dict()
    advice_path = out.with_suffix(".advice.json")
    advice_path.write_text(json.dumps(advice, indent=2, default=str), encoding="utf-8")
    _say("quick: 5/5 writing the PDF report")
    written = report_from_results_file(out, pdf, goal=args.goal, hardware=hw, advice=advice)
    summary = {
        "results": str(out),
        "advice": str(advice_path),
        "pdf": str(written.pdf),
        "pages": written.pages,
        "records": len(records),
        "failed": sum(1 for r in records if r["status"] != "ok"),
        "notes": plan_notes,
        "duration_s": round(time.monotonic() - started, 1),
        "verdict": advice.get("verdict"),
    }
    if args.json:
        print_json(summary)
    else:
        for line in summary_table(records, hw, catalog):
            print(line)
        if summary["verdict"]:
            print(summary["verdict"])
        print(f"results: {out}")
        print(f"report: {pdf}")
    return EXIT_OK
