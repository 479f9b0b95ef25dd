/* eval.c: teacher-forced logits and perplexity (see eval.h for the method). Tokens go through trn_backend_prefill: batched
 * where the backend can (bitwise the logits of token-by-token steps), step by step otherwise. */
#include "eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


enum { EVAL_BATCH = 64 }; /* positions whose logits perplexity holds at once */

double trn_log_prob(const float *logits, int n_vocab, int target) {
    float max = logits[0];
    for (int i = 1; i < n_vocab; i++)
        max = logits[i] > max ? logits[i] : max;
    double sum = 0.0;
    for (int i = 0; i < n_vocab; i++)
        sum += exp((double)logits[i] - max);
    return (double)logits[target] - max - log(sum);
}

trn_status trn_eval_logits(const trn_model *model, const trn_graph *graph, trn_backend *backend, const int *ids,
                           int n_ids, float *out) {
    const int n_vocab = model->hp.n_vocab;
    if (n_ids > graph->n_ctx)
        return trn_fail(TRN_ERR_INVALID, "%d tokens do not fit the context of %d (-c)", n_ids, graph->n_ctx);
    for (int i = 0; i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= n_vocab)
            return trn_fail(TRN_ERR_INVALID, "token id %d (position %d) is outside the vocabulary of %d", ids[i], i,
                            n_vocab);
    return n_ids > 0 ? trn_backend_prefill(backend, ids, n_ids, 0, 0, NULL, out) : TRN_OK;
}

trn_status trn_eval_perplexity(const trn_model *model, const trn_graph *graph, trn_backend *backend, const int *tokens,
                               int n_tokens, int ctx, trn_perplexity_progress progress, void *user,
                               trn_perplexity_result *res) {
    memset(res, 0, sizeof(*res));
    if (ctx < 4 || ctx > graph->n_ctx)
        return trn_fail(TRN_ERR_INVALID, "perplexity context %d must be from 4 to %d", ctx, graph->n_ctx);
    if (n_tokens < ctx)
        return trn_fail(TRN_ERR_INVALID, "the text is %d tokens; perplexity with -c %d needs at least %d", n_tokens, ctx,
                        ctx);
    const int n_vocab = model->hp.n_vocab, bos = trn_tokenizer_bos(model->tokenizer);
    const int n_chunks = n_tokens / ctx, first = ctx / 2;
    double sum = 0.0, sum_sq = 0.0;
    int scored = 0;
    int *ids = malloc((size_t)ctx * sizeof(int));
    float *logits = malloc((size_t)EVAL_BATCH * n_vocab * sizeof(float));
    if (!ids || !logits) {
        free(ids);
        free(logits);
        return trn_fail(TRN_ERR_NOMEM, "out of memory for %d x %d logits", EVAL_BATCH, n_vocab);
    }
    trn_status status = TRN_OK;
    const double t0 = trn_time_s();
    for (int chunk = 0; chunk < n_chunks && status == TRN_OK; chunk++) {
        const int *chunk_tokens = tokens + (size_t)chunk * ctx;
        memcpy(ids, chunk_tokens, (size_t)ctx * sizeof(int));
        ids[0] = bos;
        /* positions 0..first-1 fill the cache; logits are needed only where a next token is scored */
        status = trn_backend_prefill(backend, ids, first, 0, 0, NULL, NULL);
        for (int j = first; j < ctx - 1 && status == TRN_OK; j += EVAL_BATCH) {
            const int n = TRN_MIN(EVAL_BATCH, ctx - 1 - j);
            status = trn_backend_prefill(backend, ids + j, n, j, 0, NULL, logits);
            for (int k = 0; k < n && status == TRN_OK; k++) {
                const double nll = -trn_log_prob(logits + (size_t)k * n_vocab, n_vocab, chunk_tokens[j + k + 1]);
                sum += nll;
                sum_sq += nll * nll;
                scored++;
            }
        }
        if (progress && status == TRN_OK)
            progress(chunk + 1, n_chunks, exp(sum / scored), user);
    }
    free(ids);
    free(logits);
    TRN_TRY(status);
    const double mean = sum / scored;
    const double var = sum_sq / scored - mean * mean; /* as llama.cpp: population variance, then / (N - 1) */
    res->mean_nll = mean;
    res->perplexity = exp(mean);
    res->stderr_perplexity = scored > 1 && var > 0 ? res->perplexity * sqrt(var / (scored - 1)) : 0.0;
    res->n_scored = scored;
    res->n_chunks = n_chunks;
    res->n_tokens = n_tokens;
    res->ctx = ctx;
    res->tokens_per_s = (double)n_chunks * (ctx - 1) / (trn_time_s() - t0);
    return TRN_OK;
}
