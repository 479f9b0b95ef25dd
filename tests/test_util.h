/* test_util.h: a minimal assertion harness for the C tests.
 * CHECK records a failure with file and line and goes on; a test's main returns test_finish(). Tests
 * that need ../shared/testdata call test_skip() (exit code 77, which ctest reports as skipped). */
#ifndef TRN_TEST_UTIL_H
#define TRN_TEST_UTIL_H

#include <stdio.h>

extern int test_failures;
extern int test_checks;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        test_checks++;                                                              \
        if (!(cond)) {                                                              \
            test_failures++;                                                        \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                           \
    } while (0)

#define CHECK_MSG(cond, ...)                                                        \
    do {                                                                            \
        test_checks++;                                                              \
        if (!(cond)) {                                                              \
            test_failures++;                                                        \
            fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                           \
            fputc('\n', stderr);                                                    \
        }                                                                           \
    } while (0)

/* Normalized squared error sum (a-b)^2 / sum b^2 (sum (a-b)^2 when b is all zero). */
double test_nmse(const float *a, const float *b, long long n);
/* Path of a file under ../shared/testdata, or NULL (with a message) if it does not exist. */
const char *test_data_path(const char *relative);
/* Path of a file under the source tree (for golden files in tests/golden). */
const char *test_source_path(const char *relative);
/* Exits 77 (skipped) after printing why. */
void test_skip(const char *why);
/* Prints a summary line and returns the exit code. */
int test_finish(const char *name);
/* Reads a whole file into a malloc'd NUL-terminated buffer; NULL if unreadable. */
char *test_read_file(const char *path, size_t *len);

#endif
