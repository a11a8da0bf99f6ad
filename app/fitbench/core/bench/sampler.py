"""Memory sampled while a worker runs: VRAM of every GPU (NVML) and the worker's RSS (psutil).

The sampler runs in the parent on its own thread and watches the worker by pid, so it keeps
working when the worker crashes and what it measured survives. Peaks are kept per test (the
runner resets them at each test start); the time series is drained for live plots.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import psutil

# 10 Hz, the least the issue allows: every wake-up of the parent takes a core from llama.cpp's
# threads when they use all cores (20 Hz cost 1.2% of tg on 2 cores, 10 Hz 0.5%: docs/bench.md)
DEFAULT_INTERVAL_S = 0.1


class Nvml:
    """Used memory per GPU through NVML; empty without NVIDIA GPUs or drivers."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._handles: list[Any] = []
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handles = [
                pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())
            ]
        except Exception:  # no library, no driver, no device: memory is simply not measured
            self._nvml = None
            self._handles = []

    @property
    def available(self) -> bool:
        return bool(self._handles)

    def used(self) -> list[int]:
        out = []
        for handle in self._handles:
            try:
                out.append(int(self._nvml.nvmlDeviceGetMemoryInfo(handle).used))
            except Exception:
                out.append(0)
        return out

    def close(self) -> None:
        if self._nvml is not None:
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()
            self._nvml = None


@dataclass(frozen=True)
class MemoryPoint:
    t_s: float  # seconds since the sampler's origin
    vram_bytes: int | None
    vram_per_gpu: tuple[int, ...]
    ram_bytes: int


@dataclass(frozen=True)
class Peaks:
    ram_bytes: int | None
    vram_bytes: int | None
    vram_per_gpu: list[int] | None


class MemorySampler:
    def __init__(self, origin: float | None = None, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.origin = time.monotonic() if origin is None else origin
        self.interval_s = interval_s
        self.nvml = Nvml()
        self._lock = threading.Lock()
        self._points: deque[MemoryPoint] = deque(maxlen=100_000)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: psutil.Process | None = None
        self._peak_ram = 0
        self._peak_vram: list[int] = []
        self._seen = False

    def vram_now(self) -> list[int]:
        return self.nvml.used()

    def start(self, pid: int) -> None:
        self.stop()
        try:
            self._proc = psutil.Process(pid)
        except psutil.NoSuchProcess:
            self._proc = None
        self._stop.clear()
        self.reset_peaks()
        self._thread = threading.Thread(
            target=self._loop, name=f"memory-sampler-{pid}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None

    def close(self) -> None:
        self.stop()
        self.nvml.close()

    def reset_peaks(self) -> None:
        with self._lock:
            self._peak_ram = 0
            self._peak_vram = []
            self._seen = False

    def sample_once(self) -> MemoryPoint | None:
        """One sample now (also called by the loop); None once the worker is gone."""
        ram = 0
        if self._proc is not None:
            try:
                ram = int(self._proc.memory_info().rss)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                return None
            if ram == 0:  # a zombie: the worker has ended, nothing left to measure
                return None
        vram = self.nvml.used()
        point = MemoryPoint(
            t_s=time.monotonic() - self.origin,
            vram_bytes=sum(vram) if vram else None,
            vram_per_gpu=tuple(vram),
            ram_bytes=ram,
        )
        with self._lock:
            self._points.append(point)
            self._seen = True
            self._peak_ram = max(self._peak_ram, ram)
            if vram:
                if len(self._peak_vram) != len(vram):
                    self._peak_vram = list(vram)
                else:
                    self._peak_vram = [
                        max(a, b) for a, b in zip(self._peak_vram, vram, strict=True)
                    ]
        return point

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.sample_once() is None:
                return
            self._stop.wait(self.interval_s)

    def peaks(self) -> Peaks:
        with self._lock:
            if not self._seen:
                return Peaks(None, None, None)
            vram = list(self._peak_vram) if self._peak_vram else None
            return Peaks(self._peak_ram or None, sum(vram) if vram else None, vram)

    def drain(self) -> list[MemoryPoint]:
        with self._lock:
            points = list(self._points)
            self._points.clear()
        return points
