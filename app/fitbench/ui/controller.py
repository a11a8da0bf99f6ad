"""Wires the panels to core jobs. Every piece of work runs as a Job; results come back as signals.

Nothing is measured, planned or decided here: the controller starts the right core call on the
right pool and hands the answers to the panels.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from fitbench.core.settings import Settings
from fitbench.ui import core_api, flows
from fitbench.ui.core_api import RunOutcome
from fitbench.ui.jobs import Job, JobContext, JobRunner
from fitbench.ui.sweep_model import SweepModel

log = logging.getLogger(__name__)


class Controller(QObject):
    hardware_ready = Signal(object)
    outcome_ready = Signal(object)  # RunOutcome
    pdf_exported = Signal(object)  # Path
    sweep_finished = Signal()

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.w = window
        self.runner = JobRunner(self)
        self.sweep_model: SweepModel = window.sweep_model
        self.hardware: dict[str, Any] | None = None
        self.catalog = core_api.load_catalog()
        self.sweep_model.model_names = core_api.model_names(self.catalog)
        self.configs_factory: flows.ConfigsFactory | None = None  # tests inject tiny twins
        self.bench_job: Job | None = None
        self.outcome: RunOutcome | None = None
        self.downloads: dict[tuple[str, str], Job] = {}
        self.stopping = False
        w = window
        w.machine_panel.refresh_requested.connect(self.detect)
        w.bench_panel.quick_requested.connect(self.start_quick)
        w.bench_panel.custom_requested.connect(self.start_custom)
        w.bench_panel.cancel_requested.connect(self.cancel_bench)
        self._refresh_sweep_models()
        w.advice_panel.export_requested.connect(self.export_pdf)
        w.history_panel.refresh_requested.connect(self.load_history)
        w.history_panel.compare_requested.connect(self.compare_runs)
        w.models_panel.download_requested.connect(self.start_download)
        w.models_panel.cancel_download.connect(self.cancel_download)
        w.models_panel.add_requested.connect(self.add_model)
        w.settings_bar.changed.connect(self._settings_changed)
        self.what_if = ""  # a GPU spec the person picked, "" for this machine
        w.settings_bar.set_what_if_choices(core_api.what_if_choices())
        w.settings_bar.what_if_changed.connect(self.set_what_if)

    @property
    def settings(self) -> Settings:
        settings: Settings = self.w.settings_bar.settings
        return settings

    def _job(
        self,
        fn: Any,
        name: str,
        *,
        result: Any = None,
        error: Any = None,
        progress: Any = None,
        pool: str = "general",
    ) -> Job:
        """Start a job; handlers are connected before it starts so no signal is missed."""
        job = Job(fn, name=name)
        if self.stopping:  # closing: nothing new starts, the job is never run
            return job
        for signal, handler in ((job.result, result), (job.error, error), (job.progress, progress)):
            if handler is not None:
                signal.connect(handler)
        return self.runner.submit(job, pool)

    # -- machine and models ------------------------------------------------------------------
    def detect(self) -> None:
        self.w.machine_panel.set_busy()
        self._job(
            lambda ctx: core_api.detect_hardware(),
            "detect hardware",
            result=self._hardware_detected,
            error=self._hardware_failed,
        )

    def _hardware_detected(self, hw: dict[str, Any]) -> None:
        self.hardware = hw
        self.sweep_model.hardware = hw
        self.w.machine_panel.set_hardware(hw)
        self.hardware_ready.emit(hw)
        self.plan_models()

    def _hardware_failed(self, message: str) -> None:
        self.w.machine_panel.set_error(message)
        self.hardware = {}
        self.plan_models()

    @property
    def planned_hardware(self) -> dict[str, Any]:
        """The machine the badges, plan and advice are for: detected, or the what-if GPUs."""
        hw = self.hardware or {}
        return core_api.what_if_hardware(hw, self.what_if) if self.what_if else hw

    def set_what_if(self, spec: str) -> None:
        self.what_if = spec
        self.plan_models()
        self.w.advice_panel.set_what_if(spec)
        outcome = self.outcome
        if outcome is None:
            return
        if not spec:
            if outcome.advice is not None:
                self.w.advice_panel.set_advice(outcome.advice)
            return
        self.w.advice_panel.set_busy(f"Predicting the recommendation for {spec}…")
        hw, settings = self.planned_hardware, self.settings
        self._job(
            lambda ctx: core_api.recommend(outcome.records, hw, settings),
            f"what-if advice {spec}",
            result=lambda advice: self._what_if_advice(spec, advice),
            error=lambda m: self.w.advice_panel.set_error(f"what-if {spec}: {m}"),
        )

    def _what_if_advice(self, spec: str, advice: dict[str, Any]) -> None:
        if spec == self.what_if:  # the person may have picked another machine meanwhile
            self.w.advice_panel.set_advice(advice)

    def plan_models(self) -> None:
        hw, settings = self.planned_hardware, self.settings
        what_if = core_api.what_if_label(hw)
        machine = f"{what_if} (what-if, predicted)" if what_if else "this machine"
        self.w.models_panel.set_status(f"Planning every quantization against {machine}…")
        self.w.models_panel.set_machine(what_if)

        def plan(ctx: JobContext) -> Any:
            for row in core_api.plan_catalog(self.catalog, hw, settings):
                if ctx.cancelled:
                    return
                yield row

        done = (
            (f"What if: {what_if}. Every badge is predicted for those GPUs. " if what_if else "")
            + f"Planned for {settings.ctx} tokens of context, keeping "
            f"{core_api.margin_words(settings)} of VRAM and {settings.ram_headroom_gib:g} GiB RAM "
            "free. Hover a badge for the reason."
        )
        self._job(
            plan,
            "plan catalog",
            progress=self.w.models_panel.upsert_row,
            result=lambda _: self.w.models_panel.set_status(done),
            error=lambda m: self.w.models_panel.set_status(f"Planning failed: {m}"),
        )

    def _settings_changed(self, settings: Settings) -> None:
        if self.hardware is not None:
            self.plan_models()

    def _refresh_sweep_models(self) -> None:
        self.w.bench_panel.advanced.set_models(core_api.sweep_choices(self.catalog, self.settings))

    def add_model(self, spec: Any) -> None:
        what = str(spec) if isinstance(spec, Path) else "/".join(spec)
        self.w.models_panel.set_status(
            f"Adding {what}: reading its header… (ad-hoc models are planned like catalog ones)"
        )
        added = tuple(dict.fromkeys((*self.settings.added_models, what)))
        from dataclasses import replace

        self.w.settings_bar.update_settings(replace(self.settings, added_models=added))
        self._refresh_sweep_models()  # only here: a rebuilt list forgets which boxes were ticked

    # -- downloads ---------------------------------------------------------------------------
    def start_download(self, model_id: str, quant: str) -> None:
        key = (model_id, quant)
        if key in self.downloads or self.stopping:
            return

        def work(ctx: JobContext) -> Path:
            return core_api.download(
                model_id, quant, lambda p: ctx.progress(p, droppable=True), ctx.cancel
            )

        job = Job(work, name=f"download {model_id} {quant}")
        self.downloads[key] = job
        panel = self.w.models_panel
        panel.download_started(model_id, quant)
        job.progress.connect(lambda p: panel.download_progress(model_id, quant, p))
        job.result.connect(lambda path: panel.download_done(model_id, quant, str(path)))
        job.error.connect(lambda m: panel.download_stopped(model_id, quant, f"failed: {m}"))
        job.cancelled.connect(
            lambda: panel.download_stopped(model_id, quant, "cancelled; Resume continues")
        )
        job.finished.connect(lambda: self.downloads.pop(key, None))
        self.runner.submit(job, "downloads")

    def cancel_download(self, model_id: str, quant: str) -> None:
        job = self.downloads.get((model_id, quant))
        if job is not None:
            job.cancel()

    # -- benchmark ---------------------------------------------------------------------------
    @property
    def bench_running(self) -> bool:
        return self.bench_job is not None

    def start_quick(self) -> None:
        self._start_bench(
            partial(
                _run_one_click,
                settings=self.settings,
                hardware=self.hardware or None,
                factory=self.configs_factory,
            ),
            "benchmark my machine",
        )

    def start_custom(self, params: dict[str, Any]) -> None:
        self._start_bench(
            partial(_run_custom, params=params, settings=self.settings, hardware=self.hardware),
            "custom sweep",
        )

    def _start_bench(self, fn: Any, name: str) -> None:
        if self.bench_running or self.stopping:
            return
        self.sweep_model.reset()
        self.w.bench_panel.set_running(True)
        self.w.advice_panel.set_busy("Benchmark running… the recommendation follows it.")
        job = Job(fn, name=name, close_on_cancel=False)
        self.bench_job = job
        job.progress.connect(self._sweep_progress)
        job.result.connect(self._sweep_done)
        job.error.connect(self._sweep_error)
        job.cancelled.connect(self._sweep_cancelled)
        job.finished.connect(self._sweep_finished)
        self.runner.submit(job, "bench")

    def _sweep_progress(self, item: Any) -> None:
        if isinstance(item, flows.Stage):
            self.sweep_model.set_stage(item.text)
        elif isinstance(item, flows.Note):
            self.sweep_model.add_note(item.text)
        else:
            self.sweep_model.apply(item)

    def _sweep_done(self, outcome: RunOutcome | None) -> None:
        if outcome is None:
            return
        self.outcome = outcome
        if outcome.advice is not None:
            self.w.advice_panel.set_advice(outcome.advice)
            self.w.show_advice()
        else:
            self.w.advice_panel.set_error(outcome.advice_error or "no advice")
        self.outcome_ready.emit(outcome)

    def _sweep_error(self, message: str) -> None:
        self.sweep_model.set_stage(f"The benchmark stopped: {message}")
        self.w.advice_panel.set_error(message)

    def _sweep_cancelled(self) -> None:
        self.w.advice_panel.set_error("the benchmark was cancelled; results so far are stored")

    def _sweep_finished(self) -> None:
        self.bench_job = None
        self.w.bench_panel.set_running(False)
        self.sweep_finished.emit()
        self.load_history()

    def cancel_bench(self) -> None:
        if self.bench_job is not None:
            self.sweep_model.set_stage("Cancelling: stopping the benchmark worker…")
            self.bench_job.cancel()

    # -- report and history ------------------------------------------------------------------
    def export_pdf(self, path: Path) -> None:
        outcome = self.outcome
        if outcome is None:
            self.w.advice_panel.set_export_status("Run a benchmark first.")
            return
        self.w.advice_panel.set_export_status(f"Writing {path}…")
        self._job(
            lambda ctx: core_api.export_pdf(outcome, Path(path)),
            "export PDF",
            result=self._pdf_written,
            error=lambda m: self.w.advice_panel.set_export_status(f"PDF export failed: {m}"),
        )

    def _pdf_written(self, path: Path) -> None:
        self.w.advice_panel.set_export_status(f"Report saved: {path}")
        self.pdf_exported.emit(path)

    def load_history(self) -> None:
        self._job(
            lambda ctx: core_api.list_runs(),
            "list runs",
            result=self.w.history_panel.set_runs,
            error=self.w.history_panel.set_error,
        )

    def compare_runs(self, run_ids: list[str]) -> None:
        self._job(
            lambda ctx: core_api.compare_records(run_ids, self.hardware),
            "compare runs",
            result=self.w.history_panel.set_comparison,
            error=self.w.history_panel.set_error,
        )

    # -- shutdown ----------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return bool(self.runner.active)

    @property
    def long_work_running(self) -> bool:
        """A benchmark or a download: what closing the window would interrupt."""
        return self.bench_running or bool(self.downloads)

    def stop_all(self) -> None:
        self.stopping = True
        self.runner.cancel_all()


def _run_one_click(
    ctx: JobContext,
    settings: Settings,
    hardware: dict[str, Any] | None,
    factory: flows.ConfigsFactory | None,
) -> Any:
    def report(item: Any) -> None:
        ctx.progress(item, droppable=True)

    return flows.one_click(ctx.cancel, settings, hardware, factory, report)


def _run_custom(
    ctx: JobContext, params: dict[str, Any], settings: Settings, hardware: dict[str, Any] | None
) -> Any:
    return flows.custom(ctx.cancel, params, settings, hardware or {})
