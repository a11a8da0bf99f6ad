"""Placement search: the placements worth benchmarking, each planned, and splits that fit.

Above both the planner (memory: the bytes of one placement) and llama.cpp's split rules
(multigpu): the split proposal re-plans every split it tries, and the search proposes a split
for each placement on several GPUs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from fitbench.core.gguf.manifest import ModelManifest
from fitbench.core.plan import memory, multigpu
from fitbench.core.plan.margin import MarginLike, margin_of
from fitbench.core.plan.memory import (
    DEFAULT_RAM_HEADROOM_BYTES,
    GiB,
    MemoryPlan,
    Placement,
    PlacementPlan,
)

# --- per-GPU fit and splits that fit -----------------------------------------------------------


@dataclass(frozen=True)
class GpuFit:
    index: int
    need_bytes: int
    have_bytes: int
    usable_bytes: int  # have minus the margin
    layers: int  # offloaded layers on this GPU (split modes layer/none)

    @property
    def fits(self) -> bool:
        return self.need_bytes <= self.usable_bytes

    @property
    def spare_bytes(self) -> int:
        return self.usable_bytes - self.need_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpu": self.index,
            "need_bytes": self.need_bytes,
            "have_bytes": self.have_bytes,
            "usable_bytes": self.usable_bytes,
            "layers": self.layers,
            "fits": self.fits,
            "basis": "predicted",
        }


def gpu_fits(
    plan: MemoryPlan, gpus_vram_bytes: Sequence[int], headroom: MarginLike = None
) -> list[GpuFit]:
    """Need vs usable VRAM (after the margin: a VramMargin, a fraction, None for the default) on
    each GPU of a plan."""
    margin = margin_of(headroom)
    pl = plan.placement
    n = len(gpus_vram_bytes)
    n_layer = len(plan.layer_devices) - 1 if plan.layer_devices else 0
    if pl.split_mode == "tensor":
        counts = pl.layers_per_gpu(n_layer, n)
    else:
        counts = multigpu.layers_per_gpu(plan.layer_devices, n)
    return [
        GpuFit(
            index=g,
            need_bytes=plan.vram_bytes[g] if g < len(plan.vram_bytes) else 0,
            have_bytes=int(have),
            usable_bytes=margin.usable(int(have)),
            layers=counts[g],
        )
        for g, have in enumerate(gpus_vram_bytes)
    ]


@dataclass(frozen=True)
class SplitProposal:
    tensor_split: tuple[float, ...] | None  # None: nothing to split (one GPU, or nothing offloaded)
    plan: MemoryPlan
    gpus: tuple[GpuFit, ...]

    @property
    def fits(self) -> bool:
        return all(g.fits for g in self.gpus)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tensor_split": list(self.tensor_split) if self.tensor_split else None,
            "split_mode": self.plan.placement.split_mode,
            "fits_every_gpu": self.fits,
            "gpus": [g.to_dict() for g in self.gpus],
            "basis": "predicted",
        }


def _layer_costs(manifest: ModelManifest, n_cpu_moe: int, kv_per_layer: Sequence[int]) -> list[int]:
    """GPU bytes each offloadable layer brings (weights on the GPU + its KV cache); the last entry
    is the output layer (with a tied embedding duplicated onto it)."""
    n_layer = manifest.n_layer
    costs = [0] * (n_layer + 1)
    names = set()
    for t in manifest.tensors:
        names.add(t.name)
        layer = t.layer
        if t.name.startswith("token_embd"):
            continue
        if layer is None:
            costs[n_layer] += t.n_bytes
        elif not (t.is_expert and layer < n_cpu_moe):
            costs[min(layer, n_layer - 1)] += t.n_bytes
    if "output.weight" not in names:
        costs[n_layer] += sum(t.n_bytes for t in manifest.tensors if t.name == "token_embd.weight")
    for il in range(n_layer):
        costs[il] += kv_per_layer[il]
    return costs


def _greedy_counts(costs: Sequence[int], fixed: int, usable: Sequence[int]) -> list[int]:
    """Layer counts per GPU, in order, that spread the load so the fullest GPU (need / usable) is
    as empty as can be: bisect on the fill fraction f, each GPU takes layers up to f * usable."""

    def fill(f: float) -> list[int] | None:
        counts, i = [], 0
        for cap in usable:
            room = f * cap - fixed
            load, taken = 0, 0
            while i < len(costs) and load + costs[i] <= room:
                load += costs[i]
                i += 1
                taken += 1
            counts.append(taken)
        return counts if i == len(costs) else None

    lo, hi = 0.0, 1.0
    while fill(hi) is None:
        hi *= 2
        if hi > 1e6:
            return [len(costs)] + [0] * (len(usable) - 1)
    for _ in range(50):
        mid = (lo + hi) / 2
        if fill(mid) is None:
            lo = mid
        else:
            hi = mid
    result = fill(hi)
    assert result is not None
    return result


def propose_split(
    manifest: ModelManifest,
    gpus_vram_bytes: Sequence[int],
    placement: Placement,
    n_ctx: int,
    n_parallel: int = 1,
    *,
    vram_headroom: MarginLike = None,
    **plan_kwargs: Any,
) -> SplitProposal:
    """The tensor_split for `placement` that leaves the most spare room on the fullest GPU.

    split_mode "layer": layer counts per GPU (llama.cpp maps a split of k0:k1:... to exactly k0
    layers on GPU0, k1 on GPU1, ...), chosen so that every GPU is filled to the same fraction of
    its usable VRAM; the result is re-planned and each GPU checked. split_mode "tensor": shares
    proportional to each GPU's usable VRAM after its runtime. Other modes are planned as given.
    """
    n = len(gpus_vram_bytes)
    margin = margin_of(vram_headroom)
    usable = [margin.usable(int(v)) for v in gpus_vram_bytes]

    def finish(pl: Placement) -> SplitProposal:
        mp = memory.plan(manifest, pl, n_ctx, n_parallel, n_gpus=n, **plan_kwargs)
        return SplitProposal(pl.tensor_split, mp, tuple(gpu_fits(mp, gpus_vram_bytes, margin)))

    act = placement.offloaded(manifest.n_layer)
    if n < 2 or act == 0 or placement.split_mode in ("none", "row"):
        return finish(placement)
    runtime = plan_kwargs.get("gpu_runtime_bytes")  # None: the calibrated CUDA context
    runtime = memory.GPU_RUNTIME_BYTES if runtime is None else int(runtime)
    if placement.split_mode == "tensor":
        shares = tuple(float(max(u - runtime, 1)) for u in usable)
        return finish(_with_split(placement, shares))
    # fixed per-GPU costs (compute buffer, runtime, pipeline copies) from an equal-split plan
    ref = memory.plan(
        manifest, _with_split(placement, (1.0,) * n), n_ctx, n_parallel, n_gpus=n, **plan_kwargs
    )
    fixed = max(
        sum(v for k, v in ref.devices[f"GPU{g}"].items() if k not in ("weights", "kv"))
        for g in range(n)
    )
    kv_per_layer = memory.kv_bytes_per_layer(
        manifest, ref.kv_cells, plan_kwargs.get("type_k", "f16"), plan_kwargs.get("type_v", "f16")
    )
    n_cpu_moe = placement.n_cpu_moe if placement.n_cpu_moe >= 0 else manifest.n_layer
    costs = _layer_costs(manifest, n_cpu_moe, kv_per_layer)[manifest.n_layer + 1 - act :]
    counts = _greedy_counts(costs, fixed, usable)
    best = finish(_with_split(placement, tuple(float(c) for c in counts)))
    if best.fits:
        return best
    # the greedy works on estimates: try moving single layers between neighbours
    for g in range(n - 1):
        for delta in (-1, 1):
            moved = list(counts)
            moved[g] -= delta
            moved[g + 1] += delta
            if min(moved) < 0:
                continue
            trial = finish(_with_split(placement, tuple(float(c) for c in moved)))
            if trial.fits or _worst(trial) < _worst(best):
                best = trial
    return best


def _worst(p: SplitProposal) -> float:
    return max(g.need_bytes / max(g.usable_bytes, 1) for g in p.gpus)


def _with_split(placement: Placement, split: tuple[float, ...]) -> Placement:
    return replace(placement, tensor_split=split)


# --- placements worth benchmarking ------------------------------------------------------------


class _Planner:
    """Plans placements on one machine once each, and says whether each fits."""

    def __init__(
        self,
        manifest: ModelManifest,
        gpus_vram_bytes: Sequence[int],
        ram_bytes: int,
        n_ctx: int,
        n_parallel: int,
        vram_headroom: MarginLike,
        ram_headroom_bytes: int,
        plan_kwargs: dict[str, Any],
    ) -> None:
        self.manifest = manifest
        self.gpus = [int(v) for v in gpus_vram_bytes]
        self.ram = ram_bytes
        self.n_ctx, self.n_parallel = n_ctx, n_parallel
        self.margin = margin_of(vram_headroom)
        self.ram_headroom = ram_headroom_bytes
        self.kwargs = plan_kwargs
        self.split = tuple(float(v) for v in self.gpus) if len(self.gpus) > 1 else None
        self._done: dict[Placement, PlacementPlan] = {}

    def placement(self, n_gpu_layers: int, n_cpu_moe: int = 0) -> Placement:
        return Placement(n_gpu_layers, n_cpu_moe=n_cpu_moe, tensor_split=self.split)

    def __call__(self, pl: Placement) -> PlacementPlan:
        if pl in self._done:
            return self._done[pl]
        n_gpus = len(self.gpus)
        if n_gpus > 1 and pl.n_gpu_layers:
            mp = propose_split(
                self.manifest, self.gpus, pl, self.n_ctx, self.n_parallel,
                vram_headroom=self.margin, **self.kwargs,
            ).plan  # fmt: skip
        else:
            mp = memory.plan(
                self.manifest, pl, self.n_ctx, self.n_parallel, n_gpus=n_gpus, **self.kwargs
            )
        reasons = []
        for g, (need, have) in enumerate(zip(mp.vram_bytes, self.gpus, strict=False)):
            if need > self.margin.usable(have):
                reasons.append(f"GPU{g} needs {need / GiB:.1f} GiB of {have / GiB:.1f} GiB")
        if mp.ram_bytes > self.ram - self.ram_headroom:
            reasons.append(f"RAM needs {mp.ram_bytes / GiB:.1f} GiB of {self.ram / GiB:.1f} GiB")
        done = PlacementPlan(mp, fits=not reasons, why_not="; ".join(reasons))
        self._done[pl] = done
        return done

    def vram_fits(self, pl: Placement) -> bool:
        mp = self(pl).plan
        return all(
            need <= self.margin.usable(have)
            for need, have in zip(mp.vram_bytes, self.gpus, strict=False)
        )


def _last_true(test: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """The largest k in lo..hi with test(k), for a test that holds up to a point and then not
    (VRAM grows with the layers on the GPU); None if test(lo) fails. A step up past the point
    found is tried too, in case the plan is not monotonic there (a compute buffer that shrinks
    as the last host weights leave)."""
    if lo > hi or not test(lo):
        return None
    while lo < hi:  # invariant: test(lo)
        mid = (lo + hi + 1) // 2
        if test(mid):
            lo = mid
        else:
            hi = mid - 1
    while lo + 1 <= hi and test(lo + 1):
        lo += 1
    return lo


def _tightest(p: _Planner) -> list[Placement]:
    """The placements that put the most on the GPUs within the margin, at single-layer
    resolution: the largest n_gpu_layers, and for MoE models the smallest n_cpu_moe with every
    layer offloaded (or, when even all experts on the CPU leave too little room, the largest
    n_gpu_layers with the experts of all of them on the CPU)."""
    if not p.gpus:
        return []
    n_layer = p.manifest.n_layer
    out = []
    ngl = _last_true(lambda k: p.vram_fits(p.placement(k)), 1, n_layer + 1)
    if ngl is not None:
        out.append(p.placement(ngl))
    if p.manifest.n_expert and (ngl is None or ngl <= n_layer):
        if p.vram_fits(p.placement(n_layer + 1, n_layer)):
            # fewest experts on the CPU: the complement of the largest number left on the GPU
            on_gpu = _last_true(
                lambda k: p.vram_fits(p.placement(n_layer + 1, n_layer - k)), 0, n_layer
            )
            assert on_gpu is not None
            out.append(p.placement(n_layer + 1, n_layer - on_gpu))
        else:
            k = _last_true(lambda k: p.vram_fits(p.placement(k, n_layer)), 1, n_layer + 1)
            if k is not None:
                out.append(p.placement(k, n_layer))
    return out


def tightest_placements(
    manifest: ModelManifest,
    gpus_vram_bytes: Sequence[int],
    ram_bytes: int,
    n_ctx: int = 4096,
    n_parallel: int = 1,
    *,
    vram_headroom: MarginLike = None,
    ram_headroom_bytes: int = DEFAULT_RAM_HEADROOM_BYTES,
    **plan_kwargs: Any,
) -> list[PlacementPlan]:
    """The fitting placements with the most on the GPUs (see _tightest), each planned by
    bisection over the memory plan (a few plans, not one per layer)."""
    p = _Planner(
        manifest, gpus_vram_bytes, ram_bytes, n_ctx, n_parallel, vram_headroom,
        ram_headroom_bytes, plan_kwargs,
    )  # fmt: skip
    return [pp for pp in (p(pl) for pl in _tightest(p)) if pp.fits]


def candidate_placements(
    manifest: ModelManifest,
    gpus_vram_bytes: Sequence[int],
    ram_bytes: int,
    n_ctx: int = 4096,
    n_parallel: int = 1,
    *,
    vram_headroom: MarginLike = None,
    ram_headroom_bytes: int = DEFAULT_RAM_HEADROOM_BYTES,
    layer_step: int | None = None,
    **plan_kwargs: Any,
) -> list[PlacementPlan]:
    """Every placement worth benchmarking, with its memory and whether it fits.

    n_gpu_layers from 0 to all (every layer_step layers, default about 8 points), and for MoE
    models the expert-on-CPU variants (all layers offloaded, experts of N layers on CPU), plus
    the tightest placements that fit (tightest_placements: single-layer resolution), each in its
    place in that order. With several GPUs each placement gets the layer split that leaves the
    most room on its fullest GPU (propose_split), and fits only with the margin free on every
    GPU. vram_headroom: a VramMargin, a fraction of each GPU's VRAM, or None for the default
    margin (plan.margin).
    """
    p = _Planner(
        manifest, gpus_vram_bytes, ram_bytes, n_ctx, n_parallel, vram_headroom,
        ram_headroom_bytes, plan_kwargs,
    )  # fmt: skip
    n_layer = manifest.n_layer
    placements: list[Placement] = [Placement(0)]
    if p.gpus:
        tight = _tightest(p)
        step = layer_step or max(1, round(n_layer / 8))
        ngls = {*range(step, n_layer + 1, step), n_layer + 1}
        ngls |= {t.n_gpu_layers for t in tight if t.n_cpu_moe == 0}
        placements += [p.placement(n) for n in sorted(ngls)]
        if manifest.n_expert:
            placements += [t for t in tight if t.n_cpu_moe and t.n_gpu_layers <= n_layer]
            cmoe_step = max(1, round(n_layer / 8))
            cmoes = {n_layer, *range(n_layer - cmoe_step, 0, -cmoe_step)}
            cmoes |= {t.n_cpu_moe for t in tight if t.n_cpu_moe and t.n_gpu_layers > n_layer}
            placements += [p.placement(n_layer + 1, n) for n in sorted(cmoes, reverse=True)]
    return [p(pl) for pl in dict.fromkeys(placements)]


def best_fitting(plans: Sequence[PlacementPlan]) -> PlacementPlan | None:
    """The fitting placement with the most on the GPU (fewest experts kept on the CPU)."""
    fitting = [p for p in plans if p.fits]
    if not fitting:
        return None
    return max(
        fitting,
        key=lambda p: (p.plan.gpu_layers + p.plan.output_on_gpu, -p.placement.n_cpu_moe),
    )


__all__ = [
    "GpuFit",
    "SplitProposal",
    "best_fitting",
    "candidate_placements",
    "gpu_fits",
    "propose_split",
    "tightest_placements",
]
