/* ggml's own vec_dot kernel over a tensor's bytes straight from a GGUF, in cache or streamed.
 *   gcc -O2 -o /tmp/vecdot_bench vecdot_bench.c -ldl
 *   /tmp/vecdot_bench LIBGGML_CPU FILE OFFSET BYTES ROW_WEIGHTS BLOCK_BYTES KERNEL MODE REPS
 * KERNEL: ggml_vec_dot_q8_0_q8_0 or ggml_vec_dot_q5_0_q8_0 (x blocks of 32 weights, y q8_0).
 * MODE cache: the first 512 KiB of the tensor, swept REPS times (L2-resident: compute only);
 * MODE stream: every row of the tensor, REPS sweeps (memory-bound, as the tg output matrix).
 * Prints the median sweep in ns per row. If real and twin data differ in cache, the kernel's
 * speed depends on values; if only streamed, the memory path does. */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

typedef void (*vec_dot_t)(int, float *, size_t, const void *, size_t, const void *, size_t, int);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 10) return 2;
    void *lib = dlopen(argv[1], RTLD_NOW);
    if (!lib) { fprintf(stderr, "%s\n", dlerror()); return 1; }
    void (*cpu_init)(void) = (void (*)(void))dlsym(lib, "ggml_cpu_init");
    if (cpu_init) cpu_init(); /* fills ggml's f16->f32 tables, which the kernels may use */
    vec_dot_t dot = (vec_dot_t)dlsym(lib, argv[7]);
    if (!dot) { fprintf(stderr, "no %s\n", argv[7]); return 1; }
    long off = atol(argv[3]), bytes = atol(argv[4]);
    int n = atoi(argv[5]), bb = atoi(argv[6]), stream = strcmp(argv[8], "stream") == 0;
    int reps = atoi(argv[9]);
    long row_bytes = (long)n / 32 * bb;
    int fd = open(argv[2], O_RDONLY);
    long page = 4096, start = off / page * page;
    const char *base = mmap(NULL, off + bytes - start, PROT_READ, MAP_SHARED, fd, start);
    if (base == MAP_FAILED) return 1;
    const char *x = base + (off - start);
    long rows = stream ? bytes / row_bytes : (512L << 10) / row_bytes;
    /* y: one q8_0 row of plausible activations (scale 0.02, int8 values uniform) */
    unsigned char *y = malloc((size_t)n / 32 * 34);
    srand(1);
    for (int b = 0; b < n / 32; b++) {
        uint16_t d = 0x2520; /* ~0.02 in f16 */
        memcpy(y + b * 34, &d, 2);
        for (int i = 0; i < 32; i++) y[b * 34 + 2 + i] = (unsigned char)(rand() % 255 - 127);
    }
    float *s = malloc(sizeof(float) * rows);
    int sweeps = stream ? reps : reps * 20;
    double *t = malloc(sizeof(double) * sweeps);
    for (int r = -2; r < sweeps; r++) {
        double t0 = now();
        for (long i = 0; i < rows; i++) dot(n, s + i, 0, x + i * row_bytes, 0, y, 0, 1);
        if (r >= 0) t[r] = now() - t0;
    }
    qsort(t, sweeps, sizeof(double), cmp);
    double sum = 0;
    for (long i = 0; i < rows; i++) sum += s[i];
    printf("%s %s %s: %.2f ns/row median, %.2f min (rows %ld, sum %g)\n", argv[7], argv[8], argv[2],
           t[sweeps / 2] * 1e9 / rows, t[0] * 1e9 / rows, rows, sum);
    return 0;
}
