"""Several GPUs: llama.cpp's split rules, per-GPU bytes against hand sums, splits that fit."""

from __future__ import annotations

from pathlib import Path

import pytest

from fitbench.core import gguf
from fitbench.core.gguf.manifest import ModelManifest
from fitbench.core.plan import memory, multigpu, search
from fitbench.core.plan.margin import DEFAULT_VRAM_MARGIN
from fitbench.core.plan.memory import GiB, Placement
from fitbench.core.twin import writer as twin
from test_gguf_builders import LlamaShape, Q, write_llama_gguf

DENSE = LlamaShape(n_layer=4)  # n_embd 256, 4 heads, 2 KV heads of 64, n_ff 512, vocab 320
MOE = LlamaShape(n_layer=4, n_expert=4, n_expert_used=2)
NO_RUNTIME = {"gpu_runtime_bytes": 0}


@pytest.fixture(scope="module")
def dense(tmp_path_factory: pytest.TempPathFactory) -> ModelManifest:
    path = write_llama_gguf(tmp_path_factory.mktemp("d") / "dense.gguf", DENSE, Q.Q8_0, sparse=True)
    return gguf.read_header(path)


@pytest.fixture(scope="module")
def moe(tmp_path_factory: pytest.TempPathFactory) -> ModelManifest:
    path = write_llama_gguf(tmp_path_factory.mktemp("m") / "moe.gguf", MOE, Q.Q4_K, sparse=True)
    return gguf.read_header(path)


@pytest.fixture(scope="module")
def llama70b() -> ModelManifest:
    return twin.manifest_for("llama-2-70b-chat", "Q4_K_M")


def _named(m: ModelManifest, name: str) -> int:
    return next(t.n_bytes for t in m.tensors if t.name == name)


# --- layer split: llama.cpp's arithmetic --------------------------------------------------------


def test_layer_on_a_split_point_goes_to_the_next_gpu_in_float32() -> None:
    """-ts 0.3,0.6 on 80 layers (+ output = 81 offloaded): the split point 0.3/0.9 and layer 27's
    27/81 are the same float32 (0.33333334), so std::upper_bound sends layer 27 to GPU1. In
    float64 0.3/0.9 = 0.33333333333333337 > 27/81, which would put 28 layers on GPU0."""
    devices = multigpu.layer_devices(80, -1, 2, "layer", 0, (0.3, 0.6))
    assert multigpu.layers_per_gpu(devices, 2) == [27, 54]
    assert devices[26] == 0 and devices[27] == 1 and devices[80] == 1  # output layer: last GPU


def test_partial_offload_splits_only_the_offloaded_layers() -> None:
    # ngl 10 of 80: layers 71..79 and the output; 1:1 -> x = (il-71)/10 < 0.5 -> 71..75 on GPU0
    devices = multigpu.layer_devices(80, 10, 2, "layer", 0, (1.0, 1.0))
    assert devices[:71] == [None] * 71
    assert devices[71:76] == [0] * 5 and devices[76:] == [1] * 5


def test_none_uses_main_gpu_and_zero_split_is_equal() -> None:
    assert set(multigpu.layer_devices(4, -1, 2, "none", 1)) == {1}
    assert multigpu.layers_per_gpu(multigpu.layer_devices(4, -1, 2, "layer", 0, (0, 0)), 2) == [
        3,
        2,
    ]
    with pytest.raises(multigpu.SplitError, match="main_gpu 2"):
        multigpu.layer_devices(4, -1, 2, "none", 2)
    with pytest.raises(multigpu.SplitError, match="split mode"):
        multigpu.layer_devices(4, -1, 2, "rows")
    # llama.cpp's default split is each GPU's free memory
    assert multigpu.default_tensor_split([20 * GiB, 10 * GiB]) == (20.0 * GiB, 10.0 * GiB)


# --- per-GPU bytes against hand sums -----------------------------------------------------------


def test_layer_split_bytes_per_gpu_by_hand(dense: ModelManifest) -> None:
    """4 layers + output, -ts 3,2: x = i/5 < 0.6 -> blocks 0-2 on GPU0, block 3 + output on GPU1."""
    p = memory.plan(dense, Placement(5, tensor_split=(3.0, 2.0)), 512, **NO_RUNTIME)
    gpu0, gpu1 = p.devices["GPU0"], p.devices["GPU1"]
    assert gpu0["weights"] == sum(dense.layer_bytes(i) for i in range(3))
    out = _named(dense, "output.weight") + _named(dense, "output_norm.weight")
    assert gpu1["weights"] == dense.layer_bytes(3) + out
    assert p.devices["CPU"]["weights"] == _named(dense, "token_embd.weight")
    # KV: 512 cells x (K + V) x 2 KV heads x 64 dims x 2 bytes (f16) per layer
    per_layer = 512 * 2 * 2 * 64 * 2
    assert (gpu0["kv"], gpu1["kv"]) == (3 * per_layer, per_layer)
    # every GPU with layers holds a full compute buffer plus the pipeline-parallel input copies:
    # 3 extra copies x 512 tokens x (hidden 4*256 + f32 mask 4*512 + positions 4)
    copies = 3 * 512 * (4 * 256 + 4 * 512 + 4)
    hp = memory._hparams(dense)
    graph = memory.compute_buffer_bytes(hp, 512, 512, False)
    assert gpu0["compute"] == gpu1["compute"] == graph + copies
    assert p.vram_bytes == (sum(gpu0.values()), sum(gpu1.values()))


def test_pipeline_copies_only_when_llama_cpp_pipelines(moe: ModelManifest) -> None:
    def compute(pl: Placement) -> int:
        return memory.plan(moe, pl, 512, n_gpus=2).devices["GPU1"]["compute"]

    full = compute(Placement(5, tensor_split=(1.0, 1.0)))
    assert full > compute(Placement(4, tensor_split=(1.0, 1.0)))  # output layer left on CPU
    assert full > compute(Placement(5, n_cpu_moe=1, tensor_split=(1.0, 1.0)))  # an override
    one_gpu = memory.plan(moe, Placement(5), 512, n_gpus=1).devices["GPU0"]["compute"]
    assert compute(Placement(5, n_cpu_moe=1, tensor_split=(1.0, 1.0))) == one_gpu


def test_n_cpu_moe_with_two_gpus(moe: ModelManifest) -> None:
    p = memory.plan(moe, Placement(5, n_cpu_moe=2, tensor_split=(1.0, 1.0)), 512, **NO_RUNTIME)
    experts_01 = moe.layer_bytes(0, experts=True) + moe.layer_bytes(1, experts=True)
    embd = _named(moe, "token_embd.weight")
    assert p.devices["CPU"]["weights"] == embd + experts_01
    # 1:1 over 5 -> blocks 0-2 on GPU0 (0 and 1 without their experts)
    assert p.devices["GPU0"]["weights"] == sum(moe.layer_bytes(i) for i in range(3)) - experts_01
    assert p.breakdown["weights"] == moe.weights_bytes


def test_split_none_puts_everything_and_the_only_context_on_main_gpu(dense: ModelManifest) -> None:
    p = memory.plan(dense, Placement(5, main_gpu=1, split_mode="none"), 512, n_gpus=2)
    assert p.devices["GPU0"] == dict.fromkeys(p.devices["GPU0"], 0)
    assert p.vram_bytes[1] == p.vram_total > 0


def test_tensor_parallel_cuts_by_heads_and_rotates_the_rounding(llama70b: ModelManifest) -> None:
    """Llama 2 70B Q4_K_M, -sm tensor -ts 2,1. attn_q rows (8192) cut at multiples of
    lcm(8 q-heads per KV head x 128, 256) = 1024: layer 0 (rotation 0) int(8192*2/3) = 5461 ->
    5120 on GPU0; layer 1 (rotation 1) GPU1 goes first: int(8192/3) = 2730 -> 2048 on GPU1.
    The KV cache is cut by whole KV heads (128): layer 0 int(1024*2/3) = 682 -> 640 on GPU0."""
    n = memory._hparams(llama70b)
    tp = multigpu.TensorParallel(llama70b, 2, (2.0, 1.0), n.n_head, n.n_head_kv, 128, 128)
    q0 = next(t for t in llama70b.tensors if t.name == "blk.0.attn_q.weight")
    q1 = next(t for t in llama70b.tensors if t.name == "blk.1.attn_q.weight")
    assert tp.weight_bytes(q0) == [q0.n_bytes * 5120 // 8192, q0.n_bytes * 3072 // 8192]
    assert tp.weight_bytes(q1) == [q1.n_bytes * 6144 // 8192, q1.n_bytes * 2048 // 8192]
    cells, f16 = 4096, 1
    assert tp.kv_bytes(0, f16, f16, cells) == [2 * 640 * 2 * cells, 2 * 384 * 2 * cells]
    assert tp.kv_bytes(1, f16, f16, cells) == [2 * 768 * 2 * cells, 2 * 256 * 2 * cells]
    norm = next(t for t in llama70b.tensors if t.name == "blk.0.attn_norm.weight")
    assert tp.weight_bytes(norm) == [norm.n_bytes] * 2  # mirrored
    # the whole model: every cut tensor's parts add up to it, mirrored ones are there twice
    p = memory.plan(llama70b, Placement(81, split_mode="tensor", tensor_split=(1.0, 1.0)), 4096)
    mirrored = sum(t.n_bytes for t in llama70b.tensors if len(t.shape) == 1)
    on_gpus = p.devices["GPU0"]["weights"] + p.devices["GPU1"]["weights"]
    assert on_gpus == llama70b.weights_bytes - _named(llama70b, "token_embd.weight") + mirrored
    assert p.devices["GPU0"]["kv"] == p.devices["GPU1"]["kv"] == p.breakdown["kv"] // 2


def test_row_split_is_refused_on_cuda(dense: ModelManifest) -> None:
    pl = Placement(5, split_mode="row", tensor_split=(1.0, 1.0))
    assert "does not support split buffers" in multigpu.placement_problem(pl, 2)
    assert multigpu.placement_problem(Placement(5, tensor_split=(1.0, 1.0)), 2) == ""
    p = memory.plan(dense, pl, 512, **NO_RUNTIME)
    # layers are assigned as for "layer"; 2-D matrices are cut by rows across both GPUs
    assert p.layer_devices == tuple(multigpu.layer_devices(4, 5, 2, "layer", 0, (1.0, 1.0)))
    assert p.breakdown["weights"] == pytest.approx(dense.weights_bytes, abs=64)


# --- splits that fit with headroom on each GPU -------------------------------------------------


def test_proposed_split_fits_two_24gb_gpus_where_the_even_split_does_not(
    llama70b: ModelManifest,
) -> None:
    """70B Q4_K_M on two equal GPUs: the even split puts 41 of the 81 offloaded layers on GPU0
    (the output layer lands on GPU1, so GPU1 has 40 and is lighter). With just too little VRAM for
    that, the proposal moves a block to GPU1 and both fit with the 5% headroom."""
    full = Placement(81)
    even = memory.plan(llama70b, Placement(81, tensor_split=(1.0, 1.0)), 4096)
    assert multigpu.layers_per_gpu(even.layer_devices, 2) == [41, 40]
    vram = int((even.vram_bytes[0] - 1) / 0.95) + 1  # one byte short of the even split's GPU0
    gpus = [vram, vram]
    assert not all(g.fits for g in search.gpu_fits(even, gpus, 0.05))
    prop = search.propose_split(llama70b, gpus, full, 4096, vram_headroom=0.05)
    assert prop.fits and prop.tensor_split == (40.0, 41.0)
    assert [g.layers for g in prop.gpus] == [40, 41]
    for g in prop.gpus:
        assert g.need_bytes == prop.plan.vram_bytes[g.index] <= 0.95 * vram
    # candidate_placements uses the proposal and checks every GPU
    plans = search.candidate_placements(llama70b, gpus, 64 * GiB, 4096, vram_headroom=0.05)
    best = search.best_fitting(plans)
    assert best is not None and best.plan.placement.tensor_split == (40.0, 41.0)


def test_unequal_gpus_get_a_split_that_fits_each(llama70b: ModelManifest) -> None:
    """24 GB + 12 GB, 70B Q4_K_M (41 GB) cannot be all on the GPUs: the candidates that fit keep
    the headroom free on both GPUs, and the smaller GPU gets fewer layers."""
    gpus = [24 * 10**9, 12 * 10**9]
    plans = search.candidate_placements(llama70b, gpus, 128 * GiB, 4096)
    full = next(p for p in plans if p.n_gpu_layers == 81)
    assert not full.fits and "GPU" in full.why_not
    fitting = [p for p in plans if p.fits and p.n_gpu_layers]
    assert fitting
    for p in fitting:
        for need, have in zip(p.plan.vram_bytes, gpus, strict=True):
            assert need <= DEFAULT_VRAM_MARGIN.usable(have)
        counts = multigpu.layers_per_gpu(p.plan.layer_devices, 2)
        assert counts[0] > counts[1]
        row = p.to_dict(llama70b.n_layer)
        assert row["vram_bytes_per_gpu"] == list(p.plan.vram_bytes)
        assert row["tensor_split"] == [float(c) for c in counts]


def test_tensor_mode_proposal_follows_usable_vram(llama70b: ModelManifest) -> None:
    gpus = [48 * 10**9, 24 * 10**9]
    prop = search.propose_split(llama70b, gpus, Placement(81, split_mode="tensor"), 4096)
    assert prop.fits
    w0, w1 = (prop.plan.devices[f"GPU{g}"]["weights"] for g in range(2))
    assert 1.7 < w0 / w1 < 2.3  # about 2:1, rounded to whole heads / 256-row blocks


def test_proposal_to_dict_is_labelled(dense: ModelManifest, tmp_path: Path) -> None:
    prop = search.propose_split(dense, [GiB, GiB // 2], Placement(5), 512)
    d = prop.to_dict()
    assert d["basis"] == "predicted" and d["split_mode"] == "layer"
    assert [g["gpu"] for g in d["gpus"]] == [0, 1] and d["fits_every_gpu"] == prop.fits
