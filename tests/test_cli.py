from __future__ import annotations

import subprocess
import sys

import pytest

from fitbench.cli import build_parser, main
from fitbench.commands import COMMANDS

SUBCOMMANDS = (
    "gui",
    "detect",
    "models",
    "plan",
    "twin",
    "download",
    "cache",
    "bench",
    "recommend",
    "report",
    "quick",
    "serve",
    "load",
)


def test_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out
    assert set(COMMANDS) == set(SUBCOMMANDS)


def test_every_subcommand_has_help() -> None:
    parser = build_parser()
    for name in SUBCOMMANDS:
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([name, "--help"])
        assert exc.value.code == 0


def test_console_entry_point_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fitbench", "--version"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("fitbench ")


def test_log_file_is_written(isolated_dirs) -> None:
    from fitbench.core import logsetup

    path = logsetup.setup(verbose=False)
    import logging

    logging.getLogger("fitbench.test").warning("hello log")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert path.is_file()
    assert "hello log" in path.read_text()
    assert str(isolated_dirs) in str(path)
