"""How to run the recommended deployment elsewhere: llama-server, llama-cpp-python, Ollama,
LM Studio. Settings without an equivalent in a tool are said so, not silently dropped."""

from __future__ import annotations

from typing import Any

from fitbench.core.model.catalog import Model
from fitbench.core.plan.placement import Placement


def _python_value(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f"{x:g}" for x in value) + "]"
    return str(value)


def recipe(
    model: Model, quant: str, placement: Placement, ctx: int, batch: int, threads: int
) -> dict[str, Any]:
    q = model.quant(quant)
    path = f"models/{q.file}"
    n = model.arch.n_layer
    ngl, *placement_flags = placement.cli_args(n)
    experts_on_cpu = placement.experts_on_cpu(n)
    notes: list[str] = []
    # llama-server shares -c among its -np slots: each sequence gets ctx
    server = [
        "llama-server",
        f"-m {path}",
        f"-c {ctx * batch}",
        f"-np {batch}",
        ngl,
        f"-t {threads}",
        *placement_flags,
        "--host 127.0.0.1 --port 8080",
    ]
    if q.parts:
        notes.append(
            f"{q.file} comes in {len(q.parts)} parts; join them first "
            f"(cat {' '.join(q.parts)} > {q.file}) or let `fitbench download` do it."
        )
    kwargs = placement.llama_kwargs(n)
    python = (
        f'Llama(model_path="{path}", n_gpu_layers={kwargs.pop("n_gpu_layers")}, '
        f"n_ctx={ctx}, n_batch=512, n_threads={threads}"
        + "".join(f", {k}={_python_value(v)}" for k, v in kwargs.items())
        + ")"
    )
    if experts_on_cpu:
        notes.append(
            "llama-cpp-python's Llama() has no argument for keeping experts on the CPU; use "
            "llama-server (--n-cpu-moe) for this placement."
        )
    ollama = "\n".join(
        [
            f"FROM ./{path}",
            f"PARAMETER num_ctx {ctx}",
            f"PARAMETER num_gpu {placement.offloaded(n)}",
            f"PARAMETER num_thread {threads}",
        ]
    )
    if batch > 1:
        ollama += f"\n# serve with: OLLAMA_NUM_PARALLEL={batch} ollama serve"
    if experts_on_cpu:
        notes.append("Ollama has no setting for keeping only the experts on the CPU.")
    lm_studio = [
        f"GPU Offload: {min(placement.offloaded(n), n)} of {n} layers",
        f"Context Length: {ctx}",
        f"CPU Thread Pool Size: {threads}",
    ]
    if experts_on_cpu >= n:
        lm_studio.append("Force Model Expert Weights onto CPU: on")
    elif experts_on_cpu:
        notes.append("LM Studio keeps all experts on the CPU or none, not the first N layers'.")
    if batch > 1:
        lm_studio.append(f"Max Concurrent Predictions: {batch}")
    return {
        "llama_server": " ".join(server),
        "llama_cpp_python": python,
        "ollama": ollama,
        "lm_studio": "; ".join(lm_studio),
        "download": f"fitbench download --model {model.id} --quant {quant}",
        "notes": notes,
    }
