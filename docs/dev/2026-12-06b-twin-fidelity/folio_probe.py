"""How a loaded model's file pages sit in memory: folio sizes, PMD mappings, physical runs (root).

    python folio_probe.py [--rounds N] [--no-evict] a.gguf b.gguf ...

Each round loads every file as benchmarks/twin_fidelity.py's reroll does (evict the file from the
page cache, mmap load, a few decodes) and reads, for the file's mapping: Rss and FilePmdMapped
from /proc/self/smaps, and per 4 KiB page its physical frame (/proc/self/pagemap) and flags
(/proc/kpageflags): the share of pages in large folios (COMPOUND head/tail) and their mean folio
size, the mean length of physically contiguous runs, and how many of its frames the previous
load of each file held (does a reloaded file get its own freed pages back?). Larger folios and
PMD mappings mean fewer TLB misses when a tg step streams every weight. --evict-after also evicts
each file right after its model is closed, so the next file loads into the frames just freed.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
from pathlib import Path

import llama_cpp  # must load before numpy (fitbench.core.bench.worker)
import numpy as np

from fitbench.core.bench import llama_lowlevel as ll

KPF_HEAD, KPF_TAIL, KPF_THP = 1 << 15, 1 << 16, 1 << 22


def _mapping(path: Path) -> tuple[int, int, dict[str, int]]:
    target = str(path.resolve())
    lines = Path("/proc/self/smaps").read_text().splitlines()
    best: tuple[int, int, dict[str, int]] | None = None
    for i, line in enumerate(lines):
        parts = line.split()
        if len(parts) >= 6 and parts[-1] == target:
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            fields: dict[str, int] = {}
            for extra in lines[i + 1 : i + 30]:
                key, _, rest = extra.partition(":")
                if not rest.strip().endswith("kB"):
                    break
                fields[key] = int(rest.split()[0])
            if best is None or hi - lo > best[1] - best[0]:
                best = (lo, hi, fields)
    if best is None:
        raise SystemExit(f"{target} is not mapped")
    return best


def probe(path: Path, seen: dict[str, set[int]] | None = None) -> dict[str, float]:
    lo, hi, fields = _mapping(path)
    n = (hi - lo) // 4096
    with open("/proc/self/pagemap", "rb") as f:
        f.seek(lo // 4096 * 8)
        entries = np.frombuffer(f.read(n * 8), dtype=np.uint64)
    present = (entries >> np.uint64(63)) & np.uint64(1)
    pfn = (entries & np.uint64((1 << 55) - 1)).astype(np.int64)
    pfn = pfn[present.astype(bool)]
    flags = np.zeros(len(pfn), dtype=np.uint64)
    with open("/proc/kpageflags", "rb") as f:
        for i, p in enumerate(pfn):
            f.seek(int(p) * 8)
            flags[i] = struct.unpack("<Q", f.read(8))[0]
    head = (flags & np.uint64(KPF_HEAD)) != 0
    tail = (flags & np.uint64(KPF_TAIL)) != 0
    in_large = head | tail
    runs = 1 + int(np.count_nonzero(np.diff(pfn) != 1)) if len(pfn) else 0
    frames = {int(x) for x in pfn}
    same: dict[str, float] = {}
    if seen is not None:  # share of this load's frames that an earlier load of each file had
        n = max(len(frames), 1)
        same = {f"frames_shared_with:{Path(k).name}": round(len(frames & v) / n, 3)
                for k, v in seen.items()}  # fmt: skip
        seen[str(path)] = frames
    return {
        "pages": int(n),
        "present": len(pfn),
        "rss_kb": fields.get("Rss", 0),
        "file_pmd_mapped_kb": fields.get("FilePmdMapped", 0),
        "large_folio_page_share": round(float(in_large.mean()), 4) if len(pfn) else 0.0,
        "mean_large_folio_pages": round(float(in_large.sum() / max(int(head.sum()), 1)), 1),
        "thp_pages": int(np.count_nonzero(flags & np.uint64(KPF_THP))),
        "mean_phys_run_pages": round(len(pfn) / max(runs, 1), 2),
        **same,
    }


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("files", type=Path, nargs="+")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-evict", dest="evict", action="store_false")
    p.add_argument("--evict-after", action="store_true")
    a = p.parse_args()
    llama_cpp.llama_backend_init()
    ll.install_log(False)
    out: dict[str, list[dict[str, float]]] = {str(f): [] for f in a.files}
    seen: dict[str, set[int]] = {}  # the frames of each file's latest load
    for _ in range(a.rounds):
        for path in a.files:
            if a.evict:
                fd = os.open(path, os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
            model = ll.Model(path, n_gpu_layers=0, overrides=ll.Overrides([]), repack=False)
            tokens = np.arange(1, 12, dtype=np.int32)
            params = ll.ContextParams(n_ctx=32, n_batch=8, n_ubatch=8, n_threads=1)
            with ll.Context(model, params) as ctx:
                ctx.prepare_single()
                for i in range(4):
                    ctx.decode_one(int(tokens[i]), i)
                ctx.synchronize()
                out[str(path)].append(probe(path, seen))
            model.close()
            if a.evict_after:
                fd = os.open(path, os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
