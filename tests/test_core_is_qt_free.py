"""fitbench.core must import and run without Qt: checked in a fresh interpreter that refuses Qt."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import fitbench.core

PROBE = r"""
import importlib, importlib.abc, sys
class NoQt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph", "PyQt5", "PyQt6"):
            raise ImportError(f"the core imported {name}")
        return None
sys.meta_path.insert(0, NoQt())
for name in sys.argv[1:]:
    importlib.import_module(name)
leaked = [m for m in sys.modules if m.split(".")[0] in ("PySide6", "shiboken6", "pyqtgraph")]
assert not leaked, leaked
print("ok", len(sys.argv) - 1)
"""


def core_modules() -> list[str]:
    names = ["fitbench.core"]
    for info in pkgutil.walk_packages(fitbench.core.__path__, "fitbench.core."):
        names.append(info.name)
    return names


def test_core_imports_without_qt() -> None:
    modules = core_modules()
    assert "fitbench.core.results.schema" in modules
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *modules], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"ok {len(modules)}"


def test_headless_cli_does_not_load_qt() -> None:
    code = (
        "import sys; from fitbench.cli import build_parser; build_parser(); "
        "print(any(m.startswith(('PySide6','pyqtgraph')) for m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "False"
