/* replay_main.c: a main() for the fuzz targets built without libFuzzer (replay_NAME): runs
 * LLVMFuzzerTestOneInput once on every file named on the command line and on every regular file of every
 * directory named there (in name order, not recursing), after LLVMFuzzerInitialize where the target defines it.
 * Prints "replay NAME: N inputs"; exits 1 when an argument cannot be read or no input was found, so a missing
 * corpus fails the ctest test instead of passing vacuously. A crash or a sanitizer report ends the process, as
 * under libFuzzer. FUZZ_NAME is the target's name, set by tests/fuzz/CMakeLists.txt. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_util.h"

#ifndef FUZZ_NAME
#define FUZZ_NAME "fuzz"
#endif

/* Optional in a target: a weak reference is NULL where the target does not define it. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int run_file(const char *path) {
    size_t size = 0;
    uint8_t *data = fuzz_read_file(path, &size);
    if (!data)
        return 0;
    /* an exact-size copy, so that a read past the input's end is caught as it is under libFuzzer */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) {
        free(data);
        fprintf(stderr, "%s: out of memory\n", path);
        return 0;
    }
    memcpy(copy, data, size);
    free(data);
    LLVMFuzzerTestOneInput(copy, size);
    free(copy);
    return 1;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file of `dir`; returns the count, or -1 when the directory cannot be read. */
static int run_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "%s: cannot open the directory\n", dir);
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(names, cap * sizeof(char *));
            if (!grown)
                abort();
            names = grown;
        }
        names[n] = strdup(e->d_name);
        if (!names[n])
            abort();
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof(char *), compare_names);
    int count = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        char path[FUZZ_PATH_MAX];
        struct stat sb;
        fuzz_path_join(path, dir, names[i]);
        if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
            if (run_file(path))
                count++;
            else
                failed = 1;
        }
        free(names[i]);
    }
    free(names);
    return failed ? -1 : count;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE_OR_DIR...\n", argv[0]);
        return 2;
    }
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    int total = 0, failed = 0;
    for (int i = 1; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            fprintf(stderr, "%s: cannot open\n", argv[i]);
            failed = 1;
        } else if (S_ISDIR(sb.st_mode)) {
            int n = run_dir(argv[i]);
            if (n < 0)
                failed = 1;
            else
                total += n;
        } else if (run_file(argv[i])) {
            total++;
        } else {
            failed = 1;
        }
    }
    printf("replay %s: %d inputs\n", FUZZ_NAME, total);
    if (total == 0)
        fprintf(stderr, "replay %s: no inputs\n", FUZZ_NAME);
    return failed || total == 0 ? 1 : 0;
}
