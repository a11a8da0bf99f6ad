"""Which file a benchmark loads for `-m ID|PATH`, and what the records say about it.

A catalog id resolves to the real file when it is downloaded (in the Hugging Face cache, or
joined from split parts), else to a twin (`twin_for`); a path is measured as it is, its twin
marker deciding whether records call it real, twin or scaled-twin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fitbench.core.gguf.reader import GGUFError, regular_file_size
from fitbench.core.model import catalog as catalog_mod
from fitbench.core.model.catalog import Catalog, CatalogError
from fitbench.core.twin.resolve import local_file
from fitbench.core.twin.writer import (
    TwinError,
    manifest_from_gguf,
    read_twin_marker,
    twin_for,
    twin_kind,
)


class ModelSpecError(ValueError):
    """`-m` names neither a catalog model nor a GGUF file; the message says what was tried."""


@dataclass(frozen=True)
class ResolvedModel:
    path: Path
    model_id: str
    quant: str
    source: str  # real | twin | scaled-twin
    n_layer_model: int
    n_layer_file: int
    n_expert: int = 0

    def config_fields(self) -> dict[str, Any]:
        """The BenchConfig fields that describe the file."""
        return {
            "model_path": str(self.path),
            "model_id": self.model_id,
            "quant": self.quant,
            "source": self.source,
            "n_layer_model": self.n_layer_model,
            "n_layer_file": self.n_layer_file,
        }


def _file_layers(path: Path) -> tuple[int, int, int]:
    """(n_layer in the file, n_layer of the full model, experts) from the GGUF header."""
    manifest = manifest_from_gguf(path)
    marker = read_twin_marker(path)
    n_model = marker.n_layer_model if marker and marker.n_layer_model else manifest.n_layer
    return manifest.n_layer, n_model, manifest.n_expert


_QUANT_IN_NAME = re.compile(r"(?<![A-Za-z0-9])(I?Q\d_[A-Z0-9_]*[A-Z0-9]|Q\d_\d|BF16|F16|F32)", re.I)


def quant_from_name(name: str) -> str:
    """Q4_K_M from "llama-2-70b.Q4_K_M.gguf"; "" when the name does not say."""
    m = _QUANT_IN_NAME.search(name)
    return m.group(1).upper() if m else ""


def resolve_path(path: Path, *, model_id: str = "", quant: str = "") -> ResolvedModel:
    if not path.exists():
        raise ModelSpecError(f"model file not found: {path}")
    try:
        regular_file_size(path)  # a FIFO or a device is refused before anything opens it
    except GGUFError as exc:
        raise ModelSpecError(str(exc)) from None
    try:
        source = twin_kind(path)
        n_file, n_model, n_expert = _file_layers(path)
    except (TwinError, ValueError, OSError) as exc:
        raise ModelSpecError(f"{path} is not a GGUF file llama.cpp can load: {exc}") from None
    stem = path.name.removesuffix(".gguf").removesuffix(".fitbench-twin")
    quant = quant or quant_from_name(path.name)
    catalog_id, catalog_quant = _twin_of_catalog_model(path)
    model_id = model_id or catalog_id or stem
    return ResolvedModel(path, model_id, quant or catalog_quant, source, n_model, n_file, n_expert)


def _twin_of_catalog_model(path: Path) -> tuple[str, str]:
    """A twin built from a catalog manifest ("manifest:<id>/<quant>") measures that catalog
    model: its records carry the catalog id so advice and reports group them with the model."""
    marker = read_twin_marker(path)
    if marker is None or not marker.source.startswith("manifest:"):
        return "", ""
    model_id, _, quant = marker.source.removeprefix("manifest:").partition("/")
    try:
        return (model_id, quant) if model_id in catalog_mod.load().ids else ("", "")
    except CatalogError:
        return "", ""


def resolve(
    spec: str,
    quant: str | None = None,
    *,
    layers: int | None = None,
    catalog: Catalog | None = None,
    prefer_real: bool = True,
) -> ResolvedModel:
    """`-m` for a benchmark: a catalog id (real file if downloaded, else a twin) or a path.

    layers: measure a scaled twin with this many blocks instead of the full model.
    """
    cat = catalog if catalog is not None else catalog_mod.load()
    if spec in cat.ids:
        model = cat.get(spec)
        q = model.quant(quant or model.default_quant).quant
        if prefer_real and layers is None:
            real = local_file(model, q)
            if real is not None:
                return resolve_path(real, model_id=model.id, quant=q)
        path = twin_for(model.id, q, layers)
        return resolve_path(path, model_id=model.id, quant=q)
    path = Path(spec).expanduser()
    if path.exists() or spec.endswith(".gguf") or "/" in spec:
        return resolve_path(path, quant=quant or "")
    known = ", ".join(cat.ids)
    raise ModelSpecError(f"-m {spec!r} is neither a catalog model ({known}) nor a GGUF file")


__all__ = ["CatalogError", "ModelSpecError", "ResolvedModel", "resolve"]
