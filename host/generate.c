/* generate.c: the generation loop and backend selection (see generate.h). The loop knows nothing of the
 * backend but its interface: position and token in, next token out. */
#include "generate.h"

#include <stdlib.h>
#include <string.h>

#include "../cpu_fallback/cpu_backend.h"
#ifdef TRN_HAVE_CUDA
#include "../cuda/cuda_backend.h"
#endif

trn_status trn_backend_for_device(const char *device, trn_backend **out) {
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
            fprintf(stderr, "device: cuda\n");
            return TRN_OK;
        }
        fprintf(stderr, "device: cpu (CUDA unavailable: %s)\n", trn_last_error());
#else
        fprintf(stderr, "device: cpu (this build has no CUDA backend)\n");
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

static void print_token(const trn_tokenizer *tok, trn_text_stream *stream, int prev, int token) {
    char piece[256];
    size_t n = trn_tokenizer_decode(tok, prev, token, piece, sizeof(piece));
    trn_text_stream_write(stream, piece, TRN_MIN(n, sizeof(piece)));
}

trn_status trn_generate(const trn_model *model, const trn_graph *graph, trn_backend *backend, const char *prompt,
                        const trn_generate_options *opts, trn_generate_stats *stats) {
    memset(stats, 0, sizeof(*stats));
    const trn_tokenizer *tok = model->tokenizer;
    int *ids = NULL, n_ids = 0;
    TRN_TRY(trn_tokenizer_encode(tok, prompt, strlen(prompt), opts->add_bos, &ids, &n_ids));
    if (n_ids == 0) { /* no BOS and an empty prompt: nothing to condition on */
        free(ids);
        return trn_fail(TRN_ERR_INVALID, "the prompt is empty and --no-bos was given: nothing to start from");
    }
    if (n_ids > graph->n_ctx) {
        free(ids);
        return trn_fail(TRN_ERR_INVALID, "the prompt is %d tokens, longer than the context of %d (-c)", n_ids,
                        graph->n_ctx);
    }
    if (opts->n_predict < 0 || (int64_t)n_ids + opts->n_predict > graph->n_ctx) {
        free(ids);
        return trn_fail(TRN_ERR_INVALID, "-n %d after a %d-token prompt needs %lld positions, more than the context of %d (-c)",
                        opts->n_predict, n_ids, (long long)n_ids + opts->n_predict, graph->n_ctx);
    }
    stats->n_prompt = n_ids;
    trn_text_stream stream;
    trn_text_stream_init(&stream, opts->out);
    for (int i = 0; i < n_ids; i++)
        print_token(tok, &stream, i ? ids[i - 1] : -1, ids[i]);
    fflush(opts->out);

    trn_status status = TRN_OK;
    double t0 = trn_time_s();
    int next = -1;
    /* the whole prompt as one prefill (batched where the backend can); the first new token is sampled from the
     * last prompt position's logits */
    status = trn_prefill(graph, backend, ids, n_ids, 0, opts->n_predict > 0, &next, NULL);
    stats->prompt_s = trn_time_s() - t0;
    int prev = ids[n_ids - 1];
    int pos = n_ids;
    t0 = trn_time_s();
    for (int produced = 0; status == TRN_OK && produced < opts->n_predict; produced++) {
        stats->n_generated++;
        if (next == trn_tokenizer_eos(tok)) {
            stats->hit_eos = 1;
            break;
        }
        print_token(tok, &stream, prev, next);
        if (produced + 1 == opts->n_predict)
            break;
        fflush(opts->out);
        prev = next;
        status = backend->iface->step(backend, next, pos++, 1, &next);
    }
    stats->generate_s = trn_time_s() - t0;
    trn_text_stream_flush(&stream);
    fflush(opts->out);
    free(ids);
    return status;
}
