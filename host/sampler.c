/* sampler.c: next-token selection on the CPU (see sampler.h for the order of the steps). */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    float logit;
    int id;
} candidate;

struct trn_sampler {
    int n_vocab;
    uint32_t *seen;  /* [n_vocab] stamp of the last call that penalized the token */
    uint32_t stamp;
    int *cand;       /* [n_vocab] candidate ids */
    float *prob;     /* [n_vocab] candidate probabilities */
    candidate *sorted; /* [n_vocab] scratch for a full sort (top-p without top-k) */
};

trn_sampling trn_sampling_default(void) {
    trn_sampling s = {.temp = 0.8f, .top_k = 40, .top_p = 0.95f, .repeat_penalty = 1.0f, .seed = 0};
    return s;
}

trn_sampler *trn_sampler_new(int n_vocab) {
    trn_sampler *s = calloc(1, sizeof(*s));
    if (!s)
        return NULL;
    s->n_vocab = n_vocab;
    s->seen = calloc((size_t)n_vocab, sizeof(uint32_t));
    s->cand = malloc((size_t)n_vocab * sizeof(int));
    s->prob = malloc((size_t)n_vocab * sizeof(float));
    s->sorted = malloc((size_t)n_vocab * sizeof(candidate));
    if (!s->seen || !s->cand || !s->prob || !s->sorted) {
        trn_sampler_free(s);
        return NULL;
    }
    return s;
}

void trn_sampler_free(trn_sampler *s) {
    if (!s)
        return;
    free(s->seen);
    free(s->cand);
    free(s->prob);
    free(s->sorted);
    free(s);
}

float trn_sampler_uniform(uint64_t seed, int pos) {
    /* splitmix64 finalizer of (seed, pos): a counter-based draw, the same on every backend */
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * (uint64_t)(pos + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f); /* 24 bits: exactly representable, < 1 */
}

/* The first index of the largest logit (NaNs never win unless logits[0] is one). Two passes: the largest value,
 * kept in 8 running maxima (a `x > m ? x : m` the compiler turns into vector max instructions), then its first
 * index: several times faster than one pass whose comparison depends on the previous one. */
static int argmax(const float *logits, int n) {
    float m8[8];
    for (int k = 0; k < 8; k++)
        m8[k] = logits[0];
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            m8[k] = logits[i + k] > m8[k] ? logits[i + k] : m8[k];
    float best = m8[0];
    for (int k = 1; k < 8; k++)
        best = m8[k] > best ? m8[k] : best;
    for (; i < n; i++)
        best = logits[i] > best ? logits[i] : best;
    for (i = 0; i < n; i++)
        if (logits[i] == best)
            return i;
    return 0;
}

int trn_sampling_keeps_logits(const trn_sampling *p) {
    return p->temp <= 0.0f && (p->repeat_penalty == 1.0f || p->repeat_penalty <= 0.0f);
}

/* Candidates sorted by descending logit, ties by ascending id. */
static int by_logit_desc(const void *a, const void *b) {
    const candidate *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return x->id - y->id;
}

/* Keeps the k largest of cand[0..n) in cand[0..k), sorted, by a bounded insertion into a sorted prefix. */
static int select_top_k(int *cand, int n, int k, const float *logits) {
    int kept = 0;
    for (int i = 0; i < n; i++) {
        const int id = cand[i];
        const float v = logits[id];
        if (kept == k && !(v > logits[cand[k - 1]]))
            continue;
        int j = kept < k ? kept++ : k - 1;
        while (j > 0 && v > logits[cand[j - 1]]) {
            cand[j] = cand[j - 1];
            j--;
        }
        cand[j] = id;
    }
    return kept;
}

int trn_sampler_sample(trn_sampler *s, const trn_sampling *p, float *logits, const int32_t *history, int n_history,
                       int pos) {
    const int n = s->n_vocab;
    if (p->repeat_penalty != 1.0f && p->repeat_penalty > 0.0f) {
        if (++s->stamp == 0) { /* wrapped: clear the stamps */
            memset(s->seen, 0, (size_t)n * sizeof(uint32_t));
            s->stamp = 1;
        }
        for (int i = 0; i < n_history; i++) {
            const int id = history[i];
            if (id < 0 || id >= n || s->seen[id] == s->stamp)
                continue; /* each token is penalized once, however often it occurs */
            s->seen[id] = s->stamp;
            logits[id] = logits[id] > 0.0f ? logits[id] / p->repeat_penalty : logits[id] * p->repeat_penalty;
        }
    }
    if (p->temp <= 0.0f)
        return argmax(logits, n);
    for (int i = 0; i < n; i++)
        logits[i] /= p->temp;

    int n_cand = n;
    for (int i = 0; i < n; i++)
        s->cand[i] = i;
    if (p->top_k > 0 && p->top_k < n) {
        n_cand = select_top_k(s->cand, n, p->top_k, logits);
    } else if (p->top_p < 1.0f) {
        for (int i = 0; i < n; i++)
            s->sorted[i] = (candidate){logits[i], i};
        qsort(s->sorted, (size_t)n, sizeof(candidate), by_logit_desc);
        for (int i = 0; i < n; i++)
            s->cand[i] = s->sorted[i].id;
    }
    /* softmax over the candidates (sorted descending whenever top-k or top-p is active) */
    const float max = logits[argmax(logits, n)];
    double sum = 0.0;
    for (int i = 0; i < n_cand; i++) {
        s->prob[i] = expf(logits[s->cand[i]] - max);
        sum += s->prob[i];
    }
    if (p->top_p < 1.0f) {
        double cum = 0.0;
        const double target = (double)p->top_p * sum;
        for (int i = 0; i < n_cand; i++) {
            cum += s->prob[i];
            if (cum >= target) {
                n_cand = i + 1;
                sum = cum;
                break;
            }
        }
    }
    const double u = (double)trn_sampler_uniform(p->seed, pos) * sum;
    double cum = 0.0;
    for (int i = 0; i < n_cand; i++) {
        cum += s->prob[i];
        if (u < cum)
            return s->cand[i];
    }
    return s->cand[n_cand - 1];
}
