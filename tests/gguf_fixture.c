/* gguf_fixture.c: see gguf_fixture.h. */
#define _POSIX_C_SOURCE 200809L
#include "gguf_fixture.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test_util.h"

/* ---- error messages ---- */

void clear_error(void) { trn_fail(TRN_OK, "%s", ""); }

void check_error_message(const char *context, const char *label, const char *detail) {
    const char *msg = trn_last_error();
    CHECK_MSG(msg[0] != 0 && strcmp(msg, "unknown error") != 0, "%s: no message recorded", context);
    CHECK_MSG(strchr(msg, '\n') == NULL, "%s: message is not one line: %s", context, msg);
    if (label)
        CHECK_MSG(strstr(msg, label) != NULL, "%s: message does not name '%s': %s", context, label, msg);
    if (detail)
        CHECK_MSG(strstr(msg, detail) != NULL, "%s: message does not mention '%s': %s", context, detail, msg);
}

/* ---- bytes ---- */

uint8_t *xmalloc(size_t size) {
    uint8_t *out = malloc(size ? size : 1);
    if (!out) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return out;
}

uint8_t *dup_bytes(const void *src, size_t size) {
    uint8_t *out = xmalloc(size);
    if (size)
        memcpy(out, src, size);
    return out;
}

void put_u32(uint8_t *img, size_t pos, uint32_t v) { memcpy(img + pos, &v, 4); }
void put_u64(uint8_t *img, size_t pos, uint64_t v) { memcpy(img + pos, &v, 8); }

uint32_t get_u32(const uint8_t *img, size_t pos) {
    uint32_t v;
    memcpy(&v, img + pos, 4);
    return v;
}

uint64_t get_u64(const uint8_t *img, size_t pos) {
    uint64_t v;
    memcpy(&v, img + pos, 8);
    return v;
}

void fill_pattern(uint8_t *dst, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        dst[i] = (uint8_t)(i * 7u + seed * 13u + 1u + (i >> 8));
}

int all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

int str_eq(trn_gguf_str s, const char *expected) {
    return s.len == strlen(expected) && memcmp(s.ptr, expected, s.len) == 0;
}

/* ---- the full image: scalars ---- */

static const uint8_t S_U8 = 200;
static const int8_t S_I8 = -100;
static const uint16_t S_U16 = 60000;
static const int16_t S_I16 = -30000;
static const uint32_t S_U32 = 4000000000u;
static const int32_t S_I32 = -2000000000;
static const float S_F32 = 0.15625f;
static const uint64_t S_U64 = 12345678901234ull;
static const uint64_t S_U64_BIG = UINT64_MAX - 1; /* not representable as int64 */
static const int64_t S_I64 = -(INT64_C(1) << 62) - 7;
const double FIXTURE_F64 = -2.5e-300;
const char FIXTURE_STRING[] = "h\xc3\xa9llo \xe2\x96\x81 world";

const fixture_scalar FIXTURE_SCALARS[] = {
    {"s.u8", TRN_GGUF_U8, &S_U8},       {"s.i8", TRN_GGUF_I8, &S_I8},     {"s.u16", TRN_GGUF_U16, &S_U16},
    {"s.i16", TRN_GGUF_I16, &S_I16},    {"s.u32", TRN_GGUF_U32, &S_U32},  {"s.i32", TRN_GGUF_I32, &S_I32},
    {"s.f32", TRN_GGUF_F32, &S_F32},    {"s.u64", TRN_GGUF_U64, &S_U64},  {"s.u64big", TRN_GGUF_U64, &S_U64_BIG},
    {"s.i64", TRN_GGUF_I64, &S_I64},    {"s.f64", TRN_GGUF_F64, &FIXTURE_F64},
};
const size_t N_FIXTURE_SCALARS = TRN_ARRAY_LEN(FIXTURE_SCALARS);

static void add_scalars(trn_gguf_writer *w) {
    trn_gguf_set_scalar(w, "s.u8", TRN_GGUF_U8, &S_U8);
    trn_gguf_set_scalar(w, "s.i8", TRN_GGUF_I8, &S_I8);
    trn_gguf_set_scalar(w, "s.u16", TRN_GGUF_U16, &S_U16);
    trn_gguf_set_scalar(w, "s.i16", TRN_GGUF_I16, &S_I16);
    trn_gguf_set_u32(w, "s.u32", S_U32);
    trn_gguf_set_i32(w, "s.i32", S_I32);
    trn_gguf_set_f32(w, "s.f32", S_F32);
    trn_gguf_set_bool(w, "s.bool", 5); /* any non-zero is stored as 1 */
    trn_gguf_set_bool(w, "s.bool0", 0);
    trn_gguf_set_string(w, "s.string", FIXTURE_STRING);
    trn_gguf_set_string(w, "s.empty", "");
    trn_gguf_set_u64(w, "s.u64", S_U64);
    trn_gguf_set_u64(w, "s.u64big", S_U64_BIG);
    trn_gguf_set_scalar(w, "s.i64", TRN_GGUF_I64, &S_I64);
    trn_gguf_set_scalar(w, "s.f64", TRN_GGUF_F64, &FIXTURE_F64);
}

/* ---- the full image: arrays ---- */

static const uint8_t A_U8[] = {0, 1, 127, 128, 255};
static const int8_t A_I8[] = {-128, -1, 0, 1, 127};
static const uint16_t A_U16[] = {0, 1, 32768, 65535, 7};
static const int16_t A_I16[] = {-32768, -1, 0, 1, 32767};
static const uint32_t A_U32[] = {0, 1, 2147483648u, 4294967295u, 42};
static const int32_t A_I32[] = {INT32_MIN, -1, 0, 1, INT32_MAX};
static const float A_F32[] = {0.0f, -1.5f, 3.25f, 1e30f, -1e-30f};
static const uint8_t A_BOOL[] = {1, 0, 1, 1, 0};
static const uint64_t A_U64[] = {0, 1, (uint64_t)1 << 40, (uint64_t)INT64_MAX, 9};
static const int64_t A_I64[] = {INT64_MIN, -1, 0, 1, INT64_MAX};
static const double A_F64[] = {0.0, -1.5, 1e300, -1e-300, 0.1};

const fixture_array FIXTURE_ARRAYS[] = {
    {"a.u8", TRN_GGUF_U8, A_U8, 1, 0, {0, 1, 127, 128, 255}, {0, 1, 127, 128, 255}},
    {"a.i8", TRN_GGUF_I8, A_I8, 1, 0, {-128, -1, 0, 1, 127}, {-128, -1, 0, 1, 127}},
    {"a.u16", TRN_GGUF_U16, A_U16, 2, 0, {0, 1, 32768, 65535, 7}, {0, 1, 32768, 65535, 7}},
    {"a.i16", TRN_GGUF_I16, A_I16, 2, 0, {-32768, -1, 0, 1, 32767}, {-32768, -1, 0, 1, 32767}},
    {"a.u32", TRN_GGUF_U32, A_U32, 4, 0, {0, 1, 2147483648ll, 4294967295ll, 42}, {0, 1, 2147483648.0, 4294967295.0, 42}},
    {"a.i32", TRN_GGUF_I32, A_I32, 4, 0, {INT32_MIN, -1, 0, 1, INT32_MAX}, {INT32_MIN, -1, 0, 1, INT32_MAX}},
    {"a.f32", TRN_GGUF_F32, A_F32, 4, 1, {0}, {0.0, -1.5, 3.25, (double)1e30f, (double)-1e-30f}},
    {"a.bool", TRN_GGUF_BOOL, A_BOOL, 1, 0, {1, 0, 1, 1, 0}, {1, 0, 1, 1, 0}},
    {"a.u64", TRN_GGUF_U64, A_U64, 8, 0, {0, 1, INT64_C(1) << 40, INT64_MAX, 9},
     {0, 1, 1099511627776.0, (double)INT64_MAX, 9}},
    {"a.i64", TRN_GGUF_I64, A_I64, 8, 0, {INT64_MIN, -1, 0, 1, INT64_MAX},
     {(double)INT64_MIN, -1, 0, 1, (double)INT64_MAX}},
    {"a.f64", TRN_GGUF_F64, A_F64, 8, 1, {0}, {0.0, -1.5, 1e300, -1e-300, 0.1}},
};
const size_t N_FIXTURE_ARRAYS = TRN_ARRAY_LEN(FIXTURE_ARRAYS);

const char *const FIXTURE_ARRAY_STRINGS[] = {"alpha", "", "\xc3\xbc" "n" "\xc3\xaf" "c" "\xc3\xb6" "d" "\xc3\xa9 \xe2\x96\x81", "last"};
const size_t N_FIXTURE_ARRAY_STRINGS = TRN_ARRAY_LEN(FIXTURE_ARRAY_STRINGS);

static void add_arrays(trn_gguf_writer *w) {
    for (size_t i = 0; i < N_FIXTURE_ARRAYS; i++)
        trn_gguf_set_array(w, FIXTURE_ARRAYS[i].key, FIXTURE_ARRAYS[i].type, FIXTURE_ARRAYS[i].data, 5);
    static const uint32_t unused = 0;
    trn_gguf_set_array(w, "a.empty", TRN_GGUF_U32, &unused, 0);
    trn_gguf_set_string_array(w, "a.strings", FIXTURE_ARRAY_STRINGS, N_FIXTURE_ARRAY_STRINGS);
    trn_gguf_set_string_array(w, "a.strings_empty", FIXTURE_ARRAY_STRINGS, 0);
}

/* ---- the full image: tensors ---- */

const fixture_tensor FIXTURE_TENSORS[] = {
    {"t.f32.1d", TRN_TYPE_F32, 1, {7}, 28, 0},
    {"t.f32.2d", TRN_TYPE_F32, 2, {5, 3}, 60, 0},
    {"t.f16.1d", TRN_TYPE_F16, 1, {9}, 18, 0},
    {"t.f16.2d", TRN_TYPE_F16, 2, {4, 6}, 48, 0},
    {"t.bf16.1d", TRN_TYPE_BF16, 1, {3}, 6, 0},
    {"t.bf16.2d", TRN_TYPE_BF16, 2, {8, 2}, 32, 0},
    {"t.q8_0.1d", TRN_TYPE_Q8_0, 1, {64}, 68, 0},       /* 2 blocks of 34 */
    {"t.q8_0.2d", TRN_TYPE_Q8_0, 2, {32, 3}, 102, 0},
    {"t.q4_k.1d", TRN_TYPE_Q4_K, 1, {256}, 144, 0},     /* 1 block of 144 */
    {"t.q4_k.2d", TRN_TYPE_Q4_K, 2, {512, 2}, 576, 0},
    {"t.q6_k.1d", TRN_TYPE_Q6_K, 1, {256}, 210, 0},     /* 1 block of 210 */
    {"t.q6_k.2d", TRN_TYPE_Q6_K, 2, {256, 3}, 630, 0},
    {"t.tq1_0.1d", TRN_TYPE_TQ1_0, 1, {256}, 54, 0},    /* 1 block of 54 */
    {"t.tq1_0.2d", TRN_TYPE_TQ1_0, 2, {256, 2}, 108, 0},
    {"t.tq2_0.1d", TRN_TYPE_TQ2_0, 1, {512}, 132, 0},   /* 2 blocks of 66 */
    {"t.tq2_0.2d", TRN_TYPE_TQ2_0, 2, {256, 3}, 198, 0},
    {"t.f32.3d", TRN_TYPE_F32, 3, {2, 3, 4}, 96, 0},
    {"t.f32.4d", TRN_TYPE_F32, 4, {2, 2, 2, 3}, 96, 0},
    {"t.zeros", TRN_TYPE_TQ2_0, 2, {256, 1}, 66, 1},
};
#define TENSOR_COUNT TRN_ARRAY_LEN(FIXTURE_TENSORS)
const int64_t N_FIXTURE_TENSORS = (int64_t)TENSOR_COUNT;

static uint8_t *payloads[TENSOR_COUNT];

void fixture_make_payloads(void) {
    for (size_t i = 0; i < TENSOR_COUNT; i++) {
        payloads[i] = xmalloc(FIXTURE_TENSORS[i].bytes);
        if (FIXTURE_TENSORS[i].zeros)
            memset(payloads[i], 0, FIXTURE_TENSORS[i].bytes);
        else
            fill_pattern(payloads[i], FIXTURE_TENSORS[i].bytes, (unsigned)i + 1);
    }
}

void fixture_free_payloads(void) {
    for (size_t i = 0; i < TENSOR_COUNT; i++)
        free(payloads[i]);
}

const uint8_t *fixture_payload(int64_t i) { return payloads[i]; }

static void add_tensors(trn_gguf_writer *w) {
    for (size_t i = 0; i < TENSOR_COUNT; i++) {
        const fixture_tensor *t = &FIXTURE_TENSORS[i];
        trn_status st = trn_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->zeros ? NULL : payloads[i]);
        CHECK_MSG(st == TRN_OK, "add_tensor(%s): %s", t->name, trn_last_error());
    }
}

trn_gguf_writer *fixture_full_writer(void) {
    trn_gguf_writer *w = trn_gguf_writer_new();
    CHECK(w != NULL);
    add_scalars(w);
    add_arrays(w);
    add_tensors(w);
    return w;
}

/* Removes every entry of `dir` (files and empty directories), so a failed check leaves no litter. */
void empty_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char path[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        remove(path);
    }
    closedir(d);
}
