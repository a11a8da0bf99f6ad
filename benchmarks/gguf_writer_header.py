"""Can gguf's GGUFWriter rewrite a GGUF header byte for byte? (issue 20, item 5; docs/twins.md)

For each file: read every key/value (with its exact value type and array element type) and every
tensor info with gguf.GGUFReader, hand them to GGUFWriter (add_key_value(key, val, vtype,
sub_type), add_tensor_info(..., raw_dtype)), write the header to memory and compare it with the
file's bytes up to its data offset. Prints the first difference and what it is.

    python benchmarks/gguf_writer_header.py FILE.gguf [FILE.gguf ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter


def _value(field: Any) -> tuple[Any, GGUFValueType, GGUFValueType | None]:
    vtype = GGUFValueType(field.types[0])
    if vtype == GGUFValueType.ARRAY:
        sub = GGUFValueType(field.types[1]) if len(field.types) > 1 else GGUFValueType.UINT8
        items = [field.parts[i] for i in field.data]
        if sub == GGUFValueType.STRING:
            return [bytes(x).decode("utf-8") for x in items], vtype, sub
        return [x.tolist()[0] for x in items], vtype, sub
    part = field.parts[field.data[0]]
    if vtype == GGUFValueType.STRING:
        return bytes(part).decode("utf-8"), vtype, None
    return part.tolist()[0], vtype, None


def rewrite_header(path: Path, scratch: Path) -> bytes:
    reader = GGUFReader(path)
    arch_field = reader.fields.get("general.architecture")
    arch = bytes(arch_field.parts[arch_field.data[0]]).decode() if arch_field else "llama"
    writer = GGUFWriter(scratch, arch)
    # GGUFWriter puts general.architecture first on its own; keep the file's order instead
    writer.kv_data[0].clear()
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):  # the reader's pseudo-fields: magic, version, counts
            continue
        val, vtype, sub = _value(field)
        writer.add_key_value(name, val, vtype, sub_type=sub)
    for t in reader.tensors:
        # numpy order (outermost first); with raw_dtype and a non-uint8 dtype the shape is kept
        shape = [int(x) for x in reversed(t.shape.tolist())]
        writer.add_tensor_info(t.name, shape, np.dtype(np.float32), int(t.n_bytes), t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    header = scratch.read_bytes()
    return header + b"\0" * ((-len(header)) % writer.data_alignment)


def compare(path: Path) -> tuple[bool, str]:
    reader = GGUFReader(path)
    original = path.read_bytes()[: reader.data_offset]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rewritten = rewrite_header(path, Path(tmp) / "header.gguf")
    except Exception as exc:  # report what GGUFWriter refuses, do not stop the survey
        return False, f"GGUFWriter refused it: {type(exc).__name__}: {exc}"
    if rewritten == original:
        return True, f"identical ({len(original)} header bytes)"
    at = next(
        (i for i, (a, b) in enumerate(zip(original, rewritten, strict=False)) if a != b),
        min(len(original), len(rewritten)),
    )
    return False, (
        f"differs at byte {at} of {len(original)} (rewritten: {len(rewritten)} bytes); "
        f"file {original[at : at + 16].hex()} vs writer {rewritten[at : at + 16].hex()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    same = True
    for path in args.files:
        ok, text = compare(path)
        same &= ok
        print(f"{path}: {text}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
