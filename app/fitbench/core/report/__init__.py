"""The PDF recommendation report: a report model built from results, rendered with fpdf2.

Entry points: build_report (records -> Report), write_pdf (Report -> file) and
report_from_results_file (what the CLI, the GUI's "Export PDF report" and `quick` call).
"""

from __future__ import annotations

from fitbench.core.report.build import build_report
from fitbench.core.report.from_file import report_from_results_file
from fitbench.core.report.model import Report, ReportError
from fitbench.core.report.pdf import WrittenReport, write_pdf

__all__ = [
    "Report",
    "ReportError",
    "WrittenReport",
    "build_report",
    "report_from_results_file",
    "write_pdf",
]
