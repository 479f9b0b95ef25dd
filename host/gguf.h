/* gguf.h: reading and writing GGUF files (versions 2 and 3), the model format of the llama.cpp ecosystem.
 *
 * Reader: the file is memory-mapped read-only; every length, count, offset and size is checked against
 * the file before use, so a malformed or truncated file yields TRN_ERR_FORMAT with one line naming the
 * file and the problem. Metadata values of every GGUF type are kept (arrays included); tensors point
 * into the mapping. A file with no tensors (a vocabulary-only GGUF) is valid.
 *
 * Writer: collects metadata and tensors, then writes version 3 with 32-byte alignment, to a temporary
 * name renamed into place only when complete (so a failed write leaves no partial file), or to memory.
 *
 * Layout (little-endian): "GGUF" u32 version, u64 n_tensors, u64 n_kv; n_kv x (string key, u32 type,
 * value); n_tensors x (string name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset); padding to the
 * alignment; tensor data. A string is u64 length + bytes (no NUL). */
#ifndef TRN_GGUF_H
#define TRN_GGUF_H

#include "common.h"
#include "tensor_types.h"

typedef enum {
    TRN_GGUF_U8 = 0,
    TRN_GGUF_I8 = 1,
    TRN_GGUF_U16 = 2,
    TRN_GGUF_I16 = 3,
    TRN_GGUF_U32 = 4,
    TRN_GGUF_I32 = 5,
    TRN_GGUF_F32 = 6,
    TRN_GGUF_BOOL = 7,
    TRN_GGUF_STRING = 8,
    TRN_GGUF_ARRAY = 9,
    TRN_GGUF_U64 = 10,
    TRN_GGUF_I64 = 11,
    TRN_GGUF_F64 = 12,
} trn_gguf_vtype;

#define TRN_GGUF_DEFAULT_ALIGNMENT 32
#define TRN_GGUF_MAX_DIMS 4

typedef struct {
    const char *ptr; /* not NUL-terminated: points into the file */
    uint64_t len;
} trn_gguf_str;

typedef struct {
    char *key;                /* NUL-terminated copy */
    trn_gguf_vtype type;
    trn_gguf_vtype elem_type; /* arrays only */
    uint64_t n_elems;         /* arrays only */
    const uint8_t *data;      /* scalar value or first array element, in the file */
    trn_gguf_str *strings;    /* string values: 1 for a string, n_elems for a string array */
} trn_gguf_kv;

typedef struct {
    char *name;               /* NUL-terminated copy */
    trn_type type;
    int n_dims;
    int64_t ne[TRN_GGUF_MAX_DIMS]; /* ne[0] is the row length (contiguous), unused dims are 1 */
    int64_t n_elems;
    uint64_t offset;          /* from the start of the data section */
    size_t bytes;
    const void *data;         /* in the mapping (writable only for memory-backed files) */
} trn_gguf_tensor;

typedef struct trn_gguf trn_gguf;

trn_status trn_gguf_open(const char *path, trn_gguf **out);
/* Parses a GGUF image held in memory. With take_ownership the buffer is released by trn_gguf_close
 * (it must come from trn_alloc). `label` names the image in messages. */
trn_status trn_gguf_open_memory(void *data, size_t size, int take_ownership, const char *label, trn_gguf **out);
void trn_gguf_close(trn_gguf *gguf);

const char *trn_gguf_path(const trn_gguf *gguf);
uint32_t trn_gguf_version(const trn_gguf *gguf);
size_t trn_gguf_alignment(const trn_gguf *gguf);
size_t trn_gguf_data_offset(const trn_gguf *gguf);
size_t trn_gguf_file_size(const trn_gguf *gguf);

int64_t trn_gguf_n_kv(const trn_gguf *gguf);
const trn_gguf_kv *trn_gguf_kv_at(const trn_gguf *gguf, int64_t index);
const trn_gguf_kv *trn_gguf_find_kv(const trn_gguf *gguf, const char *key);

/* Typed getters. Each returns TRN_OK and sets *out when the key is present with a compatible type,
 * `missing` (left to the caller: TRN_OK to mean "keep the default") when absent, and TRN_ERR_FORMAT
 * when present with a wrong type or an out-of-range value. Integer getters accept every integer type. */
trn_status trn_gguf_get_int(const trn_gguf *gguf, const char *key, int64_t *out, trn_status missing);
trn_status trn_gguf_get_float(const trn_gguf *gguf, const char *key, double *out, trn_status missing);
trn_status trn_gguf_get_bool(const trn_gguf *gguf, const char *key, int *out, trn_status missing);
trn_status trn_gguf_get_string(const trn_gguf *gguf, const char *key, trn_gguf_str *out, trn_status missing);
/* An array whose element type is exactly `elem_type`; NULL with a recorded message if absent or mismatched. */
const trn_gguf_kv *trn_gguf_get_array(const trn_gguf *gguf, const char *key, trn_gguf_vtype elem_type);
/* Element i of an integer or float array, converted. */
int64_t trn_gguf_array_int(const trn_gguf_kv *kv, uint64_t i);
double trn_gguf_array_float(const trn_gguf_kv *kv, uint64_t i);

int64_t trn_gguf_n_tensors(const trn_gguf *gguf);
const trn_gguf_tensor *trn_gguf_tensor_at(const trn_gguf *gguf, int64_t index);
const trn_gguf_tensor *trn_gguf_find_tensor(const trn_gguf *gguf, const char *name);

const char *trn_gguf_vtype_name(trn_gguf_vtype type);
size_t trn_gguf_vtype_size(trn_gguf_vtype type); /* 0 for string and array */

/* ---- writer ---- */
typedef struct trn_gguf_writer trn_gguf_writer;

trn_gguf_writer *trn_gguf_writer_new(void);
void trn_gguf_writer_free(trn_gguf_writer *writer);
/* Scalars. */
void trn_gguf_set_u32(trn_gguf_writer *w, const char *key, uint32_t value);
void trn_gguf_set_i32(trn_gguf_writer *w, const char *key, int32_t value);
void trn_gguf_set_u64(trn_gguf_writer *w, const char *key, uint64_t value);
void trn_gguf_set_f32(trn_gguf_writer *w, const char *key, float value);
void trn_gguf_set_bool(trn_gguf_writer *w, const char *key, int value);
void trn_gguf_set_string(trn_gguf_writer *w, const char *key, const char *value);
/* Any scalar type from raw little-endian bytes (value_size must match the type). */
void trn_gguf_set_scalar(trn_gguf_writer *w, const char *key, trn_gguf_vtype type, const void *value);
/* Arrays of fixed-size elements, and of strings. */
void trn_gguf_set_array(trn_gguf_writer *w, const char *key, trn_gguf_vtype elem_type, const void *data, uint64_t n);
void trn_gguf_set_string_array(trn_gguf_writer *w, const char *key, const char *const *strings, uint64_t n);
/* A tensor; `data` (row-major, ne[0] contiguous) is not copied and must outlive the write; NULL writes
 * zeros. Fails on an unknown type or a row length that is not a multiple of the block size. */
trn_status trn_gguf_add_tensor(trn_gguf_writer *w, const char *name, trn_type type, int n_dims,
                               const int64_t *ne, const void *data);
trn_status trn_gguf_write_file(trn_gguf_writer *w, const char *path);
trn_status trn_gguf_write_memory(trn_gguf_writer *w, void **out_data, size_t *out_size); /* trn_alloc'd */

#endif
