/* convert_llama2c.c: `trinity convert --from llama2c MODEL.bin --tokenizer TOK.bin -o OUT.gguf`.
 *
 * Input: a llama2.c checkpoint in the legacy (version 0) float32 format: 7 int32 (dim, hidden_dim, n_layers,
 * n_heads, n_kv_heads, vocab_size, seq_len; a negative vocab_size means a separate classifier), then float32
 * arrays, each matrix row-major [out][in]:
 *   token_embedding_table[vocab][dim], rms_att_weight[L][dim], wq[L][dim][dim], wk[L][kv_dim][dim],
 *   wv[L][kv_dim][dim], wo[L][dim][dim], rms_ffn_weight[L][dim], w1[L][hidden][dim], w2[L][dim][hidden],
 *   w3[L][hidden][dim], rms_final_weight[dim], freq_cis_real[seq_len][head_size/2],
 *   freq_cis_imag[seq_len][head_size/2] (unused), and wcls[vocab][dim] when vocab_size was negative.
 * The file size must be exactly what the header implies.
 *
 * Output: the tensors llama.cpp's llama2c converter writes (stories260K.gguf), in its order: token_embd,
 * output_norm, output (a copy of token_embd when the classifier is shared, else wcls), then per block
 * attn_q, attn_k, attn_v, attn_output, attn_norm, ffn_gate (w1), ffn_down (w2), ffn_up (w3), ffn_norm. No
 * Q/K permutation: llama2.c's RoPE already rotates adjacent pairs, the GGUF llama convention. Norms are F32,
 * token_embd and output in opts->embed_type, the seven linear layers in opts->type (ternarized per tensor by
 * opts->rule first when that type is ternary, which needs rows that are a multiple of 256). The vocabulary comes
 * from the llama2.c tokenizer (converted as llama.cpp did, see convert_vocab.c) or from --vocab FILE.gguf.
 *
 * The checkpoint is memory-mapped; tensors are quantized into an arena and written once at the end, by the
 * GGUF writer's temporary-file-and-rename, so a failure leaves no output file. */
#define _POSIX_C_SOURCE 200809L
#include "convert_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the llama2.c reader assumes a little-endian host"
#endif

#define LLAMA2C_HEADER_BYTES 28
#define LLAMA2C_MAGIC_V1 0x616b3432 /* "ak42": llama2.c's newer export formats (version 1 and 2) */

typedef struct {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
    int shared; /* the classifier is token_embedding_table */
    int head_size, kv_dim;
} llama2c_config;

/* Pointers into the mapped checkpoint (all float32). */
typedef struct {
    const float *token_embd, *rms_att, *wq, *wk, *wv, *wo, *rms_ffn, *w1, *w2, *w3, *rms_final, *wcls;
} llama2c_weights;

static trn_status parse_header(const char *path, const uint8_t *base, size_t size, llama2c_config *c) {
    if (size < LLAMA2C_HEADER_BYTES)
        return trn_fail(TRN_ERR_FORMAT, "%s: not a llama2.c checkpoint: %zu bytes, shorter than the 28-byte header", path,
                        size);
    int32_t h[7];
    memcpy(h, base, sizeof(h));
    if ((uint32_t)h[0] == LLAMA2C_MAGIC_V1)
        return trn_fail(TRN_ERR_UNSUPPORTED,
                        "%s: llama2.c's version 1/2 export format (magic \"ak42\"); only the legacy version 0 float32 "
                        "format is supported (export.py --version 0)", path);
    c->dim = h[0];
    c->hidden_dim = h[1];
    c->n_layers = h[2];
    c->n_heads = h[3];
    c->n_kv_heads = h[4];
    c->seq_len = h[6];
    c->shared = h[5] > 0;
    c->vocab_size = h[5] == INT32_MIN ? 0 : (h[5] < 0 ? -h[5] : h[5]);
    if (c->dim <= 0 || c->hidden_dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
        c->vocab_size <= 0 || c->seq_len <= 0)
        return trn_fail(TRN_ERR_FORMAT,
                        "%s: not a llama2.c checkpoint: header dim=%d hidden_dim=%d n_layers=%d n_heads=%d n_kv_heads=%d "
                        "vocab_size=%d seq_len=%d (all must be positive, vocab_size may be negative)",
                        path, h[0], h[1], h[2], h[3], h[4], h[5], h[6]);
    if (c->dim % c->n_heads != 0)
        return trn_fail(TRN_ERR_FORMAT, "%s: header: n_heads=%d does not divide dim=%d", path, c->n_heads, c->dim);
    if (c->n_heads % c->n_kv_heads != 0)
        return trn_fail(TRN_ERR_FORMAT, "%s: header: n_kv_heads=%d does not divide n_heads=%d", path, c->n_kv_heads,
                        c->n_heads);
    c->head_size = c->dim / c->n_heads;
    if (c->head_size % 2 != 0)
        return trn_fail(TRN_ERR_FORMAT, "%s: header: head size %d (dim %d / n_heads %d) is odd; RoPE needs pairs", path,
                        c->head_size, c->dim, c->n_heads);
    c->kv_dim = c->head_size * c->n_kv_heads;
    return TRN_OK;
}

/* Sets the weight pointers and checks the file size against the header. */
static trn_status locate_weights(const char *path, const uint8_t *base, size_t size, const llama2c_config *c,
                                 llama2c_weights *w) {
    const uint64_t l = (uint64_t)c->n_layers, d = (uint64_t)c->dim, hd = (uint64_t)c->hidden_dim,
                   kv = (uint64_t)c->kv_dim, v = (uint64_t)c->vocab_size;
    /* The arrays' float counts, each a product checked for overflow (header values up to 2^31 each). */
    const uint64_t counts[][3] = {
        {v, d, 1},                                  /* token_embedding_table */
        {l, d, 1},  {l, d, d},  {l, kv, d},         /* rms_att, wq, wk */
        {l, kv, d}, {l, d, d},  {l, d, 1},          /* wv, wo, rms_ffn */
        {l, hd, d}, {l, d, hd}, {l, hd, d},         /* w1, w2, w3 */
        {d, 1, 1},                                  /* rms_final */
        {2, (uint64_t)c->seq_len, (uint64_t)(c->head_size / 2)}, /* freq_cis_real, freq_cis_imag */
        {c->shared ? 0 : v, d, 1},                  /* wcls */
    };
    uint64_t floats = 0, expected = 0;
    int fits = 1;
    for (size_t i = 0; fits && i < TRN_ARRAY_LEN(counts); i++) {
        uint64_t n = 0;
        fits = trn_size_product(counts[i], 3, &n) && trn_size_add(floats, n, &floats);
    }
    fits = fits && trn_size_mul(floats, 4, &expected) && trn_size_add(expected, LLAMA2C_HEADER_BYTES, &expected);
    if (!fits)
        return trn_fail(TRN_ERR_FORMAT, "%s: the header (dim %d, hidden_dim %d, %d layers, vocab %d) implies more than "
                        "2^64 bytes, but the file has %zu", path, c->dim, c->hidden_dim, c->n_layers, c->vocab_size,
                        size);
    const uint64_t freq = (uint64_t)c->seq_len * (uint64_t)(c->head_size / 2);
    if (expected != (uint64_t)size)
        return trn_fail(TRN_ERR_FORMAT,
                        "%s: the header (dim %d, hidden_dim %d, %d layers, %d/%d heads, vocab %d%s, seq_len %d) implies "
                        "%llu bytes, but the file has %zu",
                        path, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->vocab_size,
                        c->shared ? "" : " + classifier", c->seq_len, (unsigned long long)expected, size);
    const float *p = (const float *)(base + LLAMA2C_HEADER_BYTES);
    w->token_embd = p, p += v * d;
    w->rms_att = p, p += l * d;
    w->wq = p, p += l * d * d;
    w->wk = p, p += l * kv * d;
    w->wv = p, p += l * kv * d;
    w->wo = p, p += l * d * d;
    w->rms_ffn = p, p += l * d;
    w->w1 = p, p += l * hd * d;
    w->w2 = p, p += l * d * hd;
    w->w3 = p, p += l * hd * d;
    w->rms_final = p, p += d;
    p += 2 * freq; /* freq_cis_real, freq_cis_imag: unused */
    w->wcls = c->shared ? w->token_embd : p;
    return TRN_OK;
}

/* general.name: the checkpoint's file name without directory and extension. */
static void model_name(const char *path, char *out, size_t cap) {
    const char *slash = strrchr(path, '/');
    const char *name = slash ? slash + 1 : path;
    snprintf(out, cap, "%s", name[0] ? name : "llama2c");
    char *dot = strrchr(out, '.');
    if (dot && dot != out)
        *dot = 0;
}

typedef struct {
    trn_gguf_writer *writer;
    trn_convert_arena arena;
    trn_progress progress;
    const trn_convert_options *opts;
    float *scratch; /* ternarization copy, sized for the largest linear layer */
} conversion;

/* A linear layer [rows][cols]: ternarized (on a copy) first when the target type is ternary. */
static trn_status add_linear(conversion *cv, const char *name, const float *data, int64_t rows, int64_t cols) {
    const trn_type type = cv->opts->type;
    const trn_type_traits *traits = trn_type_get(type);
    const float *src = data;
    if (traits && traits->is_ternary) {
        memcpy(cv->scratch, data, (size_t)(rows * cols) * sizeof(float));
        trn_ternarize(cv->scratch, rows * cols, cv->opts->rule);
        src = cv->scratch;
    }
    TRN_TRY(trn_convert_add_tensor(cv->writer, &cv->arena, name, type, src, rows, cols));
    trn_progress_add(&cv->progress, rows * cols);
    return TRN_OK;
}

static trn_status add_plain(conversion *cv, const char *name, trn_type type, const float *data, int64_t rows,
                            int64_t cols) {
    TRN_TRY(trn_convert_add_tensor(cv->writer, &cv->arena, name, type, data, rows, cols));
    trn_progress_add(&cv->progress, rows * cols);
    return TRN_OK;
}

static trn_status add_tensors(conversion *cv, const llama2c_config *c, const llama2c_weights *w) {
    const int64_t d = c->dim, hd = c->hidden_dim, kv = c->kv_dim, v = c->vocab_size;
    const trn_type embed = cv->opts->embed_type;
    TRN_TRY(add_plain(cv, "token_embd.weight", embed, w->token_embd, v, d));
    TRN_TRY(add_plain(cv, "output_norm.weight", TRN_TYPE_F32, w->rms_final, 1, d));
    /* llama.cpp's converter stores a copy of token_embd as output.weight when the classifier is shared; so do we
     * (the file then also runs where output.weight is required). */
    TRN_TRY(add_plain(cv, "output.weight", embed, w->wcls, v, d));
    char name[64];
    for (int64_t l = 0; l < c->n_layers; l++) {
        snprintf(name, sizeof(name), "blk.%d.attn_q.weight", (int)l);
        TRN_TRY(add_linear(cv, name, w->wq + l * d * d, d, d));
        snprintf(name, sizeof(name), "blk.%d.attn_k.weight", (int)l);
        TRN_TRY(add_linear(cv, name, w->wk + l * kv * d, kv, d));
        snprintf(name, sizeof(name), "blk.%d.attn_v.weight", (int)l);
        TRN_TRY(add_linear(cv, name, w->wv + l * kv * d, kv, d));
        snprintf(name, sizeof(name), "blk.%d.attn_output.weight", (int)l);
        TRN_TRY(add_linear(cv, name, w->wo + l * d * d, d, d));
        snprintf(name, sizeof(name), "blk.%d.attn_norm.weight", (int)l);
        TRN_TRY(add_plain(cv, name, TRN_TYPE_F32, w->rms_att + l * d, 1, d));
        snprintf(name, sizeof(name), "blk.%d.ffn_gate.weight", (int)l);
        TRN_TRY(add_linear(cv, name, w->w1 + l * hd * d, hd, d));
        snprintf(name, sizeof(name), "blk.%d.ffn_down.weight", (int)l);
        TRN_TRY(add_linear(cv, name, w->w2 + l * d * hd, d, hd));
        snprintf(name, sizeof(name), "blk.%d.ffn_up.weight", (int)l);
        TRN_TRY(add_linear(cv, name, w->w3 + l * hd * d, hd, d));
        snprintf(name, sizeof(name), "blk.%d.ffn_norm.weight", (int)l);
        TRN_TRY(add_plain(cv, name, TRN_TYPE_F32, w->rms_ffn + l * d, 1, d));
    }
    return TRN_OK;
}

static trn_status convert_mapped(const trn_convert_options *o, const uint8_t *base, size_t size) {
    const char *path = o->input;
    llama2c_config c;
    llama2c_weights w;
    memset(&c, 0, sizeof(c));
    memset(&w, 0, sizeof(w));
    TRN_TRY(parse_header(path, base, size, &c));
    TRN_TRY(locate_weights(path, base, size, &c, &w));

    const trn_type_traits *traits = trn_type_get(o->type);
    if (traits && traits->is_ternary && (c.dim % TRN_QK_K != 0 || c.hidden_dim % TRN_QK_K != 0))
        return trn_fail(TRN_ERR_UNSUPPORTED,
                        "%s: rows of %d values cannot be %s (needs a multiple of %d); use --type f32 or f16", path, c.dim % TRN_QK_K != 0 ? c.dim : c.hidden_dim, traits->name, TRN_QK_K);

    trn_vocab vocab;
    memset(&vocab, 0, sizeof(vocab));
    if (o->vocab_gguf)
        TRN_TRY(trn_vocab_from_gguf(o->vocab_gguf, &vocab));
    else if (o->tokenizer)
        TRN_TRY(trn_vocab_from_llama2c(o->tokenizer, c.vocab_size, &vocab));
    else
        return trn_fail(TRN_ERR_INVALID,
                        "%s: a llama2.c checkpoint needs its tokenizer: --tokenizer TOK.bin (or --vocab FILE.gguf)", path);
    if (vocab.n != c.vocab_size) {
        trn_status s = trn_fail(TRN_ERR_FORMAT, "%s: the vocabulary has %d pieces but %s has vocab_size %d",
                                o->vocab_gguf ? o->vocab_gguf : o->tokenizer, vocab.n, path, c.vocab_size);
        trn_vocab_free(&vocab);
        return s;
    }

    conversion cv;
    memset(&cv, 0, sizeof(cv));
    cv.opts = o;
    trn_status status = TRN_OK;
    cv.writer = trn_gguf_writer_new();
    if (traits && traits->is_ternary) {
        int64_t largest = (int64_t)TRN_MAX(c.dim, c.hidden_dim) * c.dim;
        cv.scratch = malloc((size_t)largest * sizeof(float));
    }
    if (!cv.writer || (traits && traits->is_ternary && !cv.scratch)) {
        status = trn_fail(TRN_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }

    trn_hparams hp;
    memset(&hp, 0, sizeof(hp));
    hp.n_layer = c.n_layers;
    hp.n_embd = c.dim;
    hp.n_ff = c.hidden_dim;
    hp.n_head = c.n_heads;
    hp.n_head_kv = c.n_kv_heads;
    hp.head_dim = c.head_size;
    hp.n_vocab = c.vocab_size;
    /* The model's real training context. llama.cpp's converter wrote its default 128 here (stories260K.gguf says
     * 128 though the model was trained on 512); seq_len is the correct value. */
    hp.n_ctx_train = c.seq_len;
    hp.rope_base = 10000.0f; /* run.c's constants */
    hp.rms_eps = 1e-5f;
    char name[256];
    model_name(path, name, sizeof(name));
    trn_convert_write_hparams(cv.writer, &hp, name);
    trn_vocab_write(cv.writer, &vocab);

    int64_t total = (int64_t)c.vocab_size * c.dim * 2 + (int64_t)c.dim * (1 + 2 * (int64_t)c.n_layers) +
                    (int64_t)c.n_layers * ((int64_t)c.dim * c.dim * 2 + (int64_t)c.kv_dim * c.dim * 2 +
                                           (int64_t)c.hidden_dim * c.dim * 3);
    trn_progress_begin(&cv.progress, o->progress, "converting", total);
    status = add_tensors(&cv, &c, &w);
    trn_progress_end(&cv.progress);
    if (status == TRN_OK)
        status = trn_gguf_write_file(cv.writer, o->output);

done:
    free(cv.scratch);
    trn_gguf_writer_free(cv.writer);
    trn_convert_arena_free(&cv.arena);
    trn_vocab_free(&vocab);
    return status;
}

trn_status trn_convert_llama2c(const trn_convert_options *opts) {
    const char *path = opts->input;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return trn_fail(TRN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint64_t file_size = 0;
    const trn_status checked = trn_check_regular_fd(fd, path, SIZE_MAX, "a llama2.c checkpoint", &file_size);
    if (checked != TRN_OK) {
        close(fd);
        return checked;
    }
    size_t size = (size_t)file_size;
    if (size < LLAMA2C_HEADER_BYTES) {
        close(fd);
        return trn_fail(TRN_ERR_FORMAT, "%s: not a llama2.c checkpoint: %zu bytes, shorter than the 28-byte header",
                        path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return trn_fail(TRN_ERR_IO, "%s: cannot map: %s", path, strerror(errno));
    trn_status status = convert_mapped(opts, (const uint8_t *)map, size);
    munmap(map, size);
    return status;
}
