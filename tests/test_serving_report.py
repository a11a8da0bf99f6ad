"""The report's "Serving N users on this machine": stored load levels of this machine, per
model, the largest number of users within the latency goal, TTFT/ITL curves, into the PDF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import test_report_support as data
from fitbench.core.report import build_report, write_pdf
from fitbench.core.report.model import Figure, Table
from fitbench.core.serve.records import append_lines, load_results_path

LLAMA70 = "llama-2-70b-chat"


def _line(model: str, users: int, itl_p95: float, ttft_p99: float, fp: str) -> dict[str, Any]:
    return {
        "kind": "load_level", "basis": "measured-twin", "hardware_fingerprint": fp,
        "started": "2026-12-05T10:00:00+0000", "prompt_tokens": 128, "max_tokens": 32,
        "prompt_tokens_method": "/tokenize", "client": "httpx2, asyncio",
        "deployment": {"model_id": model, "quant": "Q4_K_M", "source": "twin",
                       "placement_words": "all layers on the GPU", "parallel": 8},
        "level": {"concurrency": users, "ok": 2 * users, "failed": 0,
                  "ttft_ms": {"p50": ttft_p99 / 2, "p95": ttft_p99, "p99": ttft_p99},
                  "itl_ms": {"p50": itl_p95 / 2, "p95": itl_p95, "p99": itl_p95},
                  "output_tokens_per_s": 40.0 * users},
    }  # fmt: skip


def _serving(report: Any) -> Any:
    return next((s for s in report.sections if s.title.startswith("Serving ")), None)


def test_no_levels_no_section() -> None:
    assert _serving(build_report(data.h200_records(), None, data.h200_hardware())) is None


def test_section_names_the_users_within_the_goal_for_both_models(tmp_path: Path) -> None:
    fp = data.FINGERPRINT
    # Mixtral meets p95 ITL <= 200 ms up to 4 users; Llama 2 70B only at 1 (TTFT at 2 too long)
    lines = [_line(data.MIXTRAL, c, itl, 900, fp) for c, itl in ((1, 30), (2, 60), (4, 150),
                                                                  (8, 400))]  # fmt: skip
    lines += [_line(LLAMA70, c, 80, ttft, fp) for c, ttft in ((1, 2000), (2, 9000), (4, 20000))]
    lines.append(_line(data.MIXTRAL, 16, 10, 10, "another-machine"))  # not this machine's
    append_lines(load_results_path(), lines)
    report = build_report(data.h200_records(), None, data.h200_hardware())
    section = _serving(report)
    assert section is not None and section.title == "Serving 4 users on this machine"
    text = " ".join(str(getattr(b, "items", "")) for b in section.blocks)
    assert "4 users meet the goal" in text and "1 users meet the goal" in text
    (table,) = [b for b in section.blocks if isinstance(b, Table)]
    assert len(table.rows) == 7
    assert all(r[-1].startswith("measured-twin, real file ±") for r in table.rows)
    # the band follows the level: one user's steps route one token, eight users' route eight (an
    # MoE's routing, not measured); the dense 70B keeps its measured band at every level
    mixtral = {r[1]: r[-1] for r in table.rows if "Mixtral" in r[0]}
    assert mixtral["1"] == "measured-twin, real file ±1%", mixtral
    assert mixtral["8"] == "measured-twin, real file ±10% (not measured)", mixtral
    assert {r[-1] for r in table.rows if "Llama" in r[0]} == {"measured-twin, real file ±1%"}
    figures = [b for b in section.blocks if isinstance(b, Figure)]
    assert len(figures) == 2 and all(f.png.startswith(b"\x89PNG") for f in figures)
    written = write_pdf(report, tmp_path / "r.pdf")
    assert written.pdf.stat().st_size > 0
