"""Issue 21, item 6: no secrets or noise in logs, no empty or cryptic errors, a damaged
settings file or a newer database never silently wins."""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from fitbench.cli import describe_error
from fitbench.core import logsetup
from fitbench.core import settings as core_settings

TOKEN = "hf_" + "A1b2C3d4E5f6G7h8I9j0KlMnOpQr"


@pytest.fixture
def fresh_logging() -> Iterator[None]:
    root = logging.getLogger()
    before = list(root.handlers)
    yield
    for handler in list(root.handlers):
        if handler not in before:
            root.removeHandler(handler)
            handler.close()
    for name in logsetup.QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_tokens_never_reach_the_log_file_or_stderr(
    fresh_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = logsetup.setup(verbose=True)
    log = logging.getLogger("fitbench.test")
    log.debug("response headers: %s", {"authorization": f"Bearer {TOKEN}", "x-id": "7"})
    log.warning("GET https://hub.example/api?token=%s&x=1", TOKEN)
    log.info("Authorization: Basic dXNlcjpzZWNyZXQ=")
    log.info("config %s", json.dumps({"api_key": "sk-live-123456", "ctx": 4096}))
    try:
        raise RuntimeError(f"server said: unauthorized {TOKEN}")
    except RuntimeError:
        log.exception("download failed")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = path.read_text()
    err = capsys.readouterr().err
    for where in (text, err):
        assert TOKEN not in where and "dXNlcjpzZWNyZXQ=" not in where
        assert "sk-live-123456" not in where
    assert "'authorization': 'Bearer ***'" in text and "hf_***" in text
    assert '"ctx": 4096' in text  # only the secret goes


def test_third_party_debug_stays_out_unless_verbose(fresh_logging: None) -> None:
    path = logsetup.setup(verbose=False)
    logging.getLogger("httpx").debug("HTTP Request: GET / headers=%s", {"a": "b"})
    logging.getLogger("huggingface_hub.file_download").info("downloading")
    logging.getLogger("urllib3.connectionpool").warning("retrying")
    logging.getLogger("fitbench.x").debug("our own debug line")
    for handler in logging.getLogger().handlers:
        handler.flush()
    text = path.read_text()
    assert "HTTP Request" not in text and "downloading" not in text
    assert "retrying" in text and "our own debug line" in text
    logsetup.setup(verbose=True)
    logging.getLogger("httpx").debug("now shown")
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert "now shown" in path.read_text()


def test_stderr_gets_one_line_and_the_traceback_stays_in_the_file(
    fresh_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """`report` printed a whole traceback as a warning when the advice failed (exit 0)."""
    path = logsetup.setup(verbose=False)
    try:
        1 % 0  # noqa: B018
    except ZeroDivisionError as exc:
        logging.getLogger("fitbench.core.report").warning(
            "no recommendation for the report: %s", exc, exc_info=True
        )
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        f"WARNING: no recommendation for the report: integer modulo by zero (details in {path})"
    ]
    for handler in logging.getLogger().handlers:
        handler.flush()
    assert "Traceback (most recent call last)" in path.read_text()


def test_a_log_file_that_cannot_be_written_is_said_once(tmp_path: Path) -> None:
    """On a full disk every log call printed "--- Logging error ---"."""
    script = textwrap.dedent(
        """
        import logging, resource, signal
        from fitbench.core import logsetup
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        path = logsetup.setup()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))  # the file may not grow past 200 B
        log = logging.getLogger("fitbench.x")
        for i in range(50):
            log.info("line %d %s", i, "x" * 40)
        print("done")
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "done"
    assert "--- Logging error ---" not in proc.stderr
    assert proc.stderr.count("cannot write the log file") == 1
    assert "logging to it stops" in proc.stderr


def _args(**kw: object) -> argparse.Namespace:
    return argparse.Namespace(command="twin", **kw)


@pytest.mark.parametrize(
    ("exc", "words"),
    [
        (ValueError(""), "ValueError (while reading m.gguf"),
        (AssertionError(), "AssertionError (while reading m.gguf"),
        (ZeroDivisionError("integer modulo by zero"), "ZeroDivisionError: integer modulo by zero"),
        (
            TypeError("int() argument must be a string, not 'NoneType'"),
            "TypeError: int() argument must be",
        ),
        (KeyError("n_layer"), "KeyError: missing key 'n_layer' (while reading m.gguf"),
    ],
)
def test_an_error_is_never_empty_and_names_the_file(exc: Exception, words: str) -> None:
    try:
        raise exc
    except Exception as caught:
        text = describe_error(caught, _args(file=Path("m.gguf")))
    assert text.startswith(words)
    assert "tests/" not in text  # only FitBench's own source lines are named


def test_a_clear_message_is_left_as_it_is() -> None:
    exc = ValueError("m.gguf: block_count 2147483648 is more than any model has")
    assert describe_error(exc, _args(file=Path("m.gguf"))) == str(exc)


def test_an_empty_error_from_a_command_gets_its_type_and_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fitbench twin: error: ` with nothing after it, through the real CLI error path."""
    from fitbench import cli
    from fitbench.commands import twin

    def fail(args: argparse.Namespace) -> int:
        raise AssertionError

    monkeypatch.setattr(twin, "run", fail)
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    assert cli.main(["twin", "--model", str(model)]) == 1
    line = capsys.readouterr().err.splitlines()[0]
    assert line == f"fitbench twin: error: AssertionError (while reading {model})"


def test_a_deeply_nested_settings_file_gives_defaults_and_is_kept_aside() -> None:
    path = core_settings.settings_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[" * 100_000 + "]" * 100_000)
    loaded, problems = core_settings.load()
    assert loaded == core_settings.Settings()
    (problem,) = problems
    assert "nested too deeply" in problem and "using default settings" in problem
    (aside,) = path.parent.glob("settings.json.bad-*")
    assert aside.read_text().startswith("[[[")  # the user's file, untouched
    assert not path.exists()
    core_settings.save(core_settings.Settings(goal="throughput"))  # and saving works again
    assert core_settings.load() == (core_settings.Settings(goal="throughput"), [])
