"""GGUF header bytes for twins: a writer that keeps every value's exact type.

llama.cpp checks each metadata value's GGUF type (a uint32 key written as int64 fails to load), so
twins never round-trip a header through plain Python values: they copy the real bytes (read with
`reader.read_header_bytes`), or re-serialize keys whose types are recorded next to them (`KV`).
Parsing is the reader's alone; this module only writes.
"""

from __future__ import annotations

import struct
from typing import Any

from gguf import GGUF_DEFAULT_ALIGNMENT, GGUFValueType

from fitbench.core.gguf.manifest import ModelManifest, TensorInfo
from fitbench.core.gguf.reader import GGUF_MAGIC, KV, SCALAR_FORMATS, GGUFError, ParsedHeader

V = GGUFValueType


def align(n: int, alignment: int) -> int:
    return n + (-n % alignment)


def _pack_string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _pack_value(vtype: GGUFValueType, value: Any) -> bytes:
    if vtype == V.STRING:
        return _pack_string(str(value))
    return struct.pack("<" + SCALAR_FORMATS[vtype], value)


def pack_kv(kv: KV) -> bytes:
    out = [_pack_string(kv.key), struct.pack("<I", int(kv.vtype))]
    if kv.vtype == V.ARRAY:
        if kv.item_type is None or kv.item_type == V.ARRAY:
            raise GGUFError(
                f"metadata key {kv.key!r}: nested or untyped arrays cannot be re-written; "
                "make the twin from the local file so its header bytes are copied"
            )
        items = list(kv.value)
        out.append(struct.pack("<IQ", int(kv.item_type), len(items)))
        if kv.item_type in SCALAR_FORMATS and kv.item_type != V.BOOL:
            out.append(struct.pack(f"<{len(items)}{SCALAR_FORMATS[kv.item_type]}", *items))
        else:
            out.extend(_pack_value(kv.item_type, item) for item in items)
    else:
        out.append(_pack_value(kv.vtype, kv.value))
    return b"".join(out)


def pack_tensor_info(t: TensorInfo) -> bytes:
    return b"".join(
        [
            _pack_string(t.name),
            struct.pack("<I", len(t.shape)),
            struct.pack(f"<{len(t.shape)}Q", *t.shape),
            struct.pack("<IQ", t.ggml_type, t.offset),
        ]
    )


def serialize_header(
    kvs: list[KV], tensors: tuple[TensorInfo, ...], alignment: int = GGUF_DEFAULT_ALIGNMENT
) -> bytes:
    """A complete GGUF v3 header, padded so tensor data starts right after it."""
    parts = [GGUF_MAGIC, struct.pack("<IQQ", 3, len(tensors), len(kvs))]
    parts.extend(pack_kv(kv) for kv in kvs)
    parts.extend(pack_tensor_info(t) for t in tensors)
    raw = b"".join(parts)
    return raw + b"\0" * (-len(raw) % alignment)


def splice_kvs(header: bytes, parsed: ParsedHeader, extra: list[KV]) -> bytes:
    """The real header with `extra` keys appended to its metadata; tensor infos byte-identical.

    Tensor offsets count from the data section, so inserting keys keeps them valid.
    """
    n_kv = len(parsed.kvs) + len(extra)
    head = bytearray(header[: parsed.kv_end])
    struct.pack_into("<Q", head, 16, n_kv)
    raw = (
        bytes(head)
        + b"".join(pack_kv(kv) for kv in extra)
        + header[parsed.kv_end : parsed.infos_end]
    )
    return raw + b"\0" * (-len(raw) % parsed.alignment)


def infer_kv(key: str, value: Any) -> KV:
    """A typed KV for a plain Python value (only for headers whose types were not recorded)."""

    def scalar_type(v: Any) -> GGUFValueType:
        if isinstance(v, bool):
            return V.BOOL
        if isinstance(v, int):
            return V.UINT32 if 0 <= v < 2**32 else V.INT64
        if isinstance(v, float):
            return V.FLOAT32
        return V.STRING

    if isinstance(value, (list, tuple)):
        item = scalar_type(value[0]) if value else V.INT32
        if item == V.UINT32:
            item = V.INT32  # GGUF converters write integer arrays as int32
        return KV(key, V.ARRAY, list(value), item)
    return KV(key, scalar_type(value), value)


def manifest_kvs(manifest: ModelManifest) -> list[KV]:
    """Typed KVs of a manifest: recorded types (extra['kv_types']) where present, else inferred."""
    types: dict[str, tuple[int, int | None]] = manifest.extra.get("kv_types", {})
    out = []
    for key, value in manifest.metadata.items():
        if key in types:
            vtype, item = types[key]
            out.append(KV(key, V(vtype), value, V(item) if item is not None else None))
        else:
            out.append(infer_kv(key, value))
    return out


__all__ = [
    "align",
    "infer_kv",
    "manifest_kvs",
    "pack_kv",
    "pack_tensor_info",
    "serialize_header",
    "splice_kvs",
]
