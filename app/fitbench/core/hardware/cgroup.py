"""Container limits from Linux control groups (v1 and v2): memory, swap and CPU quota.

A container may see the host's 512 GiB in /proc/meminfo while its cgroup lets it use 16 GiB;
planning against the host figure gets the process OOM-killed. Every path is read under `root`
so tests can build a fake /proc and /sys tree; the defaults read this machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# v1 writes "no limit" as PAGE_COUNTER_MAX * page size (9223372036854771712 on x86_64 with 4 KiB
# pages); anything this large is no limit on any real machine.
UNLIMITED_THRESHOLD = 1 << 60


@dataclass(frozen=True)
class CgroupMemory:
    version: int  # 1 or 2
    directory: str  # the cgroup directory the figures come from
    limit_bytes: int | None  # None: no limit in this cgroup or any ancestor we can see
    usage_bytes: int | None  # memory charged to the cgroup, page cache included
    inactive_file_bytes: int | None  # reclaimable page cache inside usage
    swap_limit_bytes: int | None  # swap the cgroup may use; None: no limit

    @property
    def working_set_bytes(self) -> int | None:
        """Usage minus reclaimable cache: what the kernel cannot simply drop (as Docker reports)."""
        if self.usage_bytes is None:
            return None
        return max(0, self.usage_bytes - (self.inactive_file_bytes or 0))


@dataclass(frozen=True)
class _Mount:
    root: str  # the cgroup path mounted (not "/" where the host's hierarchy is bind-mounted)
    mount_point: str
    fs_type: str
    super_options: frozenset[str]


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal
    out, i = [], 0
    while i < len(field):
        octal = field[i + 1 : i + 4]
        if field[i] == "\\" and len(octal) == 3 and octal.isdigit():
            out.append(chr(int(octal, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _cgroup_mounts(root: Path) -> list[_Mount]:
    text = _read_text(root / "proc/self/mountinfo") or ""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        lfields, rfields = left.split(), right.split()
        if len(lfields) < 5 or len(rfields) < 3 or not rfields[0].startswith("cgroup"):
            continue
        mounts.append(
            _Mount(
                root=_unescape(lfields[3]),
                mount_point=_unescape(lfields[4]),
                fs_type=rfields[0],
                super_options=frozenset(rfields[2].split(",")),
            )
        )
    return mounts


def _self_cgroups(root: Path) -> dict[str, str]:
    """Controller -> cgroup path from /proc/self/cgroup; the v2 unified entry is under ""."""
    text = _read_text(root / "proc/self/cgroup") or ""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _cgroup_dir(root: Path, mount: _Mount, cgroup_path: str) -> tuple[Path, Path]:
    """(this process's cgroup directory, the mount point), both under `root`."""
    mount_dir = root / mount.mount_point.lstrip("/")
    if mount.root == "/":
        relative = cgroup_path
    elif cgroup_path == mount.root or cgroup_path.startswith(mount.root.rstrip("/") + "/"):
        relative = cgroup_path[len(mount.root) :]
    else:
        # a cgroup namespace: /proc/self/cgroup is relative to the namespace root, which is
        # what is mounted; anything unexpected falls back to the mount point itself
        relative = cgroup_path
    candidate = mount_dir / relative.lstrip("/")
    if not candidate.is_dir():
        candidate = mount_dir
    return candidate, mount_dir


def _read_int(path: Path) -> int | None:
    text = _read_text(path)
    if text is None:
        return None
    value = text.strip()
    if value == "max":
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return None if number >= UNLIMITED_THRESHOLD or number < 0 else number


def _read_stat(path: Path) -> dict[str, int]:
    stats: dict[str, int] = {}
    for line in (_read_text(path) or "").splitlines():
        key, _, value = line.partition(" ")
        try:
            stats[key] = int(value.strip())
        except ValueError:
            continue
    return stats


def _min_limit(values: list[int | None]) -> int | None:
    limits = [v for v in values if v is not None]
    return min(limits) if limits else None


def _ancestors(directory: Path, mount_dir: Path) -> list[Path]:
    """The directory and each parent up to and including the mount point."""
    chain = [directory]
    while chain[-1] != mount_dir and mount_dir in chain[-1].parents:
        chain.append(chain[-1].parent)
    return chain


def read_cgroup_memory(root: Path = Path("/")) -> CgroupMemory | None:
    """This process's cgroup memory figures, or None outside any cgroup with a memory controller.

    Limits are the smallest along the path to the mount point: a parent's limit binds children.
    """
    mounts = _cgroup_mounts(root)
    paths = _self_cgroups(root)
    # Hybrid hosts mount v2 without the memory controller and v1 with it: prefer a v1 memory
    # hierarchy when there is one, because then that is where the limit lives.
    v1 = next((m for m in mounts if m.fs_type == "cgroup" and "memory" in m.super_options), None)
    if v1 is not None and "memory" in paths:
        directory, mount_dir = _cgroup_dir(root, v1, paths["memory"])
        chain = _ancestors(directory, mount_dir)
        stat = _read_stat(directory / "memory.stat")
        hierarchical = stat.get("hierarchical_memory_limit")
        if hierarchical is not None and hierarchical >= UNLIMITED_THRESHOLD:
            hierarchical = None
        limit = _min_limit([_read_int(d / "memory.limit_in_bytes") for d in chain] + [hierarchical])
        memsw = _min_limit([_read_int(d / "memory.memsw.limit_in_bytes") for d in chain])
        swap = None if memsw is None or limit is None else max(0, memsw - limit)
        inactive = stat.get("total_inactive_file", stat.get("inactive_file"))
        return CgroupMemory(
            version=1,
            directory=str(directory),
            limit_bytes=limit,
            usage_bytes=_read_int(directory / "memory.usage_in_bytes"),
            inactive_file_bytes=inactive,
            swap_limit_bytes=swap,
        )
    v2 = next((m for m in mounts if m.fs_type == "cgroup2"), None)
    if v2 is None or "" not in paths:
        return None
    directory, mount_dir = _cgroup_dir(root, v2, paths[""])
    chain = _ancestors(directory, mount_dir)
    if not any((d / "memory.max").is_file() or (d / "memory.current").is_file() for d in chain):
        return None  # the memory controller is not enabled for this cgroup
    return CgroupMemory(
        version=2,
        directory=str(directory),
        limit_bytes=_min_limit([_read_int(d / "memory.max") for d in chain]),
        usage_bytes=_read_int(directory / "memory.current"),
        inactive_file_bytes=_read_stat(directory / "memory.stat").get("inactive_file"),
        swap_limit_bytes=_min_limit([_read_int(d / "memory.swap.max") for d in chain]),
    )


def read_cgroup_cpu_quota(root: Path = Path("/")) -> float | None:
    """CPUs this cgroup may use per period (e.g. 2.5), or None without a quota."""
    mounts = _cgroup_mounts(root)
    paths = _self_cgroups(root)
    v1 = next((m for m in mounts if m.fs_type == "cgroup" and "cpu" in m.super_options), None)
    if v1 is not None and "cpu" in paths:
        directory, mount_dir = _cgroup_dir(root, v1, paths["cpu"])
        quotas = []
        for d in _ancestors(directory, mount_dir):
            text_quota = _read_text(d / "cpu.cfs_quota_us")
            period = _read_int(d / "cpu.cfs_period_us")
            if text_quota is None or not period:
                continue
            try:
                quota = int(text_quota.strip())
            except ValueError:
                continue
            if quota > 0:
                quotas.append(quota / period)
        return min(quotas) if quotas else None
    v2 = next((m for m in mounts if m.fs_type == "cgroup2"), None)
    if v2 is None or "" not in paths:
        return None
    directory, mount_dir = _cgroup_dir(root, v2, paths[""])
    quotas = []
    for d in _ancestors(directory, mount_dir):
        fields = (_read_text(d / "cpu.max") or "").split()
        if len(fields) == 2 and fields[0] != "max":
            try:
                quotas.append(int(fields[0]) / int(fields[1]))
            except (ValueError, ZeroDivisionError):
                continue
    return min(quotas) if quotas else None
