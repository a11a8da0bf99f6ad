"""How numbers read in the report: few significant digits, units always stated."""

from __future__ import annotations

from typing import Any

GIB = 1024**3
DASH = "–"  # an absent value, distinct from zero


def num(value: float | None) -> str:
    """Tokens/s and similar: about three significant digits, no thousands separators."""
    if value is None:
        return DASH
    v = float(value)
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def ms(value: float | None) -> str:
    return DASH if value is None else f"{num(value)} ms"


def ts(value: float | None) -> str:
    return DASH if value is None else f"{num(value)} t/s"


def gib(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{float(value) / GIB:.1f} GiB"


def gib_bare(value: float | None) -> str:
    return DASH if value is None else f"{float(value) / GIB:.1f}"


def pct(value: float | None) -> str:
    return DASH if value is None else f"{float(value) * 100:+.0f}%"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return DASH
    s = round(float(seconds))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


ACRONYMS = {
    "cpu": "CPU",
    "gpu": "GPU",
    "gpus": "GPUs",
    "ram": "RAM",
    "vram": "VRAM",
    "isa": "ISA",
    "pcie": "PCIe",
    "kv": "KV",
    "ttft": "TTFT",
    "itl": "ITL",
    "id": "ID",
    "uuid": "UUID",
    "cuda": "CUDA",
    "nvml": "NVML",
    "moe": "MoE",
    "mmlu": "MMLU",
    "mt": "MT",
    "ppl": "perplexity",
    "pp": "pp",
    "tg": "tg",
}
UNIT_SUFFIXES = (
    ("_bytes", ""),
    ("_gbps", ""),
    ("_ms", " (ms)"),
    ("_ts", " (t/s)"),
    ("_pct", ""),
    ("_s", ""),
)


def humanize_key(key: str, *, with_unit: bool = False) -> str:
    """'vram_total_bytes' -> 'VRAM total'. value() puts the unit on the number; with_unit puts
    it in brackets instead, for table headers over bare numbers."""
    suffix = ""
    for ending, shown in UNIT_SUFFIXES:
        if key.endswith(ending) and len(key) > len(ending):
            key, suffix = key[: -len(ending)], shown if with_unit else ""
            break
    words = [ACRONYMS.get(w.lower(), w) for w in key.replace("_", " ").split()]
    if words and words[0] == words[0].lower():
        words[0] = words[0][:1].upper() + words[0][1:]
    return " ".join(words) + suffix


def value(key: str, raw: Any) -> str:
    """A value of a settings or hardware dict, with units inferred from the key's suffix."""
    if raw is None or raw == "":
        return DASH
    if isinstance(raw, bool):
        return "yes" if raw else "no"
    if isinstance(raw, int | float):
        if key.endswith("_ts"):
            return num(raw)
        if key.endswith("_pct"):
            return f"{float(raw):+.1f}%"
        if key.endswith("_bytes"):
            return gib(raw)
        if key.endswith("_gbps"):
            return f"{float(raw):.0f} GB/s"
        if key.endswith("_ms"):
            return ms(raw)
        if key.endswith("_s"):
            return duration(raw)
        return str(raw) if isinstance(raw, int) else num(raw)
    if isinstance(raw, list | tuple):
        return ", ".join(value(key, item) for item in raw) or DASH
    if isinstance(raw, dict):
        return "; ".join(f"{k}: {value(k, v)}" for k, v in raw.items()) or DASH
    return str(raw)


def flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested dict -> (label, text) rows; nested dicts become 'parent / child' labels."""
    rows: list[tuple[str, str]] = []
    for key, raw in data.items():
        label = f"{prefix}{humanize_key(str(key))}"
        if isinstance(raw, dict) and raw:
            rows.extend(flatten(raw, prefix=f"{label} / "))
        else:
            rows.append((label, value(str(key), raw)))
    return rows
