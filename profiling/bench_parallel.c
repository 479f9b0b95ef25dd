/* bench_parallel.c: many sequences decoded together through the public API (trinity_batch), the way a server runs
 * them: every sequence's prompt arrives at once (one decode call holds all of them: the time to first token under
 * load), then each step decodes one token of every sequence, greedily. The figure is the median step: aggregate
 * tokens/s = sequences / step time, against the single-sequence rate measured in the same run. */
#define _POSIX_C_SOURCE 200809L
#include "bench_parallel.h"

#include <stdlib.h>
#include <string.h>

#include "host/common.h"

typedef struct {
    int sequences;
    double step_ms;      /* median */
    double first_token_ms; /* every prompt through, every first token's logits out */
} parallel_point;

static int compare_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

/* One point: n sequences through a fresh batch. */
static trinity_status measure(trinity_model *model, int n, int n_prompt, int n_decode, parallel_point *pt) {
    const int n_vocab = trinity_model_n_vocab(model);
    trinity_batch_params bp = trinity_batch_params_default();
    bp.n_slots = n;
    bp.n_ctx = n_prompt + n_decode + 1;
    trinity_batch *batch = NULL;
    trinity_status st = trinity_batch_new(model, &bp, &batch);
    trinity_batch_token *call = malloc((size_t)n * (size_t)n_prompt * sizeof(*call));
    float *logits = malloc((size_t)n * (size_t)n_vocab * sizeof(float));
    double *steps = malloc((size_t)n_decode * sizeof(double));
    int *next = malloc((size_t)n * sizeof(int));
    if (st == TRINITY_OK && (!call || !logits || !steps || !next)) {
        fprintf(stderr, "error: out of memory for a %d-sequence benchmark\n", n);
        st = TRINITY_ERR_NOMEM;
    }
    if (st == TRINITY_OK) {
        uint64_t x = 0x9e3779b97f4a7c15ull; /* a fixed stream of prompt ids, different per sequence */
        int k = 0;
        for (int s = 0; s < n; s++)
            for (int p = 0; p < n_prompt; p++) {
                x = x * 6364136223846793005ull + 1442695040888963407ull;
                const int token = p == 0 ? trinity_token_bos(model) : 3 + (int)((x >> 33) % (uint64_t)(n_vocab - 3));
                call[k++] = (trinity_batch_token){token, s, p, p == n_prompt - 1};
            }
        const double t0 = trn_time_s();
        st = trinity_batch_decode(batch, call, k, logits);
        pt->first_token_ms = (trn_time_s() - t0) * 1e3;
        for (int s = 0; s < n; s++)
            next[s] = argmax(logits + (size_t)s * n_vocab, n_vocab);
    }
    for (int step = 0; st == TRINITY_OK && step < n_decode; step++) {
        for (int s = 0; s < n; s++)
            call[s] = (trinity_batch_token){next[s], s, n_prompt + step, 1};
        const double t0 = trn_time_s();
        st = trinity_batch_decode(batch, call, n, logits);
        steps[step] = trn_time_s() - t0;
        for (int s = 0; s < n; s++)
            next[s] = argmax(logits + (size_t)s * n_vocab, n_vocab);
    }
    if (st == TRINITY_OK) {
        qsort(steps, (size_t)n_decode, sizeof(double), compare_double);
        pt->sequences = n;
        pt->step_ms = 1e3 * (n_decode % 2 ? steps[n_decode / 2] : 0.5 * (steps[n_decode / 2 - 1] + steps[n_decode / 2]));
    }
    free(call);
    free(logits);
    free(steps);
    free(next);
    trinity_batch_free(batch);
    return st;
}

trinity_status trn_bench_parallel(trinity_model *model, int max_parallel, int n_prompt, int n_decode, int json,
                                  FILE *out) {
    int counts[16], n_counts = 0;
    static const int standard[] = {1, 4, 8, 16};
    for (size_t i = 0; i < TRN_ARRAY_LEN(standard); i++)
        if (standard[i] <= max_parallel)
            counts[n_counts++] = standard[i];
    if (counts[n_counts - 1] != max_parallel)
        counts[n_counts++] = max_parallel;
    parallel_point points[16];
    char device[192] = "";
    for (int i = 0; i < n_counts; i++) {
        fprintf(stderr, "bench: %d sequence%s...\n", counts[i], counts[i] == 1 ? "" : "s");
        const trinity_status st = measure(model, counts[i], n_prompt, n_decode, &points[i]);
        if (st != TRINITY_OK)
            return st;
        if (!device[0]) { /* what the batches run on, from a one-slot batch */
            trinity_batch *probe = NULL;
            trinity_batch_params bp = trinity_batch_params_default();
            bp.n_slots = 1;
            bp.n_ctx = 8;
            if (trinity_batch_new(model, &bp, &probe) == TRINITY_OK)
                snprintf(device, sizeof(device), "%s", trinity_batch_device(probe));
            trinity_batch_free(probe);
        }
    }
    const double single = 1e3 / points[0].step_ms; /* tokens/s of one sequence */
    if (json) {
        fprintf(out, "{\"model\": \"%s\", \"device\": \"%s\", \"prompt_tokens\": %d, \"decode_steps\": %d, \"parallel\": [",
                trinity_model_name(model), device, n_prompt, n_decode);
        for (int i = 0; i < n_counts; i++) {
            const parallel_point *p = &points[i];
            const double aggregate = p->sequences * 1e3 / p->step_ms;
            fprintf(out, "%s{\"sequences\": %d, \"ms_per_step\": %.3f, \"tokens_per_s\": %.2f, \"speedup\": %.3f, "
                         "\"first_token_ms\": %.1f}", i ? ", " : "", p->sequences, p->step_ms, aggregate,
                    aggregate / single, p->first_token_ms);
        }
        fprintf(out, "]}\n");
        return TRINITY_OK;
    }
    fprintf(out, "parallel decode: %s on %s; a %d-token prompt per sequence, %d steps (median)\n",
            trinity_model_name(model), device, n_prompt, n_decode);
    fprintf(out, "%10s %10s %16s %14s %9s %26s\n", "sequences", "step ms", "aggregate tok/s", "per sequence", "speedup",
            "first tokens (all at once)");
    for (int i = 0; i < n_counts; i++) {
        const parallel_point *p = &points[i];
        const double aggregate = p->sequences * 1e3 / p->step_ms;
        fprintf(out, "%10d %10.2f %16.1f %14.1f %8.2fx %23.0f ms\n", p->sequences, p->step_ms, aggregate,
                aggregate / p->sequences, aggregate / single, p->first_token_ms);
    }
    return TRINITY_OK;
}
