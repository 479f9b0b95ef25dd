/* fuzz_util.c: the shared fuzz harness helpers (see fuzz_util.h): memfd files, the per-process temporary
 * directory and its removal at exit, file helpers, corpus reading. */
#define _GNU_SOURCE
#include "fuzz_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void die(const char *what, const char *path) {
    fprintf(stderr, "fuzz harness: %s %s: %s\n", what, path ? path : "", strerror(errno));
    abort();
}

static void write_all(int fd, const void *data, size_t size, const char *path) {
    const uint8_t *p = data;
    while (size > 0) {
        ssize_t n = write(fd, p, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("cannot write", path);
        p += n;
        size -= (size_t)n;
    }
}

int fuzz_memfd(const char *name, const void *data, size_t size, char *path) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0)
        die("memfd_create failed for", name);
    write_all(fd, data, size, name);
    snprintf(path, FUZZ_PATH_MAX, "/proc/self/fd/%d", fd);
    return fd;
}

void fuzz_memfd_close(int fd) {
    if (fd >= 0)
        close(fd);
}

/* ---- the temporary directory ---- */

static char tmp_dir[FUZZ_PATH_MAX];

/* Removes a directory tree of regular files and directories (what the harness and the converters write). */
static void remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char child[FUZZ_PATH_MAX];
            fuzz_path_join(child, path, e->d_name);
            struct stat sb;
            if (lstat(child, &sb) == 0 && S_ISDIR(sb.st_mode))
                remove_tree(child);
            else
                unlink(child);
        }
        closedir(d);
    }
    rmdir(path);
}

static void remove_tmp_dir(void) {
    if (tmp_dir[0])
        remove_tree(tmp_dir);
    tmp_dir[0] = 0;
}

const char *fuzz_tmpdir(void) {
    if (tmp_dir[0])
        return tmp_dir;
    const char *base = getenv("TMPDIR");
    if (!base || !base[0])
        base = "/tmp";
    snprintf(tmp_dir, sizeof(tmp_dir), "%s/trn-fuzz-XXXXXX", base);
    if (!mkdtemp(tmp_dir))
        die("mkdtemp failed in", base);
    atexit(remove_tmp_dir);
    return tmp_dir;
}

char *fuzz_path_join(char *out, const char *dir, const char *name) {
    if (snprintf(out, FUZZ_PATH_MAX, "%s/%s", dir, name) >= FUZZ_PATH_MAX) {
        errno = ENAMETOOLONG;
        die("path too long:", name);
    }
    return out;
}

void fuzz_write_file(const char *path, const void *data, size_t size) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        die("cannot create", path);
    write_all(fd, data, size, path);
    close(fd);
}

void fuzz_mkdir(const char *path) {
    if (mkdir(path, 0700) != 0 && errno != EEXIST)
        die("cannot create directory", path);
}

void fuzz_remove_output(const char *path) {
    unlink(path);
    /* a writer that failed half-way must leave nothing, but do not let a leftover pile up either */
    const char *slash = strrchr(path, '/');
    if (!slash)
        return;
    char dir[FUZZ_PATH_MAX];
    snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    const char *base = slash + 1;
    const size_t base_len = strlen(base);
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, base, base_len) == 0 && e->d_name[base_len] != 0) {
            char child[FUZZ_PATH_MAX];
            unlink(fuzz_path_join(child, dir, e->d_name));
        }
    }
    closedir(d);
}

uint8_t *fuzz_read_file(const char *path, size_t *size) {
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "%s: cannot open: %s\n", path, strerror(errno));
        return NULL;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            size_t grow = cap ? 2 * cap : 65536;
            uint8_t *grown = realloc(buf, grow);
            if (!grown) {
                free(buf);
                fclose(f);
                fprintf(stderr, "%s: out of memory\n", path);
                return NULL;
            }
            buf = grown;
            cap = grow;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        fprintf(stderr, "%s: read failed\n", path);
        return NULL;
    }
    *size = len;
    return buf;
}

void fuzz_log(const char *fmt, ...) {
    static int verbose = -1;
    if (verbose < 0)
        verbose = getenv("FUZZ_VERBOSE") != NULL;
    if (!verbose)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void fuzz_put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void fuzz_put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
