"""Shape-faithful twins: GGUF files with a real model's header and synthetic weights.

llama.cpp's speed depends on tensor shapes, types and placement, not on weight values, so a twin
lets FitBench measure Mixtral or Llama 2 70B before (or instead of) a 26-41 GB download.

- manifest_for(): a catalog model's manifest, offline (twin_manifest + quant_rules).
- write_twin(): streams a twin of any manifest to disk (bounded memory, temp name + rename).
- twin_for(): the cached twin of a catalog model (keyed by header hash, size-capped).
- is_twin() / twin_kind() / read_twin_marker(): tell a twin from a real file.

Every twin carries `fitbench.twin = true`, `fitbench.twin.kind` ("twin" | "scaled-twin"),
`fitbench.twin.n_layer_model`, `fitbench.twin.layers_kept` and `fitbench.twin.source` in its
metadata: that marker, not the file name, is what makes a file a twin. Cached twins are named
`*.fitbench-twin.gguf`; write_twin writes exactly the path it is given. A twin of a real header
keeps the real key/value bytes and tensor infos verbatim and appends those keys after them.

Only tensor types ggml can produce are written (WRITABLE_TYPES): a header with a Q8_1 or Q8_K
tensor (intermediate types no converter writes) is refused before a byte is written, since
ggml's quantizer aborts the whole process on them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from gguf import GGMLQuantizationType, GGUFValueType

from fitbench.core import paths
from fitbench.core.gguf.manifest import ModelManifest, TensorInfo
from fitbench.core.gguf.reader import KV, GGUFError, ParsedHeader, parse_layout, read_header_bytes
from fitbench.core.gguf.writer import align, manifest_kvs, serialize_header, splice_kvs
from fitbench.core.model import catalog
from fitbench.core.model.builtin import build_manifest, kept_layers
from fitbench.core.model.catalog import Arch, Model
from fitbench.core.outfile import PARTIAL_SUFFIX, OutputPathError, atomic_output, check_output
from fitbench.core.twin.data import DATA_RULE, TwinDataError, tensor_chunks

log = logging.getLogger(__name__)
V = GGUFValueType

TWIN_SUFFIX = ".fitbench-twin.gguf"
MARKER_PREFIX = "fitbench.twin"
KIND_TWIN, KIND_SCALED = "twin", "scaled-twin"
DISK_MARGIN = 256 << 20  # keep this much free beyond the twin itself
DEFAULT_CACHE_CAP = 96 << 30  # room for Llama 2 70B Q8_0 (73 GB) plus small twins
_STALE_PARTIAL_S = 3600.0  # a .partial untouched this long belongs to a killed writer


# the types twin data can be made of: plain floats and integers, and every type ggml's
# ggml_quantize_chunk() quantizes (ggml/src/ggml.c); any other type aborts the process there
_QUANTIZABLE = (
    "Q1_0 Q2_0 Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 MXFP4 NVFP4 Q2_K Q3_K Q4_K Q5_K Q6_K TQ1_0 TQ2_0 "
    "IQ2_XXS IQ2_XS IQ3_XXS IQ3_S IQ2_S IQ1_S IQ1_M IQ4_NL IQ4_XS"
)
WRITABLE_TYPES: frozenset[int] = frozenset(
    int(GGMLQuantizationType[name])
    for name in ["F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64", *_QUANTIZABLE.split()]
    if name in GGMLQuantizationType.__members__
)


class TwinError(RuntimeError):
    """A twin cannot be made or read; the message names the file or model and what to do."""


class TwinCancelled(TwinError):
    """write_twin stopped because its cancel event was set; no file was left behind."""


@dataclass(frozen=True)
class TwinMarker:
    kind: str  # "twin" | "scaled-twin"
    n_layer_model: int
    layers_kept: tuple[int, ...]
    source: str


@dataclass(frozen=True)
class TwinInfo:
    path: Path
    kind: str
    size_bytes: int
    n_layer_model: int
    layers_kept: tuple[int, ...]
    header_sha256: str  # of the header before the marker keys were added
    seconds: float
    mb_per_s: float
    source: str
    extra: dict[str, object] = field(default_factory=dict)


def tiny_arch(moe: bool = False) -> Arch:
    """A tiny llama-architecture spec for tests: loads and generates in milliseconds."""
    return Arch(
        architecture="llama",
        n_layer=4,
        n_embd=256,
        n_ff=512,
        n_head=4,
        n_head_kv=2,
        n_vocab=2048,
        n_expert=4 if moe else 0,
        n_expert_used=2 if moe else 0,
        rope_freq_base=10000.0,
        n_ctx_train=2048,
    )


def manifest_for(model: Model | Arch | str, quant: str, layers: int | None = None) -> ModelManifest:
    """The manifest of a catalog model (or a bare Arch) at `quant`, built offline.

    With `layers`, a scaled model of that many blocks spread over the depth; extra["layers_kept"]
    lists their original indices and extra["n_layer_model"] the full depth.
    """
    if isinstance(model, str):
        model = catalog.load().get(model)
    if isinstance(model, Model):
        arch, name = model.arch, model.id
    else:
        arch, name = model, f"{model.architecture}-{model.n_layer}x{model.n_embd}"
    return build_manifest(arch, quant, layers=layers, name=name, source=f"manifest:{name}/{quant}")


def _marker_kvs(kind: str, n_layer_model: int, layers_kept: list[int], source: str) -> list[KV]:
    return [
        KV(MARKER_PREFIX, V.BOOL, True),
        KV(f"{MARKER_PREFIX}.kind", V.STRING, kind),
        KV(f"{MARKER_PREFIX}.n_layer_model", V.UINT32, n_layer_model),
        KV(f"{MARKER_PREFIX}.layers_kept", V.ARRAY, layers_kept, V.INT32),
        KV(f"{MARKER_PREFIX}.source", V.STRING, source),
        KV(f"{MARKER_PREFIX}.data_rule", V.UINT32, DATA_RULE),
    ]


def _real_header(
    manifest: ModelManifest, header_bytes: bytes | None
) -> tuple[bytes, ParsedHeader] | None:
    """The real header bytes behind a manifest, if there are any to copy."""
    raw = header_bytes if header_bytes is not None else manifest.extra.get("header_bytes")
    if raw is not None:
        try:
            return bytes(raw), parse_layout(raw, manifest.source)
        except GGUFError as exc:
            raise TwinError(f"header bytes for {manifest.source}: {exc}") from None
    if manifest.extra.get("built_in") or manifest.extra.get("shards"):
        return None
    local = Path(manifest.source)
    if manifest.source and local.is_file():
        return _read_local(local)
    return None


def manifest_from_gguf(path: Path) -> ModelManifest:
    """The manifest of a local GGUF file, with its exact metadata types (for scaled twins)."""
    _, parsed = _read_local(Path(path))
    return parsed.manifest(str(path), Path(path).stat().st_size)


def _read_local(path: Path) -> tuple[bytes, ParsedHeader]:
    try:
        return read_header_bytes(path)
    except GGUFError as exc:
        raise TwinError(str(exc)) from None


def scale_manifest(
    manifest: ModelManifest, layers: int, header_bytes: bytes | None = None
) -> ModelManifest:
    """A manifest with `layers` of its blocks (spread over the depth), renumbered from 0.

    Metadata arrays with one entry per block (some architectures have per-layer head counts)
    are cut to the kept blocks. Value types come from the real header when there is one.
    """
    real = _real_header(manifest, header_bytes)
    if real is not None:
        kv_types = real[1].kv_types()
        manifest = ModelManifest(
            source=manifest.source,
            metadata=real[1].kv_dict(),
            tensors=real[1].tensors,
            version=real[1].version,
            alignment=real[1].alignment,
            extra={**manifest.extra, "kv_types": kv_types},
        )
    n_layer = manifest.n_layer
    if n_layer < 1:
        raise TwinError(f"{manifest.source}: the header has no block count, cannot scale it")
    keep = kept_layers(n_layer, layers)
    mapping = {orig: new for new, orig in enumerate(keep)}
    tensors: list[TensorInfo] = []
    offset = 0
    for t in manifest.tensors:
        if t.layer is not None:
            if t.layer not in mapping:
                continue
            name = f"blk.{mapping[t.layer]}.{t.name.split('.', 2)[2]}"
        else:
            name = t.name
        tensors.append(TensorInfo(name, t.shape, t.ggml_type, offset, t.n_bytes))
        offset = align(offset + t.n_bytes, manifest.alignment)
    block_key = f"{manifest.architecture}.block_count"
    metadata = {}
    for key, value in manifest.metadata.items():
        if key == block_key:
            value = len(keep)
        elif isinstance(value, list) and len(value) == n_layer and not key.startswith("tokenizer"):
            value = [value[i] for i in keep]
        metadata[key] = value
    extra = {k: v for k, v in manifest.extra.items() if k != "header_bytes"}
    extra.update(n_layer_model=n_layer, layers_kept=keep, built_in=True)
    return ModelManifest(
        source=manifest.source,
        metadata=metadata,
        tensors=tuple(tensors),
        version=manifest.version,
        alignment=manifest.alignment,
        extra=extra,
    )


def _laid_out(tensors: tuple[TensorInfo, ...], alignment: int) -> tuple[TensorInfo, ...]:
    """The tensors with their own offsets if those form one valid data section (a single file),
    else packed in order (tensors merged from shards have offsets into different files)."""
    end = 0
    for t in tensors:
        if t.offset < end or t.offset % alignment:
            break
        end = t.offset + t.n_bytes
    else:
        return tensors
    out, offset = [], 0
    for t in tensors:
        out.append(TensorInfo(t.name, t.shape, t.ggml_type, offset, t.n_bytes))
        offset = align(offset + t.n_bytes, alignment)
    return tuple(out)


def _plan_header(
    manifest: ModelManifest, header_bytes: bytes | None
) -> tuple[bytes, tuple[TensorInfo, ...], int, str]:
    """(header without marker, tensors, alignment, how it was made) for the twin of `manifest`."""
    real = _real_header(manifest, header_bytes)
    if real is not None:
        raw, parsed = real
        if not any(kv.key.startswith(MARKER_PREFIX) for kv in parsed.kvs):
            return raw[: parsed.data_offset], parsed.tensors, parsed.alignment, "header-exact"
        # a twin of a twin: its old marker goes, the rest is re-written with the exact types
        kvs = [kv for kv in parsed.kvs if not kv.key.startswith(MARKER_PREFIX)]
        header = serialize_header(kvs, parsed.tensors, parsed.alignment)
        return header, parsed.tensors, parsed.alignment, "re-serialized"
    # shards merge into one twin file: their split.* keys would send llama.cpp looking for more
    # (and a twin's own marker is replaced, never duplicated)
    kvs = [kv for kv in manifest_kvs(manifest) if not kv.key.startswith(("split.", MARKER_PREFIX))]
    tensors = _laid_out(manifest.tensors, manifest.alignment)
    return (
        serialize_header(kvs, tensors, manifest.alignment),
        tensors,
        manifest.alignment,
        ("built-in" if manifest.extra.get("built_in") else "re-serialized"),
    )


def twin_header(
    manifest: ModelManifest, header_bytes: bytes | None = None
) -> tuple[bytes, tuple[TensorInfo, ...], str]:
    """The complete twin header (marker keys included), its tensors and its kind."""
    base, tensors, alignment, _how = _plan_header(manifest, header_bytes)
    _check_writable(manifest.source, tensors)
    n_layer_model = int(manifest.extra.get("n_layer_model", manifest.n_layer))
    layers_kept = list(manifest.extra.get("layers_kept", range(manifest.n_layer)))
    kind = KIND_SCALED if len(layers_kept) < n_layer_model else KIND_TWIN
    markers = _marker_kvs(kind, n_layer_model, layers_kept, manifest.source)
    try:
        parsed = parse_layout(base, manifest.source)
    except GGUFError as exc:
        raise TwinError(str(exc)) from None
    if parsed.alignment != alignment:
        raise TwinError(f"{manifest.source}: header alignment {parsed.alignment} != {alignment}")
    return splice_kvs(base, parsed, markers), tensors, kind


def _check_writable(source: str, tensors: tuple[TensorInfo, ...]) -> None:
    """TwinError, before anything is written, when a tensor has a type twin data cannot be made
    of (ggml would abort the process half-way through the file)."""
    bad = [t for t in tensors if t.ggml_type not in WRITABLE_TYPES]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise TwinError(
            f"{source}: tensor {bad[0].name!r}{more} has type {bad[0].type_name}, which ggml "
            "cannot quantize (no converter writes it), so no twin can be made of this header"
        )


def header_hash(manifest: ModelManifest, header_bytes: bytes | None = None) -> str:
    base, _, _, _ = _plan_header(manifest, header_bytes)
    return hashlib.sha256(base).hexdigest()


def twin_size(manifest: ModelManifest, header_bytes: bytes | None = None) -> int:
    """Bytes of the twin file that write_twin would write."""
    header, tensors, _ = twin_header(manifest, header_bytes)
    return len(header) + _data_size(tensors)


def _data_size(tensors: tuple[TensorInfo, ...]) -> int:
    return max((t.offset + t.n_bytes for t in tensors), default=0)


def _check_disk(directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed + DISK_MARGIN:
        raise TwinError(
            f"not enough free disk in {directory}: the twin needs {needed / 1e9:.2f} GB "
            f"(+{DISK_MARGIN >> 20} MiB margin), {free / 1e9:.2f} GB is free; "
            "free some space or write it elsewhere (--out)"
        )


def write_twin(
    manifest: ModelManifest,
    out: Path,
    *,
    header_bytes: bytes | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> TwinInfo:
    """Write the twin of `manifest` to `out`, exactly that path (the marker inside the file, not
    its name, says it is a twin).

    The data is streamed from small pools of synthetic blocks (memory stays bounded) into an
    unnamed temporary file that is renamed over `out` only when complete (fitbench.core.outfile:
    a device, FIFO, folder or symbolic link at `out` is refused), so an interrupted or failed
    run never leaves a file behind. Raises TwinError (a bad target, a type ggml cannot make, a
    short disk: all before writing anything; a write error) or TwinCancelled.
    """
    out = Path(out)
    header, tensors, kind = twin_header(manifest, header_bytes)
    data_size = _data_size(tensors)
    total = len(header) + data_size
    try:
        check_output(out, "the twin", create_parent=True)
    except OutputPathError as exc:
        raise TwinError(str(exc)) from None
    _check_disk(out.parent, total)
    started = time.perf_counter()
    try:
        with atomic_output(out, "the twin") as f:
            _write_data(f, manifest.source, header, tensors, total, progress, cancel)
    except TwinDataError as exc:
        raise TwinError(f"twin of {manifest.source}: {exc}") from None
    except OutputPathError as exc:
        raise TwinError(str(exc)) from None
    except OSError as exc:
        raise TwinError(f"cannot write the twin to {out}: {exc.strerror or exc}") from None
    seconds = time.perf_counter() - started
    n_layer_model = int(manifest.extra.get("n_layer_model", manifest.n_layer))
    layers_kept = tuple(manifest.extra.get("layers_kept", range(manifest.n_layer)))
    log.info("twin %s: %d bytes in %.1f s", out, total, seconds)
    return TwinInfo(
        path=out,
        kind=kind,
        size_bytes=total,
        n_layer_model=n_layer_model,
        layers_kept=layers_kept,
        header_sha256=header_hash(manifest, header_bytes),
        seconds=seconds,
        mb_per_s=total / 1e6 / seconds if seconds > 0 else 0.0,
        source=manifest.source,
        extra={"header": _plan_header(manifest, header_bytes)[3]},
    )


def _write_data(
    f: BinaryIO,
    source: str,
    header: bytes,
    tensors: tuple[TensorInfo, ...],
    total: int,
    progress: Callable[[int, int], None] | None,
    cancel: threading.Event | None,
) -> None:
    f.write(header)
    done = len(header)
    for t in sorted(tensors, key=lambda t: t.offset):
        pad = len(header) + t.offset - done
        if pad < 0:
            raise TwinError(f"{source}: tensor {t.name!r} overlaps the previous one")
        f.write(b"\0" * pad)
        done += pad
        for chunk in tensor_chunks(t.name, len(t.shape), t.ggml_type, t.n_bytes):
            if cancel is not None and cancel.is_set():
                raise TwinCancelled(f"twin of {source} cancelled")
            f.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)


def read_twin_marker(path: Path) -> TwinMarker | None:
    """The twin marker in a GGUF file's metadata, or None for a file without one."""
    try:
        _, parsed = read_header_bytes(Path(path))
    except GGUFError as exc:
        raise TwinError(str(exc)) from None
    meta = parsed.kv_dict()
    if not meta.get(MARKER_PREFIX):
        return None
    return TwinMarker(
        kind=str(meta.get(f"{MARKER_PREFIX}.kind", KIND_TWIN)),
        n_layer_model=int(meta.get(f"{MARKER_PREFIX}.n_layer_model", 0)),
        layers_kept=tuple(int(i) for i in meta.get(f"{MARKER_PREFIX}.layers_kept", ())),
        source=str(meta.get(f"{MARKER_PREFIX}.source", "")),
    )


def describe_twin(path: Path) -> TwinInfo:
    """A TwinInfo for a twin already on disk (from its marker; no timing)."""
    path = Path(path)
    marker = read_twin_marker(path)
    if marker is None:
        raise TwinError(f"{path}: not a FitBench twin (no {MARKER_PREFIX} metadata)")
    return TwinInfo(
        path=path,
        kind=marker.kind,
        size_bytes=path.stat().st_size,
        n_layer_model=marker.n_layer_model,
        layers_kept=marker.layers_kept,
        header_sha256="",
        seconds=0.0,
        mb_per_s=0.0,
        source=marker.source,
    )


def twin_kind(path: Path) -> str:
    """What a results record's `source` should say for this file: real | twin | scaled-twin."""
    marker = read_twin_marker(Path(path))
    if marker is not None:
        return marker.kind
    # a twin-named file without the marker is still never called real
    return KIND_TWIN if Path(path).name.endswith(TWIN_SUFFIX) else "real"


def is_twin(path: Path) -> bool:
    return twin_kind(path) != "real"


# --- the twin cache -------------------------------------------------------------------------


def _cache_cap() -> int:
    raw = os.environ.get("FITBENCH_TWIN_CACHE_GB")
    try:
        return int(float(raw) * 1e9) if raw else DEFAULT_CACHE_CAP
    except ValueError:
        raise TwinError(f"FITBENCH_TWIN_CACHE_GB={raw!r} is not a number of GB") from None


def cached_twins() -> list[Path]:
    """Finished twins in the cache, least recently used first."""
    files = [p for p in paths.twins_dir().glob(f"*{TWIN_SUFFIX}") if p.is_file()]
    return sorted(files, key=lambda p: p.stat().st_mtime)


def clean_twin_cache(max_bytes: int | None = None, keep_free_for: int = 0) -> list[Path]:
    """Delete stale partial files, then least recently used twins until the cache plus
    `keep_free_for` bytes fits `max_bytes` (default: FITBENCH_TWIN_CACHE_GB or 96 GiB)."""
    cap = _cache_cap() if max_bytes is None else max_bytes
    removed: list[Path] = []
    now = time.time()
    for partial in paths.twins_dir().glob(f"*{PARTIAL_SUFFIX}"):
        if now - partial.stat().st_mtime > _STALE_PARTIAL_S:
            partial.unlink(missing_ok=True)
            removed.append(partial)
    twins = cached_twins()
    total = sum(p.stat().st_size for p in twins)
    for p in twins:
        if total + keep_free_for <= cap:
            break
        total -= p.stat().st_size
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _cache_name(label: str, quant: str, layers: int | None, digest: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in label)
    depth = f".L{layers}" if layers else ""
    # the data rule in the name: a twin cached under an older rule is written again, not reused
    return f"{safe}.{quant}{depth}.{digest[:12]}.d{DATA_RULE}{TWIN_SUFFIX}"


def twin_of(
    manifest: ModelManifest,
    *,
    label: str = "",
    header_bytes: bytes | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """The cached twin of any manifest (a built-in one, or a real header read locally or from
    the Hub), keyed by the hash of the header it copies. Scale the manifest first for a scaled
    twin (scale_manifest / manifest_for(..., layers=K))."""
    digest = header_hash(manifest, header_bytes)
    quant = str(
        manifest.extra.get("quant") or f"ftype{manifest.metadata.get('general.file_type', 'x')}"
    )
    kept = manifest.extra.get("layers_kept")
    n_model = int(manifest.extra.get("n_layer_model", manifest.n_layer))
    layers = len(kept) if kept is not None and len(kept) < n_model else None
    name = label or str(manifest.metadata.get("general.name") or Path(manifest.source).stem)
    out = paths.twins_dir() / _cache_name(name, quant, layers, digest)
    if out.is_file():
        os.utime(out)  # most recently used
        return out
    size = twin_size(manifest, header_bytes)
    cap = _cache_cap()
    if size > cap:
        raise TwinError(
            f"the twin of {name} needs {size / 1e9:.1f} GB, more than the twin cache cap of "
            f"{cap / 1e9:.1f} GB; raise FITBENCH_TWIN_CACHE_GB or write it with --out"
        )
    clean_twin_cache(cap, keep_free_for=size)
    info = write_twin(manifest, out, header_bytes=header_bytes, progress=progress, cancel=cancel)
    return info.path


def twin_for(
    model_id: str,
    quant: str,
    layers: int | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """The cached twin of a catalog model (built offline on first use), keyed by header hash."""
    manifest = manifest_for(model_id, quant, layers)
    return twin_of(manifest, label=model_id, progress=progress, cancel=cancel)
