"""What-if hardware from the GPU table: `--gpu "RTX 4090"`, `--gpu "2x RTX 3090"` on plan,
models and recommend; this machine's calibration scaled by the card's ratios, labelled predicted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advice_fixtures import catalog_with, h200
from fitbench.cli import main
from fitbench.core.advise.candidates import GIB
from fitbench.core.advise.recommend import recommend
from fitbench.core.hardware.gpu_specs import lookup, parse_gpu_spec
from fitbench.core.model import catalog
from fitbench.core.plan.margin import DEFAULT_VRAM_MARGIN
from fitbench.core.predict import fit as predict_fit
from fitbench.core.predict.model import FEATURES, catalog_costs_for
from fitbench.core.predict.speeds import calibrate_on, what_if_hardware

DATA = Path(__file__).parent / "data"
GPU_READ = FEATURES.index("gpu_read")


def test_a_known_card_replaces_the_500_gbs_guess() -> None:
    hw = {"gpus": [{"name": "NVIDIA GeForce RTX 4090", "vram_total_bytes": 24 * GIB}]}
    prior = predict_fit.prior_from_hardware(hw)
    assert 1 / (prior.values[GPU_READ] * 1e9) == pytest.approx(0.6 * 1008, rel=1e-6)
    assert "RTX 4090" in prior.sources["gpu_read"] and "guess" not in prior.sources["gpu_read"]
    unknown = predict_fit.prior_from_hardware({"gpus": [{"name": "Mystery GPU 9000"}]})
    assert "500 GB/s guess" in unknown.sources["gpu_read"]


def test_calibration_is_scaled_by_the_cards_bandwidth_ratio() -> None:
    records, hardware = h200()
    costs_for = catalog_costs_for(catalog.load())
    here = calibrate_on(hardware, records, costs_for)
    card = lookup("RTX 4090")
    there = calibrate_on(what_if_hardware(hardware, [card]), records, costs_for)
    ratio = card.bandwidth_gbs / lookup("H200").bandwidth_gbs
    assert there.calibration.values[GPU_READ] == pytest.approx(
        here.calibration.values[GPU_READ] / ratio
    )
    cpu = FEATURES.index("cpu_read")  # the host is this machine's
    assert there.calibration.values[cpu] == here.calibration.values[cpu]
    assert "RTX 4090" in there.what_if and not here.what_if


@pytest.mark.parametrize(("spec", "n_gpus"), [("RTX 4090", 1), ("2x RTX 3090", 2)])
def test_recommend_for_a_card_this_machine_lacks(spec: str, n_gpus: int) -> None:
    records, hardware = h200()
    cards = parse_gpu_spec(spec)
    advice = recommend(records, hardware=what_if_hardware(hardware, cards), catalog=catalog_with())
    d = advice.to_dict()
    assert d["limits"]["vram_usable_bytes"] == sum(
        DEFAULT_VRAM_MARGIN.usable(c.vram_bytes) for c in cards
    )
    assert d["choice"] is not None
    # no measurement of this machine stands for another card
    assert {v["basis"] for v in d["expected"].values()} == {"predicted"}
    assert any(c.startswith("What-if hardware") for c in d["caveats"])
    on_h200 = recommend(records, hardware=hardware, catalog=catalog_with()).to_dict()
    assert d["expected"]["tg_ts"]["value"] < on_h200["expected"]["tg_ts"]["value"]
    if n_gpus == 2:
        assert "--tensor-split" in d["recipe"]["llama_server"]


def test_plan_and_models_take_gpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, hardware = h200()
    hw_file = tmp_path / "hw.json"
    hw_file.write_text(json.dumps(hardware))
    base = ["plan", "--model", "mixtral-8x7b-instruct", "--offline", "--hardware", str(hw_file)]
    assert main([*base, "--gpu", "2x RTX 3090", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hardware"]["gpus_vram_bytes"] == [24 * GIB, 24 * GIB]
    assert "what-if GPU 2x RTX 3090" in out["hardware"]["source"]
    assert any("RTX 3090" in n for n in out["speed"]["notes"])
    assert main([*base, "--json"]) == 0
    own = json.loads(capsys.readouterr().out)
    # the same full offload is predicted slower on the 3090s' 936 GB/s than on the H200
    full = {p["label"]: p["predicted_tg_ts"] for p in own["placements"]}
    theirs = {p["label"]: p["predicted_tg_ts"] for p in out["placements"]}
    assert theirs["ngl all"] < full["ngl all"]
    assert main([*base, "--gpu", "RTX 9999"]) == 1
    assert "Unknown GPU" in capsys.readouterr().err
    assert main([*base, "--gpu", "RTX 4090", "--vram-gb", "24"]) == 1
    assert "not both" in capsys.readouterr().err
    models = ["models", "--offline", "--hardware", str(hw_file), "--gpu", "RTX 4090", "--json"]
    assert main(models) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all("error" not in r for r in rows)
