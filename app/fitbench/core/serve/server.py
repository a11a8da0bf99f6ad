"""llama.cpp's llama-server: where it comes from, how it is started, health-checked and stopped.

Where it comes from, in this order: $FITBENCH_LLAMA_SERVER, then `llama-server` on PATH, then the
cached build of scripts/build-llama-server (the llama.cpp source of the installed
llama-cpp-python, so the server runs the same kernels that `fitbench bench` measured).

The server runs in its own process group (start_new_session), so stopping it stops everything it
started; stop() sends SIGTERM, waits, then SIGKILL. Every started server is also stopped when
FitBench exits (atexit), so a crash or Ctrl-C in the caller never leaves a server holding the GPU.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO

import httpx2

from fitbench.core import paths

ENV_VAR = "FITBENCH_LLAMA_SERVER"
_RUNNING: set[LlamaServer] = set()


@dataclass(frozen=True)
class ServerBinary:
    path: Path
    source: str  # env | path | cache

    def describe(self) -> str:
        where = {
            "env": f"${ENV_VAR}",
            "path": "found on PATH",
            "cache": (
                f"FitBench's build of llama-cpp-python {llama_cpp_python_version()}'s llama.cpp "
                "source, the same kernels `fitbench bench` measures"
            ),
        }
        return f"{self.path} ({where.get(self.source, self.source)})"


def llama_cpp_python_version() -> str:
    try:
        return metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        return ""


def cached_build_path(version: str | None = None) -> Path:
    """Where scripts/build-llama-server puts its build for this llama-cpp-python version."""
    version = version or llama_cpp_python_version() or "unknown"
    return paths.cache_dir() / "llama-server" / f"llama-cpp-python-{version}" / "llama-server"


def find_llama_server() -> ServerBinary | None:
    """The llama-server FitBench would use, or None (then `fitbench serve` says how to get one)."""
    env = os.environ.get(ENV_VAR, "")
    if env:
        path = Path(env).expanduser()
        return ServerBinary(path, "env") if os.access(path, os.X_OK) else None
    found = shutil.which("llama-server")
    if found:
        return ServerBinary(Path(found), "path")
    cached = cached_build_path()
    if os.access(cached, os.X_OK):
        return ServerBinary(cached, "cache")
    return None


def detect_summary() -> dict[str, str | None]:
    """For `fitbench detect`: which llama-server is used and where it comes from (no process is
    started: detect stays fast)."""
    binary = find_llama_server()
    if binary is None:
        env = os.environ.get(ENV_VAR)
        note = f"${ENV_VAR}={env} is not executable" if env else "not found"
        return {
            "path": None,
            "source": None,
            "note": f"{note}; `make run` or scripts/build-llama-server builds it",
        }
    return {"path": str(binary.path), "source": binary.source, "note": binary.describe()}


@dataclass
class ServeOptions:
    """llama-server's flags for one deployment; None leaves llama-server's default."""

    model_path: Path
    host: str = "127.0.0.1"
    port: int = 8080
    n_gpu_layers: int | None = None
    n_cpu_moe: int | None = None
    ctx_size: int | None = None
    parallel: int | None = None
    flash_attn: str | None = None  # on | off | auto
    threads: int | None = None
    # False: -nr, no repacking into the CPU's extra buffer types (AMX), as `bench` does after
    # llama.cpp's AMX kernels crashed on a machine
    repack: bool | None = None
    extra: list[str] = field(default_factory=list)

    def argv(self, binary: Path) -> list[str]:
        argv = [str(binary), "-m", str(self.model_path), "--host", self.host]
        argv += ["--port", str(self.port)]
        for flag, value in (
            ("-ngl", self.n_gpu_layers),
            ("--n-cpu-moe", self.n_cpu_moe),
            ("-c", self.ctx_size),
            ("-np", self.parallel),
            ("-fa", self.flash_attn),
            ("-t", self.threads),
        ):
            if value is not None:
                argv += [flag, str(value)]
        if self.repack is False:
            argv.append("--no-repack")
        return argv + self.extra


class ServerError(RuntimeError):
    pass


class ServerCancelled(ServerError):
    pass


class LlamaServer:
    """One llama-server process: start(), wait_ready(), stop(); a context manager."""

    def __init__(self, binary: Path, options: ServeOptions, log_path: Path) -> None:
        self.binary = binary
        self.options = options
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.options.host in ("0.0.0.0", "::") else self.options.host
        return f"http://{host}:{self.options.port}"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.options.argv(self.binary),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: Ctrl-C reaches us, we stop it
        )
        _RUNNING.add(self)

    def wait_ready(
        self, timeout_s: float = 600.0, cancelled: Callable[[], bool] | None = None
    ) -> None:
        """Poll /health until 200 (503 while the model loads); a ServerError with the log's tail
        when the process dies or the time runs out, ServerCancelled when cancelled() says so."""
        assert self.process is not None, "start() first"
        deadline = time.monotonic() + timeout_s
        with httpx2.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline:
                if cancelled is not None and cancelled():
                    self.stop()
                    raise ServerCancelled("cancelled while llama-server was loading")
                if self.process.poll() is not None:
                    raise ServerError(
                        f"llama-server exited with {self.process.returncode}:\n{self.log_tail()}"
                    )
                try:
                    if client.get(self.base_url + "/health").status_code == 200:
                        return
                except httpx2.HTTPError:
                    pass  # not listening yet
                time.sleep(0.2)
        self.stop()
        raise ServerError(f"llama-server not ready after {timeout_s:.0f} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM to the process group, SIGKILL after grace_s; the exit code."""
        process, self.process = self.process, None
        _RUNNING.discard(self)
        code: int | None = None
        if process is not None:
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
                try:
                    process.wait(grace_s)
                except subprocess.TimeoutExpired:
                    _signal_group(process.pid, signal.SIGKILL)
                    process.wait()
            code = process.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)  # pid == pgid: start_new_session made it the group leader


@atexit.register
def _stop_all() -> None:
    for server in list(_RUNNING):
        server.stop(grace_s=5.0)
