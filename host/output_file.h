/* output_file.h: every file Trinity writes (converted GGUF models, logits .npy files) goes through this one path,
 * so that no write can lose data:
 *   1. trn_output_check: refuse an output that is the same file (device and inode) as any input, a directory, or
 *      an existing file that is not a regular one (a device, a pipe), before anything is opened for writing;
 *   2. trn_output_open: a new temporary file in the destination's folder (mkstemp: an unpredictable name, created
 *      exclusively, never following a link), registered so that a signal handler can remove it;
 *   3. the caller writes through out->file;
 *   4. trn_output_commit: flush, fsync, rename over the destination, fsync of the folder; or trn_output_abort:
 *      the temporary removed. Either way the destination holds the old file or the whole new one.
 * trn_output_install_signal_cleanup (called by the `trinity` command, not by the library on its own) makes SIGINT,
 * SIGTERM and SIGHUP remove every temporary still open before the process dies of the signal. */
#ifndef TRN_OUTPUT_FILE_H
#define TRN_OUTPUT_FILE_H

#include <stdio.h>

#include "common.h"

typedef struct {
    FILE *file;      /* write here */
    char *path;      /* the destination */
    char *tmp_path;  /* DIR/.NAME.XXXXXX.tmp until commit or abort */
    int slot;        /* in the registry of temporaries the signal handler removes; -1 when not registered */
} trn_output_file;

/* Refuses `path` (one line naming it) when it is the same file as inputs[i] for some i < n_inputs, or lies in
 * inputs[i] where that is a directory and is one of its files; when it is a directory; or when it exists and is
 * not a regular file. NULL inputs are skipped. */
trn_status trn_output_check(const char *path, const char *const *inputs, int n_inputs);
trn_status trn_output_open(trn_output_file *out, const char *path);
/* Makes the written file the destination; on failure the temporary is removed and *out released either way. */
trn_status trn_output_commit(trn_output_file *out);
/* Removes the temporary and releases *out (safe on a zeroed or already released struct). */
void trn_output_abort(trn_output_file *out);

void trn_output_install_signal_cleanup(void);

#endif
