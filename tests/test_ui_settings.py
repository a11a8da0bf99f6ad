"""Settings: typed, persisted under the config dir, damaged files never stop the app."""

from __future__ import annotations

import json

import pytest

from fitbench.core import paths
from fitbench.core import settings as core_settings
from fitbench.core.settings import Settings, SettingsError
from fitbench.ui.settings_bar import SettingsBar


def test_save_and_load_round_trip_in_the_config_dir() -> None:
    s = Settings(goal="throughput", ctx=8192, vram_headroom_pct=10.0, ram_headroom_gib=4.0)
    path = core_settings.save(s)
    assert path.parent == paths.config_dir()
    loaded, problems = core_settings.load()
    assert (loaded, problems) == (s, [])


def test_bad_values_fall_back_to_defaults_and_name_the_setting() -> None:
    core_settings.settings_file().write_text(
        json.dumps(
            {"version": 1, "goal": "fastest", "ctx": 8192, "colour": "red", "ram_headroom_gib": "x"}
        )
    )
    loaded, problems = core_settings.load()
    assert loaded.goal == "interactive" and loaded.ctx == 8192
    text = "\n".join(problems)
    assert "goal must be one of interactive, throughput" in text
    assert "unknown setting 'colour'" in text
    assert "ram_headroom_gib must be float" in text


def test_corrupt_file_gives_defaults_and_a_reason() -> None:
    core_settings.settings_file().write_text("{not json")
    loaded, problems = core_settings.load()
    assert loaded == Settings()
    assert "not JSON" in problems[0] and "settings.json" in problems[0]
    assert "kept as" in problems[0] and "settings.json.bad-" in problems[0]


def test_invalid_settings_are_refused_before_writing() -> None:
    with pytest.raises(SettingsError, match="ctx"):
        core_settings.save(Settings(ctx=10))
    assert not core_settings.settings_file().exists()


def test_settings_bar_persists_goal_and_context(qtbot) -> None:
    bar = SettingsBar()
    qtbot.addWidget(bar)
    changes: list[Settings] = []
    bar.changed.connect(changes.append)
    bar.goal.setCurrentIndex(bar.goal.findData("throughput"))
    bar.ctx.setValue(16384)
    bar.ctx.editingFinished.emit()
    assert changes[-1].goal == "throughput" and changes[-1].ctx == 16384
    again = SettingsBar()
    qtbot.addWidget(again)
    assert again.goal.currentData() == "throughput"
    assert again.ctx.value() == 16384
