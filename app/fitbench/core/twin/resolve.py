"""Which tensor manifest describes a model: the one answer for the planner, advice, GUI and bench.

For a catalog quant, in this order: the downloaded file's header, else (when the caller allows
the network) the Hub file's header read with HTTP range requests, else the built-in manifest
(catalog architecture + llama.cpp's quantization rules). A path is its own header; an ad-hoc Hub
file is its header on the Hub. The result says where the manifest came from; each caller puts
that into its own words.

Lives in the twin stage: the first that sees downloads, GGUF headers and built-in manifests.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from fitbench.core import gguf
from fitbench.core.download import hub as download
from fitbench.core.gguf.manifest import ModelManifest
from fitbench.core.model.catalog import Model
from fitbench.core.twin.writer import manifest_for


class ManifestSource(StrEnum):
    FILE = "file"  # a local file's header (a downloaded quant or a path)
    REMOTE = "remote"  # the Hub file's header, read over HTTP ranges
    BUILTIN = "builtin"  # catalog architecture + llama.cpp quant rules, offline


@dataclass(frozen=True)
class ResolvedManifest:
    manifest: ModelManifest
    source: ManifestSource
    path: Path | None = None  # the local file the header was read from


log = logging.getLogger(__name__)


def local_file(model: Model, quant: str) -> Path | None:
    """The downloaded file of a catalog quant; a missing or broken download is "not local"."""
    try:
        return download.local_path(model, quant)
    except Exception:  # a broken cache entry must never fail planning or advice
        log.debug("no local file for %s %s", model.id, quant, exc_info=True)
        return None


def of_file(path: Path | str) -> ResolvedManifest:
    """A local GGUF file (shards and split parts included); GGUFError when it is not one."""
    local = Path(path).expanduser()
    return ResolvedManifest(gguf.read_header(local), ManifestSource.FILE, local)


def of_hub_file(repo_id: str, filename: str, revision: str = "main") -> ResolvedManifest:
    """A file on the Hub: only its header is read (cached on disk)."""
    return ResolvedManifest(
        gguf.read_remote_header(repo_id, filename, revision), ManifestSource.REMOTE
    )


def builtin(model: Model, quant: str) -> ResolvedManifest:
    return ResolvedManifest(manifest_for(model, quant), ManifestSource.BUILTIN)


def of_quant(
    model: Model, quant: str, *, local: bool = True, remote: bool = False
) -> ResolvedManifest:
    """The manifest of a catalog quant: downloaded file > Hub header (when `remote`) > built-in.

    A downloaded file whose header cannot be read raises (GGUFError, OSError): the caller
    decides whether that is an error or a reason to call again with local=False. A Hub header
    that cannot be had falls through to the built-in manifest.
    """
    path = local_file(model, quant) if local else None
    if path is not None:
        return of_file(path)
    if remote:
        qf = model.quant(quant)
        try:
            manifest = gguf.read_remote_header(
                model.repo,
                qf.file if not qf.parts else qf.parts[0],
                model.revision,
                parts=qf.parts or None,
            )
            return ResolvedManifest(manifest, ManifestSource.REMOTE)
        except gguf.GGUFError as exc:
            log.info("remote header unavailable, using the built-in manifest: %s", exc)
    return builtin(model, quant)


__all__ = [
    "ManifestSource",
    "ResolvedManifest",
    "builtin",
    "local_file",
    "of_file",
    "of_hub_file",
    "of_quant",
]
