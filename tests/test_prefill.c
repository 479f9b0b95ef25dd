/* test_prefill.c: batched prefill (the backend's prefill entry, the ops' matmul) against token-by-token steps.
 *
 * For each model (synthetic "tiny", synthetic "tinyllama" with a few tokens, stories260K where ../shared/testdata
 * has it) and each kernel configuration (scalar kernels; the best kernels, AVX2 where the CPU has it, with 1, 2 and
 * 3 threads; the default batch size, 200 and a small one that divides none of the lengths, so that "tiny"'s batches
 * of 128 and 200 tokens at 2 and 3 threads run the products split by tokens (every thread at least a kernel tile),
 * its shorter ones split by rows (and a thread done early with its attention calls takes another's); f32
 * activations on "tiny"; the AMX tile kernel on its emulator for the small models, and on the tiles where the CPU
 * has AMX), a reference backend steps through a token sequence one token at a time, keeping every position's
 * logits and sampled token (sampling at temperature 0.8 with a repetition penalty, so the sampled token depends on
 * the token history too). Fresh backends then run the same sequence as:
 * - prefill of the first n1 tokens with all logits, one decode step, and a second prefill from pos0 = n1 + 1 with
 *   all logits: every logit bitwise equal to the steps', the sampled tokens equal, logits() the last row;
 * - prefill of the first n1 tokens filling the cache only, then a prefill of the rest with the last logits only;
 * - trn_backend_prefill through a copy of the interface whose prefill entry is NULL (the path a CUDA backend takes);
 * a 200-token batch on the Trinity-1.1B shape with its products split by tokens and by rows, bitwise equal;
 * and bad calls (past the context, a token outside the vocabulary, no tokens, a negative position) are refused. */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <stdlib.h>
#include <string.h>

#include "cpu_fallback/cpu_backend.h"
#include "cpu_fallback/ops.h"
#include "graph/graph.h"
#include "graph/backend.h"
#include "test_util.h"

typedef struct {
    int force_scalar, threads, max_batch;
    trn_act_mode act;
} run_config;

typedef struct {
    int n;          /* tokens */
    int *tokens;    /* [n] the sequence */
    float *logits;  /* [n][n_vocab] after each token */
    int *next;      /* [n] the token sampled after each */
} reference;

/* A kernel table by name (ops.h) for every backend made while it is not NULL, instead of scalar or the best: the AMX
 * checks. */
static const char *table_name;

static trn_backend *make_backend(const trn_graph *g, const run_config *rc) {
    trn_backend *backend = NULL;
    trn_backend_config config = {.n_threads = rc->threads, .act = rc->act,
                                 .kernels = table_name ? table_name : rc->force_scalar ? "scalar" : NULL,
                                 .sampling = trn_sampling_default(), .max_batch = rc->max_batch};
    config.sampling.temp = 0.8f;
    config.sampling.repeat_penalty = 1.3f;
    config.sampling.seed = 7;
    if (trn_cpu_backend_create(&backend) != TRN_OK || trn_backend_prepare(backend, g, &config) != TRN_OK) {
        CHECK_MSG(0, "prepare failed: %s", trn_last_error());
        trn_backend_free(backend);
        return NULL;
    }
    return backend;
}

static int run_reference(const trn_graph *g, const run_config *rc, reference *ref) {
    const int n_vocab = g->model->hp.n_vocab;
    trn_backend *b = make_backend(g, rc);
    if (!b)
        return 0;
    for (int i = 0; i < ref->n; i++) {
        CHECK(trn_backend_step(b, ref->tokens[i], i, 1, &ref->next[i]) == TRN_OK);
        memcpy(ref->logits + (size_t)i * n_vocab, trn_backend_logits(b), (size_t)n_vocab * sizeof(float));
    }
    trn_backend_free(b);
    return 1;
}

/* Rows [first, first + n) of `got` against the reference; returns the number of rows that differ. */
static int rows_differ(const reference *ref, int n_vocab, const float *got, int first, int n) {
    int bad = 0;
    for (int i = 0; i < n; i++)
        bad += memcmp(got + (size_t)i * n_vocab, ref->logits + (size_t)(first + i) * n_vocab,
                      (size_t)n_vocab * sizeof(float)) != 0;
    return bad;
}

static void check_config(const char *name, const trn_graph *g, const run_config *rc, reference *ref, int n1) {
    const int n_vocab = g->model->hp.n_vocab, n = ref->n;
    char what[160];
    snprintf(what, sizeof(what), "%s (%s, %d thread%s, act %s, batch %d)", name,
             table_name ? table_name : rc->force_scalar ? "scalar" : "best",
             rc->threads, rc->threads == 1 ? "" : "s", rc->act == TRN_ACT_F32 ? "f32" : "int8", rc->max_batch);
    const int failures_before = test_failures;
    if (!run_reference(g, rc, ref))
        return;
    float *logits = malloc((size_t)n * n_vocab * sizeof(float));

    /* all logits: prefill, a step, a second prefill from pos0 > 0 */
    trn_backend *b = make_backend(g, rc);
    if (b) {
        int next = -1;
        CHECK(trn_backend_prefill(b, ref->tokens, n1, 0, 1, &next, logits) == TRN_OK);
        CHECK_MSG(rows_differ(ref, n_vocab, logits, 0, n1) == 0, "%s: %d of the first %d rows of logits differ", what,
                  rows_differ(ref, n_vocab, logits, 0, n1), n1);
        CHECK_MSG(next == ref->next[n1 - 1], "%s: prefill sampled %d, the steps %d", what, next, ref->next[n1 - 1]);
        CHECK_MSG(rows_differ(ref, n_vocab, trn_backend_logits(b), n1 - 1, 1) == 0, "%s: logits() after prefill", what);
        CHECK(trn_backend_step(b, ref->tokens[n1], n1, 1, &next) == TRN_OK);
        CHECK_MSG(rows_differ(ref, n_vocab, trn_backend_logits(b), n1, 1) == 0 && next == ref->next[n1],
                  "%s: the step after prefill differs", what);
        const int rest = n - n1 - 1;
        CHECK(trn_backend_prefill(b, ref->tokens + n1 + 1, rest, n1 + 1, 1, &next, logits) == TRN_OK);
        CHECK_MSG(rows_differ(ref, n_vocab, logits, n1 + 1, rest) == 0, "%s: %d of %d rows of the second prefill "
                  "(pos0 %d) differ", what, rows_differ(ref, n_vocab, logits, n1 + 1, rest), rest, n1 + 1);
        CHECK_MSG(next == ref->next[n - 1], "%s: second prefill sampled %d, the steps %d", what, next, ref->next[n - 1]);
        trn_backend_free(b);
    }

    /* cache only, then the last logits only */
    b = make_backend(g, rc);
    if (b) {
        int next = -1;
        CHECK(trn_backend_prefill(b, ref->tokens, n1, 0, 0, NULL, NULL) == TRN_OK);
        CHECK(trn_backend_prefill(b, ref->tokens + n1, n - n1, n1, 1, &next, NULL) == TRN_OK);
        CHECK_MSG(rows_differ(ref, n_vocab, trn_backend_logits(b), n - 1, 1) == 0 && next == ref->next[n - 1],
                  "%s: last-token prefill differs from the steps", what);
        trn_backend_free(b);
    }

    /* trn_backend_prefill without a prefill entry: one step per token */
    b = make_backend(g, rc);
    if (b) {
        trn_backend_i stepping = *b->iface;
        stepping.prefill = NULL;
        const trn_backend_i *own = b->iface;
        b->iface = &stepping;
        int next = -1;
        memset(logits, 0, (size_t)n * n_vocab * sizeof(float));
        CHECK(trn_backend_prefill(b, ref->tokens, n, 0, 1, &next, logits) == TRN_OK);
        CHECK_MSG(rows_differ(ref, n_vocab, logits, 0, n) == 0 && next == ref->next[n - 1],
                  "%s: trn_backend_prefill's step-by-step fallback differs", what);
        b->iface = own;
        trn_backend_free(b);
    }
    printf("%s: %d tokens (prefill %d, step, prefill %d at pos0 %d): %s\n", what, n, n1, n - n1 - 1, n1 + 1,
           test_failures == failures_before ? "logits bitwise equal to the steps" : "DIFFERENT (see above)");
    free(logits);
}

static void check_errors(const trn_graph *g) {
    const run_config rc = {0, 1, 0, TRN_ACT_INT8};
    trn_backend *b = make_backend(g, &rc);
    if (!b)
        return;
    int tokens[4] = {1, 5, 9, 13}, next;
    CHECK(trn_backend_prefill(b, tokens, 4, g->n_ctx - 3, 1, &next, NULL) == TRN_ERR_INVALID);
    CHECK(trn_backend_prefill(b, tokens, 4, -1, 1, &next, NULL) == TRN_ERR_INVALID);
    CHECK(trn_backend_prefill(b, tokens, 0, 0, 1, &next, NULL) == TRN_ERR_INVALID);
    tokens[2] = g->model->hp.n_vocab;
    CHECK(trn_backend_prefill(b, tokens, 4, 0, 1, &next, NULL) == TRN_ERR_INVALID);
    tokens[2] = -1;
    CHECK(trn_backend_prefill(b, tokens, 4, 0, 1, &next, NULL) == TRN_ERR_INVALID);
    trn_backend_free(b);
}

/* n tokens of `path` (BOS, then ids spread over the vocabulary), n1 in the first prefill; batch sizes 64 and
 * `small`, on every kernel configuration; f32 activations too where `f32` is set. */
static void check_model(const char *path, int n, int n1, int small, int f32) {
    trn_model *model = NULL;
    if (trn_model_load(path, &model) != TRN_OK) {
        CHECK_MSG(0, "loading %s: %s", path, trn_last_error());
        return;
    }
    trn_graph *g = NULL;
    CHECK(trn_graph_build_decode(model, n + 8, &g) == TRN_OK);
    const int n_vocab = model->hp.n_vocab;
    reference ref = {n, malloc((size_t)n * sizeof(int)), malloc((size_t)n * n_vocab * sizeof(float)),
                     malloc((size_t)n * sizeof(int))};
    ref.tokens[0] = trn_tokenizer_bos(model->tokenizer);
    for (int i = 1; i < n; i++)
        ref.tokens[i] = (int)((37u * (unsigned)i * (unsigned)i + 11u * (unsigned)i + 3u) % (unsigned)n_vocab);
    const run_config configs[] = {
        {1, 1, small, TRN_ACT_INT8}, {0, 1, 0, TRN_ACT_INT8}, {0, 2, 0, TRN_ACT_INT8}, {0, 2, small, TRN_ACT_INT8},
        {0, 3, 200, TRN_ACT_INT8}, {0, 1, small, TRN_ACT_F32},
    };
    for (size_t i = 0; i < TRN_ARRAY_LEN(configs); i++) {
        if (configs[i].act == TRN_ACT_F32 && !f32)
            continue;
        check_config(path, g, &configs[i], &ref, n1);
    }
    /* the AMX tile kernel: on the tiles where the CPU has AMX (there the best table is the amx one, checked above
     * too), and on the emulator (any AVX-512 VNNI CPU) for the small models (the emulator takes about a minute per
     * configuration on the Trinity-1.1B shape; test_ops checks its shapes kernel by kernel) */
    const run_config amx_configs[] = {{0, 2, small, TRN_ACT_INT8}, {0, 2, 0, TRN_ACT_INT8}, {0, 1, small, TRN_ACT_INT8}};
    for (size_t i = 0; i < TRN_ARRAY_LEN(amx_configs); i++) {
        table_name = i == 0 ? "amx" : "amx-emulated";
        if (trn_cpu_ops_by_name(table_name) && (i == 0 || trn_model_weight_bytes_per_token(model) < 16000000))
            check_config(path, g, &amx_configs[i], &ref, n1);
        table_name = NULL;
    }
    check_errors(g);
    free(ref.tokens);
    free(ref.logits);
    free(ref.next);
    trn_graph_free(g);
    trn_model_free(model);
}

/* A batch's products split by tokens against the same batch split by rows (TRN_CPU_SPLIT_TOKENS=0), on the
 * Trinity-1.1B shape with the avx512 table (the one that splits tokens; the scalar table would take minutes here),
 * whose products are large enough for a thread done early to take rows of another's tokens (how often it does
 * depends on the machine; 3 threads share 2 processors here): all logits of a 200-token batch bitwise equal. */
static void check_token_split(void) {
    const trn_cpu_ops *ops = trn_cpu_ops_by_name("avx512");
    if (!ops || ops->matmul_split_tokens == 0) {
        printf("token split check skipped: no avx512 table on this CPU or build (tiny's batches above check the "
               "split on this build's table where it splits)\n");
        return;
    }
    table_name = "avx512";
    trn_model *model = NULL;
    trn_graph *g = NULL;
    if (trn_model_load("synthetic:tinyllama", &model) != TRN_OK || trn_graph_build_decode(model, 208, &g) != TRN_OK) {
        CHECK_MSG(0, "synthetic:tinyllama: %s", trn_last_error());
        trn_model_free(model);
        return;
    }
    enum { N = 200 };
    const int n_vocab = model->hp.n_vocab;
    int tokens[N], next;
    for (int i = 0; i < N; i++)
        tokens[i] = (int)((37u * (unsigned)i * (unsigned)i + 11u * (unsigned)i + 3u) % (unsigned)n_vocab);
    float *logits[2] = {malloc((size_t)N * n_vocab * sizeof(float)), malloc((size_t)N * n_vocab * sizeof(float))};
    for (int threads = 2; threads <= 3; threads++) {
        for (int rows = 0; rows < 2; rows++) { /* tokens, then rows */
            if (rows)
                setenv("TRN_CPU_SPLIT_TOKENS", "0", 1);
            const run_config rc = {0, threads, N, TRN_ACT_INT8};
            trn_backend *b = make_backend(g, &rc);
            unsetenv("TRN_CPU_SPLIT_TOKENS");
            CHECK(b && trn_backend_prefill(b, tokens, N, 0, 1, &next, logits[rows]) == TRN_OK);
            trn_backend_free(b);
        }
        const int same = memcmp(logits[0], logits[1], (size_t)N * n_vocab * sizeof(float)) == 0;
        CHECK_MSG(same, "synthetic:tinyllama, %d threads: logits of products split by tokens and by rows differ",
                  threads);
        printf("synthetic:tinyllama (avx512, %d threads, batch %d): products split by tokens and by rows: %s\n",
               threads, N, same ? "logits bitwise equal" : "DIFFERENT");
    }
    table_name = NULL;
    free(logits[0]);
    free(logits[1]);
    trn_graph_free(g);
    trn_model_free(model);
}

int main(void) {
    const char *no_amx = NULL;
    if (trn_cpu_ops_amx(&no_amx))
        printf("AMX available on this CPU: the amx table's prefill is checked on real tiles (and emulated)\n");
    else if (trn_cpu_ops_amx_emulated())
        printf("AMX not available on this CPU: real-tile checks skipped (emulator checked): %s\n", no_amx);
    else
        printf("note: no AMX kernel, its checks are skipped: %s\n", no_amx);
    /* 240 tokens: batches of 128 + 72 (200 in one), then 39 after the step; of 5: 40 full ones, then 7 + 4 */
    check_model("synthetic:tiny", 240, 200, 5, 1);
    /* Trinity-1.1B shape, a few tokens: batches of 3 leave a 1-token batch (4 = 3 + 1) on both sides of the step */
    check_model("synthetic:tinyllama", 9, 4, 3, 0);
    check_token_split();
    const char *stories = test_data_path("stories260K/stories260K.gguf");
    if (stories)
        check_model(stories, 100, 37, 7, 0);
    else
        printf("stories260K part skipped: ../shared/testdata is absent\n");
    return test_finish("test_prefill");
}
