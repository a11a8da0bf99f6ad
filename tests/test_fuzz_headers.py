"""Hostile GGUF headers through what `plan` and `twin` do: a one-line error or a result, in
bounded time, never a traceback, a hang, a crash or a MemoryError (issue 21, items 2 and 3).

The committed corpus (tests/data/fuzz/, ~4 KB files, fuzz_headers.make_corpus()) holds the
headers that hung or crashed before: block_count 2^31 and 2^64-1 planned for ever, Q8_1/Q8_K
tensors aborted the twin writer in ggml. Hypothesis then mutates the valid file at random: raw
bytes anywhere, and every metadata integer set to an extreme of any GGUF integer type.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fuzz_headers as fz
from fitbench.core.gguf.reader import KV, parse_layout

# name -> the outcome: "ok", or words the one-line error must contain (besides the file name)
EXPECTED = {
    "alignment-zero.gguf": "general.alignment 0 is not a power of two",
    "block-count-2e31.gguf": "llama.block_count is 2147483648, outside",
    "block-count-negative.gguf": "llama.block_count is -5, outside",
    "block-count-string.gguf": "llama.block_count is str 'many', not an integer",
    "block-count-u64-max.gguf": "llama.block_count is 18446744073709551615, outside",
    "context-2e62.gguf": "llama.context_length is 4611686018427387904, outside",
    "embedding-2e31.gguf": "llama.embedding_length is 2147483648, outside",
    "expert-count-2e31.gguf": "llama.expert_count is 2147483648, outside",
    "head-count-kv-array-huge.gguf": "llama.attention.head_count_kv has a per-layer entry",
    "head-count-zero.gguf": "ok",
    "kv-count-huge.gguf": "absurd metadata key count",
    "q8_1-tensors.gguf": "has type Q8_1, which ggml cannot quantize",
    "q8_k-tensor.gguf": "has type Q8_K, which ggml cannot quantize",
    "tensor-count-huge.gguf": "absurd tensor count",
    "truncated.gguf": "truncated download",
    "valid.gguf": "ok",
    "vocab-size-2e40.gguf": "llama.vocab_size is 1099511627776, outside",
}


def test_the_corpus_is_committed_and_complete() -> None:
    names = {p.name for p in fz.CORPUS.glob("*.gguf")}
    assert names == set(EXPECTED) == set(fz.corpus_cases())
    assert all(p.stat().st_size < 8192 for p in fz.CORPUS.glob("*.gguf"))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_header_gives_a_one_line_error_or_a_plan(name: str) -> None:
    outcome = fz.pipeline(fz.CORPUS / name)
    if EXPECTED[name] == "ok":
        assert outcome == "ok"
    else:
        assert outcome.startswith("error: ") and "\n" not in outcome
        assert name in outcome and EXPECTED[name] in outcome


def _kv_value_offsets(raw: bytes) -> list[tuple[KV, int]]:
    """Each integer metadata key and where its value starts in the file."""
    layout = parse_layout(raw, "base", len(raw))
    out = []
    pos = layout.kv_start
    for kv in layout.kvs:
        key_len = struct.unpack_from("<Q", raw, pos)[0]
        pos += 8 + key_len + 4  # the key, then its value type
        if kv.vtype.name.startswith(("UINT", "INT")):
            out.append((kv, pos))
        pos = _skip_value(raw, pos, kv)
    return out


def _skip_value(raw: bytes, pos: int, kv: KV) -> int:
    sizes = {"UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "UINT32": 4, "INT32": 4}
    sizes |= {"FLOAT32": 4, "BOOL": 1, "UINT64": 8, "INT64": 8, "FLOAT64": 8}
    if kv.vtype.name == "STRING":
        return pos + 8 + struct.unpack_from("<Q", raw, pos)[0]
    if kv.vtype.name == "ARRAY":
        raise AssertionError("the base file has no arrays")
    return pos + sizes[kv.vtype.name]


BASE = fz.build()
HEADER_END = parse_layout(BASE, "base", len(BASE)).data_offset
INT_FIELDS = _kv_value_offsets(BASE)
EXTREMES = [0, 1, 2**7, 2**15, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, 2**64 - 1]
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(data=st.data())
def test_random_byte_mutations_give_an_error_or_a_plan(tmp_path: Path, data: st.DataObject) -> None:
    raw = bytearray(BASE)
    for _ in range(data.draw(st.integers(1, 6), label="mutations")):
        at = data.draw(st.integers(0, HEADER_END - 1), label="offset")
        raw[at] = data.draw(st.integers(0, 255), label="byte")
    path = tmp_path / "mutated.gguf"
    path.write_bytes(bytes(raw))
    outcome = fz.pipeline(path)  # raises on a traceback, a MemoryError or a hang
    assert outcome == "ok" or ("mutated.gguf" in outcome and "\n" not in outcome)


@FUZZ
@given(data=st.data())
def test_extreme_metadata_integers_give_an_error_or_a_plan(
    tmp_path: Path, data: st.DataObject
) -> None:
    raw = bytearray(BASE)
    for kv, at in data.draw(st.lists(st.sampled_from(INT_FIELDS), min_size=1, max_size=3)):
        width = fz.int_width(kv)
        value = data.draw(st.sampled_from(EXTREMES)) % (1 << (8 * width))
        raw[at : at + width] = value.to_bytes(width, "little")
    path = tmp_path / "extreme.gguf"
    path.write_bytes(bytes(raw))
    outcome = fz.pipeline(path)
    assert outcome == "ok" or ("extreme.gguf" in outcome and "\n" not in outcome)


def test_the_mutation_offsets_point_at_the_values() -> None:
    # a wrong offset would fuzz the key names instead: check the block count's is right
    (kv, at) = next((kv, at) for kv, at in INT_FIELDS if kv.key == "llama.block_count")
    assert struct.unpack_from("<I", BASE, at)[0] == kv.value == 2
