/* fuzz_util.h: helpers shared by the libFuzzer targets in tests/fuzz/ (harness code, not library code).
 *
 * Owns: handing fuzz bytes to readers that take a path (memfd files, named /proc/self/fd/N), the per-process
 * temporary directory for converter outputs and fixtures (created on first use, removed at exit), small file
 * helpers, and reading a corpus file for the replay driver. Every helper aborts on a harness failure (a failed
 * memfd_create or write is never the library's fault and must not look like a finding). */
#ifndef FUZZ_UTIL_H
#define FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define FUZZ_PATH_MAX 512

/* The libFuzzer entry points every target defines (LLVMFuzzerInitialize only where a target needs it). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A memfd holding data[size], its path "/proc/self/fd/N" written to path[FUZZ_PATH_MAX]. Returns the fd; the
 * caller closes it (fuzz_memfd_close) after the run. memfd files are regular files, so stat/mmap work. */
int fuzz_memfd(const char *name, const void *data, size_t size, char *path);
void fuzz_memfd_close(int fd);

/* The per-process temporary directory ($TMPDIR or /tmp, "trn-fuzz-XXXXXX"), created on the first call and
 * removed with everything in it at exit. */
const char *fuzz_tmpdir(void);
/* dir/name into out[FUZZ_PATH_MAX]; returns out. */
char *fuzz_path_join(char *out, const char *dir, const char *name);
/* Creates (or replaces) a file with data[size]; mkdir of a directory (0700, existing is fine). */
void fuzz_write_file(const char *path, const void *data, size_t size);
void fuzz_mkdir(const char *path);
/* Removes a file if it exists, and any temporary file the GGUF writer may have left beside it (path + ".*"). */
void fuzz_remove_output(const char *path);

/* The whole of a file (malloc'd; NULL with a message on stderr when it cannot be read). */
uint8_t *fuzz_read_file(const char *path, size_t *size);

/* With FUZZ_VERBOSE set in the environment: one line on stderr (each target reports how far an input got and
 * the library's message, for triage and for checking that the valid seeds are accepted). Silent otherwise. */
void fuzz_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Little-endian stores for building structured inputs. */
void fuzz_put_u32(uint8_t *p, uint32_t v);
void fuzz_put_u64(uint8_t *p, uint64_t v);

#endif
