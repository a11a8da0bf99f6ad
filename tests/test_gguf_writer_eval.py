"""gguf's GGUFWriter rewrites a twin's header byte for byte (issue 20, item 5; docs/twins.md):
the premise for letting it write twin headers instead of FitBench's hand-coded writer."""

from __future__ import annotations

import sys
from pathlib import Path

from gguf import GGUFReader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from gguf_writer_header import compare, rewrite_header


def test_gguf_writer_reproduces_twin_headers(
    tiny_dense_twin: Path, tiny_moe_twin: Path, tmp_path: Path
) -> None:
    for twin in (tiny_dense_twin, tiny_moe_twin):
        ok, text = compare(twin)
        assert ok, text
        header = rewrite_header(twin, tmp_path / "h.gguf")
        assert len(header) == GGUFReader(twin).data_offset
