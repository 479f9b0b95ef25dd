/* bench.h: `trinity bench`: decode and prompt throughput against the memory-bandwidth bound. */
#ifndef TRN_BENCH_H
#define TRN_BENCH_H

#include <stdio.h>

#include "../graph/backend.h"
#include "../host/model.h"

typedef struct {
    const char *device;   /* "cpu", "cuda", "auto" */
    int n_threads;        /* <= 0: all cores */
    int n_prompt;         /* prompt tokens for the prefill figure */
    int n_decode;         /* decode steps timed */
    int force_scalar;
    int json;
    int act;              /* trn_act_mode */
    int weights;          /* trn_weight_mode (GPU) */
    int resident_layers_given, resident_layers;
} trn_bench_options;

typedef struct {
    double decode_tokens_per_s, decode_ms_per_token;
    double prefill_tokens_per_s;
    double weight_bytes_per_token;
    double bandwidth_gbs;      /* read bandwidth measured by the probe in the same run */
    double achieved_gbs;       /* weight bytes per token x decode tokens/s */
    double roofline_fraction;  /* achieved / probe bandwidth */
    int threads;
    char device[192];
    trn_backend_stats stats;   /* weight placement, bytes moved host -> device (zero where not reported) */
} trn_bench_result;

trn_status trn_bench_run(const trn_model *model, const trn_bench_options *opts, trn_bench_result *result);
void trn_bench_print(const trn_model *model, const trn_bench_result *result, int json, FILE *out);

/* `trinity bench --compare-weights` (profiling/bench_weights.c): decode with the weights resident, streamed, partly
 * resident and mapped, and a pinned host-to-device copy probe, in one run; one table (or JSON with opts->json). */
trn_status trn_bench_compare_weights(const trn_model *model, const trn_bench_options *opts, FILE *out);

/* Read bandwidth in GB/s: n_threads threads each stream through their share of a buffer much larger than
 * the caches; the median of `reps` runs. */
double trn_bandwidth_probe(int n_threads, size_t bytes, int reps);

#endif
