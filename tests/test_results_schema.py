from __future__ import annotations

import json
from pathlib import Path

import pytest

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
