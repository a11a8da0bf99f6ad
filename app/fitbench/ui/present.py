"""How core data is worded for a person: units, labels, warnings. Qt-free and unit-tested.

Widgets only place these strings; the numbers themselves come from the core.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fitbench.core.plan.placement import Placement

GIB = 1024**3
LOW_DISK_BYTES = 30 * 10**9  # below the smallest catalog default quant (~26-29 GB)

BASIS_WORDS = {
    "measured-real": "measured on the real file",
    "measured-twin": "measured on a twin",
    "predicted": "predicted",
}
SOURCE_WORDS = {"real": "real file", "twin": "twin", "scaled-twin": "scaled twin"}


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "–"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def fmt_gb(n: float | None) -> str:
    """Decimal GB, as model sizes are quoted on the Hub."""
    return "–" if n is None else f"{n / 1e9:.2f} GB"


def fmt_rate(bytes_per_s: float | None) -> str:
    return "–" if not bytes_per_s else f"{fmt_bytes(bytes_per_s)}/s"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "unknown"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def fmt_ts(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f} t/s" if value < 1000 else f"{value:,.0f} t/s"


def short_model_name(name: str) -> str:
    """'Mixtral 8x7B Instruct v0.1' -> 'Mixtral 8x7B', 'Llama 2 70B Chat' -> 'Llama 2 70B'."""
    words = name.split()
    for i, word in enumerate(words):
        if i and word[:1].isdigit() and word.upper().endswith("B"):
            return " ".join(words[: i + 1])
    return " ".join(words[:2]) if len(words) > 2 else name


def basis_words(basis: str | None) -> str:
    return BASIS_WORDS.get(basis or "", basis or "basis unknown")


def source_words(source: str | None) -> str:
    return SOURCE_WORDS.get(source or "", source or "")


def _get(data: Mapping[str, Any] | None, *keys: str, default: Any = None) -> Any:
    cur: Any = data
    for key in keys:
        if not isinstance(cur, Mapping) or key not in cur:
            return default
        cur = cur[key]
    return cur


def hardware_warnings(hw: Mapping[str, Any]) -> list[str]:
    """What a person must know before trusting any number: read from detect().to_dict()."""
    warnings: list[str] = []
    llama = _get(hw, "llama_cpp", default={}) or {}
    offload = llama.get("supports_gpu_offload", llama.get("gpu_offload"))
    if offload is False:
        warnings.append(
            "This llama-cpp-python build has no GPU offload: every test runs on the CPU. "
            'Install a CUDA build: CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall '
            "llama-cpp-python"
        )
    gpus = hw.get("gpus") or []
    nvml = hw.get("nvml") if isinstance(hw.get("nvml"), Mapping) else {}
    if not gpus:
        reason = _get(nvml, "error") or _get(nvml, "note") or ""
        text = "No NVIDIA GPU or driver found (NVML unavailable)"
        warnings.append(f"{text}: {reason}" if reason else f"{text}.")
    free = _get(hw, "disk", "free_bytes")
    if isinstance(free, int) and free < LOW_DISK_BYTES:
        where = _get(hw, "disk", "path", default="the model cache")
        warnings.append(
            f"Low disk: {fmt_gb(free)} free at {where}; a model file needs 26-73 GB. "
            "Benchmarks will use twins or scaled twins."
        )
    for note in hw.get("notes") or []:
        if isinstance(note, str) and note not in warnings:
            warnings.append(note)
    return warnings


def hardware_rows(hw: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(label, value) lines for the Machine panel."""
    rows: list[tuple[str, str]] = []
    cpu = hw.get("cpu") or {}
    cores = f"{cpu.get('physical_cores', '?')} cores / {cpu.get('logical_cores', '?')} threads"
    flags = ", ".join(cpu.get("isa") or cpu.get("flags") or cpu.get("instruction_sets") or [])
    rows.append(("CPU", f"{cpu.get('model', cpu.get('name', 'unknown'))}, {cores}"))
    if flags:
        rows.append(("CPU features", flags))
    ram = hw.get("ram") or {}
    rows.append(
        (
            "RAM",
            f"{fmt_bytes(ram.get('total_bytes'))} total, "
            f"{fmt_bytes(ram.get('available_bytes'))} available",
        )
    )
    bw = _get(hw, "cpu", "bandwidth_gbps") or _get(hw, "ram", "bandwidth_gbps")
    if bw:
        rows.append(("RAM bandwidth", f"{bw:.1f} GB/s (measured)"))
    gpus = hw.get("gpus") or []
    for gpu in gpus:
        bw_text = f", {gpu['bandwidth_gbps']:.0f} GB/s" if gpu.get("bandwidth_gbps") else ""
        rows.append(
            (
                f"GPU {gpu.get('index', '?')}",
                f"{gpu.get('name', 'unknown')}: {fmt_bytes(gpu.get('vram_total_bytes'))} VRAM, "
                f"{fmt_bytes(gpu.get('vram_free_bytes'))} free{bw_text}",
            )
        )
    if not gpus:
        rows.append(("GPU", "none detected"))
    disk = hw.get("disk") or {}
    if disk:
        rows.append(
            ("Disk", f"{fmt_gb(disk.get('free_bytes'))} free at {disk.get('path', 'model cache')}")
        )
    llama = hw.get("llama_cpp") or {}
    if llama:
        offload = llama.get("supports_gpu_offload", llama.get("gpu_offload"))
        devices = ", ".join(
            str(d.get("name", d)) if isinstance(d, Mapping) else str(d)
            for d in llama.get("devices") or []
        )
        text = f"llama-cpp-python {llama.get('version', '?')}; GPU offload: " + (
            "yes" if offload else "no"
        )
        rows.append(("llama.cpp", text + (f"; devices: {devices}" if devices else "")))
    if hw.get("fingerprint"):
        rows.append(("Fingerprint", str(hw["fingerprint"])[:16]))
    return rows


def fit_badge(placement: Mapping[str, Any] | None, n_layer: int) -> tuple[str, str]:
    """(badge, kind) for the best placement the planner found; kind picks the badge colour."""
    if placement is None or not placement.get("fits", False):
        return "does not fit", "bad"
    p = Placement.from_record(placement)
    experts = f"experts of {p.experts_on_cpu(n_layer)} layers on CPU" if p.n_cpu_moe else ""
    if p.cpu_only:
        return "CPU only", "cpu"
    if p.all_on_gpu(n_layer):
        if experts:
            return f"on GPU, {experts}", "partial"
        return "all on GPU", "gpu"
    # llama.cpp counts the output layer: n_layer of n_layer + 1 leaves a block on the CPU
    text = f"partial offload {p.offloaded(n_layer)} of {n_layer + 1} layers"
    return text + (f", {experts}" if experts else ""), "partial"


def record_speed(record: Mapping[str, Any]) -> tuple[float | None, str]:
    """(value, text) of a record's tokens/s as shown. A scaled twin (a slice of the model) shows
    its `full_model` figure (predict.full_model, attached by core_api): never the slice's speed;
    a twin's text ends with its `twin_fidelity` band."""
    if record.get("status", "ok") != "ok":
        return None, f"failed ({record.get('status')})"
    # a twin's number carries how far the real file may be from it (core_api attaches it)
    fid = record.get("twin_fidelity")
    band = f" ({fid.short})" if fid is not None else ""
    fig = record.get("full_model")
    if fig is not None:
        return fig.value, fig.short + band
    if record.get("source") == "scaled-twin":
        return None, "no full-model figure"
    value = record.get("avg_ts")
    return (None if value is None else float(value)), fmt_ts(value) + band


def _delta(a: float | None, b: float | None, unit: str) -> str:
    if a is None or b is None:
        return "–"
    if unit == "t/s":
        pct = f" ({(b - a) / a * 100:+.0f}%)" if a else ""
        return f"{b - a:+.2f} t/s{pct}"
    return ("+" if b >= a else "−") + fmt_bytes(abs(b - a))


def compare_runs(
    records_by_run: Mapping[str, list[Mapping[str, Any]]],
) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Side-by-side table: one row per (model, quant, source, placement, test), a column per run;
    a cell is tokens/s (≈ predicted for a scaled twin) and the memory peaks, or the failure.
    With exactly two runs, three more columns: the change in speed, RAM peak and VRAM peak from
    the first run to the second.

    Returns (column titles after the label, [(row label, [cell per column])]).
    """
    runs = list(records_by_run)
    found: dict[str, dict[str, Mapping[str, Any]]] = {}
    for run_id, records in records_by_run.items():
        for r in records:
            source = source_words(str(r.get("source", "")))
            test = str(r.get("test", ""))
            if test == "batch":
                test = f"batch B={r.get('n_parallel', 1)}"
            label = (
                f"{r.get('model_id', '?')} {r.get('quant', '')} ({source}), "
                f"ngl {r.get('n_gpu_layers', 0)}"
                + (f", experts on CPU {r['n_cpu_moe']}" if r.get("n_cpu_moe") else "")
                + f": {test}"
            )
            found.setdefault(label, {})[run_id] = r

    def cell(r: Mapping[str, Any] | None) -> str:
        if r is None:
            return "–"
        _value, text = record_speed(r)
        memory = [
            f"{name} {fmt_bytes(r[key])}"
            for name, key in (("RAM", "ram_peak_bytes"), ("VRAM", "vram_peak_bytes"))
            if r.get(key)
        ]
        return " · ".join([text, *memory])

    pair = len(runs) == 2
    rows = []
    for label, by_run in found.items():
        cells = [cell(by_run.get(run)) for run in runs]
        if pair:
            a, b = (by_run.get(run) for run in runs)
            speed_a = record_speed(a)[0] if a else None
            speed_b = record_speed(b)[0] if b else None
            cells.append(_delta(speed_a, speed_b, "t/s"))
            for key in ("ram_peak_bytes", "vram_peak_bytes"):
                cells.append(_delta((a or {}).get(key), (b or {}).get(key), "bytes"))
        rows.append((label, cells))
    columns = [*runs, "Δ speed", "Δ RAM peak", "Δ VRAM peak"] if pair else runs
    return columns, sorted(rows)


EXPECTED_LABELS = {
    "tg_ts": "Generation (tg)",
    "pp_ts": "Prompt processing (pp)",
    "aggregate_ts": "All sequences together",
    "ttft_ms": "Time to first token",
    "itl_p95_ms": "Inter-token latency p95",
    "vram_bytes": "VRAM",
    "ram_bytes": "RAM",
}
BASIS_SHORT = {"measured-real": "real", "measured-twin": "twin", "predicted": "predicted"}


def metric_text(key: str, value: Any) -> str:
    """A number with the unit its key implies (…_ts tokens/s, …_ms, …_bytes)."""
    if value is None:
        return "–"
    if not isinstance(value, (int, float)):
        return str(value)
    if key.endswith("_ts"):
        return fmt_ts(float(value))
    if key.endswith("_ms"):
        return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms"
    if key.endswith("_bytes"):
        return fmt_bytes(value)
    return f"{value:,.3g}"


def expected_rows(expected: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(label, value with unit, basis words) per expected number; no basis is said as such."""
    rows = []
    for key, entry in expected.items():
        value = entry.get("value") if isinstance(entry, Mapping) else entry
        basis = entry.get("basis") if isinstance(entry, Mapping) else None
        label = EXPECTED_LABELS.get(key, key.replace("_", " "))
        rows.append((label, metric_text(key, value), basis_words(basis)))
    return rows


def choice_text(choice: Mapping[str, Any] | None) -> str:
    if not choice:
        return "No deployment fits this machine with the current settings."
    placement = choice.get("placement") or {}
    where = placement.get("description") if isinstance(placement, Mapping) else None
    parts = [
        str(choice.get("model_name") or choice.get("model_id", "?")),
        str(choice.get("quant", "")),
        str(where or f"ngl {_get(placement, 'n_gpu_layers', default='?')}"),
    ]
    if choice.get("ctx"):
        parts.append(f"context {choice['ctx']} tokens")
    if choice.get("batch"):
        parts.append(f"{choice['batch']} parallel sequence(s)")
    return " · ".join(p for p in parts if p)


def best_feasible(advice: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The best option that runs here when nothing meets the floors ("best_feasible"; the advice
    of issue 18 first called it "below_floor")."""
    for key in ("best_feasible", "below_floor"):
        value = advice.get(key)
        if isinstance(value, Mapping) and value:
            return value
    return None


def no_fit_actions(advice: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(heading, sentence) a person can act on when no deployment meets the floors: the best
    option that runs anyway, the cheapest change, and what each model would need."""
    if advice.get("choice"):
        return []
    out: list[tuple[str, str]] = []
    best = best_feasible(advice)
    if best is not None:
        expected = best.get("expected") or {}
        numbers = ", ".join(
            f"{label.lower()} {value} ({basis})"
            for label, value, basis in expected_rows(
                {k: v for k, v in expected.items() if k in ("tg_ts", "ttft_ms")}
            )
        )
        why = best.get("why") or best.get("reason") or ""
        text = choice_text(best) + (f": {numbers}" if numbers else "")
        out.append(("Best option that runs here", text + (f". {why}" if why else "")))
    change = advice.get("cheapest_change")
    if isinstance(change, Mapping) and change.get("sentence"):
        out.append(("Cheapest change that meets the floors", str(change["sentence"])))
    elif isinstance(change, str) and change:
        out.append(("Cheapest change that meets the floors", change))
    for need in advice.get("hardware_needed") or []:
        if isinstance(need, Mapping) and need.get("sentence"):
            out.append(("What it would take", str(need["sentence"])))
    return out


ALTERNATIVE_COLUMNS = ("Model", "Quant", "Placement", "Batch", "tg", "pp", "TTFT", "VRAM", "RAM")


def alternative_row(alt: Mapping[str, Any]) -> list[str]:
    """One alternative as ALTERNATIVE_COLUMNS cells; each number carries its short basis."""
    expected = alt.get("expected") or {}

    def cell(key: str) -> str:
        entry = expected.get(key)
        if entry is None:
            return "–"
        value = entry.get("value") if isinstance(entry, Mapping) else entry
        basis = entry.get("basis") if isinstance(entry, Mapping) else None
        short = BASIS_SHORT.get(basis or "", basis or "?")
        return f"{metric_text(key, value)} ({short})"

    placement = alt.get("placement") or {}
    where = placement.get("description") if isinstance(placement, Mapping) else str(placement)
    return [
        str(alt.get("model_name") or alt.get("model_id", "?")),
        str(alt.get("quant", "")),
        str(where or ""),
        str(alt.get("batch", "")),
        cell("tg_ts"),
        cell("pp_ts"),
        cell("ttft_ms"),
        cell("vram_bytes"),
        cell("ram_bytes"),
    ]
