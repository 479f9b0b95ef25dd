/* test_eval.c: the engine's logits and perplexity against implementations this project did not write.
 *
 * Golden files in tests/golden/eval/, made by scripts/make_eval_golden.py (see its manifest.txt):
 * - tiny_ternary.gguf, a random 2-layer ternary Llama (every linear layer TQ2_0, lossless), with its logits for a
 *   31-id sequence computed by a NumPy float64 forward pass (logits_numpy_f32.npy) and by llama.cpp, whose TQ2_0
 *   kernel quantizes activations to int8 per block of 256 (logits_llamacpp.npy). This part always runs.
 *   - float-activation mode (TRN_ACT_F32) vs NumPy: nmse <= 1e-6 (the bound);
 *   - scalar vs AVX2 kernels in float mode: nmse <= 1e-10;
 *   - int8 mode (TRN_ACT_INT8) vs llama.cpp and vs NumPy (bounds and their reasons at INT8_* below);
 *   - the tokenizer on this hand-made vocabulary (byte fallback for capitals and '.') vs llama.cpp's ids.
 * - stories260K (F32, from ../shared/testdata; skipped with a message where absent): logits vs llama.cpp
 *   (nmse <= 1e-8), the tokenization of stories_text.txt vs llama.cpp's ids, and the perplexity of that text at
 *   ctx 64 within 0.1% (relative) of llama.cpp's, computed by the same method, with the same number of scored tokens.
 * - trn_npy_write_f32 -> trn_npy_read_f32 round trip; trn_log_prob against a direct double computation.
 * Measured figures are printed. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cpu_fallback/cpu_backend.h"
#include "cpu_fallback/ops.h"
#include "graph/graph.h"
#include "host/eval.h"
#include "host/npy.h"
#include "test_util.h"

/* f32 mode vs the NumPy float64 forward pass: the bound. */
#define F32_VS_NUMPY 1e-6
/* f32 mode, scalar reference kernels vs AVX2 kernels. */
#define SCALAR_VS_AVX2 1e-10
/* F32 model (stories260K) vs llama.cpp: no quantization anywhere, only float rounding. */
#define STORIES_VS_LLAMACPP 1e-8
/* Perplexity: relative difference to llama.cpp's figure (the bound). */
#define PPL_REL 1e-3
/* int8 mode vs llama.cpp. Both quantize each activation vector as llama.cpp's Q8_K does (per 256-block, 127
 * levels from the largest |x|, round half to even) and sum each block exactly in integers, so they agree up to
 * float rounding: measured 2.1e-14 (AVX2 and scalar kernels alike), while the int8 effect itself (llama.cpp vs the
 * exact f32 logits) is 2.7e-4. Int8 rounding is discontinuous, though: a float difference upstream of a
 * quantization that moves one value across a rounding boundary changes it by a whole step, and such a flip
 * cascades through the later layers and positions. The golden script measured that: NumPy in float64 with
 * llama.cpp's rule emulated lands 7.3e-8 from llama.cpp (one flip); with relative noise of 2^-24 (float32 size)
 * added before every quantization, 8 draws stayed within 7.3e-8; with 2^-22 most draws cascaded to ~1e-4.
 * Hence two bounds:
 * - INT8_VS_LLAMACPP_TIGHT = 1e-6: above every figure measured for float-rounding-sized differences (7.3e-8, a
 *   factor ~14), far below a cascade. Failing only this one means a float op upstream of a quantization changed
 *   by more than rounding-noise size, or became less exact (see the by-position figures: the cascade starts at one
 *   position); it is not by itself a wrong quantization rule.
 * - INT8_VS_LLAMACPP_RULE = 1.5e-4 (about half the int8 effect): fails an engine that does not quantize (2.7e-4)
 *   or quantizes by another rule (emulated with 128 levels instead of 127: 4.7e-4), and holds for a cascade of the
 *   measured size. (Round half away from zero instead of half to even is not visible: no exact ties occur.) */
#define INT8_VS_LLAMACPP_TIGHT 1e-6
#define INT8_VS_LLAMACPP_RULE 1.5e-4
/* int8 mode vs the exact logits: the int8 effect (2.7e-4 for llama.cpp on this model), with a factor 2 for a
 * different realization of the same rounding noise; and it must not be ~0 (the mode would not be quantizing). */
#define INT8_VS_NUMPY_MAX 5.4e-4
#define INT8_VS_NUMPY_MIN 5e-5

/* ---------------------------------------------------------------------------------------------- helpers */

/* Reads an ids file: '#' comment lines, an optional "text: " line, an "ids: " line. Returns malloc'd ids. */
static int *read_ids(const char *path, int *n_ids, char **text) {
    size_t len = 0;
    char *data = test_read_file(path, &len);
    *n_ids = 0;
    if (text)
        *text = NULL;
    if (!data) {
        CHECK_MSG(0, "cannot read %s", path);
        return NULL;
    }
    int *ids = NULL;
    for (char *line = data; line && *line;) {
        char *end = strchr(line, '\n');
        if (end)
            *end = 0;
        if (text && strncmp(line, "text: ", 6) == 0)
            *text = strdup(line + 6);
        if (strncmp(line, "ids: ", 5) == 0) {
            int cap = 64;
            ids = malloc((size_t)cap * sizeof(int));
            char *p = line + 5, *q;
            for (long v = strtol(p, &q, 10); q != p; p = q, v = strtol(p, &q, 10)) {
                if (*n_ids == cap)
                    ids = realloc(ids, (size_t)(cap *= 2) * sizeof(int));
                ids[(*n_ids)++] = (int)v;
            }
        }
        line = end ? end + 1 : NULL;
    }
    free(data);
    CHECK_MSG(ids && *n_ids > 0, "%s: no 'ids:' line", path);
    return ids;
}

/* A "key value" line of a small text file, as a double; NAN if absent. */
static double read_key(const char *path, const char *key) {
    char *data = test_read_file(path, NULL);
    double v = NAN;
    const size_t klen = strlen(key);
    for (char *line = data; line && *line;) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ' ')
            v = strtod(line + klen + 1, NULL);
        char *end = strchr(line, '\n');
        line = end ? end + 1 : NULL;
    }
    free(data);
    return v;
}

static trn_backend *make_backend(const trn_graph *g, trn_act_mode act, int force_scalar) {
    trn_backend *backend = NULL;
    trn_backend_config config = {.n_threads = 0, .act = act, .kernels = force_scalar ? "scalar" : NULL,
                                 .sampling = trn_sampling_default()};
    config.sampling.temp = 0.0f;
    if (trn_cpu_backend_create(&backend) != TRN_OK || trn_backend_prepare(backend, g, &config) != TRN_OK) {
        CHECK_MSG(0, "backend prepare failed: %s", trn_last_error());
        trn_backend_free(backend);
        return NULL;
    }
    return backend;
}

/* Teacher-forced logits [n][n_vocab] with a fresh backend; NULL on failure (recorded). */
static float *eval_logits(const trn_model *model, const trn_graph *g, trn_act_mode act, int force_scalar,
                          const int *ids, int n) {
    trn_backend *backend = make_backend(g, act, force_scalar);
    if (!backend)
        return NULL;
    float *out = malloc((size_t)n * model->hp.n_vocab * sizeof(float));
    const trn_status st = trn_eval_logits(model, g, backend, ids, n, out);
    CHECK_MSG(st == TRN_OK, "trn_eval_logits: %s", trn_last_error());
    trn_backend_free(backend);
    if (st != TRN_OK) {
        free(out);
        return NULL;
    }
    return out;
}

/* Reads a golden [rows][cols] .npy and checks its shape. */
static float *read_golden(const char *relative, int64_t want_rows, int64_t want_cols) {
    const char *path = test_source_path(relative);
    float *data = NULL;
    int64_t rows = 0, cols = 0;
    if (trn_npy_read_f32(path, &data, &rows, &cols) != TRN_OK) {
        CHECK_MSG(0, "reading %s: %s", path, trn_last_error());
        return NULL;
    }
    if (rows != want_rows || cols != want_cols) {
        CHECK_MSG(0, "%s has shape (%lld, %lld), expected (%lld, %lld)", path, (long long)rows, (long long)cols,
                  (long long)want_rows, (long long)want_cols);
        free(data);
        return NULL;
    }
    return data;
}

/* Per-position nmse, printed compactly (to see where two logit sets part: one position, or from one on). */
static void print_positions(const char *label, const float *a, const float *b, int n, int n_vocab) {
    printf("  %s, by position:", label);
    for (int i = 0; i < n; i++)
        printf(" %.1e", test_nmse(a + (size_t)i * n_vocab, b + (size_t)i * n_vocab, n_vocab));
    printf("\n");
}

static int argmax_agree(const float *a, const float *b, int n, int n_vocab) {
    int agree = 0;
    for (int i = 0; i < n; i++) {
        const float *x = a + (size_t)i * n_vocab, *y = b + (size_t)i * n_vocab;
        int ia = 0, ib = 0;
        for (int j = 1; j < n_vocab; j++) {
            ia = x[j] > x[ia] ? j : ia;
            ib = y[j] > y[ib] ? j : ib;
        }
        agree += ia == ib;
    }
    return agree;
}

static void check_tokenizer(const trn_model *model, const char *text, size_t len, const int *want, int n_want,
                            const char *what) {
    int *ids = NULL, n = 0;
    if (trn_tokenizer_encode(model->tokenizer, text, len, 1, &ids, &n) != TRN_OK) {
        CHECK_MSG(0, "%s: encode failed: %s", what, trn_last_error());
        return;
    }
    int first_diff = -1;
    for (int i = 0; i < (n < n_want ? n : n_want) && first_diff < 0; i++)
        if (ids[i] != want[i])
            first_diff = i;
    if (first_diff < 0 && n != n_want)
        first_diff = n < n_want ? n : n_want;
    CHECK_MSG(first_diff < 0, "%s: %d ids vs llama.cpp's %d; first difference at index %d (trinity %d, llama.cpp %d)",
              what, n, n_want, first_diff, first_diff < n ? ids[first_diff] : -1,
              first_diff < n_want ? want[first_diff] : -1);
    if (first_diff < 0)
        printf("%s: %d ids, identical to llama.cpp's\n", what, n);
    free(ids);
}

/* ---------------------------------------------------------------------------------------------- parts */

static void check_npy(void) {
    char dir[] = "/tmp/trn_test_eval_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK_MSG(0, "mkdtemp failed");
        return;
    }
    char path[256];
    snprintf(path, sizeof(path), "%s/a.npy", dir);
    enum { R = 7, C = 300 };
    float *data = malloc(sizeof(float) * R * C);
    for (int i = 0; i < R * C; i++)
        data[i] = (float)(sin(i * 0.37) * pow(10.0, (i % 11) - 5)); /* varied magnitudes */
    data[5] = -0.0f;
    data[6] = INFINITY;
    CHECK(trn_npy_write_f32(path, data, R, C) == TRN_OK);
    float *back = NULL;
    int64_t rows = 0, cols = 0;
    CHECK(trn_npy_read_f32(path, &back, &rows, &cols) == TRN_OK);
    CHECK(rows == R && cols == C);
    CHECK(back && memcmp(back, data, sizeof(float) * R * C) == 0);
    /* the data start at a multiple of 64 bytes, as format 1.0 asks (NumPy pads to 64) */
    size_t len = 0;
    char *raw = test_read_file(path, &len);
    CHECK(raw && len == 64 * ((10 + (size_t)(unsigned char)raw[8] + 256u * (unsigned char)raw[9]) / 64) +
                                   sizeof(float) * R * C);
    free(raw);
    free(back);
    /* an empty array round-trips too */
    CHECK(trn_npy_write_f32(path, data, 0, C) == TRN_OK);
    back = NULL;
    CHECK(trn_npy_read_f32(path, &back, &rows, &cols) == TRN_OK && rows == 0 && cols == C);
    free(back);
    /* a missing file is an error, not a crash */
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/missing.npy", dir);
    back = NULL;
    CHECK(trn_npy_read_f32(missing, &back, &rows, &cols) == TRN_ERR_IO && back == NULL);
    remove(path);
    rmdir(dir);
    free(data);
    printf("npy: write/read round trip of (%d, %d) float32 bit-exact\n", R, C);
}

static void check_log_prob(void) {
    enum { V = 1000 };
    float logits[V];
    double worst = 0.0;
    for (int trial = 0; trial < 3; trial++) {
        const double offset = trial == 0 ? 0.0 : trial == 1 ? 80.0 : -3000.0; /* exp(80): fine in double */
        for (int i = 0; i < V; i++)
            logits[i] = (float)(offset + 6.0 * sin(i * 1.7 + trial) + (i == 17 ? 15.0 : 0.0));
        double sum = 0.0, total_p = 0.0;
        for (int i = 0; i < V; i++)
            sum += exp((double)logits[i] - offset); /* direct: shifted by the known offset only */
        for (int t = 0; t < V; t++) {
            const double direct = (double)logits[t] - offset - log(sum);
            const double got = trn_log_prob(logits, V, t);
            worst = fmax(worst, fabs(got - direct));
            total_p += exp(got);
        }
        CHECK_MSG(fabs(total_p - 1.0) < 1e-12, "probabilities sum to %.17g", total_p);
    }
    CHECK_MSG(worst < 1e-12, "trn_log_prob differs from the direct computation by %.3g", worst);
    /* a one-hot extreme: the certain token has log-probability ~0, the others very negative, all finite */
    for (int i = 0; i < V; i++)
        logits[i] = i == 3 ? 1e4f : -1e4f;
    CHECK(fabs(trn_log_prob(logits, V, 3)) < 1e-12);
    CHECK(isfinite(trn_log_prob(logits, V, 4)) && trn_log_prob(logits, V, 4) < -19999.0);
    printf("log_prob: max difference to the direct double computation %.3g\n", worst);
}

static void check_tiny(void) {
    const char *path = test_source_path("tests/golden/eval/tiny_ternary.gguf");
    trn_model *model = NULL;
    if (trn_model_load(path, &model) != TRN_OK) {
        CHECK_MSG(0, "loading %s: %s", path, trn_last_error());
        return;
    }
    char *text = NULL;
    int n = 0;
    int *ids = read_ids(test_source_path("tests/golden/eval/tiny_ternary.ids"), &n, &text);
    const int n_vocab = model->hp.n_vocab;
    trn_graph *g = NULL;
    CHECK(trn_graph_build_decode(model, model->hp.n_ctx_train, &g) == TRN_OK);
    float *ref_np = read_golden("tests/golden/eval/logits_numpy_f32.npy", n, n_vocab);
    float *ref_cpp = read_golden("tests/golden/eval/logits_llamacpp.npy", n, n_vocab);
    if (text)
        check_tokenizer(model, text, strlen(text), ids, n, "tiny_ternary tokenizer");
    if (!ids || !g || !ref_np || !ref_cpp)
        goto done;

    float *f32 = eval_logits(model, g, TRN_ACT_F32, 0, ids, n);
    float *f32_scalar = eval_logits(model, g, TRN_ACT_F32, 1, ids, n);
    float *int8 = eval_logits(model, g, TRN_ACT_INT8, 0, ids, n);
    float *int8_scalar = eval_logits(model, g, TRN_ACT_INT8, 1, ids, n);
    const long long total = (long long)n * n_vocab;
    const char *fast = trn_cpu_ops_avx2() ? "avx2" : "scalar (this build has no AVX2 kernels)";
    const double ref_gap = test_nmse(ref_cpp, ref_np, total);
    printf("tiny_ternary: %d ids x %d vocab; llama.cpp (int8) vs NumPy (f32) nmse %.3g (the int8 effect)\n", n,
           n_vocab, ref_gap);
    if (f32) {
        const double e = test_nmse(f32, ref_np, total);
        printf("tiny_ternary: f32 mode vs NumPy float64 nmse %.3g (bound %g), argmax agrees at %d of %d\n", e,
               F32_VS_NUMPY, argmax_agree(f32, ref_np, n, n_vocab), n);
        CHECK_MSG(e <= F32_VS_NUMPY, "f32 mode vs NumPy: nmse %.3g", e);
        if (e > F32_VS_NUMPY)
            print_positions("f32 mode vs NumPy", f32, ref_np, n, n_vocab);
        printf("tiny_ternary: f32 mode vs llama.cpp (int8) nmse %.3g\n", test_nmse(f32, ref_cpp, total));
    }
    if (f32 && f32_scalar) {
        const double e = test_nmse(f32_scalar, f32, total);
        printf("tiny_ternary: f32 mode, scalar vs %s kernels nmse %.3g (bound %g)\n", fast, e, SCALAR_VS_AVX2);
        CHECK_MSG(e <= SCALAR_VS_AVX2, "f32 mode, scalar vs %s kernels: nmse %.3g", fast, e);
    }
    if (int8) {
        const double e_cpp = test_nmse(int8, ref_cpp, total), e_np = test_nmse(int8, ref_np, total);
        printf("tiny_ternary: int8 mode vs llama.cpp nmse %.3g (bounds %g, %g), argmax agrees at %d of %d\n",
               e_cpp, INT8_VS_LLAMACPP_TIGHT, INT8_VS_LLAMACPP_RULE, argmax_agree(int8, ref_cpp, n, n_vocab), n);
        print_positions("int8 mode vs llama.cpp", int8, ref_cpp, n, n_vocab);
        printf("tiny_ternary: int8 mode vs NumPy f32 nmse %.3g (bounds %g..%g)\n", e_np, INT8_VS_NUMPY_MIN,
               INT8_VS_NUMPY_MAX);
        CHECK_MSG(e_cpp <= INT8_VS_LLAMACPP_RULE, "int8 mode vs llama.cpp: nmse %.3g: another quantization rule, "
                  "or none", e_cpp);
        CHECK_MSG(e_cpp <= INT8_VS_LLAMACPP_TIGHT, "int8 mode vs llama.cpp: nmse %.3g: more than float rounding "
                  "(a rounding-flip cascade; see the comment at INT8_VS_LLAMACPP_TIGHT)", e_cpp);
        CHECK_MSG(e_np <= INT8_VS_NUMPY_MAX && e_np >= INT8_VS_NUMPY_MIN, "int8 mode vs NumPy f32: nmse %.3g", e_np);
    }
    if (int8 && int8_scalar)
        printf("tiny_ternary: int8 mode, scalar vs %s kernels nmse %.3g (printed, not checked: test_model checks "
               "the kernels)\n", fast, test_nmse(int8_scalar, int8, total));
    free(f32);
    free(f32_scalar);
    free(int8);
    free(int8_scalar);
done:
    free(text);
    free(ids);
    free(ref_np);
    free(ref_cpp);
    trn_graph_free(g);
    trn_model_free(model);
}

static void check_stories(const char *path) {
    trn_model *model = NULL;
    if (trn_model_load(path, &model) != TRN_OK) {
        CHECK_MSG(0, "loading %s: %s", path, trn_last_error());
        return;
    }
    const int n_vocab = model->hp.n_vocab;
    const char *ppl_path = test_source_path("tests/golden/eval/stories260K_ppl.txt");
    const int ctx = (int)read_key(ppl_path, "ctx");
    CHECK_MSG(ctx == 64, "%s: ctx %d", ppl_path, ctx);
    trn_graph *g = NULL;
    CHECK(trn_graph_build_decode(model, 64, &g) == TRN_OK);

    /* logits */
    char *text = NULL;
    int n = 0;
    int *ids = read_ids(test_source_path("tests/golden/eval/stories260K_logits.ids"), &n, &text);
    float *ref = read_golden("tests/golden/eval/stories260K_logits_llamacpp.npy", n, n_vocab);
    if (text)
        check_tokenizer(model, text, strlen(text), ids, n, "stories260K tokenizer (logits text)");
    if (g && ids && ref && n <= 64) {
        float *got = eval_logits(model, g, TRN_ACT_INT8, 0, ids, n);
        float *got_f32 = eval_logits(model, g, TRN_ACT_F32, 0, ids, n);
        if (got) {
            const double e = test_nmse(got, ref, (long long)n * n_vocab);
            printf("stories260K: logits vs llama.cpp nmse %.3g over %d x %d (bound %g), argmax agrees at %d of %d\n",
                   e, n, n_vocab, STORIES_VS_LLAMACPP, argmax_agree(got, ref, n, n_vocab), n);
            CHECK_MSG(e <= STORIES_VS_LLAMACPP, "stories260K logits vs llama.cpp: nmse %.3g", e);
            if (e > STORIES_VS_LLAMACPP)
                print_positions("stories260K vs llama.cpp", got, ref, n, n_vocab);
        }
        /* no ternary layer: the activation mode changes nothing */
        if (got && got_f32)
            CHECK_MSG(memcmp(got, got_f32, (size_t)n * n_vocab * sizeof(float)) == 0,
                      "stories260K (F32): int8 and f32 activation modes give different logits");
        free(got);
        free(got_f32);
    }
    free(text);
    free(ids);
    free(ref);

    /* tokenization of the perplexity text, then perplexity over llama.cpp's ids */
    size_t len = 0;
    char *story = test_read_file(test_source_path("tests/golden/eval/stories_text.txt"), &len);
    int n_tok = 0;
    int *tokens = read_ids(test_source_path("tests/golden/eval/stories_text.ids"), &n_tok, NULL);
    CHECK_MSG(story != NULL, "cannot read stories_text.txt");
    if (story && tokens)
        check_tokenizer(model, story, len, tokens, n_tok, "stories260K tokenizer (stories_text.txt)");
    const double want_ppl = read_key(ppl_path, "perplexity"), want_stderr = read_key(ppl_path, "stderr");
    const int want_scored = (int)read_key(ppl_path, "n_scored"), want_chunks = (int)read_key(ppl_path, "n_chunks");
    CHECK_MSG((int)read_key(ppl_path, "n_tokens") == n_tok, "%s and stories_text.ids disagree on n_tokens", ppl_path);
    trn_backend *backend = g ? make_backend(g, TRN_ACT_INT8, 0) : NULL;
    if (backend && tokens) {
        trn_perplexity_result r;
        const trn_status st = trn_eval_perplexity(model, g, backend, tokens, n_tok, 64, NULL, NULL, &r);
        CHECK_MSG(st == TRN_OK, "trn_eval_perplexity: %s", trn_last_error());
        if (st == TRN_OK) {
            const double rel = fabs(r.perplexity - want_ppl) / want_ppl;
            printf("stories260K: perplexity (ctx 64) %.10g +/- %.4g, llama.cpp %.10g +/- %.4g: relative difference "
                   "%.3g (bound %g); %d scored in %d chunks of %d tokens (llama.cpp %d in %d)\n",
                   r.perplexity, r.stderr_perplexity, want_ppl, want_stderr, rel, PPL_REL, r.n_scored, r.n_chunks,
                   r.n_tokens, want_scored, want_chunks);
            CHECK_MSG(rel <= PPL_REL, "perplexity %.10g vs llama.cpp %.10g", r.perplexity, want_ppl);
            CHECK_MSG(r.n_scored == want_scored && r.n_chunks == want_chunks && r.n_tokens == n_tok && r.ctx == 64,
                      "scored %d in %d chunks of %d tokens; llama.cpp %d in %d of %d", r.n_scored, r.n_chunks,
                      r.n_tokens, want_scored, want_chunks, n_tok);
            CHECK_MSG(fabs(r.stderr_perplexity - want_stderr) <= 1e-2 * want_stderr, "stderr %.6g vs llama.cpp %.6g",
                      r.stderr_perplexity, want_stderr);
            CHECK(fabs(exp(r.mean_nll) - r.perplexity) <= 1e-12 * r.perplexity);
        }
    }
    trn_backend_free(backend);
    free(story);
    free(tokens);
    trn_graph_free(g);
    trn_model_free(model);
}

int main(void) {
    check_npy();
    check_log_prob();
    check_tiny();
    const char *stories = test_data_path("stories260K/stories260K.gguf");
    if (stories)
        check_stories(stories);
    else
        printf("stories260K part skipped: ../shared/testdata is absent\n");
    return test_finish("test_eval");
}
