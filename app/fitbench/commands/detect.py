"""`fitbench detect`: what this machine has, as a short table or as JSON (--json)."""

from __future__ import annotations

import argparse
from typing import Any

from fitbench.commands._common import EXIT_OK, print_json

HELP = "detect GPUs, CPU, RAM, disk and llama.cpp devices"

_ISA_LABELS = {
    "avx": "AVX",
    "avx2": "AVX2",
    "fma": "FMA",
    "f16c": "F16C",
    "avx_vnni": "AVX-VNNI",
    "avx512": "AVX-512",
    "avx512_vnni": "AVX512-VNNI",
    "avx512_bf16": "AVX512-BF16",
    "amx": "AMX",
    "neon": "NEON",
    "dotprod": "DOTPROD",
    "i8mm": "I8MM",
    "sve": "SVE",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.add_argument(
        "--no-bandwidth",
        action="store_true",
        help="skip the CPU RAM bandwidth measurement (about half a second)",
    )


def run(args: argparse.Namespace) -> int:
    from fitbench.core.hardware.detect import detect
    from fitbench.core.serve.server import detect_summary

    report = detect(probe_bandwidth=not args.no_bandwidth)
    data = report.to_dict()
    # which llama-server `fitbench serve` would start (not hardware, but part of what runs here)
    data["llama_server"] = detect_summary()
    if args.json:
        print_json(data)
    else:
        print(format_table(data))
    return EXIT_OK


def _gib(value: int | None) -> str:
    return "?" if value is None else f"{value / 2**30:.1f} GiB"


def _bandwidth(gbps: float | None) -> str:
    if gbps is None:
        return "unknown"
    return f"{gbps / 1000:.2f} TB/s" if gbps >= 1000 else f"{gbps:.1f} GB/s"


def _gpu_line(gpu: dict[str, Any]) -> str:
    parts = [
        f"{gpu['name']}, {_gib(gpu['vram_total_bytes'])} VRAM ({_gib(gpu['vram_free_bytes'])} free)"
    ]
    if gpu["bandwidth_gbps"] is not None:
        parts.append(f"{_bandwidth(gpu['bandwidth_gbps'])} (theoretical)")
    pcie = gpu["pcie"]
    if pcie["gen_max"] and pcie["width_max"]:
        link = f"PCIe {pcie['gen_max']}.0 x{pcie['width_max']}"
        if pcie["bandwidth_gbps"]:
            link += f" ({pcie['bandwidth_gbps']:.0f} GB/s per direction)"
        if (pcie["gen_current"], pcie["width_current"]) != (pcie["gen_max"], pcie["width_max"]):
            link += f", now gen {pcie['gen_current']} x{pcie['width_current']}"
        parts.append(link)
    if gpu["compute_capability"]:
        parts.append(f"compute {gpu['compute_capability']}")
    if gpu["processes"]:
        parts.append(f"{len(gpu['processes'])} process(es) using it")
    return ", ".join(parts)


def format_table(data: dict[str, Any]) -> str:
    cpu, ram, disk, llama = data["cpu"], data["ram"], data["disk"], data["llama_cpp"]
    rows: list[tuple[str, str]] = []
    cores = f"{cpu['physical_cores'] or '?'} cores / {cpu['logical_cores']} threads"
    if cpu["usable_cores"] < cpu["logical_cores"]:
        cores += f" ({cpu['usable_cores']} usable here)"
    rows.append(("CPU", f"{cpu['model']} ({cpu['architecture']}), {cores}"))
    isa = " ".join(_ISA_LABELS.get(name, name) for name in cpu["isa"])
    rows.append(("Instructions", isa or "none of AVX2/AVX-512/AMX/NEON detected"))
    limit = ram["cgroup_limit_bytes"]
    limit_text = f"container limit {_gib(limit)}" if limit is not None else "no container limit"
    rows.append(
        (
            "RAM",
            f"{_gib(ram['total_bytes'])} total, {_gib(ram['available_bytes'])} available, "
            f"{limit_text}; swap {_gib(ram['swap_total_bytes'])}",
        )
    )
    rows.append(
        (
            "RAM bandwidth",
            f"{_bandwidth(cpu['ram_bandwidth_gbps'])} ({cpu['ram_bandwidth_source']})",
        )
    )
    for gpu in data["gpus"]:
        rows.append((f"GPU {gpu['index']}", _gpu_line(gpu)))
    driver = data["driver"]
    if not data["gpus"]:
        rows.append(("GPU", "no NVIDIA GPU (see notes)"))
    if driver["nvml_available"]:
        rows.append(
            (
                "NVIDIA driver",
                f"{driver['driver_version'] or '?'}, CUDA {driver['cuda_driver_version'] or '?'}",
            )
        )
    rows.append(
        (
            "Model cache disk",
            f"{_gib(disk['free_bytes'])} free of {_gib(disk['total_bytes'])} at {disk['path']}",
        )
    )
    if llama["available"]:
        devices = "; ".join(
            f"{d['name']} [{d['type']}]"
            + (
                f" {_gib(d['memory_free_bytes'])} free"
                if d["memory_free_bytes"] is not None
                else ""
            )
            for d in llama["devices"]
        )
        offload = {True: "yes", False: "no", None: "unknown"}[llama["gpu_offload"]]
        rows.append(
            (
                "llama.cpp",
                f"llama-cpp-python {llama['version']}, GPU offload: {offload}; "
                f"devices: {devices or 'none listed'}",
            )
        )
        if llama.get("backend_modules"):  # a GGML_BACKEND_DL build: what ggml loaded here
            rows.append(("llama.cpp backends", ", ".join(llama["backend_modules"])))
    else:
        rows.append(("llama.cpp", "not available (see notes)"))
    server = data.get("llama_server")
    if server:
        rows.append(("llama-server", str(server["note"])))
    width = max(len(label) for label, _ in rows)
    lines = [f"Machine fingerprint {data['fingerprint']}"]
    lines += [f"  {label.ljust(width)}  {value}" for label, value in rows]
    if data["notes"]:
        lines.append("Notes:")
        lines += [f"  - {note}" for note in data["notes"]]
    return "\n".join(lines)
