"""Smoke test and start-up timing of a FitBench build (the frozen one from `make package`).

    .venv/bin/python scripts/package_smoke.py dist/fitbench/fitbench [--compare] [--repeat N]

Every step runs the build in a fresh, isolated home (HOME, XDG_*, FITBENCH_HOME, HF_HOME in a
temporary directory) with QT_QPA_PLATFORM=offscreen, and must exit 0 with nothing on stderr
beyond ALLOWED_STDERR:
  version  `fitbench --version`
  detect   `fitbench detect --json`: parsed; llama.cpp must be available, probed in the child
           process (the frozen program re-run as `-P -c CODE`: the bundled llama.cpp libraries load)
  models   `fitbench models --json`: the shipped models.toml is found and parsed
  bench    `fitbench bench` on a tiny twin (written here with the venv's fitbench): a benchmark
           worker (the frozen program re-run as `-m fitbench.core.bench.worker`) loads it in
           llama.cpp and measures it
  gui      `fitbench gui --quit-after-paint`: the main window paints, the app exits (--no-gui:
           skipped, for a bundle frozen where PySide6 is not installed, e.g. packaging/gpu-proof)
--compare runs the same steps with `python -m fitbench` (this interpreter) and prints both
start-up times; --repeat N times detect and gui N times each (medians). Exit status 1 when a
step fails, with what it printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "app"))  # the tiny twin is written with the source tree

# What may appear on stderr without failing the smoke test: Qt's notes about the offscreen
# platform, which are not FitBench's, and `fitbench bench`'s own progress lines.
ALLOWED_STDERR = (
    re.compile(r"^This plugin does not support propagateSizeHints\(\)$"),
    re.compile(r"^qt\.qpa\.fonts: .*"),
    re.compile(r"^run [0-9a-f]+: \d+ model loads?, results in .*results\.sqlite3$"),
    # bench's progress line: "[1/1] tiny (twin), ngl 0" or, with a GPU, "..., all layers on GPU"
    re.compile(r"^\[\d+/\d+\] \S.*, (ngl -?\d+|all layers on GPU).*$"),
    # llama.cpp's own start-up lines in a build with run-time backends (CUDA's device list)
    re.compile(r"^load_backend: loaded \S+ backend from .*$"),
    re.compile(r"^ggml_cuda_init: .*$"),
    re.compile(r"^\s+Device \d+: .*$"),
)
STEP_TIMEOUT_S = 300


class SmokeFailure(Exception):
    pass


@dataclass
class StepResult:
    name: str
    seconds: float
    stdout: str
    stderr: str
    data: Any = None


@dataclass
class Report:
    command: list[str]
    steps: list[StepResult] = field(default_factory=list)

    def seconds(self, name: str) -> list[float]:
        return [s.seconds for s in self.steps if s.name == name]


def isolated_env(root: Path) -> dict[str, str]:
    """The caller's environment minus everything that points at a user's or a venv's files."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTHON", "XDG_", "FITBENCH_", "HF_", "QT_", "VIRTUAL_ENV"))
    }
    home = root / "home"
    runtime = root / "runtime"
    for path in (home, runtime):
        path.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)  # Qt refuses a runtime dir others can read
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local" / "share"),
        XDG_CACHE_HOME=str(home / ".cache"),
        XDG_STATE_HOME=str(home / ".local" / "state"),
        XDG_RUNTIME_DIR=str(runtime),
        FITBENCH_HOME=str(home / "fitbench"),
        HF_HOME=str(home / "hf"),
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        QT_QPA_PLATFORM="offscreen",
    )
    return env


def unexpected_stderr(stderr: str) -> list[str]:
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not any(rx.match(line) for rx in ALLOWED_STDERR)
    ]


def run_step(
    name: str,
    command: Sequence[str],
    args: Sequence[str],
    env: dict[str, str],
    check: Callable[[str], Any] | None = None,
) -> StepResult:
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [*command, *args],
            env=env,
            cwd=env["HOME"],  # nothing from the checkout's working directory may leak in
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise SmokeFailure(f"{name}: no exit within {STEP_TIMEOUT_S} s") from exc
    seconds = time.perf_counter() - started
    shown = " ".join([*command, *args])
    if proc.returncode != 0:
        raise SmokeFailure(
            f"{name}: `{shown}` exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"
        )
    extra = unexpected_stderr(proc.stderr)
    if extra:
        raise SmokeFailure(f"{name}: `{shown}` wrote to stderr:\n" + "\n".join(extra[:40]))
    data = check(proc.stdout) if check else None
    return StepResult(name, seconds, proc.stdout, proc.stderr, data)


def check_version(stdout: str) -> str:
    if not re.fullmatch(r"fitbench \d+\.\d+\.\d+\S*", stdout.strip()):
        raise SmokeFailure(f"version: unexpected output {stdout.strip()!r}")
    return stdout.strip()


def check_detect(stdout: str) -> dict[str, Any]:
    data = json.loads(stdout)
    llama = data["llama_cpp"]
    if not llama["available"]:
        raise SmokeFailure(f"detect: llama.cpp not available: {llama.get('error')} {data['notes']}")
    if llama.get("probed_in") != "child process":
        raise SmokeFailure(f"detect: llama.cpp probed in {llama.get('probed_in')!r}")
    if not data["cpu"]["logical_cores"]:
        raise SmokeFailure("detect: no CPU cores reported")
    return dict(data)


def check_models(stdout: str) -> Any:
    data = json.loads(stdout)
    text = json.dumps(data)
    for model in ("mixtral", "llama"):
        if model not in text.lower():
            raise SmokeFailure(f"models: {model!r} is not in the catalog output")
    return data


def check_bench(stdout: str) -> list[dict[str, Any]]:
    data = json.loads(stdout)
    records = data if isinstance(data, list) else data.get("records", [])
    measured = [r for r in records if r.get("status") == "ok" and (r.get("avg_ts") or 0) > 0]
    tests = {r.get("test") for r in measured}
    if not {"pp", "tg"} <= tests:
        raise SmokeFailure(f"bench: no successful pp and tg measurement in {stdout[-2000:]}")
    return measured


def tiny_twin(directory: Path) -> Path:
    from fitbench.core.twin.writer import manifest_for, tiny_arch, write_twin

    return write_twin(manifest_for(tiny_arch(), "Q4_K_M"), directory / "tiny.gguf").path


def smoke(command: Sequence[str], repeat: int = 1, bench: bool = True, gui: bool = True) -> Report:
    report = Report(list(command))
    with tempfile.TemporaryDirectory(prefix="fitbench-smoke-") as tmp:
        root = Path(tmp)
        env = isolated_env(root)
        report.steps.append(run_step("version", command, ["--version"], env, check_version))
        for _ in range(repeat):
            report.steps.append(
                run_step("detect", command, ["detect", "--json"], env, check_detect)
            )
        report.steps.append(run_step("models", command, ["models", "--json"], env, check_models))
        if bench:
            twin = tiny_twin(root)
            bench_args = ["bench", "-m", str(twin), "-p", "16", "-n", "8", "-r", "1"]
            # --repack 0: llama.cpp's AMX repacking crashes on some VMs (see twin_fixtures.py)
            bench_args += ["-t", "2", "--repack", "0", "--json"]
            report.steps.append(run_step("bench", command, bench_args, env, check_bench))
        for _ in range(repeat if gui else 0):
            report.steps.append(run_step("gui", command, ["gui", "--quit-after-paint"], env))
    return report


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s" if values else "-"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program", type=Path, help="the frozen executable (dist/fitbench/fitbench)")
    parser.add_argument("--compare", action="store_true", help="also time python -m fitbench")
    parser.add_argument("--repeat", type=int, default=1, help="time detect and gui N times")
    parser.add_argument("--no-bench", action="store_true", help="skip the tiny-twin benchmark")
    parser.add_argument(
        "--no-gui", action="store_true", help="skip the GUI step (a bundle frozen without PySide6)"
    )
    args = parser.parse_args(argv)
    program = args.program.resolve()
    if not (program.is_file() and os.access(program, os.X_OK)):
        print(f"package_smoke: {program} is not an executable; run `make package` first")
        return 2
    runs = [("frozen", [str(program)])]
    if args.compare:
        runs.append(("python -m", [sys.executable, "-m", "fitbench"]))
    reports = []
    for label, command in runs:
        try:
            reports.append(
                (label, smoke(command, args.repeat, bench=not args.no_bench, gui=not args.no_gui))
            )
        except SmokeFailure as exc:
            print(f"package_smoke ({label}): FAILED: {exc}")
            return 1
        print(f"package_smoke ({label}): all steps passed")
    size = dir_size(program.parent)
    print(f"bundle: {program.parent} {size / 2**20:.0f} MiB")
    print(f"{'':12}{'detect --json':>16}{'gui first paint':>18}{'--version':>12}")
    for label, report in reports:
        print(
            f"{label:12}{_median(report.seconds('detect')):>16}"
            f"{_median(report.seconds('gui')):>18}{_median(report.seconds('version')):>12}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
