/* backend.c: the backend behind functions (backend.h): the factory that picks a backend by device name, the checked
 * calls into a backend's table, and prefill for backends without a batched one. Knows the backends' constructors
 * only; nothing here touches a device. */
#include "backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_fallback/cpu_backend.h"
#ifdef TRN_HAVE_CUDA
#include "cuda/cuda_backend.h"
#endif

trn_status trn_backend_create(const char *device, trn_backend **out, char *choice, size_t cap) {
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

void trn_backend_free(trn_backend *backend) {
    if (backend)
        backend->iface->free(backend);
}

trn_status trn_backend_prepare(trn_backend *backend, const trn_graph *graph, const trn_backend_config *config) {
    backend->graph = NULL;
    TRN_TRY(backend->iface->prepare(backend, graph, config));
    backend->graph = graph;
    return TRN_OK;
}

trn_status trn_backend_step(trn_backend *backend, int token, int pos, int want_output, int *next_token) {
    if (!backend->graph)
        return trn_fail(TRN_ERR_INVALID, "backend %s: step before a successful prepare", backend->iface->name);
    return backend->iface->step(backend, token, pos, want_output, next_token);
}

const float *trn_backend_logits(trn_backend *backend) { return backend->iface->logits(backend); }
const char *trn_backend_name(const trn_backend *backend) { return backend->iface->name; }
const char *trn_backend_describe(trn_backend *backend) { return backend->iface->describe(backend); }

void trn_backend_get_stats(trn_backend *backend, trn_backend_stats *out) {
    memset(out, 0, sizeof(*out));
    if (backend->iface->stats)
        backend->iface->stats(backend, out);
}

int trn_backend_has_decode_batch(const trn_backend *backend) { return backend->iface->decode_batch != NULL; }

trn_status trn_backend_decode_batch(trn_backend *backend, const trn_batch_token *tokens, int n_tokens, float *logits) {
    if (!backend->graph || !backend->iface->decode_batch)
        return trn_fail(TRN_ERR_INVALID, "backend %s: no batched decode%s", backend->iface->name,
                        backend->graph ? "" : " before a successful prepare");
    return backend->iface->decode_batch(backend, tokens, n_tokens, logits);
}

int trn_backend_has_batched_prefill(const trn_backend *backend) { return backend->iface->prefill != NULL; }

trn_status trn_backend_prefill_steps(trn_backend *backend, const int *tokens, int n_tokens, int pos0, int want_output,
                                     int *next_token, float *all_logits) {
    if (!backend->graph)
        return trn_fail(TRN_ERR_INVALID, "backend %s: prefill before a successful prepare", backend->iface->name);
    if (n_tokens < 1)
        return trn_fail(TRN_ERR_INVALID, "prefill of %d tokens: at least one is needed", n_tokens);
    const int n_vocab = backend->graph->model->hp.n_vocab;
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

trn_status trn_backend_prefill(trn_backend *backend, const int *tokens, int n_tokens, int pos0, int want_output,
                               int *next_token, float *all_logits) {
    if (!backend->graph)
        return trn_fail(TRN_ERR_INVALID, "backend %s: prefill before a successful prepare", backend->iface->name);
    if (backend->iface->prefill)
        return backend->iface->prefill(backend, tokens, n_tokens, pos0, want_output, next_token, all_logits);
    return trn_backend_prefill_steps(backend, tokens, n_tokens, pos0, want_output, next_token, all_logits);
}
