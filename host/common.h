/* common.h: status codes, error reporting and small helpers shared by every part of Trinity.
 *
 * Library code never exits: a function that can fail returns trn_status and leaves a one-line message
 * in a thread-local buffer (trn_last_error()). Only the command-line front end (host/main.c) prints that
 * line and chooses the exit code. */
#ifndef TRN_COMMON_H
#define TRN_COMMON_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    TRN_OK = 0,
    TRN_ERR_IO,        /* a file could not be opened, read, mapped or written */
    TRN_ERR_FORMAT,    /* a file is malformed or truncated */
    TRN_ERR_UNSUPPORTED, /* a valid input this engine does not handle (tensor type, architecture) */
    TRN_ERR_INVALID,   /* an impossible argument (flag value, shape, prompt longer than the context) */
    TRN_ERR_NOMEM,     /* an allocation failed */
    TRN_ERR_DEVICE,    /* a backend or device is unavailable */
} trn_status;

/* Records a printf-style message as the thread's last error and returns `status`, so callers can write
 * `return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s' ...", path, name);` */
trn_status trn_fail(trn_status status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *trn_last_error(void);
const char *trn_status_name(trn_status status);

/* Propagates a non-OK status unchanged (the message is already recorded). */
#define TRN_TRY(expr)                         \
    do {                                      \
        trn_status trn_try_status_ = (expr);  \
        if (trn_try_status_ != TRN_OK)        \
            return trn_try_status_;           \
    } while (0)

/* Allocation helpers: 64-byte aligned, zeroed; NULL on failure (caller reports TRN_ERR_NOMEM). */
void *trn_alloc(size_t bytes);
/* Memory on 2 MB pages (not zeroed; trn_free releases it): aligned to 2 MB, rounded up to 2 MB and, on Linux, asked
 * to be backed by transparent huge pages (a request: where refused, 4 KB pages). For data read as one long stream:
 * the repacked weights (one region for all of them, which wastes less than one page) and the bandwidth probe that
 * bounds reading them. With 4 KB pages a decode step that streams every matrix once takes a TLB miss every 4 KB, and
 * the hardware prefetchers stop at each page's end. */
void *trn_alloc_huge(size_t bytes);
void trn_free(void *ptr);

/* The whole of a file, read into malloc'd memory with one NUL byte after it (so text can be used as a string).
 * Fails with one line naming the file when it cannot be read or is larger than max_bytes ("what" names the kind
 * of file in that message, e.g. "a config"). size may be NULL. */
trn_status trn_read_file(const char *path, size_t max_bytes, const char *what, char **data, size_t *size);

/* Monotonic wall-clock time in seconds. */
double trn_time_s(void);

#define TRN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TRN_MAX(a, b) ((a) > (b) ? (a) : (b))
#define TRN_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
