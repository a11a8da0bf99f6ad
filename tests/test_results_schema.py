from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fitbench.core.bench.config import BenchConfig, BenchTest
from fitbench.core.results import schema as results


def test_llama_bench_fields_are_present() -> None:
    for name in (
        "model_filename",
        "n_gpu_layers",
        "n_cpu_moe",
        "avg_ts",
        "samples_ts",
        "n_prompt",
        "n_gen",
        "n_depth",
        "type_k",
        "flash_attn",
    ):
        assert name in results.LLAMA_BENCH_FIELDS


def test_roundtrip_jsonl(tmp_path: Path) -> None:
    rec = results.new_record(model_id="m", n_prompt=512, avg_ts=12, samples_ts=[11.5, 12.5])
    path = tmp_path / "r.jsonl"
    results.write_jsonl([rec, rec], path)
    back = results.read_jsonl(path)
    assert back == [rec, rec]
    assert back[0]["avg_ts"] == 12.0 and isinstance(back[0]["avg_ts"], float)


def test_bad_records_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(results.ResultError, match="unknown result fields: bogus"):
        results.new_record(bogus=1)
    with pytest.raises(results.ResultError, match="n_prompt"):
        results.new_record(n_prompt="512")
    with pytest.raises(results.ResultError, match="source"):
        results.new_record(source="imaginary")
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(results.new_record()) + "\n{not json\n")
    with pytest.raises(results.ResultError, match=r"bad.jsonl:2"):
        results.read_jsonl(path)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(results.ResultError, match="no result records"):
        results.read_jsonl(empty)


def _bench_config(**kw: Any) -> tuple[BenchConfig, BenchTest]:
    """A config and one of its tests, as the worker and the runner get them."""
    spec = BenchTest("tg", n_gen=8, n_depth=64)
    return BenchConfig(model_path="/m/tiny.gguf", tests=(spec,), **kw), spec


def test_every_field_belongs_to_one_part_and_the_part_types_agree_with_the_table() -> None:
    assert {f.part for f in results.FIELDS} == set(results.PARTS)
    by_name = {f.name: f for f in results.FIELDS}
    for typed, parts in (
        (results.Known, {"build", "model", "effective"}),
        (results.Measured, {"measured"}),
    ):
        for name in typed.__annotations__:
            assert by_name[name].part in parts, name
    # the config part is a function of the config; what FitBench never sets keeps its default
    cfg, _ = _bench_config()
    unset = set(results.part_fields("config")) - set(results.from_config(cfg))
    assert unset == {
        "cpu_mask",
        "cpu_strict",
        "embeddings",
        "no_op_offload",
        "devices",
        "lazy_mode",
        "no_host",
        "fit_target",
        "fit_min_ctx",
    }
    assert set(results.from_config(cfg)) <= set(results.part_fields("config"))


def test_one_builder_for_measured_and_unfinished_tests() -> None:
    cfg, spec = _bench_config(n_gpu_layers=-1, n_cpu_moe=-1, tensor_split=(0.5, 0.5))
    known: results.Known = {"cpu_info": "cpu", "n_gpu_layers": 5, "n_cpu_moe": 4, "n_layer_file": 4}
    ok = results.build_record(cfg, spec, known, {"avg_ts": 10, "samples_ts": [10.0]})
    unloaded = results.build_record(cfg, spec, None, None, status="oom", error="x" * 5000)
    assert list(ok) == list(unloaded) == list(results.FIELD_NAMES)
    for name in results.part_fields("config", "test"):
        assert ok[name] == unloaded[name], name
    assert (ok["test"], ok["n_depth"], ok["tensor_split"], ok["model_id"]) == (
        "depth",
        64,
        "0.50/0.50",
        "tiny",
    )
    # what the worker learnt wins; without it the record keeps the config's request
    assert (ok["n_gpu_layers"], ok["n_cpu_moe"], ok["n_layer_file"], ok["n_layer_model"]) == (
        5,
        4,
        4,
        4,
    )
    assert (unloaded["n_gpu_layers"], unloaded["n_cpu_moe"], unloaded["n_layer_file"]) == (-1, 0, 0)
    assert ok["avg_ts"] == 10.0 and ok["status"] == "ok" and ok["test_time"]
    assert unloaded["status"] == "oom" and len(unloaded["error"]) == results.ERROR_MAX_CHARS
    assert ok["fitbench_version"] == unloaded["fitbench_version"] != ""
    with pytest.raises(results.ResultError, match="status"):
        results.build_record(cfg, spec, status="exploded")
