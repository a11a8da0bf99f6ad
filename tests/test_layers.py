"""The layer rules hold in plain pytest too: import-linter's contracts and no import circles.

The contracts live in pyproject.toml ([tool.importlinter]); `make test`/`make lint` run the same
check as `lint-imports`. grimp (import-linter's graph) sees every import, including those inside
functions and under TYPE_CHECKING, so a lower module cannot reach up, not even lazily.
"""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest
from importlinter.cli import EXIT_STATUS_SUCCESS, lint_imports

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    status = lint_imports(
        config_filename=str(REPO_ROOT / "pyproject.toml"), no_cache=True, no_logo=True
    )
    out = capsys.readouterr().out
    assert status == EXIT_STATUS_SUCCESS, out
    # the contracts this project relies on are all there and all checked
    for name in (
        "The core never imports the GUI, the CLI or Qt",
        "No stage of the core imports a later stage",
        "plan: the search over the planner",
    ):
        assert name in out


def test_no_import_circles() -> None:
    graph = grimp.build_graph("fitbench", cache_dir=None)
    assert "fitbench.core.plan.search" in graph.modules
    circles = []
    for module in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if graph.chain_exists(importer=imported, imported=module):
                back = graph.find_shortest_chain(importer=imported, imported=module) or ()
                circles.append(" -> ".join((module, *back)))
    assert not circles, "import circles:\n" + "\n".join(circles)
