/* bench.c: the benchmark behind `trinity bench` and the read-bandwidth probe it is measured against.
 *
 * Prefill: an n_prompt-token prompt through the backend's batched prefill and through one step per token,
 * alternately, PREFILL_REPS times each; the medians give tokens/s and their ratio. Decode: n_decode greedy steps
 * each timed alone, interleaved with bandwidth probes; the median step time gives ms per token. Decode runs at the
 * requested thread count and (CPU only) at one thread, each with its own probe. The bound: the bytes a step must
 * read (every weight, and the KV cache of the positions before it) / probe bandwidth; the fraction reached is the
 * figure that matters. A batched prefill is bound by multiply-adds instead: on the CPU its bound is the ternary
 * products' int8 multiply-adds per token / the rate the batched kernel's inner loop alone sustains on every thread
 * at once (matmul_peak, cpu_fallback/ops.h), probed just before and just after each batched run. */
#define _POSIX_C_SOURCE 200809L
#include "bench.h"

#ifdef TRN_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef TRN_HAVE_OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "cpu_fallback/ops.h"
#include "graph/backend.h"

static int compare_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double trn_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), compare_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) static uint64_t read_avx2(const uint8_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t i = 0; i + 128 <= n; i += 128) {
        a0 = _mm256_xor_si256(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_xor_si256(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_xor_si256(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_xor_si256(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    __m256i a = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    return (uint64_t)_mm256_extract_epi64(a, 0) ^ (uint64_t)_mm256_extract_epi64(a, 3);
}
#endif

static uint64_t read_plain(const uint8_t *p, size_t n) {
    uint64_t a = 0, b = 0;
    for (size_t i = 0; i + 16 <= n; i += 16) {
        uint64_t x, y;
        memcpy(&x, p + i, 8);
        memcpy(&y, p + i + 8, 8);
        a ^= x;
        b ^= y;
    }
    return a ^ b;
}

double trn_bandwidth_probe(int n_threads, size_t bytes, int reps) {
    bytes &= ~(size_t)4095;
    /* on 2 MB pages, as the repacked weights are (trn_alloc_huge): on 4 KB pages this probe read about 8% less on
     * the development machine, a bound the weights' own pages beat */
    uint8_t *buf = trn_alloc_huge(bytes);
    if (!buf)
        return 0.0;
    /* distinct, non-zero contents: pages of zeros may be shared by the host and read from cache */
    for (size_t i = 0; i < bytes / 8; i++) {
        const uint64_t v = (uint64_t)i * 0x9E3779B97F4A7C15ull;
        memcpy(buf + 8 * i, &v, 8);
    }
    int use_avx2 = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    use_avx2 = __builtin_cpu_supports("avx2");
#endif
    if (n_threads < 1)
        n_threads = 1;
    double times[16];
    reps = TRN_MIN(reps, 16);
    volatile uint64_t sink = 0;
    for (int r = -1; r < reps; r++) { /* r = -1: warm-up */
        double t0 = trn_time_s();
        uint64_t acc = 0;
#pragma omp parallel num_threads(n_threads) reduction(^ : acc)
        {
            int ith = 0, nth = 1;
#ifdef TRN_HAVE_OPENMP
            ith = omp_get_thread_num();
            nth = omp_get_num_threads();
#endif
            const size_t chunk = bytes / (size_t)nth & ~(size_t)127;
            const uint8_t *p = buf + chunk * (size_t)ith;
#if defined(__x86_64__) && defined(__GNUC__)
            acc ^= use_avx2 ? read_avx2(p, chunk) : read_plain(p, chunk);
#else
            acc ^= read_plain(p, chunk);
#endif
        }
        double dt = trn_time_s() - t0;
        sink ^= acc;
        if (r >= 0)
            times[r] = dt;
    }
    (void)sink;
    trn_free(buf);
    return (double)bytes / trn_median(times, reps) / 1e9;
}

double trn_core_latency_probe(void) {
#ifdef TRN_HAVE_OPENMP
    enum { ROUND_TRIPS = 2048 };
    const long max_spins = 1L << 24; /* tens of ms: a thread that is not running makes the other give up */
    const double max_seconds = 0.05;  /* and so does a busy machine that lets the two take turns slowly */
    if (omp_get_num_procs() < 2)
        return 0.0;
    int turn = 0, gave_up = 0, threads = 0;
    double seconds = 0.0;
#pragma omp parallel num_threads(2)
    {
        const int me = omp_get_thread_num();
#pragma omp single
        threads = omp_get_num_threads(); /* and a barrier: both start together */
        double t0 = trn_time_s();
        for (int i = 0; threads == 2 && i < ROUND_TRIPS; i++) {
            const int mine = 2 * i + me; /* thread 0 holds the line at even turns, thread 1 at odd ones */
            long spins = 0;
            while (__atomic_load_n(&turn, __ATOMIC_ACQUIRE) != mine && !__atomic_load_n(&gave_up, __ATOMIC_RELAXED))
                if (++spins == max_spins)
                    __atomic_store_n(&gave_up, 1, __ATOMIC_RELAXED);
            if (me == 0 && i % 64 == 63 && trn_time_s() - t0 > max_seconds)
                __atomic_store_n(&gave_up, 1, __ATOMIC_RELAXED);
            if (__atomic_load_n(&gave_up, __ATOMIC_RELAXED))
                break;
            __atomic_store_n(&turn, mine + 1, __ATOMIC_RELEASE);
        }
        if (me == 0)
            seconds = trn_time_s() - t0;
    }
    return threads == 2 && !gave_up ? seconds / (2.0 * ROUND_TRIPS) * 1e9 : 0.0;
#else
    return 0.0;
#endif
}

enum { PREFILL_REPS = 3, DECODE_ROUNDS = 7 };
#define PEAK_PROBE_S 0.05 /* seconds per thread of each multiply-add probe */

/* n_decode steps from `token` at position pos, with a bandwidth probe at `threads` threads before each of the
 * DECODE_ROUNDS rounds of steps (on a shared machine the bandwidth drifts: the fraction of the bound is only
 * meaningful when both are measured under the same conditions). */
/* A line on standard error saying what is being measured, where standard error is a terminal (a bench run takes
 * tens of seconds on a CPU). */
static void progress(const char *fmt, int value) {
    if (!isatty(2))
        return;
    fprintf(stderr, "bench: ");
    fprintf(stderr, fmt, value);
    fprintf(stderr, "\n");
}

/* bytes_per_token: what a step would read with the weights as the model file has them (the bound's bytes);
 * read_per_token: what it reads as the backend holds them (more where it widens a type: trn_backend_stats). */
static trn_status measure_decode(trn_backend *backend, int threads, int token, int pos, int n_decode, int on_cpu,
                                 double bytes_per_token, double read_per_token, trn_bench_decode *out) {
    memset(out, 0, sizeof(*out));
    progress("decode at %d thread(s), each round after a bandwidth probe", threads);
    out->threads = threads;
    double probes[DECODE_ROUNDS], latencies[DECODE_ROUNDS];
    double *times = malloc((size_t)n_decode * sizeof(double));
    if (!times)
        return trn_fail(TRN_ERR_NOMEM, "out of memory for %d step times", n_decode);
    trn_status status = TRN_OK;
    int done = 0;
#ifdef TRN_HAVE_CUDA
    /* a profiler's capture range (nsys --capture-range=cudaProfilerApi, ncu --profile-from-start off): these steps */
    const int on_cuda = strcmp(trn_backend_name(backend), "cuda") == 0;
    if (on_cuda)
        trn_cuda_profiler_start();
#endif
    for (int round = 0; round < DECODE_ROUNDS && status == TRN_OK; round++) {
        /* the probe reads host memory: it bounds the CPU backend only (a GPU is probed once, below) */
        probes[round] = on_cpu ? trn_bandwidth_probe(threads, (size_t)256 << 20, 1) : 0.0;
        latencies[round] = on_cpu && threads > 1 ? trn_core_latency_probe() : 0.0;
        for (const int stop = n_decode * (round + 1) / DECODE_ROUNDS; done < stop && status == TRN_OK; done++) {
            const double t0 = trn_time_s();
            status = trn_backend_step(backend, token, pos + done, 1, &token);
            times[done] = trn_time_s() - t0;
        }
    }
#ifdef TRN_HAVE_CUDA
    if (on_cuda)
        trn_cuda_profiler_stop();
#endif
    if (status == TRN_OK) {
        const double step_s = trn_median(times, n_decode);
        out->bandwidth_gbs = on_cpu ? trn_median(probes, DECODE_ROUNDS) : 0.0;
        out->core_latency_ns = trn_median(latencies, DECODE_ROUNDS);
#ifdef TRN_HAVE_CUDA
        /* a GPU's bound: device memory bandwidth, from a 1 GB device-to-device copy (bytes read + written) */
        if (strcmp(trn_backend_name(backend), "cuda") == 0 &&
            trn_cuda_copy_bandwidth(0, (size_t)1 << 30, 5, &out->bandwidth_gbs) != TRN_OK)
            out->bandwidth_gbs = 0.0;
#endif
        out->ms_per_token = 1e3 * step_s;
        out->tokens_per_s = 1.0 / step_s;
        out->achieved_gbs = read_per_token / step_s / 1e9;
        /* tokens/s against the bound of the file's bytes: how near the best this model allows */
        out->roofline_fraction = out->bandwidth_gbs > 0 ? bytes_per_token / step_s / 1e9 / out->bandwidth_gbs : 0.0;
    }
    free(times);
    return status;
}

/* Multiply-adds per second of `peak` (a table's matmul_peak, a sustained rate) on n_threads threads at once, summed:
 * where threads share a core's pipes, the sum is what they get together, as the batched kernel will. */
static double multiply_add_probe(double (*peak)(double), int n_threads) {
    double total = 0.0;
#pragma omp parallel num_threads(n_threads) reduction(+ : total)
    total += peak(PEAK_PROBE_S);
    return total;
}

/* Int8 multiply-adds of one token through the body's ternary products (the LM head, one token per prompt, left
 * out). */
static double ternary_macs_per_token(const trn_graph *g) {
    double macs = 0.0;
    for (int n = 0; n < g->n_body_nodes; n++) {
        if (g->nodes[n].op != TRN_OP_MATVEC)
            continue;
        const trn_buffer *w = &g->buffers[g->nodes[n].src[0]];
        if (w->type == TRN_TYPE_TQ2_0 || w->type == TRN_TYPE_TQ1_0)
            macs += (double)w->ne[0] * (double)w->ne[1];
    }
    return macs;
}

/* The prompt batched and token by token, alternately; *next: the token sampled after it. peak: the CPU table's
 * matmul_peak where the prefill runs its batched int8 kernel, probed just before and just after each batched run
 * (their mean is that run's bound: on a VM whose compute rate changes from one second to the next, a probe a
 * second away measured another machine); NULL otherwise. */
static trn_status measure_prefill(const trn_graph *graph, trn_backend *backend, const int *ids, int n, int *next,
                                  double (*peak)(double), int threads, trn_bench_result *res) {
    double batched[PREFILL_REPS], steps[PREFILL_REPS], probes[PREFILL_REPS];
    res->prefill_batched = trn_backend_has_batched_prefill(backend);
    progress("prefill of %d tokens, batched and token by token, 3 rounds", n);
    const int probing = peak && res->prefill_batched;
    for (int r = 0; r < PREFILL_REPS; r++) {
        double t0 = trn_time_s();
        TRN_TRY(trn_backend_prefill_steps(backend, ids, n, 0, 1, next, NULL));
        steps[r] = trn_time_s() - t0;
        probes[r] = probing ? multiply_add_probe(peak, threads) : 0.0;
        if (res->prefill_batched) {
            t0 = trn_time_s();
            TRN_TRY(trn_backend_prefill(backend, ids, n, 0, 1, next, NULL));
            batched[r] = trn_time_s() - t0;
        }
        if (probing)
            probes[r] = 0.5 * (probes[r] + multiply_add_probe(peak, threads));
    }
    res->prefill_steps_tokens_per_s = n / trn_median(steps, PREFILL_REPS);
    res->prefill_tokens_per_s = res->prefill_batched ? n / trn_median(batched, PREFILL_REPS) : res->prefill_steps_tokens_per_s;
    res->prefill_peak_macs = trn_median(probes, PREFILL_REPS);
    res->prefill_macs_per_token = ternary_macs_per_token(graph);
    return TRN_OK;
}

static trn_status prepared_backend(const trn_graph *graph, const trn_bench_options *opts, const char *device,
                                   int n_threads, trn_backend **out) {
    trn_backend_config config = {.n_threads = n_threads, .act = (trn_act_mode)opts->act,
                                 .kernels = opts->kernels, .sampling = trn_sampling_default(),
                                 .weights = (trn_weight_mode)opts->weights,
                                 .resident_layers_given = opts->resident_layers_given,
                                 .resident_layers = opts->resident_layers, .dense_f16 = opts->dense_f16};
    config.sampling.temp = 0.0f;
    char choice[512];
    trn_status status = trn_backend_create(device, out, choice, sizeof(choice));
    if (status == TRN_OK && choice[0])
        fprintf(stderr, "device: %s\n", choice);
    if (status == TRN_OK && opts->dense_f16 && strcmp(trn_backend_name(*out), "cuda") != 0)
        status = trn_fail(TRN_ERR_UNSUPPORTED, "--dense f16 is a CUDA baseline: the %s backend has none",
                          trn_backend_name(*out));
    if (status == TRN_OK)
        status = trn_backend_prepare(*out, graph, &config);
    if (status != TRN_OK) {
        trn_backend_free(*out);
        *out = NULL;
    }
    return status;
}

trn_status trn_bench_run(const trn_model *model, const trn_bench_options *opts, trn_bench_result *res) {
    memset(res, 0, sizeof(*res));
    const int n_ctx = TRN_MIN(opts->n_prompt + opts->n_decode + 8, 4096);
    int *ids = malloc((size_t)opts->n_prompt * sizeof(int));
    if (!ids)
        return trn_fail(TRN_ERR_NOMEM, "out of memory for a %d-token prompt", opts->n_prompt);
    const int vocab = model->hp.n_vocab;
    for (int i = 0; i < opts->n_prompt; i++)
        ids[i] = i == 0 ? trn_tokenizer_bos(model->tokenizer) : (7 * i + 300) % vocab;
    trn_graph *graph = NULL;
    trn_backend *backend = NULL;
    trn_status status = trn_graph_build_decode(model, n_ctx, &graph);
    if (status == TRN_OK)
        status = prepared_backend(graph, opts, opts->device, opts->n_threads, &backend);
    int threads = opts->n_threads > 0 ? opts->n_threads : 1, on_cpu = 0, next = 0;
    if (status == TRN_OK) {
        snprintf(res->device, sizeof(res->device), "%s", trn_backend_describe(backend));
        trn_backend_get_stats(backend, &res->stats);
#ifdef TRN_HAVE_OPENMP
        if (opts->n_threads <= 0)
            threads = omp_get_num_procs();
#endif
        on_cpu = strcmp(trn_backend_name(backend), "cpu") == 0;
        res->n_prompt = opts->n_prompt;
        res->weight_bytes_per_token = (double)trn_model_weight_bytes_per_token(model);
        const trn_hparams *hp = &model->hp;
        res->decode_pos0 = opts->n_prompt;
        res->kv_bytes_per_token = 2.0 * hp->n_layer * hp->n_head_kv * hp->head_dim * sizeof(float) *
                                  (opts->n_prompt + (opts->n_decode - 1) / 2.0 + 1.0); /* positions attended */
        const char *requested = NULL;
        const trn_cpu_ops *ops = on_cpu ? trn_cpu_ops_for_backend(opts->kernels, &requested) : NULL;
        double (*peak)(double) = ops && opts->act == TRN_ACT_INT8 ? ops->matmul_peak : NULL;
        status = measure_prefill(graph, backend, ids, opts->n_prompt, &next, peak, threads, res);
        if (ops && ops->matmul_kernel && opts->act == TRN_ACT_INT8 && res->prefill_batched &&
            res->prefill_macs_per_token > 0)
            snprintf(res->prefill_kernel, sizeof(res->prefill_kernel), "%s", ops->matmul_kernel);
    }
    const double bytes_per_token = res->weight_bytes_per_token + res->kv_bytes_per_token;
    if (status == TRN_OK)
        status = measure_decode(backend, threads, next, opts->n_prompt, opts->n_decode, on_cpu, bytes_per_token,
                                bytes_per_token + res->stats.widened_bytes_per_token, &res->decode);
    trn_backend_free(backend);
    backend = NULL;
    /* one thread, on the CPU: the same prompt (batched, not timed), then decode */
    if (status == TRN_OK && on_cpu) {
        res->has_1thread = 1;
        if (threads == 1) {
            res->decode_1thread = res->decode;
        } else {
            status = prepared_backend(graph, opts, "cpu", 1, &backend);
            if (status == TRN_OK)
                status = trn_backend_prefill(backend, ids, opts->n_prompt, 0, 1, &next, NULL);
            if (status == TRN_OK)
                status = measure_decode(backend, 1, next, opts->n_prompt, opts->n_decode, on_cpu, bytes_per_token,
                                        bytes_per_token + res->stats.widened_bytes_per_token, &res->decode_1thread);
        }
    }
    trn_backend_free(backend);
    trn_graph_free(graph);
    free(ids);
    return status;
}

static void print_decode(const trn_bench_result *r, const trn_bench_decode *d, FILE *out) {
    fprintf(out, "decode, %d thread%s %s%.2f tokens/s, %.3f ms/token (median step), %.2f GB/s read\n", d->threads,
            d->threads == 1 ? "" : "s", d->threads == 1 ? " " : "", d->tokens_per_s, d->ms_per_token, d->achieved_gbs);
    if (d->bandwidth_gbs > 0)
        fprintf(out, "  bound          %.2f GB/s read (probe, %d thread%s, same run) = %.2f tokens/s; reached %.1f%%\n",
                d->bandwidth_gbs, d->threads, d->threads == 1 ? "" : "s",
                d->bandwidth_gbs * 1e9 / (r->weight_bytes_per_token + r->kv_bytes_per_token),
                100.0 * d->roofline_fraction);
    if (d->core_latency_ns > 0)
        fprintf(out, "  two threads    a cache line between them takes %.0f ns one way (probe, same run)\n",
                d->core_latency_ns);
    if (d->bandwidth_gbs <= 0)
        fprintf(out, "  bound          read bandwidth not measured for this device\n");
}

/* `"key": value` for a measured figure, `"key": null` for one not measured. */
static void json_number(FILE *out, const char *key, int measured, const char *format, double value) {
    fprintf(out, ", \"%s\": ", key);
    if (measured)
        fprintf(out, format, value);
    else
        fprintf(out, "null");
}

void trn_bench_print(const trn_model *model, const trn_bench_result *r, int json, FILE *out) {
    const trn_bench_decode *d = &r->decode, *d1 = &r->decode_1thread;
    const double prefill_ratio = r->prefill_tokens_per_s / r->prefill_steps_tokens_per_s;
    const double prefill_bound = r->prefill_macs_per_token > 0 ? r->prefill_peak_macs / r->prefill_macs_per_token : 0.0;
    if (json) {
        fprintf(out, "{\"model\": \"%s\", \"device\": \"%s\", \"threads\": %d", model->name, r->device, d->threads);
        json_number(out, "decode_tokens_per_s", 1, "%.3f", d->tokens_per_s);
        json_number(out, "decode_ms_per_token", 1, "%.4f", d->ms_per_token);
        json_number(out, "prefill_tokens_per_s", 1, "%.3f", r->prefill_tokens_per_s);
        json_number(out, "prefill_token_by_token_tokens_per_s", 1, "%.3f", r->prefill_steps_tokens_per_s);
        json_number(out, "prefill_speedup", 1, "%.3f", prefill_ratio);
        /* null where not probed, or where the model has no ternary products (no multiply-add bound) */
        json_number(out, "prefill_peak_gmacs", prefill_bound > 0, "%.2f", r->prefill_peak_macs / 1e9);
        json_number(out, "prefill_bound_tokens_per_s", prefill_bound > 0, "%.3f", prefill_bound);
        json_number(out, "prefill_bound_fraction", prefill_bound > 0, "%.4f",
                    prefill_bound > 0 ? r->prefill_tokens_per_s / prefill_bound : 0.0);
        fprintf(out, ", \"prefill_batched\": %s, \"prompt_tokens\": %d", r->prefill_batched ? "true" : "false",
                r->n_prompt);
        if (r->prefill_kernel[0]) /* which batched kernel ran and whose inner loop the bound is (null: none) */
            fprintf(out, ", \"prefill_kernel\": \"%s\"", r->prefill_kernel);
        else
            fprintf(out, ", \"prefill_kernel\": null");
        json_number(out, "weight_bytes_per_token", 1, "%.0f", r->weight_bytes_per_token);
        json_number(out, "kv_bytes_per_token", 1, "%.0f", r->kv_bytes_per_token);
        json_number(out, "widened_bytes_per_token", 1, "%.0f", r->stats.widened_bytes_per_token);
        json_number(out, "bandwidth_gbs", 1, "%.3f", d->bandwidth_gbs);
        json_number(out, "achieved_gbs", 1, "%.3f", d->achieved_gbs);
        json_number(out, "roofline_fraction", 1, "%.4f", d->roofline_fraction);
        json_number(out, "core_latency_ns", d->core_latency_ns > 0, "%.1f", d->core_latency_ns);
        json_number(out, "decode_tokens_per_s_1thread", r->has_1thread, "%.3f", d1->tokens_per_s);
        json_number(out, "decode_ms_per_token_1thread", r->has_1thread, "%.4f", d1->ms_per_token);
        json_number(out, "bandwidth_gbs_1thread", r->has_1thread, "%.3f", d1->bandwidth_gbs);
        json_number(out, "achieved_gbs_1thread", r->has_1thread, "%.3f", d1->achieved_gbs);
        json_number(out, "roofline_fraction_1thread", r->has_1thread, "%.4f", d1->roofline_fraction);
        json_number(out, "decode_thread_speedup", r->has_1thread, "%.3f", d->tokens_per_s / d1->tokens_per_s);
        fprintf(out, "}\n");
        return;
    }
    fprintf(out, "model            %s\n", model->name);
    fprintf(out, "device           %s\n", r->device);
    fprintf(out, "read per token   %.1f MB of weights + %.1f MB of KV cache (mean of the decode steps, positions from %d)\n",
            r->weight_bytes_per_token / 1e6, r->kv_bytes_per_token / 1e6, r->decode_pos0);
    if (r->stats.widened_bytes_per_token > 0)
        fprintf(out, "  held as        %.1f MB of weights: TQ1_0 matrices as TQ2_0 codes, which this kernel table "
                     "reads faster (the bound below is the file's)\n",
                (r->weight_bytes_per_token + r->stats.widened_bytes_per_token) / 1e6);
    if (r->prefill_batched)
        fprintf(out, "prefill          %d-token prompt, %d thread%s: %.2f tokens/s batched, %.2f tokens/s token by token "
                     "(%.2fx; medians of %d)\n",
                r->n_prompt, d->threads, d->threads == 1 ? "" : "s", r->prefill_tokens_per_s,
                r->prefill_steps_tokens_per_s, prefill_ratio, PREFILL_REPS);
    if (r->prefill_batched && prefill_bound > 0)
        fprintf(out, "  bound          %.1f G int8 multiply-adds/s (%s kernel's inner loop, %d thread%s, same run) / %.0f M "
                     "per token = %.2f tokens/s; reached %.1f%%\n",
                r->prefill_peak_macs / 1e9, r->prefill_kernel[0] ? r->prefill_kernel : "batched", d->threads,
                d->threads == 1 ? "" : "s", r->prefill_macs_per_token / 1e6, prefill_bound,
                100.0 * r->prefill_tokens_per_s / prefill_bound);
    if (r->prefill_batched && prefill_bound <= 0 && r->prefill_kernel[0])
        fprintf(out, "  kernel         %s (no multiply-add bound probed for it)\n", r->prefill_kernel);
    if (!r->prefill_batched)
        fprintf(out, "prefill          %d-token prompt: %.2f tokens/s token by token (no batched prefill on this "
                     "backend)\n", r->n_prompt, r->prefill_steps_tokens_per_s);
    print_decode(r, d, out);
    if (r->has_1thread && d->threads != 1) {
        print_decode(r, d1, out);
        fprintf(out, "threads          %d threads decode %.2fx as fast as one\n", d->threads,
                d->tokens_per_s / d1->tokens_per_s);
    }
}
