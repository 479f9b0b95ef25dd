/* common.c: the thread-local last-error message, aligned allocation (also on 2 MB pages) and the clock (see common.h). */
#define _DEFAULT_SOURCE /* madvise */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

trn_status trn_read_file(const char *path, size_t max_bytes, const char *what, char **data, size_t *size) {
    *data = NULL;
    if (size)
        *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f)
        return trn_fail(TRN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    /* read in growing chunks rather than trusting a size: works for pipes and files that change */
    char *buf = NULL;
    size_t len = 0, cap = 0;
    trn_status status = TRN_OK;
    for (;;) {
        if (len + 1 >= cap) {
            size_t grow = cap ? 2 * cap : 65536;
            char *grown = realloc(buf, grow);
            if (!grown) {
                status = trn_fail(TRN_ERR_NOMEM, "%s: out of memory reading it", path);
                break;
            }
            buf = grown;
            cap = grow;
        }
        const size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (len > max_bytes) {
            status = trn_fail(TRN_ERR_FORMAT, "%s: larger than %zu bytes, too large for %s", path, max_bytes, what);
            break;
        }
        if (n == 0) {
            if (ferror(f))
                status = trn_fail(TRN_ERR_IO, "%s: read failed", path);
            break;
        }
    }
    fclose(f);
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
