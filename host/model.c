/* model.c: binding a GGUF file to a Llama model: hyperparameters, tensor lookup and shape checks. */
#define _POSIX_C_SOURCE 200809L
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Types a matrix-vector product (and the embedding lookup) can read. All known types qualify. */
static int matrix_type_ok(trn_type type) { return trn_type_get(type) != NULL; }

static trn_status find_tensor(const trn_model *m, const char *name, int64_t ne0, int64_t ne1, int is_vector,
                              const trn_gguf_tensor **out) {
    const char *path = trn_gguf_path(m->gguf);
    const trn_gguf_tensor *t = trn_gguf_find_tensor(m->gguf, name);
    if (!t)
        return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s' is missing", path, name);
    int64_t want1 = is_vector ? 1 : ne1;
    if (t->ne[0] != ne0 || t->ne[1] != want1 || t->ne[2] != 1 || t->ne[3] != 1) {
        if (is_vector)
            return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s' has shape [%lld, %lld], expected [%lld]", path, name,
                            (long long)t->ne[0], (long long)t->ne[1], (long long)ne0);
        return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s' has shape [%lld, %lld], expected [%lld, %lld] (ne0, ne1)",
                        path, name, (long long)t->ne[0], (long long)t->ne[1], (long long)ne0, (long long)ne1);
    }
    if (is_vector && t->type != TRN_TYPE_F32 && t->type != TRN_TYPE_F16 && t->type != TRN_TYPE_BF16)
        return trn_fail(TRN_ERR_UNSUPPORTED, "%s: norm tensor '%s' has type %s (f32, f16 or bf16 expected)", path,
                        name, trn_type_name(t->type));
    if (!is_vector && !matrix_type_ok(t->type))
        return trn_fail(TRN_ERR_UNSUPPORTED, "%s: tensor '%s' has unsupported type %s", path, name,
                        trn_type_name(t->type));
    *out = t;
    return TRN_OK;
}

/* An integer hyperparameter from 1 to max (fallback where absent and not required). */
static trn_status get_in_range(const trn_gguf *g, const char *key, int *out, int required, int fallback, int max) {
    int64_t v = fallback;
    TRN_TRY(trn_gguf_get_int(g, key, &v, required ? TRN_ERR_FORMAT : TRN_OK));
    if (v < 1 || v > max)
        return trn_fail(TRN_ERR_FORMAT, "%s: metadata key '%s' = %lld is out of range (1 to %d)", trn_gguf_path(g), key,
                        (long long)v, max);
    *out = (int)v;
    return TRN_OK;
}

static trn_status get_positive(const trn_gguf *g, const char *key, int *out, int required, int fallback) {
    return get_in_range(g, key, out, required, fallback, 1 << 24);
}

static trn_status read_hparams(trn_model *m) {
    const trn_gguf *g = m->gguf;
    const char *path = trn_gguf_path(g);
    trn_gguf_str arch = {"llama", 5};
    TRN_TRY(trn_gguf_get_string(g, "general.architecture", &arch, TRN_ERR_FORMAT));
    if (arch.len != 5 || memcmp(arch.ptr, "llama", 5) != 0)
        return trn_fail(TRN_ERR_UNSUPPORTED, "%s: architecture '%.*s' is not supported (llama is)", path,
                        (int)TRN_MIN(arch.len, 64), arch.ptr);
    trn_hparams *hp = &m->hp;
    TRN_TRY(get_positive(g, "llama.block_count", &hp->n_layer, 1, 0));
    TRN_TRY(get_positive(g, "llama.embedding_length", &hp->n_embd, 1, 0));
    TRN_TRY(get_positive(g, "llama.feed_forward_length", &hp->n_ff, 1, 0));
    TRN_TRY(get_positive(g, "llama.attention.head_count", &hp->n_head, 1, 0));
    TRN_TRY(get_positive(g, "llama.attention.head_count_kv", &hp->n_head_kv, 0, hp->n_head));
    TRN_TRY(get_in_range(g, "llama.context_length", &hp->n_ctx_train, 0, 2048, TRN_MAX_CONTEXT));
    if (hp->n_embd % hp->n_head != 0)
        return trn_fail(TRN_ERR_FORMAT, "%s: embedding_length %d is not a multiple of head_count %d", path, hp->n_embd,
                        hp->n_head);
    if (hp->n_head % hp->n_head_kv != 0)
        return trn_fail(TRN_ERR_FORMAT, "%s: head_count %d is not a multiple of head_count_kv %d", path, hp->n_head,
                        hp->n_head_kv);
    hp->head_dim = hp->n_embd / hp->n_head;
    if (hp->head_dim % 2 != 0)
        return trn_fail(TRN_ERR_FORMAT, "%s: head size %d is odd; RoPE rotates pairs", path, hp->head_dim);
    int rope_dims = hp->head_dim;
    TRN_TRY(get_positive(g, "llama.rope.dimension_count", &rope_dims, 0, hp->head_dim));
    if (rope_dims != hp->head_dim)
        return trn_fail(TRN_ERR_UNSUPPORTED, "%s: rope.dimension_count %d differs from the head size %d", path,
                        rope_dims, hp->head_dim);
    double base = 10000.0, eps = 1e-5;
    TRN_TRY(trn_gguf_get_float(g, "llama.rope.freq_base", &base, TRN_OK));
    TRN_TRY(trn_gguf_get_float(g, "llama.attention.layer_norm_rms_epsilon", &eps, TRN_OK));
    if (!(base > 1.0) || !isfinite(base) || !(eps > 0.0) || eps > 1.0)
        return trn_fail(TRN_ERR_FORMAT, "%s: rope.freq_base %g or layer_norm_rms_epsilon %g is out of range", path,
                        base, eps);
    hp->rope_base = (float)base;
    hp->rms_eps = (float)eps;
    return TRN_OK;
}

static trn_status bind_tensors(trn_model *m) {
    trn_hparams *hp = &m->hp;
    const trn_gguf_tensor *embd = trn_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!embd)
        return trn_fail(TRN_ERR_FORMAT, "%s: tensor 'token_embd.weight' is missing", trn_gguf_path(m->gguf));
    hp->n_vocab = (int)embd->ne[1];
    TRN_TRY(find_tensor(m, "token_embd.weight", hp->n_embd, hp->n_vocab, 0, &m->token_embd));
    TRN_TRY(find_tensor(m, "output_norm.weight", hp->n_embd, 1, 1, &m->output_norm));
    if (trn_gguf_find_tensor(m->gguf, "output.weight")) {
        TRN_TRY(find_tensor(m, "output.weight", hp->n_embd, hp->n_vocab, 0, &m->output));
    } else {
        m->output = m->token_embd;
        m->output_tied = 1;
    }
    m->layers = calloc((size_t)hp->n_layer, sizeof(trn_layer_weights));
    if (!m->layers)
        return trn_fail(TRN_ERR_NOMEM, "out of memory binding tensors");
    const int64_t q_dim = (int64_t)hp->n_head * hp->head_dim, kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    for (int l = 0; l < hp->n_layer; l++) {
        trn_layer_weights *w = &m->layers[l];
        char name[64];
#define BIND(field, suffix, ne0, ne1, vec)                            \
        snprintf(name, sizeof(name), "blk.%d." suffix ".weight", l); \
        TRN_TRY(find_tensor(m, name, ne0, ne1, vec, &w->field))
        BIND(attn_norm, "attn_norm", hp->n_embd, 1, 1);
        BIND(wq, "attn_q", hp->n_embd, q_dim, 0);
        BIND(wk, "attn_k", hp->n_embd, kv_dim, 0);
        BIND(wv, "attn_v", hp->n_embd, kv_dim, 0);
        BIND(wo, "attn_output", q_dim, hp->n_embd, 0);
        BIND(ffn_norm, "ffn_norm", hp->n_embd, 1, 1);
        BIND(w_gate, "ffn_gate", hp->n_embd, hp->n_ff, 0);
        BIND(w_up, "ffn_up", hp->n_embd, hp->n_ff, 0);
        BIND(w_down, "ffn_down", hp->n_ff, hp->n_embd, 0);
#undef BIND
    }
    return TRN_OK;
}

trn_status trn_model_from_gguf(trn_gguf *gguf, trn_model **out) {
    *out = NULL;
    trn_model *m = calloc(1, sizeof(*m));
    if (!m) {
        trn_gguf_close(gguf);
        return trn_fail(TRN_ERR_NOMEM, "out of memory loading a model");
    }
    m->gguf = gguf;
    trn_gguf_str name;
    const char *path = trn_gguf_path(gguf);
    const char *base = strrchr(path, '/');
    snprintf(m->name, sizeof(m->name), "%s", base ? base + 1 : path);
    if (trn_gguf_get_string(gguf, "general.name", &name, TRN_ERR_FORMAT) == TRN_OK)
        snprintf(m->name, sizeof(m->name), "%.*s", (int)TRN_MIN(name.len, sizeof(m->name) - 1), name.ptr);
    trn_status status = read_hparams(m);
    if (status == TRN_OK)
        status = bind_tensors(m);
    if (status == TRN_OK)
        status = trn_tokenizer_from_gguf(gguf, &m->tokenizer);
    if (status == TRN_OK && trn_tokenizer_n_vocab(m->tokenizer) != m->hp.n_vocab)
        status = trn_fail(TRN_ERR_FORMAT, "%s: the vocabulary has %d tokens but token_embd.weight has %d rows", path,
                          trn_tokenizer_n_vocab(m->tokenizer), m->hp.n_vocab);
    if (status != TRN_OK) {
        trn_model_free(m);
        return status;
    }
    *out = m;
    return TRN_OK;
}

trn_status trn_model_open_gguf(const char *path, trn_gguf **out) {
    return strncmp(path, "synthetic:", 10) == 0 ? trn_synthetic_gguf(path + 10, out) : trn_gguf_open(path, out);
}

trn_status trn_model_load(const char *path, trn_model **out) {
    trn_gguf *gguf = NULL;
    TRN_TRY(trn_model_open_gguf(path, &gguf));
    return trn_model_from_gguf(gguf, out);
}

void trn_model_free(trn_model *m) {
    if (!m)
        return;
    trn_tokenizer_free(m->tokenizer);
    free(m->layers);
    trn_gguf_close(m->gguf);
    free(m);
}

int trn_model_default_context(const trn_model *m) { return TRN_MIN(m->hp.n_ctx_train, TRN_DEFAULT_CONTEXT); }

size_t trn_model_weight_bytes_per_token(const trn_model *m) {
    const trn_hparams *hp = &m->hp;
    size_t total = trn_row_bytes(m->token_embd->type, hp->n_embd) + m->output_norm->bytes + m->output->bytes;
    for (int l = 0; l < hp->n_layer; l++) {
        const trn_layer_weights *w = &m->layers[l];
        total += w->attn_norm->bytes + w->wq->bytes + w->wk->bytes + w->wv->bytes + w->wo->bytes +
                 w->ffn_norm->bytes + w->w_gate->bytes + w->w_up->bytes + w->w_down->bytes;
    }
    return total;
}

size_t trn_model_total_bytes(const trn_model *m) {
    size_t total = 0;
    for (int64_t i = 0; i < trn_gguf_n_tensors(m->gguf); i++)
        total += trn_gguf_tensor_at(m->gguf, i)->bytes;
    return total;
}
