"""`fitbench plan` and `fitbench models` end to end through the real CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fitbench.cli import main
from fitbench.core.model import catalog
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
            "2",
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
    # 2 GB: the CUDA context (600 MiB) and the margin (384 MiB + 0.5%) leave ~0.9 GiB
    assert out["hardware"]["gpus_vram_bytes"] == [2_000_000_000]
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


DATA = Path(__file__).parent / "data"
H200 = DATA / "predict_h200_hardware.json"
H200_RESULTS = DATA / "predict_h200_facts.jsonl"
MIXTRAL = "mixtral-8x7b-instruct"


def _h200_plan(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    argv = ["plan", "--model", MIXTRAL, "--offline", "--hardware", str(H200), "--json", *extra]
    out = _json(capsys, argv)
    assert isinstance(out, dict)
    return out


def test_plan_predicts_speed_per_placement_labelled(capsys: pytest.CaptureFixture[str]) -> None:
    out = _h200_plan(capsys)
    assert out["speed"]["basis"] == "predicted (uncalibrated: detected hardware only)"
    rows = {(r["n_gpu_layers"], r["n_cpu_moe"]): r for r in out["placements"]}
    for r in rows.values():
        assert r["predicted_tg_ts"] > 0 and r["predicted_pp_ts"] > 0
    # more on the GPU, faster; the output layer counts first (ngl 33 = every block + output)
    tg = [rows[(ngl, 0)]["predicted_tg_ts"] for ngl in (0, 8, 16, 24, 33)]
    assert tg == sorted(tg) and tg[-1] > 5 * tg[0]
    assert out["best"]["n_gpu_layers"] == 33 and out["best"]["predicted_tg_ts"] == tg[-1]
    # planned against the VRAM free when the file was written; --vram total is the what-if
    hw = json.loads(H200.read_text())
    assert out["hardware"]["gpus_vram_bytes"] == [hw["gpus"][0]["vram_free_bytes"]]
    assert out["hardware"]["vram_basis"] == "free"
    assert _h200_plan(capsys, "--vram", "total")["hardware"]["gpus_vram_bytes"] == [150754820096]
    assert main(["plan", "--model", MIXTRAL, "--offline", "--hardware", str(H200)]) == 0
    text = capsys.readouterr().out
    assert "tg128 t/s" in text and "predicted (uncalibrated" in text


def test_plan_results_calibrate_the_prediction(capsys: pytest.CaptureFixture[str]) -> None:
    """facts.md's H200 measurements: calibrated, the predictions land near the measured tg
    (196 t/s full offload, 28.3 at ngl 24), still labelled predicted."""
    prior = _h200_plan(capsys)
    fitted = _h200_plan(capsys, "--results", str(H200_RESULTS))
    assert fitted["speed"]["basis"].startswith("predicted (calibrated on 27 measurements")
    assert fitted["speed"]["predictor"]["n_points"] == 27
    assert fitted["best"]["predicted_tg_ts"] == pytest.approx(196.0, rel=0.1)

    def at_ngl_24(out: dict[str, Any]) -> float:
        return float(
            next(r for r in out["placements"] if r["n_gpu_layers"] == 24)["predicted_tg_ts"]
        )

    # partial offload hangs on the CPU's bandwidth, which the hardware file does not give
    assert at_ngl_24(fitted) == pytest.approx(28.3, rel=0.15)  # measured: 28.3 t/s
    assert abs(at_ngl_24(prior) - 28.3) > 2 * abs(at_ngl_24(fitted) - 28.3)


def test_plan_results_of_another_machine_are_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    argv = ["plan", "--model", MIXTRAL, "--offline", "--vram-gb", "24", "--ram-gb", "64"]
    assert main([*argv, "--results", str(H200_RESULTS)]) == 1
    err = capsys.readouterr().err
    assert "measured on machine facts-md-h200" in err and "Traceback" not in err
    bad = tmp_path / "hw.json"
    bad.write_text("[1, 2]")
    assert main(["plan", "--model", MIXTRAL, "--offline", "--hardware", str(bad)]) == 1
    assert "fitbench detect --json" in capsys.readouterr().err


def test_plan_takes_llama_cpp_device_memory_without_nvml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A Metal/Vulkan machine: no NVML GPU; HardwareReport.gpu_vram_bytes() gives llama.cpp's."""
    from fitbench.core.hardware import detect as hardware

    data = hardware.detect(probe_bandwidth=False, llama=False).to_dict()
    data["gpus"] = []
    data["llama_cpp"]["devices"] = [
        {
            "name": "MTL0",
            "description": "Apple M2 Max",
            "type": "gpu",
            "backend": "Metal",
            "memory_free_bytes": 30 * 2**30,
            "memory_total_bytes": 32 * 2**30,
        }
    ]
    data["llama_cpp"]["gpu_offload"] = True
    hw = tmp_path / "mac.json"
    hw.write_text(json.dumps(data))
    out = _json(capsys, ["plan", "--model", MIXTRAL, "--offline", "--hardware", str(hw), "--json"])
    assert isinstance(out, dict)
    assert out["hardware"]["gpus_vram_bytes"] == [30 * 2**30]  # llama.cpp's free memory
    assert out["best"]["n_gpu_layers"] == 33 and out["best"]["vram_bytes"] > 20e9


def test_plan_and_models_use_the_downloaded_file(
    hub_server: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from fitbench.core.download import hub as download

    model = catalog.load().get("llama-2-70b-chat")
    qf = model.quant("Q4_K_M")
    path = write_llama_gguf(tmp_path / "small.gguf", LlamaShape(n_layer=3), Q.Q4_K)
    hub_server.add_file(model.repo, qf.file, path)
    assert download.local_path(model, "Q4_K_M") is None
    fetched = download.download_quant(model.id, "Q4_K_M")
    assert download.local_path(model, "Q4_K_M") == fetched.path
    out = _json(
        capsys, ["plan", "--model", model.id, "--offline", "--hardware", str(H200), "--json"]
    )
    assert isinstance(out, dict)
    assert out["manifest_source"] == "local file header" and out["n_layer"] == 3
    rows = _json(capsys, ["models", "--offline", "--hardware", str(H200), "--json"])
    assert isinstance(rows, list)
    mine = next(r for r in rows if (r["model"], r["quant"]) == (model.id, "Q4_K_M"))
    assert mine["manifest_source"] == "local file header"
    assert mine["best"]["predicted_tg_ts"] > 0
