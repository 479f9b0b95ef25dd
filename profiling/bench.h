/* bench.h: `trinity bench`: decode throughput at all threads and at one, against the memory-bandwidth bound, and
 * prompt (prefill) throughput batched and token by token, measured in the same run. */
#ifndef TRN_BENCH_H
#define TRN_BENCH_H

#include <stdio.h>

#include "graph/backend.h"
#include "host/model.h"

typedef struct {
    const char *device;   /* "cpu", "cuda", "auto" */
    int n_threads;        /* <= 0: all cores */
    int n_prompt;         /* prompt tokens for the prefill figure */
    int n_decode;         /* decode steps timed */
    const char *kernels;  /* CPU kernel table (trn_backend_config.kernels); NULL: TRN_KERNELS, else auto */
    int json;
    int act;              /* trn_act_mode */
    int weights;          /* trn_weight_mode (GPU) */
    int resident_layers_given, resident_layers;
    int dense_f16;        /* trn_backend_config.dense_f16 (CUDA) */
} trn_bench_options;

/* Decode at one thread count: the median step, and the read bandwidth probed in the same run. */
typedef struct {
    int threads;
    double tokens_per_s, ms_per_token;
    double bandwidth_gbs;      /* read bandwidth measured by the probe, interleaved with the steps on the CPU, before
                                  them on a GPU (device-to-device copy); 0: not measured */
    double achieved_gbs;       /* bytes read per token (weights and KV cache) x decode tokens/s */
    double roofline_fraction;  /* achieved / probe bandwidth */
    double core_latency_ns;    /* trn_core_latency_probe, median over the rounds (CPU, 2+ threads; else 0) */
} trn_bench_decode;

typedef struct {
    trn_bench_decode decode;         /* opts->n_threads (all cores by default) */
    trn_bench_decode decode_1thread; /* one thread (CPU only; has_1thread) */
    int has_1thread;
    int n_prompt;
    int prefill_batched;             /* whether the backend has a batched prefill */
    double prefill_tokens_per_s;     /* the prompt batched (token by token where the backend has no batched prefill) */
    double prefill_steps_tokens_per_s; /* the same prompt token by token, measured in the same run */
    double prefill_macs_per_token;   /* int8 multiply-adds of a prompt token's ternary products (the layers') */
    double prefill_peak_macs;        /* multiply-adds per second of the batched kernel's inner loop on all threads,
                                        probed between the prefill runs (CPU, int8 activations); 0: not measured */
    char prefill_kernel[32];         /* the batched ternary kernel the CPU prefill ran (the table's matmul_kernel:
                                        "vpdpbusd", "amx tdpbsud", ...); "": none (GPU, f32 activations, no ternary
                                        products) */
    double weight_bytes_per_token;
    double kv_bytes_per_token;       /* the KV cache a decode step reads (K and V rows of every earlier position, f32, as
                                        both backends keep them), at the mean position of the timed steps */
    int decode_pos0;                 /* position of the first timed step (the prompt's length) */
    char device[192];
    trn_backend_stats stats;         /* weight placement, bytes moved host -> device (zero where not reported) */
} trn_bench_result;

trn_status trn_bench_run(const trn_model *model, const trn_bench_options *opts, trn_bench_result *result);
void trn_bench_print(const trn_model *model, const trn_bench_result *result, int json, FILE *out);

/* `trinity bench --compare-weights` (profiling/bench_weights.c): decode with the weights resident, streamed, partly
 * resident and mapped, and a pinned host-to-device copy probe, in one run; one table (or JSON with opts->json). */
trn_status trn_bench_compare_weights(const trn_model *model, const trn_bench_options *opts, FILE *out);

/* Read bandwidth in GB/s: n_threads threads each stream through their share of a buffer much larger than
 * the caches; the median of `reps` runs. */
double trn_bandwidth_probe(int n_threads, size_t bytes, int reps);

/* One-way latency in ns of a cache line handed back and forth between two threads of one process (the threads the
 * CPU backend runs on); 0 where not measured (no OpenMP, fewer than two processors, a thread not scheduled, or
 * 2,048 round trips taking over 50 ms on a busy machine).
 * Where the two threads sit on cores far apart (another CCD, or where a VM's host puts them) every barrier and every
 * vector one thread reads from the other's cache costs that much more, as the read bandwidth may differ too. */
double trn_core_latency_probe(void);

/* Sorts v[0..n) in place (ascending) and returns its median. */
double trn_median(double *v, int n);

#endif
