"""A results file -> a PDF: reading, checking, advising and writing in one call.

The CLI (`fitbench report`), the GUI's "Export PDF report" and `fitbench quick` all go through
report_from_results_file, so they produce the same document from the same inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fitbench.core import paths
from fitbench.core.advise import recommend as advise
from fitbench.core.hardware.detect import detect
from fitbench.core.model import catalog
from fitbench.core.report.build import build_report
from fitbench.core.report.model import ReportError
from fitbench.core.report.pdf import WrittenReport, check_target, write_pdf
from fitbench.core.report.raw import RawResults
from fitbench.core.results import schema as results
from fitbench.core.results import store

log = logging.getLogger(__name__)


# The records a report works from. A results file grows by appending sweeps for months; past
# this many records the report keeps the latest result of each test (model, file, placement,
# test shape, ok or not) and, if there are still more, the most recent ones: memory and time stay
# bounded for any file, and every record is still in the attached raw results.
MAX_RECORDS = 20_000


@dataclass
class ResultsRead:
    records: list[dict[str, Any]]  # what the report summarises (at most max_records)
    total: int  # records of this machine in the file
    omitted: int  # records not summarised: repeated later, or the oldest beyond max_records
    fingerprint: str


def _slot(r: dict[str, Any]) -> tuple[Any, ...]:
    """One test of one configuration: a later record of the same slot supersedes an earlier."""
    return (
        r["model_id"], r["quant"], r["source"], r["file_sha256"], r["n_gpu_layers"],
        r["n_cpu_moe"], r["test"], r["n_parallel"], r["n_depth"], r["n_prompt"], r["n_gen"],
        r["status"] == "ok",
    )  # fmt: skip


class _Kept:
    """Every record until there are more than `cap`; from then on the latest per slot and, past
    `cap` slots, the most recent ones."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.plain: list[tuple[int, dict[str, Any]]] = []
        self.slots: dict[tuple[Any, ...], tuple[int, dict[str, Any]]] | None = None
        self.seen = 0

    def add(self, record: dict[str, Any]) -> None:
        item = (self.seen, record)
        self.seen += 1
        if self.slots is None:
            self.plain.append(item)
            if len(self.plain) <= self.cap:
                return
            self.slots = {}
            for old in self.plain:
                self._put(old)
            self.plain = []
        else:
            self._put(item)

    def _put(self, item: tuple[int, dict[str, Any]]) -> None:
        assert self.slots is not None
        key = _slot(item[1])
        self.slots.pop(key, None)  # re-inserted last: the dict stays ordered by recency
        self.slots[key] = item
        if len(self.slots) > self.cap:
            self.slots.pop(next(iter(self.slots)))

    def records(self) -> list[dict[str, Any]]:
        if self.slots is None:
            return [r for _, r in self.plain]
        return [r for _, r in sorted(self.slots.values(), key=lambda item: item[0])]


def read_results(
    path: Path, fingerprint: str | None = None, max_records: int | None = None
) -> ResultsRead:
    """One machine's records of the file, streamed (memory bounded by max_records, default
    MAX_RECORDS), or a ReportError naming the file."""
    path = Path(path)
    max_records = MAX_RECORDS if max_records is None else max_records
    if path.is_dir():
        raise ReportError(f"{path} is a folder, not a results file (JSON lines)")
    if path.exists() and not path.is_file():
        raise ReportError(
            f"{path} is not a regular file: give the JSONL file `fitbench bench` wrote"
        )
    kept = _Kept(max_records)
    counts: dict[str, int] = {}
    total = 0
    try:
        for record in results.iter_results(path):
            fp = record.get("hardware_fingerprint") or ""
            if fingerprint and fp != fingerprint:
                counts[fp or "(none)"] = counts.get(fp or "(none)", 0) + 1
                continue
            if fp:
                counts[fp] = counts.get(fp, 0) + 1
            total += 1
            kept.add(record)
    except UnicodeDecodeError:
        raise ReportError(f"{path} is not a text results file (JSON lines in UTF-8)") from None
    except results.ResultError as exc:
        raise ReportError(
            f"{exc}. Give the JSONL file written by `fitbench bench`, or llama-bench's "
            "-o jsonl / -o json output (or its -o sql loaded into SQLite)."
        ) from None
    except OSError as exc:
        raise ReportError(f"cannot read the results file {path}: {exc.strerror or exc}") from None
    if fingerprint and not total:
        known = ", ".join(sorted(counts)) or "no records"
        raise ReportError(
            f"{path}: no records with hardware fingerprint {fingerprint!r} (the file has: {known})"
        )
    if not total and not counts:
        raise ReportError(f"{path}: no result records in the file")
    if not fingerprint and len(counts) > 1:
        listed = ", ".join(f"{fp} ({n} records)" for fp, n in sorted(counts.items()))
        raise ReportError(
            f"{path} mixes results from {len(counts)} different machines (hardware "
            f"fingerprints {listed}); a report describes one machine. Choose one with "
            "--fingerprint FINGERPRINT, or split the file by its hardware_fingerprint field."
        )
    records = kept.records()
    import_to_history(records, path)
    return ResultsRead(
        records=records,
        total=total,
        omitted=total - len(records),
        fingerprint=fingerprint or next(iter(counts), ""),
    )


def import_to_history(records: list[dict[str, Any]], path: Path) -> None:
    """llama-bench results read from a file join History once (a run named after the file's
    content); a database that cannot be written only costs the history entry."""
    try:
        run_id = store.import_llama_bench(records, path)
    except store.StoreError as exc:
        log.warning("llama-bench results from %s not added to History: %s", path, exc)
        return
    if run_id:
        log.info("llama-bench results from %s are in History as run %s", path, run_id)


def detected_hardware(fingerprint: str) -> dict[str, Any] | None:
    """This machine's description, but only when the results were measured on this machine."""
    try:
        # the fingerprint needs no probes: check it cheaply before the full detection
        quick = detect(probe_bandwidth=False, llama=False)
        if fingerprint and quick.fingerprint != fingerprint:
            return None
        return detect().to_dict()
    except Exception:  # hardware detection is optional here; the records carry the basics
        log.debug("hardware detection unavailable for the report", exc_info=True)
        return None


def stored_run(
    records: Sequence[dict[str, Any]], fingerprint: str
) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """Hardware and run metadata the results store kept for these records' run, if it has them.

    Only read, never created: a report must not leave an empty database behind.
    """
    run_ids = {r["run_id"] for r in records if r["run_id"]}
    db = paths.results_db()
    if len(run_ids) != 1 or not db.is_file():
        return None, {}
    try:
        with store.open_store(db) as s:
            run = s.get_run(next(iter(run_ids)))
    except Exception:  # a missing run or an unreadable store only means less detail
        log.debug("no stored run for the report", exc_info=True)
        return None, {}
    meta: dict[str, Any] = {"run_id": run.run_id, "started": run.started, "status": run.status}
    if run.finished:
        meta["finished"] = run.finished
        start, end = _parse(run.started), _parse(run.finished)
        if start and end:
            meta["duration_s"] = (end - start).total_seconds()
    if run.settings:
        meta["settings"] = run.settings
    hardware = run.hardware or None
    if hardware and fingerprint and hardware.get("fingerprint") not in (None, "", fingerprint):
        hardware = None
    return hardware, meta


def _parse(iso: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")) if iso else None
    except ValueError:
        return None


def compute_advice(
    records: Sequence[dict[str, Any]], goal: str | None, hardware: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, str]:
    """core.advise.recommend.recommend(...) as a dict and "", or None and why there is none."""
    try:
        advice = advise.recommend(
            list(records),
            # without a description of the measured machine the advice leans on the records alone
            hardware=hardware or {},
            catalog=catalog.load(),
            goal=goal or "interactive",  # the advice's default goal
        )
    except Exception as exc:
        # the measurements are still worth a report; the verdict section says why none came
        log.warning("no recommendation for the report: %s", exc, exc_info=True)
        return None, str(exc) or type(exc).__name__
    return dict(advice.to_dict()), ""


def _check_goal(goal: str | None) -> None:
    """A mistyped goal is the user's error, not a reason to drop the recommendation silently."""
    if goal and goal not in advise.GOALS:
        raise ReportError(f"unknown goal {goal!r}: choose one of {', '.join(advise.GOALS)}")


def report_from_results_file(
    results_path: Path,
    out: Path,
    *,
    goal: str | None = None,
    advice: dict[str, Any] | None = None,
    hardware: dict[str, Any] | None = None,
    samples: Sequence[dict[str, Any]] | None = None,
    run_meta: dict[str, Any] | None = None,
    page_size: str = "A4",
    fingerprint: str | None = None,
    compute: bool = True,
    advice_problem: str = "",
) -> WrittenReport:
    """Read `results_path`, compute the advice (unless given, or compute=False), write `out`.

    hardware, run_meta: when None, taken from the results store's record of the run, else
    (hardware) from detecting this machine, used only when its fingerprint matches the records':
    a report about another machine's results never shows this machine's hardware.
    advice_problem: with advice=None and compute=False, why there is no advice (shown in the
    verdict section).
    """
    results_path = Path(results_path)
    check_target(Path(out), page_size)
    _check_goal(goal)
    read = read_results(results_path, fingerprint)
    records, fp = read.records, read.fingerprint
    raw = RawResults.scan(results_path, fingerprint)
    stored_hardware, stored_meta = stored_run(records, fp)
    if hardware is None:
        hardware = stored_hardware or detected_hardware(fp)
    if run_meta is None and stored_meta:
        run_meta = stored_meta
    problem = advice_problem  # why the caller has no advice (the GUI's failed advice job)
    if advice is None and compute:
        advice, problem = compute_advice(records, goal, hardware)
    report = build_report(
        records,
        advice,
        hardware,
        samples,
        run_meta,
        source_name=str(results_path),
        advice_problem=problem,
        raw_filename=results_path.name if results_path.suffix == ".jsonl" else "results.jsonl",
        raw_sha256=raw.sha256,
        n_records=read.total,
    )
    return write_pdf(report, Path(out), page_size=page_size, raw_file=raw)
