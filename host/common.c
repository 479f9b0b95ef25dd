/* common.c: the thread-local last-error message, aligned allocation (also on 2 MB pages), the clock, checked size
 * arithmetic and checked reads of whole files (see common.h). */
#define _DEFAULT_SOURCE /* madvise */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif

static _Thread_local char last_error[512];

trn_status trn_fail(trn_status status, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, args);
    va_end(args);
    return status;
}

const char *trn_last_error(void) { return last_error[0] ? last_error : "unknown error"; }

const char *trn_status_name(trn_status status) {
    switch (status) {
    case TRN_OK: return "ok";
    case TRN_ERR_IO: return "I/O error";
    case TRN_ERR_FORMAT: return "malformed input";
    case TRN_ERR_UNSUPPORTED: return "unsupported";
    case TRN_ERR_INVALID: return "invalid argument";
    case TRN_ERR_NOMEM: return "out of memory";
    case TRN_ERR_DEVICE: return "device unavailable";
    }
    return "unknown status";
}

void *trn_alloc(size_t bytes) {
    void *ptr = NULL;
    size_t rounded = (bytes + 63) & ~(size_t)63;
    if (rounded == 0)
        rounded = 64;
    if (posix_memalign(&ptr, 64, rounded) != 0)
        return NULL;
    memset(ptr, 0, rounded);
    return ptr;
}

void *trn_alloc_huge(size_t bytes) {
    const size_t huge = (size_t)2 << 20, rounded = (bytes + huge - 1) / huge * huge;
    void *ptr = NULL;
    if (posix_memalign(&ptr, huge, rounded == 0 ? huge : rounded) != 0)
        return NULL;
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(ptr, rounded, MADV_HUGEPAGE);
#endif
    return ptr;
}

void trn_free(void *ptr) { free(ptr); }

double trn_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double trn_sustained_rate(int32_t (*run)(const void *ctx, long rounds), const void *ctx, long chunk,
                          double units_per_round, double seconds) {
    /* warm-up: caches, clocks, a tile configuration's first use; unsigned, so that the kept results may wrap */
    volatile uint32_t sink = (uint32_t)run(ctx, chunk);
    long done = 0;
    const double start = trn_time_s();
    double now = start;
    while (now - start < seconds || done == 0 || now <= start) { /* at least one chunk, and time that has passed */
        sink += (uint32_t)run(ctx, chunk);
        done += chunk;
        now = trn_time_s();
    }
    (void)sink;
    return (double)done * units_per_round / (now - start);
}

int trn_size_product(const uint64_t *factors, int n, uint64_t *out) {
    uint64_t p = 1;
    for (int i = 0; i < n; i++)
        if (!trn_size_mul(p, factors[i], &p))
            return 0;
    *out = p;
    return 1;
}

trn_status trn_check_regular_fd(int fd, const char *path, uint64_t max_bytes, const char *what, uint64_t *size) {
    struct stat st;
    if (fstat(fd, &st) != 0)
        return trn_fail(TRN_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode))
        return trn_fail(TRN_ERR_INVALID, "%s: is a directory, not %s", path, what);
    if (!S_ISREG(st.st_mode))
        return trn_fail(TRN_ERR_INVALID, "%s: not a regular file (a device, pipe or socket), not %s", path, what);
    if ((uint64_t)st.st_size > max_bytes)
        return trn_fail(TRN_ERR_FORMAT, "%s: %llu bytes, more than the %llu allowed for %s", path,
                        (unsigned long long)st.st_size, (unsigned long long)max_bytes, what);
    if (size)
        *size = (uint64_t)st.st_size;
    return TRN_OK;
}

trn_status trn_check_regular_file(const char *path, uint64_t max_bytes, const char *what, uint64_t *size) {
    /* O_NONBLOCK: opening a FIFO must not wait for a writer before it can be refused */
    const int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return trn_fail(TRN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    const trn_status status = trn_check_regular_fd(fd, path, max_bytes, what, size);
    close(fd);
    return status;
}

trn_status trn_read_file(const char *path, size_t max_bytes, const char *what, char **data, size_t *size) {
    *data = NULL;
    if (size)
        *size = 0;
    const int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return trn_fail(TRN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint64_t expected = 0;
    trn_status status = trn_check_regular_fd(fd, path, max_bytes, what, &expected);
    /* one byte more than stat said, to notice a file that grows while it is read (checked against the cap) */
    const size_t cap = status == TRN_OK ? (size_t)expected + 2 : 0;
    char *buf = status == TRN_OK ? malloc(cap) : NULL;
    if (status == TRN_OK && !buf)
        status = trn_fail(TRN_ERR_NOMEM, "%s: out of memory reading %llu bytes", path, (unsigned long long)expected);
    size_t len = 0;
    while (status == TRN_OK && len < cap - 1) {
        const ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            status = trn_fail(TRN_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        else if (n == 0)
            break;
        else
            len += (size_t)n;
    }
    if (status == TRN_OK && len != expected)
        status = trn_fail(TRN_ERR_IO, "%s: changed size while being read (%llu bytes, then %zu)", path,
                          (unsigned long long)expected, len);
    close(fd);
    if (status != TRN_OK) {
        free(buf);
        return status;
    }
    buf[len] = 0;
    *data = buf;
    if (size)
        *size = len;
    return TRN_OK;
}
