/* backend.h: the interface every backend (CPU now, CUDA next) implements to run a trn_graph.
 *
 * The host's generation loop sees only this table, as ggml's backends do: prepare once (weights bound or
 * uploaded, KV cache and scratch allocated), then one step per token: token id and position in, next
 * token id out (sampled by the backend), logits readable on demand. A backend may also offer prefill: many
 * tokens through the graph as one batch (a prompt), with the results of as many steps. */
#ifndef TRN_BACKEND_H
#define TRN_BACKEND_H

#include "../host/sampler.h"
#include "graph.h"

typedef struct trn_backend trn_backend;

/* How ternary (TQ1_0, TQ2_0) layers see their input vector. */
typedef enum {
    TRN_ACT_INT8 = 0, /* quantized to int8 per block of 256, as llama.cpp's TQ kernels do (fast; the default) */
    TRN_ACT_F32 = 1,  /* kept in float: exact to the model's math up to float rounding */
} trn_act_mode;

typedef struct {
    int n_threads;          /* CPU threads; <= 0 means all cores */
    trn_act_mode act;       /* activations of ternary layers */
    int force_scalar;       /* run the scalar reference kernels (to bisect a wrong result) */
    trn_sampling sampling;  /* used by the graph's SAMPLE node */
    int max_batch;          /* prefill: tokens per batch; <= 0: the backend's default */
} trn_backend_config;

typedef struct {
    const char *name;
    /* Binds the graph and allocates what the steps need; the graph must outlive the backend. */
    trn_status (*prepare)(trn_backend *backend, const trn_graph *graph, const trn_backend_config *config);
    /* Runs one decode step at `pos` for `token`. With want_output the logits are computed and the next token
     * sampled into *next_token; without it only the KV cache is filled (a prompt token whose logits are unused). */
    trn_status (*step)(trn_backend *backend, int token, int pos, int want_output, int *next_token);
    /* Logits of the last step run with want_output, [n_vocab]. */
    const float *(*logits)(trn_backend *backend);
    /* One line describing the kernels in use, e.g. "cpu (avx2, 2 threads)". */
    const char *(*describe)(trn_backend *backend);
    void (*free)(trn_backend *backend);
    /* Optional (NULL where a backend has none: callers then step token by token, see trn_prefill): runs
     * tokens[0..n_tokens) at positions pos0, pos0 + 1, ... with the results of n_tokens steps, bitwise: the KV
     * cache and token history filled for every position; with want_output the last token's logits computed
     * (readable through logits()) and the next token sampled into *next_token; all_logits, when not NULL,
     * receives every token's logits, [n_tokens][n_vocab]. */
    trn_status (*prefill)(trn_backend *backend, const int *tokens, int n_tokens, int pos0, int want_output,
                          int *next_token, float *all_logits);
} trn_backend_i;

struct trn_backend {
    const trn_backend_i *iface;
    void *context;
};

/* Creates the backend named "cpu" (or "cuda" where built). */
trn_status trn_backend_create(const char *device, trn_backend **out);

static inline void trn_backend_free(trn_backend *backend) {
    if (backend)
        backend->iface->free(backend);
}

#endif
