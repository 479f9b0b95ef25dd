/* generate.c: running tokens through any backend (prefill, batched or step by step) and backend selection (see
 * generate.h). The generation loop itself is the public API's (host/trinity.c). */
#include "generate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cpu_fallback/cpu_backend.h"
#ifdef TRN_HAVE_CUDA
#include "../cuda/cuda_backend.h"
#endif

trn_status trn_backend_for_device(const char *device, trn_backend **out, char *choice, size_t cap) {
    if (choice && cap)
        choice[0] = 0;
    if (strcmp(device, "cpu") == 0)
        return trn_cpu_backend_create(out);
    if (strcmp(device, "cuda") == 0) {
#ifdef TRN_HAVE_CUDA
        return trn_cuda_backend_create(out);
#else
        return trn_fail(TRN_ERR_DEVICE, "--device cuda: this build has no CUDA backend (no nvcc at build time); use "
                        "--device cpu");
#endif
    }
    if (strcmp(device, "auto") == 0) {
#ifdef TRN_HAVE_CUDA
        if (trn_cuda_backend_create(out) == TRN_OK) {
            if (choice && cap)
                snprintf(choice, cap, "cuda");
            return TRN_OK;
        }
        if (choice && cap)
            snprintf(choice, cap, "cpu (CUDA unavailable: %s)", trn_last_error());
#else
        if (choice && cap)
            snprintf(choice, cap, "cpu (this build has no CUDA backend)");
#endif
        return trn_cpu_backend_create(out);
    }
    return trn_fail(TRN_ERR_INVALID, "--device %s: unknown device (cpu, cuda or auto)", device);
}

trn_status trn_prefill_steps(const trn_graph *graph, trn_backend *backend, const int *tokens, int n_tokens, int pos0,
                             int want_output, int *next_token, float *all_logits) {
    const int n_vocab = graph->model->hp.n_vocab;
    if (n_tokens < 1)
        return trn_fail(TRN_ERR_INVALID, "prefill of %d tokens: at least one is needed", n_tokens);
    int next = -1;
    for (int i = 0; i < n_tokens; i++) {
        const int output = all_logits || (want_output && i == n_tokens - 1);
        TRN_TRY(backend->iface->step(backend, tokens[i], pos0 + i, output, &next));
        if (all_logits)
            memcpy(all_logits + (size_t)i * n_vocab, backend->iface->logits(backend), (size_t)n_vocab * sizeof(float));
    }
    if (want_output && next_token)
        *next_token = next;
    return TRN_OK;
}

trn_status trn_prefill(const trn_graph *graph, trn_backend *backend, const int *tokens, int n_tokens, int pos0,
                       int want_output, int *next_token, float *all_logits) {
    if (backend->iface->prefill)
        return backend->iface->prefill(backend, tokens, n_tokens, pos0, want_output, next_token, all_logits);
    return trn_prefill_steps(graph, backend, tokens, n_tokens, pos0, want_output, next_token, all_logits);
}
