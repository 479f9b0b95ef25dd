/* safetensors.c: the Hugging Face safetensors reader (see safetensors.h).
 *
 * Owns: memory-mapping each .safetensors file, parsing its JSON header with cJSON, checking every tensor entry
 * (dtype, shape, data offsets) against the file, and the sharded layout (model.safetensors.index.json's
 * "weight_map"). Tensors are kept sorted by name, so lookups are binary searches and a name that appears twice
 * (within a file or across shards) is found while opening. */
#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tensor_types.h"

#define ST_INDEX_NAME "model.safetensors.index.json"
#define ST_SINGLE_NAME "model.safetensors"

typedef struct {
    char *path;
    uint8_t *map;
    size_t size;
} st_file;

struct trn_safetensors {
    st_file *files;
    int n_files, cap_files;
    trn_st_tensor *tensors; /* sorted by name once every file is read */
    int n_tensors, cap_tensors;
};

/* ---- small helpers ---- */

static size_t dtype_size(trn_st_dtype dtype) { return dtype == TRN_ST_F32 ? 4 : 2; }

/* A NUL-terminated copy with control characters replaced by '?', so a name quoted in a message stays on
 * one line (as gguf.c does for GGUF names). */
static char *name_dup(const char *s) {
    size_t n = strlen(s);
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i <= n; i++)
        out[i] = (i < n && ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)) ? '?' : s[i];
    return out;
}

static char *path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *out = malloc(a + b + 2);
    if (!out)
        return NULL;
    memcpy(out, dir, a);
    size_t pos = a;
    if (a > 0 && dir[a - 1] != '/')
        out[pos++] = '/';
    memcpy(out + pos, name, b + 1);
    return out;
}

/* A JSON number that is a non-negative integer below 2^53 (exact in a double). */
static int json_uint(const cJSON *item, uint64_t *out) {
    if (!cJSON_IsNumber(item))
        return 0;
    double v = item->valuedouble;
    if (!(v >= 0.0) || v > 9007199254740992.0 || floor(v) != v)
        return 0;
    *out = (uint64_t)v;
    return 1;
}

static int parse_dtype(const char *s, trn_st_dtype *out) {
    if (strcmp(s, "F32") == 0)
        *out = TRN_ST_F32;
    else if (strcmp(s, "F16") == 0)
        *out = TRN_ST_F16;
    else if (strcmp(s, "BF16") == 0)
        *out = TRN_ST_BF16;
    else
        return 0;
    return 1;
}

static trn_status add_tensor_slot(trn_safetensors *st, trn_st_tensor **out) {
    if (st->n_tensors == st->cap_tensors) {
        int cap = st->cap_tensors ? 2 * st->cap_tensors : 256;
        trn_st_tensor *grown = realloc(st->tensors, (size_t)cap * sizeof(trn_st_tensor));
        if (!grown)
            return trn_fail(TRN_ERR_NOMEM, "out of memory reading safetensors headers");
        st->tensors = grown;
        st->cap_tensors = cap;
    }
    *out = &st->tensors[st->n_tensors];
    memset(*out, 0, sizeof(**out));
    return TRN_OK;
}

/* ---- one file ---- */

/* Checks one "name": {"dtype", "shape", "data_offsets"} entry of the header of `f`, whose data section is
 * data[0 .. data_size), and fills *t (all but its name). */
static trn_status check_entry(const st_file *f, const char *name, const cJSON *entry, const uint8_t *data,
                              uint64_t data_size, trn_st_tensor *t) {
    if (!cJSON_IsObject(entry))
        return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s': header entry is not a JSON object", f->path, name);
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(entry, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    if (!cJSON_IsString(dtype) || !cJSON_IsArray(shape) || !cJSON_IsArray(offsets))
        return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s' lacks a \"dtype\" string, a \"shape\" array or a "
                        "\"data_offsets\" array", f->path, name);
    if (!parse_dtype(dtype->valuestring, &t->dtype)) {
        char *shown = name_dup(dtype->valuestring);
        trn_status status = trn_fail(TRN_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %.32s, which Trinity does not "
                                     "convert (F32, F16, BF16 are supported)", f->path, name, shown ? shown : "?");
        free(shown);
        return status;
    }
    const int n_dims = cJSON_GetArraySize(shape);
    if (n_dims < 1 || n_dims > 4)
        return trn_fail(TRN_ERR_UNSUPPORTED, "%s: tensor '%s' has %d dimensions (1 to 4 are supported)", f->path, name,
                        n_dims);
    uint64_t dims[4] = {0}, n_elems = 0, want = 0;
    int d = 0;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, shape) {
        if (!json_uint(dim, &dims[d]))
            return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s': shape dimension %d is not a non-negative integer",
                            f->path, name, d);
        t->shape[d] = (int64_t)dims[d];
        d++;
    }
    /* the element count and the byte count both checked: a shape whose bytes wrap around 2^64 is not small */
    if (!trn_size_product(dims, n_dims, &n_elems) || !trn_size_mul(n_elems, dtype_size(t->dtype), &want) ||
        n_elems > (uint64_t)INT64_MAX)
        return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s': shape has more elements than any file can hold",
                        f->path, name);
    t->n_dims = n_dims;
    t->n_elems = (int64_t)n_elems;
    uint64_t begin = 0, end = 0;
    if (cJSON_GetArraySize(offsets) != 2 || !json_uint(cJSON_GetArrayItem(offsets, 0), &begin) ||
        !json_uint(cJSON_GetArrayItem(offsets, 1), &end) || begin > end)
        return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s': data_offsets is not a pair [begin, end] of integers with "
                        "begin <= end", f->path, name);
    if (end > data_size)
        return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the data "
                        "(%llu bytes): truncated file?", f->path, name, (unsigned long long)begin,
                        (unsigned long long)end, (unsigned long long)data_size);
    if (end - begin != want)
        return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, its %s shape "
                        "needs %llu", f->path, name, (unsigned long long)begin, (unsigned long long)end,
                        (unsigned long long)(end - begin), dtype->valuestring, (unsigned long long)want);
    t->data = data + begin;
    t->file = f->path;
    return TRN_OK;
}

/* Adds the tensor of one header entry. */
static trn_status parse_entry(trn_safetensors *st, const st_file *f, const cJSON *entry, const uint8_t *data,
                              uint64_t data_size) {
    trn_st_tensor t;
    memset(&t, 0, sizeof(t));
    t.name = name_dup(entry->string);
    if (!t.name)
        return trn_fail(TRN_ERR_NOMEM, "out of memory reading %s", f->path);
    trn_st_tensor *slot = NULL;
    trn_status status = check_entry(f, t.name, entry, data, data_size, &t);
    if (status == TRN_OK)
        status = add_tensor_slot(st, &slot);
    if (status != TRN_OK) {
        free(t.name);
        return status;
    }
    *slot = t;
    st->n_tensors++;
    return TRN_OK;
}

/* Maps `path` (already recorded in st->files[index]) and reads its header. */
static trn_status read_file(trn_safetensors *st, int index) {
    st_file *f = &st->files[index];
    int fd = open(f->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return trn_fail(TRN_ERR_IO, "%s: cannot open: %s", f->path, strerror(errno));
    uint64_t file_size = 0;
    const trn_status checked = trn_check_regular_fd(fd, f->path, SIZE_MAX, "a safetensors file", &file_size);
    if (checked != TRN_OK) {
        close(fd);
        return checked;
    }
    size_t size = (size_t)file_size;
    if (size < 8) {
        close(fd);
        return trn_fail(TRN_ERR_FORMAT, "%s: truncated safetensors file: %zu bytes, less than the 8-byte header "
                        "length", f->path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return trn_fail(TRN_ERR_IO, "%s: cannot map: %s", f->path, strerror(errno));
    f->map = map;
    f->size = size;

    /* layout: u64 little-endian N, N bytes of JSON, then the data section */
    uint64_t header_len = 0;
    memcpy(&header_len, f->map, 8);
    if (header_len > size - 8)
        return trn_fail(TRN_ERR_FORMAT, "%s: header length %llu runs past the end of the file (%zu bytes): not a "
                        "safetensors file, or truncated", f->path, (unsigned long long)header_len, size);
    const char *json = (const char *)f->map + 8;
    cJSON *root = cJSON_ParseWithLength(json, (size_t)header_len);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        long where = (at && at >= json && at <= json + header_len) ? (long)(at - json) : -1;
        return trn_fail(TRN_ERR_FORMAT, "%s: malformed JSON header (near byte %ld of %llu)", f->path, where,
                        (unsigned long long)header_len);
    }
    trn_status status = TRN_OK;
    if (!cJSON_IsObject(root)) {
        status = trn_fail(TRN_ERR_FORMAT, "%s: the JSON header is not an object", f->path);
    } else {
        const uint8_t *data = f->map + 8 + header_len;
        uint64_t data_size = size - 8 - header_len;
        const cJSON *entry;
        cJSON_ArrayForEach(entry, root) {
            if (entry->string && strcmp(entry->string, "__metadata__") == 0)
                continue;
            status = parse_entry(st, f, entry, data, data_size);
            if (status != TRN_OK)
                break;
        }
    }
    cJSON_Delete(root);
    return status;
}

/* Records a file to read; returns its index in *index. */
static trn_status add_file(trn_safetensors *st, char *path, int *index) {
    if (st->n_files == st->cap_files) {
        int cap = st->cap_files ? 2 * st->cap_files : 8;
        st_file *grown = realloc(st->files, (size_t)cap * sizeof(st_file));
        if (!grown) {
            free(path);
            return trn_fail(TRN_ERR_NOMEM, "out of memory opening safetensors files");
        }
        st->files = grown;
        st->cap_files = cap;
    }
    st->files[st->n_files] = (st_file){path, NULL, 0};
    *index = st->n_files++;
    return TRN_OK;
}

static int compare_tensors(const void *a, const void *b) {
    return strcmp(((const trn_st_tensor *)a)->name, ((const trn_st_tensor *)b)->name);
}

/* Sorts the tensors by name and rejects a name that appears twice. */
static trn_status finish(trn_safetensors *st) {
    if (st->n_tensors > 1)
        qsort(st->tensors, (size_t)st->n_tensors, sizeof(trn_st_tensor), compare_tensors);
    for (int i = 1; i < st->n_tensors; i++) {
        const trn_st_tensor *a = &st->tensors[i - 1], *b = &st->tensors[i];
        if (strcmp(a->name, b->name) == 0) {
            if (a->file == b->file)
                return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s' appears twice in the header", a->file, a->name);
            return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s' appears in two shards (also in %s)", b->file, b->name,
                            a->file);
        }
    }
    return TRN_OK;
}

static trn_safetensors *st_new(void) { return calloc(1, sizeof(trn_safetensors)); }

trn_status trn_safetensors_open_file(const char *path, trn_safetensors **out) {
    *out = NULL;
    trn_safetensors *st = st_new();
    char *copy = st ? strdup(path) : NULL;
    if (!copy) {
        free(st);
        return trn_fail(TRN_ERR_NOMEM, "out of memory opening %s", path);
    }
    int index = 0;
    trn_status status = add_file(st, copy, &index);
    if (status == TRN_OK)
        status = read_file(st, index);
    if (status == TRN_OK)
        status = finish(st);
    if (status != TRN_OK) {
        trn_safetensors_close(st);
        return status;
    }
    *out = st;
    return TRN_OK;
}

/* ---- a directory: one file, or shards listed by the index ---- */


static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* A shard name from the index must stay inside the directory: no absolute path, no ".." component. */
static int shard_name_ok(const char *name) {
    if (name[0] == 0 || name[0] == '/')
        return 0;
    for (const char *p = name; *p;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return 0;
        p += n + (slash ? 1 : 0);
    }
    return 1;
}

/* Reads the index at `index_path`, opens every distinct shard it lists, and checks that each tensor of the
 * weight map lives in the shard the map names. */
static trn_status open_sharded(trn_safetensors *st, const char *dir, const char *index_path) {
    char *text = NULL;
    size_t len = 0;
    TRN_TRY(trn_read_file(index_path, TRN_MAX_JSON_BYTES, "a safetensors index", &text, &len));
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root)
        return trn_fail(TRN_ERR_FORMAT, "%s: malformed JSON", index_path);
    trn_status status = TRN_OK;
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    const cJSON *entry;
    if (!cJSON_IsObject(map)) {
        status = trn_fail(TRN_ERR_FORMAT, "%s: no \"weight_map\" object", index_path);
        goto done;
    }
    /* 1. the distinct shards, in order of first mention */
    cJSON_ArrayForEach(entry, map) {
        if (!cJSON_IsString(entry) || !shard_name_ok(entry->valuestring)) {
            char *shown = name_dup(entry->string);
            status = trn_fail(TRN_ERR_FORMAT, "%s: weight_map entry '%s' is not a shard file name inside the "
                              "directory", index_path, shown ? shown : "?");
            free(shown);
            goto done;
        }
        char *path = path_join(dir, entry->valuestring);
        if (!path) {
            status = trn_fail(TRN_ERR_NOMEM, "out of memory reading %s", index_path);
            goto done;
        }
        int seen = 0;
        for (int i = 0; i < st->n_files && !seen; i++)
            seen = strcmp(st->files[i].path, path) == 0;
        if (seen) {
            free(path);
            continue;
        }
        if (!file_exists(path)) {
            status = trn_fail(TRN_ERR_IO, "%s: missing shard listed in " ST_INDEX_NAME, path);
            free(path);
            goto done;
        }
        int index = 0;
        status = add_file(st, path, &index);
        if (status != TRN_OK)
            goto done;
    }
    if (st->n_files == 0) {
        status = trn_fail(TRN_ERR_FORMAT, "%s: \"weight_map\" lists no tensors", index_path);
        goto done;
    }
    /* 2. read them */
    for (int i = 0; i < st->n_files && status == TRN_OK; i++)
        status = read_file(st, i);
    if (status == TRN_OK)
        status = finish(st);
    if (status != TRN_OK)
        goto done;
    /* 3. every tensor of the map where the map says */
    cJSON_ArrayForEach(entry, map) {
        const trn_st_tensor *t = trn_safetensors_find(st, entry->string);
        char *path = path_join(dir, entry->valuestring);
        if (!path) {
            status = trn_fail(TRN_ERR_NOMEM, "out of memory reading %s", index_path);
            goto done;
        }
        if (!t || strcmp(t->file, path) != 0) {
            char *shown = name_dup(entry->string);
            status = trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s' is listed in %s, but that shard does not hold it",
                              index_path, shown ? shown : "?", path);
            free(shown);
            free(path);
            goto done;
        }
        free(path);
    }
done:
    cJSON_Delete(root);
    return status;
}

trn_status trn_safetensors_open_dir(const char *dir, trn_safetensors **out) {
    *out = NULL;
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return trn_fail(TRN_ERR_IO, "%s: cannot open: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return trn_fail(TRN_ERR_INVALID, "%s: not a directory (a Hugging Face checkpoint is a directory)", dir);
    char *index_path = path_join(dir, ST_INDEX_NAME);
    char *single_path = path_join(dir, ST_SINGLE_NAME);
    trn_safetensors *st = st_new();
    trn_status status = TRN_OK;
    if (!index_path || !single_path || !st) {
        status = trn_fail(TRN_ERR_NOMEM, "out of memory opening %s", dir);
    } else if (file_exists(index_path)) {
        status = open_sharded(st, dir, index_path);
    } else if (file_exists(single_path)) {
        int index = 0;
        status = add_file(st, single_path, &index);
        single_path = NULL; /* owned by st now */
        if (status == TRN_OK)
            status = read_file(st, index);
        if (status == TRN_OK)
            status = finish(st);
    } else {
        status = trn_fail(TRN_ERR_IO, "%s: neither " ST_SINGLE_NAME " nor " ST_INDEX_NAME " exists", dir);
    }
    free(index_path);
    free(single_path);
    if (status != TRN_OK) {
        trn_safetensors_close(st);
        return status;
    }
    *out = st;
    return TRN_OK;
}

void trn_safetensors_close(trn_safetensors *st) {
    if (!st)
        return;
    for (int i = 0; i < st->n_tensors; i++)
        free(st->tensors[i].name);
    free(st->tensors);
    for (int i = 0; i < st->n_files; i++) {
        if (st->files[i].map)
            munmap(st->files[i].map, st->files[i].size);
        free(st->files[i].path);
    }
    free(st->files);
    free(st);
}

int trn_safetensors_count(const trn_safetensors *st) { return st->n_tensors; }

const trn_st_tensor *trn_safetensors_at(const trn_safetensors *st, int i) {
    return i >= 0 && i < st->n_tensors ? &st->tensors[i] : NULL;
}

const trn_st_tensor *trn_safetensors_find(const trn_safetensors *st, const char *name) {
    if (st->n_tensors == 0) /* no array to search (bsearch must not be handed NULL, even for 0 elements) */
        return NULL;
    trn_st_tensor key = {0};
    key.name = (char *)name;
    return bsearch(&key, st->tensors, (size_t)st->n_tensors, sizeof(trn_st_tensor), compare_tensors);
}

void trn_st_to_f32(const trn_st_tensor *t, float *dst) {
    const uint8_t *src = t->data; /* little-endian elements, possibly unaligned */
    switch (t->dtype) {
    case TRN_ST_F32:
        memcpy(dst, src, (size_t)t->n_elems * 4);
        break;
    case TRN_ST_F16:
        for (int64_t i = 0; i < t->n_elems; i++)
            dst[i] = trn_fp16_to_f32((trn_fp16)(src[2 * i] | (src[2 * i + 1] << 8)));
        break;
    case TRN_ST_BF16:
        for (int64_t i = 0; i < t->n_elems; i++)
            dst[i] = trn_bf16_to_f32((trn_bf16)(src[2 * i] | (src[2 * i + 1] << 8)));
        break;
    }
}
