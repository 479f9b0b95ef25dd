/* common.c: the thread-local last-error message, aligned allocation and the clock (see common.h). */
#define _POSIX_C_SOURCE 200809L
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

void trn_free(void *ptr) { free(ptr); }

double trn_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
