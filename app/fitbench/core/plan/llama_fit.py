"""What llama.cpp's own fit (`--fit`, on by default in llama-server and llama-cli; llama-fit-params
prints it) would choose on this machine, emulated with FitBench's planner.

That is what a user gets without FitBench, so the advice compares its pick with it. The
emulation follows common/fit.cpp of the llama.cpp vendored in llama-cpp-python 0.3.36
(common_params_fit_impl), for one GPU:

1. Project the memory of the defaults (every layer on the GPU, the context asked for; n_ctx 0
   means the model's training context). If the GPU keeps at least the target margin free
   (`-fitt`, 1024 MiB per device by default), nothing changes.
2. Only when the context was left to it (n_ctx 0): shrink it toward `-fitc` (4096) by linear
   interpolation between the projections at the largest and smallest context, rounded down to
   256; for one GPU that ends the fit. A context the user set is never changed.
3. Fill layers back to front ("method of false position" over the layer count, each guess
   projected again): for a dense model whole layers; for a MoE model layers whose routed
   experts stay in host memory.
4. MoE, when every layer fits without its experts: give layers back their experts, front to
   back, by the same search; then try to put part of one more layer's experts on the GPU
   (ffn_up, then also ffn_gate).

What llama.cpp projects per device is its own buffers only (weights + KV cache + compute
buffer), against the memory free after its CUDA context exists; FitBench's plan also counts
the CUDA context, cuBLAS and the pool (plan.gpu_buffers), so the projection here is the plan's
weights + kv + compute, and the free memory is the free VRAM at detection less
LLAMA_FIT_CONTEXT_BYTES.

Where the emulation may differ from llama.cpp (docs/memory.md, "llama.cpp's own fit"):
- The memory of each step is FitBench's plan (within ~100 MiB of NVML, compute buffers within
  32 MiB of llama.cpp's own), not llama.cpp's no_alloc dry run.
- LLAMA_FIT_CONTEXT_BYTES, the CUDA context already held when llama.cpp reads the free memory,
  is an estimate (not measured; `scripts/gpu-check fitcompare` measures it).
- llama.cpp keeps the experts of the *last* blocks of a partial range on the CPU (-ot patterns);
  FitBench's n_cpu_moe keeps those of the *first* blocks. Counts are the same; bytes differ by
  the quant mix of those blocks (Q4_K_M has Q6_K ffn_down in the first and last eighth).
  In this llama.cpp a range of n_part "partial layers" ends at the output layer, which has no
  experts, so n_part partial layers leave the experts of n_part - 1 blocks on the CPU; this is
  what is planned and reported.
- The partial extra layer (ffn_up / ffn_gate experts of one more block on the GPU) has no
  Placement: it is reported in words and its bytes are checked, the Placement returned is the
  whole-layer one.
- Flash attention "auto" is taken as on (what CUDA builds resolve it to).
- Several GPUs (tensor split by layer counts, overflow to the next GPU) are not emulated: the
  result says so and has no placement.
- llama.cpp's fit assumes unlimited host memory; so does this (to_dict adds FitBench's plan of
  the choice, RAM included).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fitbench.core.gguf.manifest import ModelManifest
from fitbench.core.plan import memory
from fitbench.core.plan.placement import Placement

MiB = 1 << 20

LLAMA_FIT_TARGET_BYTES = 1024 * MiB  # -fitt default (common.h fit_params_target)
LLAMA_FIT_MIN_CTX = 4096  # -fitc default (common.h fit_params_min_ctx)
# The CUDA context llama.cpp's process holds when it asks the GPU for free memory (it reads
# cudaMemGetInfo after the backend is up, before any kernel ran): an estimate, below the 600 MiB
# context with kernels loaded that plan.gpu_buffers measured on an H200.
LLAMA_FIT_CONTEXT_BYTES = 500 * MiB
CTX_ALIGN = 256  # llama.cpp rounds a reduced context down to 256 x streams


@dataclass(frozen=True)
class LlamaFit:
    """llama.cpp's fit on one machine, emulated: its arguments and what they mean."""

    placement: Placement | None  # None: llama.cpp's fit would fail, or is not emulated here
    n_ctx: int
    n_layer: int
    args: str  # as llama-fit-params prints them (the -ot patterns summarised)
    projected_bytes: int = 0  # llama.cpp's projection on the GPU: weights + KV + compute
    target_bytes: int = 0  # what it lets itself use: free - context - margin
    experts_on_cpu_blocks: int = 0  # offloaded blocks whose experts stay on the CPU
    partial_layer: str = ""  # "ffn_up" or "ffn_up + ffn_gate": one more block's experts on GPU
    steps: tuple[str, ...] = field(default_factory=tuple)
    reason: str = ""  # why there is no placement

    def words(self) -> str:
        """ "llama.cpp --fit would choose: -c 4096 -ngl 45 (ngl 45)"; MoE: -ot patterns that keep
        the experts of the last blocks on the CPU, and FitBench's label of the same count."""
        if self.placement is None:
            return f"llama.cpp --fit: {self.reason}"
        text = f"llama.cpp --fit would choose: {self.args} ({self.placement.label(self.n_layer)}"
        if self.partial_layer:
            text += f", one of them with its {self.partial_layer} experts on the GPU"
        return text + ")"

    def to_dict(self) -> dict[str, Any]:
        pl = self.placement
        return {
            "args": self.args,
            "n_ctx": self.n_ctx,
            "n_gpu_layers": pl.n_gpu_layers if pl else None,
            "n_cpu_moe": pl.n_cpu_moe if pl else None,
            "label": pl.label(self.n_layer) if pl else None,
            "experts_on_cpu_blocks": self.experts_on_cpu_blocks,
            "partial_layer": self.partial_layer or None,
            "projected_bytes": self.projected_bytes,
            "target_bytes": self.target_bytes,
            "steps": list(self.steps),
            "reason": self.reason or None,
            "words": self.words(),
            "basis": "predicted (llama.cpp's common/fit.cpp emulated with FitBench's planner)",
        }


def _false_position(
    lo: int, hi: int, mem_lo: int, mem_hi: int, target: int, mem_at: Callable[[int], int]
) -> tuple[int, int]:
    """fit.cpp's search: lo fits, hi does not; guess by linear interpolation of the memory,
    keep whichever bound the guess replaces, stop one apart. Returns (lo, its memory)."""
    while hi - lo > 1:
        delta = hi - lo
        step = delta * (target - mem_lo) // max(mem_hi - mem_lo, 1)
        step = max(1, min(step, delta - 1))
        k = lo + step
        m = mem_at(k)
        if m <= target:
            lo, mem_lo = k, m
        else:
            hi, mem_hi = k, m
    return lo, mem_lo


def _expert_bytes(manifest: ModelManifest, block: int, kinds: Sequence[str]) -> int:
    return sum(
        t.n_bytes
        for t in manifest.tensors
        if t.layer == block and t.is_expert and any(f"ffn_{k}_exps" in t.name for k in kinds)
    )


def llama_cpp_fit_details(
    manifest: ModelManifest,
    free_vram_bytes: Sequence[int],
    n_ctx: int | None = 4096,
    n_parallel: int = 1,
    *,
    target_bytes: int = LLAMA_FIT_TARGET_BYTES,
    n_ctx_min: int = LLAMA_FIT_MIN_CTX,
    context_bytes: int = LLAMA_FIT_CONTEXT_BYTES,
    flash_attn: bool = True,
    n_ubatch: int = 512,
    type_k: str = "f16",
    type_v: str = "f16",
) -> LlamaFit:
    """llama.cpp's fit on GPUs with `free_vram_bytes` free at detection (NVML), for a context of
    n_ctx tokens per sequence (None: llama.cpp's default, the training context, which its fit may
    shrink to n_ctx_min)."""
    n_layer = manifest.n_layer
    if not free_vram_bytes:
        return LlamaFit(None, n_ctx or 0, n_layer, "", reason="no GPU: nothing to fit")
    if len(free_vram_bytes) > 1:
        return LlamaFit(
            None, n_ctx or 0, n_layer, "",
            reason="several GPUs: llama.cpp's split across GPUs is not emulated",
        )  # fmt: skip
    n_train = int(manifest.arch_value("context_length", 0) or 0) or LLAMA_FIT_MIN_CTX
    ctx = n_ctx if n_ctx else n_train
    steps: list[str] = []
    free = int(free_vram_bytes[0]) - context_bytes
    target = free - target_bytes
    experts = bool(manifest.n_expert)
    cache: dict[tuple[int, int, int], int] = {}

    def mem(ngl: int, cpu_moe: int, ctx_: int) -> int:
        """llama.cpp's projection: its buffers on the GPU (no context, cuBLAS or pool)."""
        key = (ngl, cpu_moe, ctx_)
        if key not in cache:
            p = memory.plan(
                manifest, Placement(ngl, n_cpu_moe=cpu_moe), ctx_, n_parallel,
                type_k, type_v, flash_attn, n_ubatch, n_gpus=1,
            )  # fmt: skip
            gpu = p.devices["GPU0"]
            cache[key] = gpu["weights"] + gpu["kv"] + gpu["compute"]
        return cache[key]

    def done(pl: Placement, used: int, n_part: int = 0, partial: str = "") -> LlamaFit:
        """The result; n_part partial layers: the experts of blocks n_layer+1-n_part..n_layer-1
        on the CPU (llama.cpp's -ot patterns; the one for the output layer matches nothing)."""
        args = f"-c {ctx * n_parallel} -ngl {pl.n_gpu_layers}"
        blocks = max(n_part - 1, 0) if experts else 0
        if blocks:
            first = n_layer - blocks
            rules = []
            if partial:  # the first block of the range keeps only part of its experts there
                kinds = "down" if "gate" in partial else "(gate|down)"
                rules.append(f"blk\\.{first}\\.ffn_{kinds}_exps=CPU")
                first += 1
            if first < n_layer:
                ids = "|".join(str(b) for b in range(first, n_layer))
                rules.append(f"blk\\.({ids})\\.ffn_(up|down|gate)_exps=CPU")
            args += f' -ot "{",".join(rules)}"'
        return LlamaFit(pl, ctx, n_layer, args, used, target, blocks, partial, tuple(steps))

    all_layers = n_layer + 1
    full = mem(all_layers, 0, ctx)
    steps.append(
        f"projected {full / MiB:.0f} MiB of llama.cpp buffers vs {free / MiB:.0f} MiB free "
        f"(after its CUDA context), target margin {target_bytes / MiB:.0f} MiB"
    )
    if full <= target:
        steps.append("fits with every layer: no change")
        return done(Placement(all_layers), full)
    if not n_ctx and ctx > n_ctx_min:
        at_min = mem(all_layers, 0, n_ctx_min)
        if target > at_min:
            grown = (ctx - n_ctx_min) * (target - at_min) // max(full - at_min, 1)
            new_ctx = n_ctx_min + grown
            new_ctx = max(new_ctx - new_ctx % (CTX_ALIGN * n_parallel), n_ctx_min)
            steps.append(f"context reduced from {ctx} to {new_ctx}: every layer fits")
            ctx = new_ctx
            return done(Placement(all_layers), mem(all_layers, 0, ctx))
        steps.append(f"context reduced from {ctx} to {n_ctx_min}: not enough alone")
        ctx = n_ctx_min
    elif n_ctx:
        steps.append(f"context {ctx} set by the user: not changed")

    def placement_of(ngl: int, n_part: int) -> Placement:
        """llama.cpp's (n_layer, n_part) on the one device, in FitBench's terms: n_part partial
        layers end at the output layer, so n_part - 1 blocks keep their experts on the CPU."""
        if not experts or n_part <= 0:
            return Placement(ngl)
        return Placement(ngl, n_cpu_moe=n_layer - ngl + n_part)

    def mem_layers(ngl: int, n_part: int) -> int:
        pl = placement_of(ngl, n_part)
        return mem(pl.n_gpu_layers, pl.n_cpu_moe, ctx)

    # step 3: layers back to front (MoE: without their experts)
    dense_part = (lambda k: max(k - 1, 0)) if experts else (lambda k: 0)
    lo_mem = mem_layers(0, 0)
    hi_mem = mem_layers(all_layers, dense_part(all_layers))
    if hi_mem <= target:
        ngl, used = all_layers, hi_mem
    else:
        ngl, used = _false_position(
            0, all_layers, lo_mem, hi_mem, target, lambda k: mem_layers(k, dense_part(k))
        )
    what = "layers without their experts" if experts else "layers"
    steps.append(f"filled {ngl} of {all_layers} {what} back to front: {used / MiB:.0f} MiB")
    if not experts or ngl < all_layers:
        return done(placement_of(ngl, dense_part(ngl)), used, dense_part(ngl))

    # step 4: give layers back their experts, front to back (n_full: layers that are whole)
    def mem_full(n_full: int) -> int:
        return mem_layers(all_layers, all_layers - n_full)

    whole_mem = mem_full(all_layers)
    n_full, used = _false_position(1, all_layers, used, whole_mem, target, mem_full)
    n_part = all_layers - n_full
    steps.append(f"{n_part} layers keep their experts on the CPU: {used / MiB:.0f} MiB")
    pl = placement_of(all_layers, n_part)
    partial = ""
    if n_part > 1:
        # the first block of the partial range: its ffn_up experts, then ffn_gate, on the GPU
        block = n_layer + 1 - n_part
        up = _expert_bytes(manifest, block, ("up",))
        gate = _expert_bytes(manifest, block, ("gate",))
        if used + up < target:
            partial, used = "ffn_up", used + up
            if used + gate < target:
                partial, used = "ffn_up + ffn_gate", used + gate
            steps.append(f"part of one more layer on the GPU: its {partial} experts")
    return done(pl, used, n_part, partial)


def llama_cpp_fit(
    manifest: ModelManifest,
    free_vram_bytes: Sequence[int],
    n_ctx: int | None = 4096,
    n_parallel: int = 1,
    **kwargs: Any,
) -> Placement | None:
    """The placement llama.cpp's --fit would choose (llama_cpp_fit_details has the rest)."""
    return llama_cpp_fit_details(manifest, free_vram_bytes, n_ctx, n_parallel, **kwargs).placement


__all__ = [
    "LLAMA_FIT_CONTEXT_BYTES",
    "LLAMA_FIT_MIN_CTX",
    "LLAMA_FIT_TARGET_BYTES",
    "LlamaFit",
    "llama_cpp_fit",
    "llama_cpp_fit_details",
]
