/* convert_common.c: what every converter shares (convert_internal.h): hyperparameter metadata, ternarization
 * rules, the Q/K row permutation, quantizing tensors into writer-owned memory, and the progress bar. Calls no
 * converter: the options and the dispatch are convert.c's, vocabularies convert_vocab.c's, the per-format
 * readers convert_hf.c's, convert_trin.c's and convert_llama2c.c's. */
#define _POSIX_C_SOURCE 200809L
#include "convert_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu_fallback/quants.h"

/* ---- metadata ---- */

void trn_convert_write_hparams(trn_gguf_writer *w, const trn_hparams *hp, const char *name) {
    trn_gguf_set_string(w, "general.architecture", "llama");
    trn_gguf_set_string(w, "general.name", name);
    trn_gguf_set_u32(w, "llama.block_count", (uint32_t)hp->n_layer);
    trn_gguf_set_u32(w, "llama.context_length", (uint32_t)hp->n_ctx_train);
    trn_gguf_set_u32(w, "llama.embedding_length", (uint32_t)hp->n_embd);
    trn_gguf_set_u32(w, "llama.feed_forward_length", (uint32_t)hp->n_ff);
    trn_gguf_set_u32(w, "llama.attention.head_count", (uint32_t)hp->n_head);
    trn_gguf_set_u32(w, "llama.attention.head_count_kv", (uint32_t)hp->n_head_kv);
    trn_gguf_set_u32(w, "llama.rope.dimension_count", (uint32_t)(hp->n_embd / hp->n_head));
    trn_gguf_set_f32(w, "llama.rope.freq_base", hp->rope_base);
    trn_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", hp->rms_eps);
    trn_gguf_set_u32(w, "llama.vocab_size", (uint32_t)hp->n_vocab);
}

/* ---- tensor data ---- */

void *trn_convert_arena_alloc(trn_convert_arena *a, size_t bytes) {
    if (a->n == a->cap) {
        int cap = a->cap ? 2 * a->cap : 64;
        void **grown = realloc(a->blocks, (size_t)cap * sizeof(void *));
        if (!grown)
            return NULL;
        a->blocks = grown;
        a->cap = cap;
    }
    void *p = trn_alloc(bytes);
    if (p)
        a->blocks[a->n++] = p;
    return p;
}

void trn_convert_arena_free(trn_convert_arena *a) {
    for (int i = 0; i < a->n; i++)
        trn_free(a->blocks[i]);
    free(a->blocks);
    memset(a, 0, sizeof(*a));
}

float trn_ternarize(float *w, int64_t n, trn_ternary_rule rule) {
    if (n <= 0)
        return 0.0f;
    double scale;
    if (rule == TRN_TERNARY_ABSMEAN) {
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++)
            sum += fabs((double)w[i]);
        scale = sum / (double)n;
        const double inv = scale > 0 ? 1.0 / scale : 0.0;
        for (int64_t i = 0; i < n; i++) {
            double q = nearbyint((double)w[i] * inv);
            q = q > 1 ? 1 : q < -1 ? -1 : q;
            w[i] = (float)(q * scale);
        }
        return (float)scale;
    }
    /* the original Python release's rule: q = sign(w); s = std(w) / std(q) over the tensor (dividing by n; torch's
     * N - 1 gives the same ratio), and s = 1 where std(q) is 0 (every sign the same), as that release's loader
     * leaves such codes unscaled */
    double sw = 0, sw2 = 0, sq = 0, sq2 = 0;
    for (int64_t i = 0; i < n; i++) {
        const double q = w[i] > 0 ? 1.0 : w[i] < 0 ? -1.0 : 0.0;
        sw += w[i];
        sw2 += (double)w[i] * w[i];
        sq += q;
        sq2 += q * q;
    }
    const double std_w = sqrt(fmax(sw2 / n - (sw / n) * (sw / n), 0.0));
    const double std_q = sqrt(fmax(sq2 / n - (sq / n) * (sq / n), 0.0));
    scale = std_q > 0 ? std_w / std_q : 1.0;
    for (int64_t i = 0; i < n; i++)
        w[i] = (float)((w[i] > 0 ? 1.0 : w[i] < 0 ? -1.0 : 0.0) * scale);
    return (float)scale;
}

void trn_permute_qk(float *w, int n_head, int head_dim, int64_t cols) {
    const size_t row_bytes = (size_t)cols * sizeof(float);
    float *head = malloc((size_t)head_dim * row_bytes);
    if (!head)
        abort(); /* one head's rows: a few hundred KB at most */
    for (int h = 0; h < n_head; h++) {
        float *rows = w + (int64_t)h * head_dim * cols;
        memcpy(head, rows, (size_t)head_dim * row_bytes);
        for (int j = 0; j < head_dim / 2; j++)
            for (int k = 0; k < 2; k++) /* GGUF row 2j + k <- HF row k * hd/2 + j */
                memcpy(rows + (int64_t)(2 * j + k) * cols, head + (int64_t)(k * head_dim / 2 + j) * cols, row_bytes);
    }
    free(head);
}

trn_status trn_convert_add_tensor(trn_gguf_writer *w, trn_convert_arena *arena, const char *name, trn_type type,
                                  const float *data, int64_t rows, int64_t cols) {
    const size_t row_bytes = trn_row_bytes(type, cols);
    if (row_bytes == 0)
        return trn_fail(TRN_ERR_UNSUPPORTED, "tensor '%s' has rows of %lld values; %s needs a multiple of %d: use "
                        "--type f16 or f32", name, (long long)cols, trn_type_name(type), trn_type_get(type)->block_size);
    uint8_t *out = trn_convert_arena_alloc(arena, row_bytes * (size_t)rows);
    if (!out)
        return trn_fail(TRN_ERR_NOMEM, "out of memory converting '%s' (%zu bytes)", name, row_bytes * (size_t)rows);
    for (int64_t r = 0; r < rows; r++)
        if (!trn_quantize_row(type, data + r * cols, out + r * row_bytes, cols))
            return trn_fail(TRN_ERR_UNSUPPORTED, "tensor '%s': cannot write type %s", name, trn_type_name(type));
    const int64_t ne[2] = {cols, rows};
    return trn_gguf_add_tensor(w, name, type, rows > 1 ? 2 : 1, ne, out);
}

/* ---- progress ---- */

void trn_progress_begin(trn_progress *p, int enabled, const char *label, int64_t total) {
    memset(p, 0, sizeof(*p));
    p->enabled = enabled && isatty(2);
    p->label = label;
    p->total = total > 0 ? total : 1;
    p->last_percent = -1;
}

void trn_progress_add(trn_progress *p, int64_t amount) {
    p->done += amount;
    if (!p->enabled)
        return;
    const int percent = (int)(100 * TRN_MIN(p->done, p->total) / p->total);
    if (percent == p->last_percent)
        return;
    p->last_percent = percent;
    char bar[41];
    const int filled = percent * 40 / 100;
    for (int i = 0; i < 40; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[40] = 0;
    fprintf(stderr, "\r%s [%s] %3d%%", p->label, bar, percent);
}

void trn_progress_end(trn_progress *p) {
    if (p->enabled && p->last_percent >= 0)
        fprintf(stderr, "\n");
}
