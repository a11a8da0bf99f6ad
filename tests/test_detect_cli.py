"""`fitbench detect` on this real machine: JSON parsed and checked, and the human table."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import llama_cpp
import psutil
import pytest

from fitbench.cli import main
from fitbench.core.hardware.detect import detect

HAS_NVIDIA = Path("/dev/nvidiactl").exists()


@pytest.fixture(scope="module")
def detect_json(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One real `fitbench detect --json` run, bandwidth probe included, in a fresh interpreter.

    Module-scoped (it takes a second or two), so it sets up its own isolated dirs.
    """
    home = tmp_path_factory.mktemp("detect-cli")
    env = dict(os.environ, FITBENCH_HOME=str(home / "fitbench"), HF_HOME=str(home / "hf"))
    env.pop("HF_HUB_CACHE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "fitbench", "detect", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    data["_hf_home"] = str(home / "hf")
    return data


def test_json_structure(detect_json: dict) -> None:
    assert set(detect_json) >= {"cpu", "ram", "gpus", "driver", "disk", "llama_cpp", "notes"}
    assert re.fullmatch(r"[0-9a-f]{16}", detect_json["fingerprint"])
    cpu = detect_json["cpu"]
    assert {"model", "physical_cores", "logical_cores", "flags", "ram_bandwidth_gbps"} <= set(cpu)
    assert {"avx2", "avx512", "amx", "neon"} <= set(cpu["flags"])
    ram = detect_json["ram"]
    assert {"total_bytes", "available_bytes", "cgroup_limit_bytes", "swap_total_bytes"} <= set(ram)
    assert {"path", "free_bytes", "total_bytes"} <= set(detect_json["disk"])
    assert set(detect_json["llama_server"]) == {"path", "source", "note"}
    llama = detect_json["llama_cpp"]
    assert {"version", "gpu_offload", "system_info", "devices"} <= set(llama)
    for device in llama["devices"]:
        assert {"name", "description", "type", "memory_free_bytes", "memory_total_bytes"} <= set(
            device
        )


def test_json_values_match_this_machine(detect_json: dict) -> None:
    cpu, ram, disk, llama = (detect_json[k] for k in ("cpu", "ram", "disk", "llama_cpp"))
    assert cpu["logical_cores"] == os.cpu_count()
    assert cpu["physical_cores"] == psutil.cpu_count(logical=False)
    assert cpu["ram_bandwidth_gbps"] > 0
    assert cpu["ram_bandwidth_source"].startswith("measured: numpy streaming copy")
    host = psutil.virtual_memory().total
    assert ram["total_bytes"] == host
    limit = ram["cgroup_limit_bytes"]
    assert ram["usable_bytes"] == (min(host, limit) if limit is not None else host)
    assert 0 < ram["available_bytes"] <= ram["usable_bytes"]
    if Path("/proc/self/cgroup").exists() and Path("/sys/fs/cgroup").is_dir():
        assert ram["cgroup_version"] in (1, 2)
    # the HF_HOME given to the child: the cache huggingface_hub downloads into
    assert disk["path"] == str(Path(detect_json["_hf_home"]) / "hub")
    assert disk["free_bytes"] > 0
    assert llama["version"] == llama_cpp.__version__
    assert llama["gpu_offload"] == bool(llama_cpp.llama_supports_gpu_offload())
    assert any(d["type"] == "cpu" for d in llama["devices"])


@pytest.mark.skipif(HAS_NVIDIA, reason="this machine has an NVIDIA driver")
def test_no_gpu_here_is_a_clear_note(detect_json: dict) -> None:
    assert detect_json["gpus"] == []
    assert detect_json["driver"]["nvml_available"] is False
    assert any("NVIDIA" in note for note in detect_json["notes"])


def test_gui_api_returns_the_same_structure(detect_json: dict) -> None:
    data = detect(probe_bandwidth=False).to_dict()
    assert data["fingerprint"] == detect_json["fingerprint"]

    def shape(value: object) -> object:
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items() if k not in ("flags",)}
        if isinstance(value, list):
            return [shape(v) for v in value[:1]]
        return None

    # llama_server is the CLI's addition (which llama-server `fitbench serve` would start)
    cli_only = ("_hf_home", "llama_server")
    assert shape(data) == shape({k: v for k, v in detect_json.items() if k not in cli_only})


def test_human_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", "--no-bandwidth"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert re.fullmatch(r"Machine fingerprint [0-9a-f]{16}", lines[0])
    labels = [
        ln.split("  ")[1].strip() for ln in lines[1:] if ln.startswith("  ") and "  - " not in ln
    ]
    for label in ("CPU", "Instructions", "RAM", "RAM bandwidth", "Model cache disk", "llama.cpp"):
        assert label in labels
    assert "not measured (bandwidth probe skipped)" in out
    assert f"llama-cpp-python {llama_cpp.__version__}" in out
    if not HAS_NVIDIA:
        assert "no NVIDIA GPU (see notes)" in out
        assert "Notes:" in out


def test_json_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["detect", "--json", "--no-bandwidth"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cpu"]["ram_bandwidth_gbps"] is None
    assert data["llama_cpp"]["probed_in"] == "child process"


def test_module_entry_point_for_bare_machines(tmp_path: Path) -> None:
    """`python -m fitbench.core.hardware.detect`: the H200 run uses it (no CLI, no platformdirs)."""
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), FITBENCH_HOME=str(tmp_path / "fb"))
    proc = subprocess.run(
        [sys.executable, "-m", "fitbench.core.hardware.detect", "--no-bandwidth"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["detect_seconds"] > 0
    assert data["fingerprint"] == detect(probe_bandwidth=False, llama=False).fingerprint


def test_importing_the_module_is_cheap() -> None:
    """Heavy or optional packages load only when detect() needs them, never at import."""
    code = (
        "import sys, fitbench.core.hardware.detect; "
        "print([m for m in ('numpy', 'llama_cpp', 'pynvml', 'platformdirs', 'huggingface_hub') "
        "if m in sys.modules])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "[]"
