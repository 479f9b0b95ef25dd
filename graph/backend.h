/* backend.h: the interface every backend (cpu_fallback/, cuda/) implements to run a trn_graph, the functions the
 * rest of the engine calls it through, and the one factory that chooses a backend by device name.
 *
 * The host sees only these functions, as ggml's backends do: prepare once (weights bound or
 * uploaded, KV cache and scratch allocated), then one step per token: token id and position in, next
 * token id out (sampled by the backend), logits readable on demand. A backend may also offer prefill: many
 * tokens through the graph as one batch (a prompt), with the results of as many steps. */
#ifndef TRN_BACKEND_H
#define TRN_BACKEND_H

#include <stddef.h>

#include "host/sampler.h"
#include "graph.h"

typedef struct trn_backend trn_backend;

/* How ternary (TQ1_0, TQ2_0) layers see their input vector. */
typedef enum {
    TRN_ACT_INT8 = 0, /* quantized to int8 per block of 256, as llama.cpp's TQ kernels do (fast; the default) */
    TRN_ACT_F32 = 1,  /* kept in float: exact to the model's math up to float rounding */
} trn_act_mode;

/* Where a GPU backend keeps the weights (the CPU backend reads them where they are mapped). */
typedef enum {
    TRN_WEIGHTS_AUTO = 0,   /* resident where they fit in free device memory, else as many layers as fit + streaming */
    TRN_WEIGHTS_RESIDENT,   /* all in device memory */
    TRN_WEIGHTS_STREAMING,  /* in pinned host memory, each layer copied into a ring of device buffers before use
                               (the first resident_layers layers resident) */
    TRN_WEIGHTS_MAPPED,     /* in pinned host memory, read by the kernels directly (zero-copy) */
} trn_weight_mode;

typedef struct {
    int n_threads;          /* CPU threads; <= 0 means all cores */
    trn_act_mode act;       /* activations of ternary layers */
    const char *kernels;    /* CPU kernel table by name: "auto", "scalar" (the reference, to bisect a wrong result),
                               "avx2", "avx512"; NULL: the environment's TRN_KERNELS, else auto */
    trn_sampling sampling;  /* used by the graph's SAMPLE node */
    trn_weight_mode weights;
    int resident_layers_given; /* STREAMING or AUTO: resident_layers layers stay resident (else AUTO decides and */
    int resident_layers;       /* STREAMING keeps none) */
    int max_batch;          /* prefill: tokens per batch; <= 0: the backend's default */
    int n_slots;            /* decode_batch: sequences whose KV caches the backend holds; <= 0: 1 */
    int dense_f16;          /* CUDA: every ternary matrix expanded to F16 at load and run by the float kernels (and
                               cuBLAS in a batched prefill): the dense baseline the ternary kernels are compared with */
} trn_backend_config;

/* One token of a decode_batch: which sequence slot, at which of its positions, and whether its logits are wanted. */
typedef struct {
    int token;
    int slot;
    int pos;
    int logits;
} trn_batch_token;

/* What a prepared backend moves and holds (for benchmarks). */
typedef struct {
    const char *weights;           /* "resident", "streaming", "mapped", "host" (CPU) */
    int resident_layers, n_layers;
    double h2d_bytes_per_token;    /* weight bytes copied host -> device per decode step */
    double mapped_bytes_per_token; /* weight bytes kernels read from host memory per decode step */
    double device_bytes;           /* device memory allocated */
    double widened_bytes_per_token; /* weight bytes a decode step reads beyond the model file's, where the backend
                                       holds matrices in a wider type (the CPU's TQ1_0 as TQ2_0 on the AVX2 table) */
} trn_backend_stats;

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
    /* Optional (NULL where a backend has nothing to report): fills *out. */
    void (*stats)(trn_backend *backend, trn_backend_stats *out);
    /* Optional (NULL where a backend has none: trn_backend_prefill then steps token by token): runs
     * tokens[0..n_tokens) at positions pos0, pos0 + 1, ... with the results of n_tokens steps, bitwise: the KV
     * cache and token history filled for every position; with want_output the last token's logits computed
     * (readable through logits()) and the next token sampled into *next_token; all_logits, when not NULL,
     * receives every token's logits, [n_tokens][n_vocab]. */
    trn_status (*prefill)(trn_backend *backend, const int *tokens, int n_tokens, int pos0, int want_output,
                          int *next_token, float *all_logits);
    /* Optional (NULL where a backend holds one sequence): runs tokens of several sequence slots (config n_slots KV
     * caches) as one batch; logits receives [tokens with .logits set][n_vocab] in their order. Checked by the caller:
     * ids, slots, and positions (each at most what its slot has filled, in increasing order per slot). A slot's
     * logits are bitwise those of the same tokens run through step/prefill. No sampling (the caller's). */
    trn_status (*decode_batch)(trn_backend *backend, const trn_batch_token *tokens, int n_tokens, float *logits);
} trn_backend_i;

struct trn_backend {
    const trn_backend_i *iface; /* the backend's entries: called through the functions below, not directly */
    void *context;
    const trn_graph *graph;     /* bound by trn_backend_prepare */
};

/* ---- the backend behind functions (graph/backend.c) ---- */

/* The one factory: "cpu", "cuda" or "auto" (CUDA where this build has it and a usable GPU is present, else the CPU).
 * For auto, choice[cap] (may be NULL) receives what was chosen and why: "cuda", or "cpu (CUDA unavailable: REASON)";
 * it is left empty for a named device. Prints nothing. */
trn_status trn_backend_create(const char *device, trn_backend **out, char *choice, size_t cap);
void trn_backend_free(trn_backend *backend);

trn_status trn_backend_prepare(trn_backend *backend, const trn_graph *graph, const trn_backend_config *config);
trn_status trn_backend_step(trn_backend *backend, int token, int pos, int want_output, int *next_token);
const float *trn_backend_logits(trn_backend *backend);
const char *trn_backend_name(const trn_backend *backend);     /* "cpu", "cuda" */
const char *trn_backend_describe(trn_backend *backend);       /* e.g. "cpu (avx2, 2 threads)" */
/* What the backend moves and holds; all zero (weights NULL) where it reports nothing. */
void trn_backend_get_stats(trn_backend *backend, trn_backend_stats *out);
/* Whether the backend decodes several sequence slots as one batch (decode_batch), and that call. */
int trn_backend_has_decode_batch(const trn_backend *backend);
trn_status trn_backend_decode_batch(trn_backend *backend, const trn_batch_token *tokens, int n_tokens, float *logits);
/* Whether prefill runs tokens as one batch (else trn_backend_prefill steps token by token). */
int trn_backend_has_batched_prefill(const trn_backend *backend);
/* Runs tokens[0..n_tokens) at positions pos0.. with the results of n_tokens steps (the prefill contract above):
 * through the backend's batched prefill where it has one, else token by token (trn_backend_prefill_steps). */
trn_status trn_backend_prefill(trn_backend *backend, const int *tokens, int n_tokens, int pos0, int want_output,
                               int *next_token, float *all_logits);
/* The same through one step per token (logits computed only where needed): the fallback, and the baseline the
 * batched prefill is measured and tested against. */
trn_status trn_backend_prefill_steps(trn_backend *backend, const int *tokens, int n_tokens, int pos0, int want_output,
                                     int *next_token, float *all_logits);

#endif
