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

/* Overflow-checked size arithmetic. Every size a reader derives from a file's claims (element counts times element
 * sizes, offsets plus lengths) goes through these: 1 and *out set when the exact result fits in 64 bits, else 0. */
static inline int trn_size_mul(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_mul_overflow(a, b, out); }
static inline int trn_size_add(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_add_overflow(a, b, out); }
/* The product of n factors (n >= 0; the empty product is 1), checked the same way. */
int trn_size_product(const uint64_t *factors, int n, uint64_t *out);

/* Size caps of the files read whole into memory, one per kind. */
#define TRN_MAX_TEXT_BYTES ((size_t)256 << 20)  /* perplexity -f: far above any evaluation text */
#define TRN_MAX_VOCAB_BYTES ((size_t)256 << 20) /* tokenizer.model, tokenizer.json, llama2.c tokenizer.bin */
#define TRN_MAX_JSON_BYTES ((size_t)64 << 20)   /* config.json, model.safetensors.index.json */

/* Checks before a file named by a user is read: `path` must be a regular file (a directory, a device, a pipe are
 * refused with one line naming it and "what", e.g. "a text file") of at most max_bytes. *size may be NULL. */
trn_status trn_check_regular_file(const char *path, uint64_t max_bytes, const char *what, uint64_t *size);
/* The same checks on a descriptor already open on `path` (for readers that map the file they checked). */
trn_status trn_check_regular_fd(int fd, const char *path, uint64_t max_bytes, const char *what, uint64_t *size);
/* The whole of a regular file, read into malloc'd memory with one NUL byte after it (so text can be used as a
 * string). Fails with one line naming the file when it is not a regular file, is larger than max_bytes (checked
 * before anything is read) or cannot be read; "what" names the kind of file in the message, e.g. "a config".
 * size may be NULL. */
trn_status trn_read_file(const char *path, size_t max_bytes, const char *what, char **data, size_t *size);


/* Monotonic wall-clock time in seconds. */
double trn_time_s(void);
/* The rate of a repeated piece of work run as one stretch of about `seconds`: `run` does `rounds` rounds of
 * units_per_round units of work (its result is only kept), called `chunk` rounds at a time until `seconds` have
 * passed after one warm-up call. All the units / all the time: the rate sustained, not the best moment's, because
 * a machine whose pipes another tenant takes at times (a VM's two threads on one core's two hardware threads)
 * gives a long kernel the sustained rate (the CPU tables' matmul_peak; profiling/README.md, nineteenth session). */
double trn_sustained_rate(int32_t (*run)(const void *ctx, long rounds), const void *ctx, long chunk,
                          double units_per_round, double seconds);

#define TRN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TRN_MAX(a, b) ((a) > (b) ? (a) : (b))
#define TRN_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
