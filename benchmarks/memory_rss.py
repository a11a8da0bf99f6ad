"""Planner RAM vs the measured RSS of real CPU loads of twins (llama.cpp in a child process).

    .venv/bin/python benchmarks/memory_rss.py [--keep DIR]

Writes tiny and medium llama/MoE twins (random weights, real shapes) with tests/test_gguf_builders,
loads each with llama.cpp (benchmarks/memory_probe.py: mmap, n_ctx 2048, n_ubatch 512), decodes a
64-token batch so every weight and buffer is touched, reads VmRSS from /proc, and prints it next
to core.plan.memory.plan()'s rss_bytes and ram_bytes. Also checks weights_bytes == the sum of
the tensor bytes (exact) for every file.

use_extra_bufts=False: on this 2-core dev VM (Xeon with AMX) llama.cpp's AMX-repacked quantized
weights segfault on any batch >= 8 tokens, so the RSS runs keep weights mapped, as a CUDA build does
(there the host buffer type comes first and mmap'd tensors are never repacked).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from fitbench.core import gguf  # noqa: E402
from fitbench.core.plan import memory  # noqa: E402
from test_gguf_builders import LlamaShape, Q, write_llama_gguf  # noqa: E402

TWINS = {
    "tiny-dense": (LlamaShape(n_layer=2, n_vocab=512), Q.Q8_0),
    "tiny-moe": (LlamaShape(n_layer=2, n_vocab=512, n_expert=4, n_expert_used=2), Q.Q4_K),
    "medium-dense": (
        LlamaShape(n_layer=8, n_embd=2048, n_head=16, n_head_kv=4, n_ff=5632, n_vocab=32000),
        Q.Q4_K,
    ),
    "medium-moe": (
        LlamaShape(
            n_layer=4,
            n_embd=2048,
            n_head=16,
            n_head_kv=4,
            n_ff=5632,
            n_vocab=32000,
            n_expert=8,
            n_expert_used=2,
        ),
        Q.Q4_K,
    ),
}
N_CTX = 2048


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", type=Path, help="write the twins here (kept) instead of a tmp dir")
    opts = ap.parse_args()
    folder = opts.keep or Path(tempfile.mkdtemp(prefix="fitbench-rss-"))
    folder.mkdir(parents=True, exist_ok=True)
    worst = 0.0
    for name, (shape, qtype) in TWINS.items():
        path = folder / f"{name}.gguf"
        if not path.exists():
            write_llama_gguf(path, shape, qtype)
        m = gguf.read_header(path)
        assert m.data_offset is not None
        last = max(m.tensors, key=lambda t: t.offset)
        exact = m.weights_bytes == sum(t.n_bytes for t in m.tensors)
        ends = m.data_offset + last.offset + last.n_bytes == path.stat().st_size
        args = {
            "model": str(path),
            "n_ctx": N_CTX,
            "n_ubatch": 512,
            "decode_tokens": N_CTX - 1,
            "use_extra_bufts": False,
        }
        run = subprocess.run(
            [sys.executable, str(REPO / "benchmarks" / "memory_probe.py"), json.dumps(args)],
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            print(f"{name}: probe failed ({run.returncode}): {run.stderr[-500:]}")
            continue
        got = json.loads(run.stdout)
        rss = got["status_after_decode"]["VmRSS"]
        p = memory.plan(m, memory.Placement(0), N_CTX, n_gpus=0)
        err = (p.rss_bytes - rss) / rss * 100
        worst = max(worst, abs(err))
        print(
            f"{name:13s} file {path.stat().st_size / 1e6:8.1f} MB  weights exact={exact and ends}  "
            f"RSS measured {rss / 1e6:8.1f} MB  planned rss {p.rss_bytes / 1e6:8.1f} MB "
            f"({err:+5.1f}%)  planned ram {p.ram_bytes / 1e6:8.1f} MB  "
            f"[anon {got['status_after_decode']['RssAnon'] / 1e6:.1f} MB, "
            f"file {got['status_after_decode']['RssFile'] / 1e6:.1f} MB]",
            flush=True,
        )
    print(f"worst |planned - measured| / measured: {worst:.1f}%")
    if not opts.keep:
        for f in folder.glob("*.gguf"):
            f.unlink()
        folder.rmdir()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
