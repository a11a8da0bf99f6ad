"""Twin sizes from the built-in manifests vs the real files' sizes, and full-size write speed.

    .venv/bin/python benchmarks/twin_sizes.py                     # sizes only (no disk used)
    .venv/bin/python benchmarks/twin_sizes.py --write mixtral-8x7b-instruct --dir /work/tmp

--write streams the full-size Q4_K_M twin (if the disk has room), checks its size and header,
loads it in llama.cpp (mmap, vocab and tensor bounds checked, one token decoded) unless
--no-load, reports MB/s, and deletes it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from fitbench.core.model import catalog
from fitbench.core.twin.writer import manifest_for, read_twin_marker, twin_size, write_twin


def sizes() -> list[dict[str, object]]:
    rows = []
    for model in catalog.load().models:
        for q in model.quants:
            manifest = manifest_for(model, q.quant)
            twin = twin_size(manifest)
            real = q.size or None
            rows.append(
                {
                    "model": model.id,
                    "quant": q.quant,
                    "twin_bytes": twin,
                    "real_bytes": real,
                    "real_exact": q.size_exact,
                    "diff_pct": round((twin - real) / real * 100, 4) if real else None,
                }
            )
    return rows


def write_full(model_id: str, directory: Path, load: bool) -> dict[str, object]:
    manifest = manifest_for(model_id, "Q4_K_M")
    out = directory / f"{model_id}.Q4_K_M.gguf"
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] > 10:
            last[0] = now
            print(f"  {done / 1e9:6.2f} / {total / 1e9:.2f} GB", file=sys.stderr)

    info = write_twin(manifest, out, progress=progress)
    result: dict[str, object] = {
        "model": model_id,
        "path": str(info.path),
        "bytes_written": info.size_bytes,
        "file_size": info.path.stat().st_size,
        "seconds": round(info.seconds, 1),
        "mb_per_s": round(info.mb_per_s, 1),
        "marker": str(read_twin_marker(info.path)),
    }
    try:
        if load:
            started = time.perf_counter()
            result["llama_cpp"] = _load_and_decode(info.path)
            result["load_decode_s"] = round(time.perf_counter() - started, 1)
    finally:
        info.path.unlink()
    return result


def _load_and_decode(path: Path) -> str:
    import llama_cpp
    import llama_cpp.llama_cpp as low

    original = low.llama_model_default_params

    def params() -> object:
        p = original()
        p.use_extra_bufts = False  # AMX buffers segfault on this VM (llama.cpp#20824)
        return p

    low.llama_model_default_params = params
    try:
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=2, verbose=False)
    finally:
        low.llama_model_default_params = original
    llm.eval([1])
    n_tensors = int(llm.metadata.get("llama.block_count", 0))
    llm.close()
    return f"loaded ({n_tensors} blocks), 1 token decoded"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", metavar="MODEL_ID", help="also write this full-size twin")
    parser.add_argument("--dir", type=Path, help="where to write it (default: a temp dir)")
    parser.add_argument("--no-load", action="store_true", help="skip the llama.cpp load")
    args = parser.parse_args()
    rows = sizes()
    for r in rows:
        real = f"{r['real_bytes']:>15,}" if r["real_bytes"] else f"{'?':>15}"
        exact = "exact" if r["real_exact"] else "rounded GB"
        diff = f"{r['diff_pct']:+.4f}%" if r["diff_pct"] is not None else "-"
        name = f"{r['model']:24} {r['quant']:7}"
        print(f"{name} twin {r['twin_bytes']:>15,}  real {real} ({exact}) {diff}")
    report: dict[str, object] = {"sizes": rows}
    if args.write:
        with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
            report["full_write"] = write_full(args.write, Path(tmp), load=not args.no_load)
        print(json.dumps(report["full_write"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
