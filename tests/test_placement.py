"""One Placement: llama.cpp's n_gpu_layers (-1, 0, 1, n_layer, n_layer + 1, 99), n_cpu_moe and
tensor split mean the same thing to the planner, predictor, report, recipe and GUI."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

import test_report_support as data
from fitbench.core import gguf
from fitbench.core.advise.recipe import recipe
from fitbench.core.bench.config import BenchConfig, BenchTest
from fitbench.core.gguf.manifest import ModelManifest
from fitbench.core.model import catalog
from fitbench.core.plan import memory, multigpu
from fitbench.core.plan.placement import Placement, SplitError, parse_tensor_split
from fitbench.core.predict import model as predict
from fitbench.core.predict.layer_costs import from_manifest
from fitbench.core.report import build_report
from fitbench.core.report.configs import group
from fitbench.core.results.schema import build_record, new_record
from fitbench.ui import present
from fitbench.ui.sweep_model import SweepModel
from test_gguf_builders import LlamaShape, Q, write_llama_gguf

N = 32  # Mixtral's blocks: 33 offloadable layers with the output
NGLS = (-1, 0, 1, N, N + 1, 99)
ALL = (-1, N + 1, 99)

EVERYTHING = (
    N,
    True,
    "all 32 layers and the output on the GPU",
    "all 33 layers on GPU",
    "99",
    100.0,
)
# ngl: (blocks on GPU, output on GPU, sentence, table cell, -ngl, GPU share %)
EXPECTED: dict[int, tuple[int, bool, str, str, str, float]] = {
    -1: EVERYTHING,
    0: (0, False, "0 of 32 layers on the GPU", "CPU only", "0", 0.0),
    1: (0, True, "only the output layer on the GPU, all 32 layers on the CPU",
        "1 of 33 layers on GPU", "1", 100 / 33),
    N: (N - 1, True, "31 of 32 layers and the output on the GPU", "32 of 33 layers on GPU", "32",
        100 * 32 / 33),
    N + 1: EVERYTHING,
    99: EVERYTHING,
}  # fmt: skip


@pytest.mark.parametrize("ngl", NGLS)
def test_the_type_counts_the_output_layer_as_llama_cpp_does(ngl: int) -> None:
    blocks, output, sentence, cell, ngl_text, share = EXPECTED[ngl]
    p = Placement(ngl)
    assert (p.blocks_on_gpu(N), p.output_on_gpu(N)) == (blocks, output)
    assert p.offloaded(N) == blocks + output
    assert p.all_on_gpu(N) == (ngl in ALL)
    assert p.cpu_only == (ngl == 0)
    assert p.words(N) == sentence
    assert p.short_words(N) == cell
    assert p.gpu_share(N) == pytest.approx(share)
    assert p.cli_args(N) == [f"-ngl {ngl_text}"]
    assert p.llama_kwargs(N) == {"n_gpu_layers": -1 if ngl in ALL else p.offloaded(N)}
    assert p.label(N) == ("ngl all" if ngl in ALL else f"ngl {ngl}")
    effective = p.effective(N)
    assert effective.n_gpu_layers == blocks + output
    assert p.effective(N, has_gpu=False).n_gpu_layers == 0
    fields = p.record_fields()
    assert fields == {
        "n_gpu_layers": ngl,  # as asked: records of loaded models store the effective value
        "n_cpu_moe": 0,
        "split_mode": "layer",
        "main_gpu": 0,
        "tensor_split": "0.00",
    }
    assert Placement.from_record(fields) == p


def test_unknown_layer_count_and_experts() -> None:
    assert Placement(-1).short_words(0) == "all layers on GPU"
    assert Placement(-1).gpu_share(0) == 100.0 and Placement(0).gpu_share(0) == 0.0
    moe = Placement(N + 1, 4)
    assert moe.words(N).endswith(", experts of the first 4 layers on the CPU")
    assert moe.short_words(N) == "all 33 layers on GPU, experts of 4 layers on CPU"
    assert moe.cli_args(N) == ["-ngl 99", "--n-cpu-moe 4"]
    every = Placement(-1, -1)  # llama.cpp's --cpu-moe
    assert every.experts_on_cpu(N) == N and Placement(N + 1, 40).experts_on_cpu(N) == N
    assert every.cli_args(N) == ["-ngl 99", "--cpu-moe"]
    assert every.short_words(N) == "all 33 layers on GPU, experts of 32 layers on CPU"
    assert every.record_fields()["n_cpu_moe"] == 0  # records keep n_cpu_moe >= 0
    # n_cpu_moe counts only where it moves experts off a GPU block; a dense model has none
    assert Placement(N + 1, 4).effective(N).n_cpu_moe == 4
    assert Placement(N + 1, 4).effective(N, moe=False).n_cpu_moe == 0
    assert Placement(3, 4).effective(N).n_cpu_moe == 0  # blocks 0..3 are on the CPU anyway
    assert (
        Placement(99).ngl_text(120) == "99" and Placement(-1).ngl_text(120) == "121"
    )  # 99 would leave layers of a deep model behind


def test_split_across_gpus_per_device() -> None:
    p = Placement(-1, tensor_split=(0.3, 0.6))
    assert p.layers_per_gpu(80, 2) == [27, 54]  # as plan.multigpu always split it
    assert p.layer_devices(80, 2) == multigpu.layer_devices(80, -1, 2, "layer", 0, (0.3, 0.6))
    assert Placement(80, tensor_split=(1.0, 1.0)).layer_devices(80, 2)[0] is None
    assert Placement(-1, split_mode="tensor").layers_per_gpu(80, 2) == [81, 81]
    assert set(Placement(5, main_gpu=1, split_mode="none").layer_devices(4, 2)) == {1}
    with pytest.raises(SplitError, match="main_gpu 2"):
        Placement(-1, main_gpu=2, split_mode="none").layer_devices(4, 2)
    row = Placement(99, tensor_split=(3.0, 1.0), split_mode="none", main_gpu=1)
    assert row.cli_args(N) == [
        "-ngl 99",
        "--split-mode none",
        "--main-gpu 1",
        "--tensor-split 3,1",
    ]
    assert row.llama_kwargs(N) == {
        "n_gpu_layers": -1,
        "split_mode": 0,
        "main_gpu": 1,
        "tensor_split": [3.0, 1.0],
    }
    fields = Placement(-1, tensor_split=(0.6, 0.4)).record_fields()
    assert fields["tensor_split"] == "0.60/0.40"
    assert parse_tensor_split(fields["tensor_split"]) == (0.6, 0.4)
    assert parse_tensor_split("0.00") is None and parse_tensor_split([1, 1]) == (1.0, 1.0)


# --- the planner and the predictor ----------------------------------------------------------

SMALL = LlamaShape(n_layer=4, n_expert=4, n_expert_used=2)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> ModelManifest:
    path = write_llama_gguf(tmp_path_factory.mktemp("p") / "moe.gguf", SMALL, Q.Q4_K, sparse=True)
    return gguf.read_header(path)


def test_the_planner_reads_ngl_as_llama_cpp(small: ModelManifest) -> None:
    n = small.n_layer
    plans = {
        ngl: memory.plan(small, Placement(ngl), 512, n_gpus=1) for ngl in (-1, 0, 1, n, n + 1, 99)
    }
    full = plans[n + 1]
    for ngl in (-1, 99):
        assert plans[ngl].vram_bytes == full.vram_bytes and plans[ngl].devices == full.devices
        assert plans[ngl].layer_devices == full.layer_devices
    assert full.gpu_layers == n and full.output_on_gpu
    assert plans[n].gpu_layers == n - 1 and plans[n].output_on_gpu  # block 0 stays on the CPU
    assert plans[n].layer_devices[0] is None and plans[n].vram_total < full.vram_total
    assert plans[1].gpu_layers == 0 and plans[1].output_on_gpu
    assert plans[0].gpu_layers == 0 and not plans[0].output_on_gpu
    assert plans[0].devices["GPU0"]["weights"] == 0
    for ngl, mp in plans.items():
        p = Placement(ngl)
        assert (mp.gpu_layers, mp.output_on_gpu) == (p.blocks_on_gpu(n), p.output_on_gpu(n))
    # a CPU-only placement plans no GPU unless told there is one
    assert memory.plan(small, Placement(0), 512).vram_bytes == ()
    assert len(memory.plan(small, Placement(-1), 512).vram_bytes) == 1


def test_the_predictor_reads_ngl_as_llama_cpp(small: ModelManifest) -> None:
    costs = from_manifest(small)
    n = costs.n_layer

    def feats(ngl: int) -> list[float]:
        return list(
            predict.step_features(
                costs, Placement(ngl), n_tokens=1, n_seqs=1, depth=0, n_outputs=1, has_gpu=True
            )
        )

    full = feats(n + 1)
    assert feats(-1) == full == feats(99)
    assert full[1] == 0  # nothing read from host RAM
    assert feats(n)[1] > 0 and feats(n)[0] < full[0]  # block 0 on the CPU
    assert feats(0)[0] == 0 and feats(1)[0] > 0  # ngl 1: the output layer on the GPU
    assert predict.normalise(costs, Placement(-1), True) == Placement(n + 1)
    assert predict.normalise(costs, Placement(99), False) == Placement(0)


# --- the report, recipe and GUI -------------------------------------------------------------


def _failed(ngl: int) -> dict[str, Any]:
    """A test that failed before llama.cpp loaded: the runner's record keeps the asked-for ngl."""
    cfg = BenchConfig(
        model_path="/data/twins/mixtral-8x7b.Q4_K_M.twin.gguf",
        tests=(BenchTest("tg", n_gen=128),),
        model_id=data.MIXTRAL,
        quant="Q4_K_M",
        source="twin",
        n_layer_model=N,
        n_layer_file=N,
        file_sha256="c3" * 32,
        n_gpu_layers=ngl,
    )
    rec = build_record(cfg, cfg.tests[0], status="oom", error="CUDA error: out of memory")
    rec["hardware_fingerprint"] = data.FINGERPRINT
    return rec


@pytest.mark.parametrize("ngl", NGLS)
def test_report_of_a_failed_configuration(ngl: int) -> None:
    rec = _failed(ngl)
    assert rec["n_gpu_layers"] == ngl
    report = build_report([*data.h200_records(), rec], None, None)
    failed = next(t for t in report.tables() if t.title == "Tests that did not finish")
    rows = [r for r in failed.rows if r[4] == "oom"]
    assert len(rows) == 1
    assert rows[0][2] == EXPECTED[ngl][3]
    (cfg,) = [c for c in group([rec]) if c.errors]
    assert cfg.gpu_share == pytest.approx(EXPECTED[ngl][5])
    if ngl == -1:
        assert "CPU only" not in rows[0][2] and cfg.gpu_share == 100.0


def test_a_failed_all_on_gpu_record_joins_its_loaded_configuration() -> None:
    ok = data.h200_records()
    full = next(r for r in ok if r["model_id"] == data.MIXTRAL and r["n_gpu_layers"] == N + 1)
    failed = dict(_failed(-1), file_sha256=full["file_sha256"], test="batch", n_parallel=4)
    assert len(group([*ok, failed])) == len(group(ok))  # -1 is the loaded 33, not a new row
    (cfg,) = [c for c in group([*ok, failed]) if c.errors]
    assert cfg.n_gpu_layers == N + 1 and cfg.ts("tg") is not None
    report = build_report([*ok, failed], None, None)
    failed_table = next(t for t in report.tables() if t.title == "Tests that did not finish")
    assert [row[2] for row in failed_table.rows] == ["all 33 layers on GPU"]


@pytest.mark.parametrize("ngl", NGLS)
def test_recipe_says_the_same_placement(ngl: int) -> None:
    model = catalog.load().get("mixtral-8x7b-instruct")
    assert model.arch.n_layer == N
    out = recipe(model, "Q4_K_M", Placement(ngl), 4096, 1, 8)
    blocks, output, *_ = EXPECTED[ngl]
    everything = ngl in ALL
    assert f" -ngl {'99' if everything else blocks + output} " in out["llama_server"]
    assert f"n_gpu_layers={-1 if everything else blocks + output}," in out["llama_cpp_python"]
    assert f"PARAMETER num_gpu {blocks + output}" in out["ollama"]
    assert f"GPU Offload: {min(blocks + output, N)} of {N} layers" in out["lm_studio"]


@pytest.mark.parametrize("ngl", NGLS)
def test_gui_badge_and_offload_axis(ngl: int) -> None:
    badge, kind = present.fit_badge({"fits": True, "n_gpu_layers": ngl}, N)
    if ngl == 0:
        assert (badge, kind) == ("CPU only", "cpu")
    elif ngl in ALL:
        assert (badge, kind) == ("all on GPU", "gpu")
    else:  # ngl 32 of 33 leaves block 0 on the CPU: not "all on GPU"
        assert (badge, kind) == (f"partial offload {ngl} of {N + 1} layers", "partial")
    model = SweepModel({data.MIXTRAL: "Mixtral"})
    when = datetime(2026, 1, 1, tzinfo=UTC).isoformat()
    model.records.append(
        new_record(
            model_id=data.MIXTRAL,
            quant="Q4_K_M",
            source="twin",
            test="tg",
            n_gen=128,
            avg_ts=10.0,
            n_gpu_layers=ngl,
            n_layer_model=N,
            test_time=when,
        )
    )
    (series,) = model.tg_vs_offload().values()
    assert series.xs == [pytest.approx(EXPECTED[ngl][5])]


def test_gui_badge_with_experts_on_cpu() -> None:
    assert present.fit_badge({"fits": True, "n_gpu_layers": 99, "n_cpu_moe": 4}, N) == (
        "on GPU, experts of 4 layers on CPU",
        "partial",
    )
    assert present.fit_badge({"fits": True, "n_gpu_layers": N, "n_cpu_moe": 4}, N)[0] == (
        "partial offload 32 of 33 layers, experts of 4 layers on CPU"
    )


def test_nothing_else_interprets_n_gpu_layers() -> None:
    """The placement helpers that used to repeat the rule are gone."""
    assert not hasattr(predict, "offloaded")
    assert not hasattr(multigpu, "n_offloaded")
    from fitbench.core.advise import recipe as recipe_module
    from fitbench.core.report import fmt

    assert not hasattr(recipe_module, "_ngl_text") and not hasattr(fmt, "placement")
    assert memory.Placement is Placement is predict.Placement
