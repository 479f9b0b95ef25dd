/* bench_weights.c: `trinity bench --device cuda --compare-weights`: the same decode benchmark with the weights
 * resident on the GPU, streamed from pinned host memory (no layer resident), half the layers resident and the rest
 * streamed, and mapped (kernels reading host memory), plus a pinned host-to-device copy probe in the same run, as one
 * table: tokens/s, ms per token, weight bytes crossing the bus per token, the bus bandwidth that achieves, its
 * fraction of the probe's (the bound of the streamed and mapped modes), and device memory used. */
#include <stdio.h>
#include <string.h>

#include "bench.h"

#ifdef TRN_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

#ifndef TRN_HAVE_CUDA
trn_status trn_bench_compare_weights(const trn_model *model, const trn_bench_options *opts, FILE *out) {
    (void)model, (void)opts, (void)out;
    return trn_fail(TRN_ERR_UNSUPPORTED, "--compare-weights needs a build with CUDA (this one has none)");
}
#else

typedef struct {
    const char *label;
    trn_weight_mode mode;
    int resident_layers; /* -1: not given */
} weight_case;

trn_status trn_bench_compare_weights(const trn_model *model, const trn_bench_options *opts, FILE *out) {
    trn_backend *gpu = NULL; /* says why where no GPU is usable */
    TRN_TRY(trn_cuda_backend_create(&gpu));
    trn_backend_free(gpu);
    double probe = 0.0;
    TRN_TRY(trn_cuda_copy_bandwidth(1, (size_t)256 << 20, 7, &probe));
    const int n_layer = model->hp.n_layer;
    char half_label[32];
    snprintf(half_label, sizeof(half_label), "partial (%d of %d)", n_layer / 2, n_layer);
    const weight_case cases[] = {
        {"resident", TRN_WEIGHTS_RESIDENT, -1},
        {"streaming", TRN_WEIGHTS_STREAMING, 0},
        {half_label, TRN_WEIGHTS_STREAMING, n_layer / 2},
        {"mapped", TRN_WEIGHTS_MAPPED, -1},
    };
    enum { N_CASES = sizeof(cases) / sizeof(cases[0]) };
    trn_bench_result results[N_CASES];
    for (int i = 0; i < N_CASES; i++) {
        trn_bench_options o = *opts;
        o.device = "cuda";
        o.weights = cases[i].mode;
        o.resident_layers_given = cases[i].resident_layers >= 0;
        o.resident_layers = cases[i].resident_layers;
        TRN_TRY(trn_bench_run(model, &o, &results[i]));
    }
    if (opts->json)
        fprintf(out, "{\"model\": \"%s\", \"h2d_probe_gbs\": %.3f, \"modes\": [", model->name, probe);
    else
        fprintf(out, "model %s; pinned host-to-device copy probe: %.2f GB/s (same run)\n"
                     "%-20s %10s %9s %13s %9s %8s %10s\n", model->name, probe, "weights", "tokens/s", "ms/token",
                "bus MB/token", "bus GB/s", "of bound", "device GB");
    for (int i = 0; i < N_CASES; i++) {
        const trn_bench_result *r = &results[i];
        const double bus = r->stats.h2d_bytes_per_token + r->stats.mapped_bytes_per_token;
        const double bus_gbs = bus * r->decode.tokens_per_s / 1e9;
        const double fraction = probe > 0 && bus > 0 ? bus_gbs / probe : 0.0;
        if (opts->json)
            fprintf(out, "%s{\"weights\": \"%s\", \"resident_layers\": %d, \"n_layers\": %d, "
                         "\"decode_tokens_per_s\": %.3f, \"decode_ms_per_token\": %.4f, \"h2d_bytes_per_token\": %.0f, "
                         "\"mapped_bytes_per_token\": %.0f, \"bus_gbs\": %.3f, \"h2d_bound_fraction\": %.4f, "
                         "\"device_bytes\": %.0f, \"device\": \"%s\"}",
                    i ? ", " : "", cases[i].label, r->stats.resident_layers, r->stats.n_layers,
                    r->decode.tokens_per_s, r->decode.ms_per_token, r->stats.h2d_bytes_per_token,
                    r->stats.mapped_bytes_per_token, bus_gbs, fraction, r->stats.device_bytes, r->device);
        else
            fprintf(out, "%-20s %10.1f %9.3f %13.1f %9.2f %7.1f%% %10.2f\n", cases[i].label, r->decode.tokens_per_s,
                    r->decode.ms_per_token, bus / 1e6, bus_gbs, 100.0 * fraction, r->stats.device_bytes / 1e9);
    }
    if (opts->json)
        fprintf(out, "]}\n");
    else
        fprintf(out, "(of bound: bus GB/s over the probe's; the bound of a streamed or mapped mode is probe / bus "
                     "bytes per token)\n");
    return TRN_OK;
}
#endif
