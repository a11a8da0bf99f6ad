"""Where llama.cpp puts a model: n_gpu_layers, n_cpu_moe and the split across GPUs, in one value.

Every stage that reads or writes a placement (planner, bench worker, predictor, advice, recipes,
report, GUI) asks this type what it means, so that "how much is on the GPU" has one answer.
The rules are those of the llama.cpp vendored in llama-cpp-python 0.3.36:

- layers 0..n_layer-1 plus the output layer (index n_layer) are the n_layer + 1 offloadable
  layers; n_gpu_layers counts from the end (src/llama-model.cpp load_tensors: layers
  il >= n_layer + 1 - n_gpu_layers go to a GPU), so the output layer is the first offloaded:
  1 puts only the output on the GPU, n_layer leaves the first block on the CPU, and n_layer + 1,
  anything larger (99) or any negative value (-1) puts everything there;
- n_cpu_moe = N keeps the routed experts of blocks 0..N-1 on the CPU (-1, llama.cpp's --cpu-moe:
  every block); it only moves something for blocks that are on a GPU;
- several GPUs, split mode "layer" (and "row", which assigns layers the same way): the offloaded
  layers go to devices by cumulative, normalised tensor_split computed in float32; "none": only
  main_gpu; "tensor": every offloaded layer is cut across all GPUs (plan.multigpu says how).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

SPLIT_MODES = ("none", "layer", "row", "tensor")
LLAMA_SPLIT_MODES = {"none": 0, "layer": 1, "row": 2, "tensor": 3}  # llama.h llama_split_mode
NGL_ALL_TEXT = "99"  # what llama.cpp's docs and most recipes write for "every layer"


class SplitError(ValueError):
    """A split setting llama.cpp would refuse; the message says which and what to use."""


def check_split(split_mode: str, n_gpus: int, main_gpu: int = 0) -> None:
    if split_mode not in SPLIT_MODES:
        raise SplitError(f"split mode must be one of {', '.join(SPLIT_MODES)}, got {split_mode!r}")
    if split_mode == "none" and n_gpus and not 0 <= main_gpu < n_gpus:
        raise SplitError(f"main_gpu {main_gpu} is not one of the {n_gpus} GPU(s) (0..{n_gpus - 1})")


def split_points(weights: Sequence[float]) -> list[float]:
    """llama.cpp's cumulative, normalised split points, in float32 as llama.cpp computes them."""
    acc = np.float32(0.0)
    cumulative = []
    for w in weights:
        acc = np.float32(acc + np.float32(w))
        cumulative.append(acc)
    if acc <= 0:
        raise SplitError("a tensor split needs at least one positive share")
    return [float(np.float32(c / acc)) for c in cumulative]


def parse_tensor_split(value: Any) -> tuple[float, ...] | None:
    """A record's tensor_split ('0.60/0.40', llama-bench's form) or a list; all zero is None."""
    if value is None or value == "":
        return None
    parts = value.split("/") if isinstance(value, str) else list(value)
    split = tuple(float(x) for x in parts)
    return split if any(split) else None


def record_n_layer(record: Mapping[str, Any]) -> int:
    """The block count a record's n_gpu_layers counts against: the file's, else the model's."""
    return int(record.get("n_layer_file") or record.get("n_layer_model") or 0)


@dataclass(frozen=True)
class Placement:
    """llama.cpp's placement parameters; the methods say what they mean for a model of n_layer
    repeating blocks. The values are kept as given (-1, 99): `effective` normalises them."""

    n_gpu_layers: int = 0
    n_cpu_moe: int = 0  # experts of blocks 0..n_cpu_moe-1 on the CPU; -1 or >= n_layer: all
    tensor_split: tuple[float, ...] | None = None
    main_gpu: int = 0
    split_mode: str = "layer"  # "layer" | "row" | "none" | "tensor"

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Placement:
        return cls(
            n_gpu_layers=int(record.get("n_gpu_layers") or 0),
            n_cpu_moe=int(record.get("n_cpu_moe") or 0),
            tensor_split=parse_tensor_split(record.get("tensor_split")),
            main_gpu=int(record.get("main_gpu") or 0),
            split_mode=str(record.get("split_mode") or "layer"),
        )

    # -- what is where --

    def offloaded(self, n_layer: int) -> int:
        """Offloadable layers (blocks and the output layer) on a GPU: 0..n_layer + 1."""
        if self.n_gpu_layers < 0:
            return n_layer + 1
        return min(self.n_gpu_layers, n_layer + 1)

    def blocks_on_gpu(self, n_layer: int) -> int:
        return max(self.offloaded(n_layer) - 1, 0)

    def output_on_gpu(self, n_layer: int) -> bool:
        return self.offloaded(n_layer) >= 1

    def all_on_gpu(self, n_layer: int) -> bool:
        """Every block and the output layer offloaded (experts may still be on the CPU)."""
        return self.offloaded(n_layer) == n_layer + 1

    @property
    def cpu_only(self) -> bool:
        return self.n_gpu_layers == 0

    def experts_on_cpu(self, n_layer: int) -> int:
        """Blocks whose experts n_cpu_moe keeps on the CPU (-1: all of them)."""
        return n_layer if self.n_cpu_moe < 0 else min(self.n_cpu_moe, n_layer)

    def gpu_share(self, n_layer: int) -> float:
        """Percent of the offloadable layers (blocks + output) on the GPU; with n_layer unknown
        (0), all or nothing."""
        if n_layer <= 0:
            return 0.0 if self.cpu_only else 100.0
        return 100.0 * self.offloaded(n_layer) / (n_layer + 1)

    def effective(self, n_layer: int, has_gpu: bool = True, moe: bool = True) -> Placement:
        """What llama.cpp really does: nothing offloaded without a GPU, n_gpu_layers in
        0..n_layer + 1, and n_cpu_moe counted only where it moves experts off a GPU block
        (0 for a dense model, or when every block it names is on the CPU anyway)."""
        if not has_gpu:
            return replace(self, n_gpu_layers=0, n_cpu_moe=0)
        ngl = self.offloaded(n_layer)
        ncmoe = self.experts_on_cpu(n_layer)
        if not moe or ncmoe <= n_layer - self.blocks_on_gpu(n_layer):
            ncmoe = 0
        return replace(self, n_gpu_layers=ngl, n_cpu_moe=ncmoe)

    def layer_devices(self, n_layer: int, n_gpus: int) -> list[int | None]:
        """Device of layers 0..n_layer (the last one is the output layer): a GPU index or None.

        split_mode "tensor" answers 0 for every offloaded layer: they all live on the meta device
        that spans every GPU. An absent or all-zero tensor_split is taken as equal shares;
        llama.cpp would use each GPU's free memory, so pass that when it matters.
        """
        check_split(self.split_mode, n_gpus, self.main_gpu)
        act = self.offloaded(n_layer) if n_gpus else 0
        start = n_layer + 1 - act
        if act == 0:
            return [None] * (n_layer + 1)
        if self.split_mode == "none" or n_gpus == 1:
            gpu = self.main_gpu if self.split_mode == "none" else 0
            return [gpu if il >= start else None for il in range(n_layer + 1)]
        if self.split_mode == "tensor":
            return [0 if il >= start else None for il in range(n_layer + 1)]
        shares = list(self.tensor_split or ())[:n_gpus]
        shares += [0.0] * (n_gpus - len(shares))
        if not any(shares):
            shares = [1.0] * n_gpus
        points = split_points(shares)
        devices: list[int | None] = []
        for il in range(n_layer + 1):
            if il < start:
                devices.append(None)
                continue
            x = float(np.float32(np.float32(il - start) / np.float32(act)))
            # std::upper_bound: the first split point greater than x
            devices.append(next((g for g, s in enumerate(points) if s > x), n_gpus - 1))
        return devices

    def layers_per_gpu(self, n_layer: int, n_gpus: int) -> list[int]:
        """Offloaded layers (blocks and the output) each GPU holds; under split mode "tensor"
        every GPU holds a slice of every offloaded layer."""
        if self.split_mode == "tensor":
            return [self.offloaded(n_layer) if n_gpus else 0] * n_gpus
        devices = self.layer_devices(n_layer, n_gpus)
        return [sum(1 for d in devices if d == g) for g in range(n_gpus)]

    # -- words --

    def _experts_words(self, n_layer: int, article: str) -> str:
        if not self.n_cpu_moe:
            return ""
        n = self.experts_on_cpu(n_layer) if n_layer > 0 else self.n_cpu_moe
        if n < 0:
            return f", experts of all layers on {article}CPU"
        first = "the first " if article else ""
        return f", experts of {first}{n} layers on {article}CPU"

    def words(self, n_layer: int) -> str:
        """A sentence, counting blocks and the output as llama.cpp does: 'all 32 layers and the
        output on the GPU', '8 of 32 layers and the output on the GPU', ..."""
        if n_layer <= 0:
            return self.short_words(n_layer)
        blocks = self.blocks_on_gpu(n_layer)
        if blocks == n_layer:
            text = f"all {n_layer} layers and the output on the GPU"
        elif blocks:
            text = f"{blocks} of {n_layer} layers and the output on the GPU"
        elif self.output_on_gpu(n_layer):
            text = f"only the output layer on the GPU, all {n_layer} layers on the CPU"
        else:
            text = f"0 of {n_layer} layers on the GPU"
        return text + self._experts_words(n_layer, "the ")

    def short_words(self, n_layer: int) -> str:
        """For a table cell, counting the output as one of n_layer + 1 layers:
        'all 33 layers on GPU', '16 of 33 layers on GPU', 'CPU only'."""
        total = n_layer + 1 if n_layer > 0 else 0
        if self.cpu_only:
            text = "CPU only"
        elif not total:
            n = "all" if self.n_gpu_layers < 0 else self.n_gpu_layers
            text = f"{n} layers on GPU"
        elif self.all_on_gpu(n_layer):
            text = f"all {total} layers on GPU"
        else:
            text = f"{self.offloaded(n_layer)} of {total} layers on GPU"
        return text + self._experts_words(n_layer, "")

    def label(self, n_layer: int | None = None) -> str:
        """The terse form `fitbench plan` prints: 'ngl 16', 'ngl all, experts of 4 layers on
        CPU'."""
        known = n_layer is not None
        everything = self.n_gpu_layers < 0 or (known and self.all_on_gpu(n_layer or 0))
        text = f"ngl {'all' if everything else self.n_gpu_layers}"
        if self.n_cpu_moe:
            all_experts = self.n_cpu_moe < 0 or (known and self.n_cpu_moe >= (n_layer or 0))
            text += f", experts of {'all' if all_experts else self.n_cpu_moe} layers on CPU"
        return text

    # -- llama.cpp parameters --

    def ngl_text(self, n_layer: int) -> str:
        """-ngl for a command line: '99' for everything (n_layer + 1 when that is more)."""
        if self.all_on_gpu(n_layer):
            return NGL_ALL_TEXT if n_layer + 1 <= int(NGL_ALL_TEXT) else str(n_layer + 1)
        return str(self.offloaded(n_layer))

    def cli_args(self, n_layer: int) -> list[str]:
        """llama-server / llama-cli flags: -ngl, --n-cpu-moe (--cpu-moe for all), --split-mode
        (-sm), --main-gpu (-mg), --tensor-split (-ts); defaults are left out."""
        args = [f"-ngl {self.ngl_text(n_layer)}"]
        if self.n_cpu_moe:
            cmoe = self.experts_on_cpu(n_layer)
            args.append("--cpu-moe" if cmoe >= n_layer else f"--n-cpu-moe {cmoe}")
        if self.split_mode != "layer":
            args.append(f"--split-mode {self.split_mode}")
        if self.split_mode == "none" and self.main_gpu:
            args.append(f"--main-gpu {self.main_gpu}")
        if self.tensor_split:
            args.append("--tensor-split " + ",".join(f"{x:g}" for x in self.tensor_split))
        return args

    def llama_kwargs(self, n_layer: int) -> dict[str, Any]:
        """Arguments of llama_cpp.Llama (-1: every layer); n_cpu_moe has none (it needs tensor
        buffer overrides, which the bench worker sets through the low-level API)."""
        kwargs: dict[str, Any] = {
            "n_gpu_layers": -1 if self.all_on_gpu(n_layer) else self.offloaded(n_layer)
        }
        if self.split_mode != "layer":
            kwargs["split_mode"] = LLAMA_SPLIT_MODES[self.split_mode]
        if self.split_mode == "none" and self.main_gpu:
            kwargs["main_gpu"] = self.main_gpu
        if self.tensor_split:
            kwargs["tensor_split"] = list(self.tensor_split)
        return kwargs

    # -- record fields --

    def record_fields(self) -> dict[str, Any]:
        """The placement fields of a result record, as llama-bench writes them (tensor_split as
        '0.60/0.40', '0.00' for none; n_cpu_moe never negative)."""
        return {
            "n_gpu_layers": self.n_gpu_layers,
            "n_cpu_moe": max(self.n_cpu_moe, 0),
            "split_mode": self.split_mode,
            "main_gpu": self.main_gpu,
            "tensor_split": "/".join(f"{x:.2f}" for x in self.tensor_split or ()) or "0.00",
        }


__all__ = [
    "LLAMA_SPLIT_MODES",
    "SPLIT_MODES",
    "Placement",
    "SplitError",
    "check_split",
    "parse_tensor_split",
    "record_n_layer",
    "split_points",
]
