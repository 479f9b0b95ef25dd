/* convert_trin.c: `trinity convert --from trin PACKED.bin --base HF_DIR`: the packed ternary file (TRIN) of the
 * original Python release plus its base Hugging Face checkpoint into GGUF.
 *
 * Owns: reading and validating the TRIN file, and turning each layer's codes into weights. Everything else (the
 * base checkpoint's config, embeddings, norms, vocabulary, the Q/K permutation, quantization, writing) is the
 * driver in convert_hf.c.
 *
 * TRIN layout (little-endian): "TRIN", then for each linear layer in module order (per block: q, k, v, o, gate,
 * up, down; then the LM head) a u32 byte count and that many bytes of 2-bit codes, four per byte, the first
 * weight in the top two bits; code = sign(w) + 1 (0 -> -1, 1 -> 0, 2 -> +1; 3 is invalid). Weights are in the
 * Hugging Face order of the layer's [out][in] matrix; the byte count is ceil(out * in / 4) (the unused low bits of
 * a last, partial byte are ignored).
 *
 * A layer's weights are scale * (code - 1) with scale = std(base weight) / std(code - 1) over the whole tensor, as
 * the original Python release's loader computes it (its torch .std() divides by N - 1, these by N, in double: the
 * ratio is the same). Where the codes have no spread (all -1, all 0 or all +1: std 0) that loader skips the
 * scaling, and so does this one: the weights stay -1, 0 or +1. The file may stop after the last block's down
 * projection when the base checkpoint ties its LM head to the embeddings (the output then ties too); where it has an
 * LM head layer and the base is tied, that layer's scale comes from the embeddings. */
#define _POSIX_C_SOURCE 200809L
#include "convert_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"

typedef struct {
    const char *path;
    const uint8_t *map;
    size_t size;
    size_t *offsets; /* [n_linear]: where each layer's codes start */
    int has_head;
} trin_file;

static trn_status trin_map(const char *path, trin_file *f) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return trn_fail(TRN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint64_t file_size = 0;
    const trn_status checked = trn_check_regular_fd(fd, path, SIZE_MAX, "a TRIN file", &file_size);
    if (checked != TRN_OK) {
        close(fd);
        return checked;
    }
    if (file_size < 4) {
        close(fd);
        return trn_fail(TRN_ERR_FORMAT, "%s: not a TRIN file (%llu bytes, no \"TRIN\" magic)", path,
                        (unsigned long long)file_size);
    }
    void *map = mmap(NULL, (size_t)file_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return trn_fail(TRN_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    f->map = map;
    f->size = (size_t)file_size;
    if (memcmp(f->map, "TRIN", 4) != 0)
        return trn_fail(TRN_ERR_FORMAT, "%s: not a TRIN file (bad magic)", path);
    return TRN_OK;
}

/* Walks the layer records against the base shapes: every byte count as the shape needs, nothing truncated,
 * nothing after the last layer. Records where each layer's codes start. */
static trn_status trin_index(trin_file *f, const trn_hf_config *cfg, const trn_hf_linear *layers, int n_linear) {
    size_t pos = 4;
    for (int i = 0; i < n_linear; i++) {
        const trn_hf_linear *x = &layers[i];
        const int is_head = i == n_linear - 1;
        if (is_head && pos == f->size) {
            if (!cfg->tied)
                return trn_fail(TRN_ERR_FORMAT, "%s: truncated TRIN file: it ends before layer %s (the LM head; the "
                                "base checkpoint does not tie it to the embeddings)", f->path, x->label);
            f->has_head = 0; /* tied: the output uses token_embd */
            return TRN_OK;
        }
        if (f->size - pos < 4)
            return trn_fail(TRN_ERR_FORMAT, "%s: truncated TRIN file: layer %s has no byte count (at byte %zu)",
                            f->path, x->label, pos);
        const uint8_t *p = f->map + pos;
        const uint64_t count = (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24;
        uint64_t weights = 0;
        if (!trn_size_mul((uint64_t)x->rows, (uint64_t)x->cols, &weights) || weights > UINT64_MAX - 3)
            return trn_fail(TRN_ERR_FORMAT, "%s: layer %s: the base shape [%lld, %lld] is too large", f->path,
                            x->label, (long long)x->rows, (long long)x->cols);
        const uint64_t want = (weights + 3) / 4;
        pos += 4;
        if (count != want)
            return trn_fail(TRN_ERR_FORMAT, "%s: layer %s has %llu bytes of codes, the base checkpoint's shape "
                            "[%lld, %lld] needs %llu", f->path, x->label, (unsigned long long)count,
                            (long long)x->rows, (long long)x->cols, (unsigned long long)want);
        if (count > f->size - pos)
            return trn_fail(TRN_ERR_FORMAT, "%s: truncated TRIN file: layer %s needs %llu bytes of codes, %zu remain",
                            f->path, x->label, (unsigned long long)count, f->size - pos);
        f->offsets[i] = pos;
        pos += (size_t)count;
    }
    if (pos != f->size)
        return trn_fail(TRN_ERR_FORMAT, "%s: %zu bytes after the last layer (%s): not a TRIN file of this base "
                        "checkpoint", f->path, f->size - pos, layers[n_linear - 1].label);
    f->has_head = 1;
    return TRN_OK;
}

/* Standard deviation of x[n] dividing by n, in double (two passes). */
static double std_dev(const float *x, int64_t n) {
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++)
        sum += x[i];
    const double mean = sum / (double)n;
    double sq = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double d = x[i] - mean;
        sq += d * d;
    }
    return sqrt(sq / (double)n);
}

/* The layer's weights: scale * (code - 1), scale = std(base) / std(code - 1), or 1 where std(code - 1) is 0.
 * dst[rows * cols], HF order. */
static trn_status trin_linear(void *ctx, const trn_hf_linear *layer, const trn_st_tensor *base, float *dst) {
    const trin_file *f = ctx;
    const int64_t n = layer->rows * layer->cols;
    trn_st_to_f32(base, dst);
    const double std_base = n > 0 ? std_dev(dst, n) : 0.0;

    /* weight i is in byte i / 4, bits 7-6 for i % 4 == 0 down to bits 1-0 for i % 4 == 3 */
    const uint8_t *codes = f->map + f->offsets[layer->index];
    int64_t count[3] = {0, 0, 0};
    for (int64_t i = 0; i < n; i++) {
        const int code = (codes[i >> 2] >> (6 - 2 * (i & 3))) & 3;
        if (code == 3)
            return trn_fail(TRN_ERR_FORMAT, "%s: layer %s: weight %lld has the invalid code 3 (byte %zu)", f->path,
                            layer->label, (long long)i, f->offsets[layer->index] + (size_t)(i >> 2));
        count[code]++;
        dst[i] = (float)(code - 1);
    }
    /* std of q in {-1, 0, +1}: E[q^2] - E[q]^2 from the counts */
    const double mean_q = n > 0 ? (double)(count[2] - count[0]) / (double)n : 0.0;
    const double var_q = n > 0 ? (double)(count[0] + count[2]) / (double)n - mean_q * mean_q : 0.0;
    const double std_q = sqrt(fmax(var_q, 0.0));
    /* codes that are all -1 or all +1 have no spread: the original Python release's loader leaves them unscaled */
    const float scale = std_q > 0.0 ? (float)(std_base / std_q) : 1.0f;
    for (int64_t i = 0; i < n; i++)
        dst[i] *= scale;
    return TRN_OK;
}

/* general.name: the TRIN file's name without directory and extension. */
static void file_stem(const char *path, char *out, size_t size) {
    const char *slash = strrchr(path, '/');
    const char *start = slash ? slash + 1 : path;
    const char *dot = strrchr(start, '.');
    const size_t len = dot && dot != start ? (size_t)(dot - start) : strlen(start);
    snprintf(out, size, "%.*s", (int)len, start);
}

trn_status trn_convert_trin(const trn_convert_options *opts) {
    if (!opts->base_dir)
        return trn_fail(TRN_ERR_INVALID, "--from trin needs --base HF_DIR: the base checkpoint gives shapes, scales, "
                        "norms, embeddings and the vocabulary");
    trn_hf_config cfg;
    TRN_TRY(trn_hf_read_config(opts->base_dir, &cfg));
    const int n_linear = cfg.hp.n_layer * TRN_HF_LINEARS_PER_LAYER + 1;
    trn_hf_linear *layers = calloc((size_t)n_linear, sizeof(trn_hf_linear));
    trin_file f = {opts->input, NULL, 0, calloc((size_t)n_linear, sizeof(size_t)), 0};
    trn_status status = TRN_OK;
    if (!layers || !f.offsets)
        status = trn_fail(TRN_ERR_NOMEM, "out of memory reading %s", opts->input);
    if (status == TRN_OK) {
        trn_hf_linear_layers(&cfg, layers);
        status = trin_map(opts->input, &f);
    }
    if (status == TRN_OK)
        status = trin_index(&f, &cfg, layers, n_linear);
    if (status == TRN_OK) {
        char name[128];
        file_stem(opts->input, name, sizeof(name));
        status = trn_hf_convert_checkpoint(opts, opts->base_dir, &cfg, name, f.has_head, trin_linear, &f);
    }
    if (f.map)
        munmap((void *)f.map, f.size);
    free(f.offsets);
    free(layers);
    return status;
}
