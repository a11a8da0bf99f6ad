"""GGUF header bytes for twins: a typed parser and a writer that keep every value's exact type.

llama.cpp checks each metadata value's GGUF type (a uint32 key written as int64 fails to load), so
twins never round-trip a header through plain Python values: they copy the real bytes, or
re-serialize keys whose types are recorded next to them.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gguf import GGUF_DEFAULT_ALIGNMENT, GGUFValueType

from fitbench.core.gguf.manifest import ModelManifest, TensorInfo, tensor_nbytes

V = GGUFValueType
GGUF_MAGIC = b"GGUF"
_SCALAR = {
    V.UINT8: "<B",
    V.INT8: "<b",
    V.UINT16: "<H",
    V.INT16: "<h",
    V.UINT32: "<I",
    V.INT32: "<i",
    V.FLOAT32: "<f",
    V.BOOL: "<?",
    V.UINT64: "<Q",
    V.INT64: "<q",
    V.FLOAT64: "<d",
}
# how much of a file to read before the header is known to fit (grown on demand)
_FIRST_READ = 4 << 20


class HeaderError(ValueError):
    """The bytes are not a GGUF header this module can read; the message names the file."""


class TruncatedHeader(HeaderError):
    """More bytes are needed: the header continues past what was given."""


@dataclass(frozen=True)
class KV:
    key: str
    vtype: GGUFValueType
    value: Any  # a scalar, str, or list for arrays
    item_type: GGUFValueType | None = None  # arrays only


@dataclass(frozen=True)
class ParsedHeader:
    version: int
    kvs: tuple[KV, ...]
    tensors: tuple[TensorInfo, ...]
    kv_start: int  # first byte of the key/value section
    kv_end: int  # first byte of the tensor-info section
    infos_end: int  # first byte after the tensor infos (before alignment padding)
    data_offset: int  # where tensor data starts (aligned)
    alignment: int

    def kv_dict(self) -> dict[str, Any]:
        return {kv.key: kv.value for kv in self.kvs}

    def kv_types(self) -> dict[str, tuple[int, int | None]]:
        return {
            kv.key: (int(kv.vtype), int(kv.item_type) if kv.item_type is not None else None)
            for kv in self.kvs
        }


class _Reader:
    def __init__(self, data: bytes | memoryview, where: str) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.where = where

    def take(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise TruncatedHeader(
                f"{self.where}: GGUF header continues past {len(self.data)} bytes"
            )
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.take("<Q")
        if self.pos + n > len(self.data):
            raise TruncatedHeader(
                f"{self.where}: GGUF header continues past {len(self.data)} bytes"
            )
        raw = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: GGUFValueType) -> Any:
        if vtype == V.STRING:
            return self.string()
        if vtype in _SCALAR:
            return self.take(_SCALAR[vtype])
        raise HeaderError(f"{self.where}: unknown GGUF value type {int(vtype)}")


def _vtype(raw: int, where: str) -> GGUFValueType:
    try:
        return GGUFValueType(raw)
    except ValueError:
        raise HeaderError(f"{where}: unknown GGUF value type {raw}") from None


def parse_header(data: bytes | memoryview, where: str = "GGUF data") -> ParsedHeader:
    """Parse magic, metadata and tensor infos; raises TruncatedHeader if `data` stops early."""
    r = _Reader(data, where)
    if bytes(r.data[:4]) != GGUF_MAGIC:
        raise HeaderError(f"{where}: not a GGUF file (no GGUF magic at the start)")
    r.pos = 4
    version = r.take("<I")
    if version not in (2, 3):
        raise HeaderError(f"{where}: GGUF version {version} is not supported (2 or 3 expected)")
    n_tensors = r.take("<Q")
    n_kv = r.take("<Q")
    kv_start = r.pos
    kvs: list[KV] = []
    for _ in range(n_kv):
        key = r.string()
        vtype = _vtype(r.take("<I"), where)
        if vtype == V.ARRAY:
            item_type = _vtype(r.take("<I"), where)
            count = r.take("<Q")
            if item_type in _SCALAR and item_type != V.BOOL:
                fmt = _SCALAR[item_type]
                size = struct.calcsize(fmt) * count
                if r.pos + size > len(r.data):
                    raise TruncatedHeader(
                        f"{where}: GGUF header continues past {len(r.data)} bytes"
                    )
                items = list(struct.unpack_from(f"<{count}{fmt[1]}", r.data, r.pos))
                r.pos += size
            else:
                items = [r.value(item_type) for _ in range(count)]
            kvs.append(KV(key, vtype, items, item_type))
        else:
            kvs.append(KV(key, vtype, r.value(vtype)))
    kv_end = r.pos
    alignment = int(next((kv.value for kv in kvs if kv.key == "general.alignment"), 0))
    alignment = alignment or GGUF_DEFAULT_ALIGNMENT
    tensors: list[TensorInfo] = []
    for _ in range(n_tensors):
        name = r.string()
        n_dims = r.take("<I")
        dims = tuple(r.take("<Q") for _ in range(n_dims))
        ggml_type = r.take("<I")
        offset = r.take("<Q")
        try:
            n_bytes = tensor_nbytes(dims, ggml_type)
        except (ValueError, KeyError) as exc:
            raise HeaderError(f"{where}: tensor {name!r}: {exc}") from None
        tensors.append(TensorInfo(name, dims, ggml_type, offset, n_bytes))
    infos_end = r.pos
    return ParsedHeader(
        version=version,
        kvs=tuple(kvs),
        tensors=tuple(tensors),
        kv_start=kv_start,
        kv_end=kv_end,
        infos_end=infos_end,
        data_offset=align(infos_end, alignment),
        alignment=alignment,
    )


def read_header_bytes(path: Path) -> tuple[bytes, ParsedHeader]:
    """The raw header of a local GGUF file (up to its data offset) and its parse."""
    size = _FIRST_READ
    try:
        with path.open("rb") as f:
            while True:
                f.seek(0)
                data = f.read(size)
                try:
                    parsed = parse_header(data, str(path))
                except TruncatedHeader:
                    if len(data) < size:  # the whole file was read
                        raise HeaderError(f"{path}: file ends inside its GGUF header") from None
                    size *= 4
                    continue
                f.seek(0)
                return f.read(parsed.data_offset), parsed
    except OSError as exc:
        raise HeaderError(f"{path}: cannot read: {exc.strerror or exc}") from None


def align(n: int, alignment: int) -> int:
    return n + (-n % alignment)


def _pack_string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _pack_value(vtype: GGUFValueType, value: Any) -> bytes:
    if vtype == V.STRING:
        return _pack_string(str(value))
    return struct.pack(_SCALAR[vtype], value)


def pack_kv(kv: KV) -> bytes:
    out = [_pack_string(kv.key), struct.pack("<I", int(kv.vtype))]
    if kv.vtype == V.ARRAY:
        if kv.item_type is None or kv.item_type == V.ARRAY:
            raise HeaderError(
                f"metadata key {kv.key!r}: nested or untyped arrays cannot be re-written; "
                "make the twin from the local file so its header bytes are copied"
            )
        items = list(kv.value)
        out.append(struct.pack("<IQ", int(kv.item_type), len(items)))
        if kv.item_type in _SCALAR and kv.item_type != V.BOOL:
            out.append(struct.pack(f"<{len(items)}{_SCALAR[kv.item_type][1]}", *items))
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
