"""CPU facts, disk at the model cache, the bandwidth probe, llama.cpp's devices, the fingerprint."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import math
import os
import stat
import sys
from dataclasses import replace
from pathlib import Path

import llama_cpp
import psutil
import pytest

from fitbench.core.hardware import cpu as hw_cpu
from fitbench.core.hardware import disk as hw_disk
from fitbench.core.hardware import llama_devices as hw_llama
from fitbench.core.hardware.detect import HardwareReport, detect, probe_ram_bandwidth
from fitbench.core.hardware.llama_devices import LlamaCppInfo, LlamaDevice
from fitbench.core.hardware.nvml import GpuInfo, PcieInfo

GIB = 2**30

X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD Ryzen 9 7950X 16-Core Processor
flags\t\t: fpu sse sse2 avx f16c fma avx2 avx512f avx512_vnni avx512_bf16 avx512vl
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 2000.00
Features\t: fp asimd evtstrm aes sha1 asimddp sve i8mm bf16
CPU implementer\t: 0x41
CPU part\t: 0xd4f
"""


def test_x86_flags_and_model() -> None:
    flags = hw_cpu.cpu_flags(X86_CPUINFO, "x86_64")
    assert flags["avx2"] and flags["avx512"] and flags["avx512_vnni"] and flags["fma"]
    assert flags["amx"] is False and flags["avx_vnni"] is False
    assert flags["neon"] is False and flags["sve"] is False
    assert hw_cpu.cpu_model(X86_CPUINFO) == "AMD Ryzen 9 7950X 16-Core Processor"


def test_arm_flags_and_model_from_part_number() -> None:
    flags = hw_cpu.cpu_flags(ARM_CPUINFO, "aarch64")
    assert flags["neon"] and flags["dotprod"] and flags["sve"] and flags["i8mm"]
    assert flags["avx2"] is False and flags["avx512"] is False
    assert hw_cpu.cpu_model(ARM_CPUINFO) == "ARM Neoverse-V2"  # Grace


def test_unknown_os_flags_are_none_not_false() -> None:
    if sys.platform == "darwin":
        pytest.skip("macOS answers through sysctl")
    flags = hw_cpu.cpu_flags("", "x86_64")
    assert set(flags.values()) == {None}


def test_this_cpu() -> None:
    notes: list[str] = []
    cpu = hw_cpu.detect_cpu(notes)
    assert cpu.logical_cores == os.cpu_count()
    assert cpu.physical_cores == psutil.cpu_count(logical=False)
    assert 1 <= cpu.usable_cores <= cpu.logical_cores
    assert cpu.model and cpu.model != "unknown CPU"
    assert set(cpu.isa) == {name for name, present in cpu.flags.items() if present}
    if Path("/proc/cpuinfo").is_file():
        text = Path("/proc/cpuinfo").read_text()
        assert cpu.flags["avx2"] == (" avx2" in text) or cpu.architecture != "x86_64"


def test_model_cache_dir_follows_the_hub_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    assert hw_disk.model_cache_dir() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "models"))
    assert hw_disk.model_cache_dir() == tmp_path / "models"
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.delenv("HF_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hw_disk.model_cache_dir() == tmp_path / "xdg" / "huggingface" / "hub"


def test_model_cache_dir_agrees_with_huggingface_hub(isolated_dirs: Path) -> None:
    from huggingface_hub import constants

    # conftest points HF_HOME here before any test; the hub read it at import
    assert hw_disk.model_cache_dir() == Path(os.environ["HF_HOME"]) / "hub"
    assert Path(constants.HF_HUB_CACHE).name == "hub"


def test_disk_of_a_cache_that_does_not_exist_yet(tmp_path: Path) -> None:
    notes: list[str] = []
    disk = hw_disk.detect_disk(notes, tmp_path / "not" / "yet" / "hub")
    assert disk.path == str(tmp_path / "not" / "yet" / "hub")
    assert disk.measured_at == str(tmp_path)
    assert disk.free_bytes is not None and 0 < disk.free_bytes <= (disk.total_bytes or 0)
    assert notes == []


def test_bandwidth_probe_is_a_measured_number() -> None:
    probe = hw_cpu.measure_ram_bandwidth(size_bytes=32 * 2**20, repeats=2, threads=2)
    assert math.isfinite(probe.gbps) and probe.gbps > 0
    assert probe.bytes_per_copy == 32 * 2**20 and probe.threads == 2
    assert probe.describe().startswith("measured: numpy streaming copy of 32 MiB")


def test_probe_ram_bandwidth_api() -> None:
    gbps = probe_ram_bandwidth()
    assert isinstance(gbps, float) and gbps > 0


# llama.cpp, through the real library


def test_llama_probe_in_a_child_process() -> None:
    info, notes = hw_llama.probe()
    assert info.available and info.probed_in == "child process"
    assert info.version == llama_cpp.__version__
    assert info.gpu_offload == bool(llama_cpp.llama_supports_gpu_offload())
    assert info.system_info and "CPU" in info.system_info
    cpus = [d for d in info.devices if d.type == "cpu"]
    assert cpus and cpus[0].backend == "CPU"
    assert (cpus[0].memory_total_bytes or 0) > GIB
    if not info.gpu_offload:
        assert any("no GPU offload" in n for n in notes)


def test_llama_probe_in_process_matches_the_child() -> None:
    child, _ = hw_llama.probe()
    here, _ = hw_llama.probe_in_process()
    assert here.probed_in == "this process"
    assert [(d.name, d.type, d.backend) for d in here.devices] == [
        (d.name, d.type, d.backend) for d in child.devices
    ]


def test_llama_library_without_the_device_api() -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    notes: list[str] = []
    assert hw_llama._devices(libc, notes) == []
    assert "no ggml device API" in notes[0]


def test_llama_cpp_that_cannot_load(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The child imports llama_cpp with its shared library pointed at an empty folder."""
    monkeypatch.setenv("LLAMA_CPP_LIB_PATH", str(tmp_path))
    info, notes = hw_llama.probe()
    assert not info.available and info.devices == []
    assert "llama-cpp-python could not be loaded" in notes[0]


def fake_interpreter(tmp_path: Path, body: str) -> str:
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX shell scripts")
def test_llama_probe_crash_timeout_and_garbage(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "executable", fake_interpreter(tmp_path, "kill -SEGV $$"))
    info, notes = hw_llama.probe()
    assert not info.available and "failed (signal 11" in notes[0]
    monkeypatch.setattr(sys, "executable", fake_interpreter(tmp_path, "echo not json"))
    info, notes = hw_llama.probe()
    assert not info.available and "unreadable" in notes[0]
    monkeypatch.setattr(sys, "executable", fake_interpreter(tmp_path, "exec sleep 30"))
    info, notes = hw_llama.probe(timeout_s=0.5)
    assert not info.available and "did not finish within" in notes[0]


def test_device_type_codes() -> None:
    assert hw_llama._device_type(1, "CUDA") == "gpu"
    assert hw_llama._device_type(2, "Vulkan") == "igpu"
    assert hw_llama._device_type(2, "BLAS") == "accel"  # older enum: 2 was ACCEL
    assert hw_llama._device_type(3, "AMX") == "accel"
    assert hw_llama._device_type(7, None) == "unknown"


# the report: fingerprint, round trip, accessors


def gpu(name: str, total: int, free: int) -> GpuInfo:
    return GpuInfo(
        index=0,
        name=name,
        uuid="GPU-x",
        vram_total_bytes=total,
        vram_free_bytes=free,
        vram_used_bytes=total - free,
        bandwidth_gbps=1008.0,
        bandwidth_source="theoretical",
        memory_bus_width_bits=384,
        max_memory_clock_mhz=10501,
        pcie=PcieInfo(4, 16, 4, 16, 31.5),
        compute_capability="8.9",
        mig_enabled=False,
    )


@pytest.fixture(scope="module")
def base_report() -> HardwareReport:
    return detect(probe_bandwidth=False, llama=False)


def test_fingerprint_is_stable_across_detections(base_report: HardwareReport) -> None:
    again = detect(probe_bandwidth=False, llama=False)
    assert again.fingerprint == base_report.fingerprint
    assert len(base_report.fingerprint) == 16
    int(base_report.fingerprint, 16)


def test_fingerprint_ignores_free_memory_but_not_the_hardware(base_report: HardwareReport) -> None:
    with_gpu = replace(base_report, gpus=[gpu("NVIDIA GeForce RTX 4090", 24 * GIB, 20 * GIB)])
    busier = replace(
        with_gpu,
        gpus=[gpu("NVIDIA GeForce RTX 4090", 24 * GIB, 2 * GIB)],
        ram=replace(
            base_report.ram, available_bytes=1, total_bytes=base_report.ram.total_bytes - 5 * 2**20
        ),
        notes=["something else"],
    )
    assert busier.fingerprint == with_gpu.fingerprint
    assert with_gpu.fingerprint != base_report.fingerprint
    other_card = replace(with_gpu, gpus=[gpu("NVIDIA GeForce RTX 3090", 24 * GIB, 20 * GIB)])
    assert other_card.fingerprint != with_gpu.fingerprint
    more_vram = replace(with_gpu, gpus=[gpu("NVIDIA GeForce RTX 4090", 48 * GIB, 20 * GIB)])
    assert more_vram.fingerprint != with_gpu.fingerprint
    other_cpu = replace(base_report, cpu=replace(base_report.cpu, model="Another CPU"))
    assert other_cpu.fingerprint != base_report.fingerprint
    more_ram = replace(
        base_report, ram=replace(base_report.ram, total_bytes=base_report.ram.total_bytes + 8 * GIB)
    )
    assert more_ram.fingerprint != base_report.fingerprint


def test_to_dict_is_json_and_round_trips(base_report: HardwareReport) -> None:
    report = replace(base_report, gpus=[gpu("NVIDIA GeForce RTX 4090", 24 * GIB, 20 * GIB)])
    data = json.loads(json.dumps(report.to_dict()))
    again = HardwareReport.from_dict(data)
    assert again.to_dict() == data
    assert again.fingerprint == report.fingerprint == data["fingerprint"]


def test_vram_from_llama_cpp_when_nvml_has_no_gpu(base_report: HardwareReport) -> None:
    """A Metal or Vulkan build on a machine without NVML: llama.cpp's figures are the VRAM."""
    llama = LlamaCppInfo(
        available=True,
        gpu_offload=True,
        devices=[
            LlamaDevice("CPU", "cpu", "cpu", "CPU", GIB, 64 * GIB),
            LlamaDevice("Vulkan0", "Radeon RX 7900 XTX", "gpu", "Vulkan", 20 * GIB, 24 * GIB),
            LlamaDevice("Vulkan1", "Radeon 780M", "igpu", "Vulkan", 8 * GIB, 16 * GIB),
        ],
    )
    report = replace(base_report, gpus=[], llama_cpp=llama)
    assert report.vram_source == "llama.cpp"
    assert report.gpu_vram_bytes() == [24 * GIB]  # the integrated GPU shares host RAM
    assert report.total_vram_bytes == 24 * GIB
    assert replace(base_report, gpus=[]).vram_source == "none"


def test_accessors(base_report: HardwareReport) -> None:
    assert base_report.usable_ram_bytes == base_report.ram.usable_bytes
    assert base_report.usable_ram_bytes <= base_report.ram.total_bytes
    assert base_report.cpu_bandwidth_gbps is None  # the probe was skipped, and says so
    assert base_report.cpu.ram_bandwidth_source.startswith("not measured")
    assert base_report.llama_cpp.probed_in == "not probed"
