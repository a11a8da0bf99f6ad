"""Built-in manifests: a llama-architecture GGUF described from catalog hparams alone.

Tensor names, shapes and order follow convert_hf_to_gguf.py's output for Llama / Mixtral (merged
expert tensors); types follow llama-quantize's rules (quant_rules). Metadata is what llama.cpp
needs to load the file, with a synthetic SentencePiece-style vocabulary of n_vocab tokens.
"""

from __future__ import annotations

from gguf import GGUF_DEFAULT_ALIGNMENT, GGUFValueType

from fitbench.core import limits
from fitbench.core.gguf.manifest import ModelManifest, TensorInfo, tensor_nbytes
from fitbench.core.gguf.reader import KV
from fitbench.core.gguf.writer import align, serialize_header
from fitbench.core.model.catalog import Arch
from fitbench.core.model.quant_rules import ModelShape, TypeChooser, normalise_quant

V = GGUFValueType
_TOKEN_NORMAL, _TOKEN_UNKNOWN, _TOKEN_CONTROL, _TOKEN_BYTE = 1, 2, 3, 6
_LETTERS = "etaoinshrdlucmfwypvbgkjqxz"


class ManifestError(ValueError):
    """The architecture cannot be described by a built-in manifest; the message says why."""


def synthetic_vocab(n_vocab: int) -> tuple[list[str], list[float], list[int]]:
    """<unk>, <s>, </s>, the 256 byte tokens, then unique word pieces (like Llama's SPM vocab).

    The byte tokens let llama.cpp's SPM tokenizer encode any text by byte fallback.
    """
    if n_vocab < 3 + 256 + 1:
        raise ManifestError(f"n_vocab {n_vocab} is too small: 260 or more (specials + 256 bytes)")
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [_TOKEN_UNKNOWN, _TOKEN_CONTROL, _TOKEN_CONTROL] + [_TOKEN_BYTE] * 256
    tokens.append("\u2581")  # the bare word boundary, as in Llama's vocab
    types.append(_TOKEN_NORMAL)
    j = 0
    while len(tokens) < n_vocab:
        piece, k = "", j
        while k >= 0:  # bijective base 26: e, t, ..., z, ee, et, ...
            piece = _LETTERS[k % 26] + piece
            k = k // 26 - 1
        # a word-initial piece ("\u2581the") and a word-internal one ("the")
        for token in ("\u2581" + piece, piece)[: n_vocab - len(tokens)]:
            tokens.append(token)
            types.append(_TOKEN_NORMAL)
        j += 1
    scores = [0.0, 0.0, 0.0] + [0.0] * 256 + [-float(j) for j in range(n_vocab - 259)]
    return tokens, scores, types


def _llama_tensor_specs(arch: Arch) -> list[tuple[str, tuple[int, ...]]]:
    """(name, ggml dims) in the order the converter writes them."""
    e, ff, hd = arch.n_embd, arch.n_ff, arch.head_dim
    kv = arch.n_head_kv * hd
    specs: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (e, arch.n_vocab))]
    for i in range(arch.n_layer):
        b = f"blk.{i}"
        specs += [
            (f"{b}.attn_norm.weight", (e,)),
            (f"{b}.attn_q.weight", (e, arch.n_head * hd)),
            (f"{b}.attn_k.weight", (e, kv)),
            (f"{b}.attn_v.weight", (e, kv)),
            (f"{b}.attn_output.weight", (arch.n_head * hd, e)),
            (f"{b}.ffn_norm.weight", (e,)),
        ]
        if arch.is_moe:
            x = arch.n_expert
            specs += [
                (f"{b}.ffn_gate_inp.weight", (e, x)),
                (f"{b}.ffn_gate_exps.weight", (e, ff, x)),
                (f"{b}.ffn_down_exps.weight", (ff, e, x)),
                (f"{b}.ffn_up_exps.weight", (e, ff, x)),
            ]
        else:
            specs += [
                (f"{b}.ffn_gate.weight", (e, ff)),
                (f"{b}.ffn_down.weight", (ff, e)),
                (f"{b}.ffn_up.weight", (e, ff)),
            ]
    specs += [("output_norm.weight", (e,)), ("output.weight", (e, arch.n_vocab))]
    return specs


def kept_layers(n_layer: int, layers: int | None) -> list[int]:
    """Original indices of the blocks a scaled twin keeps: spread over the whole depth, so the
    layer-dependent quant types (use_more_bits) mix as in the full model."""
    if layers is None or layers >= n_layer:
        return list(range(n_layer))
    if layers < 1:
        raise ManifestError(f"--layers must be at least 1 (got {layers})")
    if layers == 1:
        return [n_layer // 2]
    return [round(i * (n_layer - 1) / (layers - 1)) for i in range(layers)]


def _renumber(name: str, mapping: dict[int, int]) -> str | None:
    if not name.startswith("blk."):
        return name
    _, idx, rest = name.split(".", 2)
    new = mapping.get(int(idx))
    return None if new is None else f"blk.{new}.{rest}"


def _metadata(arch: Arch, name: str, file_type: int, n_layer: int) -> list[KV]:
    a = arch.architecture
    u32 = V.UINT32
    kvs = [
        KV("general.architecture", V.STRING, a),
        KV("general.name", V.STRING, name),
        KV("general.file_type", u32, file_type),
        KV("general.quantization_version", u32, 2),
        KV(f"{a}.vocab_size", u32, arch.n_vocab),
        KV(f"{a}.context_length", u32, arch.n_ctx_train),
        KV(f"{a}.embedding_length", u32, arch.n_embd),
        KV(f"{a}.block_count", u32, n_layer),
        KV(f"{a}.feed_forward_length", u32, arch.n_ff),
        KV(f"{a}.rope.dimension_count", u32, arch.head_dim),
        KV(f"{a}.attention.head_count", u32, arch.n_head),
        KV(f"{a}.attention.head_count_kv", u32, arch.n_head_kv),
        KV(f"{a}.attention.layer_norm_rms_epsilon", V.FLOAT32, 1e-5),
        KV(f"{a}.rope.freq_base", V.FLOAT32, float(arch.rope_freq_base)),
    ]
    if arch.is_moe:
        kvs += [
            KV(f"{a}.expert_count", u32, arch.n_expert),
            KV(f"{a}.expert_used_count", u32, arch.n_expert_used),
        ]
    tokens, scores, types = synthetic_vocab(arch.n_vocab)
    kvs += [
        KV("tokenizer.ggml.model", V.STRING, "llama"),
        KV("tokenizer.ggml.tokens", V.ARRAY, tokens, V.STRING),
        KV("tokenizer.ggml.scores", V.ARRAY, scores, V.FLOAT32),
        KV("tokenizer.ggml.token_type", V.ARRAY, types, V.INT32),
        KV("tokenizer.ggml.bos_token_id", u32, 1),
        KV("tokenizer.ggml.eos_token_id", u32, 2),
        KV("tokenizer.ggml.unknown_token_id", u32, 0),
        KV("tokenizer.ggml.add_bos_token", V.BOOL, True),
        KV("tokenizer.ggml.add_eos_token", V.BOOL, False),
    ]
    return kvs


def build_manifest(
    arch: Arch, quant: str, *, layers: int | None = None, name: str = "", source: str = ""
) -> ModelManifest:
    """The manifest of `arch` quantized as `quant` (optionally a scaled model of `layers` blocks).

    extra holds: kv_types (exact GGUF types for the writer), quant, n_layer_model, layers_kept.
    """
    if arch.architecture != "llama":
        raise ManifestError(
            f"built-in manifests cover the llama architecture only, not {arch.architecture!r}; "
            "make a twin from the model's real GGUF header instead"
        )
    quant = normalise_quant(quant)
    # a catalog entry is checked on load; an Arch built in code is checked here, since n_layer
    # and n_vocab become loops and lists (limits.py: what a real model can have)
    if not 1 <= arch.n_layer <= limits.MAX_LAYERS:
        raise ManifestError(f"n_layer {arch.n_layer} is outside 1..{limits.MAX_LAYERS}")
    if not arch.n_vocab <= limits.MAX_VOCAB:
        raise ManifestError(f"n_vocab {arch.n_vocab} is more than {limits.MAX_VOCAB}")
    if not (1 <= arch.n_head <= limits.MAX_HEADS and 1 <= arch.n_head_kv <= limits.MAX_HEADS):
        raise ManifestError(
            f"head counts {arch.n_head}/{arch.n_head_kv} are outside 1..{limits.MAX_HEADS}"
        )
    if not (0 <= arch.n_expert <= limits.MAX_EXPERTS):
        raise ManifestError(f"n_expert {arch.n_expert} is outside 0..{limits.MAX_EXPERTS}")
    if arch.n_embd % arch.n_head:
        raise ManifestError(f"n_embd {arch.n_embd} is not a multiple of n_head {arch.n_head}")
    specs = _llama_tensor_specs(arch)
    shape = ModelShape(
        architecture=arch.architecture,
        n_layer=arch.n_layer,
        n_head=arch.n_head,
        n_head_kv=arch.n_head_kv,
        n_expert=arch.n_expert,
        # llama.cpp's LLM_TYPE_70B: llama with 80 blocks and grouped-query attention
        is_70b=arch.n_layer == 80 and arch.n_head != arch.n_head_kv,
    )
    chooser = TypeChooser(quant, shape, [n for n, _ in specs])
    # types are chosen on the full-depth model: the rules depend on the original layer index
    typed = [(n, dims, int(chooser.choose(n, dims))) for n, dims in specs]

    keep = kept_layers(arch.n_layer, layers)
    mapping = {orig: new for new, orig in enumerate(keep)}
    tensors: list[TensorInfo] = []
    offset = 0
    for n, dims, ggml_type in typed:
        new_name = _renumber(n, mapping)
        if new_name is None:
            continue
        n_bytes = tensor_nbytes(dims, ggml_type)
        tensors.append(TensorInfo(new_name, dims, ggml_type, offset, n_bytes))
        offset = align(offset + n_bytes, GGUF_DEFAULT_ALIGNMENT)

    kvs = _metadata(arch, name or f"fitbench {arch.architecture}", int(chooser.ftype), len(keep))
    header = serialize_header(kvs, tuple(tensors))
    data_size = (tensors[-1].offset + tensors[-1].n_bytes) if tensors else 0
    return ModelManifest(
        source=source or f"manifest:{name}/{quant}",
        metadata={kv.key: kv.value for kv in kvs},
        tensors=tuple(tensors),
        alignment=GGUF_DEFAULT_ALIGNMENT,
        data_offset=len(header),
        file_size=len(header) + data_size,
        extra={
            "kv_types": {
                kv.key: (int(kv.vtype), int(kv.item_type) if kv.item_type is not None else None)
                for kv in kvs
            },
            "quant": quant,
            "n_layer_model": arch.n_layer,
            "layers_kept": keep,
            "built_in": True,
        },
    )
