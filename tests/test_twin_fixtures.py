"""The tiny-twin fixtures load and generate in real llama.cpp."""

from __future__ import annotations

from pathlib import Path

import pytest

from fitbench.core.twin.writer import is_twin, read_twin_marker, twin_kind
from twin_fixtures import load_llama


@pytest.mark.parametrize("fixture", ["tiny_dense_twin", "tiny_moe_twin"])
def test_tiny_twin_loads_and_generates(fixture: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(fixture)
    assert path.name.endswith(".fitbench-twin.gguf")
    llm = load_llama(path)
    try:
        meta = llm.metadata
        assert meta["general.architecture"] == "llama"
        assert meta["llama.block_count"] == "4"
        assert meta["fitbench.twin"] == "true"
        assert ("llama.expert_count" in meta) == (fixture == "tiny_moe_twin")
        # a multi-token prompt exercises batched matmuls, then a few decoded tokens
        out = llm("The quick brown fox jumps over the lazy dog", max_tokens=6, temperature=0.0)
        assert out["usage"]["completion_tokens"] >= 1
        assert out["usage"]["prompt_tokens"] > 5
    finally:
        llm.close()
    assert is_twin(path)
    assert twin_kind(path) == "twin"
    marker = read_twin_marker(path)
    assert marker is not None and marker.layers_kept == (0, 1, 2, 3)
