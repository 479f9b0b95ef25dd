/* output_file.c: temporary-file-and-rename writes with fsync, the same-file check against inputs, and the registry
 * of open temporaries that the signal handler removes (see output_file.h). */
#define _DEFAULT_SOURCE /* mkstemp, fchmod */
#define _POSIX_C_SOURCE 200809L
#include "output_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the registry of temporaries: fixed storage, so the signal handler touches no allocator ---- */

#define MAX_PENDING 16
static char pending_path[MAX_PENDING][PATH_MAX];
static volatile sig_atomic_t pending_used[MAX_PENDING];
static int pending_claimed[MAX_PENDING]; /* claimed by a trn_output_file (atomically), path maybe not yet valid */

static int claim_slot(void) {
    for (int i = 0; i < MAX_PENDING; i++) {
        int expected = 0;
        if (__atomic_compare_exchange_n(&pending_claimed[i], &expected, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return i;
    }
    return -1;
}

static void release_slot(int slot) {
    if (slot < 0)
        return;
    pending_used[slot] = 0;
    __atomic_store_n(&pending_claimed[slot], 0, __ATOMIC_RELEASE);
}

static void remove_pending_and_die(int sig) {
    for (int i = 0; i < MAX_PENDING; i++)
        if (pending_used[i])
            unlink(pending_path[i]); /* async-signal-safe */
    signal(sig, SIG_DFL);
    raise(sig);
}

void trn_output_install_signal_cleanup(void) {
    static const int signals[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < TRN_ARRAY_LEN(signals); i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = remove_pending_and_die;
        sigemptyset(&sa.sa_mask);
        sigaction(signals[i], &sa, NULL);
    }
}

/* Blocks the signals whose handler reads the registry while a slot's path and flag change. */
static void block_signals(sigset_t *old) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, old);
}

/* ---- checks ---- */

static int same_file(const struct stat *a, const struct stat *b) { return a->st_dev == b->st_dev && a->st_ino == b->st_ino; }

/* Whether a file of the directory `dir` is the file `target`. */
static int dir_holds(const char *dir, const struct stat *target) {
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int found = 0;
    const struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        struct stat st;
        found = fstatat(dirfd(d), e->d_name, &st, 0) == 0 && same_file(&st, target);
    }
    closedir(d);
    return found;
}

trn_status trn_output_check(const char *path, const char *const *inputs, int n_inputs) {
    struct stat out;
    if (stat(path, &out) != 0)
        return TRN_OK; /* a new file cannot be any existing input; a missing folder is reported when opening */
    if (S_ISDIR(out.st_mode))
        return trn_fail(TRN_ERR_INVALID, "%s: is a directory; name the file to write", path);
    if (!S_ISREG(out.st_mode))
        return trn_fail(TRN_ERR_INVALID, "%s: exists and is not a regular file (a device, pipe or socket); refusing to "
                        "replace it", path);
    for (int i = 0; i < n_inputs; i++) {
        struct stat in;
        if (!inputs[i] || stat(inputs[i], &in) != 0)
            continue;
        if (same_file(&in, &out) || (S_ISDIR(in.st_mode) && dir_holds(inputs[i], &out)))
            return trn_fail(TRN_ERR_INVALID, "%s: is also an input (%s); write the output to another file", path,
                            inputs[i]);
    }
    return TRN_OK;
}

/* ---- writing ---- */

/* The process's umask, read without changing it (umask() itself would race with other threads). */
static mode_t current_umask(void) {
    FILE *f = fopen("/proc/self/status", "r");
    mode_t mask = 022;
    char line[256];
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "Umask:", 6) == 0) {
            mask = (mode_t)strtoul(line + 6, NULL, 8);
            break;
        }
    if (f)
        fclose(f);
    return mask;
}

/* The folder of `path` ("." for a bare name) into dir[cap]; the file name part is returned. */
static const char *split_dir(const char *path, char *dir, size_t cap) {
    const char *slash = strrchr(path, '/');
    if (!slash) {
        snprintf(dir, cap, ".");
        return path;
    }
    snprintf(dir, cap, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    return slash + 1;
}

trn_status trn_output_open(trn_output_file *out, const char *path) {
    memset(out, 0, sizeof(*out));
    out->slot = -1;
    char dir[PATH_MAX];
    const char *name = split_dir(path, dir, sizeof(dir));
    if (name[0] == 0)
        return trn_fail(TRN_ERR_INVALID, "%s: names a directory; name the file to write", path);
    const size_t tmp_len = strlen(dir) + strlen(name) + 16;
    if (tmp_len > PATH_MAX)
        return trn_fail(TRN_ERR_INVALID, "%s: path too long", path);
    out->path = strdup(path);
    out->tmp_path = malloc(tmp_len);
    out->slot = claim_slot();
    if (!out->path || !out->tmp_path || out->slot < 0) {
        const int busy = out->path && out->tmp_path && out->slot < 0;
        trn_output_abort(out);
        return busy ? trn_fail(TRN_ERR_INVALID, "%s: more than %d output files open at once", path, MAX_PENDING)
                    : trn_fail(TRN_ERR_NOMEM, "out of memory writing %s", path);
    }
    snprintf(out->tmp_path, tmp_len, "%s/.%s.XXXXXX", dir, name);
    sigset_t old;
    block_signals(&old);
    const int fd = mkstemp(out->tmp_path); /* O_EXCL, mode 0600: never follows or reuses an existing name */
    const int mkstemp_errno = errno;
    if (fd >= 0) {
        memcpy(pending_path[out->slot], out->tmp_path, strlen(out->tmp_path) + 1);
        pending_used[out->slot] = 1;
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (fd < 0) {
        trn_output_abort(out);
        return trn_fail(TRN_ERR_IO, "%s: cannot create a file in %s: %s", path, dir, strerror(mkstemp_errno));
    }
    fchmod(fd, 0666 & ~current_umask()); /* what creating the file directly would have given */
    out->file = fdopen(fd, "wb");
    if (!out->file) {
        close(fd);
        trn_output_abort(out);
        return trn_fail(TRN_ERR_NOMEM, "out of memory writing %s", path);
    }
    return TRN_OK;
}

void trn_output_abort(trn_output_file *out) {
    if (out->file)
        fclose(out->file);
    if (out->slot >= 0 && pending_used[out->slot])
        unlink(out->tmp_path);
    release_slot(out->slot);
    free(out->tmp_path);
    free(out->path);
    memset(out, 0, sizeof(*out));
    out->slot = -1;
}

static int fsync_dir_of(const char *path) {
    char dir[PATH_MAX];
    split_dir(path, dir, sizeof(dir));
    const int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    const int rc = fsync(fd);
    close(fd);
    return rc;
}

trn_status trn_output_commit(trn_output_file *out) {
    FILE *f = out->file;
    out->file = NULL;
    int ok = fflush(f) == 0 && !ferror(f);
    ok = fsync(fileno(f)) == 0 && ok;
    ok = fclose(f) == 0 && ok;
    if (!ok) {
        const trn_status status = trn_fail(TRN_ERR_IO, "%s: write failed: %s", out->path, strerror(errno));
        trn_output_abort(out);
        return status;
    }
    if (rename(out->tmp_path, out->path) != 0) {
        const trn_status status = trn_fail(TRN_ERR_IO, "%s: cannot rename into place: %s", out->path, strerror(errno));
        trn_output_abort(out);
        return status;
    }
    pending_used[out->slot] = 0; /* renamed: nothing left to remove */
    /* EINVAL: a file system that cannot sync folders; the rename stands */
    const int dir_synced = fsync_dir_of(out->path) == 0 || errno == EINVAL;
    const trn_status status = dir_synced ? TRN_OK
                                         : trn_fail(TRN_ERR_IO, "%s: written, but its folder could not be synced: %s",
                                                    out->path, strerror(errno));
    trn_output_abort(out); /* releases the slot and the names; the temporary name no longer exists */
    return status;
}
