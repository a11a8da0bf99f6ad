"""Twin variants with other data rules (experiment): std, shape, both."""
import sys, numpy as np
sys.path.insert(0, "/work/main/app")
from fitbench.core.twin import data
from fitbench.core.twin.writer import manifest_from_gguf, write_twin
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType as T

P = np.array([0.01,0.1,1,5,25,50,75,95,99,99.9,99.99])
REAL = {  # centered log2|d| quantiles of gemma-3-270m blk.* (shape.py)
 "Q4_K": [-2.32,-1.82,-1.05,-0.53,-0.17,0.00,0.19,0.63,1.51,2.46,2.97],
 "Q5_0": [-3.57,-2.52,-1.37,-0.78,-0.28,0.00,0.29,0.92,1.79,2.57,3.04],
 "Q6_K": [-1.16,-0.77,-0.50,-0.33,-0.15,0.00,0.16,0.51,1.30,2.43,3.06],
 "Q8_0": [-1.18,-0.97,-0.72,-0.51,-0.21,0.00,0.23,0.58,0.86,1.22,1.57],
}
mode, out = sys.argv[1], sys.argv[2]
real = sys.argv[3] if len(sys.argv) > 3 else "/tmp/t24b/gemma-3-270m-q4_k_m.gguf"
orig_weights = data._weights
orig_quant = data._quantize
if "std" in mode:
    data.WEIGHT_STD = 0.02 * 2 ** 0.7
if "shape" in mode:
    def _quantize(ggml_type, src):
        name = T(ggml_type).name
        if name in REAL:
            bs = GGML_QUANT_SIZES[T(ggml_type)][0]
            blocks = src.reshape(-1, bs)
            amax = np.abs(blocks).max(axis=1)
            l = np.log2(amax); med = np.median(l)
            ranks = (np.argsort(np.argsort(l)) + 0.5) / len(l) * 100
            target = med + np.interp(ranks, P, REAL[name])  # flat beyond the table's ends
            src = (blocks * (2 ** (target - l))[:, None]).reshape(src.shape).astype(np.float32)
        return orig_quant(ggml_type, np.ascontiguousarray(src))
    data._quantize = _quantize
data.block_pool.cache_clear()
print(write_twin(manifest_from_gguf(real), out).path)
