/* fuzz_server.c: libFuzzer target for what `trinity serve` does with a client's bytes, short of HTTP and the model's
 * forward pass: the request JSON checked and its prompt rendered and tokenized (server_request.c, on the synthetic
 * "tiny" model), then a completion made of token ids from the input streamed through the server's text path
 * (server_text.c: UTF-8 decoding, the hold-back of text that could begin a stop string), and both replies' JSON
 * string literals. Properties checked (abort on a violation, so the fuzzer reports it):
 *   - a refused request has status 400 or 500 and a one-line, non-empty, valid UTF-8 message (it goes into JSON);
 *   - an accepted one has 1 <= n_prompt < n_ctx token ids in the vocabulary, at most 4 non-empty UTF-8 stop
 *     strings, a sampler the API accepts;
 *   - the streamed text is valid UTF-8 (NUL included) and equals the reference: the pieces decoded at once, cut before the
 *     earliest stop string in the text as it stood after the first piece that completed one (the server stops
 *     there; a piece that completes two stops cuts at the earlier start);
 *   - the text and the error message written as JSON string literals parse back (cJSON) to the same bytes.
 * Input: byte 0 flags (bit 0: chat request; bits 1-2: chat format; bits 3-5: slot context 8 << k), bytes 1-2 the
 * body's length (little endian, clipped), the body, then the completion's token ids as 16-bit little-endian
 * numbers modulo the vocabulary (at most 512). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "fuzz_util.h"
#include "host/server_request.h"
#include "host/server_text.h"
#include "host/trinity.h"

static trinity_model *model;

static void init_once(void) {
    if (model)
        return;
    trinity_model_params mp = trinity_model_params_default();
    mp.device = TRINITY_DEVICE_CPU;
    mp.n_threads = 1;
    mp.vocab_only = 1; /* tokenizing and pieces only */
    if (trinity_model_open("synthetic:tiny", &mp, &model) != TRINITY_OK) {
        fprintf(stderr, "fuzz_server: cannot open the synthetic tiny model: %s\n", trinity_last_error());
        abort();
    }
}

static void fail(const char *what) {
    fprintf(stderr, "fuzz_server: %s\n", what);
    abort();
}

/* text[0..n) written as a JSON string literal must parse back to the same bytes (up to a NUL: cJSON strings end
 * there). */
static void check_json_round_trip(const char *text, size_t n) {
    trn_strbuf literal = {0};
    trn_sb_add_json_string(&literal, text, n);
    if (literal.failed)
        fail("out of memory writing a JSON string");
    cJSON *parsed = cJSON_ParseWithLength(literal.data, literal.len);
    if (!cJSON_IsString(parsed))
        fail("a JSON string literal did not parse");
    const size_t upto = strnlen(text, n);
    if (strlen(parsed->valuestring) != upto || memcmp(parsed->valuestring, text, upto) != 0)
        fail("a JSON string literal parsed to other bytes");
    cJSON_Delete(parsed);
    trn_sb_free(&literal);
}

static void check_refusal(const trn_request_error *e) {
    if (e->status != 400 && e->status != 500)
        fail("a refusal with a status other than 400 or 500");
    const size_t n = strlen(e->message);
    if (n == 0 || memchr(e->message, '\n', n))
        fail("a refusal whose message is empty or more than one line");
    size_t bad = 0;
    if (!trinity_utf8_valid(e->message, n, &bad))
        fail("a refusal whose message is not UTF-8 (it goes into the reply's JSON)");
    check_json_round_trip(e->message, n);
}

/* The earliest start of any stop string in text[0..n), or -1. */
static long earliest_stop(const trn_request *r, const char *text, size_t n) {
    long at = -1;
    for (int k = 0; k < r->n_stops; k++) {
        const long s = trn_find_bytes(text, n, r->stops[k], r->stop_lens[k]);
        if (s >= 0 && (at < 0 || s < at))
            at = s;
    }
    return at;
}

/* Streams the completion ids[0..n) as the scheduler does (piece, decoder, hold-back, at the end the decoder's tail)
 * and compares with the reference computed beside it from the whole decoded text. */
static void check_stream(const trn_request *r, const int *ids, int n) {
    trn_utf8_decoder stream_decoder = {{0}, 0}, whole_decoder = {{0}, 0};
    trn_strbuf held = {0}, out = {0}, whole = {0};
    int prev = r->prompt[r->n_prompt - 1], stopped = 0;
    long expected_cut = -1; /* where the reference cuts `whole`; -1: not cut */
    for (int i = 0; i < n && !stopped; i++) {
        char piece[256];
        size_t len = trinity_token_piece(model, prev, ids[i], piece, sizeof(piece));
        if (len > sizeof(piece))
            fail("a piece of more than 256 bytes from the tiny vocabulary");
        prev = ids[i];
        trn_utf8_decode(&stream_decoder, piece, len, &held);
        stopped = trn_stop_release(&held, &out, r->stops, r->stop_lens, r->n_stops, 0);
        trn_utf8_decode(&whole_decoder, piece, len, &whole);
        expected_cut = earliest_stop(r, whole.data, whole.len);
        if (stopped != (expected_cut >= 0))
            fail("the stream and the reference disagree on the piece that completes a stop string");
    }
    if (!stopped) {
        trn_utf8_finish(&stream_decoder, &held);
        stopped = trn_stop_release(&held, &out, r->stops, r->stop_lens, r->n_stops, 1);
        trn_utf8_finish(&whole_decoder, &whole);
        expected_cut = earliest_stop(r, whole.data, whole.len);
        if (stopped != (expected_cut >= 0))
            fail("the stream and the reference disagree on a stop string at the end");
    }
    const size_t expected_len = expected_cut >= 0 ? (size_t)expected_cut : whole.len;
    if (held.failed || out.failed || whole.failed)
        fail("out of memory streaming a completion");
    if (out.len != expected_len || (expected_len && memcmp(out.data, whole.data, expected_len) != 0))
        fail("the streamed text differs from the reference");
    if (!stopped && held.len != 0)
        fail("text held back at the end of a completion");
    /* UTF-8, where U+0000 (a byte token's NUL, sent as \u0000) counts as a character: trinity_utf8_valid refuses it */
    char *no_nul = malloc(out.len + 1);
    if (!no_nul)
        fail("out of memory checking a completion");
    for (size_t i = 0; i < out.len; i++)
        no_nul[i] = out.data[i] ? out.data[i] : ' ';
    size_t bad = 0;
    const int valid = trinity_utf8_valid(no_nul, out.len, &bad);
    free(no_nul);
    if (!valid) {
        fprintf(stderr, "fuzz_server: byte %zu of %zu:", bad, out.len);
        for (size_t i = bad > 8 ? bad - 8 : 0; i < out.len && i < bad + 8; i++)
            fprintf(stderr, " %02x", (unsigned char)out.data[i]);
        fprintf(stderr, "\n");
        fail("the streamed text is not UTF-8");
    }
    check_json_round_trip(out.data ? out.data : "", out.len);
    trn_sb_free(&held);
    trn_sb_free(&out);
    trn_sb_free(&whole);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init_once();
    if (size < 3)
        return 0;
    const int chat = data[0] & 1;
    const trn_chat_format format = (trn_chat_format)(((data[0] >> 1) & 3) % 3);
    const trn_request_context context = {model, format, 8 << ((data[0] >> 3) & 7)};
    size_t body_len = (size_t)data[1] | (size_t)data[2] << 8;
    if (body_len > size - 3)
        body_len = size - 3;
    const char *body = (const char *)data + 3;

    trn_request r;
    trn_request_error e = {0, "", NULL};
    if (!trn_request_parse(&context, body, body_len, chat, &r, &e)) {
        check_refusal(&e);
        fuzz_log("server: refused (%u): %s", e.status, e.message);
        return 0;
    }
    const int n_vocab = trinity_model_n_vocab(model);
    if (r.n_prompt < 1 || r.n_prompt >= context.n_ctx)
        fail("an accepted prompt of no tokens or of at least the slot's context");
    for (int i = 0; i < r.n_prompt; i++)
        if (r.prompt[i] < 0 || r.prompt[i] >= n_vocab)
            fail("a prompt token outside the vocabulary");
    if (r.n_stops < 0 || r.n_stops > TRN_MAX_STOPS)
        fail("more stop strings than allowed");
    for (int k = 0; k < r.n_stops; k++) {
        size_t bad = 0;
        if (r.stop_lens[k] == 0 || r.stop_lens[k] != strlen(r.stops[k]) ||
            !trinity_utf8_valid(r.stops[k], r.stop_lens[k], &bad))
            fail("an empty or ill-formed stop string accepted");
    }
    trinity_sampler *sampler = NULL;
    if (trinity_sampler_new(model, &r.sampling, &sampler) != TRINITY_OK)
        fail("the API refused the sampling settings of an accepted request");
    trinity_sampler_free(sampler);

    const uint8_t *rest = data + 3 + body_len;
    int n = (int)((size - 3 - body_len) / 2);
    if (n > 512)
        n = 512;
    int *ids = malloc((size_t)(n ? n : 1) * sizeof(int));
    if (!ids)
        fail("out of memory for the completion's ids");
    for (int i = 0; i < n; i++)
        ids[i] = (int)(((unsigned)rest[2 * i] | (unsigned)rest[2 * i + 1] << 8) % (unsigned)n_vocab);
    check_stream(&r, ids, n);
    fuzz_log("server: accepted, %d prompt tokens, %d stops, %d completion ids", r.n_prompt, r.n_stops, n);
    free(ids);
    trn_request_free(&r);
    return 0;
}
