/* generate.h: the generation loop (prompt in, text out) over any backend, and backend selection. */
#ifndef TRN_GENERATE_H
#define TRN_GENERATE_H

#include <stdio.h>

#include "../graph/backend.h"
#include "model.h"

typedef struct {
    int n_predict;        /* new tokens to generate (stops earlier at EOS) */
    int add_bos;
    FILE *out;            /* the prompt and the generated text */
} trn_generate_options;

typedef struct {
    int n_prompt;         /* prompt tokens including BOS */
    int n_generated;
    double prompt_s;      /* time to process the prompt and sample the first token */
    double generate_s;    /* time for the remaining tokens */
    int hit_eos;
} trn_generate_stats;

/* Encodes `prompt`, checks that prompt + n_predict fits the graph's context, runs the prompt through the
 * backend and samples until EOS or n_predict tokens, printing the prompt and each new piece to opts->out
 * as UTF-8 that is never split inside a character. */
trn_status trn_generate(const trn_model *model, const trn_graph *graph, trn_backend *backend, const char *prompt,
                        const trn_generate_options *opts, trn_generate_stats *stats);

/* Runs tokens[0..n_tokens) at positions pos0.. as the backend's prefill does (see backend.h): through the backend's
 * batched prefill where it has one, else token by token (trn_prefill_steps). With want_output the next token is
 * sampled from the last token's logits into *next_token; all_logits, when not NULL, receives [n_tokens][n_vocab]. */
trn_status trn_prefill(const trn_graph *graph, trn_backend *backend, const int *tokens, int n_tokens, int pos0,
                       int want_output, int *next_token, float *all_logits);
/* The same through one step per token (logits computed only where needed): the fallback, and the baseline the
 * batched prefill is measured and tested against. */
trn_status trn_prefill_steps(const trn_graph *graph, trn_backend *backend, const int *tokens, int n_tokens, int pos0,
                             int want_output, int *next_token, float *all_logits);

/* "cpu", "cuda" or "auto" (the best available; says which on standard error). */
trn_status trn_backend_for_device(const char *device, trn_backend **out);

#endif
