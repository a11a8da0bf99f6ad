"""Desktop packaging files: the .desktop entry, AppStream metainfo, icons, the frozen entry point,
the install script and the smoke script's rules. The builds themselves: test_packaging_dist.py
(wheel/sdist) and test_packaging_frozen.py (PyInstaller)."""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType

import pytest

import fitbench
from fitbench.commands import COMMANDS

REPO = Path(__file__).resolve().parents[1]
PACKAGING = REPO / "packaging"
DESKTOP = PACKAGING / "fitbench.desktop"
METAINFO = PACKAGING / "io.github.fitbench.FitBench.metainfo.xml"
ICONS = REPO / "assets" / "icons"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(DESKTOP, encoding="utf-8")
    return parser["Desktop Entry"]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))


def test_desktop_entry_starts_the_gui_with_our_icon() -> None:
    entry = _desktop_entry()
    assert entry["Type"] == "Application"
    assert entry["Terminal"] == "false"
    program, *args = entry["Exec"].split()
    assert program in _pyproject()["project"]["scripts"]  # the console script pip installs
    assert args and args[0] in COMMANDS and args[0] == "gui"
    assert entry["TryExec"] == program
    assert (ICONS / f"{entry['Icon']}-256.png").is_file()
    assert entry["Categories"].endswith(";") and "Development" in entry["Categories"]


@pytest.mark.skipif(not shutil.which("desktop-file-validate"), reason="needs desktop-file-utils")
def test_desktop_entry_passes_desktop_file_validate() -> None:
    proc = subprocess.run(
        ["desktop-file-validate", str(DESKTOP)], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "error" not in proc.stdout.lower()


def test_metainfo_names_the_desktop_entry_icon_and_current_version() -> None:
    root = ET.parse(METAINFO).getroot()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == "io.github.fitbench.FitBench"
    assert METAINFO.name == f"{root.findtext('id')}.metainfo.xml"
    assert root.findtext("launchable") == DESKTOP.name
    assert root.findtext("icon") == _desktop_entry()["Icon"]
    assert root.findtext("provides/binary") == "fitbench"
    releases = [r.get("version") for r in root.iterfind("releases/release")]
    assert releases[0] == fitbench.__version__ == _pyproject()["project"]["version"]
    assert root.findtext("project_license") == "MIT"


@pytest.mark.skipif(not shutil.which("appstreamcli"), reason="needs appstream (appstreamcli)")
def test_metainfo_passes_appstreamcli_validate() -> None:
    proc = subprocess.run(
        ["appstreamcli", "validate", "--no-net", str(METAINFO)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert head[12:16] == b"IHDR"
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def test_icons_exist_in_every_hicolor_size_and_show_the_logo() -> None:
    # the install script puts fitbench-<N>.png into the theme as <N>x<N>/apps/fitbench.png
    from PySide6.QtGui import QImage

    for size in ICON_SIZES:
        png = ICONS / f"fitbench-{size}.png"
        assert _png_size(png) == (size, size)
        image = QImage(str(png))
        assert image.pixelColor(0, 0).alpha() == 0, png  # outside the rounded square
        tile = image.pixelColor(size // 2, size // 10)
        assert tile.alpha() == 255 and tile.blue() > tile.red(), png  # the blue tile


def test_entry_point_recognises_interpreter_calls_only() -> None:
    entry = _load(PACKAGING / "fitbench_entry.py")
    assert entry.interpreter_call(["-P", "-c", "print(1)"]) == ("-c", "print(1)", [])
    assert entry.interpreter_call(["-m", "fitbench.core.bench.worker", "-", "--ack"]) == (
        "-m",
        "fitbench.core.bench.worker",
        ["-", "--ack"],
    )
    for cli_args in ([], ["gui"], ["detect", "--json"], ["-v", "bench", "-m", "x"], ["-c"]):
        assert entry.interpreter_call(cli_args) is None


def _entry(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "app")}
    return subprocess.run(
        [sys.executable, str(PACKAGING / "fitbench_entry.py"), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )


def test_entry_point_runs_the_device_probe_as_a_module_and_code(tmp_path: Path) -> None:
    # the two forms fitbench uses for child processes, through the entry point
    probe = _entry("-m", "fitbench.core.hardware.llama_devices", cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    payload = json.loads(probe.stdout.strip().splitlines()[-1])
    assert payload["info"]["available"] is True
    code = _entry("-P", "-c", "import sys; print(sys.argv)", "a", "b", cwd=tmp_path)
    assert code.returncode == 0, code.stderr
    assert code.stdout.strip() == "['-c', 'a', 'b']"
    failing = _entry("-c", "raise SystemExit(3)", cwd=tmp_path)
    assert failing.returncode == 3
    cli = _entry("--version", cwd=tmp_path)
    assert cli.stdout.strip() == f"fitbench {fitbench.__version__}"


def _fake_bundle(tmp_path: Path) -> Path:
    """A build folder laid out like dist/fitbench, whose `fitbench` runs this checkout's CLI."""
    bundle = tmp_path / "dist" / "fitbench"
    data = bundle / "_internal" / "fitbench" / "data"
    data.mkdir(parents=True)
    shutil.copytree(REPO / "assets", data / "assets")
    launcher = bundle / "fitbench"
    launcher.write_text(
        f'#!/bin/sh\nPYTHONPATH={REPO / "app"} exec {sys.executable} -m fitbench "$@"\n'
    )
    launcher.chmod(0o755)
    shutil.copy2(PACKAGING / "install-linux.sh", bundle / "install.sh")
    shutil.copy2(DESKTOP, bundle / DESKTOP.name)
    shutil.copy2(METAINFO, bundle / METAINFO.name)
    return bundle


def test_install_script_installs_and_uninstalls_everything(tmp_path: Path) -> None:
    bundle = _fake_bundle(tmp_path)
    prefix = tmp_path / "prefix with space"
    run = subprocess.run(
        [str(bundle / "install.sh"), "--prefix", str(prefix)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    appdir = prefix / "lib" / "fitbench"
    version = subprocess.run(
        [str(prefix / "bin" / "fitbench"), "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.strip() == f"fitbench {fitbench.__version__}"
    desktop = (prefix / "share" / "applications" / "fitbench.desktop").read_text()
    assert f'Exec="{appdir}/fitbench" gui' in desktop
    assert f"TryExec={appdir}/fitbench\n" in desktop
    assert (prefix / "share" / "metainfo" / METAINFO.name).is_file()
    theme = prefix / "share" / "icons" / "hicolor"
    for size in ICON_SIZES:
        installed = theme / f"{size}x{size}" / "apps" / "fitbench.png"
        assert installed.read_bytes() == (ICONS / f"fitbench-{size}.png").read_bytes()
    assert (theme / "scalable" / "apps" / "fitbench.svg").is_file()
    if shutil.which("desktop-file-validate"):
        check = subprocess.run(
            ["desktop-file-validate", str(prefix / "share/applications/fitbench.desktop")],
            capture_output=True,
            text=True,
            check=False,
        )
        assert check.returncode == 0, check.stdout
    gone = subprocess.run(
        [str(appdir / "install.sh"), "--uninstall", "--prefix", str(prefix)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert gone.returncode == 0, gone.stderr
    left = [p for p in prefix.rglob("*") if p.is_file() or p.is_symlink()]
    assert left == []


def test_install_script_without_a_build_says_what_to_do(tmp_path: Path) -> None:
    run = subprocess.run(
        [str(PACKAGING / "install-linux.sh"), str(tmp_path / "nothing"), "--prefix", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1
    assert "make package" in run.stderr and str(tmp_path / "nothing") in run.stderr
    assert not (tmp_path / "lib").exists()


def test_smoke_stderr_allow_list_lets_only_known_lines_through() -> None:
    smoke = _load(REPO / "scripts" / "package_smoke.py")
    allowed = (
        "This plugin does not support propagateSizeHints()\n"
        "run 0123abcd: 1 model loads, results in /tmp/x/results.sqlite3\n"
        "[1/1] tiny (twin), ngl 0\n\n"
        # with a GPU (the frozen CUDA bundle's smoke on the H100 stopped at this line)
        "[1/1] tiny (twin), all layers on GPU\n"
    )
    assert smoke.unexpected_stderr(allowed) == []
    bad = "Traceback (most recent call last):\nqt.qpa.plugin: Could not load the Qt platform plugin"
    assert smoke.unexpected_stderr(bad) == bad.splitlines()


def test_smoke_environment_is_isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    smoke = _load(REPO / "scripts" / "package_smoke.py")
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    monkeypatch.setenv("VIRTUAL_ENV", "/venv")
    env = smoke.isolated_env(tmp_path)
    assert "PYTHONPATH" not in env and "VIRTUAL_ENV" not in env
    for key in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "FITBENCH_HOME"):
        assert Path(env[key]).is_relative_to(tmp_path)
    assert env["QT_QPA_PLATFORM"] == "offscreen"
    assert (Path(env["XDG_RUNTIME_DIR"]).stat().st_mode & 0o777) == 0o700
