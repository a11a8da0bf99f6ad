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
from pathlib import Path
from typing import Any

import psutil

from fitbench.core.hardware.cgroup import read_cgroup_memory

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
        self._max_ram = 0  # over the whole worker, across tests (reset_peaks keeps it)

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
        with self._lock:
            self._max_ram = 0
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
            self._max_ram = max(self._max_ram, ram)
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

    def max_ram(self) -> int | None:
        """The worker's peak RSS since start(), all tests together."""
        with self._lock:
            return self._max_ram or None

    def drain(self) -> list[MemoryPoint]:
        with self._lock:
            points = list(self._points)
            self._points.clear()
        return points


def _counter(path: Path, key: str) -> int | None:
    """`key N` from a flat keyed file (memory.events, memory.oom_control, /proc/vmstat)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            try:
                return int(value.strip())
            except ValueError:
                return None
    return None


@dataclass(frozen=True)
class OomCounters:
    cgroup: int | None  # the worker's cgroup: memory.events (v2) or memory.oom_control (v1)
    kernel: int | None  # every OOM kill on the machine since boot (/proc/vmstat, Linux 4.13+)
    available_bytes: int  # RAM free for the worker when it started (the cgroup's room if less)


class OomWatch:
    """Evidence for telling an out-of-memory kill from any other SIGKILL, readable without
    privileges (the kernel's log is not): OOM-kill counters before and after the worker, and
    its peak RSS against the memory that was available when it started."""

    def __init__(self, root: Path = Path("/")) -> None:
        self.root = root
        self.before = self.read()

    def read(self) -> OomCounters:
        cgroup = read_cgroup_memory(self.root)
        count = None
        available = int(psutil.virtual_memory().available) if self.root == Path("/") else 0
        if cgroup is not None:
            directory = Path(cgroup.directory)
            events = "memory.events" if cgroup.version == 2 else "memory.oom_control"
            count = _counter(directory / events, "oom_kill")
            if cgroup.limit_bytes is not None and cgroup.working_set_bytes is not None:
                room = max(0, cgroup.limit_bytes - cgroup.working_set_bytes)
                available = min(available, room) if available else room
        kernel = _counter(self.root / "proc/vmstat", "oom_kill")
        return OomCounters(count, kernel, available)

    def evidence(self, peak_rss: int | None) -> str:
        """What says memory ran out since the watch began; "" when nothing does."""
        after = self.read()
        found = []
        b, a = self.before.cgroup, after.cgroup
        if b is not None and a is not None and a > b:
            found.append(f"the cgroup's OOM-kill counter went from {b} to {a}")
        b, a = self.before.kernel, after.kernel
        if b is not None and a is not None and a > b:
            found.append(f"the kernel's OOM-kill counter went from {b} to {a}")
        room = self.before.available_bytes
        if peak_rss and room and peak_rss >= 0.9 * room:
            found.append(f"peak RSS {peak_rss / 2**30:.2f} GiB of {room / 2**30:.2f} GiB available")
        return "; ".join(found)
