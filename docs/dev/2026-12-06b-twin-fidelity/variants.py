"""Twin variants for one-variable experiments, written over a copy of a twin (same header).

    python variants.py unique TWIN OUT [NAME_PART]  # data.py's rule, but every block its own
    python variants.py repeat REAL OUT [NAME_PART]  # the real data, its first pool repeated
    python variants.py splice TWIN OUT REAL [NAME_PART]  # the twin's header, the real data
    python variants.py shifted TWIN OUT [NAME_PART]  # the twin's pool, never page-periodic
    python variants.py shuffle SRC OUT [NAME_PART]  # each matching tensor's blocks permuted
    python variants.py realscales TWIN OUT REAL [NAME_PART]  # the twin's quants, real f16 scales

unique: each matching tensor gets freshly generated weights of data.py's distribution, quantized
by ggml, so no page of it repeats (a twin streams one 1 Mi-weight pool per type and role, whose
size is a whole number of 4 KiB pages: within a tensor every page recurs every pool).
repeat: a copy of REAL whose matching tensors repeat their own first pool-sized run of bytes, as
a twin's do: the real values, a twin's periodicity.
shifted: data.py's pool streamed as tensor_chunks() does, except that every pass after the
first starts one block later than the one before it, so a pass's pages are offset against the
last pass's by one more block: the same blocks and scales, no 4 KiB page repeated (for 4096 /
gcd(block bytes, 4096) passes: 2048 for Q8_0/Q5_0/Q6_K, 256 for Q4_K).
shuffle: a copy of SRC whose matching quantized tensors have their blocks in a random order
(the same blocks, so the same scales and quants, but no row structure: activations turn random).
realscales: a copy of TWIN whose matching Q4_K/Q5_0/Q6_K/Q8_0 tensors carry, block by block, the
real file's f16 super-block scales (d, and dmin for Q4_K) over the twin's own quants and
sub-scales: the real scale values and their variety (the f16 table lines they touch), the
twin's everything else. (Lead's session, 06:55.)
splice: a copy of TWIN whose matching tensors (all by default) hold the real file's bytes: the
twin's header and offsets (its metadata is longer, so its data start 320 bytes later), the real
values (../2026-12-06-twin-fidelity/splice.py, for every tensor).
"""

from __future__ import annotations

import shutil
import sys
import zlib
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFReader

from fitbench.core.twin import data

CHUNK_ROWS = 4096  # pool rows of data._ROW weights generated at a time (16 Mi weights)


# byte offsets of the f16 scale fields inside one block, per type (ggml-common.h)
_SCALE_FIELDS = {
    GGMLQuantizationType.Q8_0: (0,),
    GGMLQuantizationType.Q5_0: (0,),
    GGMLQuantizationType.Q4_K: (0, 2),  # d, dmin
    GGMLQuantizationType.Q6_K: (208,),  # ql[128] qh[64] scales[16] d
}


def realscales(twin: Path, out: Path, real: Path, part: str) -> None:
    shutil.copyfile(twin, out)
    real_tensors = {t.name: t for t in GGUFReader(real).tensors}
    with out.open("r+b") as f:
        for t in GGUFReader(twin).tensors:
            fields = _SCALE_FIELDS.get(t.tensor_type)
            r = real_tensors.get(t.name)
            if part not in t.name or fields is None or r is None or r.tensor_type != t.tensor_type:
                continue
            block = GGML_QUANT_SIZES[t.tensor_type][1]
            mine = np.frombuffer(t.data.tobytes(), np.uint8).reshape(-1, block).copy()
            theirs = np.frombuffer(r.data.tobytes(), np.uint8).reshape(-1, block)
            for off in fields:
                mine[:, off : off + 2] = theirs[:, off : off + 2]
            f.seek(t.data_offset)
            f.write(mine.tobytes())
            print(f"realscales {t.name} {t.tensor_type.name} {len(mine)} blocks")


def unique(src: Path, out: Path, part: str) -> None:
    shutil.copyfile(src, out)
    with out.open("r+b") as f:
        for t in GGUFReader(src).tensors:
            n = int(t.n_elements)
            role = data.tensor_role(t.name, len(t.shape))
            if part not in t.name or role != "matrix" or n % data._ROW:
                continue
            rng = np.random.default_rng(zlib.crc32(t.name.encode()))
            f.seek(t.data_offset)
            left = n // data._ROW
            while left:
                rows = min(left, CHUNK_ROWS)
                w = data._weights(rng, rows * data._ROW, data.WEIGHT_STD)
                f.write(data._quantize(int(t.tensor_type), w))
                left -= rows
            assert f.tell() == t.data_offset + t.n_bytes, t.name
            print(f"unique {t.name} {t.tensor_type.name} {t.n_bytes} bytes")


def repeat(src: Path, out: Path, part: str) -> None:
    shutil.copyfile(src, out)
    with out.open("r+b") as f:
        for t in GGUFReader(src).tensors:
            if part not in t.name or len(t.shape) < 2:
                continue
            block, size = GGML_QUANT_SIZES[GGMLQuantizationType(int(t.tensor_type))]
            period = data.POOL_WEIGHTS // block * size
            raw = bytes(t.data.tobytes())
            if len(raw) <= period:
                continue
            reps = -(-len(raw) // period)
            f.seek(t.data_offset)
            f.write((raw[:period] * reps)[: len(raw)])
            print(f"repeat {t.name} {t.tensor_type.name} period {period} x{reps}")


def shifted(src: Path, out: Path, part: str) -> None:
    shutil.copyfile(src, out)
    with out.open("r+b") as f:
        for t in GGUFReader(src).tensors:
            role = data.tensor_role(t.name, len(t.shape))
            if part not in t.name or role != "matrix":
                continue
            size = GGML_QUANT_SIZES[GGMLQuantizationType(int(t.tensor_type))][1]
            pool = data.block_pool(int(t.tensor_type), role)
            n_blocks = len(pool) // size
            k = zlib.crc32(t.name.encode()) % n_blocks
            left, passes = int(t.n_bytes), 0
            f.seek(t.data_offset)
            while left > 0:
                piece = pool[k * size :][:left]
                f.write(piece)
                left -= len(piece)
                passes += 1
                k = passes % n_blocks
            print(f"shifted {t.name} {t.tensor_type.name} {passes} passes")


def shuffle(src: Path, out: Path, part: str) -> None:
    shutil.copyfile(src, out)
    rng = np.random.default_rng(0)
    with out.open("r+b") as f:
        for t in GGUFReader(src).tensors:
            block, size = GGML_QUANT_SIZES[GGMLQuantizationType(int(t.tensor_type))]
            if part not in t.name or len(t.shape) < 2 or block == 1:
                continue
            blocks = np.frombuffer(bytes(t.data.tobytes()), dtype=np.uint8).reshape(-1, size)
            f.seek(t.data_offset)
            f.write(blocks[rng.permutation(len(blocks))].tobytes())
            print(f"shuffled {t.name} {t.tensor_type.name} {len(blocks)} blocks")


def splice(src: Path, out: Path, real: Path, part: str) -> None:
    shutil.copyfile(src, out)
    donor = {t.name: t for t in GGUFReader(real).tensors}
    n = 0
    with out.open("r+b") as f:
        for t in GGUFReader(src).tensors:
            if part not in t.name:
                continue
            d = donor[t.name]
            assert d.tensor_type == t.tensor_type and list(d.shape) == list(t.shape), t.name
            f.seek(t.data_offset)
            f.write(bytes(d.data.tobytes()))
            n += 1
    print(f"spliced {n} tensors of {real} into {out}")


if __name__ == "__main__":
    mode, src, dst = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    rest = sys.argv[4:]
    if mode in ("splice", "realscales"):
        combine = splice if mode == "splice" else realscales
        combine(src, dst, Path(rest[0]), rest[1] if len(rest) > 1 else "")
    else:
        modes = {"unique": unique, "repeat": repeat, "shifted": shifted, "shuffle": shuffle}
        modes[mode](src, dst, rest[0] if rest else "")
