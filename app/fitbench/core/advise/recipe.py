"""How to run the recommended deployment elsewhere: llama-server, llama-cpp-python, Ollama,
LM Studio.

Every recipe runs a placement that fits this machine's plan: the recommended one where the tool
can express it, else the best placement the tool can express (the advice picks it and predicts
its own speed; a note says why it differs). The model is the real downloaded file where there
is one, else a Hub reference the tool resolves itself. Flash attention, KV cache types, context,
parallel sequences, batch sizes and threads are those the benchmark ran with. Settings without
an equivalent in a tool are said so, not silently dropped.
"""

from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fitbench.core.model.catalog import Model
from fitbench.core.plan.memory import ggml_kv_type
from fitbench.core.plan.placement import Placement

TOOLS = ("llama_server", "llama_cpp_python", "ollama", "lm_studio")
TOOL_NAMES = {
    "llama_server": "llama-server",
    "llama_cpp_python": "llama-cpp-python",
    "ollama": "Ollama",
    "lm_studio": "LM Studio",
}
DEFAULT_N_BATCH, DEFAULT_N_UBATCH = 2048, 512  # llama.cpp's and llama-bench's defaults


def can_express(tool: str, placement: Placement, n_layer: int) -> str:
    """ "" when `tool` can run `placement` as it is; else why not (a clause for a sentence)."""
    experts = placement.experts_on_cpu(n_layer) if placement.n_cpu_moe else 0
    if tool == "llama_server":
        return ""
    if tool == "llama_cpp_python" and experts:
        return (
            "its Llama() has no argument for keeping experts on the CPU (llama.cpp's --n-cpu-moe)"
        )
    if tool == "ollama":
        if experts:
            return "it has no setting for keeping experts on the CPU (llama.cpp's --n-cpu-moe)"
        if placement.tensor_split:
            return "it splits layers over GPUs by itself (no tensor split setting)"
    if tool == "lm_studio":
        if not placement.all_on_gpu(n_layer) and placement.offloaded(n_layer) == n_layer:
            return (
                f"its slider's top value ({n_layer} of {n_layer}) offloads every layer, so it "
                f"cannot leave only the first layer on the CPU"
            )
        if experts and experts < n_layer:
            return (
                "it keeps the experts of all layers on the CPU or of none, not of the first "
                f"{experts} layers"
            )
        if placement.tensor_split:
            return "it splits layers over GPUs by itself (no tensor split setting)"
    return ""


@dataclass(frozen=True)
class RunSettings:
    """The llama.cpp settings the benchmark ran with, carried into every recipe."""

    ctx: int  # per sequence
    batch: int  # parallel sequences
    threads: int
    flash_attn: bool | None = None  # None: llama.cpp's auto
    type_k: str = "f16"
    type_v: str = "f16"
    n_batch: int = DEFAULT_N_BATCH
    n_ubatch: int = DEFAULT_N_UBATCH
    source: str = "llama.cpp's defaults (no benchmark record says otherwise)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ctx": self.ctx,
            "parallel": self.batch,
            "threads": self.threads,
            "flash_attn": self.flash_attn,
            "type_k": self.type_k,
            "type_v": self.type_v,
            "n_batch": self.n_batch,
            "n_ubatch": self.n_ubatch,
            "source": self.source,
        }


def _most_common(values: Sequence[Any]) -> Any:
    return Counter(values).most_common(1)[0][0] if values else None


def run_settings(
    records: Sequence[Mapping[str, Any]],
    model_id: str,
    quant: str,
    *,
    ctx: int,
    batch: int,
    threads: int,
) -> RunSettings:
    """The settings of the finished records of this model quant (else of this model, else of
    any record): what the speeds in the advice were measured with. flash_attn is what llama.cpp
    really did (a record's effective value), so the recipe asks for it explicitly."""
    ok = [r for r in records if r.get("status", "ok") == "ok"]
    levels = (
        ("quant", [r for r in ok if r.get("model_id") == model_id and _q(r) == quant.upper()]),
        ("model", [r for r in ok if r.get("model_id") == model_id]),
        ("machine", ok),
    )
    found = next(((what, rows) for what, rows in levels if rows), None)
    if found is None:
        return RunSettings(ctx, batch, threads)
    what, rows = found
    fa = _most_common([bool(r["flash_attn"]) for r in rows if r.get("flash_attn") is not None])
    n_threads = _most_common([int(r["n_threads"]) for r in rows if r.get("n_threads")])
    words = {"quant": "this model quant's", "model": "this model's", "machine": "this machine's"}
    return RunSettings(
        ctx=ctx,
        batch=batch,
        threads=n_threads or threads,
        flash_attn=fa,
        type_k=str(_most_common([r.get("type_k") or "f16" for r in rows])),
        type_v=str(_most_common([r.get("type_v") or "f16" for r in rows])),
        n_batch=int(_most_common([int(r.get("n_batch") or DEFAULT_N_BATCH) for r in rows])),
        n_ubatch=int(_most_common([int(r.get("n_ubatch") or DEFAULT_N_UBATCH) for r in rows])),
        source=f"as benchmarked ({len(rows)} of {words[what]} records)",
    )


def _q(record: Mapping[str, Any]) -> str:
    return str(record.get("quant") or "").upper()


@dataclass(frozen=True)
class ModelRef:
    """Where a tool finds the file: a local path, else the Hub repository and quant."""

    path: Path | None
    repo: str
    quant: str
    file: str
    joined_parts: tuple[str, ...] = ()  # TheBloke-style parts: no tool can fetch them itself
    sharded: bool = False  # llama.cpp gguf-split shards (Ollama cannot load them)

    @classmethod
    def of(cls, model: Model, quant: str, path: Path | None) -> ModelRef:
        q = model.quant(quant)
        return cls(
            path=path,
            repo=model.repo,
            quant=q.quant,
            file=q.file,
            joined_parts=q.parts if q.is_joined else (),
            sharded=q.is_sharded,
        )

    @property
    def hub_ok(self) -> bool:
        return self.path is None and bool(self.repo) and not self.joined_parts


@dataclass(frozen=True)
class ToolPlacement:
    """The placement one tool's recipe runs, its predicted speed, and why it differs."""

    placement: Placement
    why: str = ""  # "" when it is the recommended placement
    expected: dict[str, Any] = field(default_factory=dict)  # {"tg_ts": {value, basis}, ...}


def _python_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f"{x:g}" for x in value) + "]"
    return str(value)


def _fa_flag(fa: bool | None) -> str:
    return "auto" if fa is None else "on" if fa else "off"


def _server(ref: ModelRef, p: Placement, n: int, s: RunSettings) -> str:
    if ref.path is not None:
        source = f"-m {shlex.quote(str(ref.path))}"
    elif ref.hub_ok:
        source = f"-hf {ref.repo}:{ref.quant}"
    else:
        source = f"-m {shlex.quote(ref.file)}"
    ngl, *placement_flags = p.cli_args(n)
    parts = [
        "llama-server",
        source,
        f"-c {s.ctx * s.batch}",  # llama-server shares -c among its -np slots
        f"-np {s.batch}",
        ngl,
        *placement_flags,
        f"-fa {_fa_flag(s.flash_attn)}",
        f"-ctk {s.type_k}",
        f"-ctv {s.type_v}",
        f"-b {s.n_batch}",
        f"-ub {s.n_ubatch}",
        f"-t {s.threads}",
        "-fit off",  # the placement above, not llama.cpp's own fit of unset parameters
        "--host 127.0.0.1 --port 8080",
    ]
    return " ".join(parts)


def _python(ref: ModelRef, p: Placement, n: int, s: RunSettings) -> str:
    kwargs = p.llama_kwargs(n)
    args = [f"n_gpu_layers={kwargs.pop('n_gpu_layers')}"]
    args += [
        f"n_ctx={s.ctx}",
        f"n_batch={s.n_batch}",
        f"n_ubatch={s.n_ubatch}",
        f"n_threads={s.threads}",
    ]
    if s.flash_attn is not None:
        args.append(f"flash_attn={s.flash_attn}")
    for name, value in (("type_k", s.type_k), ("type_v", s.type_v)):
        if value.lower() != "f16":
            args.append(f"{name}={ggml_kv_type(value)}")  # GGML_TYPE_* number
    args += [f"{k}={_python_value(v)}" for k, v in kwargs.items()]
    if ref.path is None and ref.hub_ok:
        return f'Llama.from_pretrained("{ref.repo}", "{ref.file}", ' + ", ".join(args) + ")"
    path = str(ref.path) if ref.path is not None else ref.file
    return f"Llama(model_path={path!r}, " + ", ".join(args) + ")"


def _ollama(ref: ModelRef, p: Placement, n: int, s: RunSettings) -> str:
    if ref.path is not None:
        source = str(ref.path)
    elif ref.hub_ok:
        source = f"hf.co/{ref.repo}:{ref.quant}"
    else:
        source = f"./{ref.file}"
    lines = [
        f"FROM {source}",
        f"PARAMETER num_ctx {s.ctx}",
        f"PARAMETER num_gpu {p.offloaded(n)}",
        f"PARAMETER num_thread {s.threads}",
        f"PARAMETER num_batch {s.n_batch}",
    ]
    env = []
    if s.batch > 1:
        env.append(f"OLLAMA_NUM_PARALLEL={s.batch}")
    if s.flash_attn is not None:
        env.append(f"OLLAMA_FLASH_ATTENTION={int(s.flash_attn)}")
    if s.type_k != "f16" or s.type_v != "f16":
        env.append(f"OLLAMA_KV_CACHE_TYPE={s.type_k}")
    if env:
        lines.append(f"# serve with: {' '.join(env)} ollama serve")
    return "\n".join(lines)


def _lm_studio(ref: ModelRef, p: Placement, n: int, s: RunSettings) -> str:
    settings = [
        f"Model: {ref.path if ref.path is not None else f'{ref.repo} ({ref.file})'}",
        f"GPU Offload: {min(p.offloaded(n), n)} of {n} layers",
        f"Context Length: {s.ctx}",
        f"CPU Thread Pool Size: {s.threads}",
        f"Evaluation Batch Size: {s.n_batch}",
    ]
    if p.n_cpu_moe and p.experts_on_cpu(n) >= n:
        settings.append("Force Model Expert Weights onto CPU: on")
    if s.flash_attn is not None:
        settings.append(f"Flash Attention: {'on' if s.flash_attn else 'off'}")
    if s.type_k != "f16" or s.type_v != "f16":
        settings.append(f"K Cache Quantization Type: {s.type_k}; V: {s.type_v}")
    if s.batch > 1:
        settings.append(f"Max Concurrent Predictions: {s.batch}")
    return "; ".join(settings)


_WRITERS = {"llama_server": _server, "llama_cpp_python": _python, "ollama": _ollama}
_WRITERS["lm_studio"] = _lm_studio


def recipe(
    model: Model,
    quant: str,
    placement: Placement,
    ctx: int,
    batch: int,
    threads: int,
    *,
    settings: RunSettings | None = None,
    tools: Mapping[str, ToolPlacement] | None = None,
    model_path: Path | None = None,
) -> dict[str, Any]:
    """The recipes of one deployment. `tools` gives each tool its own placement (the advice
    passes the best each tool can express); a tool without one runs `placement`."""
    n = model.arch.n_layer
    s = settings or RunSettings(ctx, batch, threads)
    ref = ModelRef.of(model, quant, model_path)
    notes: list[str] = []
    out: dict[str, Any] = {}
    per_tool: dict[str, Any] = {}
    for tool in TOOLS:
        tp = (tools or {}).get(tool) or ToolPlacement(placement)
        out[tool] = _WRITERS[tool](ref, tp.placement, n, s)
        why = tp.why or can_express(tool, tp.placement, n)
        if tp.why:
            notes.append(f"{TOOL_NAMES[tool]}: {tp.why}")
        elif why:  # no advice to pick another placement: say what the tool cannot do
            notes.append(f"{TOOL_NAMES[tool]} cannot run this placement as planned: {why}.")
        per_tool[tool] = {
            "placement": {
                "n_gpu_layers": tp.placement.n_gpu_layers,
                "n_cpu_moe": tp.placement.n_cpu_moe,
                "tensor_split": list(tp.placement.tensor_split or ()) or None,
                "description": tp.placement.words(n),
            },
            "same_as_recommended": tp.placement == placement,
            "why": tp.why,
            "expected": tp.expected,
        }
    if ref.path is None and ref.joined_parts:
        notes.append(
            f"{ref.file} comes in {len(ref.joined_parts)} parts that no tool joins by itself: "
            f"run `fitbench download --model {model.id} --quant {ref.quant}` (it joins them), "
            "then use the joined file's path."
        )
    if ref.sharded:
        notes.append(
            f"{ref.file} is the first of {len(model.quant(quant).parts)} llama.cpp shards; "
            "llama.cpp loads the rest from beside it, Ollama cannot load sharded files."
        )
    if s.flash_attn is None:
        notes.append("No record says whether flash attention ran: llama.cpp decides (auto).")
    if s.batch > 1:
        notes.append(
            f"llama-server divides -c among its {s.batch} slots: each sequence gets {s.ctx} tokens."
        )
    out.update(
        download=f"fitbench download --model {model.id} --quant {quant}",
        model_source=str(ref.path) if ref.path is not None else f"hf.co/{ref.repo}:{ref.quant}",
        settings=s.to_dict(),
        tools=per_tool,
        notes=notes,
    )
    return out


__all__ = [
    "TOOLS",
    "TOOL_NAMES",
    "ModelRef",
    "RunSettings",
    "ToolPlacement",
    "can_express",
    "recipe",
    "run_settings",
]
