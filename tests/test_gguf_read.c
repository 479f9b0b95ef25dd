/* test_gguf_read.c: the GGUF reader (host/gguf.h), from a memory image and from a mapped file.
 *
 * 1. the typed getters over every value type of the full image (gguf_fixture.h): integer and float widening,
 *    what each getter refuses (naming the file and key), missing keys; array readings of every element type;
 *    tensor lookups and what the reader derives (element counts, byte sizes, data pointers);
 * 2. reader I/O failures: missing file, directory, device, empty and truncated files on disk;
 * 3. every truncated prefix of a small image;
 * 4. single-field corruptions of a valid image (status and one-line message naming the file);
 * 5. the real files under ../shared/testdata (skipped part by part when absent).
 *
 * Images under test are copied into malloc'd buffers of exactly their size, so a read past the end is
 * caught by valgrind or AddressSanitizer. Field patching assumes a little-endian host, like gguf.c. */
#define _POSIX_C_SOURCE 200809L
#include "gguf_fixture.h"
#include "host/gguf.h"
#include "test_util.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------------------------- */

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

/* ---- 1. the full image: getters ------------------------------------------------------------------- */

static void check_scalar_getters(const trn_gguf *g) {
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
    CHECK(trn_gguf_get_float(g, "s.f64", &f, TRN_ERR_FORMAT) == TRN_OK && f == FIXTURE_F64);
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
    CHECK(trn_gguf_get_string(g, "s.string", &s, TRN_ERR_FORMAT) == TRN_OK && str_eq(s, FIXTURE_STRING));
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

static void check_array_getters(const trn_gguf *g) {
    for (size_t i = 0; i < N_FIXTURE_ARRAYS; i++) {
        const fixture_array *a = &FIXTURE_ARRAYS[i];
        const trn_gguf_kv *kv = trn_gguf_get_array(g, a->key, a->type);
        CHECK_MSG(kv != NULL, "array %s: %s", a->key, trn_last_error());
        if (!kv)
            continue;
        CHECK(kv == trn_gguf_find_kv(g, a->key));
        CHECK_MSG(trn_gguf_vtype_size(a->type) == a->elem_size, "vtype_size(%s)", trn_gguf_vtype_name(a->type));
        for (uint64_t j = 0; j < 5 && j < kv->n_elems; j++) {
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
    /* a scalar string reads as one string */
    const trn_gguf_kv *str = trn_gguf_find_kv(g, "s.string");
    CHECK(str && str->type == TRN_GGUF_STRING && str->strings && str_eq(str->strings[0], FIXTURE_STRING));

    clear_error();
    CHECK(trn_gguf_get_array(g, "no.such.array", TRN_GGUF_U32) == NULL);
    check_error_message("get_array(missing)", trn_gguf_path(g), "no.such.array");
    clear_error();
    CHECK(trn_gguf_get_array(g, "s.u32", TRN_GGUF_U32) == NULL); /* a scalar is not an array */
    check_error_message("get_array(scalar)", trn_gguf_path(g), "s.u32");
}

/* Lookups and what the reader derives for each tensor. `image` is the image itself when known (memory-backed),
 * else NULL. */
static void check_tensor_lookups(const trn_gguf *g, const uint8_t *image) {
    const size_t data_offset = trn_gguf_data_offset(g);
    const uint8_t *base = NULL; /* start of the image, as seen through the first tensor */
    for (int64_t i = 0; i < N_FIXTURE_TENSORS && i < trn_gguf_n_tensors(g); i++) {
        const fixture_tensor *c = &FIXTURE_TENSORS[i];
        const trn_gguf_tensor *t = trn_gguf_tensor_at(g, i);
        CHECK(t != NULL && t == trn_gguf_find_tensor(g, c->name)); /* by index and by name */
        if (!t)
            continue;
        int64_t n = 1;
        for (int d = 0; d < c->n_dims; d++)
            n *= c->ne[d];
        CHECK_MSG(t->n_elems == n, "%s: n_elems %lld", c->name, (long long)t->n_elems);
        CHECK_MSG(t->bytes == c->bytes, "%s: %zu bytes, expected %zu", c->name, t->bytes, c->bytes);
        CHECK_MSG(t->bytes == trn_row_bytes(c->type, c->ne[0]) * (size_t)(n / c->ne[0]), "%s: row bytes", c->name);
        const uint8_t *data = t->data;
        if (!base)
            base = data - data_offset - t->offset;
        CHECK_MSG(data == base + data_offset + t->offset, "%s: data pointer inconsistent", c->name);
        if (image)
            CHECK_MSG(data == image + data_offset + t->offset, "%s: data does not point into the image", c->name);
    }
    CHECK(trn_gguf_find_tensor(g, "no.such.tensor") == NULL);
    CHECK(trn_gguf_tensor_at(g, -1) == NULL && trn_gguf_tensor_at(g, N_FIXTURE_TENSORS) == NULL);
}

static void check_reading(const trn_gguf *g, const char *label, const uint8_t *image) {
    CHECK_MSG(strcmp(trn_gguf_path(g), label) == 0, "path '%s'", trn_gguf_path(g));
    CHECK(trn_gguf_kv_at(g, -1) == NULL && trn_gguf_kv_at(g, trn_gguf_n_kv(g)) == NULL);
    CHECK(trn_gguf_find_kv(g, "no.such.key") == NULL);
    check_scalar_getters(g);
    check_array_getters(g);
    check_tensor_lookups(g, image);
}

static void test_read_memory(void) {
    trn_gguf_writer *w = fixture_full_writer();
    void *image = NULL;
    size_t size = 0;
    CHECK(trn_gguf_write_memory(w, &image, &size) == TRN_OK && image && size > 0);
    trn_gguf_writer_free(w);
    if (!image)
        return;
    /* with ownership: trn_gguf_close releases the image (valgrind checks) */
    trn_gguf *g = NULL;
    trn_status st = trn_gguf_open_memory(image, size, 1, "round-trip.gguf", &g);
    CHECK_MSG(st == TRN_OK, "open: %s", trn_last_error());
    if (st == TRN_OK) {
        CHECK(trn_gguf_file_size(g) == size);
        check_reading(g, "round-trip.gguf", image);
        trn_gguf_close(g);
    }
    trn_gguf_close(NULL);
}

/* ---- 2. files ------------------------------------------------------------------------------------ */

static void test_read_files(void) {
    char dir[] = "/tmp/trn_test_gguf_read_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK_MSG(0, "mkdtemp failed");
        return;
    }
    char path[256], sub[256], missing[256];
    snprintf(path, sizeof(path), "%s/model.gguf", dir);
    snprintf(sub, sizeof(sub), "%s/subdir", dir);
    snprintf(missing, sizeof(missing), "%s/no/such/dir/model.gguf", dir);

    trn_gguf_writer *w = fixture_full_writer();
    void *image = NULL;
    size_t size = 0;
    CHECK(trn_gguf_write_memory(w, &image, &size) == TRN_OK);
    trn_status st = trn_gguf_write_file(w, path);
    CHECK_MSG(st == TRN_OK, "write_file: %s", trn_last_error());
    trn_gguf_writer_free(w);

    /* the mapped file reads as the memory image does */
    trn_gguf *g = NULL;
    st = trn_gguf_open(path, &g);
    CHECK_MSG(st == TRN_OK, "open: %s", trn_last_error());
    if (st == TRN_OK) {
        check_reading(g, path, NULL);
        trn_gguf_close(g);
    }

    /* reader I/O failures name the path */
    CHECK(mkdir(sub, 0700) == 0);
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
     * one-line message. */
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
        printf("test_gguf_read: stories260K.bin absent, skipping the tensor data comparison\n");
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
        printf("test_gguf_read: %s absent, skipping its checks\n", relative);
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
    fixture_make_payloads();
    test_read_memory();
    test_read_files();
    test_truncation();
    test_corruptions();
    test_stories();
    test_vocab();
    fixture_free_payloads();
    return test_finish("test_gguf_read");
}
