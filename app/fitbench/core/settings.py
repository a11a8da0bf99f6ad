"""User settings: typed, versioned, persisted as JSON in the config dir.

The desktop app and the CLI read the same file, so a goal chosen in the app is the default of
`fitbench recommend` too. A damaged or hand-edited file never stops the app: unknown keys are
dropped, bad values fall back to their defaults, and the problems are returned so the caller can
say which setting was ignored and why.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from fitbench.core import paths

SETTINGS_VERSION = 1
GOALS = ("interactive", "throughput", "quality")
# What each goal means, for a picker (the GUI) and the CLI's help: a label, a sentence, and the
# Settings field of its parameter (None: the goal takes none).
GOAL_LABELS = {
    "interactive": "Fastest for one user",
    "throughput": "Most tokens/s for many users",
    "quality": "Best quality at a speed",
}
GOAL_HELP = {
    "interactive": "the highest generation speed whose first token comes within the limit",
    "throughput": "the most tokens/s of all sequences together, each user still served",
    "quality": "the highest quantization (then the best model) that still generates at least "
    "min_tps tokens/s for one user",
}
GOAL_PARAMETER: dict[str, str | None] = {
    "interactive": None,
    "throughput": None,
    "quality": "min_tps",
}
DEFAULT_MIN_TPS = 10.0  # about twice reading speed
FILE_NAME = "settings.json"


class SettingsError(ValueError):
    """A settings value that cannot be used; the message names the setting and the rule."""


@dataclass(frozen=True)
class Settings:
    goal: str = "interactive"
    ctx: int = 4096
    # 0: the planner's own margin (plan/margin.py: 384 MiB + 0.5% per GPU); else % of VRAM
    vram_headroom_pct: float = 0.0
    ram_headroom_gib: float = 2.0
    threads: int = 0  # 0: llama-bench's default (physical cores)
    min_tps: float = DEFAULT_MIN_TPS  # goal "quality": the least tokens/s for one user
    added_models: tuple[str, ...] = field(default_factory=tuple)  # local GGUF paths, hub:REPO/FILE

    def validated(self) -> Settings:
        if self.goal not in GOALS:
            raise SettingsError(f"goal must be one of {', '.join(GOALS)}, got {self.goal!r}")
        if not 256 <= self.ctx <= 1_048_576:
            raise SettingsError(f"ctx (context length) must be 256..1048576 tokens, got {self.ctx}")
        if not 0.0 <= self.vram_headroom_pct <= 50.0:
            raise SettingsError(
                f"vram_headroom_pct must be 0..50 percent, got {self.vram_headroom_pct}"
            )
        if not 0.0 <= self.ram_headroom_gib <= 512.0:
            raise SettingsError(f"ram_headroom_gib must be 0..512 GiB, got {self.ram_headroom_gib}")
        if not 0.1 <= self.min_tps <= 100_000:
            raise SettingsError(f"min_tps must be 0.1..100000 tokens/s, got {self.min_tps}")
        if not 0 <= self.threads <= 1024:
            raise SettingsError(f"threads must be 0..1024, got {self.threads}")
        return self

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["added_models"] = list(self.added_models)
        return {"version": SETTINGS_VERSION, **data}


_TYPES: dict[str, type] = {
    "goal": str,
    "ctx": int,
    "vram_headroom_pct": float,
    "ram_headroom_gib": float,
    "threads": int,
    "min_tps": float,
}


def settings_file() -> Path:
    return paths.config_dir() / FILE_NAME


def _coerce(name: str, value: Any) -> Any:
    if name == "added_models":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SettingsError("added_models must be a list of strings")
        return tuple(value)
    want = _TYPES[name]
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, want) or isinstance(value, bool):
        raise SettingsError(f"{name} must be {want.__name__}, got {type(value).__name__}")
    return value


def from_dict(data: dict[str, Any]) -> tuple[Settings, list[str]]:
    """Settings from a parsed file, and the problems found (each names the setting)."""
    problems: list[str] = []
    settings = Settings()
    known = {f.name for f in fields(Settings)}
    for name, value in data.items():
        if name == "version":
            continue
        if name not in known:
            problems.append(f"unknown setting {name!r} ignored")
            continue
        try:
            candidate = replace(settings, **{name: _coerce(name, value)}).validated()
        except SettingsError as exc:
            problems.append(f"{exc}; using the default")
            continue
        settings = candidate
    return settings, problems


def load(path: Path | None = None) -> tuple[Settings, list[str]]:
    """The saved settings (defaults when there is no file) and any problems with the file."""
    path = path or settings_file()
    if not path.is_file():
        return Settings(), []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        return Settings(), [f"{path}: cannot be read ({exc.strerror or exc}); using defaults"]
    except UnicodeDecodeError:
        return Settings(), [_set_aside(path, "not UTF-8 text")]
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return Settings(), [_set_aside(path, f"not JSON: {exc}")]
    except RecursionError:  # a hand-made or corrupted file nested thousands deep
        return Settings(), [_set_aside(path, "nested too deeply to be settings")]
    if not isinstance(data, dict):
        return Settings(), [_set_aside(path, "expected a JSON object")]
    settings, problems = from_dict(data)
    return settings, [f"{path}: {p}" for p in problems]


def _set_aside(path: Path, why: str) -> str:
    """Move a settings file that cannot be used to settings.json.bad-<time> (so the next save
    does not overwrite what the user may want back) and say where it went."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.bad-{stamp}")
    try:
        os.replace(path, aside)
    except OSError as exc:
        return f"{path}: {why}; using default settings (could not move it aside: {exc})"
    return f"{path}: {why}; using default settings, the file is kept as {aside}"


def save(settings: Settings, path: Path | None = None) -> Path:
    """Write atomically (temp file + rename) so a crash never leaves half a settings file."""
    settings.validated()
    path = path or settings_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".settings-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(settings.to_dict(), fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
