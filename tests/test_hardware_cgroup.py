"""Container memory and CPU limits read from fixture /proc and /sys trees (cgroup v1 and v2)."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from fitbench.core.hardware import cpu as hw_cpu
from fitbench.core.hardware.cgroup import read_cgroup_cpu_quota, read_cgroup_memory
from fitbench.core.hardware.detect import detect

GIB = 2**30
V1_UNLIMITED = "9223372036854771712"

V2_MOUNT = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw\n"
HYBRID_MOUNTS = (
    "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
    "35 31 0:32 {root} /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
)


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_v2_in_a_cgroup_namespace(tmp_path: Path) -> None:
    """Docker/Podman today: the container's own cgroup is mounted at /sys/fs/cgroup."""
    root = write_tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/\n",
            "proc/self/mountinfo": V2_MOUNT,
            "sys/fs/cgroup/memory.max": "8589934592\n",
            "sys/fs/cgroup/memory.current": "1073741824\n",
            "sys/fs/cgroup/memory.stat": "anon 6000\nfile 4000\ninactive_file 268435456\n",
            "sys/fs/cgroup/memory.swap.max": "0\n",
            "sys/fs/cgroup/cpu.max": "150000 100000\n",
        },
    )
    mem = read_cgroup_memory(root)
    assert mem is not None
    assert (mem.version, mem.limit_bytes, mem.swap_limit_bytes) == (2, 8 * GIB, 0)
    assert mem.usage_bytes == GIB
    assert mem.working_set_bytes == GIB - 268435456
    assert read_cgroup_cpu_quota(root) == 1.5


def test_v2_parent_limit_binds_an_unlimited_child(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/machine.slice/app.scope\n",
            "proc/self/mountinfo": V2_MOUNT,
            "sys/fs/cgroup/machine.slice/memory.max": str(4 * GIB),
            "sys/fs/cgroup/machine.slice/app.scope/memory.max": "max\n",
            "sys/fs/cgroup/machine.slice/app.scope/memory.current": "1000\n",
            "sys/fs/cgroup/machine.slice/app.scope/memory.swap.max": "max\n",
            "sys/fs/cgroup/machine.slice/app.scope/cpu.max": "max 100000\n",
        },
    )
    mem = read_cgroup_memory(root)
    assert mem is not None
    assert mem.limit_bytes == 4 * GIB
    assert mem.swap_limit_bytes is None
    assert mem.directory.endswith("machine.slice/app.scope")
    assert read_cgroup_cpu_quota(root) is None


def test_v2_without_limits_or_memory_controller(tmp_path: Path) -> None:
    unlimited = write_tree(
        tmp_path / "a",
        {
            "proc/self/cgroup": "0::/user.slice\n",
            "proc/self/mountinfo": V2_MOUNT,
            "sys/fs/cgroup/user.slice/memory.max": "max\n",
            "sys/fs/cgroup/user.slice/memory.current": "123\n",
        },
    )
    mem = read_cgroup_memory(unlimited)
    assert mem is not None and mem.limit_bytes is None and mem.usage_bytes == 123
    no_controller = write_tree(
        tmp_path / "b",
        {
            "proc/self/cgroup": "0::/user.slice\n",
            "proc/self/mountinfo": V2_MOUNT,
            "sys/fs/cgroup/user.slice/cgroup.procs": "1\n",
        },
    )
    assert read_cgroup_memory(no_controller) is None


def test_v1_hybrid_host_like_this_build_machine(tmp_path: Path) -> None:
    """v2 mounted without controllers at /sys/fs/cgroup/unified; memory lives in v1."""
    group = "sys/fs/cgroup/memory/process_api/abc"
    root = write_tree(
        tmp_path,
        {
            "proc/self/cgroup": (
                "4:memory:/process_api/abc\n2:cpu,cpuacct:/process_api/abc\n0::/\n"
            ),
            "proc/self/mountinfo": HYBRID_MOUNTS.format(root="/"),
            "sys/fs/cgroup/memory/memory.limit_in_bytes": V1_UNLIMITED,
            f"{group}/memory.limit_in_bytes": str(2 * GIB),
            f"{group}/memory.memsw.limit_in_bytes": str(3 * GIB),
            f"{group}/memory.usage_in_bytes": str(GIB),
            f"{group}/memory.stat": f"cache 10\ntotal_inactive_file {GIB // 4}\n",
            "sys/fs/cgroup/cpu,cpuacct/process_api/abc/cpu.cfs_quota_us": "-1\n",
            "sys/fs/cgroup/cpu,cpuacct/process_api/abc/cpu.cfs_period_us": "100000\n",
        },
    )
    mem = read_cgroup_memory(root)
    assert mem is not None
    assert (mem.version, mem.limit_bytes, mem.swap_limit_bytes) == (1, 2 * GIB, GIB)
    assert mem.working_set_bytes == GIB - GIB // 4
    assert read_cgroup_cpu_quota(root) is None  # -1: no quota


def test_v1_container_without_namespace_and_hierarchical_limit(tmp_path: Path) -> None:
    """Old Docker: /proc/self/cgroup shows the host path, the mount's root is that same path."""
    root = write_tree(
        tmp_path,
        {
            "proc/self/cgroup": "9:memory:/docker/0123\n2:cpu,cpuacct:/docker/0123\n",
            "proc/self/mountinfo": HYBRID_MOUNTS.format(root="/docker/0123").replace(
                "0:29 /", "0:29 /docker/0123"
            ),
            "sys/fs/cgroup/memory/memory.limit_in_bytes": V1_UNLIMITED,
            "sys/fs/cgroup/memory/memory.stat": f"hierarchical_memory_limit {6 * GIB}\n",
            "sys/fs/cgroup/memory/memory.usage_in_bytes": "4096\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "400000\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        },
    )
    mem = read_cgroup_memory(root)
    assert mem is not None
    assert mem.directory == str(root / "sys/fs/cgroup/memory")
    assert mem.limit_bytes == 6 * GIB  # only memory.stat knows the parent's limit
    assert read_cgroup_cpu_quota(root) == 4.0


def test_v1_unlimited_everywhere(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "proc/self/cgroup": "4:memory:/\n",
            "proc/self/mountinfo": HYBRID_MOUNTS.format(root="/"),
            "sys/fs/cgroup/memory/memory.limit_in_bytes": V1_UNLIMITED,
            "sys/fs/cgroup/memory/memory.stat": f"hierarchical_memory_limit {V1_UNLIMITED}\n",
        },
    )
    mem = read_cgroup_memory(root)
    assert mem is not None and mem.version == 1 and mem.limit_bytes is None


def test_escaped_mount_point_and_garbage(tmp_path: Path) -> None:
    root = write_tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/\nnot a cgroup line\n",
            "proc/self/mountinfo": "garbage\n"
            + "35 24 0:30 / /sys/fs/my\\040cgroup rw - cgroup2 cgroup2 rw\n",
            "sys/fs/my cgroup/memory.max": "not a number\n",
            "sys/fs/my cgroup/memory.current": "77\n",
        },
    )
    mem = read_cgroup_memory(root)
    assert mem is not None
    assert mem.usage_bytes == 77 and mem.limit_bytes is None


def test_no_cgroup_files_at_all(tmp_path: Path) -> None:
    assert read_cgroup_memory(tmp_path) is None
    assert read_cgroup_cpu_quota(tmp_path) is None


def container_root(tmp_path: Path, limit: int, usage: int) -> Path:
    return write_tree(
        tmp_path / "container",
        {
            "proc/self/cgroup": "0::/\n",
            "proc/self/mountinfo": V2_MOUNT,
            "sys/fs/cgroup/memory.max": str(limit),
            "sys/fs/cgroup/memory.current": str(usage),
            "sys/fs/cgroup/memory.stat": "inactive_file 0\n",
        },
    )


def test_ram_respects_a_container_limit_below_host_ram(tmp_path: Path) -> None:
    host = psutil.virtual_memory()
    limit = min(host.total // 4, 4 * GIB)
    root = container_root(tmp_path, limit, usage=limit // 4)
    notes: list[str] = []
    ram = hw_cpu.detect_ram(notes, root)
    assert ram.total_bytes == host.total  # the host figure is still reported, as such
    assert ram.cgroup_limit_bytes == limit
    assert ram.usable_bytes == limit
    assert ram.available_bytes <= limit - limit // 4
    assert "container limited to" in notes[0] and "Plans use the container limit" in notes[0]
    report = detect(probe_bandwidth=False, llama=False, cgroup_root=root)
    assert report.usable_ram_bytes == limit
    assert report.to_dict()["ram"]["cgroup_limit_bytes"] == limit


def test_limit_above_host_ram_changes_nothing(tmp_path: Path) -> None:
    host = psutil.virtual_memory().total
    root = container_root(tmp_path, 4 * host, usage=0)
    notes: list[str] = []
    ram = hw_cpu.detect_ram(notes, root)
    assert ram.usable_bytes == ram.total_bytes == host
    assert notes == []


@pytest.mark.skipif(not Path("/proc/self/cgroup").exists(), reason="Linux only")
def test_this_machine_limit_matches_its_files() -> None:
    """Read independently: the limit of this process's memory cgroup, v1 or v2, if any."""
    mem = read_cgroup_memory()
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    v1 = [ln.split(":", 2)[2] for ln in lines if ln.split(":")[1:2] == ["memory"]]
    if v1 and Path("/sys/fs/cgroup/memory").is_dir():
        assert mem is not None and mem.version == 1
        leaf = Path("/sys/fs/cgroup/memory") / v1[0].lstrip("/")
        raw = (leaf / "memory.limit_in_bytes").read_text().strip() if leaf.is_dir() else None
        if raw is not None and int(raw) < 2**60:
            assert mem.limit_bytes is not None and mem.limit_bytes <= int(raw)
    elif Path("/sys/fs/cgroup/memory.max").is_file():
        raw = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        assert mem is not None and mem.version == 2
        if raw != "max":
            assert mem.limit_bytes is not None and mem.limit_bytes <= int(raw)
