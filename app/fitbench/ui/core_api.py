"""Every core call the app makes, in one place; Qt-free.

The app never reaches into core internals: each function here is a thin call of one core API,
so widgets and the controller stay free of logic and a changed core signature is fixed here
only. A core part that is missing from the installed build raises NotAvailable with words a
person understands, instead of an ImportError traceback.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from fitbench.core import catalog as core_catalog
from fitbench.core.settings import Settings

PARTS = {
    "hardware": "hardware detection",
    "memory": "the memory planner",
    "twin": "twins",
    "gguf": "the GGUF reader",
    "download": "downloads",
    "store": "the results store",
    "advise": "recommendations",
    "report": "the PDF report",
    "bench.runner": "the benchmark runner",
    "bench.quick": "the quick sweep",
    "bench.config": "custom sweeps",
}


class NotAvailable(RuntimeError):
    """A core part this build does not have yet."""


def _core(part: str) -> ModuleType:
    name = f"fitbench.core.{part}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise NotAvailable(f"{PARTS.get(part, part)} is not available in this build") from None
        raise


# -- machine ---------------------------------------------------------------------------------
def detect_hardware() -> dict[str, Any]:
    return dict(_core("hardware").detect(probe_bandwidth=False).to_dict())


def load_catalog() -> core_catalog.Catalog:
    return core_catalog.load()


def model_names(catalog: core_catalog.Catalog) -> dict[str, str]:
    return {m.id: m.name for m in catalog.models}


# -- models: fit badge and compatibility before download --------------------------------------
def _best_placement(placements: Sequence[Any]) -> Any | None:
    """The planner's candidates are ordered; the first that fits with headroom is the best."""
    fitting = [p for p in placements if _field(p, "fits")]
    return fitting[0] if fitting else None


def _field(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    return dict(vars(obj))


def plan_quant(
    model: core_catalog.Model, quant: str, hardware: Mapping[str, Any], settings: Settings
) -> dict[str, Any]:
    """The models-table row for one quant: size, best placement, fit badge, compatibility."""
    from fitbench.ui import present

    row: dict[str, Any] = {
        "model_id": model.id,
        "name": model.name,
        "quant": quant,
        "size": model.quant(quant).size,
        "local_path": local_file(model, quant),
    }
    manifest = _core("twin").manifest_for(model, quant)
    compat = _core("gguf").check_compatibility(manifest)
    row["compatible"] = bool(compat.ok)
    row["compat_reason"] = "; ".join(compat.reasons) or "the installed llama.cpp loads this file"
    memory = _core("memory")
    placements = memory.candidate_placements(
        manifest,
        hardware,
        ctx=settings.ctx,
        vram_headroom_pct=settings.vram_headroom_pct,
        ram_headroom_gib=settings.ram_headroom_gib,
    )
    best = _best_placement(placements)
    best_dict = _as_dict(best) if best is not None else None
    badge, kind = present.fit_badge(best_dict, model.arch.n_layer)
    row["badge"], row["badge_kind"] = badge, kind
    if best_dict is not None:
        row["badge_reason"] = (
            f"needs {present.fmt_bytes(best_dict.get('vram_bytes'))} VRAM and "
            f"{present.fmt_bytes(best_dict.get('ram_bytes'))} RAM at {settings.ctx} tokens "
            f"of context (planned, before download)"
        )
    else:
        least = min(placements, key=lambda p: _field(p, "ram_bytes", 0), default=None)
        row["badge_reason"] = str(
            _field(least, "reason")
            or (
                f"even on the CPU it needs {present.fmt_bytes(_field(least, 'ram_bytes'))} RAM "
                f"beyond the headroom you keep free"
                if least is not None
                else "no placement was planned"
            )
        )
    return row


def plan_catalog(
    catalog: core_catalog.Catalog, hardware: Mapping[str, Any], settings: Settings
) -> Iterator[dict[str, Any]]:
    """One row per (model, quant); a quant that cannot be planned still gets a row saying why."""
    for model in catalog.models:
        for q in model.quants:
            try:
                yield plan_quant(model, q.quant, hardware, settings)
            except NotAvailable as exc:
                yield _unplanned(model, q.quant, f"not planned: {exc}")
            except Exception as exc:  # one bad entry must not hide the others
                yield _unplanned(model, q.quant, f"cannot plan: {exc}")


def _unplanned(model: core_catalog.Model, quant: str, reason: str) -> dict[str, Any]:
    return {
        "model_id": model.id,
        "name": model.name,
        "quant": quant,
        "size": model.quant(quant).size,
        "badge": "unknown",
        "badge_kind": "",
        "badge_reason": reason,
        "compatible": None,
        "compat_reason": reason,
        "local_path": local_file(model, quant),
    }


def local_file(model: core_catalog.Model, quant: str) -> str | None:
    try:
        path = _core("download").local_path(model, quant)
    except (NotAvailable, AttributeError):
        return None
    return str(path) if path else None


# -- downloads -------------------------------------------------------------------------------
def download(
    model_id: str,
    quant: str,
    progress: Callable[[dict[str, Any]], None],
    cancel: threading.Event,
) -> Path:
    """Download (or resume) one catalog quant; progress gets done/total bytes, rate and ETA."""
    dl = _core("download")
    model = load_catalog().get(model_id)

    def on_progress(p: Any) -> None:
        progress(_as_dict(p))

    return Path(dl.download_model(model, quant, progress=on_progress, cancel=cancel))


# -- benchmark -------------------------------------------------------------------------------
def quick_configs(hardware: Mapping[str, Any], settings: Settings) -> list[Any]:
    return list(_core("bench.quick").quick_configs(hardware=hardware, catalog=load_catalog()))


def custom_configs(params: Mapping[str, Any], hardware: Mapping[str, Any]) -> list[Any]:
    return list(_core("bench.config").build_configs(catalog=load_catalog(), **params))


def run_sweep(configs: Sequence[Any], cancel: threading.Event) -> Iterator[Any]:
    runner = _core("bench.runner")
    store = _core("store")
    return runner.run_sweep(list(configs), store=store.open_store(), cancel=cancel)


# -- advice, report, history -----------------------------------------------------------------
def recommend(
    records: Sequence[Mapping[str, Any]], hardware: Mapping[str, Any], settings: Settings
) -> dict[str, Any]:
    advice = _core("advise").recommend(
        list(records), hardware=dict(hardware), catalog=load_catalog(), goal=settings.goal
    )
    return _as_dict(advice)


@dataclass
class RunOutcome:
    """What the one-click flow hands to the Recommendation panel and the PDF export."""

    run_id: str
    records: list[dict[str, Any]]
    hardware: dict[str, Any]
    advice: dict[str, Any] | None
    samples: list[dict[str, Any]] = field(default_factory=list)
    advice_error: str = ""


def export_pdf(outcome: RunOutcome, path: Path) -> Path:
    report = _core("report")
    model = report.build_report(
        outcome.records,
        outcome.advice,
        outcome.hardware,
        samples=outcome.samples,
        run_meta={"run_id": outcome.run_id},
    )
    report.write_pdf(model, path)
    return path


def list_runs() -> list[dict[str, Any]]:
    return [_as_dict(r) for r in _core("store").list_runs()]


def run_records(run_id: str) -> list[dict[str, Any]]:
    return [dict(r) for r in _core("store").records(run_id=run_id)]
