/* generate.h: prompts through any backend (batched prefill or step by step), and backend selection. */
#ifndef TRN_GENERATE_H
#define TRN_GENERATE_H

#include <stdio.h>

#include "../graph/backend.h"
#include "model.h"

/* Runs tokens[0..n_tokens) at positions pos0.. as the backend's prefill does (see backend.h): through the backend's
 * batched prefill where it has one, else token by token (trn_prefill_steps). With want_output the next token is
 * sampled from the last token's logits into *next_token; all_logits, when not NULL, receives [n_tokens][n_vocab]. */
trn_status trn_prefill(const trn_graph *graph, trn_backend *backend, const int *tokens, int n_tokens, int pos0,
                       int want_output, int *next_token, float *all_logits);
/* The same through one step per token (logits computed only where needed): the fallback, and the baseline the
 * batched prefill is measured and tested against. */
trn_status trn_prefill_steps(const trn_graph *graph, trn_backend *backend, const int *tokens, int n_tokens, int pos0,
                             int want_output, int *next_token, float *all_logits);

/* "cpu", "cuda" or "auto" (the best available). For auto, choice[cap] (may be NULL) receives what was chosen and why:
 * "cuda", or "cpu (CUDA unavailable: REASON)"; it is left empty for a named device. Prints nothing. */
trn_status trn_backend_for_device(const char *device, trn_backend **out, char *choice, size_t cap);

#endif
