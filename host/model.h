/* model.h: a Llama-architecture model bound from a GGUF file: hyperparameters, validated weight tensors
 * and the tokenizer.
 *
 * Every tensor the graph needs is looked up by its GGUF llama name and its shape and type are checked
 * here, once, so that later stages never meet a surprise. The LM head falls back to token_embd when
 * output.weight is absent (tied embeddings). Q and K weights follow the GGUF llama convention: RoPE
 * rotates adjacent pairs (x[2i], x[2i+1]) of each head, as llama.cpp does for files its converter writes. */
#ifndef TRN_MODEL_H
#define TRN_MODEL_H

#include "gguf.h"
#include "tokenizer.h"

/* One limit on the context (KV cache positions) everywhere: a file's llama.context_length, -c, the API. */
#define TRN_MAX_CONTEXT (1 << 20)
/* The context used where none is asked for: the model's own, at most this many positions (a file may declare a
 * context far larger than a run needs, and the KV cache is allocated for all of it up front). */
#define TRN_DEFAULT_CONTEXT 4096

typedef struct {
    int n_layer;     /* llama.block_count */
    int n_embd;      /* llama.embedding_length */
    int n_ff;        /* llama.feed_forward_length */
    int n_head;      /* llama.attention.head_count */
    int n_head_kv;   /* llama.attention.head_count_kv (default n_head) */
    int head_dim;    /* n_embd / n_head */
    int n_vocab;     /* rows of token_embd */
    int n_ctx_train; /* llama.context_length */
    float rope_base; /* llama.rope.freq_base (default 10000) */
    float rms_eps;   /* llama.attention.layer_norm_rms_epsilon (default 1e-5) */
} trn_hparams;

typedef struct {
    const trn_gguf_tensor *attn_norm; /* [n_embd] */
    const trn_gguf_tensor *wq;        /* [n_head*head_dim rows][n_embd] */
    const trn_gguf_tensor *wk;        /* [n_head_kv*head_dim][n_embd] */
    const trn_gguf_tensor *wv;        /* [n_head_kv*head_dim][n_embd] */
    const trn_gguf_tensor *wo;        /* [n_embd][n_head*head_dim] */
    const trn_gguf_tensor *ffn_norm;  /* [n_embd] */
    const trn_gguf_tensor *w_gate;    /* [n_ff][n_embd] */
    const trn_gguf_tensor *w_up;      /* [n_ff][n_embd] */
    const trn_gguf_tensor *w_down;    /* [n_embd][n_ff] */
} trn_layer_weights;

typedef struct {
    trn_gguf *gguf; /* owned; tensors point into it */
    char name[128];  /* general.name, or the file name */
    trn_hparams hp;
    const trn_gguf_tensor *token_embd;  /* [n_vocab][n_embd] */
    const trn_gguf_tensor *output_norm; /* [n_embd] */
    const trn_gguf_tensor *output;      /* [n_vocab][n_embd]; == token_embd when tied */
    int output_tied;
    trn_layer_weights *layers;          /* [n_layer] */
    trn_tokenizer *tokenizer;
} trn_model;

/* Opens a GGUF model file, or a built-in synthetic model when `path` is "synthetic:NAME". */
trn_status trn_model_load(const char *path, trn_model **out);
/* Parses the GGUF at `path`, or builds the synthetic model's image where `path` is "synthetic:NAME". */
trn_status trn_model_open_gguf(const char *path, trn_gguf **out);
/* Binds a parsed GGUF (taking ownership of it, also on failure). */
trn_status trn_model_from_gguf(trn_gguf *gguf, trn_model **out);
void trn_model_free(trn_model *model);

/* The context a run gets without -c: min(n_ctx_train, TRN_DEFAULT_CONTEXT). */
int trn_model_default_context(const trn_model *model);

/* Bytes of weights one decode step reads: every matrix once, one embedding row, the norms. */
size_t trn_model_weight_bytes_per_token(const trn_model *model);
/* Bytes of all tensors in the file. */
size_t trn_model_total_bytes(const trn_model *model);

/* ---- synthetic models (host/synthetic.c) ---- */

/* Names accepted by trn_model_synthetic: "tinyllama" (Trinity-1.1B shape, TQ2_0 linear layers),
 * "tinyllama-tq1" (the same in TQ1_0), "tiny" (a 2-layer model for tests). */
trn_status trn_synthetic_gguf(const char *name, trn_gguf **out);
int trn_synthetic_known(const char *name);

#endif
