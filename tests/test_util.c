/* test_util.c: see test_util.h. */
#define _POSIX_C_SOURCE 200809L
#include "test_util.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int test_failures = 0;
int test_checks = 0;

static const char *join(const char *dir, const char *relative) {
    static char paths[8][4096];
    static int next = 0;
    char *out = paths[next++ % 8];
    snprintf(out, 4096, "%s/%s", dir, relative);
    return out;
}

const char *test_data_path(const char *relative) {
    const char *dir = getenv("TRN_TESTDATA");
    if (!dir)
        dir = "../shared/testdata";
    const char *path = join(dir, relative);
    if (access(path, R_OK) != 0) {
        fprintf(stderr, "test data not found: %s\n", path);
        return NULL;
    }
    return path;
}

const char *test_source_path(const char *relative) {
    const char *dir = getenv("TRN_SOURCE_DIR");
    return join(dir ? dir : ".", relative);
}

void test_skip(const char *why) {
    fprintf(stderr, "SKIPPED: %s\n", why);
    exit(77);
}

int test_finish(const char *name) {
    printf("%s: %d checks, %d failed\n", name, test_checks, test_failures);
    return test_failures == 0 ? 0 : 1;
}

char *test_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc((size_t)size + 1);
    if (data && fread(data, 1, (size_t)size, f) != (size_t)size) {
        free(data);
        data = NULL;
    }
    fclose(f);
    if (data) {
        data[size] = 0;
        if (len)
            *len = (size_t)size;
    }
    return data;
}

double test_nmse(const float *a, const float *b, long long n) {
    double num = 0, den = 0;
    for (long long i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return den > 0 ? num / den : num;
}
