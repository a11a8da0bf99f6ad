"""llama.cpp's per-tensor quantization type rules, so a built-in manifest matches a real file.

A port of `llama_tensor_get_type_impl` / `tensor_type_fallback` / `tensor_allows_quantization`
(vendor/llama.cpp/src/llama-quant.cpp, llama-cpp-python 0.3.36) for the file types FitBench
offers. Only the branches those file types reach are ported; the IQ and MXFP4 mixes are not.
"""

from __future__ import annotations

from dataclasses import dataclass

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

T = GGMLQuantizationType


class QuantRuleError(ValueError):
    """A quantization FitBench cannot build a manifest for; the message lists the known ones."""


# quant name -> (llama_ftype, default tensor type), as llama_ftype_get_default_type
FILE_TYPES: dict[str, tuple[LlamaFileType, GGMLQuantizationType]] = {
    "F16": (LlamaFileType.MOSTLY_F16, T.F16),
    "Q8_0": (LlamaFileType.MOSTLY_Q8_0, T.Q8_0),
    "Q6_K": (LlamaFileType.MOSTLY_Q6_K, T.Q6_K),
    "Q5_K_M": (LlamaFileType.MOSTLY_Q5_K_M, T.Q5_K),
    "Q5_K_S": (LlamaFileType.MOSTLY_Q5_K_S, T.Q5_K),
    "Q5_1": (LlamaFileType.MOSTLY_Q5_1, T.Q5_1),
    "Q5_0": (LlamaFileType.MOSTLY_Q5_0, T.Q5_0),
    "Q4_K_M": (LlamaFileType.MOSTLY_Q4_K_M, T.Q4_K),
    "Q4_K_S": (LlamaFileType.MOSTLY_Q4_K_S, T.Q4_K),
    "Q4_1": (LlamaFileType.MOSTLY_Q4_1, T.Q4_1),
    "Q4_0": (LlamaFileType.MOSTLY_Q4_0, T.Q4_0),
    "Q3_K_L": (LlamaFileType.MOSTLY_Q3_K_L, T.Q3_K),
    "Q3_K_M": (LlamaFileType.MOSTLY_Q3_K_M, T.Q3_K),
    "Q3_K_S": (LlamaFileType.MOSTLY_Q3_K_S, T.Q3_K),
    "Q2_K": (LlamaFileType.MOSTLY_Q2_K, T.Q2_K),
}


def normalise_quant(quant: str) -> str:
    name = quant.strip().upper()
    if name not in FILE_TYPES:
        known = ", ".join(FILE_TYPES)
        raise QuantRuleError(f"unknown quantization {quant!r} (known: {known})")
    return name


@dataclass(frozen=True)
class ModelShape:
    """What the rules look at besides the tensor itself (hparams and llama.cpp's model type)."""

    architecture: str
    n_layer: int
    n_head: int
    n_head_kv: int
    n_expert: int
    is_70b: bool  # llama.cpp's LLM_TYPE_70B (llama: 80 layers with grouped-query attention)

    @property
    def n_gqa(self) -> int:
        return self.n_head // self.n_head_kv if self.n_head_kv else 0


@dataclass
class _Counters:
    """quantize_state_impl's running counters: some rules depend on the tensor's position."""

    n_attention_wv: int
    i_attention_wv: int = 0
    i_ffn_down: int = 0


def _category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for needle, cat in (
        ("attn_qkv.weight", "attn_qkv"),
        ("attn_kv_b.weight", "attn_kv_b"),
        ("attn_v.weight", "attn_v"),
        ("attn_k.weight", "attn_k"),
        ("attn_q.weight", "attn_q"),
        ("attn_output.weight", "attn_output"),
        ("ffn_up", "ffn_up"),
        ("ffn_gate", "ffn_gate"),
        ("ffn_down", "ffn_down"),
    ):
        if needle in name:
            return cat
    return "other"


def allows_quantization(name: str, n_dims: int) -> bool:
    """tensor_allows_quantization for llama-family tensor names."""
    if n_dims < 2 or not name.endswith("weight"):
        return False
    return "_norm.weight" not in name and "ffn_gate_inp.weight" not in name


def use_more_bits(i_layer: int, n_layer: int) -> bool:
    return (
        i_layer < n_layer // 8 or i_layer >= 7 * n_layer // 8 or (i_layer - n_layer // 8) % 3 == 2
    )


def _layer_of(name: str) -> int:
    return int(name.split(".")[1])


def _fallback(ncols: int, target: GGMLQuantizationType) -> GGMLQuantizationType:
    block = GGML_QUANT_SIZES[target][0]
    if ncols % block == 0:
        return target
    demoted = {
        T.Q2_K: T.Q4_0,
        T.Q3_K: T.Q4_0,
        T.Q4_K: T.Q5_0,
        T.Q5_K: T.Q5_1,
        T.Q6_K: T.Q8_0,
    }.get(target, target)
    if ncols % GGML_QUANT_SIZES[demoted][0]:
        return T.F16
    return demoted


class TypeChooser:
    """Chooses each tensor's type in file order, as `llama-quantize` does for one ftype."""

    def __init__(self, quant: str, shape: ModelShape, tensor_names: list[str]) -> None:
        self.quant = normalise_quant(quant)
        self.ftype, self.default_type = FILE_TYPES[self.quant]
        self.shape = shape
        n_wv = sum(1 for n in tensor_names if _category(n) in ("attn_v", "attn_qkv", "attn_kv_b"))
        self._counters = _Counters(n_attention_wv=n_wv)
        self._tied_embeddings = "output.weight" not in tensor_names

    def choose(self, name: str, dims: tuple[int, ...]) -> GGMLQuantizationType:
        """The type of tensor `name` (ggml dims, row length first); call in file order."""
        if not allows_quantization(name, len(dims)):
            return T.F32
        new_type = self.default_type
        if new_type in (T.F16, T.F32):
            return new_type
        new_type = self._impl(name, dims, new_type)
        return _fallback(dims[0], new_type)

    def _impl(  # mirrors llama.cpp's branch structure on purpose
        self, name: str, dims: tuple[int, ...], new_type: GGMLQuantizationType
    ) -> GGMLQuantizationType:
        F = LlamaFileType
        ftype, s, c = self.ftype, self.shape, self._counters
        cat = _category(name)
        if cat == "output" or (self._tied_embeddings and cat == "token_embd"):
            if dims[0] % GGML_QUANT_SIZES[new_type][0]:
                return T.Q8_0
            return new_type if new_type == T.Q8_0 else T.Q6_K
        if cat == "token_embd":
            return new_type
        if cat in ("attn_v", "attn_qkv", "attn_kv_b"):  # llama.cpp's category_is_attn_v
            if ftype == F.MOSTLY_Q2_K:
                new_type = T.Q4_K if s.n_gqa >= 4 else T.Q3_K
            elif ftype == F.MOSTLY_Q3_K_M:
                new_type = T.Q5_K if c.i_attention_wv < 2 else T.Q4_K
            elif ftype == F.MOSTLY_Q3_K_L:
                new_type = T.Q5_K
            elif ftype in (F.MOSTLY_Q4_K_M, F.MOSTLY_Q5_K_M) and use_more_bits(
                c.i_attention_wv, c.n_attention_wv
            ):
                new_type = T.Q6_K
            elif ftype == F.MOSTLY_Q4_K_S and c.i_attention_wv < 4:
                new_type = T.Q5_K
            if s.is_70b and new_type in (T.Q3_K, T.Q4_K):
                # 8 heads share attn_v in the 70B: more bits for almost no size
                new_type = T.Q5_K
            if s.n_expert == 8:
                new_type = T.Q8_0
            c.i_attention_wv += 1
        elif cat == "attn_k":
            if s.n_expert == 8:
                new_type = T.Q8_0
        elif cat == "ffn_down":
            i_layer = _layer_of(name) if s.n_expert > 1 else c.i_ffn_down
            n_layer = s.n_layer
            if ftype == F.MOSTLY_Q2_K:
                new_type = T.Q3_K
            elif ftype == F.MOSTLY_Q3_K_M:
                new_type = T.Q5_K if i_layer < n_layer // 16 else T.Q4_K
            elif ftype == F.MOSTLY_Q3_K_L:
                new_type = T.Q5_K
            elif ftype == F.MOSTLY_Q4_K_M:
                if use_more_bits(i_layer, n_layer):
                    new_type = T.Q6_K
            elif ftype == F.MOSTLY_Q5_K_M and use_more_bits(i_layer, n_layer):
                new_type = T.Q6_K
            elif ftype == F.MOSTLY_Q4_K_S and i_layer < n_layer // 8:
                new_type = T.Q5_K
            c.i_ffn_down += 1
        elif cat == "attn_output":
            if s.n_expert == 8:
                if ftype in (
                    F.MOSTLY_Q2_K,
                    F.MOSTLY_Q3_K_S,
                    F.MOSTLY_Q3_K_M,
                    F.MOSTLY_Q4_K_S,
                    F.MOSTLY_Q4_K_M,
                ):
                    new_type = T.Q5_K
            elif ftype == F.MOSTLY_Q2_K:
                new_type = T.Q3_K
            elif ftype == F.MOSTLY_Q3_K_M:
                new_type = T.Q4_K
            elif ftype == F.MOSTLY_Q3_K_L:
                new_type = T.Q5_K
        return new_type
