"""`fitbench report`: the PDF recommendation report from a results file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from fitbench.commands._common import EXIT_FAILURE, EXIT_OK, load_hardware_json, print_json

HELP = "write the PDF recommendation report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results", type=Path, required=True, metavar="FILE", help="results JSONL (fitbench bench)"
    )
    parser.add_argument("--pdf", type=Path, required=True, metavar="OUT", help="PDF to write")
    parser.add_argument("--goal", help="what to optimise the recommendation for (see recommend)")
    parser.add_argument(
        "--page-size", choices=("A4", "Letter"), default="A4", help="paper size (default A4)"
    )
    parser.add_argument(
        "--fingerprint",
        metavar="FP",
        help="only the records of this hardware fingerprint (for files from several machines)",
    )
    parser.add_argument(
        "--hardware",
        type=Path,
        metavar="JSON",
        help="hardware description saved with `fitbench detect --json` on the measured machine",
    )
    parser.add_argument(
        "--no-advice",
        action="store_true",
        help="report the measurements only, without computing a recommendation",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def _load_hardware(path: Path | None) -> dict[str, Any] | None:
    from fitbench.core.report import ReportError

    if path is None:
        return None
    if not path.is_file():
        raise ReportError(f"hardware file not found: {path}")
    try:
        return load_hardware_json(path)
    except ValueError as exc:
        raise ReportError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from fitbench.core.report import ReportError, report_from_results_file

    try:
        written = report_from_results_file(
            args.results,
            args.pdf,
            goal=args.goal,
            hardware=_load_hardware(args.hardware),
            page_size=args.page_size,
            fingerprint=args.fingerprint,
            compute=not args.no_advice,
        )
    except ReportError as exc:
        print(f"fitbench report: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    summary = {
        "pdf": str(written.pdf),
        "pages": written.pages,
        "raw_results": written.attachment,
        "raw_results_file": str(written.beside) if written.beside else None,
    }
    if args.json:
        print_json(summary)
    else:
        where = {
            "embedded": "raw results attached inside",
            "beside": f"raw results written to {written.beside}",
            "none": "no raw results attached",
        }[written.attachment]
        print(f"wrote {written.pdf} ({written.pages} pages; {where})")
    return EXIT_OK
