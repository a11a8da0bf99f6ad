"""The PyInstaller build (packaging/fitbench.spec) into a temporary folder, then
scripts/package_smoke.py on it: offscreen, isolated home, `--version`, `detect --json`,
`models --json`, a tiny-twin benchmark through a frozen worker process and the GUI's start-up to
first paint, each exit 0 with no stderr beyond the allow-list. About 1-2 minutes on 2 cores
(measured: docs/packaging.md), so it runs in `make test`; `make package-smoke` does the same on
dist/fitbench."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_frozen_build_passes_the_smoke_test(tmp_path: Path) -> None:
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip("PyInstaller is not installed (it is in the dev extras: pip install -e .[dev])")
    dist = tmp_path / "dist"
    build = subprocess.run(
        [
            *(sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN"),
            *("--distpath", str(dist), "--workpath", str(tmp_path / "build")),
            str(REPO / "packaging" / "fitbench.spec"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=480,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    program = dist / "fitbench" / "fitbench"
    internal = dist / "fitbench" / "_internal"
    # what the spec must bundle, where the code looks for it
    for shipped in (
        "fitbench/data/models.toml",
        "fitbench/data/assets/icons/fitbench.svg",
        "fitbench/data/assets/icons/fitbench-48.png",
        "llama_cpp/lib/libllama.so",
        "PySide6/Qt/plugins/platforms/libqoffscreen.so",
        "PySide6/Qt/plugins/platforms/libqxcb.so",
        "matplotlib/mpl-data/fonts/ttf/DejaVuSans.ttf",
    ):
        assert (internal / shipped).is_file(), shipped
    for beside in ("install.sh", "fitbench.desktop", "io.github.fitbench.FitBench.metainfo.xml"):
        assert (dist / "fitbench" / beside).is_file(), beside
    smoke = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "package_smoke.py"), str(program)],
        capture_output=True,
        text=True,
        timeout=480,
        check=False,
    )
    assert smoke.returncode == 0, smoke.stdout[-4000:] + smoke.stderr[-2000:]
    assert "package_smoke (frozen): all steps passed" in smoke.stdout
