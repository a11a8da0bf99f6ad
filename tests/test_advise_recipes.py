"""Advice you can run: every recipe runs a placement that fits the plan, with the settings that
were benchmarked; the quality goal; never a dead end; models the user measured."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from advice_fixtures import MIXTRAL, catalog_with, cpu_machine, h200
from fitbench.core.advise.candidates import GIB
from fitbench.core.advise.recipe import TOOLS, can_express
from fitbench.core.advise.recommend import Advice, AdviceError, recommend
from fitbench.core.model import catalog
from fitbench.core.plan import memory
from fitbench.core.plan.margin import DEFAULT_VRAM_MARGIN
from fitbench.core.plan.placement import Placement
from fitbench.core.results import schema as results
from fitbench.core.twin.writer import manifest_for
from twin_fixtures import make_tiny_twin


def _server_flags(command: str) -> dict[str, str]:
    """llama-server's flags back from the recipe (a flag without a value maps to "")."""
    words = shlex.split(command)
    assert words[0] == "llama-server"
    flags: dict[str, str] = {}
    i = 1
    while i < len(words):
        name = words[i]
        assert name.startswith("-"), command
        if i + 1 < len(words) and not words[i + 1].startswith("-"):
            flags[name] = words[i + 1]
            i += 2
        else:
            flags[name] = ""
            i += 1
    return flags


def _placement_of_flags(flags: dict[str, str], n_layer: int) -> Placement:
    ngl = int(flags["-ngl"])
    ncmoe = n_layer if "--cpu-moe" in flags else int(flags.get("--n-cpu-moe", 0))
    return Placement(ngl, ncmoe).effective(n_layer)


def _planned_vram(model_id: str, quant: str, p: Placement, ctx: int, batch: int) -> int:
    m = manifest_for(catalog.load().get(model_id), quant)
    return memory.plan(m, p, ctx, batch, n_gpus=0 if p.cpu_only else 1).vram_total


@pytest.mark.parametrize("vram_gib", [8, 16, 24, 40])
def test_every_recipe_fits_its_plan(vram_gib: int) -> None:
    """The issue's 16 GB case among others: no recipe puts more on the GPU than the plan allows,
    and a tool that cannot express the recommended placement says why, with its own speed."""
    records, hardware = h200(vram_gib)
    advice = recommend(records, hardware=hardware, catalog=catalog_with())
    assert advice.choice is not None and advice.recipe is not None
    choice, recipe = advice.choice, advice.recipe
    n = choice.n_layer
    usable = DEFAULT_VRAM_MARGIN.usable(int(vram_gib * GIB))
    for tool in TOOLS:
        entry = recipe["tools"][tool]
        p = Placement(entry["placement"]["n_gpu_layers"], entry["placement"]["n_cpu_moe"])
        assert not can_express(tool, p, n), (tool, p)
        assert _planned_vram(choice.model.id, choice.quant, p, 4096, 1) <= usable, (tool, p)
        if entry["same_as_recommended"]:
            assert p == choice.placement and not entry["why"]
        else:
            assert can_express(tool, choice.placement, n)
            assert entry["why"] and "instead" in entry["why"]
            tg = entry["expected"]["tg_ts"]
            assert tg["basis"] in ("predicted", "measured-twin", "measured-real")
            said = float(re.search(r"fits: ([0-9.]+) tokens/s", entry["why"]).group(1))
            assert said == pytest.approx(tg["value"], abs=0.06)
            # the best the tool can express is never faster than the recommendation
            assert tg["value"] <= (choice.tg_ts.value or 0) * 1.0001
    # the tools' own text says the same placement as their entries
    py = recipe["tools"]["llama_cpp_python"]["placement"]
    ngl_py = -1 if Placement(py["n_gpu_layers"]).all_on_gpu(n) else py["n_gpu_layers"]
    assert f"n_gpu_layers={ngl_py}," in recipe["llama_cpp_python"]
    ol = recipe["tools"]["ollama"]["placement"]
    assert f"PARAMETER num_gpu {Placement(ol['n_gpu_layers']).offloaded(n)}" in recipe["ollama"]


def test_16gb_gpu_keeps_experts_on_the_cpu_and_ngl_only_tools_fall_back() -> None:
    records, hardware = h200(16)
    advice = recommend(records, hardware=hardware, catalog=catalog_with())
    assert advice.choice is not None and advice.recipe is not None
    assert advice.choice.model.id == MIXTRAL and advice.choice.placement.n_cpu_moe > 0
    tools = advice.recipe["tools"]
    assert tools["llama_server"]["same_as_recommended"]
    for tool in ("llama_cpp_python", "ollama", "lm_studio"):
        assert not tools[tool]["same_as_recommended"]
        assert tools[tool]["placement"]["n_cpu_moe"] in (0, 32)
        assert (
            tools[tool]["placement"]["n_gpu_layers"] < 33
            or tools[tool]["placement"]["n_cpu_moe"] == 32
        )
    assert "n_gpu_layers=-1" not in advice.recipe["llama_cpp_python"]
    assert "num_gpu 33" not in advice.recipe["ollama"]


def test_llama_server_flags_parse_back_to_the_plan() -> None:
    records, hardware = h200(16)
    for r in records:  # benchmarked with flash attention and a q8_0 KV cache, 12 threads
        r.update(flash_attn=True, type_k="q8_0", type_v="q8_0", n_threads=12)
    advice = recommend(records, hardware=hardware, catalog=catalog_with(), goal="throughput")
    assert advice.choice is not None and advice.recipe is not None
    c = advice.choice
    flags = _server_flags(advice.recipe["llama_server"])
    assert _placement_of_flags(flags, c.n_layer) == c.placement.effective(c.n_layer)
    assert int(flags["-np"]) == c.batch and int(flags["-c"]) == 4096 * c.batch
    assert (flags["-fa"], flags["-ctk"], flags["-ctv"], flags["-t"]) == ("on", "q8_0", "q8_0", "12")
    assert flags["-fit"] == "off"  # llama.cpp must not re-fit the placement
    assert flags["-hf"] == f"{c.model.repo}:Q4_K_M"  # nothing downloaded here
    py = advice.recipe["llama_cpp_python"]
    assert "flash_attn=True" in py and "type_k=8" in py and "type_v=8" in py
    assert "n_threads=12" in py and "n_ctx=4096" in py
    assert f"OLLAMA_NUM_PARALLEL={c.batch}" in advice.recipe["ollama"]
    assert "OLLAMA_FLASH_ATTENTION=1" in advice.recipe["ollama"]
    assert advice.recipe["settings"]["source"].startswith("as benchmarked")


def test_quality_goal_picks_the_highest_quant_that_meets_the_speed() -> None:
    records, hardware = h200()
    quants = ("Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0")
    cat = catalog_with(quants)
    slow = recommend(records, hardware=hardware, catalog=cat, goal="quality", min_tps=10)
    fast = recommend(records, hardware=hardware, catalog=cat, goal="quality", min_tps=150)
    assert slow.choice is not None and fast.choice is not None
    assert slow.choice.quant == "Q8_0"
    assert (fast.choice.tg_ts.value or 0) >= 150
    assert fast.choice.quality.ppl_increase is not None
    assert fast.choice.quality.ppl_increase > (slow.choice.quality.ppl_increase or 0)
    assert "best quality" in slow.verdict and "10 tokens/s" in slow.verdict
    impossible = recommend(records, hardware=hardware, catalog=cat, goal="quality", min_tps=1e5)
    assert impossible.choice is not None
    assert any("No option that fits reaches" in r for r in impossible.reasons)
    with pytest.raises(AdviceError, match="positive"):
        recommend(records, hardware=hardware, catalog=cat, goal="quality", min_tps=0)


def _tg(model_id: str, quant: str, ts: float, **extra: Any) -> dict[str, Any]:
    return results.new_record(
        model_id=model_id, quant=quant, source=extra.pop("source", "twin"), test="tg", n_gen=32,
        avg_ts=ts, hardware_fingerprint="cpu-box", **extra,
    )  # fmt: skip


def test_below_the_floor_shows_the_best_that_runs_and_the_cheapest_change() -> None:
    """Mixtral Q2_K fits 24 GiB of RAM, Q4_K_M does not: no dead end."""
    records = [_tg(MIXTRAL, "Q2_K", 6.0, n_layer_model=32, n_layer_file=32)]
    cat = catalog_with(("Q2_K", "Q4_K_M"))
    advice = recommend(records, hardware=cpu_machine(24), catalog=cat)
    d = advice.to_dict()
    assert d["choice"] is None
    below = d["below_floor"]
    assert below["model_id"] == MIXTRAL and below["quant"] == "Q2_K"
    tg = below["expected"]["tg_ts"]
    assert (tg["value"], tg["basis"], tg["uncertainty"]) == (6.0, "measured-twin", 0.01)
    assert "below the quality floor" in below["why"] and below["recipe"]["llama_server"]
    change = d["cheapest_change"]
    assert change["ram"]["quant"] == "Q4_K_M" and change["ram"]["add_bytes"] > 0
    assert change["ram"]["total_bytes"] > 24 * GIB
    assert change["gpu"]["cards"]  # real cards from the GPU table
    assert "below the quality floor" in d["verdict"] and "add" in d["verdict"]
    assert "To meet the floors" in d["verdict"]
    json.dumps(d)


def test_nothing_runs_still_names_the_change() -> None:
    records = [_tg(MIXTRAL, "Q4_K_M", 6.0, n_layer_model=32, n_layer_file=32)]
    advice = recommend(records, hardware=cpu_machine(8), catalog=catalog_with())
    d = advice.to_dict()
    assert d["choice"] is None and d["below_floor"] is None
    assert d["cheapest_change"]["ram"]["add_bytes"] > 0
    assert all(n["cards"] for n in d["hardware_needed"])
    assert "RTX" in " ".join(d["hardware_needed"][0]["cards"]) or d["hardware_needed"][0]["cards"]


def test_a_model_the_user_measured_is_a_candidate(tmp_path: Path) -> None:
    """A real file outside the catalog (here a tiny GGUF): on a machine too small for the
    catalog models, it is the recommendation, and the recipe names its real path."""
    path = make_tiny_twin(tmp_path)
    record = _tg("my-tiny-model", "Q4_K_M", 900.0, source="real", model_filename=str(path))
    advice = recommend([record], hardware=cpu_machine(8), catalog=catalog_with())
    assert isinstance(advice, Advice) and advice.choice is not None
    assert advice.choice.model.id == "my-tiny-model"
    assert advice.choice.tg_ts.value == 900.0 and advice.choice.tg_ts.basis == "measured-real"
    assert advice.recipe is not None
    assert f"-m {path}" in advice.recipe["llama_server"]
    assert f"model_path={str(path)!r}" in advice.recipe["llama_cpp_python"]
    assert advice.memory["manifests"]["my-tiny-model/Q4_K_M"] == "the downloaded file's header"
    # and beside the catalog models on a machine where they fit
    records, hardware = h200()
    record["hardware_fingerprint"] = "facts-md-h200"
    both = recommend([*records, record], hardware=hardware, catalog=catalog_with())
    assert "my-tiny-model" in {a.model.id for a in both.alternatives} | {both.choice.model.id}
