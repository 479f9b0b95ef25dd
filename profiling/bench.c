/* bench.c: the benchmark behind `trinity bench` and the read-bandwidth probe it is measured against.
 *
 * Decode: a short prompt, then n_decode greedy steps each timed alone; the median step time gives ms per
 * token. Prefill: n_prompt tokens through the decode step (the prompt path the engine uses today). The
 * bound: weight bytes read per token / probe bandwidth; the fraction reached is the figure that matters. */
#define _POSIX_C_SOURCE 200809L
#include "bench.h"

#ifdef TRN_HAVE_CUDA
#include "../cuda/cuda_backend.h"
#endif

#include <stdlib.h>
#include <string.h>
#ifdef TRN_HAVE_OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "../graph/backend.h"
#include "../host/generate.h"

static int compare_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
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
    uint8_t *buf = trn_alloc(bytes);
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
    return (double)bytes / median(times, reps) / 1e9;
}

trn_status trn_bench_run(const trn_model *model, const trn_bench_options *opts, trn_bench_result *res) {
    memset(res, 0, sizeof(*res));
    const int n_ctx = TRN_MIN(opts->n_prompt + opts->n_decode + 8, 4096);
    trn_graph *graph = NULL;
    TRN_TRY(trn_graph_build_decode(model, n_ctx, &graph));
    trn_backend *backend = NULL;
    trn_status status = trn_backend_for_device(opts->device, &backend);
    trn_backend_config config = {.n_threads = opts->n_threads, .act = (trn_act_mode)opts->act, .force_scalar = opts->force_scalar,
                                 .sampling = trn_sampling_default(), .weights = (trn_weight_mode)opts->weights,
                                 .resident_layers_given = opts->resident_layers_given,
                                 .resident_layers = opts->resident_layers};
    config.sampling.temp = 0.0f;
    if (status == TRN_OK)
        status = backend->iface->prepare(backend, graph, &config);
    if (status != TRN_OK) {
        trn_backend_free(backend);
        trn_graph_free(graph);
        return status;
    }
    snprintf(res->device, sizeof(res->device), "%s", backend->iface->describe(backend));
    if (backend->iface->stats)
        backend->iface->stats(backend, &res->stats);
    res->threads = opts->n_threads > 0 ? opts->n_threads : 1;
#ifdef TRN_HAVE_OPENMP
    if (opts->n_threads <= 0)
        res->threads = omp_get_num_procs();
#endif
    res->weight_bytes_per_token = (double)trn_model_weight_bytes_per_token(model);

    /* prefill: the prompt tokens through the step, logits only for the last */
    const int bos = trn_tokenizer_bos(model->tokenizer);
    const int vocab = model->hp.n_vocab;
    int next = 0;
    double t0 = trn_time_s();
    for (int i = 0; i < opts->n_prompt && status == TRN_OK; i++)
        status = backend->iface->step(backend, i == 0 ? bos : (7 * i + 300) % vocab, i, i == opts->n_prompt - 1, &next);
    double prefill_s = trn_time_s() - t0;
    res->prefill_tokens_per_s = opts->n_prompt / prefill_s;

    /* Decode steps interleaved with bandwidth probes: on a shared machine the bandwidth drifts, and the
     * fraction of the bound is only meaningful when both are measured under the same conditions. */
    enum { ROUNDS = 7 };
    double probes[ROUNDS];
    double *times = malloc((size_t)opts->n_decode * sizeof(double));
    int done = 0;
    /* the probe reads host memory: it bounds the CPU backend only (a GPU is probed below) */
    const int on_cpu = strcmp(backend->iface->name, "cpu") == 0;
    for (int round = 0; round < ROUNDS && status == TRN_OK && times; round++) {
        probes[round] = on_cpu ? trn_bandwidth_probe(res->threads, (size_t)256 << 20, 1) : 0.0;
        for (const int stop = opts->n_decode * (round + 1) / ROUNDS; done < stop && status == TRN_OK; done++) {
            t0 = trn_time_s();
            status = backend->iface->step(backend, next, opts->n_prompt + done, 1, &next);
            times[done] = trn_time_s() - t0;
        }
    }
    res->bandwidth_gbs = on_cpu ? median(probes, ROUNDS) : 0.0;
#ifdef TRN_HAVE_CUDA
    /* a GPU's bound: device memory bandwidth, from a 1 GB device-to-device copy (bytes read + written) */
    if (status == TRN_OK && strcmp(backend->iface->name, "cuda") == 0 &&
        trn_cuda_copy_bandwidth(0, (size_t)1 << 30, 5, &res->bandwidth_gbs) != TRN_OK)
        res->bandwidth_gbs = 0.0;
#endif
    if (status == TRN_OK && times) {
        const double step_s = median(times, opts->n_decode);
        res->decode_ms_per_token = 1e3 * step_s;
        res->decode_tokens_per_s = 1.0 / step_s;
        res->achieved_gbs = res->weight_bytes_per_token / step_s / 1e9;
        res->roofline_fraction = res->bandwidth_gbs > 0 ? res->achieved_gbs / res->bandwidth_gbs : 0.0;
    }
    free(times);
    trn_backend_free(backend);
    trn_graph_free(graph);
    return status;
}

void trn_bench_print(const trn_model *model, const trn_bench_result *r, int json, FILE *out) {
    if (json) {
        fprintf(out,
                "{\"model\": \"%s\", \"device\": \"%s\", \"threads\": %d, \"decode_tokens_per_s\": %.3f, "
                "\"decode_ms_per_token\": %.4f, \"prefill_tokens_per_s\": %.3f, \"weight_bytes_per_token\": %.0f, "
                "\"bandwidth_gbs\": %.3f, \"achieved_gbs\": %.3f, \"roofline_fraction\": %.4f}\n",
                model->name, r->device, r->threads, r->decode_tokens_per_s, r->decode_ms_per_token,
                r->prefill_tokens_per_s, r->weight_bytes_per_token, r->bandwidth_gbs, r->achieved_gbs,
                r->roofline_fraction);
        return;
    }
    fprintf(out, "model            %s\n", model->name);
    fprintf(out, "device           %s\n", r->device);
    fprintf(out, "weights/token    %.1f MB\n", r->weight_bytes_per_token / 1e6);
    if (r->bandwidth_gbs > 0) {
        fprintf(out, "read bandwidth   %.2f GB/s (probe, %d thread%s, same run)\n", r->bandwidth_gbs, r->threads,
                r->threads == 1 ? "" : "s");
        fprintf(out, "bound            %.2f tokens/s (bandwidth / weight bytes per token)\n",
                r->bandwidth_gbs * 1e9 / r->weight_bytes_per_token);
    } else {
        fprintf(out, "read bandwidth   not measured for this device\n");
    }
    fprintf(out, "decode           %.2f tokens/s, %.3f ms/token (median step), %.2f GB/s\n", r->decode_tokens_per_s,
            r->decode_ms_per_token, r->achieved_gbs);
    if (r->bandwidth_gbs > 0)
        fprintf(out, "roofline         %.1f%% of the bandwidth bound\n", 100.0 * r->roofline_fraction);
    fprintf(out, "prefill          %.2f tokens/s (token by token)\n", r->prefill_tokens_per_s);
}
