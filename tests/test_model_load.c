/* test_model_load.c: binding a Llama model from a parsed GGUF (host/model.c).
 *
 * - a small model written in memory: every hyperparameter read, every tensor bound to the one of its name,
 *   the defaults of the optional keys, general.name or else the file name, tied embeddings (no output.weight),
 *   norms in F16;
 * - the same model with one defect each (architecture, a missing or out-of-range key, inconsistent head counts,
 *   a missing tensor, a wrong shape, a norm of a matrix type, a vocabulary that disagrees with token_embd):
 *   the status, one line naming the file and the key or tensor, no model (the GGUF is released, which valgrind
 *   and LeakSanitizer check);
 * - the synthetic models and stories260K (when ../shared/testdata has it) through trn_model_load. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "gguf_fixture.h"
#include "host/model.h"
#include "test_util.h"

/* The good model: one block, 32 wide, 4 heads of 8 (2 KV heads), FFN 64, context 64, 8 tokens; F32 matrices
 * and norms, F16 embeddings, a Q8_0 output. */
enum { N_LAYER = 1, N_EMBD = 32, N_FF = 64, N_HEAD = 4, N_HEAD_KV = 2, N_CTX = 64, N_VOCAB = 8 };
enum { HEAD_DIM = N_EMBD / N_HEAD, KV_DIM = N_HEAD_KV * HEAD_DIM };

/* One edit of the good model; fields left zero edit nothing. */
typedef struct {
    const char *label;    /* the image's path, and the case's name */
    trn_status want;      /* TRN_OK, or the failure expected */
    const char *detail;   /* what the failure message must mention besides the label */
    const char *arch;     /* general.architecture instead of "llama" */
    const char *drop_key; /* a metadata key left out */
    const char *u32_key;  /* a u32 key written with u32_value */
    uint32_t u32_value;
    const char *f32_key;  /* an f32 key written with f32_value */
    float f32_value;
    const char *tensor;   /* a tensor left out (n_dims 0), or written with n_dims, ne0, ne1 and type */
    int n_dims;
    int64_t ne0, ne1;
    trn_type type;
    int tied;             /* no output.weight */
    int f16_norms;        /* every norm in F16 */
    int extra_embd_rows;  /* token_embd.weight (and output.weight) rows beyond the vocabulary */
} model_edit;

static int dropped(const model_edit *e, const char *key) { return e->drop_key && strcmp(e->drop_key, key) == 0; }

static uint32_t u32_value(const model_edit *e, const char *key, uint32_t value) {
    return e->u32_key && strcmp(e->u32_key, key) == 0 ? e->u32_value : value;
}

static void set_u32(trn_gguf_writer *w, const model_edit *e, const char *key, uint32_t value) {
    if (!dropped(e, key))
        trn_gguf_set_u32(w, key, u32_value(e, key, value));
}

static void set_f32(trn_gguf_writer *w, const model_edit *e, const char *key, float value) {
    if (!dropped(e, key))
        trn_gguf_set_f32(w, key, e->f32_key && strcmp(e->f32_key, key) == 0 ? e->f32_value : value);
}

/* A zero-filled tensor [ne0] (ne1 == 0) or [ne0, ne1], unless the edit changes or drops it. */
static void add_tensor(trn_gguf_writer *w, const model_edit *e, const char *name, trn_type type, int64_t ne0,
                       int64_t ne1) {
    int n_dims = ne1 ? 2 : 1;
    if (e->tensor && strcmp(e->tensor, name) == 0) {
        if (e->n_dims == 0)
            return;
        n_dims = e->n_dims;
        ne0 = e->ne0;
        ne1 = e->ne1;
        type = e->type;
    }
    const int64_t ne[2] = {ne0, ne1};
    CHECK_MSG(trn_gguf_add_tensor(w, name, type, n_dims, ne, NULL) == TRN_OK, "%s: add_tensor(%s): %s", e->label,
              name, trn_last_error());
}

/* The good model with the edit applied, parsed from memory under e->label. The K and V matrices and
 * rope.dimension_count follow the head counts written. */
static trn_gguf *build(const model_edit *e) {
    trn_gguf_writer *w = trn_gguf_writer_new();
    trn_gguf_set_string(w, "general.architecture", e->arch ? e->arch : "llama");
    if (!dropped(e, "general.name"))
        trn_gguf_set_string(w, "general.name", "model-load-test");
    const uint32_t n_head = u32_value(e, "llama.attention.head_count", N_HEAD);
    const uint32_t n_head_kv =
        dropped(e, "llama.attention.head_count_kv") ? n_head : u32_value(e, "llama.attention.head_count_kv", N_HEAD_KV);
    const uint32_t head_dim = n_head ? N_EMBD / n_head : HEAD_DIM;
    const int64_t kv_dim = (int64_t)head_dim * n_head_kv;
    set_u32(w, e, "llama.block_count", N_LAYER);
    set_u32(w, e, "llama.context_length", N_CTX);
    set_u32(w, e, "llama.embedding_length", N_EMBD);
    set_u32(w, e, "llama.feed_forward_length", N_FF);
    set_u32(w, e, "llama.attention.head_count", N_HEAD);
    set_u32(w, e, "llama.attention.head_count_kv", N_HEAD_KV);
    set_u32(w, e, "llama.rope.dimension_count", head_dim);
    set_f32(w, e, "llama.rope.freq_base", 500000.0f);
    set_f32(w, e, "llama.attention.layer_norm_rms_epsilon", 1e-6f);
    static const char *const tokens[N_VOCAB] = {"<unk>", "<s>", "</s>", "a", "b", "c", "\xe2\x96\x81" "a", "ab"};
    if (!dropped(e, "tokenizer.ggml.tokens"))
        trn_gguf_set_string_array(w, "tokenizer.ggml.tokens", tokens, N_VOCAB);

    const trn_type norm = e->f16_norms ? TRN_TYPE_F16 : TRN_TYPE_F32;
    const int64_t rows = N_VOCAB + e->extra_embd_rows;
    add_tensor(w, e, "token_embd.weight", TRN_TYPE_F16, N_EMBD, rows);
    add_tensor(w, e, "output_norm.weight", norm, N_EMBD, 0);
    if (!e->tied)
        add_tensor(w, e, "output.weight", TRN_TYPE_Q8_0, N_EMBD, rows);
    for (int l = 0; l < N_LAYER; l++) {
        const struct {
            const char *suffix;
            int64_t ne0, ne1; /* ne1 0: a norm */
        } layer[] = {
            {"attn_norm", N_EMBD, 0},   {"attn_q", N_EMBD, N_EMBD}, {"attn_k", N_EMBD, kv_dim},
            {"attn_v", N_EMBD, kv_dim}, {"attn_output", N_EMBD, N_EMBD}, {"ffn_norm", N_EMBD, 0},
            {"ffn_gate", N_EMBD, N_FF}, {"ffn_up", N_EMBD, N_FF},   {"ffn_down", N_FF, N_EMBD},
        };
        for (size_t i = 0; i < TRN_ARRAY_LEN(layer); i++) {
            char name[64];
            snprintf(name, sizeof(name), "blk.%d.%s.weight", l, layer[i].suffix);
            add_tensor(w, e, name, layer[i].ne1 ? TRN_TYPE_F32 : norm, layer[i].ne0, layer[i].ne1);
        }
    }
    void *image = NULL;
    size_t size = 0;
    trn_status st = trn_gguf_write_memory(w, &image, &size);
    trn_gguf_writer_free(w);
    trn_gguf *g = NULL;
    if (st == TRN_OK)
        st = trn_gguf_open_memory(image, size, 1, e->label, &g);
    CHECK_MSG(st == TRN_OK, "%s: the image does not parse: %s", e->label, trn_last_error());
    return st == TRN_OK ? g : NULL;
}

/* Binds the edited model; expects e->want, and on failure the message contract and no model. */
static trn_model *bind(const model_edit *e) {
    trn_gguf *g = build(e);
    if (!g)
        return NULL;
    trn_model *m = (trn_model *)1;
    clear_error();
    trn_status st = trn_model_from_gguf(g, &m); /* takes the GGUF, also on failure */
    CHECK_MSG(st == e->want, "%s: %s, expected %s (%s)", e->label, trn_status_name(st), trn_status_name(e->want),
              trn_last_error());
    if (st != TRN_OK) {
        CHECK_MSG(m == NULL, "%s: *out not NULL after a failure", e->label);
        check_error_message(e->label, e->label, e->detail);
        return NULL;
    }
    if (e->want != TRN_OK) {
        trn_model_free(m);
        return NULL;
    }
    return m;
}

/* ---- good models ---------------------------------------------------------------------------------- */

static void check_bound(const trn_model *m, const char *name, const trn_gguf_tensor *t) {
    CHECK_MSG(t != NULL && t == trn_gguf_find_tensor(m->gguf, name), "%s: not bound to the tensor of that name", name);
}

static void test_good_model(void) {
    trn_model *m = bind(&(model_edit){.label = "models/good.gguf"});
    if (!m)
        return;
    const trn_hparams *hp = &m->hp;
    CHECK(hp->n_layer == N_LAYER && hp->n_embd == N_EMBD && hp->n_ff == N_FF);
    CHECK(hp->n_head == N_HEAD && hp->n_head_kv == N_HEAD_KV && hp->head_dim == HEAD_DIM);
    CHECK(hp->n_vocab == N_VOCAB && hp->n_ctx_train == N_CTX);
    CHECK(hp->rope_base == 500000.0f && hp->rms_eps == 1e-6f);
    CHECK_MSG(strcmp(m->name, "model-load-test") == 0, "name '%s'", m->name);
    CHECK(trn_tokenizer_n_vocab(m->tokenizer) == N_VOCAB);
    CHECK(trn_model_default_context(m) == N_CTX);

    check_bound(m, "token_embd.weight", m->token_embd);
    check_bound(m, "output_norm.weight", m->output_norm);
    check_bound(m, "output.weight", m->output);
    CHECK(!m->output_tied && m->output != m->token_embd);
    CHECK(m->token_embd->type == TRN_TYPE_F16 && m->output->type == TRN_TYPE_Q8_0);
    const trn_layer_weights *w = &m->layers[0];
    check_bound(m, "blk.0.attn_norm.weight", w->attn_norm);
    check_bound(m, "blk.0.attn_q.weight", w->wq);
    check_bound(m, "blk.0.attn_k.weight", w->wk);
    check_bound(m, "blk.0.attn_v.weight", w->wv);
    check_bound(m, "blk.0.attn_output.weight", w->wo);
    check_bound(m, "blk.0.ffn_norm.weight", w->ffn_norm);
    check_bound(m, "blk.0.ffn_gate.weight", w->w_gate);
    check_bound(m, "blk.0.ffn_up.weight", w->w_up);
    check_bound(m, "blk.0.ffn_down.weight", w->w_down);

    /* all tensors' bytes; per token: one embedding row (F16) and every other tensor once */
    size_t total = 0;
    for (int64_t i = 0; i < trn_gguf_n_tensors(m->gguf); i++)
        total += trn_gguf_tensor_at(m->gguf, i)->bytes;
    CHECK(trn_model_total_bytes(m) == total);
    CHECK_MSG(trn_model_weight_bytes_per_token(m) == total - m->token_embd->bytes + N_EMBD * 2,
              "weight bytes per token %zu of %zu", trn_model_weight_bytes_per_token(m), total);
    trn_model_free(m);
    trn_model_free(NULL);
}

static void test_tied_embeddings(void) {
    trn_model *m = bind(&(model_edit){.label = "tied.gguf", .tied = 1});
    if (!m)
        return;
    CHECK(m->output_tied && m->output == m->token_embd);
    trn_model_free(m);
}

/* Norms may be F16 (or BF16) as well as F32. */
static void test_f16_norms(void) {
    trn_model *m = bind(&(model_edit){.label = "f16-norms.gguf", .f16_norms = 1});
    if (!m)
        return;
    CHECK(m->output_norm->type == TRN_TYPE_F16 && m->layers[0].attn_norm->type == TRN_TYPE_F16 &&
          m->layers[0].ffn_norm->type == TRN_TYPE_F16);
    trn_model_free(m);
}

/* Each optional key left out: head_count_kv = head_count, context 2048, rope dimensions = the head size, rope base
 * 10000, epsilon 1e-5, the model named after the file. */
static void test_defaults(void) {
    trn_model *m = bind(&(model_edit){.label = "defaults.gguf", .drop_key = "llama.attention.head_count_kv"});
    if (m) {
        CHECK_MSG(m->hp.n_head_kv == N_HEAD && m->layers[0].wk->ne[1] == N_EMBD, "n_head_kv %d", m->hp.n_head_kv);
        trn_model_free(m);
    }
    m = bind(&(model_edit){.label = "defaults.gguf", .drop_key = "llama.context_length"});
    if (m) {
        CHECK_MSG(m->hp.n_ctx_train == 2048 && trn_model_default_context(m) == 2048, "n_ctx_train %d",
                  m->hp.n_ctx_train);
        trn_model_free(m);
    }
    m = bind(&(model_edit){.label = "defaults.gguf", .drop_key = "llama.rope.dimension_count"});
    if (m) {
        CHECK(m->hp.head_dim == HEAD_DIM);
        trn_model_free(m);
    }
    m = bind(&(model_edit){.label = "defaults.gguf", .drop_key = "llama.rope.freq_base"});
    if (m) {
        CHECK_MSG(m->hp.rope_base == 10000.0f, "rope_base %g", m->hp.rope_base);
        trn_model_free(m);
    }
    m = bind(&(model_edit){.label = "defaults.gguf", .drop_key = "llama.attention.layer_norm_rms_epsilon"});
    if (m) {
        CHECK_MSG(m->hp.rms_eps == 1e-5f, "rms_eps %g", m->hp.rms_eps);
        trn_model_free(m);
    }
    m = bind(&(model_edit){.label = "models/unnamed.gguf", .drop_key = "general.name"});
    if (m) {
        CHECK_MSG(strcmp(m->name, "unnamed.gguf") == 0, "name '%s'", m->name);
        trn_model_free(m);
    }
}

/* ---- bad models ----------------------------------------------------------------------------------- */

static void test_bad_models(void) {
    static const model_edit cases[] = {
        {.label = "arch.gguf", .want = TRN_ERR_UNSUPPORTED, .detail = "gpt2", .arch = "gpt2"},
        {.label = "no-blocks.gguf", .want = TRN_ERR_FORMAT, .detail = "llama.block_count",
         .drop_key = "llama.block_count"},
        {.label = "no-width.gguf", .want = TRN_ERR_FORMAT, .detail = "llama.embedding_length",
         .drop_key = "llama.embedding_length"},
        {.label = "no-ffn.gguf", .want = TRN_ERR_FORMAT, .detail = "llama.feed_forward_length",
         .drop_key = "llama.feed_forward_length"},
        {.label = "no-heads.gguf", .want = TRN_ERR_FORMAT, .detail = "llama.attention.head_count",
         .drop_key = "llama.attention.head_count"},
        {.label = "zero-blocks.gguf", .want = TRN_ERR_FORMAT, .detail = "llama.block_count",
         .u32_key = "llama.block_count", .u32_value = 0},
        {.label = "zero-heads.gguf", .want = TRN_ERR_FORMAT, .detail = "llama.attention.head_count",
         .u32_key = "llama.attention.head_count", .u32_value = 0},
        {.label = "huge-width.gguf", .want = TRN_ERR_FORMAT, .detail = "llama.embedding_length",
         .u32_key = "llama.embedding_length", .u32_value = (1u << 24) + 1},
        {.label = "context-past-limit.gguf", .want = TRN_ERR_FORMAT, .detail = "llama.context_length",
         .u32_key = "llama.context_length", .u32_value = TRN_MAX_CONTEXT + 1},
        {.label = "heads-5.gguf", .want = TRN_ERR_FORMAT, .detail = "head_count 5",
         .u32_key = "llama.attention.head_count", .u32_value = 5},
        {.label = "kv-heads-3.gguf", .want = TRN_ERR_FORMAT, .detail = "head_count_kv 3",
         .u32_key = "llama.attention.head_count_kv", .u32_value = 3},
        {.label = "odd-head.gguf", .want = TRN_ERR_FORMAT, .detail = "odd",
         .u32_key = "llama.attention.head_count", .u32_value = 32},
        {.label = "rope-dims.gguf", .want = TRN_ERR_UNSUPPORTED, .detail = "rope.dimension_count",
         .u32_key = "llama.rope.dimension_count", .u32_value = HEAD_DIM / 2},
        {.label = "rope-base.gguf", .want = TRN_ERR_FORMAT, .detail = "freq_base",
         .f32_key = "llama.rope.freq_base", .f32_value = 0.5f},
        {.label = "epsilon.gguf", .want = TRN_ERR_FORMAT, .detail = "layer_norm_rms_epsilon",
         .f32_key = "llama.attention.layer_norm_rms_epsilon", .f32_value = 0.0f},
        {.label = "no-embd.gguf", .want = TRN_ERR_FORMAT, .detail = "token_embd.weight",
         .tensor = "token_embd.weight"},
        {.label = "no-output-norm.gguf", .want = TRN_ERR_FORMAT, .detail = "output_norm.weight",
         .tensor = "output_norm.weight"},
        {.label = "no-ffn-down.gguf", .want = TRN_ERR_FORMAT, .detail = "blk.0.ffn_down.weight' is missing",
         .tensor = "blk.0.ffn_down.weight"},
        {.label = "attn-k-shape.gguf", .want = TRN_ERR_FORMAT, .detail = "blk.0.attn_k.weight' has shape [32, 32]",
         .tensor = "blk.0.attn_k.weight", .n_dims = 2, .ne0 = N_EMBD, .ne1 = N_EMBD, .type = TRN_TYPE_F32},
        {.label = "ffn-down-transposed.gguf", .want = TRN_ERR_FORMAT, .detail = "blk.0.ffn_down.weight",
         .tensor = "blk.0.ffn_down.weight", .n_dims = 2, .ne0 = N_EMBD, .ne1 = N_FF, .type = TRN_TYPE_F32},
        {.label = "output-shape.gguf", .want = TRN_ERR_FORMAT, .detail = "output.weight",
         .tensor = "output.weight", .n_dims = 2, .ne0 = N_EMBD, .ne1 = N_VOCAB + 1, .type = TRN_TYPE_Q8_0},
        {.label = "norm-2d.gguf", .want = TRN_ERR_FORMAT, .detail = "blk.0.attn_norm.weight",
         .tensor = "blk.0.attn_norm.weight", .n_dims = 2, .ne0 = N_EMBD, .ne1 = 2, .type = TRN_TYPE_F32},
        {.label = "norm-q8.gguf", .want = TRN_ERR_UNSUPPORTED, .detail = "blk.0.ffn_norm.weight",
         .tensor = "blk.0.ffn_norm.weight", .n_dims = 1, .ne0 = N_EMBD, .type = TRN_TYPE_Q8_0},
        {.label = "vocab-mismatch.gguf", .want = TRN_ERR_FORMAT, .detail = "vocabulary", .tied = 1,
         .extra_embd_rows = 1},
        {.label = "no-tokens.gguf", .want = TRN_ERR_FORMAT, .detail = "tokenizer.ggml.tokens",
         .drop_key = "tokenizer.ggml.tokens"},
    };
    for (size_t i = 0; i < TRN_ARRAY_LEN(cases); i++)
        CHECK_MSG(bind(&cases[i]) == NULL, "%s: bound", cases[i].label);
}

/* ---- models by path ------------------------------------------------------------------------------- */

static void test_load_paths(void) {
    trn_model *m = NULL;
    CHECK_MSG(trn_model_load("synthetic:tiny", &m) == TRN_OK, "synthetic:tiny: %s", trn_last_error());
    if (m) {
        const trn_hparams *hp = &m->hp;
        CHECK(hp->n_layer == 2 && hp->n_embd == 256 && hp->n_ff == 512 && hp->n_head == 4 && hp->n_head_kv == 2);
        CHECK(hp->n_vocab == 1024 && hp->n_ctx_train == 256 && m->layers[1].wq->type == TRN_TYPE_TQ2_0);
        trn_model_free(m);
    }
    clear_error();
    CHECK(trn_model_load("synthetic:nope", &m) == TRN_ERR_INVALID);
    check_error_message("synthetic:nope", "nope", NULL);
    clear_error();
    CHECK(trn_model_load("/nonexistent/model.gguf", &m) == TRN_ERR_IO);
    check_error_message("missing file", "/nonexistent/model.gguf", NULL);

    const char *stories = test_data_path("stories260K/stories260K.gguf");
    if (!stories) {
        printf("test_model_load: stories260K absent, skipping its checks\n");
        return;
    }
    m = NULL;
    CHECK_MSG(trn_model_load(stories, &m) == TRN_OK, "%s: %s", stories, trn_last_error());
    if (m) {
        const trn_hparams *hp = &m->hp;
        CHECK(hp->n_layer == 5 && hp->n_embd == 64 && hp->n_ff == 172 && hp->n_head == 8 && hp->n_head_kv == 4);
        CHECK(hp->head_dim == 8 && hp->n_vocab == 512 && hp->n_ctx_train == 128);
        CHECK(hp->rope_base == 10000.0f && hp->rms_eps == 1e-5f); /* neither key is in the file */
        CHECK(!m->output_tied && m->output->type == TRN_TYPE_F32 && strcmp(m->name, "llama") == 0);
        trn_model_free(m);
    }
}

int main(void) {
    test_good_model();
    test_tied_embeddings();
    test_f16_norms();
    test_defaults();
    test_bad_models();
    test_load_paths();
    return test_finish("test_model_load");
}
