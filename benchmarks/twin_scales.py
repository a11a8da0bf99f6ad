"""How real quantized files spread their block scales: the statistics twin/data.py's rule uses.

    PYTHONPATH=app python benchmarks/twin_scales.py REAL.gguf [REAL.gguf ...] [--json]

For every matrix of a real GGUF whose type has one f16 scale per block (Q4_0/Q4_1/Q5_0/Q5_1/
Q8_0; the K-quants' super-block d), the log2 of each block's |d| is centred on its tensor's
median. Printed per tensor role (attn_q, ffn_down, ..., token_embd): the standard deviation of
those centred values, pooled over the role's tensors; and over all matrices, the quantiles of
the centred values divided by their tensor's standard deviation (the shape data.py stretches to
each role's spread). Real files anyone can get from PyPI: see benchmarks/twin_fidelity.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader

from fitbench.core.twin.data import matrix_role  # the roles data.py's rule is keyed by

T = GGMLQuantizationType
# byte offset of the block's f16 scale d (ggml-common.h)
D_OFFSET = {T.Q4_0: 0, T.Q4_1: 0, T.Q5_0: 0, T.Q5_1: 0, T.Q8_0: 0, T.Q4_K: 0, T.Q5_K: 0,
            T.Q6_K: 208, T.Q2_K: 80, T.Q3_K: 108}  # fmt: skip
QUANTILES = (0.01, 0.1, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99)


def centred_log2_scales(path: Path) -> dict[str, list[np.ndarray]]:
    """role -> per tensor, log2|d| of its blocks minus the tensor's median."""
    out: dict[str, list[np.ndarray]] = {}
    for t in GGUFReader(path).tensors:
        off = D_OFFSET.get(T(int(t.tensor_type)))
        if off is None or len(t.shape) < 2:
            continue
        size = GGML_QUANT_SIZES[T(int(t.tensor_type))][1]
        blocks = np.frombuffer(bytes(t.data.tobytes()), np.uint8).reshape(-1, size)
        d = blocks[:, off : off + 2].copy().view(np.float16).astype(np.float32).ravel()
        logs = np.log2(np.abs(d[d != 0]))
        out.setdefault(matrix_role(t.name), []).append(logs - np.median(logs))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report: dict[str, object] = {}
    standardised: list[np.ndarray] = []
    for path in args.files:
        roles = centred_log2_scales(path)
        spread = {
            r: round(float(np.concatenate(parts).std()), 3) for r, parts in sorted(roles.items())
        }
        for parts in roles.values():
            standardised += [p / p.std() for p in parts if p.size > 64 and p.std() > 0]
        report[path.name] = spread
    z = np.concatenate(standardised)
    quantiles = (round(float(x), 3) for x in np.percentile(z, QUANTILES))
    report["shape"] = dict(zip(QUANTILES, quantiles, strict=True))
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for name, spread in report.items():
        print(name, spread)
    return 0


if __name__ == "__main__":
    sys.exit(main())
