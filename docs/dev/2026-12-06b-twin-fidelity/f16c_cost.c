/* Cost of F16C conversions (what ggml's f16 KV cache and flash attention use) on subnormal halves
 * or results, against normal ones, and the MXCSR flags each raises (DE 0x02, UE 0x10, PE 0x20);
 * run with and without LD_PRELOAD=/tmp/ftz_shim.so.
 *   gcc -O2 -mavx2 -mf16c -mfma -o /tmp/f16c_cost f16c_cost.c && /tmp/f16c_cost */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define N 4096
static uint16_t h[N];
static float f[N];

static unsigned int flags(void) {
    unsigned int v = _mm_getcsr();
    _mm_setcsr(v & ~0x3fu);
    return v & 0x3f;
}

static void half_to_single(uint16_t bits, const char *label) {
    for (int i = 0; i < N; i++) h[i] = bits;
    flags();
    double t = now();
    for (int r = 0; r < 20000; r++) {
        for (int i = 0; i < N; i += 8) {
            __m256 v = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i)));
            _mm256_storeu_ps(f + i, _mm256_add_ps(_mm256_loadu_ps(f + i), v));
        }
        __asm__ volatile("" ::"r"(f) : "memory");
    }
    double ns = (now() - t) * 1e9 / (20000.0 * N);
    printf("  vcvtph2ps %-28s %6.3f ns/elem, flags %#04x\n", label, ns, flags());
}

static void single_to_half(float x, const char *label) {
    for (int i = 0; i < N; i++) f[i] = x;
    flags();
    double t = now();
    for (int r = 0; r < 20000; r++) {
        for (int i = 0; i < N; i += 8) {
            __m128i v = _mm256_cvtps_ph(_mm256_loadu_ps(f + i), 0);
            _mm_storeu_si128((__m128i *)(h + i), v);
        }
        __asm__ volatile("" ::"r"(h) : "memory");
    }
    double ns = (now() - t) * 1e9 / (20000.0 * N);
    printf("  vcvtps2ph %-28s %6.3f ns/elem, flags %#04x\n", label, ns, flags());
}

static void single_fma(float x, const char *label) {
    for (int i = 0; i < N; i++) f[i] = x;
    flags();
    double t = now();
    __m256 acc = _mm256_setzero_ps();
    for (int r = 0; r < 20000; r++)
        for (int i = 0; i < N; i += 8)
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(f + i), _mm256_set1_ps(0.5f), acc);
    volatile float sink = acc[0];
    (void)sink;
    double ns = (now() - t) * 1e9 / (20000.0 * N);
    printf("  vfmadd f32 %-27s %6.3f ns/elem, flags %#04x\n", label, ns, flags());
}

int main(void) {
    printf("MXCSR %#x\n", _mm_getcsr());
    half_to_single(0x3c00, "normal half (1.0)");
    half_to_single(0x0010, "subnormal half (9.5e-7)");
    single_to_half(1.0f, "normal (1.0)");
    single_to_half(1e-6f, "to subnormal half (1e-6)");
    single_to_half(1e-39f, "subnormal f32 (1e-39)");
    single_fma(1e-3f, "normal (1e-3)");
    single_fma(1e-39f, "subnormal operand (1e-39)");
    return 0;
}
