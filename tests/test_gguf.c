/* test_gguf.c: the GGUF reader and writer (host/gguf.h).
 *
 * 1. writer -> memory -> reader round trip: scalars of every value type, arrays of every element type,
 *    tensors of every tensor type, the typed getters and their error paths;
 * 2. writer -> file -> mmap reader, temporary-file hygiene and I/O failures;
 * 3. every truncated prefix of a small file;
 * 4. single-field corruptions of a valid image (status and one-line message naming the file);
 * 5. the real files under ../shared/testdata (skipped part by part when absent);
 * 6. what the writer refuses.
 *
 * Images under test are copied into malloc'd buffers of exactly their size, so a read past the end is
 * caught by valgrind or AddressSanitizer. Field patching assumes a little-endian host, like gguf.c. */
#define _POSIX_C_SOURCE 200809L
#include "host/gguf.h"
#include "test_util.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------------------------- */

static void clear_error(void) { trn_fail(TRN_OK, "%s", ""); }

/* The failure-message contract: one non-empty line naming the file (`label`) and, if given, `detail`. */
static void check_error_message(const char *context, const char *label, const char *detail) {
    const char *msg = trn_last_error();
    CHECK_MSG(msg[0] != 0 && strcmp(msg, "unknown error") != 0, "%s: no message recorded", context);
    CHECK_MSG(strchr(msg, '\n') == NULL, "%s: message is not one line: %s", context, msg);
    if (label)
        CHECK_MSG(strstr(msg, label) != NULL, "%s: message does not name '%s': %s", context, label, msg);
    if (detail)
        CHECK_MSG(strstr(msg, detail) != NULL, "%s: message does not mention '%s': %s", context, detail, msg);
}

static uint8_t *xmalloc(size_t size) {
    uint8_t *out = malloc(size ? size : 1);
    if (!out) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    return out;
}

static uint8_t *dup_bytes(const void *src, size_t size) {
    uint8_t *out = xmalloc(size);
    if (size)
        memcpy(out, src, size);
    return out;
}

static void put_u32(uint8_t *img, size_t pos, uint32_t v) { memcpy(img + pos, &v, 4); }
static void put_u64(uint8_t *img, size_t pos, uint64_t v) { memcpy(img + pos, &v, 8); }
static uint32_t get_u32(const uint8_t *img, size_t pos) {
    uint32_t v;
    memcpy(&v, img + pos, 4);
    return v;
}

/* Opens a copy of `img` of exactly `size` bytes under `label`; expects status `want` (a failure) with a
 * proper message that mentions `detail` (may be NULL). */
static void expect_open_failure(const uint8_t *img, size_t size, const char *label, trn_status want,
                                const char *detail) {
    uint8_t *copy = dup_bytes(img, size);
    trn_gguf *g = (trn_gguf *)1;
    clear_error();
    trn_status st = trn_gguf_open_memory(copy, size, 0, label, &g);
    CHECK_MSG(st == want, "%s: status %s, expected %s (%s)", label, trn_status_name(st), trn_status_name(want),
              trn_last_error());
    CHECK_MSG(g == NULL, "%s: *out not NULL after a failed open", label);
    if (st != TRN_OK)
        check_error_message(label, label, detail);
    else
        trn_gguf_close(g);
    free(copy);
}

/* Position of the GGUF string `s` (u64 length, then bytes) in an image; it must occur exactly once.
 * A missing string is a bug in this test, so it stops the test. */
static size_t find_gguf_string(const uint8_t *img, size_t size, const char *s) {
    size_t n = strlen(s);
    uint8_t needle[264];
    if (n > 256) {
        fprintf(stderr, "find_gguf_string: '%s' too long\n", s);
        exit(1);
    }
    uint64_t len = n;
    memcpy(needle, &len, 8);
    memcpy(needle + 8, s, n);
    size_t found = 0;
    int count = 0;
    for (size_t i = 0; i + 8 + n <= size; i++)
        if (memcmp(img + i, needle, 8 + n) == 0 && count++ == 0)
            found = i;
    if (count != 1) {
        fprintf(stderr, "find_gguf_string: '%s' occurs %d times in the image\n", s, count);
        exit(1);
    }
    return found;
}

/* Byte offset of a metadata entry's u32 value type (the value follows at +4). */
static size_t kv_type_pos(const uint8_t *img, size_t size, const char *key) {
    return find_gguf_string(img, size, key) + 8 + strlen(key);
}

typedef struct {
    size_t name, n_dims, ne, type, offset; /* byte offsets of the tensor-info fields */
} tensor_fields;

static tensor_fields locate_tensor(const uint8_t *img, size_t size, const char *name) {
    tensor_fields f;
    f.name = find_gguf_string(img, size, name);
    f.n_dims = f.name + 8 + strlen(name);
    f.ne = f.n_dims + 4;
    f.type = f.ne + 8 * (size_t)get_u32(img, f.n_dims);
    f.offset = f.type + 4;
    return f;
}

/* Deterministic, tensor-specific byte pattern. */
static void fill_pattern(uint8_t *dst, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        dst[i] = (uint8_t)(i * 7u + seed * 13u + 1u + (i >> 8));
}

static int all_zero(const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* ---- 1. round trip: metadata --------------------------------------------------------------------- */

/* Scalar values written by add_scalars(). */
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
static const double S_F64 = -2.5e-300;
static const char S_STRING[] = "h\xc3\xa9llo \xe2\x96\x81 world";

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
    trn_gguf_set_string(w, "s.string", S_STRING);
    trn_gguf_set_string(w, "s.empty", "");
    trn_gguf_set_u64(w, "s.u64", S_U64);
    trn_gguf_set_u64(w, "s.u64big", S_U64_BIG);
    trn_gguf_set_scalar(w, "s.i64", TRN_GGUF_I64, &S_I64);
    trn_gguf_set_scalar(w, "s.f64", TRN_GGUF_F64, &S_F64);
}
#define N_SCALAR_KEYS 15

/* Arrays: one per fixed-size element type, 5 elements each, with the expected integer/float readings. */
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

typedef struct {
    const char *key;
    trn_gguf_vtype type;
    const void *data;
    size_t elem_size;  /* expected trn_gguf_vtype_size */
    int is_float;
    int64_t ints[5];   /* expected trn_gguf_array_int for integer types */
    double floats[5];  /* expected trn_gguf_array_float for every type */
} array_case;

static const array_case ARRAYS[] = {
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

static const char *const A_STRINGS[] = {"alpha", "", "\xc3\xbc" "n" "\xc3\xaf" "c" "\xc3\xb6" "d" "\xc3\xa9 \xe2\x96\x81", "last"};

static void add_arrays(trn_gguf_writer *w) {
    for (size_t i = 0; i < TRN_ARRAY_LEN(ARRAYS); i++)
        trn_gguf_set_array(w, ARRAYS[i].key, ARRAYS[i].type, ARRAYS[i].data, 5);
    static const uint32_t unused = 0;
    trn_gguf_set_array(w, "a.empty", TRN_GGUF_U32, &unused, 0);
    trn_gguf_set_string_array(w, "a.strings", A_STRINGS, TRN_ARRAY_LEN(A_STRINGS));
    trn_gguf_set_string_array(w, "a.strings_empty", A_STRINGS, 0);
}
#define N_ARRAY_KEYS (11 + 3)

static int str_eq(trn_gguf_str s, const char *expected) {
    return s.len == strlen(expected) && memcmp(s.ptr, expected, s.len) == 0;
}

static void check_scalars(const trn_gguf *g) {
    static const struct {
        const char *key;
        trn_gguf_vtype type;
        const void *value;
    } raw[] = {
        {"s.u8", TRN_GGUF_U8, &S_U8},       {"s.i8", TRN_GGUF_I8, &S_I8},     {"s.u16", TRN_GGUF_U16, &S_U16},
        {"s.i16", TRN_GGUF_I16, &S_I16},    {"s.u32", TRN_GGUF_U32, &S_U32},  {"s.i32", TRN_GGUF_I32, &S_I32},
        {"s.f32", TRN_GGUF_F32, &S_F32},    {"s.u64", TRN_GGUF_U64, &S_U64},  {"s.u64big", TRN_GGUF_U64, &S_U64_BIG},
        {"s.i64", TRN_GGUF_I64, &S_I64},    {"s.f64", TRN_GGUF_F64, &S_F64},
    };
    for (size_t i = 0; i < TRN_ARRAY_LEN(raw); i++) {
        const trn_gguf_kv *kv = trn_gguf_find_kv(g, raw[i].key);
        CHECK_MSG(kv != NULL, "key %s missing", raw[i].key);
        if (!kv)
            continue;
        CHECK_MSG(kv->type == raw[i].type, "%s: type %s", raw[i].key, trn_gguf_vtype_name(kv->type));
        CHECK_MSG(memcmp(kv->data, raw[i].value, trn_gguf_vtype_size(raw[i].type)) == 0, "%s: value bytes differ",
                  raw[i].key);
    }
    const trn_gguf_kv *b = trn_gguf_find_kv(g, "s.bool");
    CHECK(b && b->type == TRN_GGUF_BOOL && b->data[0] == 1);

    /* get_int accepts every integer type */
    static const struct {
        const char *key;
        int64_t value;
    } ints[] = {{"s.u8", 200}, {"s.i8", -100}, {"s.u16", 60000}, {"s.i16", -30000}, {"s.u32", 4000000000ll},
                {"s.i32", -2000000000}, {"s.u64", 12345678901234ll}, {"s.i64", -(INT64_C(1) << 62) - 7}};
    for (size_t i = 0; i < TRN_ARRAY_LEN(ints); i++) {
        int64_t v = 0;
        trn_status st = trn_gguf_get_int(g, ints[i].key, &v, TRN_ERR_FORMAT);
        CHECK_MSG(st == TRN_OK && v == ints[i].value, "get_int(%s): %s, %lld", ints[i].key, trn_status_name(st),
                  (long long)v);
        double f = 0;
        st = trn_gguf_get_float(g, ints[i].key, &f, TRN_ERR_FORMAT); /* get_float accepts integers too */
        CHECK_MSG(st == TRN_OK && f == (double)ints[i].value, "get_float(%s): %s, %g", ints[i].key,
                  trn_status_name(st), f);
    }
    /* get_int rejects bool, floats, strings, arrays and a u64 beyond INT64_MAX, naming the key; *out untouched */
    static const char *const not_int[] = {"s.bool", "s.f32", "s.f64", "s.string", "a.u32", "s.u64big"};
    for (size_t i = 0; i < TRN_ARRAY_LEN(not_int); i++) {
        int64_t v = 77;
        clear_error();
        trn_status st = trn_gguf_get_int(g, not_int[i], &v, TRN_OK);
        CHECK_MSG(st == TRN_ERR_FORMAT && v == 77, "get_int(%s): %s, %lld", not_int[i], trn_status_name(st),
                  (long long)v);
        check_error_message(not_int[i], trn_gguf_path(g), not_int[i]);
    }
    double f = 0;
    CHECK(trn_gguf_get_float(g, "s.f32", &f, TRN_ERR_FORMAT) == TRN_OK && f == 0.15625);
    CHECK(trn_gguf_get_float(g, "s.f64", &f, TRN_ERR_FORMAT) == TRN_OK && f == S_F64);
    static const char *const not_float[] = {"s.bool", "s.string", "s.empty", "a.f32"};
    for (size_t i = 0; i < TRN_ARRAY_LEN(not_float); i++) {
        f = 77;
        clear_error();
        trn_status st = trn_gguf_get_float(g, not_float[i], &f, TRN_OK);
        CHECK_MSG(st == TRN_ERR_FORMAT && f == 77, "get_float(%s): %s", not_float[i], trn_status_name(st));
        check_error_message(not_float[i], trn_gguf_path(g), not_float[i]);
    }

    int bv = -1;
    CHECK(trn_gguf_get_bool(g, "s.bool", &bv, TRN_ERR_FORMAT) == TRN_OK && bv == 1);
    CHECK(trn_gguf_get_bool(g, "s.bool0", &bv, TRN_ERR_FORMAT) == TRN_OK && bv == 0);
    bv = -1;
    clear_error();
    CHECK(trn_gguf_get_bool(g, "s.u8", &bv, TRN_OK) == TRN_ERR_FORMAT && bv == -1);
    check_error_message("get_bool(s.u8)", trn_gguf_path(g), "s.u8");

    trn_gguf_str s = {NULL, 99};
    CHECK(trn_gguf_get_string(g, "s.string", &s, TRN_ERR_FORMAT) == TRN_OK && str_eq(s, S_STRING));
    CHECK(trn_gguf_get_string(g, "s.empty", &s, TRN_ERR_FORMAT) == TRN_OK && s.len == 0);
    clear_error();
    CHECK(trn_gguf_get_string(g, "s.u32", &s, TRN_OK) == TRN_ERR_FORMAT);
    check_error_message("get_string(s.u32)", trn_gguf_path(g), "s.u32");
    clear_error();
    CHECK(trn_gguf_get_string(g, "a.strings", &s, TRN_OK) == TRN_ERR_FORMAT); /* an array is not a string */
    check_error_message("get_string(a.strings)", trn_gguf_path(g), "a.strings");

    /* A missing key: `missing` decides; TRN_OK keeps the caller's default. */
    int64_t iv = 42;
    CHECK(trn_gguf_get_int(g, "no.such.key", &iv, TRN_OK) == TRN_OK && iv == 42);
    f = 2.5;
    CHECK(trn_gguf_get_float(g, "no.such.key", &f, TRN_OK) == TRN_OK && f == 2.5);
    bv = 7;
    CHECK(trn_gguf_get_bool(g, "no.such.key", &bv, TRN_OK) == TRN_OK && bv == 7);
    s.ptr = "default";
    s.len = 7;
    CHECK(trn_gguf_get_string(g, "no.such.key", &s, TRN_OK) == TRN_OK && str_eq(s, "default"));
    clear_error();
    CHECK(trn_gguf_get_int(g, "no.such.int", &iv, TRN_ERR_FORMAT) == TRN_ERR_FORMAT && iv == 42);
    check_error_message("get_int(missing)", trn_gguf_path(g), "no.such.int");
    clear_error();
    CHECK(trn_gguf_get_float(g, "no.such.float", &f, TRN_ERR_FORMAT) == TRN_ERR_FORMAT);
    check_error_message("get_float(missing)", trn_gguf_path(g), "no.such.float");
    clear_error();
    CHECK(trn_gguf_get_bool(g, "no.such.bool", &bv, TRN_ERR_FORMAT) == TRN_ERR_FORMAT);
    check_error_message("get_bool(missing)", trn_gguf_path(g), "no.such.bool");
    clear_error();
    CHECK(trn_gguf_get_string(g, "no.such.string", &s, TRN_ERR_FORMAT) == TRN_ERR_FORMAT);
    check_error_message("get_string(missing)", trn_gguf_path(g), "no.such.string");
}

static void check_arrays(const trn_gguf *g) {
    for (size_t i = 0; i < TRN_ARRAY_LEN(ARRAYS); i++) {
        const array_case *a = &ARRAYS[i];
        const trn_gguf_kv *kv = trn_gguf_get_array(g, a->key, a->type);
        CHECK_MSG(kv != NULL, "array %s: %s", a->key, trn_last_error());
        if (!kv)
            continue;
        CHECK(kv == trn_gguf_find_kv(g, a->key));
        CHECK_MSG(kv->type == TRN_GGUF_ARRAY && kv->elem_type == a->type && kv->n_elems == 5, "array %s: %s of %s x%llu",
                  a->key, trn_gguf_vtype_name(kv->type), trn_gguf_vtype_name(kv->elem_type),
                  (unsigned long long)kv->n_elems);
        CHECK_MSG(trn_gguf_vtype_size(a->type) == a->elem_size, "vtype_size(%s)", trn_gguf_vtype_name(a->type));
        CHECK_MSG(memcmp(kv->data, a->data, 5 * a->elem_size) == 0, "array %s: bytes differ", a->key);
        for (uint64_t j = 0; j < 5; j++) {
            if (!a->is_float)
                CHECK_MSG(trn_gguf_array_int(kv, j) == a->ints[j], "array_int(%s, %llu) = %lld", a->key,
                          (unsigned long long)j, (long long)trn_gguf_array_int(kv, j));
            CHECK_MSG(trn_gguf_array_float(kv, j) == a->floats[j], "array_float(%s, %llu) = %g", a->key,
                      (unsigned long long)j, trn_gguf_array_float(kv, j));
        }
        /* the element type must match exactly */
        trn_gguf_vtype other = a->type == TRN_GGUF_I32 ? TRN_GGUF_U32 : TRN_GGUF_I32;
        clear_error();
        CHECK_MSG(trn_gguf_get_array(g, a->key, other) == NULL, "get_array(%s) accepted %s", a->key,
                  trn_gguf_vtype_name(other));
        check_error_message("get_array(wrong element type)", trn_gguf_path(g), a->key);
    }
    const trn_gguf_kv *kv = trn_gguf_get_array(g, "a.empty", TRN_GGUF_U32);
    CHECK(kv && kv->n_elems == 0);

    kv = trn_gguf_get_array(g, "a.strings", TRN_GGUF_STRING);
    CHECK(kv && kv->n_elems == TRN_ARRAY_LEN(A_STRINGS) && kv->strings);
    for (size_t i = 0; kv && kv->strings && i < TRN_ARRAY_LEN(A_STRINGS); i++)
        CHECK_MSG(str_eq(kv->strings[i], A_STRINGS[i]), "a.strings[%zu]", i);
    kv = trn_gguf_get_array(g, "a.strings_empty", TRN_GGUF_STRING);
    CHECK(kv && kv->n_elems == 0 && kv->elem_type == TRN_GGUF_STRING);

    const trn_gguf_kv *str = trn_gguf_find_kv(g, "s.string");
    CHECK(str && str->type == TRN_GGUF_STRING && str->strings && str_eq(str->strings[0], S_STRING));

    clear_error();
    CHECK(trn_gguf_get_array(g, "no.such.array", TRN_GGUF_U32) == NULL);
    check_error_message("get_array(missing)", trn_gguf_path(g), "no.such.array");
    clear_error();
    CHECK(trn_gguf_get_array(g, "s.u32", TRN_GGUF_U32) == NULL); /* a scalar is not an array */
    check_error_message("get_array(scalar)", trn_gguf_path(g), "s.u32");
}

/* ---- 1. round trip: tensors ---------------------------------------------------------------------- */

typedef struct {
    const char *name;
    trn_type type;
    int n_dims;
    int64_t ne[4];
    size_t bytes; /* from the block layouts in tensor_types.h, worked out by hand */
    int zeros;    /* added with data == NULL */
} tensor_case;

static const tensor_case TENSORS[] = {
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
#define N_TENSORS ((int64_t)TRN_ARRAY_LEN(TENSORS))

static uint8_t *tensor_payloads[TRN_ARRAY_LEN(TENSORS)];

static void make_payloads(void) {
    for (size_t i = 0; i < TRN_ARRAY_LEN(TENSORS); i++) {
        tensor_payloads[i] = xmalloc(TENSORS[i].bytes);
        if (TENSORS[i].zeros)
            memset(tensor_payloads[i], 0, TENSORS[i].bytes);
        else
            fill_pattern(tensor_payloads[i], TENSORS[i].bytes, (unsigned)i + 1);
    }
}

static void free_payloads(void) {
    for (size_t i = 0; i < TRN_ARRAY_LEN(TENSORS); i++)
        free(tensor_payloads[i]);
}

static void add_tensors(trn_gguf_writer *w) {
    for (size_t i = 0; i < TRN_ARRAY_LEN(TENSORS); i++) {
        const tensor_case *t = &TENSORS[i];
        trn_status st = trn_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->zeros ? NULL : tensor_payloads[i]);
        CHECK_MSG(st == TRN_OK, "add_tensor(%s): %s", t->name, trn_last_error());
    }
}

static trn_gguf_writer *full_writer(void) {
    trn_gguf_writer *w = trn_gguf_writer_new();
    CHECK(w != NULL);
    add_scalars(w);
    add_arrays(w);
    add_tensors(w);
    return w;
}

/* Layout and contents of the tensors of a full_writer() image. `image` is the image itself when known
 * (memory-backed), else NULL. */
static void check_tensors(const trn_gguf *g, const uint8_t *image) {
    CHECK_MSG(trn_gguf_n_tensors(g) == N_TENSORS, "n_tensors %lld", (long long)trn_gguf_n_tensors(g));
    size_t data_offset = trn_gguf_data_offset(g);
    size_t size = trn_gguf_file_size(g);
    CHECK_MSG(data_offset % 32 == 0 && data_offset < size, "data offset %zu", data_offset);
    const uint8_t *base = NULL; /* start of the image, as seen through the first tensor */
    const trn_gguf_tensor *prev = NULL;
    for (int64_t i = 0; i < N_TENSORS && i < trn_gguf_n_tensors(g); i++) {
        const tensor_case *c = &TENSORS[i];
        const trn_gguf_tensor *t = trn_gguf_tensor_at(g, i);
        CHECK(t != NULL && t == trn_gguf_find_tensor(g, c->name)); /* order is preserved */
        if (!t)
            continue;
        CHECK_MSG(strcmp(t->name, c->name) == 0, "tensor %lld is %s", (long long)i, t->name);
        CHECK_MSG(t->type == c->type && t->n_dims == c->n_dims, "%s: type %d, %d dims", c->name, (int)t->type,
                  t->n_dims);
        int64_t n = 1;
        for (int d = 0; d < TRN_GGUF_MAX_DIMS; d++) {
            int64_t want = d < c->n_dims ? c->ne[d] : 1; /* unused dimensions read as 1 */
            CHECK_MSG(t->ne[d] == want, "%s: ne[%d] = %lld", c->name, d, (long long)t->ne[d]);
            n *= want;
        }
        CHECK_MSG(t->n_elems == n, "%s: n_elems %lld", c->name, (long long)t->n_elems);
        CHECK_MSG(t->bytes == c->bytes, "%s: %zu bytes, expected %zu", c->name, t->bytes, c->bytes);
        CHECK_MSG(t->bytes == trn_row_bytes(c->type, c->ne[0]) * (size_t)(n / c->ne[0]), "%s: row bytes", c->name);
        CHECK_MSG(t->offset % 32 == 0, "%s: offset %llu not aligned", c->name, (unsigned long long)t->offset);
        CHECK_MSG(data_offset + t->offset + t->bytes <= size, "%s: past the end", c->name);
        const uint8_t *data = t->data;
        if (!base)
            base = data - data_offset - t->offset;
        CHECK_MSG(data == base + data_offset + t->offset, "%s: data pointer inconsistent", c->name);
        if (image)
            CHECK_MSG(data == image + data_offset + t->offset, "%s: data does not point into the image", c->name);
        CHECK_MSG(memcmp(data, tensor_payloads[i], c->bytes) == 0, "%s: data bytes differ", c->name);
        if (prev) {
            /* no overlap, in order, and the gap is zero padding shorter than the alignment */
            size_t prev_end = (size_t)prev->offset + prev->bytes;
            CHECK_MSG(prev_end <= t->offset && t->offset - prev_end < 32, "%s: offset %llu after %zu", c->name,
                      (unsigned long long)t->offset, prev_end);
            if (prev_end <= t->offset)
                CHECK_MSG(all_zero(base + data_offset + prev_end, t->offset - prev_end), "%s: padding not zero",
                          c->name);
        } else {
            CHECK_MSG(t->offset == 0, "first tensor at offset %llu", (unsigned long long)t->offset);
        }
        prev = t;
    }
    if (prev && base) {
        /* the file ends with the last tensor's data, padded with zeros to the alignment */
        size_t end = data_offset + (size_t)prev->offset + prev->bytes;
        CHECK_MSG(size >= end && size == round_up(end, 32), "file size %zu, data ends at %zu", size, end);
        if (size >= end)
            CHECK(all_zero(base + end, size - end));
    }
    CHECK(trn_gguf_find_tensor(g, "no.such.tensor") == NULL);
    CHECK(trn_gguf_tensor_at(g, -1) == NULL && trn_gguf_tensor_at(g, N_TENSORS) == NULL);
}

static void check_full(const trn_gguf *g, const char *label, const uint8_t *image) {
    CHECK_MSG(strcmp(trn_gguf_path(g), label) == 0, "path '%s'", trn_gguf_path(g));
    CHECK_MSG(trn_gguf_version(g) == 3, "version %u", trn_gguf_version(g));
    CHECK(trn_gguf_alignment(g) == 32);
    CHECK_MSG(trn_gguf_n_kv(g) == N_SCALAR_KEYS + N_ARRAY_KEYS, "n_kv %lld", (long long)trn_gguf_n_kv(g));
    /* keys keep their insertion order */
    const trn_gguf_kv *first = trn_gguf_kv_at(g, 0), *last = trn_gguf_kv_at(g, trn_gguf_n_kv(g) - 1);
    CHECK(first && strcmp(first->key, "s.u8") == 0);
    CHECK(last && strcmp(last->key, "a.strings_empty") == 0);
    CHECK(trn_gguf_kv_at(g, -1) == NULL && trn_gguf_kv_at(g, trn_gguf_n_kv(g)) == NULL);
    CHECK(trn_gguf_find_kv(g, "no.such.key") == NULL);
    check_scalars(g);
    check_arrays(g);
    check_tensors(g, image);
}

static void test_round_trip_memory(void) {
    trn_gguf_writer *w = full_writer();
    void *image = NULL, *again = NULL;
    size_t size = 0, size2 = 0;
    CHECK(trn_gguf_write_memory(w, &image, &size) == TRN_OK && image && size > 0);
    /* writing twice gives the same bytes */
    CHECK(trn_gguf_write_memory(w, &again, &size2) == TRN_OK && size2 == size && memcmp(again, image, size) == 0);
    trn_free(again);
    trn_gguf_writer_free(w);
    if (!image)
        return;
    CHECK(memcmp(image, "GGUF", 4) == 0 && get_u32(image, 4) == 3);

    /* with ownership: trn_gguf_close releases the image (valgrind checks) */
    trn_gguf *g = NULL;
    trn_status st = trn_gguf_open_memory(image, size, 1, "round-trip.gguf", &g);
    CHECK_MSG(st == TRN_OK, "open: %s", trn_last_error());
    if (st == TRN_OK) {
        CHECK(trn_gguf_file_size(g) == size);
        check_full(g, "round-trip.gguf", image);
        trn_gguf_close(g);
    }
    trn_gguf_close(NULL);
    trn_gguf_writer_free(NULL);
}

/* A writer with nothing in it, and one with tensors but no metadata, still make valid files. */
static void test_minimal_files(void) {
    trn_gguf_writer *w = trn_gguf_writer_new();
    void *image = NULL;
    size_t size = 0;
    CHECK(trn_gguf_write_memory(w, &image, &size) == TRN_OK);
    trn_gguf *g = NULL;
    if (image) {
        CHECK(size == 32); /* 24-byte header padded to the alignment */
        CHECK(trn_gguf_open_memory(image, size, 0, "empty.gguf", &g) == TRN_OK);
        if (g) {
            CHECK(trn_gguf_n_kv(g) == 0 && trn_gguf_n_tensors(g) == 0 && trn_gguf_version(g) == 3);
            trn_gguf_close(g);
        }
        trn_free(image);
    }
    trn_gguf_writer_free(w);

    w = trn_gguf_writer_new();
    const int64_t ne[1] = {32};
    CHECK(trn_gguf_add_tensor(w, "only", TRN_TYPE_Q8_0, 1, ne, NULL) == TRN_OK);
    image = NULL;
    CHECK(trn_gguf_write_memory(w, &image, &size) == TRN_OK);
    if (image) {
        g = NULL;
        CHECK(trn_gguf_open_memory(image, size, 0, "tensor-only.gguf", &g) == TRN_OK);
        if (g) {
            const trn_gguf_tensor *t = trn_gguf_find_tensor(g, "only");
            CHECK(trn_gguf_n_kv(g) == 0 && t && t->bytes == 34 && all_zero(t->data, 34));
            trn_gguf_close(g);
        }
        trn_free(image);
    }
    trn_gguf_writer_free(w);
}

/* ---- 2. files ------------------------------------------------------------------------------------ */

/* Names in `dir` other than . and .., joined with spaces (sorted order not guaranteed). */
static int count_entries(const char *dir, char *names, size_t cap) {
    DIR *d = opendir(dir);
    int n = 0;
    names[0] = 0;
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        n++;
        size_t len = strlen(names);
        snprintf(names + len, cap - len, "%s%s", len ? " " : "", e->d_name);
    }
    closedir(d);
    return n;
}

/* Removes every entry of `dir` (files and empty directories), so a failed check leaves no litter. */
static void empty_dir(const char *dir) {
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

static void test_files(void) {
    char dir[] = "/tmp/trn_test_gguf_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK_MSG(0, "mkdtemp failed");
        return;
    }
    char path[256], sub[256], missing[256], names[1024];
    snprintf(path, sizeof(path), "%s/model.gguf", dir);
    snprintf(sub, sizeof(sub), "%s/subdir", dir);
    snprintf(missing, sizeof(missing), "%s/no/such/dir/model.gguf", dir);

    trn_gguf_writer *w = full_writer();
    void *image = NULL;
    size_t size = 0;
    CHECK(trn_gguf_write_memory(w, &image, &size) == TRN_OK);
    trn_status st = trn_gguf_write_file(w, path);
    CHECK_MSG(st == TRN_OK, "write_file: %s", trn_last_error());
    CHECK_MSG(count_entries(dir, names, sizeof(names)) == 1 && strcmp(names, "model.gguf") == 0,
              "directory holds: %s", names);

    /* the file holds exactly the bytes of the memory image */
    size_t file_len = 0;
    char *bytes = test_read_file(path, &file_len);
    CHECK_MSG(bytes && file_len == size && image && memcmp(bytes, image, size) == 0, "file (%zu bytes) != image (%zu)",
              file_len, size);
    free(bytes);

    trn_gguf *g = NULL;
    st = trn_gguf_open(path, &g);
    CHECK_MSG(st == TRN_OK, "open: %s", trn_last_error());
    if (st == TRN_OK) {
        check_full(g, path, NULL);
        trn_gguf_close(g);
    }

    /* overwriting an existing file works and still leaves no temporary behind */
    CHECK(trn_gguf_write_file(w, path) == TRN_OK);
    CHECK_MSG(count_entries(dir, names, sizeof(names)) == 1, "after overwrite: %s", names);

    /* a path in a directory that does not exist: TRN_ERR_IO, nothing created */
    clear_error();
    st = trn_gguf_write_file(w, missing);
    CHECK_MSG(st == TRN_ERR_IO, "write to missing dir: %s", trn_status_name(st));
    check_error_message("write to missing dir", "no/such/dir/model.gguf", NULL);
    CHECK_MSG(count_entries(dir, names, sizeof(names)) == 1, "after failed write: %s", names);

    /* the rename fails when the target is a directory: TRN_ERR_IO and the temporary is removed */
    CHECK(mkdir(sub, 0700) == 0);
    clear_error();
    st = trn_gguf_write_file(w, sub);
    CHECK_MSG(st == TRN_ERR_IO, "write onto a directory: %s", trn_status_name(st));
    check_error_message("write onto a directory", sub, NULL);
    CHECK_MSG(count_entries(dir, names, sizeof(names)) == 2, "after failed rename: %s", names);
    CHECK_MSG(count_entries(sub, names, sizeof(names)) == 0, "subdir holds: %s", names);
    trn_gguf_writer_free(w);

    /* reader I/O failures name the path */
    g = (trn_gguf *)1;
    clear_error();
    CHECK(trn_gguf_open(missing, &g) == TRN_ERR_IO && g == NULL);
    check_error_message("open missing", missing, NULL);
    clear_error();
    CHECK(trn_gguf_open(sub, &g) == TRN_ERR_INVALID && g == NULL); /* a directory: refused before it is read */
    check_error_message("open directory", sub, "directory");
    clear_error();
    CHECK(trn_gguf_open("/dev/zero", &g) == TRN_ERR_INVALID && g == NULL); /* a device */
    check_error_message("open device", "/dev/zero", "not a regular file");

    /* an empty file and a truncated file on disk: TRN_ERR_FORMAT naming the path */
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f)
        fclose(f);
    clear_error();
    CHECK(trn_gguf_open(path, &g) == TRN_ERR_FORMAT && g == NULL);
    check_error_message("open empty file", path, NULL);
    f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f && image) {
        CHECK(fwrite(image, 1, 200, f) == 200);
        fclose(f);
        clear_error();
        CHECK(trn_gguf_open(path, &g) == TRN_ERR_FORMAT && g == NULL);
        check_error_message("open truncated file", path, NULL);
    } else if (f) {
        fclose(f);
    }
    trn_free(image);
    empty_dir(sub);
    empty_dir(dir);
    CHECK(rmdir(dir) == 0);
}

/* ---- 3. truncation ------------------------------------------------------------------------------- */

/* A small image with metadata and three tensors, the last one followed by padding. */
static uint8_t *small_image(size_t *size_out, size_t *data_end) {
    trn_gguf_writer *w = trn_gguf_writer_new();
    trn_gguf_set_string(w, "general.architecture", "llama");
    trn_gguf_set_u32(w, "llama.block_count", 2);
    trn_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    trn_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", 1);
    const char *tokens[24];
    float scores[24];
    static const char *const words[] = {"<unk>", "<s>", "</s>", "\xe2\x96\x81the", "a", ""};
    for (int i = 0; i < 24; i++) {
        tokens[i] = words[i % 6];
        scores[i] = -(float)i;
    }
    trn_gguf_set_string_array(w, "tokenizer.ggml.tokens", tokens, 24);
    trn_gguf_set_array(w, "tokenizer.ggml.scores", TRN_GGUF_F32, scores, 24);
    uint8_t a[2048], b[132], c[170];
    fill_pattern(a, sizeof(a), 1);
    fill_pattern(b, sizeof(b), 2);
    fill_pattern(c, sizeof(c), 3);
    const int64_t ne_a[2] = {64, 8}, ne_b[2] = {256, 2}, ne_c[2] = {32, 5};
    CHECK(trn_gguf_add_tensor(w, "trunc.a", TRN_TYPE_F32, 2, ne_a, a) == TRN_OK);
    CHECK(trn_gguf_add_tensor(w, "trunc.b", TRN_TYPE_TQ2_0, 2, ne_b, b) == TRN_OK);
    CHECK(trn_gguf_add_tensor(w, "trunc.c", TRN_TYPE_Q8_0, 2, ne_c, c) == TRN_OK); /* 170 bytes: 22 of padding */
    void *image = NULL;
    CHECK(trn_gguf_write_memory(w, &image, size_out) == TRN_OK);
    trn_gguf_writer_free(w);
    if (!image)
        exit(1);
    trn_gguf *g = NULL;
    *data_end = 0;
    if (trn_gguf_open_memory(image, *size_out, 0, "small", &g) == TRN_OK) {
        const trn_gguf_tensor *t = trn_gguf_find_tensor(g, "trunc.c");
        if (t)
            *data_end = trn_gguf_data_offset(g) + (size_t)t->offset + t->bytes;
        trn_gguf_close(g);
    }
    CHECK_MSG(*data_end > 0 && *data_end < *size_out, "small image: data ends at %zu of %zu", *data_end, *size_out);
    return image;
}

static void test_truncation(void) {
    size_t size = 0, data_end = 0;
    uint8_t *image = small_image(&size, &data_end);
    int opened = 0, bad = 0;
    char label[64];
    for (size_t len = 0; len < size; len++) {
        uint8_t *copy = dup_bytes(image, len); /* exactly len bytes: an over-read is caught */
        snprintf(label, sizeof(label), "prefix-%zu.gguf", len);
        trn_gguf *g = NULL;
        clear_error();
        trn_status st = trn_gguf_open_memory(copy, len, 0, label, &g);
        if (len >= data_end) { /* only the trailing padding is gone */
            if (st == TRN_OK) {
                opened++;
                if (trn_gguf_n_tensors(g) != 3 || trn_gguf_n_kv(g) != 6)
                    bad++;
                trn_gguf_close(g);
            } else {
                CHECK_MSG(0, "%s: %s", label, trn_last_error());
            }
        } else if (st != TRN_ERR_FORMAT || g != NULL) {
            bad++;
            CHECK_MSG(0, "%s: status %s (%s)", label, trn_status_name(st), trn_last_error());
            trn_gguf_close(g);
        } else {
            const char *msg = trn_last_error();
            if (!strstr(msg, label) || strchr(msg, '\n')) {
                bad++;
                CHECK_MSG(0, "%s: message '%s'", label, msg);
            }
        }
        free(copy);
    }
    CHECK_MSG(bad == 0, "%d bad truncations", bad);
    CHECK_MSG((size_t)opened == size - data_end, "%d prefixes opened, expected %zu", opened, size - data_end);
    trn_free(image);
}

/* ---- 4. corruptions ------------------------------------------------------------------------------ */

/* The base image for patching: equal-length keys test.count/test.label and tensor names tensor.a/b/c. */
static uint8_t *base_image(size_t *size) {
    trn_gguf_writer *w = trn_gguf_writer_new();
    trn_gguf_set_string(w, "general.architecture", "llama");
    trn_gguf_set_u32(w, "general.alignment", 32);
    trn_gguf_set_u32(w, "test.count", 7);
    trn_gguf_set_string(w, "test.label", "base");
    static const char *const toks[] = {"a", "bb", "ccc"};
    trn_gguf_set_string_array(w, "test.tokens", toks, 3);
    static const float scores[] = {1, 2, 3};
    trn_gguf_set_array(w, "test.scores", TRN_GGUF_F32, scores, 3);
    uint8_t a[128], b[132], c[68];
    fill_pattern(a, sizeof(a), 4);
    fill_pattern(b, sizeof(b), 5);
    fill_pattern(c, sizeof(c), 6);
    const int64_t ne_a[2] = {8, 4}, ne_b[2] = {256, 2}, ne_c[1] = {64};
    CHECK(trn_gguf_add_tensor(w, "tensor.a", TRN_TYPE_F32, 2, ne_a, a) == TRN_OK);   /* 128 B at 0 */
    CHECK(trn_gguf_add_tensor(w, "tensor.b", TRN_TYPE_TQ2_0, 2, ne_b, b) == TRN_OK); /* 132 B at 128 */
    CHECK(trn_gguf_add_tensor(w, "tensor.c", TRN_TYPE_Q8_0, 1, ne_c, c) == TRN_OK);  /* 68 B at 288 */
    void *image = NULL;
    CHECK(trn_gguf_write_memory(w, &image, size) == TRN_OK);
    trn_gguf_writer_free(w);
    if (!image)
        exit(1);
    return image;
}

typedef enum { PATCH_U32, PATCH_U64, PATCH_BYTES } patch_kind;

/* Patches one field of a copy of `img` and expects the open to fail with `want` and `detail`. */
static void corrupt(const uint8_t *img, size_t size, const char *label, size_t pos, patch_kind kind, uint64_t value,
                    const char *bytes, trn_status want, const char *detail) {
    uint8_t *copy = dup_bytes(img, size);
    if (kind == PATCH_U32)
        put_u32(copy, pos, (uint32_t)value);
    else if (kind == PATCH_U64)
        put_u64(copy, pos, value);
    else
        memcpy(copy + pos, bytes, strlen(bytes));
    expect_open_failure(copy, size, label, want, detail);
    free(copy);
}


static uint64_t get_u64(const uint8_t *img, size_t pos) {
    uint64_t v;
    memcpy(&v, img + pos, 8);
    return v;
}

static void test_corruptions(void) {
    size_t size = 0;
    uint8_t *img = base_image(&size);

    /* the unpatched image opens, and the fields are where the patches below expect them */
    trn_status st;
    trn_gguf *g = NULL;
    uint8_t *copy = dup_bytes(img, size);
    CHECK(trn_gguf_open_memory(copy, size, 0, "base.gguf", &g) == TRN_OK);
    const uint8_t *tensor_b_v3 = NULL;
    if (g) {
        CHECK(trn_gguf_n_tensors(g) == 3 && trn_gguf_n_kv(g) == 6 && trn_gguf_alignment(g) == 32);
        const trn_gguf_tensor *t = trn_gguf_find_tensor(g, "tensor.b");
        tensor_b_v3 = t ? t->data : NULL;
    }
    const tensor_fields ta = locate_tensor(img, size, "tensor.a");
    const tensor_fields tb = locate_tensor(img, size, "tensor.b");
    const tensor_fields tc = locate_tensor(img, size, "tensor.c");
    CHECK(get_u32(img, ta.n_dims) == 2 && get_u64(img, ta.ne + 8) == 4);
    CHECK(get_u32(img, tb.type) == TRN_TYPE_TQ2_0 && get_u64(img, tb.ne) == 256);
    CHECK(get_u64(img, tc.offset) == 288);
    const size_t kv_count = kv_type_pos(img, size, "test.count");   /* u32 type, then u32 value */
    const size_t kv_label = kv_type_pos(img, size, "test.label");   /* u32 type, then u64 length + bytes */
    const size_t kv_tokens = kv_type_pos(img, size, "test.tokens"); /* ARRAY, u32 elem type, u64 n, strings */
    const size_t kv_scores = kv_type_pos(img, size, "test.scores"); /* ARRAY, u32 elem type, u64 n, floats */
    const size_t kv_align = kv_type_pos(img, size, "general.alignment");
    CHECK(get_u32(img, kv_count) == TRN_GGUF_U32 && get_u32(img, kv_align + 4) == 32);
    CHECK(get_u32(img, kv_tokens + 4) == TRN_GGUF_STRING && get_u64(img, kv_tokens + 8) == 3);
    CHECK(get_u32(img, kv_scores + 4) == TRN_GGUF_F32 && get_u64(img, kv_scores + 8) == 3);

    /* version 2 has the same layout: it opens and reports 2 */
    put_u32(copy, 4, 2);
    trn_gguf *g2 = NULL;
    CHECK(trn_gguf_open_memory(copy, size, 0, "v2.gguf", &g2) == TRN_OK);
    if (g2) {
        const trn_gguf_tensor *t = trn_gguf_find_tensor(g2, "tensor.b");
        CHECK(trn_gguf_version(g2) == 2 && trn_gguf_n_tensors(g2) == 3 && trn_gguf_n_kv(g2) == 6);
        CHECK(t && tensor_b_v3 && t->bytes == 132 && memcmp(t->data, tensor_b_v3, 132) == 0);
        trn_gguf_close(g2);
    }
    trn_gguf_close(g);
    free(copy);

    const uint64_t huge = (uint64_t)1 << 62;
    /* header */
    corrupt(img, size, "bad-magic.gguf", 0, PATCH_BYTES, 0, "GGUX", TRN_ERR_FORMAT, "magic");
    corrupt(img, size, "v1.gguf", 4, PATCH_U32, 1, NULL, TRN_ERR_UNSUPPORTED, "version 1");
    corrupt(img, size, "v4.gguf", 4, PATCH_U32, 4, NULL, TRN_ERR_UNSUPPORTED, "version 4");
    corrupt(img, size, "v-big.gguf", 4, PATCH_U32, 0x03000000, NULL, TRN_ERR_UNSUPPORTED, "version");
    corrupt(img, size, "tensor-count.gguf", 8, PATCH_U64, (uint64_t)1 << 40, NULL, TRN_ERR_FORMAT, NULL);
    corrupt(img, size, "kv-count.gguf", 16, PATCH_U64, (uint64_t)1 << 40, NULL, TRN_ERR_FORMAT, NULL);
    corrupt(img, size, "tensor-count-max.gguf", 8, PATCH_U64, UINT64_MAX, NULL, TRN_ERR_FORMAT, NULL);
    corrupt(img, size, "kv-count-max.gguf", 16, PATCH_U64, UINT64_MAX, NULL, TRN_ERR_FORMAT, NULL);

    /* metadata */
    corrupt(img, size, "vtype13.gguf", kv_count, PATCH_U32, 13, NULL, TRN_ERR_FORMAT, "test.count");
    corrupt(img, size, "vtype-max.gguf", kv_count, PATCH_U32, UINT32_MAX, NULL, TRN_ERR_FORMAT, "test.count");
    /* Nested arrays are legal GGUF that Trinity does not read: FORMAT (today) or UNSUPPORTED both fit. */
    copy = dup_bytes(img, size);
    put_u32(copy, kv_scores + 4, TRN_GGUF_ARRAY);
    g = (trn_gguf *)1;
    clear_error();
    st = trn_gguf_open_memory(copy, size, 0, "nested-array.gguf", &g);
    CHECK_MSG((st == TRN_ERR_FORMAT || st == TRN_ERR_UNSUPPORTED) && g == NULL, "nested array: %s",
              trn_status_name(st));
    check_error_message("nested array", "nested-array.gguf", "test.scores");
    free(copy);
    corrupt(img, size, "elem13.gguf", kv_scores + 4, PATCH_U32, 13, NULL, TRN_ERR_FORMAT, "test.scores");
    corrupt(img, size, "array-len.gguf", kv_scores + 8, PATCH_U64, huge, NULL, TRN_ERR_FORMAT, "test.scores");
    corrupt(img, size, "array-len-max.gguf", kv_scores + 8, PATCH_U64, UINT64_MAX, NULL, TRN_ERR_FORMAT,
            "test.scores");
    corrupt(img, size, "strarray-len.gguf", kv_tokens + 8, PATCH_U64, huge, NULL, TRN_ERR_FORMAT, "test.tokens");
    corrupt(img, size, "strarray-len-max.gguf", kv_tokens + 8, PATCH_U64, UINT64_MAX, NULL, TRN_ERR_FORMAT,
            "test.tokens");
    corrupt(img, size, "strarray-elem.gguf", kv_tokens + 16, PATCH_U64, huge, NULL, TRN_ERR_FORMAT, "test.tokens");
    corrupt(img, size, "string-len.gguf", kv_label + 4, PATCH_U64, huge, NULL, TRN_ERR_FORMAT, "test.label");
    corrupt(img, size, "string-len-max.gguf", kv_label + 4, PATCH_U64, UINT64_MAX, NULL, TRN_ERR_FORMAT, "test.label");
    corrupt(img, size, "key-len.gguf", find_gguf_string(img, size, "test.label"), PATCH_U64, huge, NULL,
            TRN_ERR_FORMAT, NULL);
    corrupt(img, size, "dup-key.gguf", find_gguf_string(img, size, "test.label") + 8, PATCH_BYTES, 0, "test.count",
            TRN_ERR_FORMAT, "test.count");
    corrupt(img, size, "align3.gguf", kv_align + 4, PATCH_U32, 3, NULL, TRN_ERR_FORMAT, "general.alignment");
    corrupt(img, size, "align0.gguf", kv_align + 4, PATCH_U32, 0, NULL, TRN_ERR_FORMAT, "general.alignment");

    /* tensor directory */
    corrupt(img, size, "name-len.gguf", ta.name, PATCH_U64, huge, NULL, TRN_ERR_FORMAT, NULL);
    corrupt(img, size, "type99.gguf", tb.type, PATCH_U32, 99, NULL, TRN_ERR_UNSUPPORTED, "tensor.b");
    corrupt(img, size, "ndims0.gguf", ta.n_dims, PATCH_U32, 0, NULL, TRN_ERR_FORMAT, "tensor.a");
    corrupt(img, size, "ndims5.gguf", ta.n_dims, PATCH_U32, 5, NULL, TRN_ERR_FORMAT, "tensor.a");
    corrupt(img, size, "dim0.gguf", ta.ne + 8, PATCH_U64, 0, NULL, TRN_ERR_FORMAT, "tensor.a");
    corrupt(img, size, "ne0-zero.gguf", ta.ne, PATCH_U64, 0, NULL, TRN_ERR_FORMAT, "tensor.a");
    corrupt(img, size, "dim-huge.gguf", ta.ne + 8, PATCH_U64, huge, NULL, TRN_ERR_FORMAT, "tensor.a");
    corrupt(img, size, "row100.gguf", tb.ne, PATCH_U64, 100, NULL, TRN_ERR_FORMAT, "tensor.b");
    corrupt(img, size, "misaligned.gguf", tc.offset, PATCH_U64, 289, NULL, TRN_ERR_FORMAT, "tensor.c");
    corrupt(img, size, "past-end.gguf", tc.offset, PATCH_U64, 384, NULL, TRN_ERR_FORMAT, "tensor.c");
    corrupt(img, size, "overhang.gguf", tc.offset, PATCH_U64, 320, NULL, TRN_ERR_FORMAT, "tensor.c"); /* 4 bytes over */
    corrupt(img, size, "offset-huge.gguf", tc.offset, PATCH_U64, (uint64_t)1 << 63, NULL, TRN_ERR_FORMAT, "tensor.c");
    corrupt(img, size, "offset-wrap.gguf", tc.offset, PATCH_U64, UINT64_MAX & ~(uint64_t)31, NULL, TRN_ERR_FORMAT,
            "tensor.c");
    corrupt(img, size, "dup-tensor.gguf", tc.name + 8, PATCH_BYTES, 0, "tensor.a", TRN_ERR_FORMAT, "tensor.a");

    /* 2^32 x 2^32 elements: each dimension alone is plausible, the product is not */
    copy = dup_bytes(img, size);
    put_u64(copy, ta.ne, (uint64_t)1 << 32);
    put_u64(copy, ta.ne + 8, (uint64_t)1 << 32);
    expect_open_failure(copy, size, "shape-overflow.gguf", TRN_ERR_FORMAT, "tensor.a");
    free(copy);

    /* Names come from the file: one with a newline (or other control characters) must not break the
     * one-line message. FAILS with gguf.c as of this writing: names are printed verbatim. */
    copy = dup_bytes(img, size);
    memcpy(copy + find_gguf_string(img, size, "test.count") + 8, "test\ncount", 10);
    put_u32(copy, kv_count, 13);
    expect_open_failure(copy, size, "newline-key.gguf", TRN_ERR_FORMAT, NULL);
    free(copy);

    /* With take_ownership, a failed open releases the buffer too (valgrind reports a leak otherwise). */
    uint8_t *owned = trn_alloc(size);
    if (owned) {
        memcpy(owned, img, size);
        owned[0] = 'X';
        g = (trn_gguf *)1;
        CHECK(trn_gguf_open_memory(owned, size, 1, "owned-bad.gguf", &g) == TRN_ERR_FORMAT && g == NULL);
    }
    trn_free(img);

    /* general.alignment must be an integer */
    trn_gguf_writer *w = trn_gguf_writer_new();
    trn_gguf_set_string(w, "general.alignment", "32");
    void *image = NULL;
    CHECK(trn_gguf_write_memory(w, &image, &size) == TRN_OK);
    if (image)
        expect_open_failure(image, size, "align-string.gguf", TRN_ERR_FORMAT, "general.alignment");
    trn_free(image);
    trn_gguf_writer_free(w);
}

/* ---- 6. writer refusals -------------------------------------------------------------------------- */

static void expect_add_failure(trn_gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne,
                               trn_status want, const char *detail) {
    clear_error();
    trn_status st = trn_gguf_add_tensor(w, name, (trn_type)type, n_dims, ne, NULL);
    CHECK_MSG(st == want, "add_tensor(%s): %s, expected %s", name, trn_status_name(st), trn_status_name(want));
    check_error_message(name, name, detail);
}

static void test_writer_refusals(void) {
    trn_gguf_writer *w = trn_gguf_writer_new();
    const int64_t ok_shape[2] = {256, 2};
    const int64_t row100[2] = {100, 2}, row48[1] = {48}, row128[2] = {128, 2};
    const int64_t dim0[2] = {32, 0}, negative[1] = {-32};
    expect_add_failure(w, "bad.type99", 99, 2, ok_shape, TRN_ERR_UNSUPPORTED, "99");
    expect_add_failure(w, "bad.type2", 2, 2, ok_shape, TRN_ERR_UNSUPPORTED, NULL); /* Q4_1: not a Trinity type */
    expect_add_failure(w, "bad.tq2_row", TRN_TYPE_TQ2_0, 2, row100, TRN_ERR_INVALID, "100");
    expect_add_failure(w, "bad.q8_row", TRN_TYPE_Q8_0, 1, row48, TRN_ERR_INVALID, "48");
    expect_add_failure(w, "bad.q4k_row", TRN_TYPE_Q4_K, 2, row128, TRN_ERR_INVALID, "128");
    expect_add_failure(w, "bad.ndims0", TRN_TYPE_F32, 0, ok_shape, TRN_ERR_INVALID, NULL);
    expect_add_failure(w, "bad.ndims5", TRN_TYPE_F32, 5, ok_shape, TRN_ERR_INVALID, NULL);
    expect_add_failure(w, "bad.dim0", TRN_TYPE_F32, 2, dim0, TRN_ERR_INVALID, NULL);
    expect_add_failure(w, "bad.negative", TRN_TYPE_F32, 1, negative, TRN_ERR_INVALID, NULL);
    /* the refusals leave the writer usable and add nothing */
    CHECK(trn_gguf_add_tensor(w, "good", TRN_TYPE_TQ1_0, 2, ok_shape, NULL) == TRN_OK);
    void *image = NULL;
    size_t size = 0;
    CHECK(trn_gguf_write_memory(w, &image, &size) == TRN_OK);
    trn_gguf *g = NULL;
    if (image && trn_gguf_open_memory(image, size, 0, "refusals.gguf", &g) == TRN_OK) {
        const trn_gguf_tensor *t = trn_gguf_tensor_at(g, 0);
        CHECK(trn_gguf_n_tensors(g) == 1 && t && strcmp(t->name, "good") == 0 && t->bytes == 108);
        trn_gguf_close(g);
    } else {
        CHECK_MSG(0, "refusals.gguf: %s", trn_last_error());
    }
    trn_free(image);
    trn_gguf_writer_free(w);
}

/* A caller-set general.alignment must not yield a file whose layout disagrees with the key: the writer
 * either refuses it (write fails, naming the key) or lays the data out with that alignment. */
static void test_writer_alignment_key(void) {
    trn_gguf_writer *w = trn_gguf_writer_new();
    trn_gguf_set_u32(w, "general.alignment", 64);
    uint8_t x[16], y[16];
    fill_pattern(x, sizeof(x), 7);
    fill_pattern(y, sizeof(y), 8);
    const int64_t ne[1] = {4};
    CHECK(trn_gguf_add_tensor(w, "x", TRN_TYPE_F32, 1, ne, x) == TRN_OK);
    CHECK(trn_gguf_add_tensor(w, "y", TRN_TYPE_F32, 1, ne, y) == TRN_OK);
    void *image = NULL;
    size_t size = 0;
    clear_error();
    trn_status st = trn_gguf_write_memory(w, &image, &size);
    if (st != TRN_OK) {
        check_error_message("write with general.alignment 64", NULL, "general.alignment");
    } else {
        trn_gguf *g = NULL;
        st = trn_gguf_open_memory(image, size, 0, "align64.gguf", &g);
        CHECK_MSG(st == TRN_OK, "writer output with general.alignment = 64 does not open: %s", trn_last_error());
        if (st == TRN_OK) {
            const trn_gguf_tensor *tx = trn_gguf_find_tensor(g, "x"), *ty = trn_gguf_find_tensor(g, "y");
            CHECK(trn_gguf_alignment(g) == 64 && trn_gguf_data_offset(g) % 64 == 0);
            CHECK_MSG(tx && ty && memcmp(tx->data, x, 16) == 0 && memcmp(ty->data, y, 16) == 0,
                      "writer output with general.alignment = 64: tensor data misplaced");
            trn_gguf_close(g);
        }
        trn_free(image);
    }
    trn_gguf_writer_free(w);
}

/* ---- 5. real files ------------------------------------------------------------------------------- */

static void check_u32_key(const trn_gguf *g, const char *key, int64_t value) {
    const trn_gguf_kv *kv = trn_gguf_find_kv(g, key);
    int64_t v = -1;
    CHECK_MSG(kv && kv->type == TRN_GGUF_U32, "%s: missing or not u32", key);
    CHECK_MSG(trn_gguf_get_int(g, key, &v, TRN_ERR_FORMAT) == TRN_OK && v == value, "%s = %lld, expected %lld", key,
              (long long)v, (long long)value);
}

static void check_string_key(const trn_gguf *g, const char *key, const char *value) {
    trn_gguf_str s = {NULL, 0};
    CHECK_MSG(trn_gguf_get_string(g, key, &s, TRN_ERR_FORMAT) == TRN_OK && str_eq(s, value), "%s: %s", key,
              trn_last_error());
}

static int token_is(const trn_gguf_kv *tokens, uint64_t id, const char *text) {
    return tokens && id < tokens->n_elems && str_eq(tokens->strings[id], text);
}

/* Every tensor of stories260K.gguf equals the float32 array it came from in stories260K.bin. */
static void check_stories_data(const trn_gguf *g) {
    const char *bin_path = test_data_path("stories260K/stories260K.bin");
    if (!bin_path) {
        printf("test_gguf: stories260K.bin absent, skipping the tensor data comparison\n");
        return;
    }
    size_t len = 0;
    char *bin = test_read_file(bin_path, &len);
    CHECK(bin && len == 1056540);
    if (!bin || len != 1056540) {
        free(bin);
        return;
    }
    const float *w = (const float *)(bin + 28); /* after the 7 x int32 header */
    const size_t dim = 64, hidden = 172, n_layers = 5, kv_dim = 32, vocab = 512;
    /* start (in floats) of each checkpoint array, in file order */
    const size_t emb = 0, rms_att = emb + vocab * dim, wq = rms_att + n_layers * dim, wk = wq + n_layers * dim * dim;
    const size_t wv = wk + n_layers * kv_dim * dim, wo = wv + n_layers * kv_dim * dim, rms_ffn = wo + n_layers * dim * dim;
    const size_t w1 = rms_ffn + n_layers * dim, w2 = w1 + n_layers * hidden * dim, w3 = w2 + n_layers * dim * hidden;
    const size_t rms_final = w3 + n_layers * hidden * dim;
    CHECK(rms_final + dim == 260032);
    struct {
        const char *name;
        size_t start, per_layer; /* per_layer == 0: not a per-block tensor */
    } map[] = {
        {"token_embd.weight", emb, 0},          {"output.weight", emb, 0}, /* tied to the embedding */
        {"output_norm.weight", rms_final, 0},   {"attn_norm.weight", rms_att, dim},
        {"attn_q.weight", wq, dim * dim},       {"attn_k.weight", wk, kv_dim * dim},
        {"attn_v.weight", wv, kv_dim * dim},    {"attn_output.weight", wo, dim * dim},
        {"ffn_norm.weight", rms_ffn, dim},      {"ffn_gate.weight", w1, hidden * dim},
        {"ffn_down.weight", w2, dim * hidden},  {"ffn_up.weight", w3, hidden * dim},
    };
    int compared = 0;
    for (size_t m = 0; m < TRN_ARRAY_LEN(map); m++) {
        for (size_t layer = 0; layer < (map[m].per_layer ? n_layers : 1); layer++) {
            char name[64];
            if (map[m].per_layer)
                snprintf(name, sizeof(name), "blk.%zu.%s", layer, map[m].name);
            else
                snprintf(name, sizeof(name), "%s", map[m].name);
            const trn_gguf_tensor *t = trn_gguf_find_tensor(g, name);
            const float *src = w + map[m].start + layer * map[m].per_layer;
            CHECK_MSG(t && memcmp(t->data, src, t->bytes) == 0, "%s: data differs from stories260K.bin", name);
            compared++;
        }
    }
    CHECK(compared == 48);
    free(bin);
}

/* Opens one of the third-party files under ../shared/testdata; NULL (after saying why) when it is absent or fails. */
static trn_gguf *open_test_file(const char *relative) {
    const char *path = test_data_path(relative);
    if (!path) {
        printf("test_gguf: %s absent, skipping its checks\n", relative);
        return NULL;
    }
    trn_gguf *g = NULL;
    trn_status st = trn_gguf_open(path, &g);
    CHECK_MSG(st == TRN_OK, "%s", trn_last_error());
    return st == TRN_OK ? g : NULL;
}

static void test_stories(void) {
    trn_gguf *g = open_test_file("stories260K/stories260K.gguf");
    if (!g)
        return;
    CHECK(trn_gguf_version(g) == 3);
    CHECK(trn_gguf_alignment(g) == 32);
    CHECK_MSG(trn_gguf_data_offset(g) == 14176, "data offset %zu", trn_gguf_data_offset(g));
    CHECK(trn_gguf_file_size(g) == 1185376);
    CHECK_MSG(trn_gguf_n_kv(g) == 19, "%lld keys", (long long)trn_gguf_n_kv(g));
    CHECK_MSG(trn_gguf_n_tensors(g) == 48, "%lld tensors", (long long)trn_gguf_n_tensors(g));

    check_string_key(g, "general.architecture", "llama");
    check_string_key(g, "general.name", "llama");
    check_string_key(g, "tokenizer.ggml.model", "llama");
    static const struct {
        const char *key;
        int64_t value;
    } u32s[] = {
        {"tokenizer.ggml.unknown_token_id", 0}, {"tokenizer.ggml.bos_token_id", 1},
        {"tokenizer.ggml.eos_token_id", 2},     {"tokenizer.ggml.seperator_token_id", 4294967295ll},
        {"tokenizer.ggml.padding_token_id", 4294967295ll},
        {"llama.context_length", 128},          {"llama.embedding_length", 64},
        {"llama.feed_forward_length", 172},     {"llama.attention.head_count", 8},
        {"llama.attention.head_count_kv", 4},   {"llama.block_count", 5},
        {"llama.rope.dimension_count", 8},
    };
    for (size_t i = 0; i < TRN_ARRAY_LEN(u32s); i++)
        check_u32_key(g, u32s[i].key, u32s[i].value);
    const trn_gguf_kv *eps = trn_gguf_find_kv(g, "llama.attention.layer_norm_rms_epsilon");
    double f = 0;
    CHECK(eps && eps->type == TRN_GGUF_F32);
    CHECK(trn_gguf_get_float(g, "llama.attention.layer_norm_rms_epsilon", &f, TRN_ERR_FORMAT) == TRN_OK &&
          f == (double)1e-5f);
    /* absent keys: the caller's default survives */
    f = 10000.0;
    CHECK(trn_gguf_find_kv(g, "llama.rope.freq_base") == NULL);
    CHECK(trn_gguf_get_float(g, "llama.rope.freq_base", &f, TRN_OK) == TRN_OK && f == 10000.0);
    CHECK(!trn_gguf_find_kv(g, "general.file_type") && !trn_gguf_find_kv(g, "tokenizer.ggml.pre") &&
          !trn_gguf_find_kv(g, "tokenizer.ggml.add_bos_token"));

    const trn_gguf_kv *tokens = trn_gguf_get_array(g, "tokenizer.ggml.tokens", TRN_GGUF_STRING);
    const trn_gguf_kv *scores = trn_gguf_get_array(g, "tokenizer.ggml.scores", TRN_GGUF_F32);
    const trn_gguf_kv *types = trn_gguf_get_array(g, "tokenizer.ggml.token_type", TRN_GGUF_I32);
    CHECK(tokens && tokens->n_elems == 512 && scores && scores->n_elems == 512 && types && types->n_elems == 512);
    if (tokens && scores && types && tokens->n_elems == 512 && scores->n_elems == 512 && types->n_elems == 512) {
        CHECK(token_is(tokens, 0, "<unk>") && token_is(tokens, 1, "<s>") && token_is(tokens, 2, "</s>"));
        CHECK(token_is(tokens, 3, "<0x00>") && token_is(tokens, 258, "<0xFF>"));
        CHECK(trn_gguf_array_int(types, 0) == 2 && trn_gguf_array_int(types, 1) == 3 &&
              trn_gguf_array_int(types, 2) == 3 && trn_gguf_array_int(types, 3) == 6 &&
              trn_gguf_array_int(types, 258) == 6 && trn_gguf_array_int(types, 259) == 1 &&
              trn_gguf_array_int(types, 511) == 1);
        CHECK(trn_gguf_array_float(scores, 0) == 0.0 && trn_gguf_array_float(scores, 258) == 0.0 &&
              trn_gguf_array_float(scores, 300) == -41.0 && trn_gguf_array_float(scores, 511) == -252.0);
        /* spaces are written as U+2581, never as ASCII spaces */
        int with_marker = 0, with_space = 0;
        for (uint64_t i = 259; i < 512; i++) {
            trn_gguf_str s = tokens->strings[i];
            for (uint64_t j = 0; j < s.len; j++) {
                with_space += s.ptr[j] == ' ';
                with_marker += j + 2 < s.len && memcmp(s.ptr + j, "\xe2\x96\x81", 3) == 0;
            }
        }
        CHECK_MSG(with_marker > 0 && with_space == 0, "%d tokens with U+2581, %d with spaces", with_marker, with_space);
    }

    /* shapes: all F32, ggml ne0 first */
    int64_t n_params = 0;
    for (int64_t i = 0; i < trn_gguf_n_tensors(g); i++) {
        const trn_gguf_tensor *t = trn_gguf_tensor_at(g, i);
        CHECK_MSG(t->type == TRN_TYPE_F32 && t->bytes == (size_t)t->n_elems * 4, "%s: type %d", t->name, (int)t->type);
        CHECK_MSG(t->offset % 32 == 0, "%s: offset %llu", t->name, (unsigned long long)t->offset);
        n_params += t->n_elems;
    }
    CHECK(n_params == 260032 + 512 * 64); /* the checkpoint's 260,032 weights plus the untied output copy */
    static const struct {
        const char *name;
        int n_dims;
        int64_t ne0, ne1;
    } shapes[] = {
        {"token_embd.weight", 2, 64, 512}, {"output_norm.weight", 1, 64, 1}, {"output.weight", 2, 64, 512},
        {"attn_q.weight", 2, 64, 64},      {"attn_k.weight", 2, 64, 32},     {"attn_v.weight", 2, 64, 32},
        {"attn_output.weight", 2, 64, 64}, {"attn_norm.weight", 1, 64, 1},   {"ffn_gate.weight", 2, 64, 172},
        {"ffn_down.weight", 2, 172, 64},   {"ffn_up.weight", 2, 64, 172},    {"ffn_norm.weight", 1, 64, 1},
    };
    int found = 0;
    for (size_t i = 0; i < TRN_ARRAY_LEN(shapes); i++) {
        int per_block = i >= 3;
        for (int layer = 0; layer < (per_block ? 5 : 1); layer++) {
            char name[64];
            if (per_block)
                snprintf(name, sizeof(name), "blk.%d.%s", layer, shapes[i].name);
            else
                snprintf(name, sizeof(name), "%s", shapes[i].name);
            const trn_gguf_tensor *t = trn_gguf_find_tensor(g, name);
            CHECK_MSG(t && t->n_dims == shapes[i].n_dims && t->ne[0] == shapes[i].ne0 && t->ne[1] == shapes[i].ne1 &&
                          t->ne[2] == 1 && t->ne[3] == 1,
                      "%s: missing or wrong shape", name);
            found += t != NULL;
        }
    }
    CHECK(found == 48);
    check_stories_data(g);
    trn_gguf_close(g);
}

static void test_vocab(void) {
    trn_gguf *g = open_test_file("vocab/ggml-vocab-llama-spm.gguf");
    if (!g)
        return;
    CHECK(trn_gguf_version(g) == 3);
    CHECK(trn_gguf_file_size(g) == 723869);
    CHECK_MSG(trn_gguf_n_tensors(g) == 0, "%lld tensors", (long long)trn_gguf_n_tensors(g));
    CHECK_MSG(trn_gguf_n_kv(g) == 22, "%lld keys", (long long)trn_gguf_n_kv(g));
    check_string_key(g, "general.architecture", "llama");
    check_string_key(g, "general.name", "llama-spm");
    check_string_key(g, "tokenizer.ggml.model", "llama");
    check_string_key(g, "tokenizer.ggml.pre", "default");
    static const struct {
        const char *key;
        int64_t value;
    } ints[] = {
        {"llama.block_count", 32},          {"llama.context_length", 4096},       {"llama.embedding_length", 4096},
        {"llama.feed_forward_length", 11008}, {"llama.attention.head_count", 32}, {"llama.attention.head_count_kv", 32},
        {"llama.vocab_size", 32000},        {"llama.rope.dimension_count", 128},  {"general.file_type", 1},
        {"tokenizer.ggml.bos_token_id", 1}, {"tokenizer.ggml.eos_token_id", 2},  {"tokenizer.ggml.unknown_token_id", 0},
    };
    for (size_t i = 0; i < TRN_ARRAY_LEN(ints); i++) {
        int64_t v = -1;
        CHECK_MSG(trn_gguf_get_int(g, ints[i].key, &v, TRN_ERR_FORMAT) == TRN_OK && v == ints[i].value,
                  "%s = %lld (%s)", ints[i].key, (long long)v, trn_last_error());
    }
    double eps = 0;
    CHECK(trn_gguf_get_float(g, "llama.attention.layer_norm_rms_epsilon", &eps, TRN_ERR_FORMAT) == TRN_OK &&
          eps > 0.99e-5 && eps < 1.01e-5);
    const trn_gguf_kv *bos = trn_gguf_find_kv(g, "tokenizer.ggml.add_bos_token");
    int b = -1;
    CHECK(bos && bos->type == TRN_GGUF_BOOL);
    CHECK(trn_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, TRN_ERR_FORMAT) == TRN_OK && b == 1);
    CHECK(trn_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b, TRN_ERR_FORMAT) == TRN_OK && b == 0);
    int64_t iv = 0;
    clear_error();
    CHECK(trn_gguf_get_int(g, "tokenizer.ggml.add_bos_token", &iv, TRN_OK) == TRN_ERR_FORMAT); /* a bool is no int */
    check_error_message("get_int(add_bos_token)", trn_gguf_path(g), "tokenizer.ggml.add_bos_token");

    const trn_gguf_kv *tokens = trn_gguf_get_array(g, "tokenizer.ggml.tokens", TRN_GGUF_STRING);
    const trn_gguf_kv *scores = trn_gguf_get_array(g, "tokenizer.ggml.scores", TRN_GGUF_F32);
    const trn_gguf_kv *types = trn_gguf_get_array(g, "tokenizer.ggml.token_type", TRN_GGUF_I32);
    CHECK(tokens && tokens->n_elems == 32000);
    CHECK(scores && scores->n_elems == 32000);
    CHECK(types && types->n_elems == 32000);
    CHECK(token_is(tokens, 0, "<unk>") && token_is(tokens, 1, "<s>") && token_is(tokens, 2, "</s>"));
    CHECK(token_is(tokens, 15043, "\xe2\x96\x81Hello") && token_is(tokens, 3186, "\xe2\x96\x81world"));
    trn_gguf_close(g);
}

int main(void) {
    make_payloads();
    test_round_trip_memory();
    test_minimal_files();
    test_files();
    test_truncation();
    test_corruptions();
    test_writer_refusals();
    test_writer_alignment_key();
    test_stories();
    test_vocab();
    free_payloads();
    return test_finish("test_gguf");
}
