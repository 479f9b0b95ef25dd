/* convert_hf.c: `trinity convert --from hf`: a Hugging Face Llama checkpoint (config.json + safetensors) into GGUF.
 *
 * Owns: reading config.json (cJSON), the table of linear layers in module order, checking every tensor of the
 * checkpoint against the config, and the conversion driver shared with the TRIN converter
 * (trn_hf_convert_checkpoint): embeddings and norms come from the checkpoint, each linear layer's floats from a
 * callback (here: the checkpoint's weights, ternarized per tensor when the output type is ternary; in
 * convert_trin.c: the TRIN codes times the std-matching scale), then the Q/K row permutation and quantization.
 *
 * Hugging Face names -> GGUF names:
 *   model.embed_tokens.weight [vocab][hidden]                  -> token_embd.weight (embed_type)
 *   model.layers.N.input_layernorm.weight [hidden]             -> blk.N.attn_norm.weight (F32)
 *   model.layers.N.self_attn.{q,k,v,o}_proj.weight [out][in]   -> blk.N.attn_{q,k,v,output}.weight
 *   model.layers.N.post_attention_layernorm.weight [hidden]    -> blk.N.ffn_norm.weight (F32)
 *   model.layers.N.mlp.{gate,up,down}_proj.weight [out][in]    -> blk.N.ffn_{gate,up,down}.weight
 *   model.norm.weight [hidden]                                 -> output_norm.weight (F32)
 *   lm_head.weight [vocab][hidden] (absent when tied)          -> output.weight (omitted when tied: the engine ties) */
#define _POSIX_C_SOURCE 200809L
#include "convert_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "safetensors.h"


/* ---- config.json ---- */


/* An integer key in [1, 2^24]: present, or `fallback` when absent and fallback > 0. */
static trn_status config_int(const char *path, const cJSON *root, const char *key, int fallback, int *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!item || cJSON_IsNull(item)) {
        if (fallback <= 0)
            return trn_fail(TRN_ERR_FORMAT, "%s: key \"%s\" is missing", path, key);
        *out = fallback;
        return TRN_OK;
    }
    double v = cJSON_IsNumber(item) ? item->valuedouble : -1.0;
    if (!(v >= 1.0) || v > (double)(1 << 24) || floor(v) != v)
        return trn_fail(TRN_ERR_FORMAT, "%s: key \"%s\" is not an integer from 1 to %d", path, key, 1 << 24);
    *out = (int)v;
    return TRN_OK;
}

/* A positive finite number, or `fallback` when absent. */
static trn_status config_float(const char *path, const cJSON *root, const char *key, double fallback, double *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!item || cJSON_IsNull(item)) {
        *out = fallback;
        return TRN_OK;
    }
    if (!cJSON_IsNumber(item) || !(item->valuedouble > 0.0) || !isfinite(item->valuedouble))
        return trn_fail(TRN_ERR_FORMAT, "%s: key \"%s\" is not a positive number", path, key);
    *out = item->valuedouble;
    return TRN_OK;
}

static trn_status config_bool(const char *path, const cJSON *root, const char *key, int fallback, int *out) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!item || cJSON_IsNull(item)) {
        *out = fallback;
        return TRN_OK;
    }
    if (!cJSON_IsBool(item))
        return trn_fail(TRN_ERR_FORMAT, "%s: key \"%s\" is not true or false", path, key);
    *out = cJSON_IsTrue(item);
    return TRN_OK;
}

/* A string value shown in a message: at most 40 printable characters. */
static void shown_string(const cJSON *item, char out[48]) {
    const char *s = cJSON_IsString(item) ? item->valuestring : "?";
    size_t i = 0;
    for (; s[i] && i < 40; i++)
        out[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
    out[i] = 0;
}

/* model_type decides, as in transformers' AutoConfig; architectures only where model_type is absent. */
static int is_llama(const cJSON *root) {
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (type && !cJSON_IsNull(type))
        return cJSON_IsString(type) && strcmp(type->valuestring, "llama") == 0;
    const cJSON *arch, *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    cJSON_ArrayForEach(arch, archs) {
        if (cJSON_IsString(arch) && strcmp(arch->valuestring, "LlamaForCausalLM") == 0)
            return 1;
    }
    return 0;
}

/* Everything config.json says, checked; features this engine does not implement are refused. */
static trn_status parse_config(const char *path, const cJSON *root, trn_hf_config *cfg) {
    if (!cJSON_IsObject(root))
        return trn_fail(TRN_ERR_FORMAT, "%s: not a JSON object", path);
    if (!is_llama(root)) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "model_type");
        if (!type || cJSON_IsNull(type))
            return trn_fail(TRN_ERR_UNSUPPORTED, "%s: no model_type \"llama\" or architectures [\"LlamaForCausalLM\"]: "
                            "not a Llama model", path);
        char shown[48];
        shown_string(type, shown);
        return trn_fail(TRN_ERR_UNSUPPORTED, "%s: model_type '%s' is not a Llama model", path, shown);
    }
    trn_hparams *hp = &cfg->hp;
    memset(cfg, 0, sizeof(*cfg));
    TRN_TRY(config_int(path, root, "hidden_size", 0, &hp->n_embd));
    TRN_TRY(config_int(path, root, "intermediate_size", 0, &hp->n_ff));
    TRN_TRY(config_int(path, root, "num_hidden_layers", 0, &hp->n_layer));
    TRN_TRY(config_int(path, root, "num_attention_heads", 0, &hp->n_head));
    TRN_TRY(config_int(path, root, "num_key_value_heads", hp->n_head, &hp->n_head_kv));
    TRN_TRY(config_int(path, root, "vocab_size", 0, &hp->n_vocab));
    TRN_TRY(config_int(path, root, "max_position_embeddings", 2048, &hp->n_ctx_train));
    double eps = 1e-6, theta = 10000.0; /* LlamaConfig's defaults */
    TRN_TRY(config_float(path, root, "rms_norm_eps", 1e-6, &eps));
    TRN_TRY(config_float(path, root, "rope_theta", 10000.0, &theta));
    TRN_TRY(config_bool(path, root, "tie_word_embeddings", 0, &cfg->tied));
    if (eps > 1.0 || !(theta > 1.0))
        return trn_fail(TRN_ERR_FORMAT, "%s: rms_norm_eps %g or rope_theta %g is out of range", path, eps, theta);
    hp->rms_eps = (float)eps;
    hp->rope_base = (float)theta;
    if (hp->n_embd % hp->n_head != 0)
        return trn_fail(TRN_ERR_FORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d", path,
                        hp->n_embd, hp->n_head);
    if (hp->n_head % hp->n_head_kv != 0)
        return trn_fail(TRN_ERR_FORMAT, "%s: num_attention_heads %d is not a multiple of num_key_value_heads %d",
                        path, hp->n_head, hp->n_head_kv);
    hp->head_dim = hp->n_embd / hp->n_head;
    if (hp->head_dim % 2 != 0)
        return trn_fail(TRN_ERR_FORMAT, "%s: head size %d is odd; RoPE rotates pairs", path, hp->head_dim);

    /* variants of the architecture the engine does not run */
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (item && !cJSON_IsNull(item)) {
        char shown[48] = "?";
        if (cJSON_IsObject(item)) {
            const cJSON *kind = cJSON_GetObjectItemCaseSensitive(item, "rope_type");
            shown_string(kind ? kind : cJSON_GetObjectItemCaseSensitive(item, "type"), shown);
        }
        return trn_fail(TRN_ERR_UNSUPPORTED, "%s: rope_scaling is set (type '%s'); Trinity supports plain RoPE only",
                        path, shown);
    }
    item = cJSON_GetObjectItemCaseSensitive(root, "head_dim");
    if (item && !cJSON_IsNull(item) && !(cJSON_IsNumber(item) && item->valuedouble == hp->head_dim))
        return trn_fail(TRN_ERR_UNSUPPORTED, "%s: head_dim differs from hidden_size / num_attention_heads = %d", path,
                        hp->head_dim);
    item = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (item && !(cJSON_IsString(item) && strcmp(item->valuestring, "silu") == 0)) {
        char shown[48];
        shown_string(item, shown);
        return trn_fail(TRN_ERR_UNSUPPORTED, "%s: hidden_act '%s' is not supported (silu is)", path, shown);
    }
    static const char *const bias_keys[] = {"attention_bias", "mlp_bias"};
    for (size_t i = 0; i < TRN_ARRAY_LEN(bias_keys); i++) {
        int bias = 0;
        TRN_TRY(config_bool(path, root, bias_keys[i], 0, &bias));
        if (bias)
            return trn_fail(TRN_ERR_UNSUPPORTED, "%s: %s is true; Trinity's Llama has no biases", path, bias_keys[i]);
    }
    return TRN_OK;
}

trn_status trn_hf_read_config(const char *dir, trn_hf_config *out) {
    memset(out, 0, sizeof(*out));
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return trn_fail(TRN_ERR_IO, "%s: cannot open: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return trn_fail(TRN_ERR_INVALID, "%s: not a directory (a Hugging Face checkpoint is a directory with "
                        "config.json and *.safetensors)", dir);
    char path[4096];
    if (snprintf(path, sizeof(path), "%s/config.json", dir) >= (int)sizeof(path))
        return trn_fail(TRN_ERR_INVALID, "%s: path too long", dir);
    char *text = NULL;
    TRN_TRY(trn_read_file(path, TRN_MAX_JSON_BYTES, "a config", &text, NULL));
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root)
        return trn_fail(TRN_ERR_FORMAT, "%s: malformed JSON", path);
    trn_status status = parse_config(path, root, out);
    cJSON_Delete(root);
    return status;
}

/* ---- the linear layers ---- */

int trn_hf_linear_layers(const trn_hf_config *cfg, trn_hf_linear *out) {
    static const struct {
        const char *gguf, *hf;
        int kind; /* 0 q, 1 k, 2 v, 3 o, 4 gate, 5 up, 6 down */
    } parts[TRN_HF_LINEARS_PER_LAYER] = {
        {"attn_q", "self_attn.q_proj", 0},  {"attn_k", "self_attn.k_proj", 1},   {"attn_v", "self_attn.v_proj", 2},
        {"attn_output", "self_attn.o_proj", 3}, {"ffn_gate", "mlp.gate_proj", 4}, {"ffn_up", "mlp.up_proj", 5},
        {"ffn_down", "mlp.down_proj", 6},
    };
    const trn_hparams *hp = &cfg->hp;
    const int64_t q_dim = (int64_t)hp->n_head * hp->head_dim, kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    int n = 0;
    for (int l = 0; l < hp->n_layer; l++) {
        for (int p = 0; p < TRN_HF_LINEARS_PER_LAYER; p++) {
            trn_hf_linear *x = &out[n];
            memset(x, 0, sizeof(*x));
            x->index = n++;
            snprintf(x->label, sizeof(x->label), "blk.%d.%s", l, parts[p].gguf);
            snprintf(x->name, sizeof(x->name), "%s.weight", x->label);
            snprintf(x->hf_name, sizeof(x->hf_name), "model.layers.%d.%s.weight", l, parts[p].hf);
            switch (parts[p].kind) {
            case 0: x->rows = q_dim; x->cols = hp->n_embd; x->qk_heads = hp->n_head; break;
            case 1: x->rows = kv_dim; x->cols = hp->n_embd; x->qk_heads = hp->n_head_kv; break;
            case 2: x->rows = kv_dim; x->cols = hp->n_embd; break;
            case 3: x->rows = hp->n_embd; x->cols = q_dim; break;
            case 4: case 5: x->rows = hp->n_ff; x->cols = hp->n_embd; break;
            default: x->rows = hp->n_embd; x->cols = hp->n_ff; break;
            }
        }
    }
    trn_hf_linear *head = &out[n];
    memset(head, 0, sizeof(*head));
    head->index = n++;
    snprintf(head->label, sizeof(head->label), "output");
    snprintf(head->name, sizeof(head->name), "output.weight");
    snprintf(head->hf_name, sizeof(head->hf_name), "%s", cfg->tied ? "model.embed_tokens.weight" : "lm_head.weight");
    head->rows = hp->n_vocab;
    head->cols = hp->n_embd;
    return n;
}

/* ---- the conversion driver ---- */

/* A tensor the output needs: the checkpoint's name, its shape ([rows][cols], or [cols] for a vector), and what
 * becomes of it. */
typedef struct {
    char gguf_name[64];
    char hf_name[96];
    int64_t rows, cols;          /* rows == 0: a vector of cols */
    const trn_hf_linear *linear; /* NULL: copied (embeddings, norms) */
    const trn_st_tensor *t;      /* found by check_tensors */
} planned_tensor;

static void plan_add(planned_tensor *plan, int *n, const char *gguf_name, const char *hf_name, int64_t rows,
                     int64_t cols, const trn_hf_linear *linear) {
    planned_tensor *p = &plan[(*n)++];
    snprintf(p->gguf_name, sizeof(p->gguf_name), "%s", gguf_name);
    snprintf(p->hf_name, sizeof(p->hf_name), "%s", hf_name);
    p->rows = rows;
    p->cols = cols;
    p->linear = linear;
}

/* The tensors of the output in module order: embeddings; per block attn_norm, q, k, v, o, ffn_norm, gate, up,
 * down; output_norm; the LM head where with_head. plan[] has room for n_layer * 9 + 3; returns the count. */
static int build_plan(const trn_hf_config *cfg, const trn_hf_linear *linears, int with_head, planned_tensor *plan) {
    const trn_hparams *hp = &cfg->hp;
    int n = 0;
    char hf_name[96], gguf_name[64];
    plan_add(plan, &n, "token_embd.weight", "model.embed_tokens.weight", hp->n_vocab, hp->n_embd, NULL);
    for (int l = 0; l < hp->n_layer; l++) {
        for (int p = 0; p < TRN_HF_LINEARS_PER_LAYER; p++) {
            if (p == 0 || p == 4) { /* the norm before attention, before the feed-forward block */
                snprintf(hf_name, sizeof(hf_name), "model.layers.%d.%s.weight", l,
                         p == 0 ? "input_layernorm" : "post_attention_layernorm");
                snprintf(gguf_name, sizeof(gguf_name), "blk.%d.%s.weight", l, p == 0 ? "attn_norm" : "ffn_norm");
                plan_add(plan, &n, gguf_name, hf_name, 0, hp->n_embd, NULL);
            }
            const trn_hf_linear *x = &linears[l * TRN_HF_LINEARS_PER_LAYER + p];
            plan_add(plan, &n, x->name, x->hf_name, x->rows, x->cols, x);
        }
    }
    plan_add(plan, &n, "output_norm.weight", "model.norm.weight", 0, hp->n_embd, NULL);
    if (with_head) {
        const trn_hf_linear *x = &linears[hp->n_layer * TRN_HF_LINEARS_PER_LAYER];
        plan_add(plan, &n, x->name, x->hf_name, x->rows, x->cols, x);
    }
    return n;
}

static void shape_text(const trn_st_tensor *t, char *out, size_t size) {
    int pos = snprintf(out, size, "[");
    for (int d = 0; d < t->n_dims && pos < (int)size; d++)
        pos += snprintf(out + pos, size - (size_t)pos, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    if (pos < (int)size)
        snprintf(out + pos, size - (size_t)pos, "]");
}

/* Looks up every planned tensor and checks its shape against config.json. */
static trn_status check_tensors(const char *dir, const trn_safetensors *st, planned_tensor *plan, int n) {
    for (int i = 0; i < n; i++) {
        planned_tensor *p = &plan[i];
        const trn_st_tensor *t = trn_safetensors_find(st, p->hf_name);
        if (!t)
            return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s' is missing from the checkpoint", dir, p->hf_name);
        int ok = p->rows == 0 ? (t->n_dims == 1 && t->shape[0] == p->cols)
                              : (t->n_dims == 2 && t->shape[0] == p->rows && t->shape[1] == p->cols);
        if (!ok) {
            char have[96], want[64];
            shape_text(t, have, sizeof(have));
            if (p->rows == 0)
                snprintf(want, sizeof(want), "[%lld]", (long long)p->cols);
            else
                snprintf(want, sizeof(want), "[%lld, %lld]", (long long)p->rows, (long long)p->cols);
            return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s' has shape %s, config.json needs %s", t->file, p->hf_name,
                            have, want);
        }
        p->t = t;
    }
    return TRN_OK;
}

/* Rows of `cols` values must fill whole blocks of the type they are written in. */
static trn_status check_row_length(const char *dir, const char *hf_name, trn_type type, int64_t cols) {
    const trn_type_traits *traits = trn_type_get(type);
    if (!traits)
        return trn_fail(TRN_ERR_INVALID, "output type %s is not a known tensor type", trn_type_name(type));
    if (cols % traits->block_size != 0)
        return trn_fail(TRN_ERR_UNSUPPORTED, "%s: tensor '%s' has rows of %lld values; %s needs a multiple of %d: use "
                        "--type f16 or f32", dir, hf_name, (long long)cols, traits->name, traits->block_size);
    return TRN_OK;
}

static trn_status check_finite(const planned_tensor *p, const float *data, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(data[i]))
            return trn_fail(TRN_ERR_FORMAT, "%s: tensor '%s' holds a non-finite value (element %lld)", p->t->file,
                            p->hf_name, (long long)i);
    return TRN_OK;
}

/* Converts one planned tensor from the checkpoint (or the callback) into the writer. scratch: floats enough
 * for the largest tensor. */
static trn_status convert_one(trn_gguf_writer *w, trn_convert_arena *arena, const trn_convert_options *opts,
                              const planned_tensor *p, trn_hf_linear_fn linear, void *ctx, float *scratch) {
    const int64_t rows = p->rows ? p->rows : 1, cols = p->cols, n = rows * cols;
    if (!p->linear) {
        trn_st_to_f32(p->t, scratch);
        TRN_TRY(check_finite(p, scratch, n));
        trn_type type = p->rows ? opts->embed_type : TRN_TYPE_F32; /* embeddings, or a norm vector */
        return trn_convert_add_tensor(w, arena, p->gguf_name, type, scratch, rows, cols);
    }
    TRN_TRY(linear(ctx, p->linear, p->t, scratch));
    TRN_TRY(check_finite(p, scratch, n));
    if (p->linear->qk_heads > 0) /* [heads][head_dim][cols]: rotate-half order -> adjacent pairs */
        trn_permute_qk(scratch, p->linear->qk_heads, (int)(rows / p->linear->qk_heads), cols);
    return trn_convert_add_tensor(w, arena, p->gguf_name, opts->type, scratch, rows, cols);
}

trn_status trn_hf_convert_checkpoint(const trn_convert_options *opts, const char *dir, const trn_hf_config *cfg,
                                     const char *name, int with_head, trn_hf_linear_fn linear, void *ctx) {
    const trn_hparams *hp = &cfg->hp;
    const int n_linear = hp->n_layer * TRN_HF_LINEARS_PER_LAYER + 1;
    const int n_plan = n_linear + 2 * hp->n_layer + 2; /* + 2 norms per block, embeddings, output norm */
    trn_hf_linear *linears = calloc((size_t)n_linear, sizeof(trn_hf_linear));
    planned_tensor *plan = calloc((size_t)n_plan, sizeof(planned_tensor));
    trn_safetensors *st = NULL;
    trn_gguf_writer *w = NULL;
    trn_convert_arena arena = {0};
    trn_vocab vocab;
    memset(&vocab, 0, sizeof(vocab));
    float *scratch = NULL;
    trn_progress progress;
    int progress_started = 0, n = 0;
    int64_t max_elems = 0, total_elems = 0;
    trn_status status = TRN_OK;
    if (!linears || !plan) {
        status = trn_fail(TRN_ERR_NOMEM, "out of memory converting %s", dir);
        goto done;
    }
    trn_hf_linear_layers(cfg, linears);
    n = build_plan(cfg, linears, with_head, plan);

    /* everything that can be checked before the long part */
    status = trn_safetensors_open_dir(dir, &st);
    if (status == TRN_OK)
        status = check_tensors(dir, st, plan, n);
    for (int i = 0; i < n && status == TRN_OK; i++)
        if (plan[i].rows)
            status = check_row_length(dir, plan[i].hf_name, plan[i].linear ? opts->type : opts->embed_type,
                                      plan[i].cols);
    if (status == TRN_OK)
        status = trn_vocab_for_hf_dir(dir, opts->vocab_gguf, &vocab);
    if (status == TRN_OK && vocab.n != hp->n_vocab)
        status = trn_fail(TRN_ERR_FORMAT, "%s: the vocabulary has %d tokens, model.embed_tokens.weight has %d rows",
                          opts->vocab_gguf ? opts->vocab_gguf : dir, vocab.n, hp->n_vocab);
    if (status != TRN_OK)
        goto done;

    for (int i = 0; i < n; i++) {
        const int64_t elems = (plan[i].rows ? plan[i].rows : 1) * plan[i].cols;
        max_elems = TRN_MAX(max_elems, elems);
        total_elems += elems;
    }
    scratch = malloc((size_t)max_elems * sizeof(float));
    w = trn_gguf_writer_new();
    if (!scratch || !w) {
        status = trn_fail(TRN_ERR_NOMEM, "out of memory converting %s (%lld floats of scratch)", dir,
                          (long long)max_elems);
        goto done;
    }
    trn_convert_write_hparams(w, hp, name);
    trn_vocab_write(w, &vocab);

    trn_progress_begin(&progress, opts->progress, "converting", total_elems);
    progress_started = 1;
    for (int i = 0; i < n && status == TRN_OK; i++) {
        status = convert_one(w, &arena, opts, &plan[i], linear, ctx, scratch);
        trn_progress_add(&progress, (plan[i].rows ? plan[i].rows : 1) * plan[i].cols);
    }
    free(scratch); /* the write below needs only the arena */
    scratch = NULL;
    if (status == TRN_OK)
        status = trn_gguf_write_file(w, opts->output);

done:
    if (progress_started)
        trn_progress_end(&progress);
    free(scratch);
    trn_gguf_writer_free(w);
    trn_convert_arena_free(&arena);
    trn_vocab_free(&vocab);
    trn_safetensors_close(st);
    free(plan);
    free(linears);
    return status;
}

/* ---- --from hf ---- */

/* The checkpoint's weights, ternarized over the whole tensor (one scale) when the output type is ternary. */
static trn_status hf_linear(void *ctx, const trn_hf_linear *layer, const trn_st_tensor *base, float *dst) {
    const trn_convert_options *opts = ctx;
    trn_st_to_f32(base, dst);
    const trn_type_traits *traits = trn_type_get(opts->type);
    if (traits && traits->is_ternary)
        trn_ternarize(dst, layer->rows * layer->cols, opts->rule);
    return TRN_OK;
}

/* general.name: the directory's last component. */
static void dir_name(const char *path, char *out, size_t size) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/')
        start--;
    snprintf(out, size, "%.*s", (int)(len - start), path + start);
}

trn_status trn_convert_hf(const trn_convert_options *opts) {
    trn_hf_config cfg;
    TRN_TRY(trn_hf_read_config(opts->input, &cfg));
    char name[128];
    dir_name(opts->input, name, sizeof(name));
    /* a tied checkpoint has no lm_head.weight: the output ties too (the engine reads token_embd) */
    return trn_hf_convert_checkpoint(opts, opts->input, &cfg, name, !cfg.tied, hf_linear, (void *)opts);
}
