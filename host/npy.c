/* npy.c: float32 .npy files (see npy.h). Format 1.0: magic "\x93NUMPY", version 1 0, u16 header length, an ASCII
 * dict padded with spaces and ending in '\n' so that the data starts at a multiple of 64 bytes. */
#define _POSIX_C_SOURCE 200809L
#include "npy.h"

#include "output_file.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

trn_status trn_npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols) {
    char header[128];
    int len = snprintf(header, sizeof(header), "{'descr': '<f4', 'fortran_order': False, 'shape': (%lld, %lld), }",
                       (long long)rows, (long long)cols);
    const int total = (10 + len + 1 + 63) / 64 * 64; /* magic 6 + version 2 + length 2, dict, '\n' */
    while (10 + len + 1 < total)
        header[len++] = ' ';
    header[len++] = '\n';
    trn_output_file out;
    TRN_TRY(trn_output_open(&out, path));
    const uint16_t hlen = (uint16_t)len;
    const size_t n = (size_t)(rows * cols);
    const int ok = fwrite("\x93NUMPY\x01\x00", 1, 8, out.file) == 8 && fwrite(&hlen, 2, 1, out.file) == 1 &&
                   fwrite(header, 1, (size_t)len, out.file) == (size_t)len &&
                   fwrite(data, sizeof(float), n, out.file) == n;
    if (!ok) {
        const trn_status status = trn_fail(TRN_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        trn_output_abort(&out);
        return status;
    }
    return trn_output_commit(&out);
}

trn_status trn_npy_read_f32(const char *path, float **data, int64_t *rows, int64_t *cols) {
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return trn_fail(TRN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char head[10];
    char dict[1024];
    trn_status status = TRN_OK;
    uint16_t hlen = 0;
    if (fread(head, 1, 10, f) != 10 || memcmp(head, "\x93NUMPY", 6) != 0 || head[6] != 1) {
        status = trn_fail(TRN_ERR_FORMAT, "%s: not a version 1 .npy file", path);
        goto done;
    }
    hlen = (uint16_t)(head[8] | head[9] << 8);
    if (hlen >= sizeof(dict) || fread(dict, 1, hlen, f) != hlen) {
        status = trn_fail(TRN_ERR_FORMAT, "%s: truncated .npy header", path);
        goto done;
    }
    dict[hlen] = 0;
    if (!strstr(dict, "'<f4'") || !strstr(dict, "'fortran_order': False")) {
        status = trn_fail(TRN_ERR_UNSUPPORTED, "%s: only little-endian float32 C-order arrays are read", path);
        goto done;
    }
    const char *shape = strstr(dict, "'shape': (");
    long long r = 0, c = 1; /* "(r, c)" or, for 1-D, "(r,)" where the second number is absent */
    if (!shape || sscanf(shape + 10, "%lld, %lld", &r, &c) < 1 || r < 0 || c < 1) {
        status = trn_fail(TRN_ERR_FORMAT, "%s: unreadable shape in the .npy header", path);
        goto done;
    }
    uint64_t bytes = 0, file_size = 0;
    const uint64_t dims[3] = {(uint64_t)r, (uint64_t)c, sizeof(float)};
    if (!trn_size_product(dims, 3, &bytes) || trn_check_regular_file(path, UINT64_MAX, "a .npy file", &file_size) !=
        TRN_OK || bytes > file_size - 10 - hlen) {
        status = trn_fail(TRN_ERR_FORMAT, "%s: shape (%lld, %lld) needs more data than the file holds", path, r, c);
        goto done;
    }
    *data = malloc((size_t)bytes + 1);
    if (!*data || fread(*data, sizeof(float), (size_t)(r * c), f) != (size_t)(r * c)) {
        free(*data);
        *data = NULL;
        status = trn_fail(TRN_ERR_FORMAT, "%s: truncated .npy data", path);
        goto done;
    }
    *rows = r;
    *cols = c;
done:
    fclose(f);
    return status;
}
