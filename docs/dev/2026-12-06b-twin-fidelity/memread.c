/* Read bandwidth of a byte range of a file through mmap, as a tg step reads weights.
 *   gcc -O2 -mavx2 -o /tmp/memread memread.c
 *   /tmp/memread FILE OFFSET LENGTH PASSES [evict]
 * evict=1: drop the file from the page cache first (posix_fadvise DONTNEED). The file is always
 * dropped at the end, so files read in turn share the same frames (twin_fidelity's default). Prints the median pass in GB/s after one
 * warm-up pass (which faults the pages in). Content cannot matter to a plain read unless the
 * memory under the VM treats equal pages alike (host deduplication): the twin's data repeat
 * every pool (1 Mi weights, a whole number of 4 KiB pages). */
#include <fcntl.h>
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
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

int main(int argc, char **argv) {
    if (argc < 5) return 2;
    long off = atol(argv[2]), len = atol(argv[3]);
    int passes = atoi(argv[4]), evict = argc > 5 && atoi(argv[5]);
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) return 1;
    if (evict) posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    long page = sysconf(_SC_PAGESIZE), start = off / page * page;
    size_t maplen = (size_t)(off + len - start);
    const char *base = mmap(NULL, maplen, PROT_READ, MAP_SHARED, fd, start);
    if (base == MAP_FAILED) return 1;
    const __m256i *p = (const __m256i *)(base + ((off - start + 31) & ~31L));
    long n = (len - 64) / 32;
    double *t = malloc(sizeof(double) * passes);
    __m256i acc = _mm256_setzero_si256();
    for (int r = -1; r < passes; r++) {
        double t0 = now();
        for (long i = 0; i < n; i += 2)
            acc = _mm256_xor_si256(acc, _mm256_xor_si256(_mm256_loadu_si256(p + i),
                                                          _mm256_loadu_si256(p + i + 1)));
        if (r >= 0) t[r] = now() - t0;
    }
    munmap((void *)base, maplen);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED); /* the next file loads into these frames */
    qsort(t, passes, sizeof(double), cmp);
    printf("%.3f GB/s median, %.3f min-time (%s) %lld\n", len / t[passes / 2] / 1e9,
           len / t[0] / 1e9, argv[1], (long long)_mm256_extract_epi64(acc, 0) & 1);
    return 0;
}
