#!/bin/bash
# One variable, the f16 -> f32 table lookup of the block scales: ggml's q8_0 kernel and its two
# replicas (table / F16C) streamed over token_embd of each file, R rounds, shared frames.
#   gcc -O2 -mavx2 -mfma -mf16c -mavxvnni -o /tmp/vecdot_bench2 vecdot_bench.c -ldl
set -u
W=${W:-/tmp/t24b}
R=${R:-4}
L=$(ls -d /work/main/.venv/lib/python3*/site-packages/llama_cpp/lib)/libggml-cpu.so
FILES="gemma-3-270m-q4_k_m.gguf:6527680 gemma.twin.gguf:6528000 gemma.twin.unique.gguf:6528000
gemma.real.repeat.gguf:6527680"
uptime
for r in $(seq $R); do
    for fo in $FILES; do
        f=$W/${fo%%:*} o=${fo##*:}
        for k in ggml_vec_dot_q8_0_q8_0 replica_table replica_f16c; do
            nice -n -15 /tmp/vecdot_bench2 $L $f $o 178257920 640 34 $k stream 5
        done
    done
done
uptime
