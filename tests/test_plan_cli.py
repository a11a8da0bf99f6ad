"""`fitbench plan` and `fitbench models` end to end through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fitbench.cli import main
from fitbench.core import catalog
from hub_server import HubServer
from test_gguf_builders import LlamaShape, Q, write_llama_gguf


def _json(capsys: pytest.CaptureFixture[str], argv: list[str]) -> object:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_plan_a_local_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_llama_gguf(tmp_path / "m.gguf", LlamaShape(n_expert=4, n_expert_used=2), Q.Q4_K)
    out = _json(
        capsys,
        [
            "plan",
            "--model",
            str(path),
            "--ctx",
            "1024",
            "--vram-gb",
            "1",
            "--ram-gb",
            "8",
            "--json",
        ],
    )
    assert isinstance(out, dict)
    for key in ("model", "quant", "file_bytes", "weights_bytes", "kv_bytes_per_token"):
        assert key in out
    assert out["file_bytes"] == path.stat().st_size
    assert out["manifest_source"] == "local file header"
    assert out["hardware"]["gpus_vram_bytes"] == [1_000_000_000]
    rows = out["placements"]
    assert rows[0]["n_gpu_layers"] == 0 and rows[0]["vram_bytes"] > 0  # the GPU runtime
    assert any(r["n_cpu_moe"] == 2 for r in rows)
    for r in rows:
        assert {"n_gpu_layers", "n_cpu_moe", "vram_bytes", "ram_bytes", "fits"} <= set(r)
        assert r["basis"] == "predicted"
    assert out["best"]["fits"]


def test_plan_catalog_model_offline_says_which_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    model = catalog.load().get("mixtral-8x7b-instruct")
    out = _json(
        capsys,
        ["plan", "--model", model.id, "--offline", "--vram-gb", "24", "--ram-gb", "64", "--json"],
    )
    assert isinstance(out, dict)
    assert out["manifest_source"].startswith("built-in manifest")
    assert out["quant"] == model.default_quant
    assert out["kv_bytes_per_token"] == 128 * 1024  # facts.md: Mixtral f16 KV per token
    assert out["best"]["n_gpu_layers"] == 33 and out["best"]["n_cpu_moe"] > 0


def test_plan_catalog_model_from_the_hub_header(
    hub_server: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = catalog.load().get("llama-2-70b-chat")
    qf = model.quant("Q4_K_M")
    path = write_llama_gguf(tmp_path / "small.gguf", LlamaShape(n_layer=3), Q.Q4_K)
    hub_server.add_file(model.repo, qf.file, path)
    out = _json(capsys, ["plan", "--model", model.id, "--ram-gb", "16", "--vram-gb", "0", "--json"])
    assert isinstance(out, dict)
    assert out["manifest_source"].startswith("remote header")
    assert out["n_layer"] == 3  # the header served, not the built-in manifest


def test_plan_bad_input_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x01\x00\x00\x00" + b"\x00" * 32)
    assert main(["plan", "--model", str(bad)]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "version 1" in err and "Traceback" not in err
    assert main(["plan", "--model", "no-such-model"]) == 1
    assert "no model 'no-such-model'" in capsys.readouterr().err


def test_models_lists_every_catalog_quant(capsys: pytest.CaptureFixture[str]) -> None:
    out = _json(capsys, ["models", "--offline", "--vram-gb", "80", "--ram-gb", "128", "--json"])
    assert isinstance(out, list)
    expected = {(m.id, q.quant) for m in catalog.load().models for q in m.quants}
    assert {(r["model"], r["quant"]) for r in out} == expected
    for r in out:
        assert "size_bytes" in r
        assert "error" in r or r["best"] is None or r["best"]["fits"]
