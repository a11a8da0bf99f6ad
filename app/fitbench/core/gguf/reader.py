"""GGUF headers: the one bounded parser for a byte prefix; local files, shards and split parts.

The parser never trusts a count or a length it reads: every one is checked against what the file
can hold (its size, when known) and against absolute caps before anything is allocated, so a
corrupt or hostile header ends in a `GGUFError` naming the file, never in a huge allocation.

`parse_layout` keeps everything a byte-exact re-write needs (`ParsedHeader`: each key with its
GGUF value type, in file order, and where the key/value and tensor-info sections start and end);
`parse_header` turns that into the `ModelManifest` the planners use. The twin writer reads raw
header bytes with `read_header_bytes`. Callers import `fitbench.core.gguf`, which gathers this
module, `remote` (HTTP ranges on the Hub, header cache) and `compat` (what llama.cpp can load).
"""

from __future__ import annotations

import re
import stat
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gguf import GGML_QUANT_SIZES, GGUF_DEFAULT_ALIGNMENT, GGMLQuantizationType, GGUFValueType

from fitbench.core.gguf.manifest import ModelManifest, TensorInfo, tensor_nbytes
from fitbench.core.limits import hparam_problem
from fitbench.core.outfile import file_kind

GGUF_MAGIC = b"GGUF"
# A real header is ~1 MB (32k vocab) to ~15 MB (150k vocab + merges); past this it is not a header.
MAX_HEADER_BYTES = 256 << 20
MAX_TENSORS = 1 << 20
MAX_KV = 1 << 16
MAX_ARRAY_ITEMS = 1 << 24
MAX_ARRAY_DEPTH = 3
MAX_DIMS = 4  # GGML_MAX_DIMS
FIRST_READ = 1 << 20  # first prefix to read; grown (at least doubled) as the header needs

SHARD_RE = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$")
SPLIT_PART_RE = re.compile(r"^(?P<joined>.+\.gguf)-split-(?P<part>[a-z])$")

_V = GGUFValueType
# struct formats (little-endian once prefixed with "<") of the fixed-size GGUF value types
SCALAR_FORMATS: dict[GGUFValueType, str] = {
    _V.UINT8: "B",
    _V.INT8: "b",
    _V.UINT16: "H",
    _V.INT16: "h",
    _V.UINT32: "I",
    _V.INT32: "i",
    _V.FLOAT32: "f",
    _V.BOOL: "?",
    _V.UINT64: "Q",
    _V.INT64: "q",
    _V.FLOAT64: "d",
}


class GGUFError(ValueError):
    """A GGUF header cannot be read or used; the message names the file and the problem."""


class HeaderIncomplete(GGUFError):
    """The bytes given stop inside the header; `needed` bytes (from the start) are required."""

    def __init__(self, where: str, needed: int) -> None:
        super().__init__(f"{where}: the GGUF header continues past the bytes read")
        self.needed = needed


@dataclass(frozen=True)
class KV:
    """One metadata key as stored: llama.cpp checks each value's GGUF type, so it travels along."""

    key: str
    vtype: GGUFValueType
    value: Any  # a scalar, str, or list for arrays
    item_type: GGUFValueType | None = None  # arrays only


@dataclass(frozen=True)
class ParsedHeader:
    """A header as laid out in the file: what a byte-exact copy or splice of it needs."""

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

    def manifest(self, source: str, file_size: int | None) -> ModelManifest:
        # kv_types lets twins re-serialize the exact GGUF types from a manifest alone
        return ModelManifest(
            source=source,
            metadata=self.kv_dict(),
            tensors=self.tensors,
            version=self.version,
            alignment=self.alignment,
            data_offset=self.data_offset,
            file_size=file_size,
            extra={"kv_types": self.kv_types()},
        )


class _Cursor:
    """Reads little-endian values from a prefix, bounded by the real file size when known."""

    def __init__(self, data: bytes | memoryview, where: str, file_size: int | None) -> None:
        self.data = memoryview(data)
        self.where = where
        self.pos = 0
        # past `limit` the file itself has ended: that is truncation, not a short prefix
        self.limit = file_size if file_size is not None else MAX_HEADER_BYTES
        self.file_size = file_size

    def fail(self, message: str) -> GGUFError:
        return GGUFError(f"{self.where}: {message}")

    def need(self, n: int, what: str) -> None:
        end = self.pos + n
        if end > len(self.data):
            if end > self.limit:
                if self.file_size is not None and end > self.file_size:
                    raise self.fail(
                        f"truncated: the header needs {end} bytes for {what} "
                        f"but the file has {self.file_size}"
                    )
                raise self.fail(f"{what} would take the header past {MAX_HEADER_BYTES} bytes")
            raise HeaderIncomplete(self.where, end)

    def unpack(self, fmt: str, what: str) -> Any:
        size = struct.calcsize("<" + fmt)
        self.need(size, what)
        (value,) = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += size
        return value

    def count(self, what: str, cap: int, min_item_bytes: int) -> int:
        n = int(self.unpack("Q", what))
        if n > cap or n * min_item_bytes > self.limit - self.pos:
            raise self.fail(f"absurd {what} {n} (the file cannot hold that many)")
        return n

    def string(self, what: str) -> str:
        n = self.count(f"length of {what}", MAX_HEADER_BYTES, 1)
        self.need(n, what)
        raw = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def value_type(self, what: str, *, peek: bool = False) -> GGUFValueType:
        at = self.pos
        raw = int(self.unpack("I", f"value type of {what}"))
        if peek:
            self.pos = at
        try:
            return GGUFValueType(raw)
        except ValueError:
            raise self.fail(f"unknown GGUF value type {raw} for {what}") from None

    def value(self, vtype: GGUFValueType, what: str, depth: int = 0) -> Any:
        if vtype == _V.STRING:
            return self.string(what)
        if vtype == _V.ARRAY:
            if depth >= MAX_ARRAY_DEPTH:
                raise self.fail(f"{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}")
            item_type = self.value_type(f"items of {what}")
            if item_type in SCALAR_FORMATS:
                fmt = SCALAR_FORMATS[item_type]
                size = struct.calcsize(fmt)
                n = self.count(f"item count of {what}", MAX_ARRAY_ITEMS, size)
                self.need(n * size, what)
                items = list(struct.unpack_from(f"<{n}{fmt}", self.data, self.pos))
                self.pos += n * size
                return items
            n = self.count(f"item count of {what}", MAX_ARRAY_ITEMS, 8)
            return [self.value(item_type, what, depth + 1) for _ in range(n)]
        return self.unpack(SCALAR_FORMATS[vtype], what)


def _check_version(cur: _Cursor) -> int:
    cur.need(4, "the magic")
    magic = bytes(cur.data[:4])
    if magic != GGUF_MAGIC:
        if magic in (b"lmgg", b"fmgg", b"tjgg", b"ggml", b"ggjt"):
            raise cur.fail("an old GGML/GGJT model file, not GGUF: convert it with llama.cpp")
        raise cur.fail(f"not a GGUF file (starts with {magic!r}, expected b'GGUF')")
    cur.pos = 4
    version = int(cur.unpack("I", "the version"))
    if version == 1:
        raise cur.fail(
            "GGUF version 1 (mid-2023) is not supported by current llama.cpp; "
            "download a newer conversion of this model"
        )
    if version not in (2, 3):
        if struct.unpack(">I", struct.pack("<I", version))[0] in (2, 3):
            raise cur.fail("a big-endian GGUF file; only little-endian files are supported")
        raise cur.fail(f"unsupported GGUF version {version} (2 or 3 expected)")
    return version


def _tensor_info(cur: _Cursor, index: int, alignment: int) -> TensorInfo:
    name = cur.string(f"the name of tensor #{index}")
    n_dims = int(cur.unpack("I", f"the rank of tensor {name!r}"))
    if not 1 <= n_dims <= MAX_DIMS:
        raise cur.fail(f"tensor {name!r} has {n_dims} dimensions (1..{MAX_DIMS} allowed)")
    cur.need(8 * n_dims, f"the shape of tensor {name!r}")
    shape = struct.unpack_from(f"<{n_dims}Q", cur.data, cur.pos)
    cur.pos += 8 * n_dims
    n_elements = 1
    for dim in shape:
        n_elements *= dim
    if n_elements <= 0 or n_elements >= 1 << 62:
        raise cur.fail(f"tensor {name!r} has an absurd shape {list(shape)}")
    raw_type = int(cur.unpack("I", f"the type of tensor {name!r}"))
    offset = int(cur.unpack("Q", f"the offset of tensor {name!r}"))
    try:
        ggml_type = GGMLQuantizationType(raw_type)
        if ggml_type not in GGML_QUANT_SIZES:
            raise ValueError(raw_type)
    except ValueError:
        raise cur.fail(
            f"tensor {name!r} has unknown ggml type {raw_type}: this file needs a newer "
            "llama.cpp/gguf package, or uses a type llama.cpp removed"
        ) from None
    try:
        n_bytes = tensor_nbytes(tuple(shape), int(ggml_type))
    except ValueError as exc:
        raise cur.fail(f"tensor {name!r}: {exc}") from None
    if offset % alignment:
        raise cur.fail(f"tensor {name!r} data offset {offset} is not aligned to {alignment}")
    return TensorInfo(name, tuple(int(d) for d in shape), int(ggml_type), offset, n_bytes)


def _check_hparams(cur: _Cursor, kvs: list[KV]) -> None:
    """The counts the planners loop over (blocks, experts, heads, vocabulary) must be what a real
    model can have: one absurd block_count would otherwise become an endless plan."""
    arch = next((kv.value for kv in kvs if kv.key == "general.architecture"), None)
    if not isinstance(arch, str):
        return
    prefix = arch + "."
    for kv in kvs:
        if kv.key.startswith(prefix):
            problem = hparam_problem(kv.key[len(prefix) :], kv.value)
            if problem:
                raise cur.fail(f"{kv.key} {problem}")


def parse_layout(
    data: bytes | memoryview, where: str, file_size: int | None = None
) -> ParsedHeader:
    """Parse magic, metadata and tensor infos from a prefix of a GGUF file, keeping the layout.

    `file_size` is the size of the whole file (None if unknown). A prefix that stops inside the
    header raises `HeaderIncomplete` (with the bytes needed) if the file goes on, else `GGUFError`.
    """
    cur = _Cursor(data, where, file_size)
    version = _check_version(cur)
    n_tensors = cur.count("tensor count", MAX_TENSORS, 24)
    n_kv = cur.count("metadata key count", MAX_KV, 12)
    kv_start = cur.pos
    kvs: list[KV] = []
    seen: set[str] = set()
    for i in range(n_kv):
        key = cur.string(f"metadata key #{i}")
        if key in seen:
            raise cur.fail(f"duplicate metadata key {key!r}")
        seen.add(key)
        vtype = cur.value_type(f"key {key!r}")
        item_type: GGUFValueType | None = None
        if vtype == _V.ARRAY:
            # peek the item type so twins can re-serialize the exact GGUF types
            cur.need(4, f"the item type of {key!r}")
            item_type = cur.value_type(f"items of key {key!r}", peek=True)
        kvs.append(KV(key, vtype, cur.value(vtype, f"key {key!r}"), item_type))
    kv_end = cur.pos
    alignment = next(
        (kv.value for kv in kvs if kv.key == "general.alignment"), GGUF_DEFAULT_ALIGNMENT
    )
    if (
        not isinstance(alignment, int)
        or isinstance(alignment, bool)
        or alignment <= 0
        or alignment & (alignment - 1)
    ):
        raise cur.fail(f"general.alignment {alignment!r} is not a power of two")
    _check_hparams(cur, kvs)
    tensors: list[TensorInfo] = []
    names: set[str] = set()
    for i in range(n_tensors):
        info = _tensor_info(cur, i, alignment)
        if info.name in names:
            raise cur.fail(f"duplicate tensor name {info.name!r}")
        names.add(info.name)
        tensors.append(info)
    infos_end = cur.pos
    data_offset = infos_end + (-infos_end % alignment)
    if file_size is not None and tensors:
        data_size = file_size - data_offset
        for t in tensors:
            if t.offset + t.n_bytes > data_size:
                raise cur.fail(
                    f"tensor {t.name!r} ends at byte {data_offset + t.offset + t.n_bytes} "
                    f"but the file has {file_size} (truncated download?)"
                )
    return ParsedHeader(
        version=version,
        kvs=tuple(kvs),
        tensors=tuple(tensors),
        kv_start=kv_start,
        kv_end=kv_end,
        infos_end=infos_end,
        data_offset=data_offset,
        alignment=alignment,
    )


def parse_header(
    data: bytes | memoryview, where: str, file_size: int | None = None
) -> ModelManifest:
    """The manifest of a prefix of a GGUF file (see `parse_layout` for `file_size` and errors)."""
    return parse_layout(data, where, file_size).manifest(where, file_size)


def _grow(
    fetch: Callable[[int], bytes], where: str, file_size: int | None
) -> tuple[bytes, ParsedHeader, int | None]:
    """(the bytes read, their layout, the file size as far as known) from `fetch(n)` (the first
    n bytes, or fewer at the end of the file), asking for more bytes until the header is
    complete; never more than MAX_HEADER_BYTES."""
    want = FIRST_READ if file_size is None else min(FIRST_READ, file_size)
    while True:
        data = fetch(want)
        known_size = file_size
        if known_size is None and len(data) < want:
            known_size = len(data)  # the file ended before what we asked for
        try:
            return data, parse_layout(data, where, known_size), known_size
        except HeaderIncomplete as more:
            grown = max(more.needed, 2 * want)
            if file_size is not None:
                grown = min(grown, file_size)
            if grown > MAX_HEADER_BYTES:
                raise GGUFError(
                    f"{where}: GGUF header larger than {MAX_HEADER_BYTES} bytes"
                ) from None
            if grown <= len(data):  # cannot happen with a consistent fetch; never loop forever
                raise GGUFError(f"{where}: could not read past byte {len(data)}") from None
            want = grown


def parse_growing(
    fetch: Callable[[int], bytes], where: str, file_size: int | None
) -> ModelManifest:
    """Parse a header from `fetch(n)` (the first n bytes, or fewer at the end of the file),
    asking for more bytes until the header is complete; never more than MAX_HEADER_BYTES."""
    _, layout, known_size = _grow(fetch, where, file_size)
    return layout.manifest(where, known_size)


def _read_local(path: Path, file_size: int | None = None) -> tuple[bytes, ParsedHeader, int | None]:
    """(the raw header up to its data offset, its layout, the file size) of a local file;
    `file_size` overrides the size (split parts: the total of all parts)."""
    try:
        size = regular_file_size(path) if file_size is None else file_size
        with path.open("rb") as f:

            def fetch(n: int) -> bytes:
                f.seek(0)
                return f.read(n)

            data, layout, _ = _grow(fetch, str(path), size)
            if len(data) < layout.data_offset:  # the prefix stopped inside the padding
                data = fetch(layout.data_offset)
            return data[: layout.data_offset], layout, size
    except FileNotFoundError:
        raise GGUFError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise GGUFError(f"{path}: is a directory, not a GGUF file") from None
    except OSError as exc:
        raise GGUFError(f"{path}: cannot read: {exc.strerror or exc}") from None


def regular_file_size(path: Path) -> int:
    """The size of a regular file; a FIFO or a device is refused before open() (which would
    block on a FIFO for ever). Raises GGUFError naming the file."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise GGUFError(f"{path}: no such file") from None
    except OSError as exc:
        raise GGUFError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise GGUFError(f"{path}: is {file_kind(st.st_mode, 'a directory')}, not a GGUF file")
    return st.st_size


def _read_local_file(path: Path, file_size: int | None = None) -> ModelManifest:
    _, layout, size = _read_local(path, file_size)
    return layout.manifest(str(path), size)


def read_header_bytes(path: Path) -> tuple[bytes, ParsedHeader]:
    """The raw header of a local GGUF file (up to its data offset) and its layout: what a
    byte-exact copy of the header needs."""
    raw, layout, _ = _read_local(Path(path))
    return raw, layout


def shard_names(filename: str) -> list[str] | None:
    """All shard names of a llama.cpp `-0000N-of-0000M.gguf` model, or None if not sharded."""
    m = SHARD_RE.match(filename)
    if not m:
        return None
    count = int(m.group("count"))
    if count < 1 or int(m.group("index")) > count:
        return None
    return [f"{m.group('stem')}-{i:05d}-of-{count:05d}.gguf" for i in range(1, count + 1)]


def merge_shards(shards: list[ModelManifest], source: str) -> ModelManifest:
    """One manifest from every shard: metadata of the first, the tensors of all."""
    first = shards[0]
    expected = first.metadata.get("split.count")
    if isinstance(expected, int) and expected != len(shards):
        raise GGUFError(f"{source}: split.count says {expected} shards, found {len(shards)}")
    tensors: list[TensorInfo] = []
    names: set[str] = set()
    for shard in shards:
        for t in shard.tensors:
            if t.name in names:
                raise GGUFError(f"{shard.source}: tensor {t.name!r} is also in another shard")
            names.add(t.name)
            tensors.append(t)
    sizes = [s.file_size for s in shards]
    extra = dict(first.extra)
    extra["shards"] = [
        {
            "source": s.source,
            "file_size": s.file_size,
            "data_offset": s.data_offset,
            "n_tensors": len(s.tensors),
        }
        for s in shards
    ]
    return ModelManifest(
        source=source,
        metadata=first.metadata,
        tensors=tuple(tensors),
        version=first.version,
        alignment=first.alignment,
        data_offset=None,  # one per shard, in extra["shards"]
        file_size=sum(s for s in sizes if s is not None) if None not in sizes else None,
        extra=extra,
    )


def split_part_paths(path: Path) -> list[Path] | None:
    """TheBloke-style parts (`x.gguf-split-a`, `-split-b`, ...) for a part or the joined name."""
    m = SPLIT_PART_RE.match(path.name)
    joined = m.group("joined") if m else path.name
    if not m and path.exists():
        return None
    parts = []
    for letter in "abcdefghijklmnopqrstuvwxyz":
        part = path.with_name(f"{joined}-split-{letter}")
        if not part.exists():
            break
        parts.append(part)
    return parts or None


def read_local_header(path: str | Path) -> ModelManifest:
    """The manifest of a local GGUF file, shard set or split parts (`fitbench.core.gguf.
    read_header` also takes URLs)."""
    path = Path(path).expanduser()
    names = shard_names(path.name)
    if names is not None:
        shard_paths = [path.with_name(n) for n in names]
        missing = [p.name for p in shard_paths if not p.is_file()]
        if missing:
            raise GGUFError(f"{path}: missing shard(s) {', '.join(missing)} next to it")
        return merge_shards([_read_local_file(p) for p in shard_paths], str(path))
    parts = split_part_paths(path)
    if parts is not None:
        sizes = [regular_file_size(p) for p in parts]
        manifest = _read_local_file(parts[0], file_size=sum(sizes))
        extra = dict(manifest.extra)
        extra["parts"] = [
            {"source": str(p), "file_size": n} for p, n in zip(parts, sizes, strict=True)
        ]
        return replace(manifest, extra=extra)
    return _read_local_file(path)
