/* gguf.c: the GGUF reader (memory-mapped, bounds-checked) and writer (see gguf.h). */
#define _POSIX_C_SOURCE 200809L
#include "gguf.h"

#include "output_file.h"

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */

struct trn_gguf {
    char *path;
    uint8_t *base;
    size_t size;
    int mapped;      /* munmap on close */
    int owned;       /* trn_free on close */
    uint32_t version;
    size_t alignment;
    size_t data_offset;
    int64_t n_kv;
    trn_gguf_kv *kvs;
    int64_t n_tensors;
    trn_gguf_tensor *tensors;
};

/* ---- reader ---- */

typedef struct {
    const trn_gguf *gguf;
    size_t pos;
} cursor;

static trn_status truncated(const cursor *c, const char *what) {
    return trn_fail(TRN_ERR_FORMAT, "%s: truncated GGUF file: %s at byte %zu runs past the end (%zu bytes)",
                    c->gguf->path, what, c->pos, c->gguf->size);
}

static trn_status read_bytes(cursor *c, void *dst, size_t n, const char *what) {
    if (n > c->gguf->size - c->pos)
        return truncated(c, what);
    memcpy(dst, c->gguf->base + c->pos, n);
    c->pos += n;
    return TRN_OK;
}

static trn_status read_u32(cursor *c, uint32_t *v, const char *what) { return read_bytes(c, v, 4, what); }
static trn_status read_u64(cursor *c, uint64_t *v, const char *what) { return read_bytes(c, v, 8, what); }

static trn_status read_string(cursor *c, trn_gguf_str *s, const char *what) {
    uint64_t len = 0;
    TRN_TRY(read_u64(c, &len, what));
    if (len > c->gguf->size - c->pos)
        return truncated(c, what);
    s->ptr = (const char *)c->gguf->base + c->pos;
    s->len = len;
    c->pos += len;
    return TRN_OK;
}

/* A NUL-terminated copy of a key or tensor name. Control characters become '?', so that a name quoted in an
 * error message can never break the message's single line or drive the terminal. */
static char *str_dup(trn_gguf_str s) {
    char *out = malloc(s.len + 1);
    if (out) {
        memcpy(out, s.ptr, s.len);
        out[s.len] = 0;
        for (uint64_t i = 0; i < s.len; i++)
            if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
                out[i] = '?';
    }
    return out;
}

size_t trn_gguf_vtype_size(trn_gguf_vtype type) {
    switch (type) {
    case TRN_GGUF_U8: case TRN_GGUF_I8: case TRN_GGUF_BOOL: return 1;
    case TRN_GGUF_U16: case TRN_GGUF_I16: return 2;
    case TRN_GGUF_U32: case TRN_GGUF_I32: case TRN_GGUF_F32: return 4;
    case TRN_GGUF_U64: case TRN_GGUF_I64: case TRN_GGUF_F64: return 8;
    default: return 0;
    }
}

const char *trn_gguf_vtype_name(trn_gguf_vtype type) {
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                  "string", "array", "u64", "i64", "f64"};
    return (unsigned)type < TRN_ARRAY_LEN(names) ? names[type] : "unknown";
}

static int vtype_valid(uint32_t type) { return type <= TRN_GGUF_F64; }

static trn_status read_kv(cursor *c, trn_gguf_kv *kv) {
    trn_gguf_str key;
    TRN_TRY(read_string(c, &key, "metadata key"));
    kv->key = str_dup(key);
    if (!kv->key)
        return trn_fail(TRN_ERR_NOMEM, "out of memory reading %s", c->gguf->path);
    uint32_t type = 0;
    TRN_TRY(read_u32(c, &type, "metadata value type"));
    if (!vtype_valid(type))
        return trn_fail(TRN_ERR_FORMAT, "%s: metadata key '%s' has unknown value type %u", c->gguf->path, kv->key, type);
    kv->type = (trn_gguf_vtype)type;
    if (type == TRN_GGUF_STRING) {
        kv->strings = malloc(sizeof(trn_gguf_str));
        if (!kv->strings)
            return trn_fail(TRN_ERR_NOMEM, "out of memory reading %s", c->gguf->path);
        kv->data = c->gguf->base + c->pos;
        return read_string(c, &kv->strings[0], kv->key);
    }
    if (type != TRN_GGUF_ARRAY) {
        size_t size = trn_gguf_vtype_size(kv->type);
        if (size > c->gguf->size - c->pos)
            return truncated(c, kv->key);
        kv->data = c->gguf->base + c->pos;
        c->pos += size;
        return TRN_OK;
    }
    uint32_t elem_type = 0;
    TRN_TRY(read_u32(c, &elem_type, "array element type"));
    TRN_TRY(read_u64(c, &kv->n_elems, "array length"));
    if (!vtype_valid(elem_type) || elem_type == TRN_GGUF_ARRAY)
        return trn_fail(TRN_ERR_FORMAT, "%s: metadata array '%s' has unsupported element type %u", c->gguf->path,
                        kv->key, elem_type);
    kv->elem_type = (trn_gguf_vtype)elem_type;
    kv->data = c->gguf->base + c->pos;
    if (elem_type == TRN_GGUF_STRING) {
        /* each string needs at least its 8-byte length: reject absurd counts before allocating */
        if (kv->n_elems > (c->gguf->size - c->pos) / 8)
            return truncated(c, kv->key);
        kv->strings = malloc(sizeof(trn_gguf_str) * (kv->n_elems ? kv->n_elems : 1));
        if (!kv->strings)
            return trn_fail(TRN_ERR_NOMEM, "out of memory reading %s", c->gguf->path);
        for (uint64_t i = 0; i < kv->n_elems; i++)
            TRN_TRY(read_string(c, &kv->strings[i], kv->key));
        return TRN_OK;
    }
    size_t size = trn_gguf_vtype_size(kv->elem_type);
    if (kv->n_elems > (c->gguf->size - c->pos) / size)
        return truncated(c, kv->key);
    c->pos += kv->n_elems * size;
    return TRN_OK;
}

static trn_status read_tensor_info(cursor *c, trn_gguf_tensor *t) {
    trn_gguf_str name;
    TRN_TRY(read_string(c, &name, "tensor name"));
    t->name = str_dup(name);
    if (!t->name)
        return trn_fail(TRN_ERR_NOMEM, "out of memory reading %s", c->gguf->path);
    uint32_t n_dims = 0;
    TRN_TRY(read_u32(c, &n_dims, "tensor dimension count"));
    if (n_dims < 1 || n_dims > TRN_GGUF_MAX_DIMS)
        return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s' has %u dimensions (1 to %d supported)", c->gguf->path,
                        t->name, n_dims, TRN_GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    uint64_t n_elems = 1;
    for (int d = 0; d < TRN_GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if (d < t->n_dims)
            TRN_TRY(read_u64(c, &ne, "tensor shape"));
        if (ne == 0 || !trn_size_mul(n_elems, ne, &n_elems) || n_elems > ((uint64_t)1 << 50))
            return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s' has an impossible shape (dimension %d is %llu)",
                            c->gguf->path, t->name, d, (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
    }
    t->n_elems = (int64_t)n_elems;
    uint32_t type = 0;
    TRN_TRY(read_u32(c, &type, "tensor type"));
    TRN_TRY(read_u64(c, &t->offset, "tensor offset"));
    const trn_type_traits *traits = trn_type_get(type);
    if (!traits)
        return trn_fail(TRN_ERR_UNSUPPORTED, "%s: tensor '%s' has type %u, which Trinity does not support", c->gguf->path,
                        t->name, type);
    t->type = (trn_type)type;
    if (t->ne[0] % traits->block_size != 0)
        return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s' of type %s has rows of %lld, not a multiple of %d",
                        c->gguf->path, t->name, traits->name, (long long)t->ne[0], traits->block_size);
    uint64_t bytes = 0;
    if (!trn_size_mul((uint64_t)t->n_elems / (uint64_t)traits->block_size, (uint64_t)traits->block_bytes, &bytes) ||
        bytes > SIZE_MAX)
        return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s' is larger than memory can address", c->gguf->path, t->name);
    t->bytes = (size_t)bytes;
    return TRN_OK;
}

static void gguf_free_contents(trn_gguf *g) {
    for (int64_t i = 0; g->kvs && i < g->n_kv; i++) {
        free(g->kvs[i].key);
        free(g->kvs[i].strings);
    }
    free(g->kvs);
    for (int64_t i = 0; g->tensors && i < g->n_tensors; i++)
        free(g->tensors[i].name);
    free(g->tensors);
    if (g->mapped && g->base)
        munmap(g->base, g->size);
    if (g->owned)
        trn_free(g->base);
    free(g->path);
    free(g);
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Fails when two of the n records (of record_size bytes, the NUL-terminated name at name_offset) share a name:
 * sorted, so that a file with a hundred thousand keys is checked in milliseconds, not in hours. */
static trn_status check_unique(const trn_gguf *g, const void *records, size_t record_size, size_t name_offset,
                               int64_t n, const char *what) {
    if (n < 2)
        return TRN_OK;
    char **names = malloc((size_t)n * sizeof(char *));
    if (!names)
        return trn_fail(TRN_ERR_NOMEM, "out of memory reading %s", g->path);
    for (int64_t i = 0; i < n; i++)
        memcpy(&names[i], (const char *)records + (size_t)i * record_size + name_offset, sizeof(char *));
    qsort(names, (size_t)n, sizeof(char *), compare_names);
    trn_status status = TRN_OK;
    for (int64_t i = 1; i < n && status == TRN_OK; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            status = trn_fail(TRN_ERR_FORMAT, "%s: %s '%s' appears twice", g->path, what, names[i]);
    free(names);
    return status;
}

static trn_status gguf_parse(trn_gguf *g) {
    cursor c = {g, 0};
    uint32_t magic = 0;
    TRN_TRY(read_u32(&c, &magic, "magic"));
    if (magic != GGUF_MAGIC)
        return trn_fail(TRN_ERR_FORMAT, "%s: not a GGUF file (bad magic)", g->path);
    TRN_TRY(read_u32(&c, &g->version, "version"));
    if (g->version != 2 && g->version != 3)
        return trn_fail(TRN_ERR_UNSUPPORTED, "%s: GGUF version %u is not supported (2 and 3 are)", g->path, g->version);
    uint64_t n_tensors = 0, n_kv = 0;
    TRN_TRY(read_u64(&c, &n_tensors, "tensor count"));
    TRN_TRY(read_u64(&c, &n_kv, "metadata count"));
    /* every kv needs >= 12 bytes and every tensor info >= 28: bound the counts by the file size */
    if (n_kv > g->size / 12 || n_tensors > g->size / 28)
        return trn_fail(TRN_ERR_FORMAT, "%s: header claims %llu tensors and %llu metadata keys, more than the file holds",
                        g->path, (unsigned long long)n_tensors, (unsigned long long)n_kv);
    g->kvs = calloc(n_kv ? n_kv : 1, sizeof(trn_gguf_kv));
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof(trn_gguf_tensor));
    if (!g->kvs || !g->tensors)
        return trn_fail(TRN_ERR_NOMEM, "out of memory reading %s", g->path);
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv = (int64_t)i + 1;
        TRN_TRY(read_kv(&c, &g->kvs[i]));
    }
    TRN_TRY(check_unique(g, g->kvs, sizeof(trn_gguf_kv), offsetof(trn_gguf_kv, key), g->n_kv, "metadata key"));
    g->alignment = TRN_GGUF_DEFAULT_ALIGNMENT;
    int64_t alignment = TRN_GGUF_DEFAULT_ALIGNMENT;
    TRN_TRY(trn_gguf_get_int(g, "general.alignment", &alignment, TRN_OK));
    if (trn_gguf_find_kv(g, "general.alignment")) {
        if (alignment <= 0 || alignment > 65536 || (alignment & (alignment - 1)) != 0)
            return trn_fail(TRN_ERR_FORMAT, "%s: general.alignment %lld is not a power of two", g->path, (long long)alignment);
        g->alignment = (size_t)alignment;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors = (int64_t)i + 1;
        TRN_TRY(read_tensor_info(&c, &g->tensors[i]));
    }
    size_t data_offset = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    g->data_offset = data_offset;
    if (n_tensors > 0 && data_offset > g->size)
        return trn_fail(TRN_ERR_FORMAT, "%s: truncated GGUF file: tensor data section starts past the end", g->path);
    for (int64_t i = 0; i < g->n_tensors; i++) {
        trn_gguf_tensor *t = &g->tensors[i];
        if (t->offset % g->alignment != 0)
            return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s' data offset %llu is not aligned to %zu", g->path, t->name,
                            (unsigned long long)t->offset, g->alignment);
        if (t->offset > g->size - data_offset || t->bytes > g->size - data_offset - t->offset)
            return trn_fail(TRN_ERR_FORMAT, "%s: truncated GGUF file: tensor '%s' (%zu bytes at offset %llu) runs past the end",
                            g->path, t->name, t->bytes, (unsigned long long)t->offset);
        t->data = g->base + data_offset + t->offset;
    }
    TRN_TRY(check_unique(g, g->tensors, sizeof(trn_gguf_tensor), offsetof(trn_gguf_tensor, name), g->n_tensors, "tensor"));
    return TRN_OK;
}

static trn_status gguf_finish_open(trn_gguf *g, trn_gguf **out) {
    trn_status status = gguf_parse(g);
    if (status != TRN_OK) {
        gguf_free_contents(g);
        return status;
    }
    *out = g;
    return TRN_OK;
}

trn_status trn_gguf_open(const char *path, trn_gguf **out) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return trn_fail(TRN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint64_t file_size = 0;
    const trn_status checked = trn_check_regular_fd(fd, path, SIZE_MAX, "a GGUF file", &file_size);
    if (checked != TRN_OK) {
        close(fd);
        return checked;
    }
    trn_gguf *g = calloc(1, sizeof(*g));
    if (!g) {
        close(fd);
        return trn_fail(TRN_ERR_NOMEM, "out of memory opening %s", path);
    }
    g->path = strdup(path);
    g->size = (size_t)file_size;
    if (g->size == 0) {
        close(fd);
        gguf_free_contents(g);
        return trn_fail(TRN_ERR_FORMAT, "%s: empty file, not a GGUF model", path);
    }
    void *map = mmap(NULL, g->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        gguf_free_contents(g);
        return trn_fail(TRN_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    }
    g->base = map;
    g->mapped = 1;
    return gguf_finish_open(g, out);
}

trn_status trn_gguf_open_memory(void *data, size_t size, int take_ownership, const char *label, trn_gguf **out) {
    *out = NULL;
    trn_gguf *g = calloc(1, sizeof(*g));
    if (!g)
        return trn_fail(TRN_ERR_NOMEM, "out of memory opening %s", label);
    g->path = strdup(label);
    g->base = data;
    g->size = size;
    g->owned = take_ownership;
    return gguf_finish_open(g, out);
}

void trn_gguf_close(trn_gguf *gguf) {
    if (gguf)
        gguf_free_contents(gguf);
}

const char *trn_gguf_path(const trn_gguf *g) { return g->path; }
uint32_t trn_gguf_version(const trn_gguf *g) { return g->version; }
size_t trn_gguf_alignment(const trn_gguf *g) { return g->alignment; }
size_t trn_gguf_data_offset(const trn_gguf *g) { return g->data_offset; }
size_t trn_gguf_file_size(const trn_gguf *g) { return g->size; }
int64_t trn_gguf_n_kv(const trn_gguf *g) { return g->n_kv; }
const trn_gguf_kv *trn_gguf_kv_at(const trn_gguf *g, int64_t i) { return i >= 0 && i < g->n_kv ? &g->kvs[i] : NULL; }
int64_t trn_gguf_n_tensors(const trn_gguf *g) { return g->n_tensors; }
const trn_gguf_tensor *trn_gguf_tensor_at(const trn_gguf *g, int64_t i) {
    return i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const trn_gguf_kv *trn_gguf_find_kv(const trn_gguf *g, const char *key) {
    for (int64_t i = 0; i < g->n_kv; i++)
        if (g->kvs[i].key && strcmp(g->kvs[i].key, key) == 0)
            return &g->kvs[i];
    return NULL;
}

const trn_gguf_tensor *trn_gguf_find_tensor(const trn_gguf *g, const char *name) {
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0)
            return &g->tensors[i];
    return NULL;
}

static int64_t load_int(trn_gguf_vtype type, const uint8_t *p, int *ok) {
    *ok = 1;
    switch (type) {
    case TRN_GGUF_U8: return *p;
    case TRN_GGUF_I8: return (int8_t)*p;
    case TRN_GGUF_BOOL: return *p != 0;
    case TRN_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case TRN_GGUF_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case TRN_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case TRN_GGUF_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case TRN_GGUF_U64: { uint64_t v; memcpy(&v, p, 8); if (v > INT64_MAX) *ok = 0; return (int64_t)v; }
    case TRN_GGUF_I64: { int64_t v; memcpy(&v, p, 8); return v; }
    default: *ok = 0; return 0;
    }
}

static double load_float(trn_gguf_vtype type, const uint8_t *p, int *ok) {
    if (type == TRN_GGUF_F32) {
        float v;
        memcpy(&v, p, 4);
        *ok = 1;
        return v;
    }
    if (type == TRN_GGUF_F64) {
        double v;
        memcpy(&v, p, 8);
        *ok = 1;
        return v;
    }
    return (double)load_int(type, p, ok);
}

static trn_status wrong_type(const trn_gguf *g, const trn_gguf_kv *kv, const char *wanted) {
    return trn_fail(TRN_ERR_FORMAT, "%s: metadata key '%s' has type %s, expected %s", g->path, kv->key,
                    trn_gguf_vtype_name(kv->type), wanted);
}

static trn_status missing_key(const trn_gguf *g, const char *key, trn_status missing) {
    if (missing != TRN_OK)
        return trn_fail(missing, "%s: metadata key '%s' is missing", g->path, key);
    return TRN_OK;
}

trn_status trn_gguf_get_int(const trn_gguf *g, const char *key, int64_t *out, trn_status missing) {
    const trn_gguf_kv *kv = trn_gguf_find_kv(g, key);
    if (!kv)
        return missing_key(g, key, missing);
    int ok;
    int64_t v = load_int(kv->type, kv->data, &ok);
    if (kv->type == TRN_GGUF_U64 && !ok)
        return trn_fail(TRN_ERR_FORMAT, "%s: metadata key '%s' = %llu is out of range", g->path, kv->key,
                        (unsigned long long)(uint64_t)v);
    if (!ok || kv->type == TRN_GGUF_BOOL)
        return wrong_type(g, kv, "an integer");
    *out = v;
    return TRN_OK;
}

trn_status trn_gguf_get_float(const trn_gguf *g, const char *key, double *out, trn_status missing) {
    const trn_gguf_kv *kv = trn_gguf_find_kv(g, key);
    if (!kv)
        return missing_key(g, key, missing);
    int ok;
    double v = load_float(kv->type, kv->data, &ok);
    if (!ok || kv->type == TRN_GGUF_BOOL)
        return wrong_type(g, kv, "a number");
    *out = v;
    return TRN_OK;
}

trn_status trn_gguf_get_bool(const trn_gguf *g, const char *key, int *out, trn_status missing) {
    const trn_gguf_kv *kv = trn_gguf_find_kv(g, key);
    if (!kv)
        return missing_key(g, key, missing);
    if (kv->type != TRN_GGUF_BOOL)
        return wrong_type(g, kv, "bool");
    *out = kv->data[0] != 0;
    return TRN_OK;
}

trn_status trn_gguf_get_string(const trn_gguf *g, const char *key, trn_gguf_str *out, trn_status missing) {
    const trn_gguf_kv *kv = trn_gguf_find_kv(g, key);
    if (!kv)
        return missing_key(g, key, missing);
    if (kv->type != TRN_GGUF_STRING)
        return wrong_type(g, kv, "string");
    *out = kv->strings[0];
    return TRN_OK;
}

const trn_gguf_kv *trn_gguf_get_array(const trn_gguf *g, const char *key, trn_gguf_vtype elem_type) {
    const trn_gguf_kv *kv = trn_gguf_find_kv(g, key);
    if (!kv) {
        trn_fail(TRN_ERR_FORMAT, "%s: metadata key '%s' is missing", g->path, key);
        return NULL;
    }
    if (kv->type != TRN_GGUF_ARRAY || kv->elem_type != elem_type) {
        trn_fail(TRN_ERR_FORMAT, "%s: metadata key '%s' is not an array of %s", g->path, key,
                 trn_gguf_vtype_name(elem_type));
        return NULL;
    }
    return kv;
}

int64_t trn_gguf_array_int(const trn_gguf_kv *kv, uint64_t i) {
    int ok;
    return load_int(kv->elem_type, kv->data + i * trn_gguf_vtype_size(kv->elem_type), &ok);
}

double trn_gguf_array_float(const trn_gguf_kv *kv, uint64_t i) {
    int ok;
    return load_float(kv->elem_type, kv->data + i * trn_gguf_vtype_size(kv->elem_type), &ok);
}

/* ---- writer ---- */

typedef struct {
    uint8_t *data;
    size_t len, cap;
    int failed;
} byte_buf;

static void buf_put(byte_buf *b, const void *src, size_t n) {
    if (b->failed || n == 0)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, src, n);
    b->len += n;
}

static void buf_u32(byte_buf *b, uint32_t v) { buf_put(b, &v, 4); }
static void buf_u64(byte_buf *b, uint64_t v) { buf_put(b, &v, 8); }
static void buf_str(byte_buf *b, const char *s) {
    size_t n = strlen(s);
    buf_u64(b, n);
    buf_put(b, s, n);
}

typedef struct {
    char *name;
    trn_type type;
    int n_dims;
    int64_t ne[TRN_GGUF_MAX_DIMS];
    size_t bytes;
    uint64_t offset;
    const void *data;
} writer_tensor;

struct trn_gguf_writer {
    byte_buf kv;        /* serialized key/value pairs */
    uint64_t n_kv;
    writer_tensor *tensors;
    int64_t n_tensors, cap_tensors;
    uint64_t data_bytes; /* aligned running size of the data section */
    int64_t alignment_key; /* value of a general.alignment key the caller set, or 0 */
};

trn_gguf_writer *trn_gguf_writer_new(void) { return calloc(1, sizeof(trn_gguf_writer)); }

void trn_gguf_writer_free(trn_gguf_writer *w) {
    if (!w)
        return;
    free(w->kv.data);
    for (int64_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->tensors);
    free(w);
}

static void kv_begin(trn_gguf_writer *w, const char *key, trn_gguf_vtype type) {
    buf_str(&w->kv, key);
    buf_u32(&w->kv, type);
    w->n_kv++;
}

void trn_gguf_set_scalar(trn_gguf_writer *w, const char *key, trn_gguf_vtype type, const void *value) {
    if (strcmp(key, "general.alignment") == 0) { /* the writer lays data out on 32 bytes: remember, check at write */
        int ok;
        w->alignment_key = load_int(type, value, &ok);
        if (!ok)
            w->alignment_key = -1;
    }
    kv_begin(w, key, type);
    buf_put(&w->kv, value, trn_gguf_vtype_size(type));
}

void trn_gguf_set_u32(trn_gguf_writer *w, const char *key, uint32_t v) { trn_gguf_set_scalar(w, key, TRN_GGUF_U32, &v); }
void trn_gguf_set_i32(trn_gguf_writer *w, const char *key, int32_t v) { trn_gguf_set_scalar(w, key, TRN_GGUF_I32, &v); }
void trn_gguf_set_u64(trn_gguf_writer *w, const char *key, uint64_t v) { trn_gguf_set_scalar(w, key, TRN_GGUF_U64, &v); }
void trn_gguf_set_f32(trn_gguf_writer *w, const char *key, float v) { trn_gguf_set_scalar(w, key, TRN_GGUF_F32, &v); }
void trn_gguf_set_bool(trn_gguf_writer *w, const char *key, int v) {
    uint8_t b = v != 0;
    trn_gguf_set_scalar(w, key, TRN_GGUF_BOOL, &b);
}
void trn_gguf_set_string(trn_gguf_writer *w, const char *key, const char *value) {
    kv_begin(w, key, TRN_GGUF_STRING);
    buf_str(&w->kv, value);
}

void trn_gguf_set_array(trn_gguf_writer *w, const char *key, trn_gguf_vtype elem_type, const void *data, uint64_t n) {
    kv_begin(w, key, TRN_GGUF_ARRAY);
    buf_u32(&w->kv, elem_type);
    buf_u64(&w->kv, n);
    buf_put(&w->kv, data, n * trn_gguf_vtype_size(elem_type));
}

void trn_gguf_set_string_array(trn_gguf_writer *w, const char *key, const char *const *strings, uint64_t n) {
    kv_begin(w, key, TRN_GGUF_ARRAY);
    buf_u32(&w->kv, TRN_GGUF_STRING);
    buf_u64(&w->kv, n);
    for (uint64_t i = 0; i < n; i++)
        buf_str(&w->kv, strings[i]);
}

trn_status trn_gguf_add_tensor(trn_gguf_writer *w, const char *name, trn_type type, int n_dims, const int64_t *ne,
                               const void *data) {
    const trn_type_traits *traits = trn_type_get(type);
    if (!traits)
        return trn_fail(TRN_ERR_UNSUPPORTED, "tensor '%s': unknown type %d", name, (int)type);
    if (n_dims < 1 || n_dims > TRN_GGUF_MAX_DIMS)
        return trn_fail(TRN_ERR_INVALID, "tensor '%s': %d dimensions", name, n_dims);
    writer_tensor t = {0};
    t.type = type;
    t.n_dims = n_dims;
    int64_t n = 1;
    for (int d = 0; d < TRN_GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] <= 0)
            return trn_fail(TRN_ERR_INVALID, "tensor '%s': dimension %d is %lld", name, d, (long long)t.ne[d]);
        n *= t.ne[d];
    }
    if (t.ne[0] % traits->block_size != 0)
        return trn_fail(TRN_ERR_INVALID, "tensor '%s': rows of %lld are not a multiple of the %s block size %d", name,
                        (long long)t.ne[0], traits->name, traits->block_size);
    t.bytes = (size_t)(n / traits->block_size) * (size_t)traits->block_bytes;
    t.offset = w->data_bytes;
    t.data = data;
    t.name = strdup(name);
    if (w->n_tensors == w->cap_tensors) {
        int64_t cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
        writer_tensor *grown = realloc(w->tensors, (size_t)cap * sizeof(writer_tensor));
        if (!grown || !t.name) {
            free(t.name);
            return trn_fail(TRN_ERR_NOMEM, "out of memory adding tensor '%s'", name);
        }
        w->tensors = grown;
        w->cap_tensors = cap;
    }
    w->tensors[w->n_tensors++] = t;
    w->data_bytes += (t.bytes + TRN_GGUF_DEFAULT_ALIGNMENT - 1) / TRN_GGUF_DEFAULT_ALIGNMENT * TRN_GGUF_DEFAULT_ALIGNMENT;
    return TRN_OK;
}

/* Header, metadata and tensor directory, padded to the alignment. */
static trn_status writer_header(trn_gguf_writer *w, byte_buf *head) {
    if (w->alignment_key != 0 && w->alignment_key != TRN_GGUF_DEFAULT_ALIGNMENT)
        return trn_fail(TRN_ERR_UNSUPPORTED, "general.alignment = %lld: the GGUF writer lays data out on %d bytes only",
                        (long long)w->alignment_key, TRN_GGUF_DEFAULT_ALIGNMENT);
    buf_u32(head, GGUF_MAGIC);
    buf_u32(head, 3);
    buf_u64(head, (uint64_t)w->n_tensors);
    buf_u64(head, w->n_kv);
    buf_put(head, w->kv.data, w->kv.len);
    for (int64_t i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        buf_str(head, t->name);
        buf_u32(head, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++)
            buf_u64(head, (uint64_t)t->ne[d]);
        buf_u32(head, (uint32_t)t->type);
        buf_u64(head, t->offset);
    }
    static const uint8_t zeros[TRN_GGUF_DEFAULT_ALIGNMENT];
    size_t pad = (TRN_GGUF_DEFAULT_ALIGNMENT - head->len % TRN_GGUF_DEFAULT_ALIGNMENT) % TRN_GGUF_DEFAULT_ALIGNMENT;
    buf_put(head, zeros, pad);
    if (head->failed || w->kv.failed)
        return trn_fail(TRN_ERR_NOMEM, "out of memory serializing GGUF metadata");
    return TRN_OK;
}

trn_status trn_gguf_write_memory(trn_gguf_writer *w, void **out_data, size_t *out_size) {
    byte_buf head = {0};
    trn_status status = writer_header(w, &head);
    if (status != TRN_OK) {
        free(head.data);
        return status;
    }
    size_t size = head.len + w->data_bytes;
    uint8_t *out = trn_alloc(size);
    if (!out) {
        free(head.data);
        return trn_fail(TRN_ERR_NOMEM, "out of memory: GGUF image of %zu bytes", size);
    }
    memcpy(out, head.data, head.len);
    for (int64_t i = 0; i < w->n_tensors; i++)
        if (w->tensors[i].data)
            memcpy(out + head.len + w->tensors[i].offset, w->tensors[i].data, w->tensors[i].bytes);
    free(head.data);
    *out_data = out;
    *out_size = size;
    return TRN_OK;
}

trn_status trn_gguf_write_file(trn_gguf_writer *w, const char *path) {
    byte_buf head = {0};
    trn_output_file out;
    trn_status status = writer_header(w, &head);
    if (status == TRN_OK)
        status = trn_output_open(&out, path);
    if (status != TRN_OK) {
        free(head.data);
        return status;
    }
    FILE *f = out.file;
    int ok = fwrite(head.data, 1, head.len, f) == head.len;
    static const uint8_t zeros[4096];
    uint64_t written = 0;
    for (int64_t i = 0; ok && i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        while (ok && written < t->offset) { /* alignment padding */
            size_t n = (size_t)TRN_MIN(t->offset - written, sizeof(zeros));
            ok = fwrite(zeros, 1, n, f) == n;
            written += n;
        }
        if (t->data) {
            ok = ok && fwrite(t->data, 1, t->bytes, f) == t->bytes;
            written += t->bytes;
        } else {
            for (size_t left = t->bytes; ok && left > 0;) {
                size_t n = TRN_MIN(left, sizeof(zeros));
                ok = fwrite(zeros, 1, n, f) == n;
                left -= n;
            }
            written += t->bytes;
        }
    }
    while (ok && written < w->data_bytes) {
        size_t n = (size_t)TRN_MIN(w->data_bytes - written, sizeof(zeros));
        ok = fwrite(zeros, 1, n, f) == n;
        written += n;
    }
    free(head.data);
    if (!ok) {
        status = trn_fail(TRN_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        trn_output_abort(&out);
        return status;
    }
    return trn_output_commit(&out);
}
