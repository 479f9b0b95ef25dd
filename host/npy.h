/* npy.h: NumPy .npy files of float32 (format version 1.0, little-endian, C order), written to a temporary
 * name and renamed into place, and read back (for tests and tools). */
#ifndef TRN_NPY_H
#define TRN_NPY_H

#include <stdint.h>

#include "common.h"

/* data[rows][cols] -> path (shape (rows, cols), dtype '<f4'). */
trn_status trn_npy_write_f32(const char *path, const float *data, int64_t rows, int64_t cols);
/* Reads a 1-D or 2-D '<f4' C-order array: *data malloc'd, *rows and *cols set (cols = 1 for 1-D). */
trn_status trn_npy_read_f32(const char *path, float **data, int64_t *rows, int64_t *cols);

#endif
