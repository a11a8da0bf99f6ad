"""The model catalog: models.toml -> typed, validated records.

The shipped catalog lives in the repository root (and inside the wheel); a user catalog in the
config dir extends it, an entry with the same id replacing the shipped one.

Validation is strict because a catalog entry ends up as a download path and a memory plan: an
unknown key (a typo silently ignored would be worse), a wrong type, a file name that could
escape the cache (`../x`, absolute, backslashes), a duplicate id or a default quant that is not
listed are errors naming the file and the line. tomllib reports no positions for keys, so the
line is found by scanning the raw text within the offending entry.
"""

from __future__ import annotations

import functools
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from fitbench.core import limits, paths

SCHEMA_VERSION = 1
_SPLIT_PART = re.compile(r"\.gguf-split-[a-z]$")
_SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


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
    """One quantization of a model as published on the Hub.

    `file` is what llama.cpp loads: a single file, the first shard of `-0000N-of-0000M` shards, or
    the name of the file joined from `*.gguf-split-a/-b` parts. `size` is in bytes; `size_exact`
    says whether those are the file's exact bytes (Hub API) or a rounded README figure. 0 means
    not known before the Hub is asked.
    """

    quant: str
    file: str
    size: int
    parts: tuple[str, ...] = ()
    sha256: str = ""
    size_exact: bool = True

    @property
    def is_joined(self) -> bool:
        """TheBloke-style parts, concatenated into `file` after download."""
        return bool(self.parts) and all(_SPLIT_PART.search(p) for p in self.parts)

    @property
    def is_sharded(self) -> bool:
        """llama.cpp gguf-split shards: kept side by side, llama.cpp opens the first."""
        return bool(self.parts) and all(_SHARD.search(p) for p in self.parts)

    @property
    def remote_files(self) -> tuple[str, ...]:
        """The files to fetch from the repository."""
        return self.parts if self.parts else (self.file,)


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
    gated: bool = False
    params_total: int = 0
    params_active: int = 0
    mmlu: float | None = None
    mt_bench: float | None = None
    quality_source: str = ""
    notes: str = ""
    revision: str = "main"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_moe(self) -> bool:
        """Experts in its shapes, or declared a mixture of experts by the catalog."""
        return self.arch.is_moe or self.kind == "moe"

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


# -- schema ------------------------------------------------------------------------------------
# key -> (accepted python types, required). bool is checked before int (bool is an int in Python).

_MODEL_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "id": ((str,), True),
    "name": ((str,), True),
    "kind": ((str,), True),
    "repo": ((str,), True),
    "default_quant": ((str,), True),
    "arch": ((dict,), True),
    "quants": ((list,), True),
    "license": ((str,), False),
    "gated": ((bool,), False),
    "params_total": ((int,), False),
    "params_active": ((int,), False),
    "mmlu": ((float, int), False),
    "mt_bench": ((float, int), False),
    "quality_source": ((str,), False),
    "notes": ((str,), False),
    "revision": ((str,), False),
    "extra": ((dict,), False),
}
_ARCH_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "architecture": ((str,), True),
    "n_layer": ((int,), True),
    "n_embd": ((int,), True),
    "n_ff": ((int,), True),
    "n_head": ((int,), True),
    "n_head_kv": ((int,), True),
    "n_vocab": ((int,), True),
    "n_expert": ((int,), False),
    "n_expert_used": ((int,), False),
    "rope_freq_base": ((float, int), False),
    "n_ctx_train": ((int,), False),
}
_QUANT_KEYS: dict[str, tuple[tuple[type, ...], bool]] = {
    "quant": ((str,), True),
    "file": ((str,), True),
    "size": ((int,), False),
    "size_gb": ((float, int), False),
    "parts": ((list,), False),
    "sha256": ((str,), False),
}
# what a real model can have (limits.py): an absurd n_layer or n_vocab would otherwise become a
# plan or a built-in manifest that never finishes
_ARCH_BOUNDS: dict[str, tuple[float, float]] = {
    "n_layer": (1, limits.MAX_LAYERS),
    "n_embd": (1, limits.MAX_EMBD),
    "n_ff": (1, limits.MAX_FF),
    "n_head": (1, limits.MAX_HEADS),
    "n_head_kv": (1, limits.MAX_HEADS),
    "n_vocab": (1, limits.MAX_VOCAB),
    "n_expert": (0, limits.MAX_EXPERTS),
    "n_expert_used": (0, limits.MAX_EXPERTS),
    "rope_freq_base": (1e-3, 1e12),
    "n_ctx_train": (1, limits.MAX_CONTEXT),
}
_MODEL_BOUNDS: dict[str, tuple[int, int]] = {
    "params_total": (0, limits.MAX_PARAMS),
    "params_active": (0, limits.MAX_PARAMS),
}
_QUANT_BOUNDS: dict[str, tuple[float, float]] = {
    "size": (0, limits.MAX_MODEL_BYTES),
    "size_gb": (0, limits.MAX_MODEL_BYTES / 1e9),
}
_TOP_KEYS = {"schema", "models"}
_KINDS = {"moe", "dense"}


class _Locator:
    """Finds the line of a key inside the N-th [[models]] entry of the raw TOML text."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.model_starts = [
            i for i, line in enumerate(self.lines) if re.match(r"^\s*\[\[\s*models\s*\]\]", line)
        ]

    def _block(self, model: int | None) -> tuple[int, int]:
        if model is None or model >= len(self.model_starts):
            return 0, len(self.lines)
        start = self.model_starts[model]
        nxt = model + 1
        end = self.model_starts[nxt] if nxt < len(self.model_starts) else len(self.lines)
        return start, end

    def line(
        self,
        model: int | None,
        key: str | None = None,
        section: str | None = None,
        index: int | None = None,
    ) -> int:
        """1-based line of `key` in model `model` (in [models.<section>] number `index`)."""
        start, end = self._block(model)
        if section is not None:
            header = re.compile(rf"^\s*\[{{1,2}}\s*models\.{section}\s*\]{{1,2}}")
            headers = [i for i in range(start, end) if header.match(self.lines[i])]
            if headers:
                pick = headers[min(index or 0, len(headers) - 1)]
                following = [
                    i for i in range(pick + 1, end) if self.lines[i].lstrip().startswith("[")
                ]
                start, end = pick, following[0] if following else end
            else:  # inline form: `quants = [{...}]` / `arch = {...}`
                key_line = self._find(start, end, section)
                if key_line is not None and key is None:
                    return key_line + 1
        if key is not None:
            found = self._find(start, end, key)
            if found is not None:
                return found + 1
        return start + 1

    def _find(self, start: int, end: int, key: str) -> int | None:
        pattern = re.compile(rf'(^|[{{,\s]){re.escape(key)}\s*=|"{re.escape(key)}"\s*=')
        for i in range(start, end):
            if pattern.search(self.lines[i].split("#", 1)[0]):
                return i
        return None

    def error(self, line: int, message: str) -> CatalogError:
        return CatalogError(f"{self.path}:{line}: {message}")


def _type_name(types: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true/false"}
    names |= {dict: "a table", list: "a list"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _span(low: float, high: float) -> str:
    return f"{low:g}..{high:g}" if isinstance(high, float) else f"{low}..{high}"


def _check_keys(
    raw: dict[str, Any],
    schema: dict[str, tuple[tuple[type, ...], bool]],
    where: str,
    loc: _Locator,
    model: int,
    section: str | None = None,
    index: int | None = None,
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> None:
    for key, value in raw.items():
        if key not in schema:
            line = loc.line(model, key, section, index)
            known = ", ".join(sorted(schema))
            raise loc.error(line, f"{where}: unknown key {key!r} (known keys: {known})")
        types, _ = schema[key]
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            line = loc.line(model, key, section, index)
            raise loc.error(line, f"{where}: {key!r} must be {_type_name(types)}, not {value!r}")
        if bounds and key in bounds:
            low, high = bounds[key]
            if not (math.isfinite(value) and low <= value <= high):
                line = loc.line(model, key, section, index)
                raise loc.error(
                    line,
                    f"{where}: {key!r} is {value}, outside what a real model can have "
                    f"({_span(low, high)})",
                )
    for key, (_, required) in schema.items():
        if required and key not in raw:
            line = loc.line(model, None, section, index)
            raise loc.error(line, f"{where}: required key {key!r} is missing")


def check_remote_name(name: str) -> str | None:
    """Why `name` is not a safe file name inside a repository (None if it is)."""
    if not name or name.strip() != name:
        return "is empty or has surrounding spaces"
    if "\\" in name:
        return "contains a backslash"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "is an absolute path"
    if any(part in ("", ".", "..") for part in PurePosixPath(name).parts) or "//" in name:
        return "contains '..', '.' or an empty path segment"
    if any(ord(c) < 32 for c in name):
        return "contains a control character"
    return None


def _quant_from(raw: dict[str, Any], where: str, loc: _Locator, model: int, j: int) -> QuantFile:
    _check_keys(raw, _QUANT_KEYS, where, loc, model, "quants", j, _QUANT_BOUNDS)
    names = [raw["file"], *raw.get("parts", [])]
    for name in names:
        if not isinstance(name, str):
            line = loc.line(model, "parts", "quants", j)
            raise loc.error(line, f"{where}: every entry of 'parts' must be a string, not {name!r}")
        problem = check_remote_name(name)
        if problem:
            line = loc.line(model, "file" if name == raw["file"] else "parts", "quants", j)
            raise loc.error(
                line, f"{where}: file name {name!r} {problem}; use the name as in the repository"
            )
    parts = tuple(raw.get("parts", ()))
    if parts and not (
        all(_SPLIT_PART.search(p) for p in parts) or all(_SHARD.search(p) for p in parts)
    ):
        line = loc.line(model, "parts", "quants", j)
        raise loc.error(
            line,
            f"{where}: 'parts' must all be '*.gguf-split-<letter>' files or all "
            "'-0000N-of-0000M.gguf' shards",
        )
    if "size" in raw and "size_gb" in raw:
        line = loc.line(model, "size_gb", "quants", j)
        raise loc.error(line, f"{where}: give either 'size' (exact bytes) or 'size_gb', not both")
    size_value = raw.get("size", 0)
    if size_value < 0 or raw.get("size_gb", 0) < 0:
        line = loc.line(model, "size", "quants", j)
        raise loc.error(line, f"{where}: sizes cannot be negative")
    sha = raw.get("sha256", "")
    if sha and not re.fullmatch(r"[0-9a-f]{64}", sha):
        line = loc.line(model, "sha256", "quants", j)
        raise loc.error(line, f"{where}: 'sha256' must be 64 lowercase hex digits")
    if "size_gb" in raw:
        size, exact = round(float(raw["size_gb"]) * 1e9), False
    else:
        size, exact = int(size_value), "size" in raw
    return QuantFile(
        quant=raw["quant"], file=raw["file"], size=size, parts=parts, sha256=sha, size_exact=exact
    )


def _model_from(raw: Any, loc: _Locator, i: int) -> Model:
    if not isinstance(raw, dict):
        raise loc.error(loc.line(i), f"[[models]] entry {i + 1} must be a table")
    where = f"model {raw.get('id', f'#{i + 1}')!r}"
    _check_keys(raw, _MODEL_KEYS, where, loc, i, bounds=_MODEL_BOUNDS)
    if not _REPO_ID.match(raw["repo"]) or ".." in raw["repo"]:
        raise loc.error(
            loc.line(i, "repo"), f"{where}: 'repo' must look like 'owner/name', not {raw['repo']!r}"
        )
    if raw["kind"] not in _KINDS:
        kinds = sorted(_KINDS)
        raise loc.error(
            loc.line(i, "kind"), f"{where}: 'kind' must be one of {kinds}, not {raw['kind']!r}"
        )
    arch_where = f"{where} [models.arch]"
    _check_keys(raw["arch"], _ARCH_KEYS, arch_where, loc, i, "arch", None, _ARCH_BOUNDS)
    arch_raw = dict(raw["arch"])
    if arch_raw.get("n_expert_used", 0) > arch_raw.get("n_expert", 0):
        raise loc.error(
            loc.line(i, "n_expert_used", "arch"),
            f"{where} [models.arch]: n_expert_used {arch_raw['n_expert_used']} is more than "
            f"n_expert {arch_raw.get('n_expert', 0)}",
        )
    if "rope_freq_base" in arch_raw:
        arch_raw["rope_freq_base"] = float(arch_raw["rope_freq_base"])
    arch = Arch(**arch_raw)
    quants: list[QuantFile] = []
    for j, q in enumerate(raw["quants"]):
        q_where = f"{where} quant #{j + 1}"
        if not isinstance(q, dict):
            raise loc.error(loc.line(i, None, "quants", j), f"{q_where} must be a table")
        if isinstance(q.get("quant"), str):
            q_where = f"{where} quant {q['quant']!r}"
        quant = _quant_from(q, q_where, loc, i, j)
        if any(existing.quant.lower() == quant.quant.lower() for existing in quants):
            raise loc.error(loc.line(i, "quant", "quants", j), f"{q_where} is listed twice")
        quants.append(quant)
    if not quants:
        raise loc.error(loc.line(i, "quants"), f"{where}: no quants listed")
    if not any(q.quant.lower() == raw["default_quant"].lower() for q in quants):
        known = ", ".join(q.quant for q in quants)
        raise loc.error(
            loc.line(i, "default_quant"),
            f"{where}: default_quant {raw['default_quant']!r} is not one of its quants ({known})",
        )
    fields = {k: v for k, v in raw.items() if k not in ("arch", "quants")}
    for key in ("mmlu", "mt_bench"):
        if key in fields:
            fields[key] = float(fields[key])
    return Model(arch=arch, quants=tuple(quants), **fields)


def load_file(path: Path) -> list[Model]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"{path}: cannot be read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path}: not valid TOML: {exc}") from None
    loc = _Locator(path, text)
    for key in data:
        if key not in _TOP_KEYS:
            raise loc.error(
                loc.line(None, key), f"unknown top-level key {key!r} (known: schema, models)"
            )
    schema = data.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        raise loc.error(
            loc.line(None, "schema"),
            f"schema {schema!r} is not supported (this FitBench reads schema {SCHEMA_VERSION})",
        )
    raw_models = data.get("models", [])
    if not isinstance(raw_models, list):
        raise loc.error(loc.line(None, "models"), "'models' must be a list of [[models]] tables")
    models: list[Model] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_models):
        model = _model_from(raw, loc, i)
        if model.id in seen:
            raise loc.error(
                loc.line(i, "id"),
                f"duplicate model id {model.id!r} (first defined at line {seen[model.id]})",
            )
        seen[model.id] = loc.line(i, "id")
        models.append(model)
    return models


def user_catalog_path() -> Path:
    return paths.config_dir() / "models.toml"


def load_or_none() -> Catalog | None:
    """The catalog where it can be read; None where a broken user catalog (or an unreadable
    file) would otherwise stop output that only loses the catalog's facts by it."""
    try:
        return load()
    except (CatalogError, OSError):
        return None


# load_or_none read once per process: for lines and cells drawn many times (fitbench bench's and
# load's lines, the GUI's twin bands), where a catalog edited meanwhile need not show
load_once_or_none = functools.cache(load_or_none)


def load(user_catalog: Path | None = None) -> Catalog:
    models: dict[str, Model] = {m.id: m for m in load_file(paths.models_toml())}
    user = user_catalog if user_catalog is not None else user_catalog_path()
    if user.is_file():
        for m in load_file(user):
            models[m.id] = m
    return Catalog(tuple(models.values()))
