"""The Recommendation tab when nothing fits, caveats in people's words, and the what-if picker."""

from __future__ import annotations

import re

from fitbench.core.advise.recommend import recommend
from fitbench.core.model import catalog
from fitbench.core.settings import Settings
from fitbench.ui import core_api, present
from fitbench.ui.advice_panel import AdvicePanel
from fitbench.ui.main_window import MainWindow
from test_scaled_display import HW, _records

NOTHING_FITS = {
    "goal": "interactive",
    "choice": None,
    "expected": None,
    "verdict": "Nothing that meets the quality floor fits this machine.",
    "alternatives": [],
    "reasons": [],
    "caveats": ["The whole models were not run here."],
    "recipe": None,
    "moe_vs_dense": None,
    "best_feasible": {
        "model_id": "mixtral-8x7b-instruct",
        "model_name": "Mixtral 8x7B Instruct v0.1",
        "quant": "Q2_K",
        "placement": {"description": "all 32 layers on the CPU"},
        "expected": {"tg_ts": {"value": 1.9, "basis": "predicted"}},
        "why": "below the quality floor: Q2_K adds too much perplexity",
        "recipe": {"llama_server": "llama-server -m mixtral.Q2_K.gguf -ngl 0"},
    },
    "cheapest_change": {"sentence": "To meet the floors: add 8.0 GiB of RAM (32.0 GiB in all)."},
    "hardware_needed": [{"sentence": "Llama 2 70B Chat needs a GPU with 43.1 GiB of VRAM."}],
}


def test_nothing_fits_gives_actions_not_an_empty_card(qtbot) -> None:
    actions = present.no_fit_actions(NOTHING_FITS)
    titles = [t for t, _ in actions]
    assert titles == [
        "Best option that runs here",
        "Cheapest change that meets the floors",
        "What it would take",
    ]
    assert "Mixtral 8x7B Instruct v0.1 · Q2_K · all 32 layers on the CPU" in actions[0][1]
    assert "1.9 t/s (predicted)" in actions[0][1] and "below the quality floor" in actions[0][1]
    # the first advice of issue 18 called the best option "below_floor": shown the same
    old = {**NOTHING_FITS, "below_floor": NOTHING_FITS["best_feasible"], "best_feasible": None}
    assert present.no_fit_actions(old)[0] == actions[0]
    panel = AdvicePanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.set_advice(NOTHING_FITS)
    assert panel.actions_box.isVisible() and "add 8.0 GiB of RAM" in panel.actions_text.text()
    # no empty boxes: numbers, reasons, alternatives and the MoE story are hidden
    for box in (panel.numbers_box, panel.reasons_box, panel.alt_box, panel.moe_box):
        assert not box.isVisible()
    assert (
        panel.recipe_box.isVisible()
        and "-ngl 0" in panel.recipe_texts["llama_server"].toPlainText()
    )
    assert not panel.choice.isVisible()


def test_caveats_speak_no_code_words() -> None:
    advice = recommend(_records(), hardware=HW, catalog=catalog.load()).to_dict()
    text = " ".join(advice["caveats"])
    assert "scaled twins" in text and "To measure" in text
    # identifiers of the code (gpu_bandwidth, overhead_per_step, ...) never reach a person
    assert not re.findall(r"\b[a-z]+_[a-z_]+\b", text.replace("`", " ")), text


def test_what_if_hardware_from_the_gpu_table() -> None:
    choices = core_api.what_if_choices()
    assert choices[:2] == ["RTX 4090", "2x RTX 3090"]
    hw = core_api.what_if_hardware(HW, "2x RTX 3090")
    assert [g["vram_total_bytes"] for g in hw["gpus"]] == [24 << 30, 24 << 30]
    assert hw["fingerprint"] == HW["fingerprint"] and core_api.what_if_label(hw) == "2x RTX 3090"
    # the real planner: Mixtral Q4_K_M does not fit a 24 GiB, GPU-less machine; it does on 48 GiB
    mixtral = catalog.load().get("mixtral-8x7b-instruct")
    here = core_api.plan_quant(mixtral, "Q4_K_M", HW, Settings())
    there = core_api.plan_quant(mixtral, "Q4_K_M", hw, Settings())
    assert here["badge"] == "does not fit"
    assert there["badge"] != "does not fit" and "CPU only" not in there["badge"]


def test_picking_a_what_if_machine_replans_and_labels(qtbot) -> None:
    window = MainWindow(autostart=False)
    qtbot.addWidget(window)
    window.controller._hardware_detected(dict(HW))
    qtbot.waitUntil(
        lambda: not window.models_panel.status.text().startswith("Planning"), timeout=60000
    )
    before = window.models_panel.badge_text("mixtral-8x7b-instruct", "Q4_K_M")
    window.settings_bar.choose_what_if("2x RTX 3090")
    header = window.models_panel.table.horizontalHeaderItem(3).text()
    assert header == "Fit with 2x RTX 3090 (predicted)"
    qtbot.waitUntil(
        lambda: not window.models_panel.status.text().startswith("Planning"), timeout=60000
    )
    assert "What if: 2x RTX 3090" in window.models_panel.status.text()
    after = window.models_panel.badge_text("mixtral-8x7b-instruct", "Q4_K_M")
    assert before == "does not fit" and after != before
    assert window.advice_panel.what_if.text().startswith("<b>What if: 2x RTX 3090.</b>")
    window.settings_bar.choose_what_if("")
    assert window.models_panel.table.horizontalHeaderItem(3).text() == "Fit on this machine"
