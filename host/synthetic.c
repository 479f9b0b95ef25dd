#define _POSIX_C_SOURCE 200809L
/* synthetic.c: built-in synthetic models, generated in memory from a fixed seed, so the engine runs and
 * benchmarks with no download.
 *
 * "tinyllama" has the shape of Trinity-1.1B (TinyLlama-1.1B): 22 layers, 2048 wide, FFN 5632, 32 heads,
 * 4 KV heads, vocabulary 32000, every linear layer including the LM head in TQ2_0, embeddings in F16.
 * "tinyllama-tq1" is the same in TQ1_0. "tiny" is a 2-layer, 256-wide model for tests.
 * The model is written as a GGUF image in memory and parsed by the ordinary reader, so it takes the same
 * path as a file. Weights are random ternary codes with one scale per matrix chosen so activations keep
 * unit scale; the text it writes is meaningless but deterministic. The vocabulary is byte-level (the 256
 * <0xNN> pieces) plus lowercase letter pieces with and without the U+2581 word prefix. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert_internal.h"
#include "model.h"

typedef struct {
    const char *name;
    int n_layer, n_embd, n_ff, n_head, n_head_kv, n_vocab, n_ctx;
    trn_type linear_type;
    trn_type embd_type;
} synthetic_spec;

static const synthetic_spec specs[] = {
    {"tinyllama", 22, 2048, 5632, 32, 4, 32000, 2048, TRN_TYPE_TQ2_0, TRN_TYPE_F16},
    {"tinyllama-tq1", 22, 2048, 5632, 32, 4, 32000, 2048, TRN_TYPE_TQ1_0, TRN_TYPE_F16},
    {"tiny", 2, 256, 512, 4, 2, 1024, 256, TRN_TYPE_TQ2_0, TRN_TYPE_F32},
};

static const synthetic_spec *find_spec(const char *name) {
    for (size_t i = 0; i < TRN_ARRAY_LEN(specs); i++)
        if (strcmp(specs[i].name, name) == 0)
            return &specs[i];
    return NULL;
}

int trn_synthetic_known(const char *name) { return find_spec(name) != NULL; }

/* splitmix64: a small, fast generator with a 64-bit state. */
static uint64_t next_random(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Vocabulary: <unk>, <s>, </s>, the 256 byte pieces, "▁", then "a".."z" and "▁a".."▁z", then two- and
 * three-letter pieces with and without "▁", until n_vocab. Earlier pieces score higher. */
static char **make_vocab(int n_vocab, float *scores, int32_t *types) {
    char **tokens = calloc((size_t)n_vocab, sizeof(char *));
    if (!tokens)
        return NULL;
    int id = 0;
    const char *specials[3] = {"<unk>", "<s>", "</s>"};
    const int special_types[3] = {2, 3, 3};
    for (; id < 3; id++) {
        tokens[id] = strdup(specials[id]);
        types[id] = special_types[id];
        scores[id] = 0;
    }
    for (int byte = 0; byte < 256 && id < n_vocab; byte++, id++) {
        char piece[8];
        snprintf(piece, sizeof(piece), "<0x%02X>", byte);
        tokens[id] = strdup(piece);
        types[id] = 6;
        scores[id] = 0;
    }
    const char *prefix = "\xe2\x96\x81"; /* U+2581 */
    int rank = 0;
    if (id < n_vocab) {
        tokens[id] = strdup(prefix);
        types[id] = 1;
        scores[id++] = (float)-(rank++);
    }
    for (int len = 1; len <= 3 && id < n_vocab; len++) {
        int combos = len == 1 ? 26 : len == 2 ? 26 * 26 : 26 * 26 * 26;
        for (int c = 0; c < combos && id < n_vocab; c++) {
            char letters[4] = {0};
            for (int i = len - 1, v = c; i >= 0; i--, v /= 26)
                letters[i] = (char)('a' + v % 26);
            for (int with_prefix = 0; with_prefix < 2 && id < n_vocab; with_prefix++) {
                char piece[16];
                snprintf(piece, sizeof(piece), "%s%s", with_prefix ? prefix : "", letters);
                tokens[id] = strdup(piece);
                types[id] = 1;
                scores[id++] = (float)-(rank++);
            }
        }
    }
    for (int i = 0; i < n_vocab; i++)
        if (!tokens[i]) {
            for (int j = 0; j < n_vocab; j++)
                free(tokens[j]);
            free(tokens);
            return NULL;
        }
    return tokens;
}

/* The 81 bytes whose four 2-bit fields are all valid TQ2_0 codes (0, 1 or 2). */
static void tq2_valid_bytes(uint8_t out[81]) {
    int n = 0;
    for (int v = 0; v < 256; v++)
        if ((v & 3) != 3 && ((v >> 2) & 3) != 3 && ((v >> 4) & 3) != 3 && ((v >> 6) & 3) != 3)
            out[n++] = (uint8_t)v;
}

/* TQ1_0 byte for five base-3 digits v (0..242), as the format stores it. */
static uint8_t tq1_byte(int v) { return (uint8_t)((v * 256 + 242) / 243); }

/* Fills rows [r0, r1) of a ternary matrix with random codes and scale d. */
static void fill_ternary_rows(trn_type type, uint8_t *data, int64_t cols, int64_t r0, int64_t r1, float d,
                              uint64_t seed) {
    uint8_t valid[81];
    tq2_valid_bytes(valid);
    const trn_fp16 d16 = trn_f32_to_fp16(d);
    const int64_t blocks = cols / TRN_QK_K;
    uint64_t state = seed;
    for (int64_t r = r0; r < r1; r++) {
        if (type == TRN_TYPE_TQ2_0) {
            trn_block_tq2_0 *row = (trn_block_tq2_0 *)data + r * blocks;
            for (int64_t b = 0; b < blocks; b++) {
                for (int i = 0; i < 64; i += 8) {
                    uint64_t bits = next_random(&state);
                    for (int k = 0; k < 8; k++)
                        row[b].qs[i + k] = valid[((bits >> (8 * k)) & 0xff) * 81 >> 8];
                }
                row[b].d = d16;
            }
        } else {
            trn_block_tq1_0 *row = (trn_block_tq1_0 *)data + r * blocks;
            for (int64_t b = 0; b < blocks; b++) {
                for (int i = 0; i < 48; i++)
                    row[b].qs[i] = tq1_byte((int)((next_random(&state) >> 32) * 243 >> 32));
                for (int i = 0; i < 4; i++) /* four digits, the fifth is zero */
                    row[b].qh[i] = tq1_byte(3 * (int)((next_random(&state) >> 32) * 81 >> 32));
                row[b].d = d16;
            }
        }
    }
}

static float uniform_pm1(uint64_t *state) { return (float)((next_random(state) >> 40) * (2.0 / 16777216.0) - 1.0); }

trn_status trn_synthetic_gguf(const char *name, trn_gguf **out) {
    *out = NULL;
    const synthetic_spec *spec = find_spec(name);
    if (!spec)
        return trn_fail(TRN_ERR_INVALID, "unknown synthetic model '%s' (tinyllama, tinyllama-tq1 or tiny)", name);
    const int head_dim = spec->n_embd / spec->n_head, kv_dim = spec->n_head_kv * head_dim;
    float *scores = calloc((size_t)spec->n_vocab, sizeof(float));
    int32_t *types = calloc((size_t)spec->n_vocab, sizeof(int32_t));
    char **tokens = scores && types ? make_vocab(spec->n_vocab, scores, types) : NULL;
    trn_gguf_writer *w = trn_gguf_writer_new();
    if (!tokens || !w) {
        free(scores);
        free(types);
        trn_gguf_writer_free(w);
        return trn_fail(TRN_ERR_NOMEM, "out of memory generating the synthetic model");
    }
    char full_name[64];
    snprintf(full_name, sizeof(full_name), "synthetic-%s", name);
    const trn_hparams hp = {.n_layer = spec->n_layer, .n_embd = spec->n_embd, .n_ff = spec->n_ff,
                            .n_head = spec->n_head, .n_head_kv = spec->n_head_kv, .head_dim = head_dim,
                            .n_vocab = spec->n_vocab, .n_ctx_train = spec->n_ctx, .rope_base = 10000.0f,
                            .rms_eps = 1e-5f};
    trn_convert_write_hparams(w, &hp, full_name);
    const trn_vocab vocab = {tokens, scores, types, spec->n_vocab, 1, 2, 0};
    trn_vocab_write(w, &vocab);

    trn_status status = TRN_OK;
#define ADD(tname, type, ne0, ne1)                                                          \
    do {                                                                                    \
        int64_t ne_[2] = {(ne0), (ne1)};                                                    \
        if (status == TRN_OK)                                                               \
            status = trn_gguf_add_tensor(w, tname, type, (ne1) > 1 ? 2 : 1, ne_, NULL);   \
    } while (0)
    ADD("token_embd.weight", spec->embd_type, spec->n_embd, spec->n_vocab);
    ADD("output_norm.weight", TRN_TYPE_F32, spec->n_embd, 1);
    ADD("output.weight", spec->linear_type, spec->n_embd, spec->n_vocab);
    for (int l = 0; l < spec->n_layer; l++) {
        char tname[64];
#define ADD_LAYER(suffix, type, ne0, ne1)                                   \
        snprintf(tname, sizeof(tname), "blk.%d." suffix ".weight", l);     \
        ADD(tname, type, ne0, ne1)
        ADD_LAYER("attn_norm", TRN_TYPE_F32, spec->n_embd, 1);
        ADD_LAYER("attn_q", spec->linear_type, spec->n_embd, spec->n_embd);
        ADD_LAYER("attn_k", spec->linear_type, spec->n_embd, kv_dim);
        ADD_LAYER("attn_v", spec->linear_type, spec->n_embd, kv_dim);
        ADD_LAYER("attn_output", spec->linear_type, spec->n_embd, spec->n_embd);
        ADD_LAYER("ffn_norm", TRN_TYPE_F32, spec->n_embd, 1);
        ADD_LAYER("ffn_gate", spec->linear_type, spec->n_embd, spec->n_ff);
        ADD_LAYER("ffn_up", spec->linear_type, spec->n_embd, spec->n_ff);
        ADD_LAYER("ffn_down", spec->linear_type, spec->n_ff, spec->n_embd);
#undef ADD_LAYER
    }
#undef ADD
    void *image = NULL;
    size_t size = 0;
    if (status == TRN_OK)
        status = trn_gguf_write_memory(w, &image, &size);
    trn_gguf_writer_free(w);
    for (int i = 0; i < spec->n_vocab; i++)
        free(tokens[i]);
    free(tokens);
    free(scores);
    free(types);
    if (status != TRN_OK)
        return status;
    trn_gguf *g = NULL;
    TRN_TRY(trn_gguf_open_memory(image, size, 1, full_name, &g));

    /* Fill the tensors in place. Work is cut into (tensor, row chunk) units, each with its own seed, so the
     * weights do not depend on the number of threads. */
    const int64_t n_tensors = trn_gguf_n_tensors(g);
    const int64_t chunk_rows = 256;
    int64_t n_units = 0;
    for (int64_t t = 0; t < n_tensors; t++)
        n_units += (trn_gguf_tensor_at(g, t)->ne[1] + chunk_rows - 1) / chunk_rows;
    int64_t *unit_tensor = malloc((size_t)n_units * sizeof(int64_t) * 2);
    if (!unit_tensor) {
        trn_gguf_close(g);
        return trn_fail(TRN_ERR_NOMEM, "out of memory generating the synthetic model");
    }
    for (int64_t t = 0, u = 0; t < n_tensors; t++)
        for (int64_t r = 0; r < trn_gguf_tensor_at(g, t)->ne[1]; r += chunk_rows, u++) {
            unit_tensor[2 * u] = t;
            unit_tensor[2 * u + 1] = r;
        }
#pragma omp parallel for schedule(dynamic, 4)
    for (int64_t u = 0; u < n_units; u++) {
        const trn_gguf_tensor *t = trn_gguf_tensor_at(g, unit_tensor[2 * u]);
        const int64_t r0 = unit_tensor[2 * u + 1], r1 = TRN_MIN(r0 + chunk_rows, t->ne[1]);
        uint64_t state = 0x7472696e69747931ull ^ ((uint64_t)unit_tensor[2 * u] << 32) ^ (uint64_t)r0;
        uint8_t *data = (uint8_t *)t->data;
        const trn_type_traits *traits = trn_type_get(t->type);
        if (traits->is_ternary) {
            /* a ternary weight is nonzero with probability 2/3: scale so that W x has unit variance */
            float d = 1.0f / sqrtf((float)t->ne[0] * 2.0f / 3.0f);
            fill_ternary_rows(t->type, data, t->ne[0], r0, r1, d, state);
        } else if (t->ne[1] == 1) { /* norm weights near 1 */
            float *v = (float *)data;
            for (int64_t i = 0; i < t->ne[0]; i++)
                v[i] = 1.0f + 0.1f * uniform_pm1(&state);
        } else { /* embedding rows */
            for (int64_t r = r0; r < r1; r++)
                for (int64_t i = 0; i < t->ne[0]; i++) {
                    float v = uniform_pm1(&state);
                    if (t->type == TRN_TYPE_F16)
                        ((trn_fp16 *)data)[r * t->ne[0] + i] = trn_f32_to_fp16(v);
                    else
                        ((float *)data)[r * t->ne[0] + i] = v;
                }
        }
    }
    free(unit_tensor);
    *out = g;
    return TRN_OK;
}
