"""How far a real file's speed may be from its twin's: the measured bands, as data.

A twin has the real file's layout and synthetic weights. Where kernels do not look at the values
(every GPU run measured, llama-architecture CPU runs) a twin runs at the real file's speed; where
they do (gemma3 generation on CPUs: the spread of the block scales within each matrix moved the
speed until twin/data.py's DATA_RULE 2 drew it by role, docs/dev/2026-12-06c-twin-fidelity/) or
where the values steer the work (an MoE's router, many tokens at once) it may not. Every twin
number the product shows carries `Fidelity.text` from here, and the advice widens its figures by
`Fidelity.low`/`high`, so the wording and the numbers have one home. A band is the real file's
speed relative to the twin's, real/twin - 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fitbench.core.model.catalog import Catalog

Speed = Literal["pp", "tg", "mixed"]  # prompt processing, generation, or both in one number

# an architecture or backend nobody compared with a real file: wide enough to cover the largest
# value effect measured anywhere (gemma3 tg with DATA_RULE 1's twins, ~6.5%) with room to spare
UNMEASURED = 0.10

CPU_2026_12_06 = "docs/dev/2026-12-06-twin-fidelity/ (quiet machine, 1 and 2 threads)"
CPU_2026_12_06C = (
    "docs/dev/2026-12-06c-twin-fidelity/ (DATA_RULE 2, quiet machine, 1 and 2 threads)"
)
GPU_FACTS = (
    "docs/twins.md, Speed fidelity on CPUs (facts.md: Mixtral Q4_K_M twins of two weight "
    "magnitudes, H200, pp512/tg128 within 2%)"
)

# llama.cpp's ggml backends that run layers off the CPU (the record's `backends` field)
GPU_BACKENDS = (
    "CUDA",
    "HIP",
    "ROCM",
    "VULKAN",
    "METAL",
    "SYCL",
    "OPENCL",
    "MUSA",
    "CANN",
    "KOMPUTE",
)


@dataclass(frozen=True)
class Band:
    """The real file's speed relative to its twin's (real/twin - 1), measured or assumed."""

    low: float
    high: float
    measured: bool
    source: str
    condition: str = ""  # where a measured band's edge was found, e.g. "2 threads"

    @property
    def uncertainty(self) -> float:
        return max(abs(self.low), abs(self.high))


def _measured(low: float, high: float, source: str, condition: str = "") -> Band:
    return Band(low, high, True, source, condition)


# (architecture, speed) on CPUs, from the quiet-machine runs (6 alternated rounds, pp128/tg32,
# placement re-rolled each run): medians of paired twin/real ratios and their quartiles, the
# band drawn around the quartiles of both thread counts.
# llama (SmolLM2-135M Q4_1): pp -0.5% [-0.9, +0.1] / -0.4% [-0.8, +0.8], tg +0.9% [+0.4, +1.2] /
# +0.0% [-0.9, +0.9] at 1 / 2 threads: ±1% either way.
# gemma3 (gemma-3-270m Q4_K_M): pp +0.5% [-0.3, +0.5] / -0.1% [-0.8, +0.3]; tg +2.9% [+2.5, +3.3]
# / +5.8% [+5.4, +6.9], the twin faster in 12 of 12 rounds: the real file is 0-6.5% slower.
# Rechecked 2026-12-06b (every file in the same physical pages, 8 rounds): tg paired medians
# +2.4% to +5.5%, upper quartiles up to +6.8%, pp within ~1.5%. Not denormals, not placement, not
# the header: the twin's data (the real header with twin data +3.5% / +5.8%, the twin's header
# with real data -0.1% / -1.8%). At 1 thread the lead is the block pool's (every block
# generated: -0.6% to +0.2%; SmolLM2 within 1%); at 2 threads such a twin still leads (+4.8%):
# a second value effect, in the layers' matrices (the twin with the real blk.* tensors -0.5%).
# Found 2026-12-06c: the spread of block scales within each matrix (real files: narrow for attn_v
# and ffn_down, wide for attn_q/attn_k; DATA_RULE 1 gave every matrix one wide spread). Twins of
# DATA_RULE 2 (spread by role, a 4x pool), two runs of 14 rounds, twin vs real at 1 / 2 threads:
# gemma3 tg +1.2% [+0.7, +2.4] / +0.9% [-0.4, +1.8] and +1.1% [+0.5, +1.6] / +0.1% [-2.0, +2.3]
# (the rule-1 twin in the same runs +3.7-4.3% / +5.4-5.5%; a byte copy of the real file +0.6% /
# -0.7%), pp medians +0.4% to +1.3%; SmolLM2 within ~1% as before. The bands are drawn around
# those quartiles.
CPU_BANDS: dict[tuple[str, str], Band] = {
    ("llama", "pp"): _measured(-0.01, 0.01, CPU_2026_12_06),
    ("llama", "tg"): _measured(-0.01, 0.01, CPU_2026_12_06),
    ("gemma3", "pp"): _measured(-0.015, 0.015, CPU_2026_12_06C),
    ("gemma3", "tg"): _measured(-0.025, 0.02, CPU_2026_12_06C),
}
# GPU kernels did not notice the weights' values (Mixtral twins of block scale 0.001 and 0.05 ran
# within 2% of each other, pp and tg); the dense 70B was not compared at two magnitudes
GPU_BAND = _measured(-0.02, 0.02, GPU_FACTS)
# a twin's router sends tokens to experts near-uniformly; real text favours some experts, which
# moves the speed of every step that routes many tokens at once (prompts, batches)
ROUTING_BAND = Band(-UNMEASURED, UNMEASURED, False, "not measured (docs/twins.md)")


@dataclass(frozen=True)
class Fidelity:
    """What a twin number means for the real file: a sentence for people and the band."""

    text: str  # a caveat that can stand next to the number: "twin: ..."
    short: str  # a few words for a table cell or a tooltip's title: "real file ±1%"
    low: float  # real/twin - 1, the band's edges
    high: float
    measured: bool
    source: str

    @property
    def uncertainty(self) -> float:
        """The band as one relative figure: the real file within ± this of the twin."""
        return max(abs(self.low), abs(self.high))

    def bounds(self, value: float) -> tuple[float, float]:
        """The range the real file's figure falls in, for a twin's `value` (a speed)."""
        return value * (1 + self.low), value * (1 + self.high)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "short": self.short,
            "low": self.low,
            "high": self.high,
            "uncertainty": self.uncertainty,
            "measured": self.measured,
            "source": self.source,
        }


def _pct(x: float) -> str:
    text = f"{abs(x) * 100:.1f}".rstrip("0").rstrip(".")
    return text or "0"


def _short(low: float, high: float, measured: bool) -> str:
    if abs(low + high) < 1e-9:
        band = f"±{_pct(high)}%"
    elif high == 0:
        band = f"up to {_pct(low)}% slower"
    else:
        band = f"{low * 100:+.1f}% to {high * 100:+.1f}%"
    return f"real file {band}" + ("" if measured else " (not measured)")


_VERBS = {"pp": "processes prompts", "tg": "generates", "mixed": "runs"}


def _text(
    band: Band, architecture: str, on_gpu: bool, speed: Speed, routing: bool
) -> str:  # fmt: skip
    where = "on GPUs" if on_gpu else "on CPUs"
    verb = _VERBS[speed]
    if routing:
        return (
            f"twin: {where} an MoE's prompt and batch speeds were not compared with the real "
            "file, whose router favours some experts where a twin's spreads tokens evenly: "
            f"assume the real file within ±{_pct(band.uncertainty)}%"
        )
    if not band.measured:
        arch = f"the {architecture} architecture" if architecture else "this architecture"
        return (
            f"twin: not measured for {arch} {where}: assume the real file within "
            f"±{_pct(band.uncertainty)}% of this twin's speed"
        )
    detail = "measured" + (f", {band.condition}" if band.condition else "")
    if on_gpu:
        detail = "measured: weight values moved Mixtral twins' speed by at most 2%"
    file = f"a real {architecture}-architecture file" if architecture else "a real file"
    if abs(band.low + band.high) < 1e-9:
        return (
            f"twin: {where} {file} {verb} within ~{_pct(band.high)}% of this twin's speed "
            f"({detail})"
        )
    if band.high <= 0:
        return (
            f"twin: {where} the real {architecture} file {verb} up to ~{_pct(band.low)}% "
            f"slower than this twin ({detail})"
        )
    return (
        f"twin: {where} {file} {verb} between {band.low * 100:+.1f}% and "
        f"{band.high * 100:+.1f}% of this twin's speed ({detail})"
    )


def _band(architecture: str, on_gpu: bool, speed: Speed) -> Band:
    if on_gpu:
        return GPU_BAND
    if speed == "mixed":
        pp, tg = _band(architecture, False, "pp"), _band(architecture, False, "tg")
        return Band(
            min(pp.low, tg.low),
            max(pp.high, tg.high),
            pp.measured and tg.measured,
            pp.source if pp.source == tg.source else f"{pp.source}; {tg.source}",
            tg.condition or pp.condition,
        )
    found = CPU_BANDS.get((architecture.lower(), speed))
    if found is not None:
        return found
    return Band(-UNMEASURED, UNMEASURED, False, "not measured")


def fidelity(
    architecture: str, on_gpu: bool, speed: Speed = "tg", *, moe: bool = False, tokens: int = 1
) -> Fidelity:
    """How far the real file's `speed` may be from a twin's, for a file of `architecture` run on
    a GPU or the CPU; `tokens` is how many tokens each step routes (prompt, parallel sequences):
    an MoE's routing matters only where it is more than one."""
    routing = moe and tokens > 1
    band = ROUTING_BAND if routing else _band(architecture, on_gpu, speed)
    return Fidelity(
        text=_text(band, architecture, on_gpu, speed, routing),
        short=_short(band.low, band.high, band.measured),
        low=band.low,
        high=band.high,
        measured=band.measured,
        source=band.source,
    )


def uses_gpu(record: Mapping[str, Any]) -> bool:
    """Layers ran on a GPU: offloaded (n_gpu_layers) with a GPU backend in the build."""
    if int(record.get("n_gpu_layers") or 0) == 0:
        return False
    backends = str(record.get("backends") or "").upper()
    if backends:
        return any(b in backends for b in GPU_BACKENDS)
    return bool(record.get("gpu_info"))  # records older than the backends field


def record_architecture(record: Mapping[str, Any]) -> str:
    """llama.cpp's model description starts with the architecture name ("llama 8x7B Q4_K -
    Medium", "gemma3 270M Q4_K - Medium")."""
    desc = str(record.get("model_type") or "").split()
    return desc[0].lower() if desc else ""


def _record_moe(record: Mapping[str, Any]) -> bool:
    """llama.cpp names MoE sizes by experts ("8x7B") or active weights ("30B.A3B")."""
    words = str(record.get("model_type") or "").split()
    size = words[1] if len(words) > 1 else ""
    return "x" in size.lower() or ".A" in size


def record_speed(record: Mapping[str, Any]) -> tuple[Speed, int]:
    """Which speed a record's number is, and how many tokens a step routes."""
    test = str(record.get("test") or "")
    n_prompt, n_parallel = int(record.get("n_prompt") or 0), int(record.get("n_parallel") or 1)
    if test == "pp" or (test == "depth" and n_prompt):
        return "pp", max(n_prompt, 2)
    if test == "ttft":
        return "mixed", max(n_prompt, 2)
    if test == "batch" and n_parallel > 1:
        return "mixed", n_parallel
    return "tg", 1


TWIN_SOURCES = ("twin", "scaled-twin")  # a record's or deployment's `source` of a twin


def _catalog_facts(
    model_id: Any, catalog: Catalog | None, architecture: str, moe: bool | None
) -> tuple[str, bool | None]:
    """The architecture and MoE flag: what the caller says, else the catalog's, else unknown."""
    model = None
    if catalog is not None:
        model = next((m for m in catalog.models if m.id == model_id), None)
    if model is not None:
        architecture = architecture or model.arch.architecture
        moe = model.is_moe if moe is None else moe
    return architecture, moe


def record_fidelity(
    record: Mapping[str, Any],
    catalog: Catalog | None = None,
    *,
    architecture: str = "",
    moe: bool | None = None,
) -> Fidelity | None:
    """The caveat of one result record; None for a real file. The catalog's architecture and MoE
    flag win over the record's model description, which a scaled twin's depth can leave vague
    (llama.cpp names a 2-block Mixtral "?B", not "8x7B")."""
    if record.get("source") not in TWIN_SOURCES:
        return None
    architecture, moe = _catalog_facts(record.get("model_id"), catalog, architecture, moe)
    speed, tokens = record_speed(record)
    return fidelity(
        architecture or record_architecture(record),
        uses_gpu(record),
        speed,
        moe=_record_moe(record) if moe is None else moe,
        tokens=tokens,
    )


def served_fidelity(
    deployment: Mapping[str, Any],
    users: int,
    catalog: Catalog | None = None,
    *,
    on_gpu: bool | None = None,
    architecture: str = "",
    moe: bool | None = None,
) -> Fidelity | None:
    """The caveat of a served level (`fitbench load` through llama-server) of a deployment
    (core/serve/records.deployment_fields); None where the server ran the real file. Each step
    carries up to `users` sequences' tokens: an MoE's routing then decides the speed. on_gpu
    defaults to layers having been offloaded (-ngl other than 0)."""
    if deployment.get("source") not in TWIN_SOURCES:
        return None
    architecture, moe = _catalog_facts(deployment.get("model_id"), catalog, architecture, moe)
    if on_gpu is None:
        on_gpu = int(deployment.get("n_gpu_layers") or 0) != 0
    return fidelity(architecture, on_gpu, "tg", moe=bool(moe), tokens=max(users, 1))


def widest(fidelities: Iterable[Fidelity | None]) -> Fidelity | None:
    """The one caveat for several twin numbers shown together: the widest band's."""
    found = [f for f in fidelities if f is not None]
    return max(found, key=lambda f: (f.uncertainty, not f.measured)) if found else None
