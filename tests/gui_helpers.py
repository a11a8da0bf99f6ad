"""Shared by GUI and integration tests: a catalog naming the tiny twins, and sweeps over them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fitbench.core import paths
from fitbench.core.bench.config import BenchConfig, standard_tests

TINY_REPO = "org/tiny-GGUF"

# tiny_arch() of fitbench.core.twin as catalog entries, so the advice can name them
TINY_CATALOG = """
[[models]]
id = "tiny-dense"
name = "Tiny dense"
kind = "dense"
repo = "{repo}"
default_quant = "Q4_K_M"
mmlu = 70.0

[models.arch]
architecture = "llama"
n_layer = 4
n_embd = 256
n_ff = 512
n_head = 4
n_head_kv = 2
n_vocab = 2048

[[models.quants]]
quant = "Q4_K_M"
file = "tiny-dense.Q4_K_M.gguf"

[[models]]
id = "tiny-moe"
name = "Tiny MoE"
kind = "moe"
repo = "{repo}"
default_quant = "Q4_K_M"
mmlu = 70.0

[models.arch]
architecture = "llama"
n_layer = 4
n_embd = 256
n_ff = 512
n_head = 4
n_head_kv = 2
n_vocab = 2048
n_expert = 4
n_expert_used = 2

[[models.quants]]
quant = "Q4_K_M"
file = "tiny-moe.Q4_K_M.gguf"
"""


def install_tiny_catalog() -> None:
    (paths.config_dir() / "models.toml").write_text(
        TINY_CATALOG.format(repo=TINY_REPO), encoding="utf-8"
    )


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
