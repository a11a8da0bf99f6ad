"""The quick sweep's choices: which file (real, twin, scaled twin) and which placements."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fitbench.core.bench import quick
from fitbench.core.bench.events import RecordReady
from fitbench.core.bench.runner import run_sweep
from fitbench.core.model import catalog as catalog_mod
from fitbench.core.model.catalog import Catalog, Model, QuantFile
from fitbench.core.results.store import open_store
from fitbench.core.twin.writer import tiny_arch

GiB = 1 << 30


def hw(gpus: list[int], ram: int, offload: bool = True, cores: int = 2) -> dict[str, Any]:
    """The parts of HardwareReport.to_dict() the quick sweep reads."""
    return {
        "gpus": [{"vram_total_bytes": v} for v in gpus],
        "ram": {"available_bytes": ram, "usable_bytes": ram},
        "cpu": {"physical_cores": cores},
        "llama_cpp": {"gpu_offload": offload and bool(gpus), "devices": []},
    }


def test_cpu_only_machine_too_small_gets_scaled_twins() -> None:
    plan = quick.quick_plan(hw([], 24 * GiB), catalog_mod.load(), prepare=False)
    assert len(plan.configs) == 2
    for cfg in plan.configs:
        assert cfg.source == "scaled-twin" and cfg.n_gpu_layers == 0
        assert cfg.n_layer_file == quick.SCALED_LAYERS_CPU
        assert [t.name for t in cfg.tests] == [
            "pp256",
            "tg64",
            "batch B1 tg16",
            "batch B4 tg16",
            "batch B16 tg16",
        ]
        assert cfg.reps == 2 and cfg.n_threads == 2
    assert {c.n_layer_model for c in plan.configs} == {32, 80}
    assert sum("scaled twin of 2" in note for note in plan.notes) == 2


def test_big_gpu_gets_full_twins_and_the_interesting_placements(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(quick, "_disk_free", lambda: 500 * 10**9)
    plan = quick.quick_plan(hw([141 * 10**9], 120 * GiB), catalog_mod.load(), prepare=False)
    mixtral = [c for c in plan.configs if c.model_id == "mixtral-8x7b-instruct"]
    llama = [c for c in plan.configs if c.model_id == "llama-2-70b-chat"]
    assert all(c.source == "twin" for c in plan.configs)
    assert [(c.n_gpu_layers, c.n_cpu_moe) for c in mixtral] == [(33, 0), (16, 0), (33, -1), (0, 0)]
    assert [(c.n_gpu_layers, c.n_cpu_moe) for c in llama] == [(81, 0), (40, 0), (0, 0)]
    # the batch curve only on the best placement
    assert [len(c.tests) for c in mixtral] == [5, 2, 2, 2]
    assert "[max-fit]" in mixtral[0].label and "[experts on CPU]" in mixtral[2].label


def test_small_gpu_max_fit_and_no_placement_beyond_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quick, "_disk_free", lambda: 500 * 10**9)
    plan = quick.quick_plan(hw([24 * GiB], 60 * GiB), catalog_mod.load(), prepare=False)
    mixtral = [c for c in plan.configs if c.model_id == "mixtral-8x7b-instruct"]
    best = mixtral[0]
    assert "[max-fit]" in best.label and 0 < best.n_cpu_moe < 32  # some experts must stay home
    assert all(c.n_gpu_layers != 33 or c.n_cpu_moe != 0 for c in mixtral)  # all-GPU cannot fit


def test_no_disk_for_the_full_twin_means_a_scaled_twin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quick, "_disk_free", lambda: 10 * 10**9)
    plan = quick.quick_plan(hw([141 * 10**9], 120 * GiB), catalog_mod.load(), prepare=False)
    assert all(c.source == "scaled-twin" for c in plan.configs)
    assert any("does not fit on disk" in n for n in plan.notes)


def test_gpu_without_offload_build_is_cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quick, "_disk_free", lambda: 500 * 10**9)
    plan = quick.quick_plan(
        hw([141 * 10**9], 120 * GiB, offload=False), catalog_mod.load(), prepare=False
    )
    assert {c.n_gpu_layers for c in plan.configs} == {0}


def _write_plain_llama(path: Path) -> None:
    """A small llama GGUF without FitBench's twin marker: what a real download looks like."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFWriter, quants

    rng = np.random.default_rng(0)
    n_embd, n_ff, n_vocab, n_layer = 256, 512, 512, 2
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(n_layer)
    w.add_context_length(2048)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_rope_dimension_count(64)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"t{i}".encode() for i in range(n_vocab - 3)]
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * n_vocab)
    w.add_token_types([2, 3, 3] + [1] * (n_vocab - 3))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    q8 = GGMLQuantizationType.Q8_0

    def mat(name: str, rows: int, cols: int) -> None:
        a = (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32)
        w.add_tensor(name, quants.quantize(a, q8), raw_dtype=q8)

    mat("token_embd.weight", n_vocab, n_embd)
    mat("output.weight", n_vocab, n_embd)
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    for i in range(n_layer):
        for norm in ("attn_norm", "ffn_norm"):
            w.add_tensor(f"blk.{i}.{norm}.weight", np.ones(n_embd, np.float32))
        mat(f"blk.{i}.attn_q.weight", n_embd, n_embd)
        mat(f"blk.{i}.attn_k.weight", 128, n_embd)
        mat(f"blk.{i}.attn_v.weight", 128, n_embd)
        mat(f"blk.{i}.attn_output.weight", n_embd, n_embd)
        mat(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        mat(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        mat(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _cache_real_file(src: Path, repo: str, filename: str, hf_home: Path) -> Path:
    """Place a file where huggingface_hub's cache keeps a downloaded file."""
    base = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    commit = "0" * 40
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    snap = base / "snapshots" / commit
    snap.mkdir(parents=True)
    shutil.copy(src, snap / filename)
    return snap / filename


def test_downloaded_real_file_is_measured_as_real(tmp_path: Path, isolated_dirs: Path) -> None:
    real = tmp_path / "tiny.Q8_0.gguf"
    _write_plain_llama(real)
    cached = _cache_real_file(real, "org/tiny", "tiny.Q8_0.gguf", isolated_dirs / "hf")
    arch = tiny_arch(moe=False)
    model = Model(
        id="tiny",
        name="Tiny",
        kind="dense",
        repo="org/tiny",
        arch=replace(arch, n_layer=2, n_vocab=512),
        quants=(QuantFile("Q8_0", "tiny.Q8_0.gguf", real.stat().st_size),),
        default_quant="Q8_0",
    )
    plan = quick.quick_plan(
        hw([], 8 * GiB), Catalog((model,)), n_prompt=16, n_gen=4, reps=1, batches=(1, 2)
    )
    (cfg,) = plan.configs
    assert Path(cfg.model_path) == cached
    assert cfg.source == "real" and cfg.model_id == "tiny" and cfg.quant == "Q8_0"
    assert any("downloaded real file" in note for note in plan.notes)
    records = [
        e.record
        for e in run_sweep([cfg.with_(repack=False)], store=open_store())
        if isinstance(e, RecordReady)
    ]
    assert [(r["test"], r["n_parallel"], r["status"]) for r in records] == [
        ("pp", 1, "ok"),
        ("tg", 1, "ok"),
        ("batch", 1, "ok"),
        ("batch", 2, "ok"),
    ]
    assert all(r["source"] == "real" and r["n_layer_file"] == 2 for r in records)


def test_a_busy_machine_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quick, "cores_used_by_others", lambda: 1.6)
    notes = quick.quick_plan(hw([], 24 * GiB), catalog_mod.load(), prepare=False).notes
    assert any(
        "machine is busy (other programs use 1.6 of its 2 cores right now)" in n for n in notes
    )
    monkeypatch.setattr(quick, "cores_used_by_others", lambda: 0.1)
    notes = quick.quick_plan(hw([], 24 * GiB), catalog_mod.load(), prepare=False).notes
    assert not any("busy" in n for n in notes)


def test_cpu_used_by_others_counts_another_process_not_this_one() -> None:
    def spin(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass

    quiet = quick.cores_used_by_others(0.5)
    if quiet > (os.cpu_count() or 1) - 1:  # no idle core left to show one more spinning process
        pytest.skip(f"this machine is too busy to tell ({quiet:.1f} cores used by others)")
    thread = threading.Thread(target=spin, args=(1.0,))  # this process: not "others"
    thread.start()
    mine = quick.cores_used_by_others(0.5)
    thread.join()
    busy_loop = (
        "import time\nprint('go', flush=True)\nend = time.time() + 2\nwhile time.time() < end: pass"
    )
    other = subprocess.Popen([sys.executable, "-c", busy_loop], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline() == "go\n"  # spinning now
        theirs = quick.cores_used_by_others(0.5)
    finally:
        other.wait()
        if other.stdout is not None:
            other.stdout.close()
    assert theirs - quiet > 0.5  # one core spinning in another process: someone else's
    assert mine - quiet < 0.5  # the same in a thread of this process: not counted
