"""NVML logic against a fake driver installed at the pynvml boundary (the library's functions).

Errors are pynvml's own exception classes, raised the way pynvml raises them, so the code under
test meets exactly what a real driver would hand it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

import pynvml
import pytest

from fitbench.core.hardware import nvml as hw_nvml
from fitbench.core.hardware.detect import detect

GIB = 2**30


@dataclass
class FakeGpu:
    name: str
    total: int
    used: int
    uuid: str
    bus_bits: int | None = 5120
    mem_clock_mhz: int | None = 2619
    pcie: tuple[int, int, int, int] = (5, 16, 5, 16)  # gen now, width now, gen max, width max
    capability: tuple[int, int] = (9, 0)
    compute_pids: list[tuple[int, int | None]] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)  # pynvml function name -> NVML error code


class FakeNvml:
    """Replaces the pynvml functions FitBench calls; GPUs are looked up by their handle."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, gpus: list[FakeGpu]) -> None:
        self.gpus = gpus
        self.fail: dict[str, int] = {}  # system-level failures
        self.shutdowns = 0
        self.inits = 0
        patch = monkeypatch.setattr
        patch(pynvml, "nvmlInit", self.init)
        patch(pynvml, "nvmlShutdown", self.shutdown)
        patch(pynvml, "nvmlSystemGetDriverVersion", self.system("driver", "575.57.08"))
        patch(pynvml, "nvmlSystemGetCudaDriverVersion", self.system("cuda", 12090))
        patch(pynvml, "nvmlSystemGetNVMLVersion", self.system("nvml", "12.575.57.08"))
        patch(pynvml, "nvmlSystemGetProcessName", lambda pid: b"/usr/bin/llama-server")
        patch(pynvml, "nvmlDeviceGetCount", self.system("count", None))
        patch(pynvml, "nvmlDeviceGetHandleByIndex", self.handle)
        per_gpu: dict[str, Any] = {
            "nvmlDeviceGetMemoryInfo": lambda g: pynvml.c_nvmlMemory_t(
                total=g.total, free=g.total - g.used, used=g.used
            ),
            "nvmlDeviceGetName": lambda g: g.name,
            "nvmlDeviceGetUUID": lambda g: g.uuid,
            "nvmlDeviceGetMemoryBusWidth": lambda g: self.maybe_unsupported(g.bus_bits),
            "nvmlDeviceGetCudaComputeCapability": lambda g: g.capability,
            "nvmlDeviceGetCurrPcieLinkGeneration": lambda g: g.pcie[0],
            "nvmlDeviceGetCurrPcieLinkWidth": lambda g: g.pcie[1],
            "nvmlDeviceGetMaxPcieLinkGeneration": lambda g: g.pcie[2],
            "nvmlDeviceGetMaxPcieLinkWidth": lambda g: g.pcie[3],
            "nvmlDeviceGetMigMode": lambda g: [0, 0],
            "nvmlDeviceGetComputeRunningProcesses": lambda g: [
                pynvml.nvmlFriendlyObject({"pid": pid, "usedGpuMemory": used})
                for pid, used in g.compute_pids
            ],
            "nvmlDeviceGetGraphicsRunningProcesses": lambda g: [],
        }
        for name, getter in per_gpu.items():
            patch(pynvml, name, self.device_call(name, getter))
        patch(pynvml, "nvmlDeviceGetMaxClockInfo", self.device_call("clock", self.clock))

    @staticmethod
    def maybe_unsupported(value: Any) -> Any:
        if value is None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return value

    def clock(self, gpu: FakeGpu, clock_type: int) -> int:
        assert clock_type == pynvml.NVML_CLOCK_MEM
        return int(self.maybe_unsupported(gpu.mem_clock_mhz))

    def init(self) -> None:
        self.inits += 1
        if "init" in self.fail:
            raise pynvml.NVMLError(self.fail["init"])

    def shutdown(self) -> None:
        self.shutdowns += 1

    def system(self, key: str, value: Any) -> Any:
        def call() -> Any:
            if key in self.fail:
                raise pynvml.NVMLError(self.fail[key])
            return len(self.gpus) if key == "count" else value

        return call

    def handle(self, index: int) -> FakeGpu:
        if index >= len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        gpu = self.gpus[index]
        if "handle" in gpu.fail:
            raise pynvml.NVMLError(gpu.fail["handle"])
        return gpu

    def device_call(self, name: str, getter: Any) -> Any:
        def call(gpu: FakeGpu, *args: Any) -> Any:
            if name in gpu.fail:
                raise pynvml.NVMLError(gpu.fail[name])
            return getter(gpu, *args)

        return call


H200 = FakeGpu("NVIDIA H200", 150_754_820_096, 524_288_000, "GPU-aaaa", 6144, 3201)
RTX = FakeGpu(
    "NVIDIA GeForce RTX 4090",
    25_757_220_864,
    2 * GIB,
    "GPU-bbbb",
    384,
    10501,
    pcie=(1, 16, 4, 16),
    capability=(8, 9),
)


def fresh(gpu: FakeGpu, **changes: Any) -> FakeGpu:
    return FakeGpu(**{**gpu.__dict__, "fail": {}, "compute_pids": [], **changes})


def test_no_gpu_reported_by_a_loaded_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml(monkeypatch, [])
    result = hw_nvml.query_nvml()
    assert result.gpus == []
    assert result.driver.nvml_available and result.driver.driver_version == "575.57.08"
    assert any("reports no GPU" in note for note in result.notes)
    assert fake.shutdowns == 1


def test_one_gpu_every_field(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = fresh(H200, compute_pids=[(os.getpid(), 3 * GIB)])
    FakeNvml(monkeypatch, [gpu])
    result = hw_nvml.query_nvml()
    assert result.notes == []
    (info,) = result.gpus
    assert (info.index, info.name, info.uuid) == (0, "NVIDIA H200", "GPU-aaaa")
    assert info.vram_total_bytes == 150_754_820_096
    assert info.vram_used_bytes == 524_288_000
    assert info.vram_free_bytes == 150_754_820_096 - 524_288_000
    # 6144 bit x 3201 MHz x 2 / 8 = 4917 GB/s: the H200's 4.8 TB/s spec
    assert info.bandwidth_gbps == pytest.approx(4916.7, abs=0.1)
    assert info.bandwidth_source.startswith("theoretical")
    assert info.pcie.bandwidth_gbps == pytest.approx(63.0, abs=0.1)
    assert info.compute_capability == "9.0"
    assert info.mig_enabled is False
    (proc,) = info.processes
    assert proc.pid == os.getpid() and proc.used_bytes == 3 * GIB and proc.kind == "compute"
    assert proc.name and "python" in proc.name.lower()  # psutil found this very process
    assert result.driver.cuda_driver_version == "12.9"


def test_two_gpus_with_unequal_memory_in_nvml_order(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeNvml(monkeypatch, [fresh(H200), fresh(RTX)])
    report = detect(probe_bandwidth=False, llama=False)
    assert [g.name for g in report.gpus] == ["NVIDIA H200", "NVIDIA GeForce RTX 4090"]
    assert report.gpu_vram_bytes() == [150_754_820_096, 25_757_220_864]
    assert report.total_vram_bytes == 150_754_820_096 + 25_757_220_864
    assert report.vram_source == "nvml"
    rtx = report.gpus[1]
    assert rtx.bandwidth_gbps == pytest.approx(1008.1, abs=0.1)  # the 4090's 1008 GB/s
    assert (rtx.pcie.gen_current, rtx.pcie.gen_max) == (1, 4)  # idle link: max is what counts
    assert rtx.pcie.bandwidth_gbps == pytest.approx(31.5, abs=0.1)
    data = report.to_dict()
    assert [g["vram_total_bytes"] for g in data["gpus"]] == report.gpu_vram_bytes()
    assert data["gpus"][0]["pcie"]["width_max"] == 16


def test_nvidia_ml_py_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml now raises ImportError
    result = hw_nvml.query_nvml()
    assert result.gpus == [] and not result.driver.nvml_available
    assert "pip install nvidia-ml-py" in result.notes[0]


def test_driver_library_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """pynvml's real loader, with the shared library absent (as on a machine without a driver)."""

    def no_library(*args: Any, **kwargs: Any) -> Any:
        raise OSError("libnvidia-ml.so.1: cannot open shared object file")

    monkeypatch.setattr(pynvml, "nvmlLib", None)
    monkeypatch.setattr(pynvml, "CDLL", no_library)
    result = hw_nvml.query_nvml()
    assert result.gpus == []
    assert result.driver.error and "LibraryNotFound" in result.driver.error
    assert "No NVIDIA driver library" in result.notes[0]


def test_driver_not_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml(monkeypatch, [fresh(H200)])
    fake.fail["init"] = pynvml.NVML_ERROR_DRIVER_NOT_LOADED
    report = detect(probe_bandwidth=False, llama=False)
    assert report.gpus == [] and report.total_vram_bytes == 0
    assert any("driver is not loaded" in note for note in report.notes)
    assert report.driver.nvml_available is False


def test_unexpected_exception_at_init_is_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise OSError("undefined symbol: nvmlInitWithFlags")

    monkeypatch.setattr(pynvml, "nvmlInit", broken)
    result = hw_nvml.query_nvml()
    assert result.gpus == []
    assert "NVML could not start (OSError: undefined symbol" in result.notes[0]


def test_error_mid_call_keeps_the_gpu_without_that_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = fresh(RTX, fail={"nvmlDeviceGetMemoryBusWidth": pynvml.NVML_ERROR_UNKNOWN})
    fake = FakeNvml(monkeypatch, [fresh(H200), broken])
    fake.fail["cuda"] = pynvml.NVML_ERROR_UNKNOWN
    result = hw_nvml.query_nvml()
    assert [g.index for g in result.gpus] == [0, 1]
    assert result.gpus[1].bandwidth_gbps is None and result.gpus[1].memory_bus_width_bits is None
    assert result.gpus[1].vram_total_bytes == RTX.total
    assert any(
        "GPU 1: NVML could not read its memory bus width (Unknown Error)" in n for n in result.notes
    )
    assert any("GPU 1: NVML reports no memory bus width" in n for n in result.notes)
    assert result.driver.cuda_driver_version is None
    assert any("CUDA version supported by the driver" in n for n in result.notes)
    assert fake.shutdowns == 1


def test_not_supported_is_quietly_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeNvml(monkeypatch, [fresh(RTX, mem_clock_mhz=None)])
    result = hw_nvml.query_nvml()
    assert result.gpus[0].max_memory_clock_mhz is None
    # Not Supported is not an error worth a note; the missing bandwidth is
    assert not any("could not read" in n for n in result.notes)
    assert any("bandwidth is unknown" in n for n in result.notes)


def test_gpu_vanishing_before_its_handle(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = fresh(RTX, fail={"handle": pynvml.NVML_ERROR_GPU_IS_LOST})
    fake = FakeNvml(monkeypatch, [fresh(H200), gone])
    result = hw_nvml.query_nvml()
    assert [g.name for g in result.gpus] == ["NVIDIA H200"]
    assert any(
        "GPU 1 could not be read (NVMLError_GpuIsLost: GPU is lost)" in n for n in result.notes
    )
    assert fake.shutdowns == 1


def test_gpu_vanishing_mid_query_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lost after its memory was read, while reading an optional figure: the GPU is dropped."""
    gone = fresh(H200, fail={"nvmlDeviceGetCudaComputeCapability": pynvml.NVML_ERROR_GPU_IS_LOST})
    FakeNvml(monkeypatch, [gone, fresh(RTX)])
    report = detect(probe_bandwidth=False, llama=False)
    assert [g.index for g in report.gpus] == [1]
    assert report.gpu_vram_bytes() == [RTX.total]
    assert any("GPU 0 could not be read" in n and "left out" in n for n in report.notes)


def test_gpu_count_failing(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml(monkeypatch, [fresh(H200)])
    fake.fail["count"] = pynvml.NVML_ERROR_UNKNOWN
    result = hw_nvml.query_nvml()
    assert result.gpus == []
    assert any("could not count the GPUs" in n for n in result.notes)


def test_all_gpus_unreadable(monkeypatch: pytest.MonkeyPatch) -> None:
    lost = {"nvmlDeviceGetMemoryInfo": pynvml.NVML_ERROR_GPU_IS_LOST}
    FakeNvml(monkeypatch, [fresh(H200, fail=lost)])
    result = hw_nvml.query_nvml()
    assert result.gpus == []
    assert any("none could be read" in n for n in result.notes)


def test_process_memory_unknown_and_permissions(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = fresh(
        H200,
        compute_pids=[(4_000_000, None)],  # a PID from another namespace, memory not reported
        fail={"nvmlDeviceGetGraphicsRunningProcesses": pynvml.NVML_ERROR_NO_PERMISSION},
    )
    FakeNvml(monkeypatch, [gpu])
    (info,) = hw_nvml.query_nvml().gpus
    (proc,) = info.processes
    assert proc.used_bytes is None
    assert proc.name == "llama-server"  # psutil cannot see it, NVML names it


def test_cuda_visible_devices_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeNvml(monkeypatch, [fresh(H200), fresh(RTX)])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    result = hw_nvml.query_nvml()
    assert result.driver.cuda_visible_devices == "1"
    assert len(result.gpus) == 2
    assert any("CUDA_VISIBLE_DEVICES='1'" in n for n in result.notes)


def test_mig_enabled_note(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeNvml(monkeypatch, [fresh(H200)])
    monkeypatch.setattr(pynvml, "nvmlDeviceGetMigMode", lambda handle: [1, 1])
    result = hw_nvml.query_nvml()
    assert result.gpus[0].mig_enabled is True
    assert any("MIG enabled" in n for n in result.notes)


@pytest.mark.parametrize(
    ("bits", "mhz", "expected"),
    [(5120, 2619, 3352.3), (256, 7001, 448.0), (None, 2619, None), (384, 0, None)],
)
def test_theoretical_bandwidth(bits: int | None, mhz: int | None, expected: float | None) -> None:
    value = hw_nvml.theoretical_bandwidth_gbps(bits, mhz)
    assert value == (pytest.approx(expected, abs=0.1) if expected is not None else None)


def test_pcie_bandwidth_table() -> None:
    assert hw_nvml.pcie_bandwidth_gbps(3, 16) == pytest.approx(15.76)
    assert hw_nvml.pcie_bandwidth_gbps(4, 8) == pytest.approx(15.752)
    assert hw_nvml.pcie_bandwidth_gbps(None, 16) is None
    assert hw_nvml.pcie_bandwidth_gbps(9, 16) is None  # a generation we do not know yet
