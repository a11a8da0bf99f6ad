"""One manifest resolver (core/twin/resolve.py) and one reader of a machine's memory
(MachineMemory): the planner, the advice, the GUI and the quick sweep all see the same answer."""

from __future__ import annotations

from pathlib import Path

from fitbench.core.advise.memory import SOURCE_BUILTIN, SOURCE_FILE, PlannedMemory
from fitbench.core.hardware.detect import MachineMemory
from fitbench.core.model import catalog
from fitbench.core.twin import resolve
from fitbench.core.twin.resolve import ManifestSource
from hub_server import HubServer
from test_gguf_builders import LlamaShape, Q, write_llama_gguf


def test_a_quant_not_downloaded_resolves_to_the_built_in_manifest() -> None:
    model = catalog.load().get("llama-2-70b-chat")
    found = resolve.of_quant(model, "Q4_K_M")  # no network unless asked
    assert found.source is ManifestSource.BUILTIN and found.path is None
    assert found.manifest.n_layer == model.arch.n_layer


def test_a_path_is_its_own_header(tmp_path: Path) -> None:
    path = write_llama_gguf(tmp_path / "m.gguf", LlamaShape(n_layer=3), Q.Q4_K)
    found = resolve.of_file(path)
    assert (found.source, found.path, found.manifest.n_layer) == (ManifestSource.FILE, path, 3)


def test_the_download_wins_and_the_advice_reads_the_same_manifest(
    hub_server: HubServer, tmp_path: Path
) -> None:
    from fitbench.core.download import hub as download

    model = catalog.load().get("llama-2-70b-chat")
    path = write_llama_gguf(tmp_path / "small.gguf", LlamaShape(n_layer=3), Q.Q4_K)
    hub_server.add_file(model.repo, model.quant("Q4_K_M").file, path)
    fetched = download.download_quant(model.id, "Q4_K_M")
    found = resolve.of_quant(model, "Q4_K_M")
    assert (found.source, found.path, found.manifest.n_layer) == (
        ManifestSource.FILE,
        fetched.path,
        3,
    )
    planner = PlannedMemory([])
    assert planner.manifest(model, "Q4_K_M") is not None
    assert planner.manifest(model, "Q4_K_M").n_layer == 3  # type: ignore[union-attr]
    assert planner.sources[f"{model.id}/Q4_K_M"] == SOURCE_FILE
    # a download whose header cannot be read: the advice plans from the built-in manifest
    Path(fetched.path).write_bytes(b"not a gguf file")
    planner = PlannedMemory([])
    assert planner.manifest(model, "Q4_K_M").n_layer == model.arch.n_layer  # type: ignore[union-attr]
    assert planner.sources[f"{model.id}/Q4_K_M"] == SOURCE_BUILTIN


def test_machine_memory_reads_whole_and_partial_reports() -> None:
    nvml = {
        "gpus": [{"vram_total_bytes": 24}, {"vram_total_bytes": 16}],
        "ram": {"total_bytes": 64, "usable_bytes": 32, "available_bytes": 20},
        "llama_cpp": {"gpu_offload": True, "devices": []},
    }
    m = MachineMemory.of(nvml)
    assert (m.gpu_vram_bytes, m.vram_source, m.usable_ram_bytes, m.available_ram_bytes) == (
        (24, 16),
        "nvml",
        32,
        20,
    )
    assert m.gpu_offload is True
    metal = {
        "gpus": [],
        "ram": {"total_bytes": 64},
        "llama_cpp": {
            "devices": [
                {"type": "gpu", "memory_total_bytes": 48},
                {"type": "igpu", "memory_total_bytes": 8},  # host RAM, counted there
                {"type": "gpu", "memory_total_bytes": None},
            ]
        },
    }
    m = MachineMemory.of(metal)
    assert (m.gpu_vram_bytes, m.vram_source, m.usable_ram_bytes) == ((48,), "llama.cpp", 64)
    assert m.gpu_offload is None
    empty = MachineMemory.of({})
    assert (empty.gpu_vram_bytes, empty.vram_source, empty.usable_ram_bytes) == ((), "none", 0)
