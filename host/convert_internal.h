/* convert_internal.h: what the converters of `trinity convert` share, internal to host/ (and the tests that reach
 * into one converter). The public side, the options and trn_convert, is convert.h.
 *
 * Layers, each depending only on those above it:
 *   convert_common.c   GGUF metadata of the hyperparameters, the tensor-data arena, ternarization, the Q/K row
 *                      permutation, quantizing a tensor into the writer, the progress bar;
 *   convert_vocab.c    vocabularies: the tokenizer.model, tokenizer.json and tokenizer.bin readers, a GGUF's
 *                      vocabulary, writing one as metadata;
 *   convert_hf.c       Hugging Face checkpoints, and the checkpoint driver the TRIN converter reuses;
 *   convert_trin.c, convert_llama2c.c   the other two formats;
 *   convert.c          trn_convert: checks the options and calls one converter. */
#ifndef TRN_CONVERT_INTERNAL_H
#define TRN_CONVERT_INTERNAL_H

#include "convert.h"
#include "gguf.h"
#include "model.h"
#include "safetensors.h"

/* ---- vocabularies (host/convert_vocab.c) ---- */

/* A vocabulary to write as tokenizer.ggml.* metadata. */
typedef struct {
    char **tokens;   /* [n] pieces, U+2581 for spaces */
    float *scores;   /* [n] */
    int32_t *types;  /* [n] trn_token_type */
    int n;
    int bos, eos, unk;
} trn_vocab;

void trn_vocab_free(trn_vocab *vocab);
/* Writes tokenizer.ggml.model = "llama", tokens, scores, token_type and the special ids. */
void trn_vocab_write(trn_gguf_writer *w, const trn_vocab *vocab);
/* The vocabulary of a GGUF file (a model or a vocabulary-only file). */
trn_status trn_vocab_from_gguf(const char *path, trn_vocab *out);
/* SentencePiece's tokenizer.model (protobuf), Hugging Face's tokenizer.json (without cJSON: an error saying so),
 * llama2.c's tokenizer.bin (vocab_size entries). */
trn_status trn_vocab_from_sentencepiece(const char *path, trn_vocab *out);
trn_status trn_vocab_from_hf_json(const char *path, trn_vocab *out);
trn_status trn_vocab_from_llama2c(const char *path, int vocab_size, trn_vocab *out);
/* The vocabulary for a Hugging Face directory: --vocab GGUF if given, else tokenizer.model, else tokenizer.json. */
trn_status trn_vocab_for_hf_dir(const char *dir, const char *vocab_gguf, trn_vocab *out);

/* ---- metadata, tensor data and progress (host/convert_common.c) ---- */

/* llama.* hyperparameter keys and general.* keys for a model of these hyperparameters. */
void trn_convert_write_hparams(trn_gguf_writer *w, const trn_hparams *hp, const char *name);

/* Tensor data that must outlive trn_gguf_write_file: allocations are kept here and freed together. */
typedef struct {
    void **blocks;
    int n, cap;
} trn_convert_arena;
void *trn_convert_arena_alloc(trn_convert_arena *arena, size_t bytes); /* NULL when out of memory */
void trn_convert_arena_free(trn_convert_arena *arena);

/* Ternarizes w[n] in place by `rule`: afterwards every value is -s, 0 or +s for one scale s (returned). */
float trn_ternarize(float *w, int64_t n, trn_ternary_rule rule);
/* Hugging Face Q/K rows [n_head][head_dim] (rotate-half RoPE) -> GGUF llama order (adjacent pairs):
 * GGUF row h*hd + 2j + k = HF row h*hd + k*hd/2 + j. w is [rows][cols] floats, rewritten in place. */
void trn_permute_qk(float *w, int n_head, int head_dim, int64_t cols);
/* Quantizes w[rows][cols] floats to `type` into arena memory and adds the tensor to the writer. */
trn_status trn_convert_add_tensor(trn_gguf_writer *w, trn_convert_arena *arena, const char *name, trn_type type,
                                  const float *data, int64_t rows, int64_t cols);

/* A progress bar on standard error, drawn only when enabled (and stderr is a terminal). */
typedef struct {
    int enabled;
    int64_t total, done;
    const char *label;
    int last_percent;
} trn_progress;
void trn_progress_begin(trn_progress *p, int enabled, const char *label, int64_t total);
void trn_progress_add(trn_progress *p, int64_t amount);
void trn_progress_end(trn_progress *p);

/* ---- the three converters, called by trn_convert (host/convert.c) ---- */

/* host/convert_hf.c, convert_trin.c (without cJSON both are stand-ins in convert_nojson.c), convert_llama2c.c. */
trn_status trn_convert_hf(const trn_convert_options *opts);
trn_status trn_convert_trin(const trn_convert_options *opts);
trn_status trn_convert_llama2c(const trn_convert_options *opts);

/* ---- Hugging Face checkpoints (host/convert_hf.c), shared with the TRIN converter ---- */

/* config.json of a Llama checkpoint. */
typedef struct {
    trn_hparams hp; /* n_vocab = vocab_size, n_ctx_train = max_position_embeddings */
    int tied;       /* tie_word_embeddings: no lm_head.weight, the LM head is model.embed_tokens.weight */
} trn_hf_config;
trn_status trn_hf_read_config(const char *dir, trn_hf_config *out);

/* A linear layer, in module order: per block q, k, v, o, gate, up, down; then the LM head. */
typedef struct {
    int index;          /* position in that order */
    char name[64];      /* GGUF tensor name: "blk.3.attn_v.weight", "output.weight" */
    char label[48];     /* the name without ".weight", for messages: "blk.3.attn_v" */
    char hf_name[96];   /* the checkpoint's tensor (model.embed_tokens.weight for a tied LM head) */
    int64_t rows, cols; /* [rows][cols] as Hugging Face stores it: [out][in] */
    int qk_heads;       /* heads whose rows are permuted to the GGUF order: n_head (attn_q), n_head_kv (attn_k), 0 */
} trn_hf_linear;
#define TRN_HF_LINEARS_PER_LAYER 7
/* Fills out[n_layer * 7 + 1]; returns that count. */
int trn_hf_linear_layers(const trn_hf_config *cfg, trn_hf_linear *out);

/* Produces a linear layer's floats dst[rows * cols] in Hugging Face row order (before the Q/K permutation);
 * `base` is the checkpoint's tensor of that shape, already checked. */
typedef trn_status (*trn_hf_linear_fn)(void *ctx, const trn_hf_linear *layer, const trn_st_tensor *base, float *dst);

/* Converts the checkpoint in `dir` into opts->output: hyperparameters, vocabulary, embeddings (embed_type) and
 * norms (F32) from the checkpoint; each linear layer from `linear`, Q/K rows permuted, quantized to opts->type.
 * with_head: write output.weight (from `linear`, with token_embd as its base where the checkpoint ties it). */
trn_status trn_hf_convert_checkpoint(const trn_convert_options *opts, const char *dir, const trn_hf_config *cfg,
                                     const char *name, int with_head, trn_hf_linear_fn linear, void *ctx);

#endif
