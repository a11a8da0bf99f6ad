"""The model catalog: models.toml -> typed records.

The shipped catalog lives in the repository root (and inside the wheel); a user catalog in the
config dir extends it, an entry with the same id replacing the shipped one.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fitbench.core import paths


class CatalogError(ValueError):
    """models.toml cannot be used; the message names the file and what to fix."""


@dataclass(frozen=True)
class Arch:
    architecture: str
    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    n_vocab: int
    n_expert: int = 0
    n_expert_used: int = 0
    rope_freq_base: float = 10000.0
    n_ctx_train: int = 4096

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def is_moe(self) -> bool:
        return self.n_expert > 0


@dataclass(frozen=True)
class QuantFile:
    quant: str
    file: str
    size: int
    parts: tuple[str, ...] = ()
    sha256: str = ""


@dataclass(frozen=True)
class Model:
    id: str
    name: str
    kind: str
    repo: str
    arch: Arch
    quants: tuple[QuantFile, ...]
    default_quant: str
    license: str = ""
    params_total: int = 0
    params_active: int = 0
    mmlu: float | None = None
    mt_bench: float | None = None
    notes: str = ""
    revision: str = "main"
    extra: dict[str, Any] = field(default_factory=dict)

    def quant(self, name: str) -> QuantFile:
        for q in self.quants:
            if q.quant.lower() == name.lower():
                return q
        known = ", ".join(q.quant for q in self.quants)
        raise CatalogError(f"model {self.id!r} has no quant {name!r} (known: {known})")


@dataclass(frozen=True)
class Catalog:
    models: tuple[Model, ...]

    def get(self, model_id: str) -> Model:
        for m in self.models:
            if m.id == model_id:
                return m
        known = ", ".join(m.id for m in self.models)
        raise CatalogError(f"no model {model_id!r} in the catalog (known: {known})")

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.models)


def _model_from(raw: dict[str, Any], where: str) -> Model:
    try:
        arch = Arch(**raw["arch"])
        quants = tuple(
            QuantFile(
                quant=q["quant"],
                file=q["file"],
                size=int(q["size"]),
                parts=tuple(q.get("parts", ())),
                sha256=q.get("sha256", ""),
            )
            for q in raw["quants"]
        )
        fields = {k: v for k, v in raw.items() if k not in ("arch", "quants")}
        return Model(arch=arch, quants=quants, **fields)
    except (KeyError, TypeError) as exc:
        raise CatalogError(f"{where}: model entry is not valid: {exc}") from None


def load_file(path: Path) -> list[Model]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: not valid TOML: {exc}") from None
    return [_model_from(m, f"{path}") for m in data.get("models", [])]


def load(user_catalog: Path | None = None) -> Catalog:
    models: dict[str, Model] = {m.id: m for m in load_file(paths.models_toml())}
    user = user_catalog if user_catalog is not None else paths.config_dir() / "models.toml"
    if user.is_file():
        for m in load_file(user):
            models[m.id] = m
    return Catalog(tuple(models.values()))
