"""What this machine has: GPUs (NVML), CPU, RAM (container-aware), disk, llama.cpp's devices.

`detect()` never raises for an absent or failing part: each becomes a sentence in `notes`.
`HardwareReport.to_dict()` is the JSON of `fitbench detect --json`, and what the GUI, the store
and the report read. Figures say how they were obtained: the CPU RAM bandwidth is measured by a
streaming copy, GPU bandwidths are theoretical (NVML's bus width and memory clock).

Run `python -m fitbench.core.hardware.detect [--no-bandwidth]` to print the JSON with only the
standard library, psutil and (optionally) numpy, nvidia-ml-py and llama-cpp-python installed.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fitbench.core.hardware import cpu as hw_cpu
from fitbench.core.hardware import llama_devices as hw_llama
from fitbench.core.hardware import nvml as hw_nvml
from fitbench.core.hardware.cpu import CpuInfo, RamInfo, measure_ram_bandwidth
from fitbench.core.hardware.disk import DiskInfo, detect_disk
from fitbench.core.hardware.llama_backends import gpu_build_note
from fitbench.core.hardware.llama_devices import LlamaCppInfo, LlamaDevice
from fitbench.core.hardware.nvml import DriverInfo, GpuInfo, GpuProcess, PcieInfo

__all__ = [
    "VRAM_BASES",
    "CpuInfo",
    "DiskInfo",
    "DriverInfo",
    "GpuInfo",
    "GpuProcess",
    "HardwareReport",
    "LlamaCppInfo",
    "LlamaDevice",
    "MachineMemory",
    "PcieInfo",
    "RamInfo",
    "detect",
    "hardware_fingerprint",
    "probe_ram_bandwidth",
    "read_json",
]

FINGERPRINT_CHARS = 16


def fingerprint_basis(cpu: CpuInfo, ram: RamInfo, gpus: list[GpuInfo]) -> dict[str, Any]:
    """The fields that identify a machine for grouping results; nothing that changes by the minute.

    RAM is rounded to whole GiB and VRAM to MiB: the kernel's MemTotal moves by a few MiB between
    boots and kernel versions, and that must not split one machine's history in two.
    """
    return {
        "cpu_model": cpu.model,
        "architecture": cpu.architecture,
        "physical_cores": cpu.physical_cores,
        "logical_cores": cpu.logical_cores,
        "ram_total_gib": round(ram.total_bytes / 2**30),
        "gpus": [[gpu.name, gpu.vram_total_bytes // 2**20] for gpu in gpus],
    }


def hardware_fingerprint(basis: dict[str, Any]) -> str:
    canonical = json.dumps(basis, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:FINGERPRINT_CHARS]


@dataclass
class HardwareReport:
    cpu: CpuInfo
    ram: RamInfo
    gpus: list[GpuInfo]
    driver: DriverInfo
    disk: DiskInfo
    llama_cpp: LlamaCppInfo
    notes: list[str] = field(default_factory=list)
    detected_at: str = ""

    @property
    def fingerprint(self) -> str:
        return hardware_fingerprint(fingerprint_basis(self.cpu, self.ram, self.gpus))

    def memory(self) -> MachineMemory:
        """VRAM per GPU and RAM as planning reads them (MachineMemory.of holds the rules)."""
        return MachineMemory.of(self)

    @property
    def vram_source(self) -> str:
        """Where gpu_vram_bytes() comes from: "nvml", "llama.cpp" (no NVIDIA GPU) or "none"."""
        return self.memory().vram_source

    def gpu_vram_bytes(self) -> list[int]:
        """Total VRAM per GPU: NVML's GPUs in NVML's order, else llama.cpp's discrete GPUs
        (Metal, Vulkan, ROCm builds on machines without NVML). Planning uses memory(), which
        counts what is free."""
        return list(self.memory().gpu_vram_total_bytes)

    @property
    def total_vram_bytes(self) -> int:
        return sum(self.gpu_vram_bytes())

    @property
    def usable_ram_bytes(self) -> int:
        """The RAM ceiling for planning: host RAM, or the container's cgroup limit if lower."""
        return self.memory().usable_ram_bytes

    @property
    def cpu_bandwidth_gbps(self) -> float | None:
        """Measured CPU RAM bandwidth (GB/s), None when the probe did not run."""
        return self.cpu.ram_bandwidth_gbps

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu": asdict(self.cpu),
            "ram": asdict(self.ram),
            "gpus": [asdict(gpu) for gpu in self.gpus],
            "driver": asdict(self.driver),
            "disk": asdict(self.disk),
            "llama_cpp": asdict(self.llama_cpp),
            "notes": list(self.notes),
            "detected_at": self.detected_at,
            "fingerprint": self.fingerprint,
            "fingerprint_basis": fingerprint_basis(self.cpu, self.ram, self.gpus),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HardwareReport:
        """Rebuild a report saved with to_dict() (fingerprint and basis are recomputed)."""
        gpus = []
        for raw in data["gpus"]:
            gpu = dict(raw)
            gpu["pcie"] = PcieInfo(**gpu["pcie"])
            gpu["processes"] = [GpuProcess(**p) for p in gpu.get("processes") or []]
            gpus.append(GpuInfo(**gpu))
        llama = dict(data["llama_cpp"])
        llama["devices"] = [LlamaDevice(**d) for d in llama.get("devices") or []]
        return cls(
            cpu=CpuInfo(**data["cpu"]),
            ram=RamInfo(**data["ram"]),
            gpus=gpus,
            driver=DriverInfo(**data["driver"]),
            disk=DiskInfo(**data["disk"]),
            llama_cpp=LlamaCppInfo(**llama),
            notes=list(data.get("notes") or []),
            detected_at=str(data.get("detected_at") or ""),
        )


def _get(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    return value if isinstance(value, Mapping) else {}


VRAM_BASES = ("free", "total")


@dataclass(frozen=True)
class MachineMemory:
    """What planning reads from a hardware report, by one set of rules for a HardwareReport and
    for its to_dict() (a `fitbench detect --json` file, or the partial dicts of what-if
    machines and tests, where missing parts count as absent).

    Planning is against the VRAM free at detection (vram="free", the default): a desktop GPU
    always holds something (compositor, browser, another model), and a placement that needs more
    than is free crashes with out-of-memory however large the card. vram="total" is the what-if
    of a GPU with nothing else on it. A GPU whose free memory is unknown (what-if dicts, old
    hardware files) counts with its total.
    """

    gpu_vram_bytes: tuple[int, ...]  # per GPU, what planning may use (free or total), before margin
    vram_source: str  # "nvml", "llama.cpp" or "none"
    usable_ram_bytes: int  # the planning ceiling: min(host RAM, cgroup limit)
    available_ram_bytes: int  # what a new process can take now
    gpu_offload: bool | None  # llama.cpp's build can offload; None: unknown
    gpu_vram_total_bytes: tuple[int, ...] = ()  # each GPU's total
    gpu_vram_free_bytes: tuple[int | None, ...] = ()  # free at detection; None: not reported
    vram_basis: str = "free"  # "free" or "total": what gpu_vram_bytes holds
    gpu_names: tuple[str, ...] = ()
    gpu_processes: tuple[tuple[Mapping[str, Any], ...], ...] = ()  # NVML's processes per GPU

    @classmethod
    def of(cls, hardware: HardwareReport | Mapping[str, Any], vram: str = "free") -> MachineMemory:
        if vram not in VRAM_BASES:
            raise ValueError(f"vram must be one of {', '.join(VRAM_BASES)}, got {vram!r}")
        data = hardware.to_dict() if isinstance(hardware, HardwareReport) else hardware
        gpus = [g for g in data.get("gpus") or [] if isinstance(g, Mapping)]
        llama = _get(data, "llama_cpp")
        total: tuple[int, ...]
        free: tuple[int | None, ...]
        names: tuple[str, ...]
        processes: tuple[tuple[Mapping[str, Any], ...], ...] = ()
        if gpus:
            total = tuple(int(g.get("vram_total_bytes") or 0) for g in gpus)
            free = tuple(_int_or_none(g.get("vram_free_bytes")) for g in gpus)
            names = tuple(str(g.get("name") or f"GPU {i}") for i, g in enumerate(gpus))
            processes = tuple(
                tuple(p for p in g.get("processes") or [] if isinstance(p, Mapping)) for g in gpus
            )
            source = "nvml"
        else:
            # discrete GPUs only: an integrated GPU's memory is host RAM, already counted there
            devices = [
                d
                for d in llama.get("devices") or []
                if isinstance(d, Mapping) and d.get("type") == "gpu" and d.get("memory_total_bytes")
            ]
            total = tuple(int(d["memory_total_bytes"]) for d in devices)
            free = tuple(_int_or_none(d.get("memory_free_bytes")) for d in devices)
            names = tuple(str(d.get("description") or d.get("name") or "GPU") for d in devices)
            source = "llama.cpp" if total else "none"
        if vram == "free":
            planned = tuple(t if f is None else min(f, t) for t, f in zip(total, free, strict=True))
        else:
            planned = total
        ram = _get(data, "ram")
        usable = int(ram.get("usable_bytes") or ram.get("total_bytes") or 0)
        offload = None
        for key in ("supports_gpu_offload", "gpu_offload"):
            if llama.get(key) is not None:
                offload = bool(llama[key])
                break
        return cls(
            gpu_vram_bytes=planned,
            vram_source=source,
            usable_ram_bytes=usable,
            available_ram_bytes=int(ram.get("available_bytes") or usable),
            gpu_offload=offload,
            gpu_vram_total_bytes=total,
            gpu_vram_free_bytes=free,
            vram_basis=vram,
            gpu_names=names,
            gpu_processes=processes,
        )

    def vram_words(self) -> list[str]:
        """One sentence per GPU: what is free, what others use (by process, where NVML names
        them) and what planning counts, e.g. "GPU0 NVIDIA H100 80GB HBM3: 24.0 of 80.0 GiB free:
        56.0 GiB used by other processes (python3 pid 1234 55.9 GiB)"."""
        out = []
        for i, total in enumerate(self.gpu_vram_total_bytes):
            name = self.gpu_names[i] if i < len(self.gpu_names) else f"GPU {i}"
            free = self.gpu_vram_free_bytes[i] if i < len(self.gpu_vram_free_bytes) else None
            head = f"GPU{i} {name}"
            if free is None:
                out.append(
                    f"{head}: {_gib(total)} GiB, free memory not reported: planning against the "
                    "total"
                )
                continue
            used = max(total - free, 0)
            procs = self.gpu_processes[i] if i < len(self.gpu_processes) else ()
            text = f"{head}: {_gib(free)} of {_gib(total)} GiB free"
            if used >= 1 << 20:
                text += f": {_gib(used)} GiB used by other processes"
                named = _process_words(procs)
                if named:
                    text += f" ({named})"
            if self.vram_basis == "total" and used:
                text += f"; what-if: planning against the total {_gib(total)} GiB as if all free"
            out.append(text)
        return out


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f}"


def _process_words(processes: tuple[Mapping[str, Any], ...]) -> str:
    """The processes NVML lists, largest first: "python3 pid 1234 55.9 GiB" (the size where the
    driver says it)."""
    ordered = sorted(processes, key=lambda p: -(p.get("used_bytes") or 0))
    parts = []
    for p in ordered:
        words = f"{p.get('name') or 'process'} pid {p.get('pid')}"
        if p.get("used_bytes") is not None:
            words += f" {_gib(int(p['used_bytes']))} GiB"
        parts.append(words)
    return ", ".join(parts)


def read_json(path: Path) -> dict[str, Any]:
    """The JSON object `fitbench detect --json` wrote; a clear ValueError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read the hardware file {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{path}: not a hardware JSON file from `fitbench detect --json` ({exc})"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected the JSON object of `fitbench detect --json`")
    return data


def probe_ram_bandwidth() -> float:
    """Measured CPU RAM bandwidth in GB/s (1e9 bytes/s): a streaming copy, a few hundred ms."""
    return measure_ram_bandwidth().gbps


def _probe_llama(in_process: bool) -> tuple[LlamaCppInfo, list[str]]:
    return hw_llama.probe_in_process() if in_process else hw_llama.probe()


def detect(
    probe_bandwidth: bool = True,
    *,
    llama: bool = True,
    llama_in_process: bool = False,
    cgroup_root: Path = Path("/"),
) -> HardwareReport:
    """Everything FitBench needs to know about this machine; never raises for a missing part.

    probe_bandwidth: run the CPU RAM bandwidth probe (about 0.3-1 s). llama: ask llama.cpp for
    its devices (a child process, ~0.2-2 s, run alongside the rest); llama_in_process loads it
    here instead, which a GUI must not do (a CUDA context would stay allocated).
    """
    notes: list[str] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fitbench-llama-probe") as pool:
        llama_job = pool.submit(_probe_llama, llama_in_process) if llama else None
        cpu = hw_cpu.detect_cpu(notes)
        ram = hw_cpu.detect_ram(notes, cgroup_root)
        disk = detect_disk(notes)
        nvml = hw_nvml.query_nvml()
        notes.extend(nvml.notes)
        # the llama.cpp child must be done before the probe: it would compete for the cores
        if llama_job is not None:
            llama_info, llama_notes = llama_job.result()
            notes.extend(llama_notes)
        else:
            llama_info = LlamaCppInfo(available=False, probed_in="not probed")
        if probe_bandwidth:
            try:
                probe = measure_ram_bandwidth()
                cpu.ram_bandwidth_gbps = round(probe.gbps, 2)
                cpu.ram_bandwidth_source = probe.describe()
            except (MemoryError, ImportError, OSError) as exc:
                notes.append(f"The CPU RAM bandwidth probe failed ({exc}); it is left unknown.")
        else:
            cpu.ram_bandwidth_source = "not measured (bandwidth probe skipped)"
    _note_cross_checks(nvml.gpus, llama_info, notes)
    return HardwareReport(
        cpu=cpu,
        ram=ram,
        gpus=nvml.gpus,
        driver=nvml.driver,
        disk=disk,
        llama_cpp=llama_info,
        notes=notes,
        detected_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def _note_cross_checks(gpus: list[GpuInfo], llama: LlamaCppInfo, notes: list[str]) -> None:
    """Say when NVML and llama.cpp disagree about GPUs: the benchmark sees llama.cpp's view."""
    llama_gpus = [d for d in llama.devices if d.type in ("gpu", "igpu")]
    if gpus and llama.available and llama.gpu_offload and not llama_gpus:
        notes.append(
            f"NVML lists {len(gpus)} GPU(s) but llama.cpp sees none: check CUDA_VISIBLE_DEVICES "
            "and that llama-cpp-python was built for this GPU."
        )
    if gpus and llama.available and llama.gpu_offload is False:
        # the probe's general advice gives way to the exact command for this machine
        notes[:] = [n for n in notes if not n.startswith(hw_llama.NO_OFFLOAD_NOTE)]
        notes.append(gpu_build_note(llama.version, [g.name for g in gpus]))
    if not gpus and llama_gpus:
        names = ", ".join(f"{d.name} ({d.backend or 'unknown backend'})" for d in llama_gpus)
        notes.append(
            f"No NVIDIA GPU via NVML, but llama.cpp offloads to: {names}; FitBench plans with "
            "llama.cpp's memory figures for them."
        )


def _main(argv: list[str]) -> int:
    start = time.perf_counter()
    report = detect(probe_bandwidth="--no-bandwidth" not in argv)
    data = report.to_dict()
    data["detect_seconds"] = round(time.perf_counter() - start, 3)
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
