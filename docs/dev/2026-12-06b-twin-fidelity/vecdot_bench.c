/* ggml's own vec_dot kernel over a tensor's bytes straight from a GGUF, in cache or streamed.
 *   gcc -O2 -mavx2 -mfma -mf16c -mavxvnni -o /tmp/vecdot_bench vecdot_bench.c -ldl
 *   /tmp/vecdot_bench LIBGGML_CPU FILE OFFSET BYTES ROW_WEIGHTS BLOCK_BYTES KERNEL MODE REPS
 * KERNEL: ggml_vec_dot_q8_0_q8_0 or ggml_vec_dot_q5_0_q8_0 (x blocks of 32 weights, y q8_0),
 * or replica_table / replica_f16c / replica_oneline (q8_0 only, below; oneline: the table
 * loads kept, their indices confined to one cache line, so scales are wrong but timing is not).
 * MODE cache: the first 512 KiB of the tensor, swept REPS times (L2-resident: compute only);
 * MODE stream: every row of the tensor, REPS sweeps (memory-bound, as the tg output matrix).
 * Prints the median sweep in ns per row. If real and twin data differ in cache, the kernel's
 * speed depends on values; if only streamed, the memory path does. The file is dropped from the
 * page cache at the end, so files run in turn share the same frames (twin_fidelity's default). */
#include <dlfcn.h>
#include <fcntl.h>
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

typedef void (*vec_dot_t)(int, float *, size_t, const void *, size_t, const void *, size_t, int);

/* Replicas of ggml's AVX-VNNI q8_0 x q8_0 loop (its disassembly in this build: the two block
 * scales converted through ggml_table_f32_f16, a 256 KiB table indexed by the f16 bits), one
 * with such a table and one with the F16C instruction instead: one variable, the lookup. */
static float table[65536];

static inline float dot_q8_0(int n, const unsigned char *x, const unsigned char *y, int f16c) {
    __m256 acc = _mm256_setzero_ps();
    for (int ib = 0; ib < n / 32; ib++) {
        uint16_t dx, dy;
        memcpy(&dx, x + ib * 34, 2);
        memcpy(&dy, y + ib * 34, 2);
        /* f16c 2: the same table loads, but every index in one 64-byte line of the table */
        float d = f16c == 1   ? _cvtsh_ss(dx) * _cvtsh_ss(dy)
                  : f16c == 2 ? table[0x2000 | (dx & 15)] * table[0x2000 | (dy & 15)]
                              : table[dx] * table[dy];
        __m256i qx = _mm256_loadu_si256((const __m256i *)(x + ib * 34 + 2));
        __m256i qy = _mm256_loadu_si256((const __m256i *)(y + ib * 34 + 2));
        __m256i p = _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(qx, qx),
                                            _mm256_sign_epi8(qy, qx));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(p), acc);
    }
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

static void replica_table(int n, float *s, size_t bs, const void *x, size_t bx, const void *y,
                          size_t by, int nrc) {
    (void)bs, (void)bx, (void)by, (void)nrc;
    *s = dot_q8_0(n, x, y, 0);
}

static void replica_oneline(int n, float *s, size_t bs, const void *x, size_t bx, const void *y,
                            size_t by, int nrc) {
    (void)bs, (void)bx, (void)by, (void)nrc;
    *s = dot_q8_0(n, x, y, 2);
}

static void replica_f16c(int n, float *s, size_t bs, const void *x, size_t bx, const void *y,
                         size_t by, int nrc) {
    (void)bs, (void)bx, (void)by, (void)nrc;
    *s = dot_q8_0(n, x, y, 1);
}

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
    for (int i = 0; i < 65536; i++) table[i] = _cvtsh_ss((unsigned short)i);
    vec_dot_t dot = strcmp(argv[7], "replica_table") == 0     ? replica_table
                    : strcmp(argv[7], "replica_oneline") == 0 ? replica_oneline
                    : strcmp(argv[7], "replica_f16c") == 0 ? replica_f16c
                                                           : (vec_dot_t)dlsym(lib, argv[7]);
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
    munmap((void *)base, off + bytes - start);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); /* the next file loads into these frames */
    qsort(t, sweeps, sizeof(double), cmp);
    double sum = 0;
    for (long i = 0; i < rows; i++) sum += s[i];
    printf("%s %s %s: %.2f ns/row median, %.2f min (rows %ld, sum %g)\n", argv[7], argv[8], argv[2],
           t[sweeps / 2] * 1e9 / rows, t[0] * 1e9 / rows, rows, sum);
    return 0;
}
