"""Can the installed llama.cpp load this model? Checked from the header alone, before a download.

Architectures: llama.cpp keeps its architecture names as C strings in one table
(src/llama-arch.cpp LLM_ARCH_NAMES), so they are in libllama's read-only data; we look the name up
there (exactly, or as the tail of a longer string: linkers merge suffixes), in the library that
will really load the file. Without a findable library we fall back to
the list below, copied from the vendored llama.cpp of llama-cpp-python 0.3.36 (a test checks it
against that source when present).
"""

from __future__ import annotations

import functools
import importlib.util
import re
from dataclasses import dataclass, field
from pathlib import Path

from fitbench.core.gguf.manifest import ModelManifest

# llama-cpp-python 0.3.36, vendor/llama.cpp/src/llama-arch.cpp LLM_ARCH_NAMES (without "clip",
# a dummy for llama-quantize, and "(unknown)"): the architectures that llama.cpp build loads.
_ARCH_NAMES_0_3_36 = """
    llama llama4 deci falcon grok gpt2 gptj gptneox mpt baichuan starcoder refact bert
    modern-bert nomic-bert nomic-bert-moe neo-bert jina-bert-v2 jina-bert-v3 eurobert bloom
    stablelm qwen qwen2 qwen2moe qwen2vl qwen3 qwen3moe qwen3next qwen3vl qwen3vlmoe qwen35
    qwen35moe qwen4exp phi2 phi3 phimoe plamo plamo2 plamo3 codeshell orion internlm2 minicpm
    minicpm3 gemma gemma2 gemma3 gemma3n gemma4 gemma4-assistant gemma-embedding starcoder2
    mamba mamba2 maple jamba falcon-h1 xverse command-r cohere2 cohere2moe dbrx olmo olmo2 olmoe
    muse-glimmer openelm arctic deepseek deepseek2 deepseek2-ocr deepseek32 deepseek4 chatglm
    glm4 glm4moe glm-dsa bitnet t5 t5encoder jais jais2 nemotron nemotron_h nemotron_h_moe
    exaone exaone4 exaone-moe rwkv6 rwkv6qwen2 rwkv7 arwkv7 granite granitemoe granitehybrid
    graniteswitch granite_swa chameleon wavtokenizer-dec plm bailingmoe bailingmoe2 bailingmoe3
    dots1 dots3note arcee afmoe laguna ernie4_5 ernie4_5-moe hunyuan-moe hunyuan-dense
    hunyuan_vl hy_v3 hy_v4 smollm3 gpt-oss lfm2 lfm2moe dream smallthinker llada llada-moe
    seed_oss grovemoe apertus minimax-01 hrm_text minimax-m2 minimax-m3 cogvlm rnd1
    pangu-embedded mistral3 eagle3 dflash mistral4 paddleocr mimo2 step35 spark2_5 llama-embed
    maincoder kimi-linear kimi-k3 glm5-next talkie mellum nanbeige qwen3tts pockettts
"""
KNOWN_ARCHITECTURES_0_3_36 = frozenset(_ARCH_NAMES_0_3_36.split())

# the old Mixtral layout: one tensor per expert (blk.N.ffn_gate.E.weight) instead of merged
# ffn_gate_exps; current llama.cpp asks for the merged tensor and fails to load
_PER_EXPERT = re.compile(r"^blk\.\d+\.ffn_(gate|up|down)\.\d+\.weight$")
PER_EXPERT_REASON = (
    "missing tensor blk.0.ffn_down_exps.weight: this file stores every expert as its own tensor "
    "(blk.N.ffn_gate.E.weight), an old Mixtral layout that current llama.cpp no longer loads; "
    "use a conversion with merged expert tensors (ffn_*_exps)"
)


@dataclass(frozen=True)
class Compatibility:
    ok: bool
    reasons: list[str] = field(default_factory=list)


def _llama_library() -> Path | None:
    spec = importlib.util.find_spec("llama_cpp")  # without importing: no native library load
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for name in ("libllama.so", "libllama.dylib", "llama.dll"):
            for candidate in (Path(folder) / "lib" / name, Path(folder) / name):
                if candidate.is_file():
                    return candidate
    return None


@functools.lru_cache(maxsize=4)
def _library_strings(path: Path) -> frozenset[bytes]:
    data = path.read_bytes()
    return frozenset(s for s in data.split(b"\0") if 0 < len(s) < 64)


def is_known_architecture(arch: str, library: Path | None = None) -> bool:
    """True if the installed llama.cpp has `arch` in its architecture table."""
    lib = library if library is not None else _llama_library()
    if lib is not None:
        try:
            name = arch.encode()
            strings = _library_strings(lib)
            # the linker merges string literals that are suffixes of others ("qwen2" lives at
            # the tail of "rwkv6qwen2"), so a name may only appear as the end of a C string
            return name in strings or any(s.endswith(name) for s in strings)
        except OSError:
            pass
    return arch in KNOWN_ARCHITECTURES_0_3_36


def check_compatibility(manifest: ModelManifest) -> Compatibility:
    """Whether the installed llama.cpp loads this model, with a reason for every problem."""
    reasons: list[str] = []
    arch = manifest.architecture
    if not arch:
        reasons.append("the header has no general.architecture")
    elif not is_known_architecture(arch):
        reasons.append(f"architecture {arch!r} is unknown to the installed llama.cpp")
    if any(_PER_EXPERT.match(t.name) for t in manifest.tensors):
        reasons.append(PER_EXPERT_REASON)
    if arch and manifest.n_layer <= 0:
        reasons.append(f"the header has no {arch}.block_count")
    return Compatibility(ok=not reasons, reasons=reasons)
