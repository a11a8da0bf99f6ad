"""Shared by GUI and integration tests: a catalog naming the tiny twins, and sweeps over them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil

from fitbench.core import paths
from fitbench.core.bench.config import BenchConfig, standard_tests

TINY_REPO = "org/tiny-GGUF"

# tiny_arch() of fitbench.core.twin.writer as a catalog [models.arch] table
TINY_ARCH_TOML = """
[models.arch]
architecture = "llama"
n_layer = 4
n_embd = 256
n_ff = 512
n_head = 4
n_head_kv = 2
n_vocab = 2048
"""


def tiny_model_toml(
    model_id: str,
    name: str,
    *,
    repo: str = TINY_REPO,
    kind: str = "dense",
    mmlu: float | None = None,
    quants_toml: str = "",
) -> str:
    """One catalog entry for a tiny twin; quants_toml: its [[models.quants]] (default Q4_K_M)."""
    moe = "n_expert = 4\nn_expert_used = 2\n" if kind == "moe" else ""
    quality = f"mmlu = {mmlu}\n" if mmlu is not None else ""
    quants = quants_toml or (
        f'[[models.quants]]\nquant = "Q4_K_M"\nfile = "{model_id}.Q4_K_M.gguf"\n'
    )
    return (
        f'\n[[models]]\nid = "{model_id}"\nname = "{name}"\nkind = "{kind}"\n'
        f'repo = "{repo}"\ndefault_quant = "Q4_K_M"\n{quality}'
        f"{TINY_ARCH_TOML}{moe}\n{quants}"
    )


# the tiny twins as catalog entries, so the advice can name them
TINY_CATALOG = tiny_model_toml("tiny-dense", "Tiny dense", mmlu=70.0) + tiny_model_toml(
    "tiny-moe", "Tiny MoE", kind="moe", mmlu=70.0
)


def install_tiny_catalog() -> None:
    (paths.config_dir() / "models.toml").write_text(TINY_CATALOG, encoding="utf-8")


def tiny_config(path: Path, model_id: str, inject: str = "", **kw: Any) -> BenchConfig:
    kw.setdefault("n_gpu_layers", 0)
    return BenchConfig(
        model_path=str(path),
        tests=standard_tests([32], [8], batches=[2]),
        model_id=model_id,
        quant="Q4_K_M",
        source="twin",
        n_layer_model=4,
        n_layer_file=4,
        reps=1,
        n_threads=2,
        repack=False,  # AMX repacking segfaults on this VM (see twin_fixtures)
        inject=inject,
        **kw,
    )


def bench_workers() -> list[psutil.Process]:
    """Benchmark worker processes still running under this test process."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "fitbench.core.bench.worker" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found
