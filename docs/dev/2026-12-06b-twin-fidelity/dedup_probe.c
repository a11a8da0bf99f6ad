/* Does the memory under this VM merge identical pages (host KSM)? A merged page is shared
 * copy-on-write on the host, so the guest's first write to it takes a host fault (microseconds).
 *   gcc -O2 -o /tmp/dedup_probe dedup_probe.c && /tmp/dedup_probe MiB WAIT_S
 * Fills two anonymous buffers of MiB each, one with a repeated 1 MiB pattern (272 identical
 * page contents... like a twin's pool) and one with unique random bytes, waits WAIT_S seconds,
 * then times a one-byte write to every page of each (median and 99th percentile per page, and
 * how many pages took over 5 us). Also reads each buffer once (GB/s) before the writes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void report(const char *label, unsigned char *buf, size_t size) {
    size_t pages = size / 4096;
    volatile uint64_t sink = 0;
    double t0 = now();
    for (size_t i = 0; i < size; i += 64) sink += *(volatile uint64_t *)(buf + i);
    double read_s = now() - t0;
    double *t = malloc(sizeof(double) * pages);
    size_t slow = 0;
    for (size_t p = 0; p < pages; p++) {
        double a = now();
        buf[p * 4096 + 7] ^= 1;
        t[p] = now() - a;
        slow += t[p] > 5e-6;
    }
    qsort(t, pages, sizeof(double), cmp);
    printf("%-22s read %.2f GB/s; first write per page: median %.2f us, p99 %.2f us, >5us %zu/%zu\n",
           label, size / read_s / 1e9, t[pages / 2] * 1e6, t[pages * 99 / 100] * 1e6, slow, pages);
    free(t);
}

int main(int argc, char **argv) {
    size_t size = (size_t)(argc > 1 ? atol(argv[1]) : 256) << 20;
    int wait = argc > 2 ? atoi(argv[2]) : 60;
    unsigned char *rep = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    unsigned char *uni = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    madvise(rep, size, MADV_NOHUGEPAGE);
    madvise(uni, size, MADV_NOHUGEPAGE);
    for (size_t i = 0; i < (1 << 20); i += 8) *(uint64_t *)(rep + i) = next();
    for (size_t off = 1 << 20; off < size; off += 1 << 20) memcpy(rep + off, rep, 1 << 20);
    for (size_t i = 0; i < size; i += 8) *(uint64_t *)(uni + i) = next();
    printf("filled %zu MiB each, waiting %d s\n", size >> 20, wait);
    fflush(stdout);
    sleep(wait);
    report("repeated 1 MiB pattern", rep, size);
    report("unique random", uni, size);
    return 0;
}
