"""Where load results and running deployments are kept, so advice and reports can read them.

Load levels: one JSON line per concurrency level (the run's context + {"level": ...}), appended to
<data dir>/serving/load.jsonl by every `fitbench load` and `fitbench quick --serve` run, and to
--out when given. A line is a measurement of a served deployment: its "basis" says so
(measured-real / measured-twin when FitBench started the server on a known file, "measured" for
a server FitBench did not start: then nothing says which model or placement it runs).

Deployments: `fitbench serve` writes what it started (model, quant, placement, slots, file) to
<data dir>/serving/deployments/<port>.json and removes it when it stops; `fitbench load --url`
on that port attaches it to each level, which is how the advice knows what a level measured.
API keys are never part of either.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fitbench.core import paths
from fitbench.core.plan.placement import Placement
from fitbench.core.serve.server import ServeOptions
from fitbench.core.twin.fidelity import TWIN_SOURCES

SCHEMA = 1
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})


def serving_dir() -> Path:
    return paths.data_dir() / "serving"


def load_results_path() -> Path:
    """The one store of load levels on this machine."""
    return serving_dir() / "load.jsonl"


def _deployment_file(port: int) -> Path:
    return serving_dir() / "deployments" / f"{port}.json"


def basis_of(deployment: Mapping[str, Any] | None) -> str:
    source = (deployment or {}).get("source")
    if source == "real":
        return "measured-real"
    if source in TWIN_SOURCES:
        return "measured-twin"
    return "measured"


def deployment_of(
    options: ServeOptions,
    *,
    model_id: str,
    quant: str,
    source: str,
    n_layer: int,
    hardware_fingerprint: str,
    server: str = "llama-server",
) -> dict[str, Any]:
    """What one served deployment is, in the words and fields of a bench record."""
    placement = Placement(options.n_gpu_layers or 0, options.n_cpu_moe or 0)
    return {
        "server": server,
        "model_id": model_id,
        "quant": quant.upper(),
        "source": source,
        "model_path": str(options.model_path),
        "n_layer": n_layer,
        "n_gpu_layers": options.n_gpu_layers or 0,
        "n_cpu_moe": options.n_cpu_moe or 0,
        "placement_words": placement.words(n_layer) if n_layer else "",
        "parallel": options.parallel,
        "ctx_size": options.ctx_size,
        "flash_attn": options.flash_attn,
        "repack": options.repack,
        "hardware_fingerprint": hardware_fingerprint,
        "url": f"http://{options.host}:{options.port}",
    }


def register_deployment(port: int, deployment: Mapping[str, Any]) -> Path:
    path = _deployment_file(port)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(deployment), indent=1), encoding="utf-8")
    return path


def unregister_deployment(port: int) -> None:
    with contextlib.suppress(OSError):
        _deployment_file(port).unlink()


def deployment_for(url: str) -> dict[str, Any] | None:
    """What `fitbench serve` started on this URL's port, when the URL is this machine."""
    parts = urlsplit(url if "//" in url else f"http://{url}")
    if parts.hostname not in LOCAL_HOSTS or parts.port is None:
        return None
    try:
        data = json.loads(_deployment_file(parts.port).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def level_context(deployment: Mapping[str, Any] | None) -> dict[str, Any]:
    """The keys every stored level carries besides the load run's own description."""
    dep = dict(deployment) if deployment else None
    return {
        "kind": "load_level",
        "schema": SCHEMA,
        "basis": basis_of(dep),
        "deployment": dep,
        "hardware_fingerprint": (dep or {}).get("hardware_fingerprint", ""),
    }


def append_lines(path: Path, lines: Iterable[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        for line in lines:
            fh.write(json.dumps(dict(line), default=str) + "\n")


def read_levels(path: Path | None = None) -> list[dict[str, Any]]:
    """Every stored level line that has a level (a torn last line is skipped, not fatal)."""
    path = path or load_results_path()
    out: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return out
    for raw in text.splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict) and isinstance(line.get("level"), dict):
            out.append(line)
    return out


def levels_for_machine(fingerprint: str, path: Path | None = None) -> list[dict[str, Any]]:
    """Stored levels of deployments FitBench started on this machine (known model and file)."""
    return [
        line
        for line in read_levels(path)
        if (line.get("deployment") or {}).get("model_id")
        and (not fingerprint or line.get("hardware_fingerprint") in ("", fingerprint))
    ]
