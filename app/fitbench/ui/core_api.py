"""Every core call the app makes, in one place; Qt-free.

The app never reaches into core internals: each function here is a thin call of one core API,
so widgets and the controller stay free of logic and a changed core signature is fixed here
only. The imports are static, so mypy and the import-layer test see the GUI/core boundary.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fitbench.core import gguf, paths
from fitbench.core import report as core_report
from fitbench.core.advise import recommend as advise
from fitbench.core.bench import config as bench_config
from fitbench.core.bench import quick as bench_quick
from fitbench.core.bench import runner as bench_runner
from fitbench.core.bench.config import BenchConfig
from fitbench.core.bench.models import quant_from_name
from fitbench.core.download import hub as core_download
from fitbench.core.hardware import detect as core_hardware
from fitbench.core.hardware import gpu_specs
from fitbench.core.model import catalog as core_catalog
from fitbench.core.plan import search as core_search
from fitbench.core.plan.margin import VramMargin, margin_of
from fitbench.core.predict import full_model as core_full_model
from fitbench.core.results import store as core_store
from fitbench.core.results.schema import write_jsonl
from fitbench.core.settings import Settings
from fitbench.core.twin import fidelity as core_fidelity
from fitbench.core.twin import resolve
from fitbench.ui import present


def vram_margin(settings: Settings) -> VramMargin:
    """The VRAM a placement leaves free: the planner's margin, or the user's percentage."""
    pct = settings.vram_headroom_pct
    return margin_of(None) if pct == 0 else VramMargin.percent(pct)


def margin_words(settings: Settings) -> str:
    return vram_margin(settings).words()


# -- machine ---------------------------------------------------------------------------------
def detect_hardware() -> dict[str, Any]:
    return dict(core_hardware.detect(probe_bandwidth=False).to_dict())


def load_catalog() -> core_catalog.Catalog:
    return core_catalog.load()


def model_names(catalog: core_catalog.Catalog) -> dict[str, str]:
    return {m.id: m.name for m in catalog.models}


# -- models: fit badge and compatibility before download --------------------------------------
def _capacity(hardware: Mapping[str, Any]) -> tuple[list[int], int]:
    """VRAM per GPU and usable (cgroup-aware) RAM, as the hardware report computes them."""
    memory = core_hardware.MachineMemory.of(hardware)
    return list(memory.gpu_vram_bytes), memory.usable_ram_bytes


# where a catalog quant's manifest came from, in the models table's words
_QUANT_WORDS = {
    resolve.ManifestSource.FILE: "the downloaded file's header",
    resolve.ManifestSource.REMOTE: "the Hub file's header",
    resolve.ManifestSource.BUILTIN: (
        "the built-in manifest (checked again on the Hub file before download)"
    ),
}


def plan_quant(
    model: core_catalog.Model, quant: str, hardware: Mapping[str, Any], settings: Settings
) -> dict[str, Any]:
    """The models-table row for one quant: size, best placement, fit badge, compatibility.

    The manifest is the downloaded file's header when there is one, else the built-in manifest
    (exact tensor shapes and types from the quantization rules); the download checks the real
    file's header again before fetching any tensor data.
    """
    found = resolve.of_quant(model, quant)
    manifest = found.manifest
    row: dict[str, Any] = {
        "model_id": model.id,
        "name": model.name,
        "quant": quant,
        "size": model.quant(quant).size or manifest.file_size,
        "local_path": str(found.path) if found.path else None,
    }
    return _plan_manifest(row, manifest, _QUANT_WORDS[found.source], hardware, settings)


def _plan_manifest(
    row: dict[str, Any],
    manifest: gguf.ModelManifest,
    manifest_words: str,
    hardware: Mapping[str, Any],
    settings: Settings,
) -> dict[str, Any]:
    """Compatibility, best placement and fit badge of one manifest, added to `row`."""
    compat = gguf.check_compatibility(manifest)
    row.update(
        compatible=bool(compat.ok),
        compat_reason="; ".join(compat.reasons)
        or f"the installed llama.cpp loads this model ({manifest_words})",
    )
    row.setdefault("downloadable", bool(compat.ok))
    gpus, ram = _capacity(hardware)
    plans = core_search.candidate_placements(
        manifest,
        gpus,
        ram,
        n_ctx=settings.ctx,
        vram_headroom=vram_margin(settings),
        ram_headroom_bytes=int(settings.ram_headroom_gib * present.GIB),
    )
    best = core_search.best_fitting(plans)
    n_layer = manifest.n_layer
    if best is not None:
        data = best.to_dict(n_layer)
        row["badge"], row["badge_kind"] = present.fit_badge(data, n_layer)
        vram = f"{present.fmt_bytes(data['vram_bytes'])} VRAM and " if data["vram_bytes"] else ""
        row["badge_reason"] = (
            f"{data['label']}: needs {vram}{present.fmt_bytes(data['ram_bytes'])} RAM with "
            f"{settings.ctx} tokens of context (predicted by the memory planner, before download)"
        )
    else:
        row["badge"], row["badge_kind"] = present.fit_badge(None, n_layer)
        cpu_only = plans[0] if plans else None
        row["badge_reason"] = (
            f"even the least demanding placement does not fit: {cpu_only.reason} "
            f"(keeping {margin_words(settings)} of VRAM and {settings.ram_headroom_gib:g} GiB "
            "RAM free; change the headroom above)"
            if cpu_only is not None
            else "no placement was planned"
        )
    return row


def plan_catalog(
    catalog: core_catalog.Catalog, hardware: Mapping[str, Any], settings: Settings
) -> Iterator[dict[str, Any]]:
    """One row per (model, quant), then one per model the user added; an entry that cannot be
    planned still gets a row saying why."""
    for model in catalog.models:
        for q in model.quants:
            try:
                yield plan_quant(model, q.quant, hardware, settings)
            except Exception as exc:  # one bad entry must not hide the others
                yield _unplanned(model, q.quant, f"cannot plan: {exc}")
    for spec in settings.added_models:
        yield plan_added(spec, hardware, settings)


def is_local_spec(spec: str) -> bool:
    """A model the user gave as a path (it may have moved since), not as a Hub owner/repo/file."""
    return not spec.startswith("hf://") and (
        spec.startswith(("/", "~", ".")) or Path(spec).expanduser().exists()
    )


def sweep_choices(catalog: core_catalog.Catalog, settings: Settings) -> list[tuple[str, str]]:
    """(spec, name) of what a custom sweep can measure: catalog models, then added local files
    (a model added from the Hub is planned only; FitBench downloads catalog models)."""
    added = [
        (str(Path(spec).expanduser()), f"{Path(spec).name} (added)")
        for spec in settings.added_models
        if is_local_spec(spec)
    ]
    return [(m.id, m.name) for m in catalog.models] + added


def plan_added(spec: str, hardware: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    """The models-table row of a model added by the user: a local GGUF path, or owner/repo/file
    on the Hub (only its header is read). Ad-hoc entries are planned, not downloaded here."""
    local = is_local_spec(spec)
    name = Path(spec).name
    row: dict[str, Any] = {
        "model_id": spec,
        "name": f"{name} (added)",
        "quant": quant_from_name(name) or "?",
        "size": None,
        "local_path": str(Path(spec).expanduser()) if local else None,
        "downloadable": False,
    }
    try:
        if local:
            manifest = resolve.of_file(spec).manifest
            words = "this file's header"
        else:
            parts = spec.removeprefix("hf://").split("/")
            manifest = resolve.of_hub_file("/".join(parts[:2]), "/".join(parts[2:])).manifest
            words = "the Hub file's header; FitBench downloads catalog models only"
        row["size"] = manifest.file_size
        if row["quant"] == "?":
            row["quant"] = str(manifest.extra.get("quant") or "?")
        return _plan_manifest(row, manifest, words, hardware, settings)
    except Exception as exc:  # a moved file or a broken header: say so in its row
        reason = f"cannot plan {spec}: {exc}"
        return row | {
            "badge": "unknown",
            "badge_kind": "",
            "badge_reason": reason,
            "compatible": None,
            "compat_reason": reason,
        }


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
        "local_path": None,
    }


# -- downloads -------------------------------------------------------------------------------
def download(
    model_id: str,
    quant: str,
    progress: Callable[[dict[str, Any]], None],
    cancel: threading.Event,
) -> Path:
    """Download (or resume) one catalog quant; progress gets done/total bytes, rate and ETA."""
    dl = core_download

    def on_progress(p: Any) -> None:
        progress(
            {
                "phase": p.phase,
                "done_bytes": p.done,
                "total_bytes": p.total,
                "rate_bps": p.rate,
                "eta_s": p.eta_s,
            }
        )

    result = dl.download_quant(model_id, quant, progress=on_progress, cancel=cancel)
    return Path(result.path)


# -- benchmark -------------------------------------------------------------------------------
def quick_plan(
    hardware: Mapping[str, Any],
    settings: Settings,
    cancel: threading.Event | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[list[Any], list[str]]:
    """The quick sweep's configs (twins written now, cached) and a note per model on its file."""

    started: dict[str, float] = {}

    def on_progress(what: str, done: int, total: int) -> None:
        if progress is None:
            return
        now = time.monotonic()
        t0 = started.setdefault(what, now)
        share = f" ({100 * done / total:.0f}%" if total else ""
        if total and done and now - t0 > 1.0:  # time left from the rate so far
            left = (now - t0) * (total - done) / done
            share += f", about {present.fmt_duration(left)} left"
        progress(f"Preparing: {what}{share}{')' if total else ''}")

    plan = bench_quick.quick_plan(
        dict(hardware),
        load_catalog(),
        progress=on_progress,
        cancel=cancel,
        n_threads=settings.threads or None,
    )
    return list(plan.configs), list(plan.notes)


def quick_configs(hardware: Mapping[str, Any], settings: Settings) -> list[Any]:
    return quick_plan(hardware, settings)[0]


def custom_configs(params: Mapping[str, Any], settings: Settings) -> list[BenchConfig]:
    """The advanced panel's sweep, built by the builder of `fitbench bench`."""
    return bench_config.build_configs(
        models=params["models"],
        twin_layers=params.get("twin_layers"),
        n_prompt=[params["n_prompt"]],
        n_gen=[params["n_gen"]],
        batch=params.get("batch") or (),
        repetitions=params.get("repetitions", 2),
        n_gpu_layers=params.get("n_gpu_layers") or [0],
        n_cpu_moe=params.get("n_cpu_moe") or [0],
        n_threads=[settings.threads] if settings.threads else [],
    )


def run_sweep(
    configs: Sequence[Any], cancel: threading.Event, hardware: Mapping[str, Any]
) -> Iterator[Any]:
    """The runner's events; the store stays open for the sweep and is closed after it."""
    runner = bench_runner
    store = core_store.open_store()
    try:
        yield from runner.run_sweep(
            list(configs),
            store=store,
            cancel=cancel,
            hardware=dict(hardware) or None,
            hardware_fingerprint=str(hardware.get("fingerprint", "")),
            settings={"source": "gui"},
        )
    finally:
        store.close()


# -- what-if hardware: this machine with other GPUs -------------------------------------------
WHAT_IF_KEY = "what_if"  # advise's marker of what-if hardware: {"reference": hw, "cards": [...]}
# pairs people build from two consumer cards; every single card of the table follows
WHAT_IF_COMMON = ("RTX 4090", "2x RTX 3090", "2x RTX 4090", "RTX 3090")


def what_if_choices() -> list[str]:
    """GPU specs for the what-if picker: common ones first, then every card of the GPU table."""
    shown = {gpu_specs.lookup(spec).name for spec in WHAT_IF_COMMON if "x " not in spec}
    names = [spec.name for spec in gpu_specs.gpu_table() if spec.name not in shown]
    return [*WHAT_IF_COMMON, *names]


def what_if_hardware(hardware: Mapping[str, Any], spec: str) -> dict[str, Any]:
    """This machine with its GPUs replaced by the cards `spec` names ("RTX 4090", "2x RTX
    3090"): VRAM, bandwidth and PCIe from the GPU table, CPU and RAM kept, the machine itself
    kept as the reference its calibration comes from. Raises ValueError for an unknown card."""
    cards = gpu_specs.parse_gpu_spec(spec)
    try:  # the advice's own builder where it exists (it scales the calibration by card ratios)
        from fitbench.core.predict import speeds

        build = getattr(speeds, "what_if_hardware", None)
    except ImportError:
        build = None
    if build is not None:
        out: dict[str, Any] = dict(build(hardware, cards))
    else:
        reference = dict(hardware.get(WHAT_IF_KEY, {}).get("reference") or hardware)
        out = {
            **reference,
            "gpus": [
                {
                    "index": i,
                    "name": card.name,
                    "vram_total_bytes": card.vram_bytes,
                    "vram_free_bytes": card.vram_bytes,
                    "bandwidth_gbps": card.bandwidth_gbs,
                    "pcie": {"bandwidth_gbps": card.pcie_gbs} if card.pcie_gbs else {},
                }
                for i, card in enumerate(cards)
            ],
            "llama_cpp": {**(reference.get("llama_cpp") or {}), "gpu_offload": bool(cards)},
            WHAT_IF_KEY: {"reference": reference, "cards": [card.name for card in cards]},
        }
    out.setdefault(WHAT_IF_KEY, {"reference": dict(hardware), "cards": [c.name for c in cards]})
    out[WHAT_IF_KEY]["label"] = spec
    return out


def what_if_label(hardware: Mapping[str, Any] | None) -> str:
    """'2x RTX 3090' for what-if hardware, '' for a detected machine."""
    what_if = (hardware or {}).get(WHAT_IF_KEY)
    if not isinstance(what_if, Mapping):
        return ""
    return str(what_if.get("label") or " + ".join(what_if.get("cards") or []))


# -- scaled twins: the full model's figure, never the slice's speed ---------------------------
def is_scaled(record: Mapping[str, Any]) -> bool:
    return core_full_model.is_scaled(record)


def full_model_figures(
    records: Sequence[Mapping[str, Any]], hardware: Mapping[str, Any] | None
) -> list[core_full_model.FullModelFigure | None]:
    return core_full_model.full_model_figures(records, hardware)


# -- twins: how far the real file may be from a twin's number --------------------------------


def twin_fidelity(record: Mapping[str, Any]) -> core_fidelity.Fidelity | None:
    return core_fidelity.record_fidelity(record, core_catalog.load_once_or_none())


# -- advice, report, history -----------------------------------------------------------------
def recommend(
    records: Sequence[Mapping[str, Any]], hardware: Mapping[str, Any], settings: Settings
) -> dict[str, Any]:
    advice = advise.recommend(
        list(records),
        hardware=dict(hardware),
        catalog=load_catalog(),
        goal=settings.goal,
        ctx=settings.ctx,
        vram_headroom=vram_margin(settings),
        ram_headroom_bytes=int(settings.ram_headroom_gib * 1024**3),
    )
    return dict(advice.to_dict())


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
    """The same path as `fitbench report`: results file + advice -> PDF with the raw JSONL."""
    report = core_report
    results_file = paths.cache_dir() / f"gui-{outcome.run_id or 'run'}.jsonl"
    results_file.unlink(missing_ok=True)
    write_jsonl(outcome.records, results_file)
    try:
        written = report.report_from_results_file(
            results_file,
            path,
            advice=outcome.advice,
            hardware=outcome.hardware or None,
            samples=outcome.samples,
            compute=False,
        )
    finally:
        results_file.unlink(missing_ok=True)
    return Path(written.pdf)


def list_runs() -> list[dict[str, Any]]:
    out = []
    for run in core_store.list_runs():
        out.append(
            {
                "run_id": run.run_id,
                "started": run.started,
                "status": run.status,
                "n_records": run.n_records,
                "hardware": run.hardware_fingerprint[:12],
            }
        )
    return out


def run_records(run_id: str) -> list[dict[str, Any]]:
    return [dict(r) for r in core_store.records(run_id)]


# -- serving (the Serving view) ----------------------------------------------------------------
def serve_and_load(
    spec: str,
    *,
    levels: Sequence[int],
    prompt_tokens: int,
    max_tokens: int,
    n_gpu_layers: int,
    cancel: threading.Event,
    on_level: Callable[[dict[str, Any]], None],
    on_status: Callable[[str], None],
    on_partial: Callable[[dict[str, Any]], None] | None = None,
    quant: str | None = None,
) -> dict[str, Any]:
    """Start llama-server on `spec` (a catalog id or a GGUF path) with -ngl n_gpu_layers, run
    the load levels, stop it; each level is stored and passed to on_level as it ends."""
    from fitbench.core.bench.models import resolve as resolve_model
    from fitbench.core.serve import session
    from fitbench.core.serve.loadgen import LoadConfig

    model = resolve_model(spec, quant)
    config = LoadConfig(
        concurrency=tuple(levels),
        requests=4,
        requests_per_user=2,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        timeout_s=120.0,
    )
    target = session.ServeTarget(
        model_path=model.path,
        model_id=model.model_id,
        quant=model.quant,
        source=model.source,
        n_layer=model.n_layer_model,
        n_gpu_layers=n_gpu_layers,
    )
    hardware = core_hardware.detect(probe_bandwidth=False, llama=False)
    deployment = {"source": model.source, "model_id": model.model_id}
    catalog = core_catalog.load_once_or_none()
    on_gpu = bool(hardware.gpus) and n_gpu_layers != 0

    def with_basis(level: dict[str, Any]) -> dict[str, Any]:
        """Each level says what its numbers are: the real file, or a twin and its band."""
        users = int(level.get("concurrency") or 1)
        fid = core_fidelity.served_fidelity(deployment, users, catalog, on_gpu=on_gpu)
        basis = "real file" if fid is None else f"twin ({fid.short})"
        return {**level, "basis": basis, "basis_detail": "" if fid is None else fid.text}

    return session.serve_and_load(
        target,
        config,
        log_path=paths.log_dir() / "llama-server-gui.log",
        hardware_fingerprint=hardware.fingerprint,
        on_level=lambda level: on_level(with_basis(level)),
        on_partial=None if on_partial is None else (lambda level: on_partial(with_basis(level))),
        on_status=on_status,
        cancel=cancel,
    )


def compare_records(
    run_ids: Sequence[str], hardware: Mapping[str, Any] | None
) -> dict[str, list[dict[str, Any]]]:
    """Each run's records, a scaled twin's with its full-model figure under "full_model"
    (calibrated per run: a run is one machine's measurements) and every twin's caveat under
    "twin_fidelity"."""
    out = {}
    for run_id in run_ids:
        records = run_records(run_id)
        same_machine = {str(r.get("hardware_fingerprint") or "") for r in records} <= {
            "",
            str((hardware or {}).get("fingerprint") or ""),
        }
        figures = full_model_figures(records, hardware if same_machine else None)
        out[run_id] = [
            {**r, "full_model": f, "twin_fidelity": twin_fidelity(r)}
            for r, f in zip(records, figures, strict=True)
        ]
    return out
