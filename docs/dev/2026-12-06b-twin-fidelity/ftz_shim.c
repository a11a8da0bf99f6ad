/* LD_PRELOAD shim: flush-to-zero and denormals-are-zero (MXCSR bits 0x8040) from process start.
 *
 *   gcc -O2 -shared -fPIC -fopenmp -o /tmp/ftz_shim.so ftz_shim.c
 *   LD_PRELOAD=/tmp/ftz_shim.so python ...          # FTZ|DAZ on (FITBENCH_FTZ unset or 1)
 *   FITBENCH_FTZ=0 LD_PRELOAD=/tmp/ftz_shim.so ...  # shim loaded, MXCSR left as it was
 *
 * New threads (pthreads, and so libgomp's pool, which ggml-cpu uses here) copy the creating
 * thread's MXCSR, so setting it in a constructor before any thread exists covers ggml's workers.
 * fitbench_mxcsr() and fitbench_omp_mxcsr() read it back on the calling thread / on every thread
 * of an OpenMP team (libgomp reuses its pool, the same threads ggml's graph ran on); their sticky
 * flags show whether a phase met denormal operands (DE, 0x02) or made tiny results (UE, 0x10). */
#include <omp.h>
#include <stdlib.h>
#include <xmmintrin.h>

__attribute__((constructor)) static void fitbench_ftz_on(void) {
    const char *v = getenv("FITBENCH_FTZ");
    if (v == NULL || v[0] != '0') _mm_setcsr(_mm_getcsr() | 0x8040);
}

/* MXCSR of the calling thread; clear: then reset its sticky exception flags (bits 0-5: invalid,
 * denormal operand, divide by zero, overflow, underflow, precision). */
unsigned int fitbench_mxcsr(int clear) {
    unsigned int v = _mm_getcsr();
    if (clear) _mm_setcsr(v & ~0x3fu);
    return v;
}

/* out[i] = MXCSR of team thread i (flags reset after reading if clear); returns the team size. */
int fitbench_omp_mxcsr(unsigned int *out, int n, int clear) {
    int size = 0;
#pragma omp parallel num_threads(n)
    {
        out[omp_get_thread_num()] = fitbench_mxcsr(clear);
#pragma omp single
        size = omp_get_num_threads();
    }
    return size;
}
