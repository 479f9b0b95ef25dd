/* safetensors.h: reading Hugging Face safetensors checkpoints, one file or sharded
 * (model.safetensors.index.json), memory-mapped. Layout of a file: u64 little-endian header length N, N bytes
 * of JSON {"name": {"dtype": "F16", "shape": [rows, cols], "data_offsets": [begin, end]}, ...,
 * "__metadata__": {...}}, then the data (offsets relative to its start). Every offset and size is checked. */
#ifndef TRN_SAFETENSORS_H
#define TRN_SAFETENSORS_H

#include <stdint.h>

#include "common.h"

typedef enum { TRN_ST_F32, TRN_ST_F16, TRN_ST_BF16 } trn_st_dtype;

typedef struct {
    char *name;
    trn_st_dtype dtype;
    int n_dims;
    int64_t shape[4];     /* row-major: shape[0] rows of shape[1] for a matrix */
    int64_t n_elems;
    const void *data;
    const char *file;     /* the shard it lives in (for messages) */
} trn_st_tensor;

typedef struct trn_safetensors trn_safetensors;

/* Opens DIR/model.safetensors, or every shard listed in DIR/model.safetensors.index.json. Fails with one line
 * naming the file: missing shards, malformed headers, offsets past the end, dtypes other than F32/F16/BF16
 * ("FILE: tensor NAME has dtype I8, which Trinity does not convert"). */
trn_status trn_safetensors_open_dir(const char *dir, trn_safetensors **out);
/* Opens one .safetensors file. */
trn_status trn_safetensors_open_file(const char *path, trn_safetensors **out);
void trn_safetensors_close(trn_safetensors *st);
int trn_safetensors_count(const trn_safetensors *st);
const trn_st_tensor *trn_safetensors_at(const trn_safetensors *st, int i);
const trn_st_tensor *trn_safetensors_find(const trn_safetensors *st, const char *name);
/* Converts the tensor's elements to floats: dst[n_elems]. */
void trn_st_to_f32(const trn_st_tensor *t, float *dst);

#endif
