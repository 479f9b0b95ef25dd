/* eval.h: measuring a model: teacher-forced logits and perplexity, over any backend.
 *
 * Perplexity follows llama.cpp's perplexity tool so figures compare: the text is tokenized once (with BOS),
 * cut into chunks of ctx tokens; in each chunk the first token is replaced by BOS, the chunk runs from position
 * 0, and the tokens of its second half are scored: the log-probability of token j + 1 given the logits after
 * token j, for j = ctx/2 .. ctx-2. PPL = exp(mean negative log-likelihood); its standard error is
 * PPL * sqrt(var(nll) / (N - 1)) with var the population variance, as llama.cpp prints it. */
#ifndef TRN_EVAL_H
#define TRN_EVAL_H

#include "graph/backend.h"
#include "model.h"

/* Logits after each of ids[0..n_ids), teacher-forced from position 0: out[n_ids][n_vocab].
 * The graph's context must hold n_ids positions. */
trn_status trn_eval_logits(const trn_model *model, const trn_graph *graph, trn_backend *backend, const int *ids,
                           int n_ids, float *out);

typedef struct {
    double perplexity;
    double stderr_perplexity;
    double mean_nll;
    int n_scored;        /* tokens whose probability was scored */
    int n_chunks;
    int n_tokens;        /* tokens of the whole text, BOS included */
    int ctx;
    double tokens_per_s; /* tokens run through the model per second */
} trn_perplexity_result;

/* Called after each chunk with the running perplexity (for a progress display); may be NULL. */
typedef void (*trn_perplexity_progress)(int chunk, int n_chunks, double running_perplexity, void *user);

/* tokens: the whole text tokenized with BOS. Needs at least ctx tokens (one chunk) and ctx >= 4; the graph's
 * context must hold ctx positions. */
trn_status trn_eval_perplexity(const trn_model *model, const trn_graph *graph, trn_backend *backend, const int *tokens,
                               int n_tokens, int ctx, trn_perplexity_progress progress, void *user,
                               trn_perplexity_result *result);

/* log softmax(logits)[target], computed stably in double precision. */
double trn_log_prob(const float *logits, int n_vocab, int target);

#endif
