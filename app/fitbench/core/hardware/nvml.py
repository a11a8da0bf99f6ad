"""NVIDIA GPUs through NVML (nvidia-ml-py, imported as `pynvml`).

Every failure becomes a note: no package, no driver library, a driver that is not loaded, an
error in the middle of a query, a GPU that falls off the bus between two calls. A GPU whose
memory cannot be read is left out (others add its VRAM up); a GPU whose optional figures fail
stays in with those figures None.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any

# PCIe payload bandwidth per lane and direction in GB/s, after line encoding
# (8b/10b for gen 1-2, 128b/130b for gen 3-5, FLIT for gen 6).
PCIE_LANE_GBPS: dict[int, float] = {1: 0.25, 2: 0.5, 3: 0.985, 4: 1.969, 5: 3.938, 6: 7.563}


@dataclass
class PcieInfo:
    gen_current: int | None
    gen_max: int | None  # the best this GPU and its slot can do together
    width_current: int | None
    width_max: int | None
    bandwidth_gbps: float | None  # theoretical, one direction, at gen_max x width_max


@dataclass
class GpuProcess:
    pid: int
    name: str | None
    used_bytes: int | None  # None where the driver does not say (containers, WDDM)
    kind: str  # "compute" or "graphics"


@dataclass
class GpuInfo:
    index: int
    name: str
    uuid: str | None
    vram_total_bytes: int
    vram_free_bytes: int
    vram_used_bytes: int
    bandwidth_gbps: float | None  # theoretical: bus width x max memory clock x 2 (DDR)
    bandwidth_source: str
    memory_bus_width_bits: int | None
    max_memory_clock_mhz: int | None
    pcie: PcieInfo
    compute_capability: str | None
    mig_enabled: bool | None
    processes: list[GpuProcess] = field(default_factory=list)


@dataclass
class DriverInfo:
    nvml_available: bool
    driver_version: str | None = None
    cuda_driver_version: str | None = None  # the newest CUDA the driver supports, e.g. "12.4"
    nvml_version: str | None = None
    cuda_visible_devices: str | None = None  # as set in this environment; NVML ignores it
    error: str | None = None  # why NVML is unavailable


@dataclass
class NvmlResult:
    gpus: list[GpuInfo]
    driver: DriverInfo
    notes: list[str]


def theoretical_bandwidth_gbps(
    bus_width_bits: int | None, mem_clock_mhz: int | None
) -> float | None:
    """Peak memory bandwidth from NVML's figures: bytes per transfer x clock x 2 (double data rate).

    NVML reports the memory clock such that x2 gives the spec sheet figure for both GDDR and HBM
    (RTX 4090: 384 bit, 10501 MHz -> 1008 GB/s; H100 SXM: 5120 bit, 2619 MHz -> 3352 GB/s).
    """
    if not bus_width_bits or not mem_clock_mhz:
        return None
    return bus_width_bits / 8 * mem_clock_mhz * 1e6 * 2 / 1e9


def pcie_bandwidth_gbps(gen: int | None, width: int | None) -> float | None:
    if not gen or not width or gen not in PCIE_LANE_GBPS:
        return None
    return PCIE_LANE_GBPS[gen] * width


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _cuda_version_text(version: int) -> str:
    # NVML encodes CUDA 12.4 as 12040
    return f"{version // 1000}.{(version % 1000) // 10}"


def _process_name(pynvml: Any, pid: int) -> str | None:
    try:
        import psutil

        return str(psutil.Process(pid).name())
    except Exception:  # another PID namespace, already gone, or no permission
        pass
    try:
        return os.path.basename(_text(pynvml.nvmlSystemGetProcessName(pid))) or None
    except Exception:
        return None


def _init_failure_note(pynvml: Any, exc: BaseException) -> str:
    if isinstance(exc, getattr(pynvml, "NVMLError_LibraryNotFound", ())):
        return (
            "No NVIDIA driver library (libnvidia-ml) was found, so no NVIDIA GPU is visible. "
            "If this machine has one, install the NVIDIA driver, or start the container with "
            "GPU access (docker run --gpus all)."
        )
    if isinstance(exc, getattr(pynvml, "NVMLError_DriverNotLoaded", ())):
        return (
            "The NVIDIA driver library is installed but the driver is not loaded (NVML: Driver "
            "Not Loaded): no NVIDIA GPU can be used. Check `nvidia-smi`; a reboot after a driver "
            "update often fixes this."
        )
    if isinstance(exc, getattr(pynvml, "NVMLError_LibRmVersionMismatch", ())):
        return (
            "The NVIDIA driver library and the loaded kernel driver have different versions "
            "(NVML/RM version mismatch): reboot after the driver update."
        )
    return f"NVML could not start ({type(exc).__name__}: {exc}); NVIDIA GPUs are not listed."


class _Gpu:
    """Queries for one GPU; optional figures that fail become None and a note."""

    def __init__(self, pynvml: Any, index: int, handle: Any, notes: list[str]) -> None:
        self.nv = pynvml
        self.index = index
        self.handle = handle
        self.notes = notes

    def optional(self, what: str, call: Any, *args: Any) -> Any:
        try:
            return call(self.handle, *args)
        except self.nv.NVMLError_GpuIsLost:
            raise
        except self.nv.NVMLError as exc:
            if not isinstance(exc, self.nv.NVMLError_NotSupported):
                self.notes.append(f"GPU {self.index}: NVML could not read its {what} ({exc}).")
            return None

    def processes(self) -> list[GpuProcess]:
        found: list[GpuProcess] = []
        for kind, call in (
            ("compute", self.nv.nvmlDeviceGetComputeRunningProcesses),
            ("graphics", self.nv.nvmlDeviceGetGraphicsRunningProcesses),
        ):
            for proc in self.optional(f"{kind} processes", call) or []:
                pid = int(proc.pid)
                if any(p.pid == pid for p in found):
                    continue
                used = getattr(proc, "usedGpuMemory", None)
                found.append(
                    GpuProcess(
                        pid=pid,
                        name=_process_name(self.nv, pid),
                        used_bytes=int(used) if used is not None else None,
                        kind=kind,
                    )
                )
        return found

    def read(self) -> GpuInfo:
        nv = self.nv
        memory = nv.nvmlDeviceGetMemoryInfo(self.handle)  # essential: errors propagate
        name = self.optional("name", nv.nvmlDeviceGetName)
        uuid = self.optional("UUID", nv.nvmlDeviceGetUUID)
        bus = self.optional("memory bus width", nv.nvmlDeviceGetMemoryBusWidth)
        clock = self.optional("max memory clock", nv.nvmlDeviceGetMaxClockInfo, nv.NVML_CLOCK_MEM)
        bandwidth = theoretical_bandwidth_gbps(bus, clock)
        if bandwidth is None:
            self.notes.append(
                f"GPU {self.index}: NVML reports no memory bus width or clock, so its memory "
                "bandwidth is unknown; speed predictions for it rest on measurements only."
            )
        capability = self.optional("compute capability", nv.nvmlDeviceGetCudaComputeCapability)
        gen_max = self.optional("max PCIe generation", nv.nvmlDeviceGetMaxPcieLinkGeneration)
        width_max = self.optional("max PCIe width", nv.nvmlDeviceGetMaxPcieLinkWidth)
        pcie = PcieInfo(
            gen_current=self.optional("PCIe generation", nv.nvmlDeviceGetCurrPcieLinkGeneration),
            gen_max=gen_max,
            width_current=self.optional("PCIe width", nv.nvmlDeviceGetCurrPcieLinkWidth),
            width_max=width_max,
            bandwidth_gbps=pcie_bandwidth_gbps(gen_max, width_max),
        )
        mig = self.optional("MIG mode", nv.nvmlDeviceGetMigMode)
        mig_enabled = None if mig is None else bool(mig[0])
        if mig_enabled:
            self.notes.append(
                f"GPU {self.index} has MIG enabled: CUDA sees MIG instances, each with a share "
                "of its memory, not the whole GPU."
            )
        return GpuInfo(
            index=self.index,
            name=_text(name) if name is not None else f"NVIDIA GPU {self.index}",
            uuid=_text(uuid) if uuid is not None else None,
            vram_total_bytes=int(memory.total),
            vram_free_bytes=int(memory.free),
            vram_used_bytes=int(memory.used),
            bandwidth_gbps=bandwidth,
            bandwidth_source=(
                "theoretical: memory bus width x max memory clock x 2 (NVML)"
                if bandwidth is not None
                else "unknown"
            ),
            memory_bus_width_bits=int(bus) if bus is not None else None,
            max_memory_clock_mhz=int(clock) if clock is not None else None,
            pcie=pcie,
            compute_capability=f"{capability[0]}.{capability[1]}" if capability else None,
            mig_enabled=mig_enabled,
            processes=self.processes(),
        )


def _driver_info(nv: Any, notes: list[str]) -> DriverInfo:
    info = DriverInfo(
        nvml_available=True, cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES")
    )
    try:
        info.driver_version = _text(nv.nvmlSystemGetDriverVersion())
    except nv.NVMLError as exc:
        notes.append(f"The NVIDIA driver version could not be read ({exc}).")
    try:
        info.cuda_driver_version = _cuda_version_text(int(nv.nvmlSystemGetCudaDriverVersion()))
    except nv.NVMLError as exc:
        notes.append(f"The CUDA version supported by the driver could not be read ({exc}).")
    with contextlib.suppress(nv.NVMLError):  # informational only
        info.nvml_version = _text(nv.nvmlSystemGetNVMLVersion())
    if info.cuda_visible_devices is not None:
        notes.append(
            f"CUDA_VISIBLE_DEVICES={info.cuda_visible_devices!r}: llama.cpp sees only those "
            "GPUs, while this list shows every GPU the driver has."
        )
    return info


def query_nvml() -> NvmlResult:
    """Every NVIDIA GPU NVML reports, in NVML's (PCI bus) order, and the driver versions."""
    notes: list[str] = []
    try:
        import pynvml
    except ImportError:
        notes.append(
            "nvidia-ml-py is not installed, so NVIDIA GPUs cannot be listed "
            "(pip install nvidia-ml-py)."
        )
        return NvmlResult([], DriverInfo(False, error="nvidia-ml-py not installed"), notes)
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError subclasses, or OSError from a broken library
        notes.append(_init_failure_note(pynvml, exc))
        return NvmlResult([], DriverInfo(False, error=f"{type(exc).__name__}: {exc}"), notes)
    gpus: list[GpuInfo] = []
    try:
        driver = _driver_info(pynvml, notes)
        try:
            count = int(pynvml.nvmlDeviceGetCount())
        except pynvml.NVMLError as exc:
            notes.append(f"NVML could not count the GPUs ({exc}); none are listed.")
            count = 0
        for index in range(count):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                gpus.append(_Gpu(pynvml, index, handle, notes).read())
            except Exception as exc:  # NVMLError_GpuIsLost and friends; one GPU, not the rest
                notes.append(
                    f"GPU {index} could not be read ({type(exc).__name__}: {exc}): it may have "
                    "been removed, reset or have failed. It is left out."
                )
        if count and not gpus:
            notes.append("NVML lists GPUs but none could be read; FitBench plans for the CPU only.")
        elif count == 0:
            notes.append("The NVIDIA driver is present but reports no GPU.")
    finally:
        # shutting down a library that failed mid-call must not hide the results
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    return NvmlResult(gpus, driver, notes)
