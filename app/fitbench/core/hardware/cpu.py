"""CPU, RAM (container-aware) and a measured RAM bandwidth probe.

Only the standard library and psutil at import time: numpy is imported by the probe itself, so a
quick `detect(probe_bandwidth=False)` stays cheap.
"""

from __future__ import annotations

import itertools
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fitbench.core.hardware.cgroup import read_cgroup_cpu_quota, read_cgroup_memory

# /proc/cpuinfo flag names (x86 "flags", ARM "Features") -> the names llama.cpp's builds care about
_X86_FLAGS: dict[str, tuple[str, ...]] = {
    "avx": ("avx",),
    "avx2": ("avx2",),
    "fma": ("fma",),
    "f16c": ("f16c",),
    "avx_vnni": ("avx_vnni",),
    "avx512": ("avx512f",),
    "avx512_vnni": ("avx512_vnni",),
    "avx512_bf16": ("avx512_bf16",),
    "amx": ("amx_int8", "amx_bf16", "amx_tile"),
}
_ARM_FLAGS: dict[str, tuple[str, ...]] = {
    "neon": ("asimd",),
    "dotprod": ("asimddp",),
    "i8mm": ("i8mm",),
    "sve": ("sve",),
}
FLAG_NAMES: tuple[str, ...] = (*_X86_FLAGS, *_ARM_FLAGS)

# ARM "CPU part" ids of common server and desktop cores, for a readable model name on Linux/ARM
_ARM_PARTS = {
    "0xd0c": "Neoverse-N1",
    "0xd40": "Neoverse-V1",
    "0xd49": "Neoverse-N2",
    "0xd4f": "Neoverse-V2",
    "0xd8e": "Neoverse-N3",
    "0xd84": "Neoverse-V3",
    "0xd0b": "Cortex-A76",
    "0xd41": "Cortex-A78",
}

PROBE_BYTES_DEFAULT = 256 * 1024 * 1024
PROBE_REPEATS_DEFAULT = 5
PROBE_BUDGET_S = 1.5


@dataclass
class CpuInfo:
    model: str
    architecture: str
    physical_cores: int | None
    logical_cores: int
    usable_cores: int  # what this process may run on: affinity mask and cgroup CPU quota
    flags: dict[str, bool | None]  # None: could not be read on this OS
    isa: list[str]  # the flags that are present, for display
    ram_bandwidth_gbps: float | None = None
    ram_bandwidth_source: str = "not measured"


@dataclass
class RamInfo:
    total_bytes: int  # physical RAM of the host (or VM)
    available_bytes: int  # what a new process can take now: host available, capped by the cgroup
    usable_bytes: int  # the ceiling for planning: min(host RAM, cgroup limit)
    host_available_bytes: int
    cgroup_version: int | None
    cgroup_limit_bytes: int | None  # None: no container memory limit
    cgroup_usage_bytes: int | None
    swap_total_bytes: int
    swap_free_bytes: int
    cgroup_swap_limit_bytes: int | None


@dataclass
class BandwidthProbe:
    gbps: float
    bytes_per_copy: int
    threads: int
    repeats: int
    seconds: float

    def describe(self) -> str:
        return (
            f"measured: numpy streaming copy of {self.bytes_per_copy // (1024 * 1024)} MiB, "
            f"{self.threads} thread(s), best of {self.repeats}, read+write bytes counted, "
            f"{self.seconds:.2f} s"
        )


def _proc_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cpuinfo_value(text: str, *keys: str) -> str | None:
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in keys and value.strip():
            return value.strip()
    return None


def _sysctl(name: str) -> str | None:
    try:
        proc = subprocess.run(
            ["sysctl", "-n", name], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def cpu_model(cpuinfo: str) -> str:
    model = _cpuinfo_value(cpuinfo, "model name", "hardware", "processor name")
    if model and not model.isdigit():
        return model
    part = _cpuinfo_value(cpuinfo, "cpu part")
    if part:
        return f"ARM {_ARM_PARTS.get(part.lower(), f'CPU part {part}')}"
    if sys.platform == "darwin":
        brand = _sysctl("machdep.cpu.brand_string")
        if brand:
            return brand
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_flags(cpuinfo: str, machine: str) -> dict[str, bool | None]:
    """Instruction sets llama.cpp's CPU kernels use; None where this OS does not tell us."""
    x86_text = _cpuinfo_value(cpuinfo, "flags")
    arm_text = _cpuinfo_value(cpuinfo, "features")
    flags: dict[str, bool | None] = dict.fromkeys(FLAG_NAMES)
    arm = machine.lower() in ("arm64", "aarch64") or machine.lower().startswith("arm")
    if x86_text is not None or arm_text is not None:
        present = set((x86_text or arm_text or "").split())
        for name, sources in _X86_FLAGS.items():
            flags[name] = any(s in present for s in sources) if not arm else False
        for name, sources in _ARM_FLAGS.items():
            flags[name] = any(s in present for s in sources) if arm else False
    elif sys.platform == "darwin" and arm:
        # every Apple Silicon core has NEON and dot product; none has AVX
        flags.update(dict.fromkeys(_X86_FLAGS, False))
        flags.update(neon=True, dotprod=True)
        flags["i8mm"] = _sysctl("hw.optional.arm.FEAT_I8MM") == "1"
        flags["sve"] = False
    elif sys.platform == "darwin":
        words = " ".join(
            filter(None, [_sysctl("machdep.cpu.features"), _sysctl("machdep.cpu.leaf7_features")])
        ).lower()
        if words:
            for name, sources in _X86_FLAGS.items():
                flags[name] = any(s.replace("_", "") in words.split() for s in sources)
            flags.update(dict.fromkeys(_ARM_FLAGS, False))
    return flags


def usable_cores(logical: int) -> int:
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = logical
    quota = read_cgroup_cpu_quota()
    if quota is not None:
        affinity = min(affinity, max(1, int(quota)))
    return max(1, affinity)


def detect_cpu(notes: list[str]) -> CpuInfo:
    import psutil

    cpuinfo = _proc_cpuinfo()
    machine = platform.machine()
    logical = os.cpu_count() or 1
    try:
        physical = psutil.cpu_count(logical=False)
    except Exception as exc:  # psutil raises platform-specific errors here
        notes.append(f"Physical CPU cores could not be read ({exc}); llama.cpp's default applies.")
        physical = None
    if physical is None:
        notes.append("The number of physical CPU cores is unknown on this system.")
    flags = cpu_flags(cpuinfo, machine)
    if all(v is None for v in flags.values()):
        notes.append(
            "CPU instruction sets (AVX2, AVX-512, AMX, NEON) could not be read on this OS; "
            "see llama.cpp's system info for what its build uses."
        )
    usable = usable_cores(logical)
    if usable < logical:
        notes.append(
            f"This process may use {usable} of the {logical} logical CPUs "
            "(CPU affinity or container quota); benchmarks use at most that many threads."
        )
    return CpuInfo(
        model=cpu_model(cpuinfo),
        architecture=machine,
        physical_cores=physical,
        logical_cores=logical,
        usable_cores=usable,
        flags=flags,
        isa=[name for name, present in flags.items() if present],
    )


def detect_ram(notes: list[str], cgroup_root: Path = Path("/")) -> RamInfo:
    import psutil

    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    cgroup = read_cgroup_memory(cgroup_root)
    limit = cgroup.limit_bytes if cgroup else None
    usable = min(vm.total, limit) if limit is not None else vm.total
    available = vm.available
    if limit is not None:
        working = cgroup.working_set_bytes if cgroup else None
        room = max(0, limit - (working or 0))
        available = min(available, room)
        if limit < vm.total:
            notes.append(
                f"This process runs in a container limited to {limit / 2**30:.1f} GiB of RAM "
                f"(cgroup v{cgroup.version if cgroup else '?'}); the host has "
                f"{vm.total / 2**30:.1f} GiB. Plans use the container limit."
            )
    return RamInfo(
        total_bytes=int(vm.total),
        available_bytes=int(available),
        usable_bytes=int(usable),
        host_available_bytes=int(vm.available),
        cgroup_version=cgroup.version if cgroup else None,
        cgroup_limit_bytes=limit,
        cgroup_usage_bytes=cgroup.usage_bytes if cgroup else None,
        swap_total_bytes=int(swap.total),
        swap_free_bytes=int(swap.free),
        cgroup_swap_limit_bytes=cgroup.swap_limit_bytes if cgroup else None,
    )


def default_probe_bytes() -> int:
    """256 MiB: beyond the last-level cache of desktop and most server cores, still quick.

    Page faults dominate the probe's cost on VMs (0.5-2 s per GiB touched on the 2-core KVM
    guest FitBench is developed on), so the buffer does not grow with huge shared caches.
    """
    return PROBE_BYTES_DEFAULT


def measure_ram_bandwidth(
    size_bytes: int | None = None,
    repeats: int = PROBE_REPEATS_DEFAULT,
    threads: int | None = None,
) -> BandwidthProbe:
    """Best-of-N streaming copy through RAM, single- and multi-threaded; GB/s = 1e9 bytes/s.

    One core rarely saturates a server's memory channels, so the copy also runs split across the
    usable cores (numpy releases the GIL while copying) and the better figure is kept.
    """
    import numpy as np

    start = time.perf_counter()
    size = size_bytes or default_probe_bytes()
    n_threads = threads or min(usable_cores(os.cpu_count() or 1), 16)
    count = max(1, size // 8)
    src = np.empty(count, dtype=np.float64)
    src.fill(1.0)  # touch every page before timing
    dst = np.empty_like(src)
    np.copyto(dst, src)  # warm-up: faults the destination in
    bounds = np.linspace(0, count, n_threads + 1, dtype=np.int64)
    chunks = [(dst[a:b], src[a:b]) for a, b in itertools.pairwise(bounds)]

    def copy_split() -> float:
        barrier = threading.Barrier(n_threads + 1)

        def work(pair: tuple[np.ndarray, np.ndarray]) -> None:
            barrier.wait()
            np.copyto(pair[0], pair[1])

        workers = [threading.Thread(target=work, args=(pair,)) for pair in chunks]
        for worker in workers:
            worker.start()
        barrier.wait()
        t0 = time.perf_counter()
        for worker in workers:
            worker.join()
        return time.perf_counter() - t0

    def copy_single() -> float:
        t0 = time.perf_counter()
        np.copyto(dst, src)
        return time.perf_counter() - t0

    best = float("inf")
    done = 0
    for _ in range(max(1, repeats)):
        best = min(best, copy_single())
        if n_threads > 1:
            best = min(best, copy_split())
        done += 1
        if done >= 2 and time.perf_counter() - start > PROBE_BUDGET_S:
            break  # a busy machine: two rounds are enough for a best-of figure
    moved = 2 * count * 8  # every byte is read once and written once
    return BandwidthProbe(
        gbps=moved / best / 1e9,
        bytes_per_copy=count * 8,
        threads=n_threads,
        repeats=done,
        seconds=time.perf_counter() - start,
    )
