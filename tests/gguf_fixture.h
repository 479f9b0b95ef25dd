/* gguf_fixture.h: what the GGUF tests share (test_gguf_read, test_gguf_write, test_model_load).
 *
 * - the failure-message contract: one non-empty line naming the file and, where given, the key or tensor;
 * - byte helpers for building and patching images (little-endian host, like gguf.c);
 * - the "full" image: a writer holding one scalar of every value type, an array of every element type and
 *   a tensor of every tensor type, with the values it must read back. */
#ifndef TRN_GGUF_FIXTURE_H
#define TRN_GGUF_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "host/gguf.h"

/* ---- error messages ---- */

/* Empties the recorded error, so that a check sees only the message of the call under test. */
void clear_error(void);
/* The message of the last failure is one non-empty line naming `label` (if given) and `detail` (if given). */
void check_error_message(const char *context, const char *label, const char *detail);

/* ---- bytes ---- */

/* malloc that stops the test when out of memory; a zero size still gives a distinct pointer. */
uint8_t *xmalloc(size_t size);
/* A malloc'd copy of exactly `size` bytes, so that a read past the end is caught by valgrind or ASan. */
uint8_t *dup_bytes(const void *src, size_t size);
void put_u32(uint8_t *img, size_t pos, uint32_t v);
void put_u64(uint8_t *img, size_t pos, uint64_t v);
uint32_t get_u32(const uint8_t *img, size_t pos);
uint64_t get_u64(const uint8_t *img, size_t pos);
/* Deterministic, seed-specific byte pattern. */
void fill_pattern(uint8_t *dst, size_t n, unsigned seed);
int all_zero(const uint8_t *p, size_t n);
int str_eq(trn_gguf_str s, const char *expected);

/* ---- the full image ---- */

/* A scalar of a fixed-size value type as written: key, type and the bytes of its value. */
typedef struct {
    const char *key;
    trn_gguf_vtype type;
    const void *value;
} fixture_scalar;

/* The fixed-size scalars (every integer and float type, and a u64 beyond INT64_MAX), in writing order. Besides
 * these the full image holds s.bool (written as 5, stored as 1), s.bool0, s.string, s.empty (""). */
extern const fixture_scalar FIXTURE_SCALARS[];
extern const size_t N_FIXTURE_SCALARS;
extern const double FIXTURE_F64;  /* s.f64 */
extern const char FIXTURE_STRING[]; /* s.string: UTF-8 with U+2581 */
#define N_FIXTURE_SCALAR_KEYS 15

/* An array of 5 elements of each fixed-size element type, with its expected integer and float readings. Besides
 * these the full image holds a.empty (u32, no element), a.strings (FIXTURE_ARRAY_STRINGS), a.strings_empty. */
typedef struct {
    const char *key;
    trn_gguf_vtype type;
    const void *data;
    size_t elem_size; /* expected trn_gguf_vtype_size */
    int is_float;
    int64_t ints[5];  /* expected trn_gguf_array_int for integer types */
    double floats[5]; /* expected trn_gguf_array_float for every type */
} fixture_array;

extern const fixture_array FIXTURE_ARRAYS[];
extern const size_t N_FIXTURE_ARRAYS;
extern const char *const FIXTURE_ARRAY_STRINGS[];
extern const size_t N_FIXTURE_ARRAY_STRINGS;
#define N_FIXTURE_ARRAY_KEYS (11 + 3)

/* A tensor of the full image; its data is fixture_payload(i). */
typedef struct {
    const char *name;
    trn_type type;
    int n_dims;
    int64_t ne[4];
    size_t bytes; /* from the block layouts in tensor_types.h, worked out by hand */
    int zeros;    /* added with data == NULL */
} fixture_tensor;

extern const fixture_tensor FIXTURE_TENSORS[];
extern const int64_t N_FIXTURE_TENSORS;

/* Makes and frees the tensor payloads (call once at the start and the end of a test). */
void fixture_make_payloads(void);
void fixture_free_payloads(void);
const uint8_t *fixture_payload(int64_t i);

/* A writer holding the whole full image (scalars, arrays, tensors, in that order). */
trn_gguf_writer *fixture_full_writer(void);

/* Removes every entry of `dir` (files and empty directories), so a failed check leaves no litter. */
void empty_dir(const char *dir);

#endif
