"""Copy a twin and overwrite chosen tensors' data with the real file's (same name, type, shape)."""
import shutil, sys
from gguf import GGUFReader
real, twin, out, pattern = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
shutil.copyfile(twin, out)
r = {t.name: t for t in GGUFReader(real).tensors}
n = 0
with open(out, "r+b") as f:
    for t in GGUFReader(twin).tensors:
        if pattern in t.name:
            src = r[t.name]
            assert src.tensor_type == t.tensor_type and list(src.shape) == list(t.shape), t.name
            f.seek(t.data_offset)
            f.write(bytes(src.data.tobytes()))
            n += 1
print(f"spliced {n} tensors matching {pattern!r} into {out}")
