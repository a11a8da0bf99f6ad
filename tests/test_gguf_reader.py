"""The GGUF header reader on real files written by gguf.GGUFWriter, and on corrupt ones."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from gguf import GGUFReader
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fitbench.core import gguf
from fitbench.core.gguf.compat import KNOWN_ARCHITECTURES_0_3_36, PER_EXPERT_REASON
from test_gguf_builders import LlamaShape, Q, write_llama_gguf

VENDORED_ARCH = Path("/work/llama-src/llama_cpp_python-0.3.36/vendor/llama.cpp/src/llama-arch.cpp")


@pytest.fixture(scope="module")
def moe_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gguf") / "moe.gguf"
    return write_llama_gguf(path, LlamaShape(n_expert=4, n_expert_used=2), Q.Q4_K)


def test_local_header_matches_the_gguf_package(moe_file: Path) -> None:
    m = gguf.read_header(moe_file)
    reader = GGUFReader(moe_file)
    assert [t.name for t in m.tensors] == [t.name for t in reader.tensors]
    for mine, theirs in zip(m.tensors, reader.tensors, strict=True):
        assert mine.shape == tuple(int(d) for d in theirs.shape)
        assert mine.ggml_type == int(theirs.tensor_type)
        assert mine.n_bytes == int(theirs.n_bytes)
        assert m.data_offset is not None
        assert m.data_offset + mine.offset == int(theirs.data_offset)
    assert m.architecture == "llama" and m.n_layer == 2 and m.n_expert == 4
    assert m.metadata["tokenizer.ggml.tokens"][:3] == ["<unk>", "<s>", "</s>"]
    # exactness: the tensors are the whole data section up to the last one's end
    last = max(m.tensors, key=lambda t: t.offset)
    assert m.weights_bytes == sum(int(t.n_bytes) for t in reader.tensors)
    assert m.data_offset + last.offset + last.n_bytes == moe_file.stat().st_size
    # GGUF types survive for twins: block_count is a uint32, tokens an array of strings
    assert m.extra["kv_types"]["llama.block_count"] == (4, None)
    assert m.extra["kv_types"]["tokenizer.ggml.tokens"] == (9, 8)


def _patched(src: Path, dst: Path, offset: int, data: bytes) -> Path:
    raw = bytearray(src.read_bytes())
    raw[offset : offset + len(data)] = data
    dst.write_bytes(bytes(raw))
    return dst


def _first_tensor_type_offset(path: Path) -> int:
    m = gguf.read_header(path)
    first = m.tensors[0]
    raw = path.read_bytes()
    name = first.name.encode()
    at = raw.index(struct.pack("<Q", len(name)) + name, 24)
    return at + 8 + len(name) + 4 + 8 * len(first.shape)


@pytest.mark.parametrize(
    ("offset", "data", "message"),
    [
        (0, b"GGJT", "not a GGUF file"),
        (0, b"tjgg", "old GGML/GGJT"),
        (4, struct.pack("<I", 1), "version 1"),
        (4, struct.pack(">I", 3), "big-endian"),
        (8, struct.pack("<Q", 1 << 40), "absurd tensor count"),
        (16, struct.pack("<Q", 1 << 40), "absurd metadata key count"),
        (24, struct.pack("<Q", 1 << 60), "absurd length of metadata key #0"),
    ],
)
def test_corrupt_headers_fail_clearly(
    moe_file: Path, tmp_path: Path, offset: int, data: bytes, message: str
) -> None:
    bad = _patched(moe_file, tmp_path / "bad.gguf", offset, data)
    with pytest.raises(gguf.GGUFError) as err:
        gguf.read_header(bad)
    assert message in str(err.value)
    assert str(bad) in str(err.value)


def test_unknown_ggml_type_names_the_tensor(moe_file: Path, tmp_path: Path) -> None:
    at = _first_tensor_type_offset(moe_file)
    bad = _patched(moe_file, tmp_path / "type.gguf", at, struct.pack("<I", 77))
    with pytest.raises(gguf.GGUFError, match=r"token_embd\.weight' has unknown ggml type 77"):
        gguf.read_header(bad)


def test_truncated_files_fail_clearly(moe_file: Path, tmp_path: Path) -> None:
    m = gguf.read_header(moe_file)
    assert m.data_offset is not None
    raw = moe_file.read_bytes()
    inside_header = tmp_path / "cut-header.gguf"
    inside_header.write_bytes(raw[: m.data_offset // 2])
    with pytest.raises(gguf.GGUFError, match="truncated"):
        gguf.read_header(inside_header)
    inside_data = tmp_path / "cut-data.gguf"
    inside_data.write_bytes(raw[: m.data_offset + 100])
    with pytest.raises(gguf.GGUFError, match="truncated download"):
        gguf.read_header(inside_data)
    with pytest.raises(gguf.GGUFError, match="no such file"):
        gguf.read_header(tmp_path / "missing.gguf")


def test_header_larger_than_the_first_read_grows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fitbench.core.gguf import reader as gguf_header

    monkeypatch.setattr(gguf_header, "FIRST_READ", 64)
    path = write_llama_gguf(tmp_path / "m.gguf")
    reads: list[int] = []
    raw = path.read_bytes()

    def fetch(n: int) -> bytes:
        reads.append(n)
        return raw[:n]

    m = gguf.parse_growing(fetch, str(path), len(raw))
    assert len(m.tensors) == len(gguf.read_header(path).tensors)
    assert len(reads) > 3 and reads == sorted(reads) and max(reads) < len(raw)


@pytest.fixture(scope="module")
def header_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = write_llama_gguf(tmp_path_factory.mktemp("h") / "h.gguf", LlamaShape(n_vocab=300))
    m = gguf.read_header(path)
    assert m.data_offset is not None
    return path.read_bytes()[: m.data_offset]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_random_prefixes_and_mutations_only_raise_gguf_errors(
    header_bytes: bytes, data: st.DataObject
) -> None:
    cut = data.draw(st.integers(0, len(header_bytes)))
    raw = bytearray(header_bytes[:cut])
    for _ in range(data.draw(st.integers(0, 4))):
        if raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    file_size = data.draw(st.sampled_from([None, len(raw), len(raw) + 10**12]))
    try:
        gguf.parse_header(bytes(raw), "fuzz.gguf", file_size)
    except gguf.GGUFError as exc:
        assert "fuzz.gguf" in str(exc)


@given(st.binary(max_size=256))
def test_random_bytes_only_raise_gguf_errors(raw: bytes) -> None:
    try:
        gguf.parse_header(b"GGUF" + raw, "rnd.gguf", None)
    except gguf.GGUFError as exc:
        assert "rnd.gguf" in str(exc)


def _write_shards(folder: Path) -> list[Path]:
    """Two shards by hand: metadata in the first, the tensors split between both."""
    import numpy as np
    from gguf import GGUFWriter

    from test_gguf_builders import _tensor_data, add_llama_metadata, llama_tensors

    shape = LlamaShape()
    tensors = list(llama_tensors(shape))
    halves = [tensors[: len(tensors) // 2], tensors[len(tensors) // 2 :]]
    paths = []
    rng = np.random.default_rng(0)
    for i, part in enumerate(halves, start=1):
        path = folder / f"m-{i:05d}-of-00002.gguf"
        w = GGUFWriter(str(path), "llama")
        if i == 1:
            add_llama_metadata(w, shape)
        w.add_uint16("split.no", i - 1)
        w.add_uint16("split.count", 2)
        for name, dims, qtype in part:
            raw_dtype = None if qtype in (Q.F32, Q.F16) else qtype
            w.add_tensor(name, _tensor_data(rng, dims, qtype), raw_dtype=raw_dtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        paths.append(path)
    return paths


def test_shards_give_one_manifest_with_every_tensor(tmp_path: Path) -> None:
    paths = _write_shards(tmp_path)
    m = gguf.read_header(paths[0])
    singles = [gguf.parse_header(p.read_bytes(), str(p), p.stat().st_size) for p in paths]
    assert [t.name for t in m.tensors] == [t.name for s in singles for t in s.tensors]
    assert m.metadata["llama.block_count"] == 2
    assert m.file_size == sum(p.stat().st_size for p in paths)
    assert [s["n_tensors"] for s in m.extra["shards"]] == [len(s.tensors) for s in singles]
    paths[1].unlink()
    with pytest.raises(gguf.GGUFError, match="missing shard"):
        gguf.read_header(paths[0])


def test_split_parts_read_the_header_from_part_a(moe_file: Path, tmp_path: Path) -> None:
    raw = moe_file.read_bytes()
    joined = tmp_path / "m.Q8_0.gguf"
    (tmp_path / "m.Q8_0.gguf-split-a").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "m.Q8_0.gguf-split-b").write_bytes(raw[len(raw) // 2 :])
    for path in (joined, tmp_path / "m.Q8_0.gguf-split-a"):
        m = gguf.read_header(path)
        assert m.file_size == len(raw)
        assert m.weights_bytes == gguf.read_header(moe_file).weights_bytes
        assert [p["file_size"] for p in m.extra["parts"]] == [
            len(raw) // 2,
            len(raw) - len(raw) // 2,
        ]


def test_compatibility_flags_the_old_mixtral_layout(tmp_path: Path, moe_file: Path) -> None:
    assert gguf.check_compatibility(gguf.read_header(moe_file)).ok
    old = write_llama_gguf(
        tmp_path / "old.gguf", LlamaShape(n_expert=4, n_expert_used=2), per_expert_layout=True
    )
    compat = gguf.check_compatibility(gguf.read_header(old))
    assert not compat.ok
    assert compat.reasons == [PER_EXPERT_REASON]
    assert compat.reasons[0].startswith("missing tensor blk.0.ffn_down_exps.weight")


def test_compatibility_flags_unknown_architectures(moe_file: Path) -> None:
    from dataclasses import replace

    m = gguf.read_header(moe_file)
    alien = replace(m, metadata={**m.metadata, "general.architecture": "not-a-real-arch"})
    compat = gguf.check_compatibility(alien)
    assert not compat.ok and "unknown to the installed llama.cpp" in compat.reasons[0]
    assert gguf.is_known_architecture("llama") and gguf.is_known_architecture("qwen3moe")


@pytest.mark.skipif(not VENDORED_ARCH.is_file(), reason="vendored llama.cpp source not present")
def test_fallback_architecture_list_matches_the_vendored_source() -> None:
    import re

    text = VENDORED_ARCH.read_text()
    table = text[text.index("LLM_ARCH_NAMES = {") :]
    names = set(re.findall(r'"([^"]*)"', table[: table.index("};")])) - {"clip", "(unknown)"}
    assert names == KNOWN_ARCHITECTURES_0_3_36
    # and the installed library really holds them (the primary check reads the library)
    from fitbench.core.gguf.compat import _llama_library

    lib = _llama_library()
    if lib is not None:
        assert all(gguf.is_known_architecture(n, lib) for n in names)


def test_layout_keeps_what_a_byte_exact_rewrite_needs(moe_file: Path) -> None:
    from fitbench.core.gguf.writer import serialize_header

    raw, layout = gguf.read_header_bytes(moe_file)
    assert len(raw) == layout.data_offset == gguf.read_header(moe_file).data_offset
    # every key keeps its GGUF type and file order: re-writing gives the same bytes
    assert serialize_header(list(layout.kvs), layout.tensors, layout.alignment) == raw
    assert raw[layout.kv_start : layout.kv_end].startswith(
        struct.pack("<Q", len(layout.kvs[0].key))
    )
    m = gguf.parse_header(raw, "h", None)
    assert m.metadata == layout.kv_dict() and m.extra["kv_types"] == layout.kv_types()


def test_header_bytes_of_a_cut_file_is_a_gguf_error(tmp_path: Path, moe_file: Path) -> None:
    cut = tmp_path / "cut.gguf"
    raw = moe_file.read_bytes()
    cut.write_bytes(raw[: gguf.read_header(moe_file).data_offset // 2])
    with pytest.raises(gguf.GGUFError, match=r"cut\.gguf: (truncated|absurd)"):
        gguf.read_header_bytes(cut)
