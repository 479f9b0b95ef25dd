/* test_cuda.c: the CUDA backend against the CPU backend (built only where nvcc exists; skipped, with a message,
 * where no usable GPU is present).
 *
 * For each model (the synthetic "tiny" TQ2_0 model, the synthetic Trinity-1.1B-shaped models in TQ2_0 and TQ1_0,
 * tests/golden/eval/tiny_ternary.gguf, and stories260K where ../shared/testdata is present) and each activation mode,
 * STEPS (72) greedy steps run on the CPU (AVX2 or scalar), and every GPU run is fed the CPU's tokens (teacher
 * forcing); the graphs' context of CTX (160) positions makes the split attention kernel merge up to two blocks of
 * 64 positions per KV head from position 64 on, inside the CUDA Graph, with every layer reusing one scratch:
 *   - the greedy choices agree, except at near-ties (the CPU's logits of the two tokens within 2e-3 of its largest
 *     |logit|), and except in int8 mode on the random-weight models whose int8 values cascade (see model_kind);
 *   - logits agree within a normalized squared error of 1e-8 in f32 mode (summation order only), and 1e-3 in int8
 *     mode (a float difference before an int8 quantization can move a value across a rounding boundary, which
 *     moves logits by ~1e-4: see tests/test_eval.c);
 *     (random-weight Trinity-shaped models: 1e-2, see check_model);
 *   - the default plan against one kernel per node (TRN_CUDA_NO_FUSION): in int8 mode NMSE <= 1e-4 (the fused RMSNorm
 *     sums its squares in another order), the same greedy choices (near-ties aside); in f32 mode, which fuses nothing,
 *     only the attention kernel differs (positions split across blocks, merged at the end): NMSE <= 1e-8;
 *   - graph replay and plain launches (both unfused) give bitwise identical logits, as do launches with and without
 *     programmatic dependent launch, and the lean ternary kernel (TRN_CUDA_TERNARY=lean) and the classic one;
 *   - the split attention kernel with 32 positions per block (TRN_CUDA_ATTENTION_SPLIT=32) within the fused-vs-unfused
 *     bounds of the default 64;
 *   - sampling on the device with a seed gives the same tokens on two runs (same seed, same text);
 *   - every weight mode (streamed, partly resident, mapped; copies slowed on purpose; pinned memory refused) gives
 *     bitwise the logits and tokens of resident weights. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_fallback/cpu_backend.h"
#include "cuda/cuda_backend.h"
#include "graph/graph.h"
#include "test_util.h"

#define STEPS 72
#define CTX 160

/* STEPS decode steps from BOS: logits [STEPS][n_vocab] and the sampled tokens. The next input is the sampled token,
 * or forced[pos] where forced is given (teacher forcing: two backends then see the same inputs, so a near-tie that
 * one breaks differently cannot send the texts apart; synthetic models with random weights have many). */
static int run_config(trn_backend *backend, const trn_model *model, const trn_graph *g,
                      const trn_backend_config *config, const int *forced, int *tokens, float *logits) {
    if (trn_backend_prepare(backend, g, config) != TRN_OK) {
        fprintf(stderr, "prepare failed: %s\n", trn_last_error());
        return 0;
    }
    const int n_vocab = model->hp.n_vocab;
    int token = trn_tokenizer_bos(model->tokenizer);
    for (int pos = 0; pos < STEPS; pos++) {
        int next = -1;
        if (trn_backend_step(backend, token, pos, 1, &next) != TRN_OK) {
            fprintf(stderr, "step %d failed: %s\n", pos, trn_last_error());
            return 0;
        }
        const float *l = trn_backend_logits(backend);
        if (!l)
            return 0;
        memcpy(logits + (size_t)pos * n_vocab, l, (size_t)n_vocab * sizeof(float));
        tokens[pos] = next;
        token = forced ? forced[pos] : next;
    }
    return 1;
}

static int run(trn_backend *backend, const trn_model *model, const trn_graph *g, trn_act_mode act, float temp,
               const int *forced, int *tokens, float *logits) {
    trn_backend_config config = {.n_threads = 0, .act = act, .sampling = trn_sampling_default()};
    config.sampling.temp = temp;
    config.sampling.seed = 7;
    return run_config(backend, model, g, &config, forced, tokens, logits);
}

/* Whether greedy tokens a agree with the reference tokens b, whose logits are ref: where they differ, the reference's
 * logits of the two tokens must be within 2e-3 of its largest |logit| (a near-tie that rounding may break). */
static int same_choices(const int *a, const int *b, const float *ref, int n_vocab, int *n_ties) {
    *n_ties = 0;
    for (int pos = 0; pos < STEPS; pos++) {
        if (a[pos] == b[pos])
            continue;
        const float *l = ref + (size_t)pos * n_vocab;
        float scale = 0.0f;
        for (int i = 0; i < n_vocab; i++)
            scale = fabsf(l[i]) > scale ? fabsf(l[i]) : scale;
        if (a[pos] < 0 || a[pos] >= n_vocab || fabsf(l[a[pos]] - l[b[pos]]) > 2e-3f * scale)
            return 0;
        (*n_ties)++;
    }
    return 1;
}

static trn_backend *make(int cuda) {
    trn_backend *b = NULL;
    if ((cuda ? trn_cuda_backend_create(&b) : trn_cpu_backend_create(&b)) != TRN_OK)
        return NULL;
    return b;
}

/* run() on a CUDA backend created with environment switch `name` set to `value`. */
static int run_with_env(const char *name, const char *value, const trn_model *model, const trn_graph *g,
                        trn_act_mode act, const int *forced, int *tokens, float *logits) {
    setenv(name, value, 1);
    trn_backend *d = make(1);
    const int ok = d && run(d, model, g, act, 0.0f, forced, tokens, logits);
    unsetenv(name);
    trn_backend_free(d);
    return ok;
}

/* How strictly a model's int8 mode is held to the CPU's. In int8 mode a float difference before a quantization
 * (a sum in another order, CUDA's expf against glibc's) can move a value across a rounding boundary; in a model with
 * random weights such a flip cascades through the later layers and positions (tests/test_eval.c measured ~1e-4 on
 * tiny_ternary.gguf), and errors of that size break its many close calls either way. A wrong kernel gives NMSE near
 * 1; f32 mode, where nothing is quantized, keeps the strict checks for every model.
 *   EXACT:   no cascade seen (synthetic "tiny", stories260K: F32 weights, nothing quantized): int8 NMSE <= 1e-3
 *            against the CPU, <= 1e-4 fused vs unfused, greedy choices must agree (near-ties aside);
 *   CASCADE: tiny_ternary.gguf (random 2-layer ternary; on an H200 over 72 steps: NMSE 8e-5 against the CPU,
 *            2e-6 fused vs unfused): the same bounds, greedy choices printed, not required;
 *   CHAOTIC: the random-weight Trinity-1.1B-shaped models, whose 22 layers amplify a flip far more (on an H200:
 *            NMSE 9e-4 against the CPU, 6e-4 fused vs unfused): bounds 1e-2 and 1e-2, greedy choices printed. */
typedef enum { EXACT, CASCADE, CHAOTIC } model_kind;

/* The first position whose logits differ by an NMSE above 1e-6 (-1: none): where a cascade starts. */
static int first_divergence(const float *a, const float *b, int n_vocab) {
    for (int pos = 0; pos < STEPS; pos++)
        if (test_nmse(a + (size_t)pos * n_vocab, b + (size_t)pos * n_vocab, n_vocab) > 1e-6)
            return pos;
    return -1;
}

static void check_model(const char *path, model_kind kind) {
    trn_model *model = NULL;
    if (trn_model_load(path, &model) != TRN_OK) {
        CHECK_MSG(0, "%s: %s", path, trn_last_error());
        return;
    }
    trn_graph *g = NULL;
    CHECK(trn_graph_build_decode(model, CTX, &g) == TRN_OK);
    const size_t n = (size_t)STEPS * model->hp.n_vocab;
    float *cpu = malloc(n * sizeof(float)), *gpu = malloc(n * sizeof(float)), *plain = malloc(n * sizeof(float));
    int t_cpu[STEPS], t_gpu[STEPS], t_plain[STEPS], s1[STEPS], s2[STEPS];
    const int n_vocab = model->hp.n_vocab;
    for (int act = 0; act < 2; act++) {
        /* the CPU runs free (greedy); every GPU run is fed the CPU's tokens */
        trn_backend *c = make(0), *d = make(1);
        int ok = c && d && run(c, model, g, (trn_act_mode)act, 0.0f, NULL, t_cpu, cpu) &&
                 run(d, model, g, (trn_act_mode)act, 0.0f, t_cpu, t_gpu, gpu);
        CHECK_MSG(ok, "%s: a run failed", path);
        int ties = 0;
        if (ok) {
            const double err = test_nmse(gpu, cpu, (long long)n);
            const double bound = act == TRN_ACT_F32 ? 1e-8 : kind == CHAOTIC ? 1e-2 : 1e-3;
            const int same = same_choices(t_gpu, t_cpu, cpu, n_vocab, &ties);
            printf("%s, act %s: cuda vs cpu logits nmse %.3g (bound %.0e, first position above 1e-6: %d), greedy "
                   "choices %s (%d near-ties) on %s\n", path, act ? "f32" : "int8", err, bound,
                   first_divergence(gpu, cpu, n_vocab), same ? "agree" : "DIFFER", ties, trn_backend_describe(d));
            CHECK_MSG(err <= bound, "%s act %d: nmse %.3g", path, act, err);
            CHECK_MSG(same || (kind != EXACT && act == TRN_ACT_INT8), "%s act %d: greedy choices differ beyond "
                      "near-ties", path, act);
        }
        trn_backend_free(d);
        /* the switches: fusion off (TRN_CUDA_NO_FUSION), plain launches (TRN_CUDA_NO_GRAPH: no graph, no fusion),
         * programmatic dependent launch off (TRN_CUDA_NO_PDL: the same kernels, so the same bits) */
        float *unfused = malloc(n * sizeof(float));
        int t_unfused[STEPS];
        ok = ok && unfused &&
             run_with_env("TRN_CUDA_NO_FUSION", "1", model, g, (trn_act_mode)act, t_cpu, t_unfused, unfused);
        if (ok) {
            const double err = test_nmse(gpu, unfused, (long long)n);
            const int same = same_choices(t_gpu, t_unfused, unfused, n_vocab, &ties);
            printf("%s, act %s: fused vs unfused logits nmse %.3g, greedy choices %s (%d near-ties)\n", path,
                   act ? "f32" : "int8", err, same ? "agree" : "DIFFER", ties);
            CHECK_MSG(err <= (act == TRN_ACT_F32 ? 1e-8 : kind == CHAOTIC ? 1e-2 : 1e-4),
                      "%s act %d: fused vs unfused nmse %.3g", path, act, err);
            CHECK_MSG(same || (kind != EXACT && act == TRN_ACT_INT8), "%s act %d: fusion changed greedy choices "
                      "beyond near-ties", path, act);
        }
        ok = ok && run_with_env("TRN_CUDA_NO_GRAPH", "1", model, g, (trn_act_mode)act, t_cpu, t_plain, plain);
        CHECK_MSG(ok && memcmp(plain, unfused, n * sizeof(float)) == 0, "%s act %d: graph and plain launches differ",
                  path, act);
        ok = ok && run_with_env("TRN_CUDA_NO_PDL", "1", model, g, (trn_act_mode)act, t_cpu, t_plain, plain);
        CHECK_MSG(ok && memcmp(plain, gpu, n * sizeof(float)) == 0,
                  "%s act %d: launches with and without programmatic dependent launch differ", path, act);
        ok = ok && run_with_env("TRN_CUDA_TERNARY", "lean", model, g, (trn_act_mode)act, t_cpu, t_plain, plain);
        CHECK_MSG(ok && memcmp(plain, gpu, n * sizeof(float)) == 0,
                  "%s act %d: the lean and the classic ternary kernels differ", path, act);
        /* the split attention kernel with 32 positions per block: its partial sums merge in another order */
        ok = ok && run_with_env("TRN_CUDA_ATTENTION_SPLIT", "32", model, g, (trn_act_mode)act, t_cpu, t_plain, plain);
        if (ok) {
            const double err = test_nmse(gpu, plain, (long long)n);
            printf("%s, act %s: attention split 32 vs 64 logits nmse %.3g\n", path, act ? "f32" : "int8", err);
            CHECK_MSG(err <= (act == TRN_ACT_F32 ? 1e-8 : kind == CHAOTIC ? 1e-2 : 1e-4),
                      "%s act %d: attention split 32 vs 64 nmse %.3g", path, act, err);
        }
        free(unfused);
        trn_backend_free(c);
    }
    /* sampling on the device: the same seed gives the same text */
    trn_backend *d = make(1);
    int ok = d && run(d, model, g, TRN_ACT_INT8, 0.8f, NULL, s1, gpu) &&
             run(d, model, g, TRN_ACT_INT8, 0.8f, NULL, s2, plain);
    CHECK_MSG(ok && memcmp(s1, s2, sizeof(s1)) == 0, "%s: sampling with one seed gave two texts", path);
    trn_backend_free(d);
    free(cpu);
    free(gpu);
    free(plain);
    trn_graph_free(g);
    trn_model_free(model);
}

/* Weight residency: every mode gives bitwise the logits of resident weights (the same kernels read the same bytes,
 * only from elsewhere), also with each copy delayed on purpose (a kernel reading a ring slot before its layer
 * arrived would read another layer's weights) and with pinned memory refused (pageable copies, no graph). */
static void check_weights(const char *path) {
    trn_model *model = NULL;
    if (trn_model_load(path, &model) != TRN_OK) {
        CHECK_MSG(0, "%s: %s", path, trn_last_error());
        return;
    }
    trn_graph *g = NULL;
    CHECK(trn_graph_build_decode(model, CTX, &g) == TRN_OK);
    const size_t n = (size_t)STEPS * model->hp.n_vocab;
    float *resident = malloc(n * sizeof(float)), *other = malloc(n * sizeof(float));
    int t_resident[STEPS], t_other[STEPS];
    const int L = model->hp.n_layer;
    struct {
        const char *label, *env;
        trn_weight_mode mode;
        int resident_layers; /* -1: not given */
    } cases[] = {
        {"resident", NULL, TRN_WEIGHTS_RESIDENT, -1},
        {"streaming", NULL, TRN_WEIGHTS_STREAMING, 0},
        {"streaming, half resident", NULL, TRN_WEIGHTS_STREAMING, L / 2},
        {"streaming, last layer streamed", NULL, TRN_WEIGHTS_STREAMING, L - 1},
        {"mapped", NULL, TRN_WEIGHTS_MAPPED, -1},
        {"streaming, copies delayed 300 us", "TRN_CUDA_SLOW_COPY_US", TRN_WEIGHTS_STREAMING, 0},
        {"streaming, pinned memory refused", "TRN_CUDA_FAIL_PINNED", TRN_WEIGHTS_STREAMING, 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        trn_backend_config config = {.act = TRN_ACT_INT8, .sampling = trn_sampling_default(), .weights = cases[i].mode,
                                     .resident_layers_given = cases[i].resident_layers >= 0,
                                     .resident_layers = cases[i].resident_layers};
        config.sampling.temp = 0.0f;
        if (cases[i].env)
            setenv(cases[i].env, strcmp(cases[i].env, "TRN_CUDA_SLOW_COPY_US") == 0 ? "300" : "1", 1);
        trn_backend *d = make(1);
        const int ok = d && run_config(d, model, g, &config, NULL, i ? t_other : t_resident, i ? other : resident);
        if (cases[i].env)
            unsetenv(cases[i].env);
        CHECK_MSG(ok, "%s, weights %s: the run failed", path, cases[i].label);
        if (ok && i > 0) {
            const int same = memcmp(other, resident, n * sizeof(float)) == 0 &&
                             memcmp(t_other, t_resident, sizeof(t_other)) == 0;
            printf("%s, weights %s: %s resident's (%s)\n", path, cases[i].label, same ? "bitwise" : "DIFFERS from",
                   trn_backend_describe(d));
            CHECK_MSG(same, "%s: weights %s differ from resident weights", path, cases[i].label);
        }
        trn_backend_free(d);
    }
    free(resident);
    free(other);
    trn_graph_free(g);
    trn_model_free(model);
}

int main(void) {
    trn_backend *probe = NULL;
    if (trn_cuda_backend_create(&probe) != TRN_OK) {
        char why[600];
        snprintf(why, sizeof(why), "no usable GPU (%s): the CUDA backend compiled and linked, its tests did not run",
                 trn_last_error());
        test_skip(why);
    }
    trn_backend_free(probe);
    check_model("synthetic:tiny", EXACT);
    check_model("synthetic:tinyllama", CHAOTIC); /* Trinity-1.1B's shapes, TQ2_0 */
    check_model("synthetic:tinyllama-tq1", CHAOTIC);
    check_model(test_source_path("tests/golden/eval/tiny_ternary.gguf"), CASCADE);
    const char *stories = test_data_path("stories260K/stories260K.gguf");
    check_weights("synthetic:tiny");
    check_weights("synthetic:tinyllama");
    if (stories) {
        check_model(stories, EXACT);
        check_weights(stories);
    } else
        printf("stories260K part skipped: ../shared/testdata is absent\n");
    return test_finish("test_cuda");
}
