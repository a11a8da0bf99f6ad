"""The one-click flow as a generator (Qt-free): hardware -> configs -> sweep -> advice.

It runs as one Job on the bench pool: each yielded value is a Stage (words for the progress
line) or a sweep event; the return value is the RunOutcome. The configurations are injectable
(`configs_factory`) so tests can run the whole flow on tiny twins.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from fitbench.core.bench import events as ev
from fitbench.core.settings import Settings
from fitbench.ui import core_api
from fitbench.ui.core_api import RunOutcome

ConfigsFactory = Callable[[Mapping[str, Any], Settings], Sequence[Any]]


@dataclass(frozen=True)
class Stage:
    text: str


@dataclass(frozen=True)
class Note:
    """Which file a model is measured on and why (real, twin, scaled twin), for the log line."""

    text: str


def sweep(
    cancel: threading.Event,
    configs: Sequence[Any],
    hardware: Mapping[str, Any],
    settings: Settings,
    *,
    advise: bool = True,
) -> Generator[Any, None, RunOutcome | None]:
    records: list[dict[str, Any]] = []
    samples: list[dict[str, Any]] = []
    run_id = ""
    for event in core_api.run_sweep(configs, cancel, hardware):
        if isinstance(event, ev.RecordReady):
            records.append(event.record)
        elif isinstance(event, ev.Sample):
            samples.append(asdict(event))
        elif isinstance(event, (ev.SweepStarted, ev.SweepFinished)):
            run_id = event.run_id
        yield event
    if cancel.is_set():
        return None
    outcome = RunOutcome(run_id, records, dict(hardware), None, samples)
    if not advise:
        return outcome
    if not any(r.get("status", "ok") == "ok" for r in records):
        outcome.advice_error = "no configuration finished; the failed rows say why"
        return outcome
    yield Stage("Computing the recommendation…")
    try:
        outcome.advice = core_api.recommend(records, hardware, settings)
    except Exception as exc:  # the measurements stay useful without advice
        outcome.advice_error = str(exc) or type(exc).__name__
    return outcome


def one_click(
    cancel: threading.Event,
    settings: Settings,
    hardware: Mapping[str, Any] | None = None,
    configs_factory: ConfigsFactory | None = None,
    report: Callable[[Any], None] | None = None,
) -> Generator[Any, None, RunOutcome | None]:
    """`report` carries progress from inside a core call (twin writing) while it runs."""
    if hardware is None:
        yield Stage("Detecting hardware…")
        hardware = core_api.detect_hardware()
    yield Stage("Choosing configurations and preparing twins (no download needed)…")
    if configs_factory is not None:
        configs = list(configs_factory(hardware, settings))
    else:

        def stage(text: str) -> None:
            if report is not None:
                report(Stage(text))

        configs, notes = core_api.quick_plan(hardware, settings, cancel, stage)
        for note in notes:
            yield Note(note)
    if cancel.is_set():
        return None
    if not configs:
        raise RuntimeError("the planner found no configuration that fits this machine")
    return (yield from sweep(cancel, configs, hardware, settings))


def custom(
    cancel: threading.Event,
    params: Mapping[str, Any],
    settings: Settings,
    hardware: Mapping[str, Any],
) -> Generator[Any, None, RunOutcome | None]:
    yield Stage("Building the custom sweep…")
    configs = core_api.custom_configs(params, settings)
    return (yield from sweep(cancel, configs, hardware, settings))
