"""What one benchmark worker runs: one model load (file + placement) and its tests.

A `BenchConfig` travels to the worker process as JSON. Field names follow llama-bench where they
overlap (n_gpu_layers, n_cpu_moe, n_batch, type_k, ...). `expand()` builds the cross product of
list-valued settings the way llama-bench does, one config per model load.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import psutil

from fitbench.core.results.schema import SOURCES

N_CPU_MOE_ALL = -1  # every layer's experts on the CPU (llama.cpp's --cpu-moe)
N_GPU_LAYERS_ALL = -1  # llama.cpp: a negative value offloads every layer
TEST_KINDS = ("pp", "tg", "ttft", "batch")
KV_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl")
# Longest wait for a load or one test. Generous: a 70B test on a CPU can take minutes; what it
# catches is a worker stuck in a driver call or a model streaming from disk at a few MB/s.
DEFAULT_TEST_TIMEOUT_S = 1800.0
INJECT_ENV = "FITBENCH_ALLOW_INJECT"  # the worker honours `inject` only when this is "1" (tests)


class ConfigError(ValueError):
    """A benchmark setting that cannot be used; the message names it and what to change."""


def physical_cores() -> int:
    """llama-bench's default thread count: physical cores."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


@dataclass(frozen=True)
class BenchTest:
    """One test of a config.

    pp: process n_prompt tokens (llama-bench's pp test; also gives the time to first token).
    tg: generate n_gen tokens one at a time (llama-bench's tg test; plus inter-token latency).
    ttft: one request: n_prompt prompt tokens, then n_gen generated tokens.
    batch: n_parallel sequences generating n_gen tokens each, one batched decode per step.
    n_depth > 0: the test runs after n_depth tokens are already in the KV cache.
    """

    kind: str
    n_prompt: int = 0
    n_gen: int = 0
    n_depth: int = 0
    n_parallel: int = 1

    def __post_init__(self) -> None:
        if self.kind not in TEST_KINDS:
            raise ConfigError(f"unknown test {self.kind!r} (known: {', '.join(TEST_KINDS)})")
        for name in ("n_prompt", "n_gen", "n_depth"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.n_parallel < 1:
            raise ConfigError(f"parallel sequences must be >= 1, got {self.n_parallel}")
        needs = {"pp": self.n_prompt, "tg": self.n_gen, "ttft": self.n_prompt, "batch": self.n_gen}
        if needs[self.kind] <= 0:
            raise ConfigError(f"a {self.kind} test needs a positive token count")

    @property
    def record_test(self) -> str:
        """The record's `test` field: pp/tg at a filled context are recorded as "depth"."""
        if self.kind in ("pp", "tg") and self.n_depth > 0:
            return "depth"
        return self.kind

    @property
    def n_ctx(self) -> int:
        """KV cells the test needs (all sequences together for batch tests)."""
        if self.kind == "batch":
            return self.n_parallel * (self.n_depth + self.n_gen + 1)
        return self.n_depth + self.n_prompt + self.n_gen + 1

    @property
    def name(self) -> str:
        if self.kind == "pp":
            base = f"pp{self.n_prompt}"
        elif self.kind == "tg":
            base = f"tg{self.n_gen}"
        elif self.kind == "ttft":
            base = f"ttft p{self.n_prompt}+n{self.n_gen}"
        else:
            base = f"batch B{self.n_parallel} tg{self.n_gen}"
        return f"{base} @ d{self.n_depth}" if self.n_depth else base


@dataclass(frozen=True)
class BenchConfig:
    model_path: str
    tests: tuple[BenchTest, ...]
    model_id: str = ""
    quant: str = ""
    source: str = "real"
    n_layer_model: int = 0
    n_layer_file: int = 0
    file_sha256: str = ""
    label: str = ""
    config_id: str = ""
    # placement (llama_model_params)
    n_gpu_layers: int = N_GPU_LAYERS_ALL
    n_cpu_moe: int = 0
    split_mode: str = "layer"
    main_gpu: int = 0
    tensor_split: tuple[float, ...] = ()
    use_mmap: bool = True
    repack: bool = True
    # context (llama_context_params)
    n_threads: int = field(default_factory=physical_cores)
    n_batch: int = 2048
    n_ubatch: int = 512
    type_k: str = "f16"
    type_v: str = "f16"
    flash_attn: bool | None = None  # None: llama.cpp decides ("auto", llama-bench's default)
    no_kv_offload: bool = False
    poll: int = 50
    # protocol
    reps: int = 5
    warmup: bool = True
    seed: int = 1
    verbose: bool = False
    inject: str = ""  # test-only fault injection, see worker.py

    def __post_init__(self) -> None:
        if not self.tests:
            raise ConfigError("a benchmark config needs at least one test")
        if self.source not in SOURCES:
            raise ConfigError(f"source must be one of {SOURCES}, got {self.source!r}")
        for name in ("type_k", "type_v"):
            if getattr(self, name) not in KV_TYPES:
                raise ConfigError(
                    f"{name} {getattr(self, name)!r} is not a KV cache type "
                    f"(known: {', '.join(KV_TYPES)})"
                )
        if self.split_mode not in ("none", "layer", "row", "tensor"):
            raise ConfigError(
                f"split mode must be none, layer, row or tensor, got {self.split_mode!r}"
            )
        if self.n_threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.n_threads}")
        if self.reps < 1:
            raise ConfigError(f"repetitions must be >= 1, got {self.reps}")
        if self.n_batch < 1 or self.n_ubatch < 1:
            raise ConfigError("batch sizes must be >= 1")
        if self.n_cpu_moe < N_CPU_MOE_ALL:
            raise ConfigError(f"n_cpu_moe must be >= 0 or -1 (all), got {self.n_cpu_moe}")
        if not self.config_id:
            object.__setattr__(self, "config_id", self.fingerprint())
        if not self.label:
            object.__setattr__(self, "label", self.describe())

    def fingerprint(self) -> str:
        data = self.to_dict()
        data.pop("config_id", None)
        data.pop("label", None)
        raw = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha256(raw).hexdigest()[:12]

    def describe(self) -> str:
        name = self.model_id or Path(self.model_path).stem
        what = {"real": "real file", "twin": "twin", "scaled-twin": "scaled twin"}[self.source]
        parts = [f"{name} {self.quant}".strip() + f" ({what})"]
        parts.append("all layers on GPU" if self.n_gpu_layers < 0 else f"ngl {self.n_gpu_layers}")
        if self.n_cpu_moe == N_CPU_MOE_ALL:
            parts.append("all experts on CPU")
        elif self.n_cpu_moe > 0:
            parts.append(f"experts of {self.n_cpu_moe} layers on CPU")
        if self.split_mode != "layer":
            parts.append(
                f"split {self.split_mode}"
                + (f" on GPU {self.main_gpu}" if self.split_mode == "none" else "")
            )
        if self.tensor_split:
            parts.append("split " + ":".join(f"{x:g}" for x in self.tensor_split))
        if self.flash_attn is not None:
            parts.append("fa on" if self.flash_attn else "fa off")
        if (self.type_k, self.type_v) != ("f16", "f16"):
            parts.append(f"KV {self.type_k}/{self.type_v}")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tests"] = [asdict(t) for t in self.tests]
        data["tensor_split"] = list(self.tensor_split)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchConfig:
        data = dict(data)
        try:
            tests = tuple(BenchTest(**t) for t in data.pop("tests"))
            data["tensor_split"] = tuple(float(x) for x in data.get("tensor_split", ()))
            return cls(tests=tests, **data)
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"not a benchmark config: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> BenchConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"benchmark config is not JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise ConfigError("benchmark config must be a JSON object")
        return cls.from_dict(data)

    def with_(self, **changes: Any) -> BenchConfig:
        """A copy with changes; the id and label are recomputed unless given."""
        changes.setdefault("config_id", "")
        changes.setdefault("label", "")
        return replace(self, **changes)


_RANGE = re.compile(r"^(-?\d+)(?:-(\d+)(?:([+*])(\d+))?)?$")


def parse_int_list(text: str, *, allow_negative: bool = False, name: str = "value") -> list[int]:
    """llama-bench's lists: "0,8,16", ranges "first-last", "first-last+step", "first-last*mult"."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        m = _RANGE.match(part)
        if not m or (not allow_negative and part.startswith("-")):
            raise ConfigError(
                f"{name}: {part!r} is not a number or range (examples: 8  0,8,16  0-32+8  1-64*2)"
            )
        first = int(m.group(1))
        last = int(m.group(2)) if m.group(2) else first
        op = m.group(3) or "+"
        step = int(m.group(4)) if m.group(4) else 1
        i = first
        while i <= last:
            out.append(i)
            nxt = i + step if op == "+" else i * step
            if nxt <= i:
                raise ConfigError(f"{name}: range {part!r} does not increase")
            i = nxt
    return out


def standard_tests(
    n_prompt: Sequence[int],
    n_gen: Sequence[int],
    *,
    depths: Sequence[int] = (0,),
    batches: Sequence[int] = (),
    ttft: Sequence[int] = (),
    batch_gen: int | None = None,
) -> tuple[BenchTest, ...]:
    """The tests of one config: llama-bench's pp and tg at every depth, then extras."""
    tests: list[BenchTest] = []
    for depth in depths:
        tests += [BenchTest("pp", n_prompt=p, n_depth=depth) for p in n_prompt if p > 0]
        tests += [BenchTest("tg", n_gen=n, n_depth=depth) for n in n_gen if n > 0]
    gen = batch_gen if batch_gen is not None else max([n for n in n_gen if n > 0], default=32)
    tests += [BenchTest("batch", n_gen=gen, n_parallel=b) for b in batches]
    tg_after = max([n for n in n_gen if n > 0], default=32)
    tests += [BenchTest("ttft", n_prompt=p, n_gen=tg_after) for p in ttft]
    return tuple(tests)


def expand(
    models: Iterable[dict[str, Any]],
    tests: tuple[BenchTest, ...],
    *,
    n_gpu_layers: Sequence[int] = (N_GPU_LAYERS_ALL,),
    n_cpu_moe: Sequence[int] = (0,),
    flash_attn: Sequence[bool | None] = (None,),
    type_k: Sequence[str] = ("f16",),
    type_v: Sequence[str] = ("f16",),
    n_threads: Sequence[int] = (),
    **common: Any,
) -> list[BenchConfig]:
    """One config per model x placement x context setting, model-major like llama-bench."""
    configs = []
    threads = list(n_threads) or [physical_cores()]
    for model in models:
        for ngl in n_gpu_layers:
            for ncmoe in n_cpu_moe:
                for fa in flash_attn:
                    for tk in type_k:
                        for tv in type_v:
                            for nt in threads:
                                configs.append(
                                    BenchConfig(
                                        tests=tests,
                                        n_gpu_layers=ngl,
                                        n_cpu_moe=ncmoe,
                                        flash_attn=fa,
                                        type_k=tk,
                                        type_v=tv,
                                        n_threads=nt,
                                        **model,
                                        **common,
                                    )
                                )
    return configs


def build_configs(
    *,
    models: Sequence[str],
    quant: str | None = None,
    twin_layers: int | None = None,
    catalog: Any = None,
    n_prompt: int | Sequence[int] = 512,
    n_gen: int | Sequence[int] = 128,
    depths: Sequence[int] = (0,),
    batch: Sequence[int] = (),
    ttft: Sequence[int] = (),
    repetitions: int = 5,
    **settings: Any,
) -> list[BenchConfig]:
    """The sweep of `fitbench bench` and of the GUI's custom sweep, from plain values.

    models: catalog ids (the real file if downloaded, else a twin; a scaled twin of
    `twin_layers` blocks when given) or GGUF paths. settings: expand()'s lists (n_gpu_layers,
    n_cpu_moe, flash_attn, type_k, type_v, n_threads) and BenchConfig fields for every config.
    """
    # here, not at the top: the worker process imports this module for BenchConfig and must not
    # pay for the model resolver's imports (huggingface_hub, the twin writer) on every start
    from fitbench.core.bench.models import resolve

    if not models:
        raise ConfigError("give at least one -m ID|PATH (or --quick)")
    prompts = [n_prompt] if isinstance(n_prompt, int) else list(n_prompt)
    gens = [n_gen] if isinstance(n_gen, int) else list(n_gen)
    resolved = [
        resolve(spec, quant, layers=twin_layers, catalog=catalog).config_fields() for spec in models
    ]
    tests = standard_tests(prompts, gens, depths=depths, batches=batch, ttft=ttft)
    return expand(resolved, tests, reps=repetitions, **settings)
