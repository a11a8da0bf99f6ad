#!/bin/bash
# token_embd (Q8_0, 262144 x 640, the tied output matrix: ~57% of gemma3 tg time) of each file:
# plain mmap read bandwidth, ggml's vec_dot streamed over it, and vec_dot on its first 512 KiB in
# cache; files in turn, R rounds, each file evicted after its run (shared frames).
#   gcc -O2 -mavx2 -o /tmp/memread memread.c; gcc -O2 -o /tmp/vecdot_bench vecdot_bench.c -ldl
set -u
W=${W:-/tmp/t24b}
R=${R:-5}
L=$(ls -d /work/main/.venv/lib/python3*/site-packages/llama_cpp/lib)/libggml-cpu.so
FILES="gemma-3-270m-q4_k_m.gguf:6527680 gemma.twin.gguf:6528000 gemma.twin.realdata.gguf:6528000
gemma.real.twindata.gguf:6527680 gemma.twin.unique.gguf:6528000 gemma.real.repeat.gguf:6527680"
uptime
for r in $(seq $R); do
    for fo in $FILES; do
        f=$W/${fo%%:*} o=${fo##*:}
        nice -n -15 /tmp/memread $f $o 178257920 5 1
        nice -n -15 /tmp/vecdot_bench $L $f $o 178257920 640 34 ggml_vec_dot_q8_0_q8_0 stream 5
        nice -n -15 /tmp/vecdot_bench $L $f $o 178257920 640 34 ggml_vec_dot_q8_0_q8_0 cache 50
    done
done
uptime
