"""fitbench.core must import and run without Qt: checked in fresh interpreters that refuse Qt.

A meta-path finder placed first makes every import of PySide6/shiboken6/pyqtgraph (or another Qt
binding) raise ImportError, so a core module that needs Qt, even indirectly and even from inside
a function, fails here; matplotlib must not reach for a Qt backend either.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import fitbench.core

QT = ("PySide6", "shiboken6", "pyqtgraph", "PyQt5", "PyQt6")

NO_QT = f"""
import importlib.abc, sys
QT = {QT!r}
class NoQt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in QT:
            raise ImportError(f"Qt is blocked in this headless check: {{name}}")
        return None
assert not [m for m in sys.modules if m.split(".")[0] in QT], "Qt loaded before the check"
sys.meta_path.insert(0, NoQt())
def no_qt_loaded():
    leaked = [m for m in sys.modules if m.split(".")[0] in QT]
    assert not leaked, leaked
"""

IMPORT_ALL = r"""
import importlib
for name in sys.argv[1:]:
    importlib.import_module(name)
no_qt_loaded()
print("ok", len(sys.argv) - 1)
"""

# the core at work: a twin written and read back, the placement search, a report figure
PIPELINE = r"""
import tempfile
from pathlib import Path
from fitbench.core import gguf
from fitbench.core.plan import search
from fitbench.core.report import figures
from fitbench.core.twin.writer import manifest_for, tiny_arch, write_twin

out = Path(tempfile.mkdtemp())
twin = write_twin(manifest_for(tiny_arch(moe=True), "Q4_K_M"), out / "tiny.gguf").path
manifest = gguf.read_header(twin)
best = search.best_fitting(search.candidate_placements(manifest, [4 << 30], 8 << 30, 512))
assert best is not None and best.fits
fig = figures.tg_vs_offload(
    [figures.Series("tiny", (0.0, 100.0), (10.0, 40.0), "measured-twin")], "headless"
)
no_qt_loaded()
print("ok", manifest.n_layer, best.n_gpu_layers, len(fig.png) > 1000)
"""


def core_modules() -> list[str]:
    names = ["fitbench.core"]
    for info in pkgutil.walk_packages(fitbench.core.__path__, "fitbench.core."):
        names.append(info.name)
    return names


def run_without_qt(code: str, *args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", NO_QT + code, *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=cwd,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_blocker_really_blocks_qt() -> None:
    out = run_without_qt(
        "try:\n    import pyqtgraph\nexcept ImportError as exc:\n    print('blocked', exc)\n"
    )
    assert out.startswith("blocked Qt is blocked in this headless check")


def test_every_core_module_imports_without_qt() -> None:
    modules = core_modules()
    assert "fitbench.core.results.schema" in modules
    assert "fitbench.core.plan.search" in modules
    assert run_without_qt(IMPORT_ALL, *modules).strip() == f"ok {len(modules)}"


def test_the_core_works_without_qt(tmp_path: Path) -> None:
    assert run_without_qt(PIPELINE, cwd=tmp_path).split() == ["ok", "4", "5", "True"]


def test_headless_cli_runs_without_qt(tmp_path: Path) -> None:
    argv = [  # the CLI's own process: parse, plan, predict, print; never Qt
        "plan",
        "--model",
        "mixtral-8x7b-instruct",
        "--quant",
        "Q4_K_M",
        "--offline",
        "--vram-gb",
        "24",
        "--ram-gb",
        "64",
        "--json",
    ]
    code = (
        f"from fitbench.cli import main\nrc = main({argv!r})\nno_qt_loaded()\nassert not rc, rc\n"
    )
    plan = json.loads(run_without_qt(code, cwd=tmp_path))
    assert plan["model"] == "mixtral-8x7b-instruct" and plan["n_layer"] == 32
