/* fuzz_gguf.c: libFuzzer target for the GGUF reader and everything that trusts what it accepts: the bytes as a
 * GGUF image (trn_gguf_open_memory) -> trn_model_from_gguf (hyperparameters, tensor binding, tokenizer) -> encoding
 * a short fixed text -> the decode graph for an 8-position context -> the CPU backend (one thread, greedy) prepared
 * and run for two steps -> everything freed. Models whose tensors exceed FUZZ_MAX_WEIGHT_BYTES are refused here,
 * so one execution stays in milliseconds (int8 activations and the CPU's fastest kernel table: choosing the float
 * activations or the scalar kernels from the input was tried and cut the exec rate four- to six-fold).
 * Seeds: tests/fuzz/corpus/gguf (scripts/make_fuzz_corpus.py). */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "cpu_fallback/cpu_backend.h"
#include "fuzz_util.h"
#include "graph/graph.h"
#include "host/model.h"

#define FUZZ_MAX_WEIGHT_BYTES ((size_t)4 << 20)
#define FUZZ_N_CTX 8

static void run_model(const trn_model *model) {
    static const char text[] = "Hello world, \xc3\xa9t\xc3\xa9 <0x41>!";
    int *ids = NULL, n_ids = 0;
    const char *stage = "encode";
    if (trn_tokenizer_encode(model->tokenizer, text, sizeof(text) - 1, 1, &ids, &n_ids) != TRN_OK) {
        fuzz_log("gguf: encode failed: %s", trn_last_error());
        return;
    }
    trn_graph *graph = NULL;
    trn_backend *backend = NULL;
    stage = "graph";
    if (trn_graph_build_decode(model, FUZZ_N_CTX, &graph) != TRN_OK)
        goto done;
    stage = "backend";
    if (trn_cpu_backend_create(&backend) != TRN_OK)
        goto done;
    trn_backend_config config;
    memset(&config, 0, sizeof(config));
    config.n_threads = 1;
    config.act = TRN_ACT_INT8;
    config.sampling = trn_sampling_default();
    config.sampling.temp = 0.0f; /* greedy */
    config.weights = TRN_WEIGHTS_AUTO;
    stage = "prepare";
    if (trn_backend_prepare(backend, graph, &config) != TRN_OK)
        goto done;
    int token = n_ids > 0 ? ids[0] : 0, next = -1;
    stage = "step";
    if (trn_backend_step(backend, token, 0, 1, &next) != TRN_OK)
        goto done;
    const float *logits = trn_backend_logits(backend);
    volatile float sink = logits ? logits[0] : 0.0f;
    (void)sink;
    /* the sampled token goes back in, as in generation */
    if (next >= 0 && next < model->hp.n_vocab)
        trn_backend_step(backend, next, 1, 1, &next);
    stage = NULL;
    fuzz_log("gguf: %d tokens, two steps run (next token %d)", n_ids, next);
done:
    if (stage)
        fuzz_log("gguf: %s failed: %s", stage, trn_last_error());
    trn_backend_free(backend);
    trn_graph_free(graph);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0)
        return 0;
    /* an exact-size, 64-byte aligned copy: tensors then sit as aligned as in a mapped file, and a read past the
     * image's end is still caught */
    void *image = NULL;
    if (posix_memalign(&image, 64, size) != 0)
        return 0;
    memcpy(image, data, size);
    trn_gguf *gguf = NULL;
    if (trn_gguf_open_memory(image, size, 0, "fuzz.gguf", &gguf) != TRN_OK) {
        fuzz_log("gguf: open failed: %s", trn_last_error());
        free(image);
        return 0;
    }
    trn_model *model = NULL;
    if (trn_model_from_gguf(gguf, &model) == TRN_OK) { /* takes the gguf, also on failure */
        if (trn_model_total_bytes(model) <= FUZZ_MAX_WEIGHT_BYTES)
            run_model(model);
        else
            fuzz_log("gguf: %zu bytes of weights, skipped", trn_model_total_bytes(model));
        trn_model_free(model);
    } else {
        fuzz_log("gguf: model failed: %s", trn_last_error());
    }
    free(image);
    return 0;
}
