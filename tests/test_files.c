/* test_files.c: how Trinity reads and writes files it is handed.
 * - overflow-checked size arithmetic (trn_size_mul, trn_size_add, trn_size_product) at the edges of 64 bits;
 * - trn_read_file and trn_check_regular_file: devices, directories and FIFOs refused at once with one line, size caps
 *   checked before reading, the whole file read;
 * - trn_utf8_valid on valid text and on each kind of invalid sequence;
 * - safetensors: a shape whose byte count wraps around 2^64 (F32 [2^31, 2^31] with 0 bytes of data) refused;
 * - .npy reading: a header whose shape product overflows refused;
 * - output files: the same file as an input refused (also inside an input directory), a device refused, the
 *   temporary never left behind (written, aborted, committed), the destination replaced whole, umask respected;
 * - convert (library): an output that is the TRIN input refused with the input unchanged; TRIN layers whose codes
 *   are all +1 or all -1 (no spread) imported unscaled, as the original release's loader does, not as zeros. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "host/common.h"
#include "host/npy.h"
#include "host/output_file.h"
#include "host/tokenizer.h"
#include "test_util.h"
#ifdef TRN_HAVE_CJSON
#include "cpu_fallback/quants.h"
#include "host/convert.h"
#include "host/safetensors.h"
#endif

static char dir[256];

static const char *in_dir(const char *name) {
    static char path[4][512];
    static int next;
    char *p = path[next++ % 4];
    snprintf(p, 512, "%s/%s", dir, name);
    return p;
}

static void write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        CHECK(fwrite(data, 1, n, f) == n);
        fclose(f);
    }
}

static int message_has(const char *needle) { return strstr(trn_last_error(), needle) != NULL; }

/* Entries of the scratch folder other than . and .. */
static int count_entries(void) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d)) != NULL;)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    if (d)
        closedir(d);
    return n;
}

static void test_size_arithmetic(void) {
    uint64_t out = 0;
    CHECK(trn_size_mul(UINT64_C(1) << 31, UINT64_C(1) << 31, &out) && out == UINT64_C(1) << 62);
    CHECK(!trn_size_mul(UINT64_C(1) << 62, 4, &out)); /* the safetensors defect: 2^62 F32 elements wrap to 0 bytes */
    CHECK(!trn_size_mul(UINT64_MAX, 2, &out));
    CHECK(trn_size_mul(UINT64_MAX, 1, &out) && out == UINT64_MAX);
    CHECK(trn_size_add(UINT64_MAX - 1, 1, &out) && out == UINT64_MAX);
    CHECK(!trn_size_add(UINT64_MAX, 1, &out));
    const uint64_t fits[3] = {1 << 20, 1 << 20, 1 << 20}, wraps[4] = {1 << 20, 1 << 20, 1 << 20, 1 << 20};
    CHECK(trn_size_product(fits, 3, &out) && out == UINT64_C(1) << 60);
    CHECK(!trn_size_product(wraps, 4, &out));
    const uint64_t with_zero[3] = {0, UINT64_MAX, UINT64_MAX};
    CHECK(trn_size_product(with_zero, 3, &out) && out == 0);
    CHECK(trn_size_product(NULL, 0, &out) && out == 1);
}

static void test_reading(void) {
    char *data = NULL;
    size_t len = 0;
    /* a device that never ends: refused at once, not read toward the cap */
    const double t0 = trn_time_s();
    CHECK(trn_read_file("/dev/zero", TRN_MAX_TEXT_BYTES, "a text file", &data, &len) == TRN_ERR_INVALID);
    CHECK(data == NULL && trn_time_s() - t0 < 1.0);
    CHECK_MSG(message_has("/dev/zero") && message_has("not a regular file"), "%s", trn_last_error());
    CHECK(trn_read_file(dir, TRN_MAX_TEXT_BYTES, "a text file", &data, &len) == TRN_ERR_INVALID);
    CHECK_MSG(message_has(dir) && message_has("is a directory") && message_has("a text file"), "%s", trn_last_error());
    CHECK(trn_read_file(in_dir("missing"), 100, "a text file", &data, &len) == TRN_ERR_IO);
    CHECK_MSG(message_has("missing") && message_has("cannot open"), "%s", trn_last_error());
    /* a FIFO: refused without waiting for a writer */
    const char *fifo = in_dir("fifo");
    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK(trn_read_file(fifo, 100, "a text file", &data, &len) == TRN_ERR_INVALID);
    CHECK(trn_check_regular_file(fifo, 100, "a text file", NULL) == TRN_ERR_INVALID);
    unlink(fifo);
    /* the cap, checked before reading; then a whole file */
    const char *text = in_dir("text.txt");
    write_bytes(text, "hello, world", 12);
    CHECK(trn_read_file(text, 11, "a text file", &data, &len) == TRN_ERR_FORMAT);
    CHECK_MSG(message_has("12 bytes") && message_has("11"), "%s", trn_last_error());
    CHECK(trn_read_file(text, 12, "a text file", &data, &len) == TRN_OK && len == 12 && data);
    CHECK(data && memcmp(data, "hello, world", 13) == 0); /* NUL-terminated */
    free(data);
    uint64_t size = 0;
    CHECK(trn_check_regular_file(text, 12, "a text file", &size) == TRN_OK && size == 12);
    write_bytes(text, "", 0);
    CHECK(trn_read_file(text, 12, "a text file", &data, &len) == TRN_OK && len == 0 && data && data[0] == 0);
    free(data);
    unlink(text);
}

static void test_utf8(void) {
    size_t bad = 99;
    CHECK(trn_utf8_valid("", 0, &bad));
    CHECK(trn_utf8_valid("caf\xc3\xa9 \xe2\x96\x81 \xf0\x9f\x98\x80", 14, &bad));
    const struct {
        const char *s;
        size_t n, bad;
    } cases[] = {
        {"a\xff", 2, 1},            /* a byte that never starts a character */
        {"ab\x80", 3, 2},           /* a lone continuation byte */
        {"\xc0\xaf", 2, 0},         /* overlong two-byte form */
        {"\xe0\x80\xaf", 3, 0},     /* overlong three-byte form */
        {"\xed\xa0\x80", 3, 0},     /* a surrogate */
        {"\xf4\x90\x80\x80", 4, 0}, /* past U+10FFFF */
        {"x\xe2\x96", 3, 1},        /* truncated at the end */
        {"a\0b", 3, 1},             /* a NUL byte */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bad = 99;
        CHECK_MSG(!trn_utf8_valid(cases[i].s, cases[i].n, &bad) && bad == cases[i].bad, "case %zu: bad %zu", i, bad);
    }
}

#ifdef TRN_HAVE_CJSON
/* A safetensors file with one entry whose header is `json`, followed by data_bytes zero bytes. */
static void write_safetensors(const char *path, const char *json, size_t data_bytes) {
    const uint64_t n = strlen(json);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    fwrite(&n, 8, 1, f);
    fwrite(json, 1, n, f);
    for (size_t i = 0; i < data_bytes; i++)
        fputc(0, f);
    fclose(f);
}

static void test_safetensors_overflow(void) {
    const char *path = in_dir("wrap.safetensors");
    trn_safetensors *st = NULL;
    /* 2^62 elements of 4 bytes: the byte count wraps to 0, which matched the empty data range before the fix */
    write_safetensors(path, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2147483648, 2147483648], \"data_offsets\": [0, 0]}}",
                      0);
    CHECK(trn_safetensors_open_file(path, &st) == TRN_ERR_FORMAT && st == NULL);
    CHECK_MSG(message_has("'w'") && message_has("more elements"), "%s", trn_last_error());
    /* the same with F16 (2^63 bytes: no wrap, but far past the data) and a shape whose element count wraps */
    write_safetensors(path, "{\"w\": {\"dtype\": \"F16\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 0]}}",
                      0);
    CHECK(trn_safetensors_open_file(path, &st) == TRN_ERR_FORMAT && st == NULL);
    write_safetensors(path, "{\"w\": {\"dtype\": \"BF16\", \"shape\": [65536, 65536, 65536, 65536], \"data_offsets\": "
                            "[0, 0]}}", 0);
    CHECK(trn_safetensors_open_file(path, &st) == TRN_ERR_FORMAT && st == NULL);
    /* a zero dimension is an empty tensor, not an overflow; a good entry opens */
    write_safetensors(path, "{\"e\": {\"dtype\": \"F32\", \"shape\": [0, 4294967296], \"data_offsets\": [0, 0]}, "
                            "\"w\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]}}", 24);
    CHECK(trn_safetensors_open_file(path, &st) == TRN_OK && st && trn_safetensors_count(st) == 2);
    if (st) {
        const trn_st_tensor *w = trn_safetensors_find(st, "w");
        CHECK(w && w->n_elems == 6);
    }
    trn_safetensors_close(st);
    unlink(path);
}

/* Every value of a GGUF tensor, dequantized, equals `want`. */
static int tensor_all(const trn_gguf *g, const char *name, float want) {
    const trn_gguf_tensor *t = trn_gguf_find_tensor(g, name);
    if (!t)
        return 0;
    float *row = malloc((size_t)t->ne[0] * sizeof(float));
    const size_t row_bytes = trn_row_bytes(t->type, t->ne[0]);
    int all = row != NULL;
    for (int64_t r = 0; all && r < t->ne[1]; r++) {
        trn_dequantize_row(t->type, (const uint8_t *)t->data + r * row_bytes, row, t->ne[0]);
        for (int64_t i = 0; all && i < t->ne[0]; i++)
            all = row[i] == want;
    }
    free(row);
    return all;
}

static void test_convert_trin(void) {
    size_t len = 0;
    uint8_t *trin = (uint8_t *)test_read_file(test_source_path("tests/golden/convert/trin_tiny.bin"), &len);
    char base[1024];
    snprintf(base, sizeof(base), "%s", test_source_path("tests/golden/convert/hf_tiny"));
    CHECK(trin != NULL && len > 8 + 16384 + 4 + 8192);
    if (!trin)
        return;
    /* hf_tiny's first layers: attn_q [256][256] (16384 code bytes from byte 8), then attn_k [128][256] (8192) */
    uint32_t q_bytes = 0, k_bytes = 0;
    memcpy(&q_bytes, trin + 4, 4);
    memcpy(&k_bytes, trin + 8 + 16384, 4);
    CHECK(q_bytes == 16384 && k_bytes == 8192);
    memset(trin + 8, 0xaa, 16384);            /* every code 2: +1 */
    memset(trin + 8 + 16384 + 4, 0x00, 8192); /* every code 0: -1 */
    const char *packed = in_dir("flat.bin"), *out = in_dir("flat.gguf");
    write_bytes(packed, trin, len);
    free(trin);

    trn_convert_options o = trn_convert_defaults();
    o.from = "trin";
    o.input = packed;
    o.base_dir = base;
    o.output = packed; /* the input itself: refused, the input unchanged */
    CHECK(trn_convert(&o) == TRN_ERR_INVALID);
    CHECK_MSG(message_has("also an input"), "%s", trn_last_error());
    uint64_t size = 0;
    CHECK(trn_check_regular_file(packed, UINT64_MAX, "a TRIN file", &size) == TRN_OK && size == len);

    o.output = out;
    CHECK(trn_convert(&o) == TRN_OK);
    trn_gguf *g = NULL;
    CHECK(trn_gguf_open(out, &g) == TRN_OK);
    if (g) {
        CHECK_MSG(tensor_all(g, "blk.0.attn_q.weight", 1.0f), "codes all +1 must import as +1.0, not scaled to 0");
        CHECK_MSG(tensor_all(g, "blk.0.attn_k.weight", -1.0f), "codes all -1 must import as -1.0, not scaled to 0");
        CHECK(!tensor_all(g, "blk.0.attn_v.weight", 0.0f)); /* an ordinary layer keeps its scale */
    }
    trn_gguf_close(g);
    unlink(packed);
    unlink(out);
}
#endif

static void test_npy_overflow(void) {
    const char *path = in_dir("wrap.npy");
    char head[128];
    const char *dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4), }";
    const size_t n = strlen(dict);
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    head[8] = (char)n;
    head[9] = 0;
    memcpy(head + 10, dict, n);
    write_bytes(path, head, 10 + n);
    float *data = NULL;
    int64_t rows = 0, cols = 0;
    CHECK(trn_npy_read_f32(path, &data, &rows, &cols) == TRN_ERR_FORMAT && data == NULL);
    /* a round trip still works */
    const float values[6] = {1, 2, 3, 4, 5, 6};
    CHECK(trn_npy_write_f32(path, values, 2, 3) == TRN_OK);
    CHECK(trn_npy_read_f32(path, &data, &rows, &cols) == TRN_OK && rows == 2 && cols == 3 && data &&
          memcmp(data, values, sizeof(values)) == 0);
    free(data);
    unlink(path);
}

static void test_outputs(void) {
    const char *input = in_dir("model.gguf"), *out = in_dir("out.gguf"), *link = in_dir("link.gguf");
    write_bytes(input, "input", 5);
    const char *inputs[] = {NULL, input};
    /* the same file, by its own name and through a link, refused; another name is fine */
    CHECK(trn_output_check(input, inputs, 2) == TRN_ERR_INVALID);
    CHECK_MSG(message_has("also an input"), "%s", trn_last_error());
    CHECK(symlink(input, link) == 0);
    CHECK(trn_output_check(link, inputs, 2) == TRN_ERR_INVALID);
    unlink(link);
    CHECK(trn_output_check(out, inputs, 2) == TRN_OK);
    /* a file of an input directory (a checkpoint folder) refused; a directory or a device as the output refused */
    const char *dir_inputs[] = {dir};
    CHECK(trn_output_check(input, dir_inputs, 1) == TRN_ERR_INVALID);
    CHECK(trn_output_check(dir, NULL, 0) == TRN_ERR_INVALID);
    CHECK_MSG(message_has("is a directory"), "%s", trn_last_error());
    CHECK(trn_output_check("/dev/null", NULL, 0) == TRN_ERR_INVALID);
    CHECK_MSG(message_has("not a regular file"), "%s", trn_last_error());

    /* abort: nothing left, the destination untouched */
    const int before = count_entries();
    trn_output_file f;
    CHECK(trn_output_open(&f, input) == TRN_OK && f.file);
    CHECK(count_entries() == before + 1); /* the temporary, beside the destination */
    CHECK(f.tmp_path && strncmp(f.tmp_path, dir, strlen(dir)) == 0 && strstr(f.tmp_path, "/.model.gguf."));
    fputs("partial", f.file);
    trn_output_abort(&f);
    CHECK(count_entries() == before);
    size_t len = 0;
    char *text = test_read_file(input, &len);
    CHECK(text && len == 5 && memcmp(text, "input", 5) == 0);
    free(text);
    /* commit: the destination replaced whole, no temporary left, mode 0666 less the umask */
    const mode_t old_mask = umask(027);
    CHECK(trn_output_open(&f, input) == TRN_OK);
    fputs("replaced", f.file);
    CHECK(trn_output_commit(&f) == TRN_OK);
    umask(old_mask);
    CHECK(count_entries() == before);
    text = test_read_file(input, &len);
    CHECK(text && len == 8 && memcmp(text, "replaced", 8) == 0);
    free(text);
    struct stat st;
    CHECK(stat(input, &st) == 0 && (st.st_mode & 0777) == 0640);
    /* a folder that does not exist: one line, nothing created */
    CHECK(trn_output_open(&f, in_dir("no/such/dir/out.gguf")) == TRN_ERR_IO);
    CHECK_MSG(message_has("no/such/dir/out.gguf") && message_has("cannot create"), "%s", trn_last_error());
    unlink(input);
}

int main(void) {
    snprintf(dir, sizeof(dir), "%s/trinity_test_files.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "test_files: cannot create a scratch folder\n");
        return 1;
    }
    test_size_arithmetic();
    test_reading();
    test_utf8();
#ifdef TRN_HAVE_CJSON
    test_safetensors_overflow();
    test_convert_trin();
#else
    printf("test_files: built without cJSON: the safetensors and TRIN checks were not run\n");
#endif
    test_npy_overflow();
    test_outputs();
    CHECK(count_entries() == 0);
    rmdir(dir);
    return test_finish("test_files");
}
