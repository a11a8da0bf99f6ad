#!/bin/bash
# ggml's q8_0 vec_dot streamed over token_embd of each file in turn, R rounds, shared frames;
# paired ratios per round against the first file: python3 paired_kernels.py stream-*.txt
set -u
W=${W:-/tmp/t24b}
R=${R:-20}
K=${K:-ggml_vec_dot_q8_0_q8_0}
L=$(ls -d /work/main/.venv/lib/python3*/site-packages/llama_cpp/lib)/libggml-cpu.so
FILES=${FILES:-"gemma-3-270m-q4_k_m.gguf:6527680 gemma.twin.gguf:6528000
gemma.twin.unique.gguf:6528000 gemma.real.repeat.gguf:6527680 gemma.twin.realdata.gguf:6528000"}
uptime
for r in $(seq $R); do
    for fo in $FILES; do
        nice -n -15 /tmp/vecdot_bench2 $L $W/${fo%%:*} ${fo##*:} 178257920 640 34 $K stream 5
    done
done
uptime
