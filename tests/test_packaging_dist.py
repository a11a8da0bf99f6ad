"""The wheel and sdist build cleanly with `python -m build`, ship models.toml and the assets, and
the wheel installed into a fresh venv gives working `fitbench` commands that find their data
inside the installed package (not in this checkout)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

import fitbench

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    # isolated build (hatchling comes from pip's cache or PyPI), as a packager would run it
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wheels = list(out.glob("fitbench-*.whl"))
    sdists = list(out.glob("fitbench-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, list(out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


def _icon_files(prefix: str) -> set[str]:
    icons = REPO / "assets" / "icons"
    return {f"{prefix}/{p.relative_to(icons).as_posix()}" for p in icons.rglob("*") if p.is_file()}


def test_wheel_ships_code_catalog_assets_and_entry_points(built: dict[str, Path]) -> None:
    wheel = built["wheel"]
    assert wheel.name == f"fitbench-{fitbench.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert zf.read("fitbench/data/models.toml") == (REPO / "models.toml").read_bytes()
        entry_points = zf.read(f"fitbench-{fitbench.__version__}.dist-info/entry_points.txt")
    assert {"fitbench/cli.py", "fitbench/core/paths.py", "fitbench/ui/app.py"} <= names
    assert _icon_files("fitbench/data/assets/icons") <= names
    assert "fitbench = fitbench.cli:main" in entry_points.decode()
    assert not [n for n in names if n.startswith(("tests/", "app/")) or "__pycache__" in n]


def test_sdist_ships_sources_catalog_assets_and_packaging(built: dict[str, Path]) -> None:
    root = f"fitbench-{fitbench.__version__}"
    with tarfile.open(built["sdist"]) as tf:
        names = set(tf.getnames())
    expected = {
        f"{root}/{p}"
        for p in (
            "pyproject.toml",
            "models.toml",
            "Makefile",
            "app/fitbench/cli.py",
            "packaging/fitbench.spec",
            "packaging/fitbench.desktop",
            "packaging/io.github.fitbench.FitBench.metainfo.xml",
        )
    }
    assert expected <= names, expected - names
    assert _icon_files(f"{root}/assets/icons") <= names
    # no model files; the fuzz corpus of GGUF headers (under 8 KB each) is test data
    assert not [
        n
        for n in names
        if "__pycache__" in n or (n.endswith(".gguf") and "/tests/data/fuzz/" not in n)
    ]


def _fresh_venv_with_the_wheel(wheel: Path, where: Path) -> Path:
    """A new venv holding only the wheel; its dependencies come from this venv's site-packages
    through a .pth line, so llama-cpp-python is not rebuilt from source (minutes on 2 cores)."""
    venv.create(where, with_pip=False, symlinks=True)
    python = where / "bin" / "python"
    install = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps"),
            *("--no-index", "--quiet", str(wheel)),
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # appended after the new venv's own site-packages: the wheel's fitbench wins, and the dev
    # venv's editable-install .pth files are not processed (a .pth line is no site directory)
    (Path(site) / "zz_dev_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return where


def test_wheel_in_a_fresh_venv_gives_working_commands(
    built: dict[str, Path], tmp_path: Path
) -> None:
    env_dir = _fresh_venv_with_the_wheel(built["wheel"], tmp_path / "venv")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # cwd outside the checkout: nothing may be imported from it
        return subprocess.run(
            args, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=False
        )

    where = run(
        str(env_dir / "bin" / "python"),
        "-c",
        "import fitbench; from fitbench.core import paths; "
        "print(fitbench.__file__); print(paths.models_toml()); print(paths.assets_dir())",
    )
    assert where.returncode == 0, where.stderr
    for line in where.stdout.split():
        assert Path(line).is_relative_to(env_dir), line  # installed code and data, no checkout
    fitbench_cmd = str(env_dir / "bin" / "fitbench")
    help_run = run(fitbench_cmd, "--help")
    assert help_run.returncode == 0 and "detect" in help_run.stdout and "gui" in help_run.stdout
    models = run(fitbench_cmd, "models", "--json")
    assert models.returncode == 0, models.stderr
    assert "mixtral" in models.stdout.lower() and json.loads(models.stdout)
    detect = run(fitbench_cmd, "detect", "--json", "--no-bandwidth")
    assert detect.returncode == 0, detect.stderr
    assert json.loads(detect.stdout)["llama_cpp"]["available"] is True
