"""The state of a running sweep, built from the runner's events; Qt-free.

The job forwards events here on the GUI thread; the plots and the results table read it from a
timer (10-30 Hz) and redraw only when `version` moved. Nothing here measures or decides: it keeps
what the runner reported and arranges it for display.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fitbench.core.bench import events as ev
from fitbench.core.plan.placement import Placement, record_n_layer
from fitbench.core.predict.full_model import FullModelFigure
from fitbench.core.twin.fidelity import Fidelity, widest
from fitbench.ui import core_api, present

SCALED_SUFFIX = "≈ full model (from a scaled twin)"


@dataclass
class ConfigRow:
    config_id: str
    label: str
    status: str = "running"  # running | ok | oom | crash | error | timeout | cancelled
    error: str = ""
    source: str = ""
    pp_ts: float | None = None
    tg_ts: float | None = None
    ttft_ms: float | None = None
    ram_peak_bytes: int | None = None
    vram_peak_bytes: int | None = None
    # a scaled twin: pp_ts/tg_ts are the slice's speeds, shown only as detail; these are the
    # full model's predicted figures, shown as the numbers
    scaled: bool = False
    tick: str = ""  # a few words for a plot axis: 'Mixtral 8x7B · CPU ≈'
    pp_full: FullModelFigure | None = None
    tg_full: FullModelFigure | None = None
    # a twin's: how far the real file's pp / tg may be from the numbers shown
    pp_fidelity: Fidelity | None = None
    tg_fidelity: Fidelity | None = None

    def speed(self, test: str) -> float | None:
        """The tokens/s a display shows: the full model's figure for a scaled twin."""
        if self.scaled:
            fig = self.pp_full if test == "pp" else self.tg_full
            return None if fig is None else fig.value
        return self.pp_ts if test == "pp" else self.tg_ts

    def speed_text(self, test: str) -> str:
        if not self.scaled:
            return present.fmt_ts(self.pp_ts if test == "pp" else self.tg_ts)
        fig = self.pp_full if test == "pp" else self.tg_full
        raw = self.pp_ts if test == "pp" else self.tg_ts
        if fig is None:
            return "–" if raw is None else "predicting…"
        return fig.short

    @property
    def ttft_text(self) -> str:
        if self.ttft_ms is None:
            return "–"
        # a slice answers sooner than the full model: its time is detail, never the figure
        return f"– (slice {self.ttft_ms:.0f} ms)" if self.scaled else f"{self.ttft_ms:.0f} ms"

    @property
    def fidelity(self) -> Fidelity | None:
        """The row's twin caveat: the wider of its pp and tg bands."""
        return widest((self.pp_fidelity, self.tg_fidelity))

    def fidelity_text(self, test: str | None = None) -> str:
        """The caveat for a tooltip: one test's ("pp", "tg"), or every distinct one of the row."""
        found = {"pp": [self.pp_fidelity], "tg": [self.tg_fidelity]}.get(
            test or "", [self.pp_fidelity, self.tg_fidelity]
        )
        return "\n".join(dict.fromkeys(f.text for f in found if f is not None))

    @property
    def measured_on(self) -> str:
        """Which file (for a twin, how far the real file may be), and for a scaled twin what its
        slice measured (the raw speeds)."""
        words = present.source_words(self.source)
        if self.fidelity is not None:
            words = f"{words} ({self.fidelity.short})"
        fig = self.tg_full or self.pp_full
        if not self.scaled or fig is None:
            return words
        parts = [
            f"{name} {present.fmt_ts(value)}"
            for name, value in (("pp", self.pp_ts), ("tg", self.tg_ts))
            if value is not None
        ]
        return f"{words}: {fig.slice_words} measured " + ", ".join(parts)

    @property
    def status_words(self) -> str:
        if self.status == "ok":
            return "done"
        if self.status == "running":
            return "running…"
        return f"failed ({self.status}): {self.error}" if self.error else f"failed ({self.status})"


@dataclass
class Series:
    xs: list[float] = field(default_factory=list)
    ys: list[float] = field(default_factory=list)


class SweepModel:
    def __init__(self, model_names: Mapping[str, str] | None = None) -> None:
        self.model_names = dict(model_names or {})
        # the machine the sweep runs on: the priors of the full-model extrapolation
        self.hardware: dict[str, Any] = {}
        self.reset()

    def reset(self) -> None:
        self.version = 0
        self.run_id = ""
        self.total = 0
        self.index = -1
        self.current_label = ""
        self.remaining_s: float | None = None
        self.stage = ""
        self.notes: list[str] = []
        self.rows: dict[str, ConfigRow] = {}
        self.records: list[dict[str, Any]] = []
        self.figures: list[FullModelFigure | None] = []  # aligned with records
        self.t: list[float] = []
        self.vram_gib: list[float] = []
        self.ram_gib: list[float] = []
        self.finished: ev.SweepFinished | None = None
        self._remaining_at = time.monotonic()

    # -- events in ---------------------------------------------------------------------------
    def set_stage(self, text: str) -> None:
        self.stage = text
        self.version += 1

    def add_note(self, text: str) -> None:
        self.notes.append(text)
        self.version += 1

    def apply(self, event: Any) -> None:
        if isinstance(event, ev.SweepStarted):
            self.run_id = event.run_id
            self.total = event.total_configs
            self._set_remaining(event.estimated_s)
        elif isinstance(event, ev.ConfigStarted):
            self.index, self.total = event.index, event.total
            self.current_label = event.label
            self._set_remaining(event.remaining_s)
            self.rows[event.config_id] = ConfigRow(event.config_id, event.label)
        elif isinstance(event, ev.Sample):
            self.t.append(event.t_s)
            self.vram_gib.append((event.vram_bytes or 0) / present.GIB)
            self.ram_gib.append(event.ram_bytes / present.GIB)
        elif isinstance(event, ev.RecordReady):
            self._add_record(event.record)
        elif isinstance(event, ev.ConfigFailed):
            row = self.rows.setdefault(event.config_id, ConfigRow(event.config_id, event.label))
            row.status, row.error = event.status, event.error
        elif isinstance(event, ev.SweepFinished):
            self.finished = event
            self.run_id = event.run_id or self.run_id
            for row in self.rows.values():
                if row.status == "running":
                    row.status = "cancelled" if event.cancelled else "ok"
        else:
            return
        self.version += 1

    def _set_remaining(self, seconds: float | None) -> None:
        self.remaining_s = seconds
        self._remaining_at = time.monotonic()

    def _add_record(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        cid = str(record.get("config_id", ""))
        row = self.rows.setdefault(cid, ConfigRow(cid, self.config_label(record)))
        row.source = str(record.get("source", ""))
        row.scaled = core_api.is_scaled(record)
        row.tick = self.tick_label(record)
        self.figures.append(None)
        if row.scaled:
            self._extrapolate()
        if record.get("status", "ok") != "ok":
            row.status, row.error = str(record["status"]), str(record.get("error", ""))
            return
        test = record.get("test")
        if test == "pp":
            row.pp_ts = record.get("avg_ts")
            row.pp_fidelity = core_api.twin_fidelity(record)
        elif test == "tg" and int(record.get("n_parallel") or 1) == 1:
            row.tg_ts = record.get("avg_ts")
            row.tg_fidelity = core_api.twin_fidelity(record)
        if record.get("ttft_ms") is not None:
            row.ttft_ms = record["ttft_ms"]
        for key in ("ram_peak_bytes", "vram_peak_bytes"):
            value = record.get(key)
            if value is not None:
                setattr(row, key, max(value, getattr(row, key) or 0))

    def _extrapolate(self) -> None:
        """Full-model figures of every scaled-twin record, the predictor calibrated on all
        results so far (a few ms once the model's costs are cached)."""
        self.figures = core_api.full_model_figures(self.records, self.hardware)
        for record, fig in zip(self.records, self.figures, strict=True):
            if fig is None:
                continue
            row = self.rows.get(str(record.get("config_id", "")))
            if row is None:
                continue
            if fig.kind == "pp":
                row.pp_full = fig
            elif fig.kind == "tg" and int(record.get("n_parallel") or 1) == 1:
                row.tg_full = fig

    def display_ts(self, index: int) -> float | None:
        """Tokens/s of records[index] as shown: never a scaled twin's slice speed."""
        record = self.records[index]
        if core_api.is_scaled(record):
            fig = self.figures[index] if index < len(self.figures) else None
            return None if fig is None else fig.value
        value = record.get("avg_ts")
        return None if value is None else float(value)

    # -- views out ---------------------------------------------------------------------------
    def model_label(self, record: Mapping[str, Any]) -> str:
        model_id = str(record.get("model_id", "?"))
        name = self.model_names.get(model_id, model_id)
        source = str(record.get("source", ""))
        name = present.short_model_name(name)
        if core_api.is_scaled(record):
            return f"{name} {SCALED_SUFFIX}"
        return name if source == "real" else f"{name} ({present.source_words(source)})"

    def is_scaled_label(self, label: str) -> bool:
        return label.endswith(SCALED_SUFFIX)

    def tick_label(self, record: Mapping[str, Any]) -> str:
        """Short enough for a bar's axis label: model, where it ran, ≈ when predicted."""
        model_id = str(record.get("model_id", "?"))
        name = present.short_model_name(self.model_names.get(model_id, model_id))
        p = Placement.from_record(record)
        n_layer = record_n_layer(record)
        if p.cpu_only:
            where = "CPU"
        elif p.all_on_gpu(n_layer):
            where = "GPU" + (" (experts CPU)" if p.n_cpu_moe else "")
        else:
            where = f"{p.gpu_share(n_layer):.0f}% GPU"
        if core_api.is_scaled(record):
            return f"{name} · {where} ≈"
        twin = "" if record.get("source") == "real" else " (twin)"
        return f"{name}{twin} · {where}"

    def config_label(self, record: Mapping[str, Any]) -> str:
        model_id = str(record.get("model_id", "?"))
        name = self.model_names.get(model_id, model_id)
        source = str(record.get("source", ""))
        what = "" if source == "real" else f" ({present.source_words(source)})"
        return f"{name} {record.get('quant', '')}{what}, ngl {record.get('n_gpu_layers', 0)}"

    def progress_text(self) -> str:
        if self.finished is not None:
            f = self.finished
            what = "cancelled" if f.cancelled else "finished"
            return (
                f"Sweep {what}: {f.n_records} results, {f.n_failed} failed configurations, "
                f"{present.fmt_duration(f.duration_s)}."
            )
        if self.index < 0:
            return self.stage or "Starting…"
        left = None
        if self.remaining_s is not None:
            left = max(0.0, self.remaining_s - (time.monotonic() - self._remaining_at))
        text = f"Configuration {self.index + 1} of {self.total}: {self.current_label}"
        return text + (f" — about {present.fmt_duration(left)} left" if left is not None else "")

    @property
    def fraction_done(self) -> float:
        if self.finished is not None:
            return 1.0
        if self.total <= 0 or self.index < 0:
            return 0.0
        return self.index / self.total

    def ts_per_config(self) -> tuple[list[str], list[float], list[float]]:
        """Short labels and (pp, tg) tokens/s of every configuration with a result, in run
        order; a scaled twin's are the full model's predicted figures."""
        labels, pp, tg = [], [], []
        for row in self.rows.values():
            if row.pp_ts is None and row.tg_ts is None:
                continue
            labels.append(row.tick or row.label)
            pp.append(row.speed("pp") or 0.0)
            tg.append(row.speed("tg") or 0.0)
        return labels, pp, tg

    def speed_tooltip(self) -> str:
        """Every bar of the speed plot in full: configuration, shown numbers, slice detail."""
        lines = []
        for row in self.rows.values():
            if row.pp_ts is None and row.tg_ts is None:
                continue
            line = f"{row.label}: pp {row.speed_text('pp')}, tg {row.speed_text('tg')}"
            fig = row.tg_full or row.pp_full
            lines.append(line + (f" ({row.measured_on})" if row.scaled and fig else ""))
            if row.fidelity is not None:
                lines.append(f"    {row.fidelity.text}")
        return "\n".join(lines)

    def _curves(self, test: str, x_of: Any) -> dict[str, Series]:
        points: dict[str, dict[float, float]] = {}
        for i, r in enumerate(self.records):
            if r.get("status", "ok") != "ok" or r.get("test") != test:
                continue
            x, y = x_of(r), self.display_ts(i)
            if x is None or y is None:
                continue
            points.setdefault(self.model_label(r), {})[x] = y
        out: dict[str, Series] = {}
        for label, by_x in points.items():
            xs = sorted(by_x)
            out[label] = Series(xs, [by_x[x] for x in xs])
        return out

    def tg_vs_offload(self) -> dict[str, Series]:
        """Generation speed (B = 1) against the share of layers on the GPU, per model."""

        def x_of(r: Mapping[str, Any]) -> float | None:
            if int(r.get("n_parallel") or 1) != 1:
                return None
            return Placement.from_record(r).gpu_share(record_n_layer(r))

        return self._curves("tg", x_of)

    def throughput_vs_batch(self) -> dict[str, Series]:
        return self._curves("batch", lambda r: float(r.get("n_parallel") or 1))
