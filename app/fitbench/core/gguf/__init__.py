"""GGUF headers from anywhere, as one `ModelManifest`: the single import for header needs.

- `read_header(path_or_url)`: a local file, a `-0000N-of-0000M.gguf` shard set (every shard's
  header), TheBloke `*.gguf-split-a/-b` parts (part a holds the header), or an http(s) URL.
- `read_remote_header(repo_id, filename, revision, token)`: a file on the Hub through HTTP range
  requests only for the header, cached on disk under paths.cache_dir()/gguf-headers.
- `parse_header(bytes, where, file_size)`: the bounded parser on a byte prefix; `parse_layout`
  and `read_header_bytes` keep each key's GGUF type and the section offsets (byte-exact twins).
- `check_compatibility(manifest)`: can the installed llama.cpp load it, with reasons.
Every failure is a `GGUFError` (a ValueError) whose message names the file.
"""

from __future__ import annotations

from pathlib import Path

from fitbench.core.gguf.compat import Compatibility, check_compatibility, is_known_architecture
from fitbench.core.gguf.manifest import ModelManifest, TensorInfo
from fitbench.core.gguf.reader import (
    KV,
    MAX_HEADER_BYTES,
    GGUFError,
    HeaderIncomplete,
    ParsedHeader,
    merge_shards,
    parse_growing,
    parse_header,
    parse_layout,
    read_header_bytes,
    read_local_header,
    shard_names,
    split_part_paths,
)
from fitbench.core.gguf.remote import (
    cache_load,
    cache_store,
    manifest_from_dict,
    manifest_to_dict,
    read_remote_header,
    read_url_header,
)


def read_header(path_or_url: str | Path) -> ModelManifest:
    """The manifest of a local GGUF file (or shard set, or split parts), or of an http(s) URL."""
    text = str(path_or_url)
    if text.startswith(("http://", "https://")):
        return read_url_header(text)
    return read_local_header(text)


__all__ = [
    "KV",
    "MAX_HEADER_BYTES",
    "Compatibility",
    "GGUFError",
    "HeaderIncomplete",
    "ModelManifest",
    "ParsedHeader",
    "TensorInfo",
    "cache_load",
    "cache_store",
    "check_compatibility",
    "is_known_architecture",
    "manifest_from_dict",
    "manifest_to_dict",
    "merge_shards",
    "parse_growing",
    "parse_header",
    "parse_layout",
    "read_header",
    "read_header_bytes",
    "read_local_header",
    "read_remote_header",
    "read_url_header",
    "shard_names",
    "split_part_paths",
]
