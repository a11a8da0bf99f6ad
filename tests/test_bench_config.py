"""Benchmark configs: llama-bench's list syntax, validation, JSON round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from fitbench.core.bench.config import (
    BenchConfig,
    BenchTest,
    ConfigError,
    build_configs,
    expand,
    parse_int_list,
    standard_tests,
)


def test_int_lists_follow_llama_bench_syntax() -> None:
    assert parse_int_list("512") == [512]
    assert parse_int_list("0,8,16") == [0, 8, 16]
    assert parse_int_list("0-32+8") == [0, 8, 16, 24, 32]
    assert parse_int_list("1-16*2") == [1, 2, 4, 8, 16]
    assert parse_int_list("1,4-6") == [1, 4, 5, 6]
    assert parse_int_list("-1", allow_negative=True) == [-1]


@pytest.mark.parametrize("bad", ["", "a", "1,,2", "0-8*1", "-1", "3-1x"])
def test_bad_int_lists_name_the_flag(bad: str) -> None:
    with pytest.raises(ConfigError, match="-ngl"):
        parse_int_list(bad, name="-ngl")


def test_config_round_trips_through_json_with_a_stable_id() -> None:
    tests = standard_tests([64], [16], depths=(0, 32), batches=(2,), ttft=(32,))
    cfg = BenchConfig(model_path="/m.gguf", tests=tests, n_cpu_moe=-1, tensor_split=(0.5, 0.5))
    again = BenchConfig.from_json(cfg.to_json())
    assert again == cfg
    assert again.config_id == cfg.config_id
    assert cfg.with_(n_gpu_layers=8).config_id != cfg.config_id
    kinds = [(t.kind, t.record_test, t.n_depth) for t in tests]
    assert ("pp", "depth", 32) in kinds and ("tg", "tg", 0) in kinds
    assert ("batch", "batch", 0) in kinds and ("ttft", "ttft", 0) in kinds
    assert "all experts on CPU" in cfg.label
    assert "split 0.5:0.5" in cfg.label  # a multi-GPU placement says how it splits
    one_gpu = cfg.with_(split_mode="none", main_gpu=1, tensor_split=())
    assert "split none on GPU 1" in one_gpu.label and "0.5" not in one_gpu.label
    assert "tensor" in cfg.with_(split_mode="tensor").label


def test_bad_settings_are_clear_errors() -> None:
    tests = (BenchTest("pp", n_prompt=8),)
    with pytest.raises(ConfigError, match="KV cache type"):
        BenchConfig(model_path="/m.gguf", tests=tests, type_k="q3")
    with pytest.raises(ConfigError, match="repetitions"):
        BenchConfig(model_path="/m.gguf", tests=tests, reps=0)
    with pytest.raises(ConfigError, match="needs a positive token count"):
        BenchTest("tg", n_gen=0)
    with pytest.raises(ConfigError, match="not a benchmark config"):
        BenchConfig.from_json('{"model_path": "/m.gguf"}')
    with pytest.raises(ConfigError, match="not JSON"):
        BenchConfig.from_json("{")


def test_expand_is_model_major_cross_product() -> None:
    tests = (BenchTest("tg", n_gen=8),)
    models = [{"model_path": "/a.gguf"}, {"model_path": "/b.gguf"}]
    configs = expand(models, tests, n_gpu_layers=[0, 8], n_cpu_moe=[0, -1], n_threads=[2])
    assert len(configs) == 8
    assert [c.model_path for c in configs[:4]] == ["/a.gguf"] * 4
    assert len({c.config_id for c in configs}) == 8


def test_build_configs_takes_the_guis_plain_values(tiny_moe_twin: Path) -> None:
    configs = build_configs(
        models=[str(tiny_moe_twin)],
        n_gpu_layers=[0],
        n_cpu_moe=[0, -1],
        batch=[1, 4],
        n_prompt=64,
        n_gen=16,
        repetitions=2,
        twin_layers=None,
    )
    assert [c.n_cpu_moe for c in configs] == [0, -1]
    assert [t.name for t in configs[0].tests] == ["pp64", "tg16", "batch B1 tg16", "batch B4 tg16"]
    assert all(c.source == "twin" and c.reps == 2 and c.quant == "Q4_K_M" for c in configs)


def test_a_twin_of_a_catalog_model_measures_that_model(tmp_path: Path) -> None:
    """Records of `fitbench bench -m <twin path>` carry the catalog id, not the file stem, so
    advice and reports group them with the model they stand for."""
    from fitbench.core.bench.models import resolve_path
    from fitbench.core.twin.writer import twin_for
    from gui_helpers import install_tiny_catalog

    install_tiny_catalog()
    twin = twin_for("tiny-moe", "Q4_K_M")
    resolved = resolve_path(twin)
    assert (resolved.model_id, resolved.quant, resolved.source) == ("tiny-moe", "Q4_K_M", "twin")
    renamed = tmp_path / "whatever.gguf"
    renamed.write_bytes(twin.read_bytes())
    assert resolve_path(renamed).model_id == "tiny-moe"  # the header says so, not the name
