/* sampler.h: choosing the next token from logits: greedy, temperature, top-k, top-p and the repetition
 * penalty, with a counter-based random number so that a seed fixes the text.
 *
 * Order (as Hugging Face applies them): repetition penalty over the context (a positive logit is divided by
 * the penalty, a negative one multiplied: the CTRL rule), then greedy if temp <= 0, else logits / temp,
 * top-k, softmax, top-p (the smallest set of most likely tokens whose probabilities reach p), and one
 * draw. The draw for position `pos` is u = hash(seed, pos) in [0, 1): no hidden RNG state, so a backend
 * that samples on a device can produce the same draws. */
#ifndef TRN_SAMPLER_H
#define TRN_SAMPLER_H

#include <stdint.h>

typedef struct {
    float temp;           /* <= 0: greedy */
    int top_k;            /* <= 0 or >= n_vocab: off */
    float top_p;          /* >= 1: off */
    float repeat_penalty; /* 1: off */
    uint64_t seed;
} trn_sampling;

/* The defaults llama.cpp users know: temp 0.8, top-k 40, top-p 0.95, no repetition penalty, seed 0. */
trn_sampling trn_sampling_default(void);

typedef struct trn_sampler trn_sampler;

trn_sampler *trn_sampler_new(int n_vocab);
void trn_sampler_free(trn_sampler *sampler);

/* Samples from logits[n_vocab] (modified in place by the penalty and temperature) given the context
 * tokens history[0..n_history). `pos` selects the random draw. Returns a token id. */
int trn_sampler_sample(trn_sampler *sampler, const trn_sampling *params, float *logits, const int32_t *history,
                       int n_history, int pos);

/* Whether trn_sampler_sample leaves the logits as they are for these parameters (greedy, no repetition penalty), so
 * a caller need not copy them first. */
int trn_sampling_keeps_logits(const trn_sampling *params);

/* The uniform draw in [0, 1) for (seed, pos). */
float trn_sampler_uniform(uint64_t seed, int pos);

#endif
