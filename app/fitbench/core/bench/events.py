"""What a running sweep reports, in order, to whoever drives it (CLI, GUI, `quick`).

The runner is a generator of these events; each `yield` is also a cancellation point. The GUI
consumes them on a worker thread and forwards them as Qt signals; the CLI prints them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SweepStarted:
    run_id: str
    total_configs: int
    estimated_s: float | None  # None when nothing is known to estimate from


@dataclass(frozen=True)
class ConfigStarted:
    run_id: str
    config_id: str
    index: int  # 0-based position in the sweep
    total: int
    label: str  # human words: "Mixtral 8x7B Q4_K_M (twin), 16/33 layers on GPU"
    remaining_s: float | None


@dataclass(frozen=True)
class Sample:
    """Memory sampled during a test (>= 10 Hz), for live plots."""

    config_id: str
    t_s: float  # seconds since the sweep started
    vram_bytes: int | None  # sum over GPUs (NVML); None without NVIDIA GPUs
    ram_bytes: int  # RSS of the worker process


@dataclass(frozen=True)
class RecordReady:
    """One finished test; already persisted to the store when this is yielded."""

    record: dict[str, Any]


@dataclass(frozen=True)
class ConfigFailed:
    config_id: str
    label: str
    status: str  # oom | crash | error | cancelled
    error: str


@dataclass(frozen=True)
class SweepFinished:
    run_id: str
    n_records: int
    n_failed: int
    cancelled: bool
    duration_s: float


Event = SweepStarted | ConfigStarted | Sample | RecordReady | ConfigFailed | SweepFinished
