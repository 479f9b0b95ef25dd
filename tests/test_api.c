/* test_api.c: the public API (host/trinity.h) as an embedding program uses it, nothing else included.
 * - a session's greedy text is the same run alone and run on two threads at once beside another session of the same
 *   model (sessions share the model, nothing else);
 * - feeding in pieces gives the logits of feeding at once; generating in two calls continues where the first stopped;
 * - parameter structs from an older, shorter version (a smaller size field) get the defaults for the rest;
 * - bad calls: nothing fed, past the context, ids outside the vocabulary, a vocabulary-only model's session, a missing
 *   file: each a status and a one-line message;
 * - what a model holds: the info of the synthetic "tiny" model (its hyperparameters; parameters and bytes equal to the
 *   sums over its tensors), each tensor, a metadata string and a missing key, the graph listing with its fusion
 *   marks; UTF-8 validation with the offset of a bad byte; convert and bench refusing bad parameters;
 * - sequences decoded together (trinity_batch): three slots started at different steps, prompts cut into pieces and a
 *   call of more tokens than one CPU batch holds; every logit row a slot got is bitwise the row a session computes
 *   for the same tokens alone, and a sampled slot (trinity_sampler) generates the tokens a session with the same
 *   settings generates; bad tokens, slots and positions refused with nothing run; all of it again through one backend
 *   per slot (TRN_BATCH_PER_SLOT=1: the path of a device without a batched decode, a GPU's). */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/trinity.h"
#include "test_util.h"

#define N_NEW 24

typedef struct {
    trinity_model *model;
    const char *prompt;
    char text[4096];
    size_t len;
    trinity_status status;
} job;

static int append(const char *piece, size_t len, int token, void *user) {
    (void)token;
    job *j = user;
    if (j->len + len < sizeof(j->text)) {
        memcpy(j->text + j->len, piece, len);
        j->len += len;
    }
    return 0;
}

static void *run_job(void *arg) {
    job *j = arg;
    trinity_session_params sp = trinity_session_params_default();
    sp.temperature = 0.7f; /* sampled, with a fixed seed: the draw depends on (seed, position) only */
    sp.seed = 11;
    trinity_session *s = NULL;
    j->len = 0;
    j->status = trinity_session_new(j->model, &sp, &s);
    if (j->status == TRINITY_OK)
        j->status = trinity_session_feed_text(s, j->prompt, 1);
    if (j->status == TRINITY_OK)
        j->status = trinity_session_generate(s, N_NEW, append, j, NULL);
    trinity_session_free(s);
    return NULL;
}

static int message_has(const char *needle) { return strstr(trinity_last_error(), needle) != NULL; }

/* What the synthetic "tiny" model holds, through the API (2 layers, n_embd 256, vocabulary 1024). */
static void check_model_info(trinity_model *model) {
    trinity_model_info info = {.size = sizeof(info)};
    CHECK(trinity_model_get_info(model, &info) == TRINITY_OK);
    CHECK_MSG(info.n_layer == 2 && info.n_embd == 256 && info.n_vocab == 1024 && info.head_dim * info.n_head == 256 &&
                  info.n_head % info.n_head_kv == 0 && info.gguf_version == 3 && info.n_metadata > 10,
              "layers %d, embd %d, vocab %d, heads %d/%d, GGUF v%u, %lld keys", info.n_layer, info.n_embd,
              info.n_vocab, info.n_head, info.n_head_kv, info.gguf_version, (long long)info.n_metadata);
    int64_t params = 0;
    uint64_t bytes = 0;
    int found_q = 0;
    for (int64_t i = 0; i < info.n_tensors; i++) {
        trinity_tensor_info t = {.size = sizeof(t)};
        CHECK(trinity_model_tensor(model, i, &t) == TRINITY_OK);
        params += t.n_elements;
        bytes += t.bytes;
        CHECK(t.ne[0] * t.ne[1] * t.ne[2] * t.ne[3] == t.n_elements);
        found_q |= strcmp(t.name, "blk.0.attn_q.weight") == 0 && strcmp(t.type, "tq2_0") == 0 && t.ne[0] == 256;
    }
    CHECK_MSG(params == info.n_params && bytes == info.tensor_bytes && found_q && info.bytes_per_token > 0 &&
                  info.bytes_per_token <= info.tensor_bytes,
              "%lld tensors: %lld params (info %lld), %llu bytes (info %llu), blk.0.attn_q found %d",
              (long long)info.n_tensors, (long long)params, (long long)info.n_params, (unsigned long long)bytes,
              (unsigned long long)info.tensor_bytes, found_q);
    trinity_tensor_info t = {.size = sizeof(t)};
    CHECK(trinity_model_tensor(model, info.n_tensors, &t) == TRINITY_ERR_INVALID && message_has("tensors"));
    trinity_model_info small = {.size = 8};
    CHECK(trinity_model_get_info(model, &small) == TRINITY_ERR_INVALID && message_has("size"));

    char text[8];
    size_t len = 0;
    CHECK(trinity_model_meta_string(model, "tokenizer.ggml.model", text, sizeof(text), &len) == TRINITY_OK &&
          strcmp(text, "llama") == 0 && len == 5);
    CHECK(trinity_model_meta_string(model, "general.name", text, 4, &len) == TRINITY_OK && strlen(text) == 3 && len > 3);
    CHECK(trinity_model_meta_string(model, "no.such.key", text, sizeof(text), &len) == TRINITY_ERR_INVALID &&
          len == 0 && text[0] == 0 && message_has("no.such.key"));
    CHECK(trinity_model_meta_string(model, "llama.block_count", text, sizeof(text), NULL) == TRINITY_ERR_INVALID);

    FILE *f = tmpfile();
    CHECK(f && trinity_model_print_graph(model, 64, f) == TRINITY_OK);
    if (f) {
        char listing[1 << 16];
        rewind(f);
        const size_t n = fread(listing, 1, sizeof(listing) - 1, f);
        listing[n] = 0;
        CHECK(strstr(listing, "context 64") && strstr(listing, "[chain norm+qkv+rope+store: 8 nodes]") &&
              strstr(listing, "[group of 2 products]"));
        fclose(f);
    }
    CHECK(trinity_model_print_graph(model, -1, stdout) == TRINITY_ERR_INVALID);

    size_t bad = 0;
    CHECK(trinity_utf8_valid("caf\xc3\xa9", 5, &bad) && !trinity_utf8_valid("ab\xff", 3, &bad) && bad == 2);

    trinity_convert_params cp = trinity_convert_params_default();
    CHECK(trinity_convert(&cp) == TRINITY_ERR_INVALID && message_has("hf, trin or llama2c"));
    cp.from = "hf";
    cp.input = "/nonexistent";
    cp.output = "/nonexistent/out.gguf";
    cp.type = "q4_0";
    CHECK(trinity_convert(&cp) == TRINITY_ERR_INVALID && message_has("q4_0"));
    trinity_bench_params bp = trinity_bench_params_default();
    bp.n_decode = 0;
    CHECK(trinity_bench(model, &bp, stdout) == TRINITY_ERR_INVALID && message_has("n_decode"));
}

typedef struct {
    int tokens[256];
    int n;
} token_list;

static int collect_token(const char *piece, size_t len, int token, void *user) {
    (void)piece;
    (void)len;
    token_list *list = user;
    if (list->n < 256 && token >= 0) /* -1: text held to the end */
        list->tokens[list->n++] = token;
    return 0;
}

enum { SLOTS = 3, BATCH_CTX = 160, GENERATE = 12 };

/* Three sequences through one trinity_batch on a schedule a server would make, against sessions run alone. */
static void check_batch(trinity_model *model) {
    const int n_vocab = trinity_model_n_vocab(model), eos = trinity_token_eos(model);
    const char *prompts[SLOTS] = {"once upon a time there was a", "the cat",
                                  "a prompt long enough that with the other slots' tokens one call holds more than a "
                                  "batch of sixty-four: the quick brown fox jumps over the lazy dog, twice over, and "
                                  "then the lazy dog jumps over the quick brown fox"};
    token_list seq[SLOTS];
    int n_prompt[SLOTS], fed[SLOTS] = {0}, done[SLOTS] = {0};
    float *rows = calloc((size_t)SLOTS * BATCH_CTX * n_vocab, sizeof(float)); /* the logits each position got */
    unsigned char *have = calloc((size_t)SLOTS * BATCH_CTX, 1);
    float *out = malloc((size_t)(SLOTS + 1) * n_vocab * sizeof(float));
    trinity_batch_token *call = malloc(4 * BATCH_CTX * sizeof(*call));
    trinity_batch_params bp = trinity_batch_params_default();
    bp.n_slots = SLOTS;
    bp.n_ctx = BATCH_CTX;
    trinity_batch *batch = NULL;
    trinity_sampler *samplers[SLOTS] = {NULL};
    trinity_session_params sampled = trinity_session_params_default();
    sampled.temperature = 0.9f;
    sampled.seed = 5;
    trinity_session_params greedy = trinity_session_params_default();
    greedy.temperature = 0.0f;
    CHECK(rows && have && out && call && trinity_batch_new(model, &bp, &batch) == TRINITY_OK);
    for (int k = 0; k < SLOTS; k++) {
        CHECK(trinity_sampler_new(model, k == 2 ? &sampled : &greedy, &samplers[k]) == TRINITY_OK);
        CHECK(trinity_tokenize(model, prompts[k], strlen(prompts[k]), 1, seq[k].tokens, 256, &seq[k].n) == TRINITY_OK);
        n_prompt[k] = seq[k].n;
    }
    if (!batch || !rows || !have || !out || !call || !samplers[0] || !samplers[1] || !samplers[2])
        goto cleanup;
    CHECK(trinity_batch_n_slots(batch) == SLOTS && trinity_batch_n_ctx(batch) == BATCH_CTX);
    for (int step = 0; step < 64; step++) {
        int n = 0, wanted[SLOTS + 1], n_wanted = 0;
        for (int k = 0; k < SLOTS; k++) {
            if (done[k] || step < k) /* slot k starts at step k */
                continue;
            /* prompts in two pieces (slot 1: the first piece without logits), then one token per step */
            const int piece = fed[k] < n_prompt[k] ? (k == 1 && fed[k] == 0 ? n_prompt[k] / 2 : n_prompt[k] - fed[k]) : 1;
            for (int i = 0; i < piece; i++, fed[k]++) {
                const int last = fed[k] == seq[k].n - 1;
                call[n++] = (trinity_batch_token){seq[k].tokens[fed[k]], k, fed[k], last};
                if (last)
                    wanted[n_wanted++] = k;
            }
        }
        if (n == 0)
            break;
        if (step == 2)
            CHECK_MSG(n > 64, "step 2 holds %d tokens, meant to be more than one CPU batch", n);
        const trinity_status st = trinity_batch_decode(batch, call, n, out);
        CHECK_MSG(st == TRINITY_OK, "decode at step %d: %s", step, trinity_last_error());
        if (st != TRINITY_OK)
            break;
        for (int j = 0; j < n_wanted; j++) {
            const int k = wanted[j], pos = seq[k].n - 1;
            float *row = out + (size_t)j * n_vocab;
            memcpy(rows + ((size_t)k * BATCH_CTX + pos) * n_vocab, row, (size_t)n_vocab * sizeof(float));
            have[k * BATCH_CTX + pos] = 1;
            const int next = trinity_sampler_sample(samplers[k], row, seq[k].tokens, seq[k].n);
            if (next == eos || seq[k].n - n_prompt[k] == GENERATE)
                done[k] = 1;
            else
                seq[k].tokens[seq[k].n++] = next;
        }
    }
    /* each slot against a session fed its tokens alone: every row bitwise; the sampled slot's tokens as a session's */
    for (int k = 0; k < SLOTS; k++) {
        CHECK_MSG(done[k] && trinity_batch_n_past(batch, k) == seq[k].n, "slot %d: done %d, %d filled of %d", k,
                  done[k], trinity_batch_n_past(batch, k), seq[k].n);
        trinity_session_params sp = trinity_session_params_default();
        sp.n_ctx = BATCH_CTX;
        trinity_session *s = NULL;
        float *all = malloc((size_t)seq[k].n * n_vocab * sizeof(float));
        CHECK(all && trinity_session_new(model, &sp, &s) == TRINITY_OK &&
              trinity_session_feed(s, seq[k].tokens, seq[k].n, all) == TRINITY_OK);
        int rows_checked = 0, rows_equal = 0;
        for (int pos = 0; all && s && pos < seq[k].n; pos++)
            if (have[k * BATCH_CTX + pos]) {
                rows_checked++;
                rows_equal += memcmp(all + (size_t)pos * n_vocab, rows + ((size_t)k * BATCH_CTX + pos) * n_vocab,
                                     (size_t)n_vocab * sizeof(float)) == 0;
            }
        CHECK_MSG(rows_checked > 0 && rows_equal == rows_checked, "slot %d: %d of %d logit rows bitwise equal to the "
                  "session's", k, rows_equal, rows_checked);
        trinity_session_free(s);
        free(all);
    }
    {
        trinity_session_params sp = sampled;
        sp.n_ctx = BATCH_CTX;
        trinity_session *s = NULL;
        token_list gen = {{0}, 0};
        CHECK(trinity_session_new(model, &sp, &s) == TRINITY_OK &&
              trinity_session_feed(s, seq[2].tokens, n_prompt[2], NULL) == TRINITY_OK &&
              trinity_session_generate(s, GENERATE, collect_token, &gen, NULL) == TRINITY_OK);
        const int n_new = seq[2].n - n_prompt[2]; /* generated tokens kept (an EOS ended it early, not kept) */
        CHECK_MSG(gen.n >= n_new && memcmp(gen.tokens, seq[2].tokens + n_prompt[2], (size_t)n_new * sizeof(int)) == 0,
                  "the sampled slot's %d tokens differ from a session's %d", n_new, gen.n);
        trinity_session_free(s);
    }
    /* refusals: nothing runs, nothing is filled */
    const int past = trinity_batch_n_past(batch, 0);
    trinity_batch_token bad[2] = {{5, 0, past, 0}, {5, 0, past + 2, 0}}; /* a gap */
    CHECK(trinity_batch_decode(batch, bad, 2, NULL) == TRINITY_ERR_INVALID && trinity_batch_n_past(batch, 0) == past);
    bad[1] = (trinity_batch_token){5, SLOTS, 0, 0};
    CHECK(trinity_batch_decode(batch, bad, 2, NULL) == TRINITY_ERR_INVALID && message_has("slot"));
    bad[1] = (trinity_batch_token){n_vocab, 1, 0, 0};
    CHECK(trinity_batch_decode(batch, bad, 2, NULL) == TRINITY_ERR_INVALID && message_has("vocabulary"));
    bad[1] = (trinity_batch_token){5, 1, 0, 1};
    CHECK(trinity_batch_decode(batch, bad, 2, NULL) == TRINITY_ERR_INVALID && trinity_batch_n_past(batch, 0) == past);
    trinity_batch_clear(batch, 0);
    CHECK(trinity_batch_n_past(batch, 0) == 0);
cleanup:
    for (int k = 0; k < SLOTS; k++)
        trinity_sampler_free(samplers[k]);
    trinity_batch_free(batch);
    free(rows);
    free(have);
    free(out);
    free(call);
}

int main(void) {
    trinity_model_params mp = trinity_model_params_default();
    mp.device = TRINITY_DEVICE_CPU;
    mp.n_threads = 1;
    trinity_model *model = NULL;
    CHECK(trinity_model_open("synthetic:tiny", &mp, &model) == TRINITY_OK);
    if (!model)
        return test_finish("test_api");

    /* alone, then two sessions on two threads at once */
    job alone_a = {model, "once upon a time", {0}, 0, 0}, alone_b = {model, "the cat sat", {0}, 0, 0};
    run_job(&alone_a);
    run_job(&alone_b);
    CHECK(alone_a.status == TRINITY_OK && alone_b.status == TRINITY_OK && alone_a.len > 0);
    job a = alone_a, b = alone_b;
    pthread_t ta, tb;
    CHECK(pthread_create(&ta, NULL, run_job, &a) == 0 && pthread_create(&tb, NULL, run_job, &b) == 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK(a.status == TRINITY_OK && b.status == TRINITY_OK);
    CHECK_MSG(a.len == alone_a.len && memcmp(a.text, alone_a.text, a.len) == 0, "thread A's text differs");
    CHECK_MSG(b.len == alone_b.len && memcmp(b.text, alone_b.text, b.len) == 0, "thread B's text differs");

    /* feeding in pieces = feeding at once; generating 10 + 14 = generating 24 */
    const int n_vocab = trinity_model_n_vocab(model);
    int ids[64], n_ids = 0;
    CHECK(trinity_tokenize(model, "once upon a time", 16, 1, ids, 64, &n_ids) == TRINITY_OK && n_ids > 3);
    trinity_session *s1 = NULL, *s2 = NULL;
    trinity_session_params sp = trinity_session_params_default();
    sp.temperature = 0.7f;
    sp.seed = 11;
    CHECK(trinity_session_new(model, &sp, &s1) == TRINITY_OK && trinity_session_new(model, &sp, &s2) == TRINITY_OK);
    if (s1 && s2) {
        CHECK(trinity_session_feed(s1, ids, n_ids, NULL) == TRINITY_OK);
        CHECK(trinity_session_feed(s2, ids, 2, NULL) == TRINITY_OK &&
              trinity_session_feed(s2, ids + 2, n_ids - 2, NULL) == TRINITY_OK);
        const float *l1 = trinity_session_logits(s1), *l2 = trinity_session_logits(s2);
        CHECK(l1 && l2 && memcmp(l1, l2, (size_t)n_vocab * sizeof(float)) == 0);
        job whole = {model, "", {0}, 0, 0}, split = {model, "", {0}, 0, 0};
        CHECK(trinity_session_generate(s1, N_NEW, append, &whole, NULL) == TRINITY_OK);
        CHECK(trinity_session_generate(s2, 10, append, &split, NULL) == TRINITY_OK &&
              trinity_session_generate(s2, N_NEW - 10, append, &split, NULL) == TRINITY_OK);
        CHECK_MSG(whole.len == split.len && memcmp(whole.text, split.text, whole.len) == 0,
                  "10 + 14 tokens differ from 24");
        CHECK(whole.len == alone_a.len && memcmp(whole.text, alone_a.text, whole.len) == 0);
        /* past the context, and ids outside the vocabulary: refused, nothing run */
        const int past = trinity_session_n_past(s1);
        CHECK(trinity_session_generate(s1, trinity_session_n_ctx(s1), NULL, NULL, NULL) == TRINITY_ERR_INVALID);
        CHECK(message_has("context"));
        const int bad[2] = {5, n_vocab};
        CHECK(trinity_session_feed(s1, bad, 2, NULL) == TRINITY_ERR_INVALID && message_has("vocabulary"));
        CHECK(trinity_session_n_past(s1) == past);
        trinity_session_reset(s1);
        CHECK(trinity_session_n_past(s1) == 0 && trinity_session_logits(s1) == NULL);
        CHECK(trinity_session_generate(s1, 1, NULL, NULL, NULL) == TRINITY_ERR_INVALID && message_has("feed"));
    }
    trinity_session_free(s1);
    trinity_session_free(s2);

    /* an older, shorter params struct: the fields it lacks take their defaults */
    trinity_session_params old = trinity_session_params_default();
    old.size = offsetof(trinity_session_params, temperature);
    old.n_ctx = 32;
    old.temperature = -5.0f; /* past the old struct's end: must be ignored */
    trinity_session *s3 = NULL;
    CHECK(trinity_session_new(model, &old, &s3) == TRINITY_OK && s3 && trinity_session_n_ctx(s3) == 32);
    trinity_session_free(s3);
    trinity_session_params none = trinity_session_params_default();
    none.size = 0;
    CHECK(trinity_session_new(model, &none, &s3) == TRINITY_ERR_INVALID && message_has("size"));
    check_model_info(model);
    trinity_model_free(model);
    mp.n_threads = 2; /* the batch on two threads */
    model = NULL;
    CHECK(trinity_model_open("synthetic:tiny", &mp, &model) == TRINITY_OK);
    if (model) {
        check_batch(model);
        setenv("TRN_BATCH_PER_SLOT", "1", 1); /* the path of a device without a batched decode (the GPU's) */
        check_batch(model);
        unsetenv("TRN_BATCH_PER_SLOT");
    }
    trinity_model_free(model);

    /* a vocabulary alone: tokenizes, runs no session */
    mp.vocab_only = 1;
    CHECK(trinity_model_open("synthetic:tiny", &mp, &model) == TRINITY_OK);
    int n2 = 0;
    CHECK(model && trinity_tokenize(model, "once upon a time", 16, 1, ids, 64, &n2) == TRINITY_OK && n2 == n_ids);
    CHECK(model && trinity_tokenize(model, "once upon a time", 16, 1, ids, 2, &n2) == TRINITY_ERR_INVALID &&
          n2 == n_ids);
    CHECK(model && trinity_session_new(model, NULL, &s3) == TRINITY_ERR_INVALID && message_has("vocab"));
    trinity_model_info vinfo = {.size = sizeof(vinfo)};
    CHECK(model && trinity_model_get_info(model, &vinfo) == TRINITY_ERR_INVALID && message_has("vocab"));
    char name[64];
    CHECK(model && trinity_model_meta_string(model, "tokenizer.ggml.model", name, sizeof(name), NULL) == TRINITY_OK &&
          strcmp(name, "llama") == 0);
    trinity_model_free(model);
    model = NULL;
    CHECK(trinity_model_open("/nonexistent/model.gguf", NULL, &model) == TRINITY_ERR_IO && model == NULL);
    CHECK(message_has("/nonexistent/model.gguf") && strchr(trinity_last_error(), '\n') == NULL);
    char version[32];
    snprintf(version, sizeof(version), "%d.%d.%d", TRINITY_VERSION_MAJOR, TRINITY_VERSION_MINOR, TRINITY_VERSION_PATCH);
    CHECK(strcmp(trinity_version(), version) == 0 && strcmp(version, "0.3.0") == 0);
    return test_finish("test_api");
}
