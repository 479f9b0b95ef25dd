/* test_gguf_write.c: the GGUF writer (host/gguf.h), checked by reading back what it wrote.
 *
 * 1. round trip of the full image (gguf_fixture.h) through memory and through a file: header, every key in
 *    insertion order with its type and value bytes, arrays of every element type, tensors of every tensor type
 *    with their shapes, data and layout (aligned offsets, zero padding, the file padded to the alignment);
 *    the same bytes on every write; files with nothing or only tensors in them;
 * 2. files: the same bytes as the memory image, overwriting, no temporary left behind, I/O failures;
 * 3. what the writer refuses (types, shapes), and a caller-set general.alignment. */
#define _POSIX_C_SOURCE 200809L
#include "gguf_fixture.h"
#include "host/gguf.h"
#include "test_util.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* ---- 1. round trip ------------------------------------------------------------------------------- */

static void check_written_metadata(const trn_gguf *g) {
    CHECK_MSG(trn_gguf_version(g) == 3, "version %u", trn_gguf_version(g));
    CHECK(trn_gguf_alignment(g) == 32);
    CHECK_MSG(trn_gguf_n_kv(g) == N_FIXTURE_SCALAR_KEYS + N_FIXTURE_ARRAY_KEYS, "n_kv %lld",
              (long long)trn_gguf_n_kv(g));
    /* keys keep their insertion order */
    const trn_gguf_kv *first = trn_gguf_kv_at(g, 0), *last = trn_gguf_kv_at(g, trn_gguf_n_kv(g) - 1);
    CHECK(first && strcmp(first->key, "s.u8") == 0);
    CHECK(last && strcmp(last->key, "a.strings_empty") == 0);

    for (size_t i = 0; i < N_FIXTURE_SCALARS; i++) {
        const fixture_scalar *s = &FIXTURE_SCALARS[i];
        const trn_gguf_kv *kv = trn_gguf_find_kv(g, s->key);
        CHECK_MSG(kv != NULL, "key %s missing", s->key);
        if (!kv)
            continue;
        CHECK_MSG(kv->type == s->type, "%s: type %s", s->key, trn_gguf_vtype_name(kv->type));
        CHECK_MSG(memcmp(kv->data, s->value, trn_gguf_vtype_size(s->type)) == 0, "%s: value bytes differ", s->key);
    }
    const trn_gguf_kv *b = trn_gguf_find_kv(g, "s.bool");
    CHECK(b && b->type == TRN_GGUF_BOOL && b->data[0] == 1);

    for (size_t i = 0; i < N_FIXTURE_ARRAYS; i++) {
        const fixture_array *a = &FIXTURE_ARRAYS[i];
        const trn_gguf_kv *kv = trn_gguf_find_kv(g, a->key);
        CHECK_MSG(kv != NULL, "array %s missing", a->key);
        if (!kv)
            continue;
        CHECK_MSG(kv->type == TRN_GGUF_ARRAY && kv->elem_type == a->type && kv->n_elems == 5, "array %s: %s of %s x%llu",
                  a->key, trn_gguf_vtype_name(kv->type), trn_gguf_vtype_name(kv->elem_type),
                  (unsigned long long)kv->n_elems);
        if (kv->n_elems == 5)
            CHECK_MSG(memcmp(kv->data, a->data, 5 * a->elem_size) == 0, "array %s: bytes differ", a->key);
    }
    const trn_gguf_kv *kv = trn_gguf_get_array(g, "a.empty", TRN_GGUF_U32);
    CHECK(kv && kv->n_elems == 0);

    kv = trn_gguf_get_array(g, "a.strings", TRN_GGUF_STRING);
    CHECK(kv && kv->n_elems == N_FIXTURE_ARRAY_STRINGS && kv->strings);
    for (size_t i = 0; kv && kv->strings && i < N_FIXTURE_ARRAY_STRINGS && i < kv->n_elems; i++)
        CHECK_MSG(str_eq(kv->strings[i], FIXTURE_ARRAY_STRINGS[i]), "a.strings[%zu]", i);
    kv = trn_gguf_get_array(g, "a.strings_empty", TRN_GGUF_STRING);
    CHECK(kv && kv->n_elems == 0 && kv->elem_type == TRN_GGUF_STRING);
}

/* The tensors of the full image: in order, with their types, shapes and data, laid out with aligned offsets and zero
 * padding, the file ending with the last tensor padded to the alignment. */
static void check_written_tensors(const trn_gguf *g) {
    CHECK_MSG(trn_gguf_n_tensors(g) == N_FIXTURE_TENSORS, "n_tensors %lld", (long long)trn_gguf_n_tensors(g));
    const size_t data_offset = trn_gguf_data_offset(g);
    const size_t size = trn_gguf_file_size(g);
    CHECK_MSG(data_offset % 32 == 0 && data_offset < size, "data offset %zu", data_offset);
    const uint8_t *base = NULL; /* start of the image, as seen through the first tensor */
    const trn_gguf_tensor *prev = NULL;
    for (int64_t i = 0; i < N_FIXTURE_TENSORS && i < trn_gguf_n_tensors(g); i++) {
        const fixture_tensor *c = &FIXTURE_TENSORS[i];
        const trn_gguf_tensor *t = trn_gguf_tensor_at(g, i);
        if (!t)
            continue;
        CHECK_MSG(strcmp(t->name, c->name) == 0, "tensor %lld is %s", (long long)i, t->name); /* order is kept */
        CHECK_MSG(t->type == c->type && t->n_dims == c->n_dims, "%s: type %d, %d dims", c->name, (int)t->type,
                  t->n_dims);
        for (int d = 0; d < TRN_GGUF_MAX_DIMS; d++) {
            int64_t want = d < c->n_dims ? c->ne[d] : 1; /* unused dimensions read as 1 */
            CHECK_MSG(t->ne[d] == want, "%s: ne[%d] = %lld", c->name, d, (long long)t->ne[d]);
        }
        CHECK_MSG(t->offset % 32 == 0, "%s: offset %llu not aligned", c->name, (unsigned long long)t->offset);
        CHECK_MSG(data_offset + t->offset + t->bytes <= size, "%s: past the end", c->name);
        const uint8_t *data = t->data;
        if (!base)
            base = data - data_offset - t->offset;
        CHECK_MSG(t->bytes == c->bytes && memcmp(data, fixture_payload(i), c->bytes) == 0, "%s: data bytes differ",
                  c->name);
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
}

static void test_round_trip_memory(void) {
    trn_gguf_writer *w = fixture_full_writer();
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

    trn_gguf *g = NULL;
    trn_status st = trn_gguf_open_memory(image, size, 1, "round-trip.gguf", &g);
    CHECK_MSG(st == TRN_OK, "open: %s", trn_last_error());
    if (st == TRN_OK) {
        check_written_metadata(g);
        check_written_tensors(g);
        trn_gguf_close(g);
    }
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

static void test_files(void) {
    char dir[] = "/tmp/trn_test_gguf_write_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK_MSG(0, "mkdtemp failed");
        return;
    }
    char path[256], sub[256], missing[256], names[1024];
    snprintf(path, sizeof(path), "%s/model.gguf", dir);
    snprintf(sub, sizeof(sub), "%s/subdir", dir);
    snprintf(missing, sizeof(missing), "%s/no/such/dir/model.gguf", dir);

    trn_gguf_writer *w = fixture_full_writer();
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
    trn_free(image);

    trn_gguf *g = NULL;
    st = trn_gguf_open(path, &g);
    CHECK_MSG(st == TRN_OK, "open: %s", trn_last_error());
    if (st == TRN_OK) {
        check_written_metadata(g);
        check_written_tensors(g);
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

    empty_dir(sub);
    empty_dir(dir);
    CHECK(rmdir(dir) == 0);
}

/* ---- 3. refusals --------------------------------------------------------------------------------- */

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

int main(void) {
    fixture_make_payloads();
    test_round_trip_memory();
    test_minimal_files();
    test_files();
    test_writer_refusals();
    test_writer_alignment_key();
    fixture_free_payloads();
    return test_finish("test_gguf_write");
}
