"""Results + advice + hardware -> the report model.

Sections 2-3 live here; 1 in verdict_section.py, 4 in results_section.py, 5-7 in
closing_sections.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fitbench.core.report import fmt
from fitbench.core.report.capped import MAX_LISTED, MAX_ROWS, listed
from fitbench.core.report.closing_sections import (
    appendix_section,
    caveats_section,
    predicted_section,
)
from fitbench.core.report.configs import Config, Names, Record, group, load_names, test_time
from fitbench.core.report.configs import single_fingerprint as _single_fingerprint
from fitbench.core.report.model import (
    Bullets,
    KeyValues,
    Paragraph,
    Report,
    ReportError,
    Section,
    Table,
)
from fitbench.core.report.results_section import results_section
from fitbench.core.report.serving_section import serving_section
from fitbench.core.report.verdict_section import verdict_section


def build_report(
    records: Sequence[Record],
    advice: dict[str, Any] | None,
    hardware: dict[str, Any] | None,
    samples: Sequence[dict[str, Any]] | None = None,
    run_meta: dict[str, Any] | None = None,
    *,
    source_name: str = "the results",
    advice_problem: str = "",
    raw_filename: str = "results.jsonl",
    raw_sha256: str = "",
    n_records: int | None = None,
) -> Report:
    """The whole report. Raises ReportError for input that cannot describe one machine's run.

    n_records: the records in the results file, when `records` are the part of them the report
    summarises (report.from_file keeps at most MAX_RECORDS); all are in the raw results.
    """
    if not records:
        raise ReportError(f"{source_name}: no result records, nothing to report")
    fingerprint = _single_fingerprint(records, source_name)
    _check_same_machine(fingerprint, advice, hardware, source_name)
    names = load_names(_names_from_advice(advice))
    # MoE first: the question is always asked as 'Mixtral or Llama 2 70B'
    configs = sorted(group(records), key=lambda c: not names.is_moe(c.model_id))
    verdict = (advice or {}).get("verdict") or "No recommendation was computed for these results."

    report = Report(
        title="Mixtral 8x7B or Llama 2 70B on this machine",
        subtitle=_subtitle(records, hardware, fingerprint),
        generated=datetime.now(UTC).replace(microsecond=0).isoformat(),
        fingerprint=fingerprint or (hardware or {}).get("fingerprint", ""),
        verdict=verdict,
    )
    report.sections = [
        verdict_section(advice, configs, names, advice_problem),
        machine_section(records, hardware, report.fingerprint),
        run_section(records, configs, names, run_meta or {}, n_records),
        results_section(records, configs, names, advice, samples, hardware),
        *serving_section(report.fingerprint, names, advice),
        predicted_section(advice, names),
        caveats_section(records, configs, names, advice, hardware, samples),
        appendix_section(
            records, advice, run_meta or {}, raw_filename, raw_sha256, n_records or len(records)
        ),
    ]
    return report


def _check_same_machine(
    fingerprint: str, advice: dict[str, Any] | None, hardware: dict[str, Any] | None, where: str
) -> None:
    for what, data in (("the advice", advice), ("the hardware description", hardware)):
        other = (data or {}).get("hardware_fingerprint" if what == "the advice" else "fingerprint")
        if fingerprint and other and other != fingerprint:
            raise ReportError(
                f"{what} is for machine {other}, but {where} were measured on {fingerprint}; "
                "a report must describe one machine"
            )


def _names_from_advice(advice: dict[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    if advice:
        for c in [advice.get("choice") or {}, *(advice.get("alternatives") or [])]:
            if c.get("model_id") and c.get("model_name"):
                out[c["model_id"]] = c["model_name"]
    return out


def _subtitle(records: Sequence[Record], hardware: dict[str, Any] | None, fp: str) -> str:
    gpus = [g.get("name", "") for g in (hardware or {}).get("gpus", []) if isinstance(g, dict)]
    gpu_text = ", ".join(n for n in gpus if n) or records[0].get("gpu_info") or ""
    cpu = (hardware or {}).get("cpu") or {}
    cpu_text = cpu.get("model") or cpu.get("name") or records[0].get("cpu_info") or ""
    machine = gpu_text or (f"{cpu_text} (no GPU)" if cpu_text else "unknown machine")
    return f"{machine} · hardware fingerprint {fp or 'not recorded'}"


# -- 2. machine ----------------------------------------------------------------------------------

# per-flag booleans repeat the ISA list; the fingerprint basis repeats the facts above
HIDDEN_HARDWARE_KEYS = frozenset({"flags", "fingerprint_basis"})

GPU_COLUMNS: tuple[tuple[str, str], ...] = (
    ("index", "#"),
    ("name", "GPU"),
    ("vram_total_bytes", "VRAM total"),
    ("vram_free_bytes", "VRAM free"),
    ("bandwidth_gbps", "Bandwidth"),
    ("pcie", "PCIe"),
    ("compute_capability", "Compute cap."),
)


def _pcie_text(pcie: Any) -> str:
    if not isinstance(pcie, dict):
        return fmt.value("pcie", pcie)
    gen = pcie.get("gen_current", pcie.get("generation", pcie.get("gen")))
    width = pcie.get("width_current", pcie.get("width"))
    gen_max, width_max = pcie.get("gen_max"), pcie.get("width_max")
    if gen is None and width is None:
        return fmt.value("pcie", pcie)
    text = f"gen {gen if gen is not None else '?'} x{width if width is not None else '?'}"
    if gen_max is not None or width_max is not None:
        text += f" (max gen {gen_max or '?'} x{width_max or '?'})"
    return text


def machine_section(
    records: Sequence[Record], hardware: dict[str, Any] | None, fingerprint: str
) -> Section:
    s = Section("2. The machine")
    first = records[0]
    if not hardware:
        s.para(
            "No hardware description was saved with these results, so this section shows what "
            "each result record states about the machine it ran on.",
            "note",
        )
    else:
        kv: list[tuple[str, str]] = [("Hardware fingerprint", fingerprint or fmt.DASH)]
        for part, label in (("cpu", "CPU"), ("ram", "RAM"), ("disk", "Disk"), ("driver", "Driver")):
            data = hardware.get(part)
            if isinstance(data, dict):
                shown = {k: v for k, v in data.items() if k not in HIDDEN_HARDWARE_KEYS}
                kv.extend(_trimmed(fmt.flatten(shown, prefix=f"{label} / ")))
        if hardware.get("detected_at"):
            kv.append(("Detected at", str(hardware["detected_at"])))
        s.add(KeyValues(title="Hardware", rows=tuple(kv)))
        gpus = [g for g in hardware.get("gpus") or [] if isinstance(g, dict)]
        if gpus:
            s.add(_gpu_table(gpus))
        else:
            s.para("No NVIDIA GPU was detected.", "note")
        llama = hardware.get("llama_cpp")
        if isinstance(llama, dict) and llama:
            s.add(KeyValues(title="llama.cpp", rows=tuple(_trimmed(fmt.flatten(llama)))))
        notes = hardware.get("notes") or []
        if notes:
            s.add(Paragraph("Detection notes", "heading"))
            s.add(Bullets(tuple(str(n) for n in notes)))
    s.add(
        KeyValues(
            title="As recorded in the results",
            rows=(
                ("CPU", first["cpu_info"] or fmt.DASH),
                ("GPU", first["gpu_info"] or "none"),
                ("ggml backends", first["backends"] or fmt.DASH),
                (
                    "llama.cpp build",
                    f"{first['build_commit'] or '?'} (build {first['build_number']})",
                ),
                ("llama-cpp-python", first["llama_cpp_python_version"] or fmt.DASH),
            ),
        )
    )
    return s


def _trimmed(rows: list[tuple[str, str]], limit: int = 400) -> list[tuple[str, str]]:
    """Long values (CPU flag lists, system info) cut so one fact cannot fill a page."""
    return [(k, v if len(v) <= limit else v[:limit] + " …") for k, v in rows]


def _gpu_table(gpus: Sequence[dict[str, Any]]) -> Table:
    rows = []
    for g in gpus:
        row = []
        for key, _label in GPU_COLUMNS:
            row.append(_pcie_text(g.get(key)) if key == "pcie" else fmt.value(key, g.get(key)))
        rows.append(tuple(row))
    drivers = sorted({str(g["driver_version"]) for g in gpus if g.get("driver_version")})
    return Table(
        title="GPUs",
        headers=tuple(label for _k, label in GPU_COLUMNS),
        rows=tuple(rows),
        weights=(0.4, 2.8, 1.2, 1.2, 1.2, 2.2, 1.0),
        numeric=(True, False, True, True, True, False, False),
        note=f"Driver {', '.join(drivers)}" if drivers else "",
    )


# -- 3. what was run -----------------------------------------------------------------------------


def _times(records: Sequence[Record]) -> list[datetime]:
    return [when for r in records if (when := test_time(r)) is not None]


def run_section(
    records: Sequence[Record],
    configs: Sequence[Config],
    names: Names,
    run_meta: dict[str, Any],
    n_records: int | None = None,
) -> Section:
    s = Section("3. What was run")
    times = _times(records)
    duration = run_meta.get("duration_s")
    if duration is None and len(times) >= 2:
        duration = (max(times) - min(times)).total_seconds()
    run_ids = sorted({r["run_id"] for r in records if r["run_id"]})
    failed = sum(1 for r in records if r["status"] != "ok")
    tests = f"{len(records)} ({failed} did not finish)"
    if n_records and n_records > len(records):
        tests = (
            f"{n_records} in the file; this report summarises the latest result of each test, "
            f"{len(records)} records ({failed} did not finish); all are in the raw results"
        )
    s.add(
        KeyValues(
            rows=(
                ("Run", run_meta.get("run_id") or listed(run_ids) or fmt.DASH),
                (
                    "Started",
                    str(run_meta.get("started") or (min(times).isoformat() if times else fmt.DASH)),
                ),
                (
                    "Duration",
                    fmt.duration(duration)
                    + ("" if run_meta.get("duration_s") else " (first to last test)"),
                ),
                ("Tests", tests),
                ("Configurations", str(len(configs))),
            )
        )
    )
    all_files = dict.fromkeys(
        (c.model_id, c.quant, c.source, c.file_sha256, c.model_filename) for c in configs
    )
    files = list(all_files)[:MAX_ROWS]
    s.add(
        Table(
            title="Models and files",
            headers=(
                "Model",
                "Quant",
                "File measured",
                "File name",
                "SHA-256 (header hash for twins)",
            ),
            rows=tuple(
                (names.name(mid), quant, _source_words(source), _basename(fname), sha or fmt.DASH)
                for mid, quant, source, sha, fname in files
            ),
            weights=(2.2, 1.0, 1.3, 2.6, 3.4),
            mono_columns=(3, 4),
            note=(
                f"The first {len(files)} of {len(all_files)} files; the others are named in the "
                "raw results."
                if len(all_files) > len(files)
                else ""
            ),
        )
    )
    by_model: dict[tuple[str, str], list[Config]] = {}
    for c in configs:
        by_model.setdefault((c.model_id, c.quant), []).append(c)
    pairs = list(by_model.items())
    s.add(
        Table(
            title="Placements tried",
            headers=("Model", "Quant", "Placements"),
            rows=tuple(
                (names.name(mid), quant, _placements_text(cs))
                for (mid, quant), cs in pairs[:MAX_ROWS]
            ),
            weights=(2.2, 1.0, 6.8),
            note=(
                f"The first {MAX_ROWS} of {len(pairs)} model files; the others are in the raw "
                "results."
                if len(pairs) > MAX_ROWS
                else ""
            ),
        )
    )
    s.add(KeyValues(title="Test settings", rows=tuple(_settings_rows(records, run_meta))))
    return s


def _placements_text(configs: Sequence[Config]) -> str:
    """'0, 8, 16, 24, 33 of 33 layers on GPU; ...' instead of one phrase per placement."""
    n_layer = max(c.n_layer for c in configs)
    plain = sorted({c.n_gpu_layers for c in configs if not c.n_cpu_moe})
    parts = []
    if plain:
        total = f" of {n_layer + 1}" if n_layer else ""
        counts = ["all" if n < 0 else str(n) for n in plain]  # -1: n_layer was not recorded
        parts.append(f"{listed(counts, 4 * MAX_LISTED)}{total} layers on GPU")
    parts.extend(c.placement_words for c in configs if c.n_cpu_moe)
    return listed(list(dict.fromkeys(parts)), MAX_LISTED, "; ")


def _source_words(source: str) -> str:
    return {"real": "real file", "twin": "twin", "scaled-twin": "scaled twin"}.get(source, source)


def _basename(path: str) -> str:
    return path.replace("\\", "/").rsplit("/", 1)[-1] if path else fmt.DASH


def _distinct(records: Sequence[Record], name: str, tests: Sequence[str] = ()) -> str:
    values = sorted(
        {r[name] for r in records if (not tests or r["test"] in tests) and r[name] is not None},
        key=lambda v: (isinstance(v, str), v if not isinstance(v, str) else 0, str(v)),
    )
    return listed([fmt.value(name, v) for v in values]) or fmt.DASH


def _settings_rows(records: Sequence[Record], run_meta: dict[str, Any]) -> list[tuple[str, str]]:
    reps = sorted({len(r["samples_ts"]) for r in records if r["samples_ts"]})
    rows = [
        ("Prompt tokens (pp, ttft)", _distinct(records, "n_prompt", ("pp", "ttft"))),
        ("Generated tokens (tg, batch)", _distinct(records, "n_gen", ("tg", "batch"))),
        ("Parallel sequences (batch)", _distinct(records, "n_parallel", ("batch",))),
        ("KV depth (depth)", _distinct(records, "n_depth", ("depth",))),
        (
            "Batch / micro-batch",
            f"{_distinct(records, 'n_batch')} / {_distinct(records, 'n_ubatch')}",
        ),
        ("CPU threads", _distinct(records, "n_threads")),
        ("KV cache type K / V", f"{_distinct(records, 'type_k')} / {_distinct(records, 'type_v')}"),
        ("Flash attention", _distinct(records, "flash_attn")),
        ("Weights loading (load_mode)", _distinct(records, "load_mode")),
        ("Repetitions per test", listed([str(n) for n in reps]) or fmt.DASH),
    ]
    settings = run_meta.get("settings")
    if isinstance(settings, dict):
        # scalars only here; nested settings (per-config test lists) are in the appendix in full
        scalars = {k: v for k, v in settings.items() if not isinstance(v, dict | list)}
        rows.extend(_trimmed(fmt.flatten(scalars, prefix="Run / ")))
        if len(scalars) < len(settings):
            rows.append(("Run / other settings", "in full in the appendix"))
    return rows
