"""Small llama-architecture GGUF files that llama.cpp really loads, for header and planner tests.

`write_llama_gguf` writes dense or MoE (merged or the old per-expert layout) models with real
tokenizer metadata and quantized tensors whose block scales are small, so llama.cpp computes on
them without NaNs. The benchmarks in benchmarks/memory_*.py use it too. The tests here check the
builder itself against the `gguf` package's reader.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader, GGUFWriter

Q = GGMLQuantizationType
# byte offsets of the f16 block scales (d, dmin) inside one block: kept small and finite
_SCALE_OFFSETS: dict[GGMLQuantizationType, tuple[int, ...]] = {
    Q.Q8_0: (0,),
    Q.Q4_0: (0,),
    Q.Q4_K: (0, 2),
    Q.Q5_K: (0, 2),
    Q.Q6_K: (208,),
    Q.Q2_K: (80, 82),
    Q.Q3_K: (108,),
}


@dataclass(frozen=True)
class LlamaShape:
    n_layer: int = 2
    n_embd: int = 256  # row lengths must be multiples of the K-quant block (256)
    n_head: int = 4
    n_head_kv: int = 2
    n_ff: int = 512
    n_vocab: int = 320
    n_expert: int = 0
    n_expert_used: int = 0
    n_ctx_train: int = 4096


def _tensor_data(
    rng: np.random.Generator, shape: tuple[int, ...], qtype: GGMLQuantizationType
) -> np.ndarray:
    """Data in numpy order (ggml shape reversed): floats for F32/F16, raw blocks otherwise."""
    np_shape = tuple(reversed(shape))
    if qtype == Q.F32:
        return rng.normal(0.0, 0.02, np_shape).astype(np.float32)
    if qtype == Q.F16:
        return rng.normal(0.0, 0.02, np_shape).astype(np.float16)
    block, type_size = GGML_QUANT_SIZES[qtype]
    assert shape[0] % block == 0, f"row length {shape[0]} is not a multiple of {block}"
    rows = int(np.prod(np_shape[:-1])) if len(np_shape) > 1 else 1
    n_blocks = shape[0] // block
    raw = rng.integers(0, 256, (rows, n_blocks, type_size), dtype=np.uint8)
    scale = np.frombuffer(np.float16(0.001).tobytes(), dtype=np.uint8)
    for off in _SCALE_OFFSETS.get(qtype, ()):
        raw[:, :, off : off + 2] = scale
    return raw.reshape(*np_shape[:-1], n_blocks * type_size)


def llama_tensors(
    shape: LlamaShape,
    weight_type: GGMLQuantizationType = Q.Q8_0,
    per_expert_layout: bool = False,
    tied_output: bool = False,
) -> Iterator[tuple[str, tuple[int, ...], GGMLQuantizationType]]:
    """(name, ggml shape, type) of every tensor of a llama-architecture model."""
    s = shape
    head_dim = s.n_embd // s.n_head
    n_embd_kv = head_dim * s.n_head_kv
    yield "token_embd.weight", (s.n_embd, s.n_vocab), weight_type
    for i in range(s.n_layer):
        p = f"blk.{i}."
        yield p + "attn_norm.weight", (s.n_embd,), Q.F32
        yield p + "attn_q.weight", (s.n_embd, s.n_embd), weight_type
        yield p + "attn_k.weight", (s.n_embd, n_embd_kv), weight_type
        yield p + "attn_v.weight", (s.n_embd, n_embd_kv), weight_type
        yield p + "attn_output.weight", (s.n_embd, s.n_embd), weight_type
        yield p + "ffn_norm.weight", (s.n_embd,), Q.F32
        if s.n_expert == 0:
            yield p + "ffn_gate.weight", (s.n_embd, s.n_ff), weight_type
            yield p + "ffn_up.weight", (s.n_embd, s.n_ff), weight_type
            yield p + "ffn_down.weight", (s.n_ff, s.n_embd), weight_type
            continue
        yield p + "ffn_gate_inp.weight", (s.n_embd, s.n_expert), Q.F32
        if per_expert_layout:
            for e in range(s.n_expert):
                yield f"{p}ffn_gate.{e}.weight", (s.n_embd, s.n_ff), weight_type
                yield f"{p}ffn_down.{e}.weight", (s.n_ff, s.n_embd), weight_type
                yield f"{p}ffn_up.{e}.weight", (s.n_embd, s.n_ff), weight_type
        else:
            yield p + "ffn_gate_exps.weight", (s.n_embd, s.n_ff, s.n_expert), weight_type
            yield p + "ffn_up_exps.weight", (s.n_embd, s.n_ff, s.n_expert), weight_type
            yield p + "ffn_down_exps.weight", (s.n_ff, s.n_embd, s.n_expert), weight_type
    yield "output_norm.weight", (s.n_embd,), Q.F32
    if not tied_output:
        yield "output.weight", (s.n_embd, s.n_vocab), weight_type


def add_llama_metadata(writer: GGUFWriter, shape: LlamaShape) -> None:
    s = shape
    writer.add_name("fitbench test model")
    writer.add_context_length(s.n_ctx_train)
    writer.add_embedding_length(s.n_embd)
    writer.add_block_count(s.n_layer)
    writer.add_feed_forward_length(s.n_ff)
    writer.add_rope_dimension_count(s.n_embd // s.n_head)
    writer.add_head_count(s.n_head)
    writer.add_head_count_kv(s.n_head_kv)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    if s.n_expert:
        writer.add_expert_count(s.n_expert)
        writer.add_expert_used_count(s.n_expert_used)
    writer.add_tokenizer_model("llama")
    special = ["<unk>", "<s>", "</s>"]
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    n_plain = max(0, s.n_vocab - len(special) - len(byte_tokens))
    tokens = special + byte_tokens + [f"t{i}" for i in range(n_plain)]
    tokens = tokens[: s.n_vocab]
    writer.add_token_list(tokens)
    writer.add_token_scores([0.0] * len(tokens))
    writer.add_token_types([2, 3, 3] + [6] * len(byte_tokens) + [1] * n_plain)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)


def write_llama_gguf(
    path: Path,
    shape: LlamaShape | None = None,
    weight_type: GGMLQuantizationType = Q.Q8_0,
    *,
    per_expert_layout: bool = False,
    tied_output: bool = False,
    seed: int = 0,
    sparse: bool = False,
) -> Path:
    """A loadable llama-architecture GGUF (MoE when shape.n_expert > 0).

    sparse=True writes the header only and extends the file to its full size without writing
    tensor data (a sparse file): enough for header tests and llama.cpp's no_alloc loads of
    full-size shapes, no disk used.
    """
    shape = shape or LlamaShape()
    rng = np.random.default_rng(seed)
    writer = GGUFWriter(str(path), "llama")
    add_llama_metadata(writer, shape)
    tensors = list(llama_tensors(shape, weight_type, per_expert_layout, tied_output))
    if sparse:
        for name, dims, qtype in tensors:
            block, type_size = GGML_QUANT_SIZES[qtype]
            n_bytes = int(np.prod(dims)) // block * type_size
            byte_shape = (*reversed(dims[1:]), dims[0] // block * type_size)
            writer.add_tensor_info(name, byte_shape, np.dtype(np.uint8), n_bytes, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        writer.close()
        total = -(-path.stat().st_size // 32) * 32  # data starts aligned
        for _name, dims, qtype in tensors:
            block, type_size = GGML_QUANT_SIZES[qtype]
            total += -(-(int(np.prod(dims)) // block * type_size) // 32) * 32
        with path.open("r+b") as f:
            f.truncate(total)
        return path
    for name, dims, qtype in tensors:
        data = _tensor_data(rng, dims, qtype)
        if name.endswith("norm.weight"):
            data = np.ones_like(data)  # norms ~1, as in real models
        raw_dtype = None if qtype in (Q.F32, Q.F16) else qtype
        writer.add_tensor(name, data, raw_dtype=raw_dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_builder_writes_what_the_gguf_package_reads(tmp_path: Path) -> None:
    shape = LlamaShape(n_expert=4, n_expert_used=2)
    path = write_llama_gguf(tmp_path / "moe.gguf", shape, Q.Q4_K)
    reader = GGUFReader(path)
    names = {t.name: t for t in reader.tensors}
    expected = list(llama_tensors(shape, Q.Q4_K))
    assert len(names) == len(expected)
    for name, dims, qtype in expected:
        assert tuple(int(d) for d in names[name].shape) == dims
        assert names[name].tensor_type == qtype
