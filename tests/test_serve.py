"""`fitbench serve`: where llama-server comes from, its lifecycle, and serve + load end to end."""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fitbench.cli import main
from fitbench.core.serve.records import deployment_for, read_levels
from fitbench.core.serve.server import (
    ENV_VAR,
    LlamaServer,
    ServeOptions,
    detect_summary,
    find_llama_server,
)

STANDIN = Path(__file__).with_name("llama_server_standin.py")
REPO_APP = str(Path(__file__).resolve().parents[1] / "app")
# Looked up at import, before conftest points the cache dir at each test's tmp: the real user's
# cached build (`make test` builds it), $FITBENCH_LLAMA_SERVER or PATH.
REAL_SERVER = find_llama_server()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def standin_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    exe = tmp_path / "llama-server"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{STANDIN}" "$@"\n')
    exe.chmod(0o755)
    monkeypatch.setenv(ENV_VAR, str(exe))
    return exe


def test_the_env_variable_names_the_server_and_detect_says_so(standin_binary: Path) -> None:
    found = find_llama_server()
    assert found is not None and (found.path, found.source) == (standin_binary, "env")
    assert detect_summary()["source"] == "env"


def test_a_non_executable_env_path_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "/nonexistent/llama-server")
    assert find_llama_server() is None
    assert "not executable" in str(detect_summary()["note"])


def test_placement_flags_reach_the_server() -> None:
    options = ServeOptions(Path("m.gguf"), port=9, n_gpu_layers=99, n_cpu_moe=4, ctx_size=4096,
                           parallel=8, flash_attn="on", threads=2, extra=["--metrics"])  # fmt: skip
    argv = options.argv(Path("/bin/llama-server"))
    assert "--no-repack" not in argv
    assert ServeOptions(Path("m"), repack=False).argv(Path("s"))[-1] == "--no-repack"
    assert argv[1:] == ["-m", "m.gguf", "--host", "127.0.0.1", "--port", "9", "-ngl", "99",
                        "--n-cpu-moe", "4", "-c", "4096", "-np", "8", "-fa", "on", "-t", "2",
                        "--metrics"]  # fmt: skip


def test_a_server_that_ignores_sigterm_is_killed(
    standin_binary: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FITBENCH_STANDIN_IGNORE_TERM", "1")
    port = _free_port()
    server = LlamaServer(standin_binary, ServeOptions(Path("m.gguf"), port=port), tmp_path / "l")
    with server:
        server.wait_ready(30)
        assert _port_open(port)
        time.sleep(0.2)  # let the stand-in install its SIGTERM handler
        assert server.stop(grace_s=0.5) == -signal.SIGKILL
    assert not _port_open(port)
    assert "--port" in (tmp_path / "l").read_text()


def test_serve_command_until_sigterm(
    standin_binary: Path, tiny_dense_twin: Path, tmp_path: Path
) -> None:
    port = _free_port()
    log = tmp_path / "server.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fitbench", "serve", "-m", str(tiny_dense_twin), "--port",
         str(port), "-np", "4", "-c", "1024", "--log", str(log), "--", "--metrics"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=os.environ | {"PYTHONPATH": REPO_APP},
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith(f"ready: http://127.0.0.1:{port}"), line
    deployment = deployment_for(f"http://localhost:{port}/v1")  # what `fitbench load` labels
    assert deployment is not None
    assert (deployment["source"], deployment["parallel"], deployment["ctx_size"]) == (
        "twin",
        4,
        1024,
    )
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped llama-server" in err
    assert not _port_open(port)
    assert "-c 1024 -np 4 --metrics" in log.read_text()
    assert deployment_for(f"http://127.0.0.1:{port}") is None  # gone with the server


def test_serve_without_any_llama_server_says_how_to_get_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_VAR, "/nonexistent/llama-server")
    assert main(["serve", "-m", "x.gguf"]) == 1
    assert "scripts/build-llama-server" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_and_load_end_to_end_on_a_tiny_twin(
    tiny_dense_twin: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fitbench serve` (the command, with the real llama-server on this CPU) + `fitbench load`;
    skipped where no llama-server is installed or built (`make test` builds one)."""
    if REAL_SERVER is None:
        pytest.skip(f"no llama-server: set ${ENV_VAR}, put one on PATH or run "
                    "scripts/build-llama-server")  # fmt: skip
    port = _free_port()
    # --no-repack: llama.cpp's AMX buffers crash in batched matmuls on some VMs (twin_fixtures)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fitbench", "serve", "-m", str(tiny_dense_twin), "--port",
         str(port), "-np", "4", "-c", "2048", "-t", "2", "-ngl", "0", "--no-repack", "--log",
         str(tmp_path / "llama-server.log"), "--ready-timeout", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=os.environ | {"PYTHONPATH": REPO_APP, ENV_VAR: str(REAL_SERVER.path)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 150)
        line = proc.stdout.readline() if ready else ""
        assert line.startswith(f"ready: http://127.0.0.1:{port}"), (line, proc.poll())
        code = main(["load", "--url", f"http://127.0.0.1:{port}", "--concurrency", "1,4",
                     "--requests", "4", "--max-tokens", "8", "--prompt-tokens", "32",
                     "--json"])  # fmt: skip
        data = json.loads(capsys.readouterr().out)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert code == 0
    assert data["prompt_tokens_method"] == "/tokenize"
    assert abs(data["prompt_tokens_measured"] - 32) <= 4
    for level in data["levels"]:
        assert (level["ok"], level["failed"]) == (4, 0), level
        assert level["output_tokens"] == 4 * 8  # ignore_eos: every request made max_tokens
        assert level["output_tokens_per_s"] > 0
        assert 0 < level["ttft_ms"]["p50"] <= level["e2e_ms"]["p50"]
    stored = read_levels()
    assert [line["basis"] for line in stored] == ["measured-twin"] * 2
    assert stored[0]["deployment"]["parallel"] == 4
    assert not _port_open(port)
