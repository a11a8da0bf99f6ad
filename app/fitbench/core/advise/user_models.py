"""Models the user measured that the catalog does not list: candidates of the advice too.

A record of an added file (`fitbench bench --model path/to/file.gguf`) names the file it loaded
(model_filename). When that file is still on this machine its header describes the model: the
architecture for the speed model, the tensors for the memory planner. A catalog-shaped Model is
made of it, with one quant (the file's) and no published quality scores.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fitbench.core import gguf
from fitbench.core.gguf.manifest import ModelManifest
from fitbench.core.model.catalog import Arch, Catalog, Model, QuantFile
from fitbench.core.predict.layer_costs import LayerCosts, from_manifest
from fitbench.core.predict.model import CostsFor
from fitbench.core.twin import resolve

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UserModel:
    model: Model
    quant: str
    path: Path
    manifest: ModelManifest
    costs: LayerCosts


def _arch(m: ModelManifest) -> Arch:
    def value(key: str, default: int = 0) -> int:
        v = m.arch_value(key, default)
        return int(v[0] if isinstance(v, list) else v or default)

    n_embd = value("embedding_length")
    n_head = value("attention.head_count", 1) or 1
    vocab = m.metadata.get("tokenizer.ggml.tokens")
    n_vocab = value("vocab_size") or (len(vocab) if isinstance(vocab, list) else 0)
    return Arch(
        architecture=m.architecture,
        n_layer=m.n_layer,
        n_embd=n_embd,
        n_ff=value("feed_forward_length"),
        n_head=n_head,
        n_head_kv=value("attention.head_count_kv", n_head) or n_head,
        n_vocab=n_vocab,
        n_expert=m.n_expert,
        n_expert_used=m.n_expert_used,
        n_ctx_train=value("context_length", 4096),
    )


def user_models(records: Sequence[Mapping[str, Any]], catalog: Catalog) -> list[UserModel]:
    """One per (model_id, quant) of finished real-file records outside the catalog whose file is
    here and readable; scaled twins and twins describe catalog models and are skipped."""
    known = set(catalog.ids)
    seen: dict[tuple[str, str], UserModel] = {}
    for r in records:
        model_id, quant = str(r.get("model_id") or ""), str(r.get("quant") or "")
        filename = str(r.get("model_filename") or "")
        if (
            not model_id
            or model_id in known
            or r.get("source", "real") != "real"
            or not filename
            or (model_id, quant.upper()) in seen
        ):
            continue
        path = Path(filename)
        if not path.is_file():
            continue
        try:
            manifest = resolve.of_file(path).manifest
            costs = from_manifest(manifest, f"{model_id}/{quant}")
        except (gguf.GGUFError, OSError, ValueError) as exc:
            log.info("cannot read %s (%s): not a candidate", path, exc)
            continue
        arch = _arch(manifest)
        name = str(manifest.metadata.get("general.name") or model_id)
        q = QuantFile(quant=quant or "unknown", file=path.name, size=path.stat().st_size)
        model = Model(
            id=model_id,
            name=f"{name} (your file)",
            kind="moe" if arch.is_moe else "dense",
            repo="",
            arch=arch,
            quants=(q,),
            default_quant=q.quant,
            notes=f"added by the user: {path}",
        )
        seen[(model_id, quant.upper())] = UserModel(model, q.quant, path, manifest, costs)
    return list(seen.values())


def with_user_costs(costs_for: CostsFor, users: Sequence[UserModel]) -> CostsFor:
    """The catalog's costs, and each user model's from its own header."""
    by_key = {(u.model.id, u.quant.upper()): u.costs for u in users}

    def costs(record: Mapping[str, Any]) -> LayerCosts | None:
        found = costs_for(record)
        if found is None:
            key = (str(record.get("model_id") or ""), str(record.get("quant") or "").upper())
            found = by_key.get(key)
        return found

    return costs


__all__ = ["UserModel", "user_models", "with_user_costs"]
