/* test_sampler.c: the token sampler (host/sampler.h) on a fixed six-token distribution.
 *
 * Greedy picks (ties: the lowest id), the repetition penalty rule, top-k 1 and a tiny top-p being greedy at any
 * temperature, top-p alone keeping exactly the tokens it should, the same seed and position giving the same draw,
 * sampled frequencies following the softmax at temperature 1, and different seeds giving different sequences. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <string.h>

#include "host/sampler.h"
#include "test_util.h"

static void check_sampler(void) {
    enum { V = 6 };
    trn_sampler *s = trn_sampler_new(V);
    const float base[V] = {1.0f, 3.0f, -2.0f, 2.5f, 0.5f, 3.0f};
    float l[V];
    trn_sampling p = trn_sampling_default();
    p.temp = 0.0f;
    memcpy(l, base, sizeof(l));
    CHECK(trn_sampler_sample(s, &p, l, NULL, 0, 0) == 1); /* ties: the lowest id */
    /* repetition penalty: positive logits divided, negative multiplied, each token once */
    p.repeat_penalty = 2.0f;
    const int32_t history[] = {1, 1, 2, 5};
    memcpy(l, base, sizeof(l));
    CHECK(trn_sampler_sample(s, &p, l, history, 4, 0) == 3);
    CHECK(l[1] == 1.5f && l[5] == 1.5f && l[2] == -4.0f && l[3] == 2.5f);
    /* top-k 1 and a tiny top-p are greedy at any temperature */
    p = trn_sampling_default();
    p.top_k = 1;
    for (int pos = 0; pos < 20; pos++) {
        memcpy(l, base, sizeof(l));
        CHECK(trn_sampler_sample(s, &p, l, NULL, 0, pos) == 1);
    }
    p.top_k = 0;
    p.top_p = 1e-6f;
    memcpy(l, base, sizeof(l));
    CHECK(trn_sampler_sample(s, &p, l, NULL, 0, 3) == 1);
    /* top-p alone (a full sort): ids 1 and 5 tie at the top with about 0.34 each, so p = 0.6 keeps exactly
     * those two, and every draw is one of them */
    p.top_p = 0.6f;
    p.temp = 1.0f;
    int only_top = 1, seen5 = 0;
    for (int pos = 0; pos < 200; pos++) {
        memcpy(l, base, sizeof(l));
        const int t = trn_sampler_sample(s, &p, l, NULL, 0, pos);
        only_top &= t == 1 || t == 5;
        seen5 |= t == 5;
    }
    CHECK_MSG(only_top && seen5, "top-p 0.6 should draw ids 1 and 5 only, and both");
    /* same seed, same draws; frequencies follow the softmax at temperature 1 */
    p = trn_sampling_default();
    p.temp = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.seed = 42;
    int counts[V] = {0}, again = 1;
    const int draws = 20000;
    for (int pos = 0; pos < draws; pos++) {
        memcpy(l, base, sizeof(l));
        int t = trn_sampler_sample(s, &p, l, NULL, 0, pos);
        memcpy(l, base, sizeof(l));
        again &= trn_sampler_sample(s, &p, l, NULL, 0, pos) == t;
        counts[t]++;
    }
    CHECK_MSG(again, "the same seed and position gave different tokens");
    double z = 0;
    for (int i = 0; i < V; i++)
        z += exp(base[i]);
    for (int i = 0; i < V; i++) {
        const double expect = exp(base[i]) / z, got = (double)counts[i] / draws;
        CHECK_MSG(fabs(got - expect) < 4 * sqrt(expect * (1 - expect) / draws) + 1e-3, "token %d: frequency %.4f, "
                  "softmax %.4f", i, got, expect);
    }
    /* another seed gives another sequence */
    int differ = 0;
    for (int pos = 0; pos < 50; pos++)
        differ += trn_sampler_uniform(42, pos) != trn_sampler_uniform(43, pos);
    CHECK(differ > 40);
    trn_sampler_free(s);
}

int main(void) {
    check_sampler();
    return test_finish("test_sampler");
}
