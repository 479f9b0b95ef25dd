/* test_tokenizer.c: tests of the SentencePiece tokenizer (host/tokenizer.c): llama.cpp's 46 LLaMA
 * vocabulary test vectors and their decode round trip, the stories260K vocabulary, and data-independent
 * tests on tiny vocabularies built in memory (merge order, byte fallback, decoding, the UTF-8 text stream
 * and malformed vocabularies). */
#define _GNU_SOURCE /* open_memstream, fopencookie */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/gguf.h"
#include "host/tokenizer.h"
#include "tests/test_util.h"

/* ---- helpers -------------------------------------------------------------------------------------- */

/* Decodes ids as a text would print them (prev -1 for the first); malloc'd, NUL-terminated. */
static char *decode_all(const trn_tokenizer *tok, const int *ids, int n, size_t *out_len) {
    size_t cap = 64, len = 0;
    char *s = malloc(cap);
    for (int i = 0; i < n; i++) {
        int prev = i == 0 ? -1 : ids[i - 1];
        size_t need = trn_tokenizer_decode(tok, prev, ids[i], NULL, 0);
        while (len + need + 1 > cap) {
            cap *= 2;
            s = realloc(s, cap);
        }
        size_t got = trn_tokenizer_decode(tok, prev, ids[i], s + len, need);
        if (got != need) {
            fprintf(stderr, "decode length changed: %zu then %zu\n", need, got);
            test_failures++;
        }
        len += got;
    }
    s[len] = 0;
    if (out_len)
        *out_len = len;
    return s;
}

static int ids_equal(const int *a, int na, const int *b, int nb) {
    return na == nb && (na == 0 || memcmp(a, b, (size_t)na * sizeof(int)) == 0);
}

static void print_ids(const char *label, const int *ids, int n) {
    fprintf(stderr, "  %s:", label);
    for (int i = 0; i < n; i++)
        fprintf(stderr, " %d", ids[i]);
    fputc('\n', stderr);
}

/* Encodes a NUL-terminated string and compares with the expected ids. */
static void check_encode(const trn_tokenizer *tok, const char *text, int add_bos, const int *want, int n_want) {
    int *ids = NULL, n = 0;
    trn_status st = trn_tokenizer_encode(tok, text, strlen(text), add_bos, &ids, &n);
    CHECK_MSG(st == TRN_OK, "encode '%s': %s", text, trn_last_error());
    if (st != TRN_OK)
        return;
    int ok = ids_equal(ids, n, want, n_want);
    CHECK_MSG(ok, "encode '%s' gave unexpected ids", text);
    if (!ok) {
        print_ids("got", ids, n);
        print_ids("want", want, n_want);
    }
    free(ids);
}

static void check_decode(const trn_tokenizer *tok, int prev, int id, const char *want) {
    char buf[64];
    size_t n = trn_tokenizer_decode(tok, prev, id, buf, sizeof(buf));
    int ok = n == strlen(want) && memcmp(buf, want, n) == 0;
    CHECK_MSG(ok, "decode(prev %d, id %d '%s') gave '%.*s', want '%s'", prev, id, trn_tokenizer_piece(tok, id),
              (int)TRN_MIN(n, sizeof(buf)), buf, want);
}

/* ---- llama.cpp test vectors ----------------------------------------------------------------------- */

#define SEPARATOR "\n__ggml_vocab_test__\n"

static int test_vectors(void) {
    const char *gguf_path = test_data_path("vocab/ggml-vocab-llama-spm.gguf");
    const char *inp_path = test_data_path("vocab/ggml-vocab-llama-spm.gguf.inp");
    const char *out_path = test_data_path("vocab/ggml-vocab-llama-spm.gguf.out");
    if (!gguf_path || !inp_path || !out_path) {
        printf("test_tokenizer: SKIPPED the llama-spm vector test (vocab/ test data not found)\n");
        return 0;
    }
    trn_gguf *g = NULL;
    trn_status st = trn_gguf_open(gguf_path, &g);
    CHECK_MSG(st == TRN_OK, "%s", trn_last_error());
    if (st != TRN_OK)
        return 0;
    trn_tokenizer *tok = NULL;
    st = trn_tokenizer_from_gguf(g, &tok);
    CHECK_MSG(st == TRN_OK, "%s", trn_last_error());
    if (st != TRN_OK) {
        trn_gguf_close(g);
        return 0;
    }
    CHECK(trn_tokenizer_n_vocab(tok) == 32000);
    CHECK(trn_tokenizer_bos(tok) == 1);
    CHECK(trn_tokenizer_eos(tok) == 2);
    CHECK(strcmp(trn_tokenizer_piece(tok, 15043), "\xe2\x96\x81Hello") == 0);
    CHECK(trn_tokenizer_type(tok, 1) == TRN_TOKEN_CONTROL);
    CHECK(trn_tokenizer_type(tok, 13) == TRN_TOKEN_BYTE);
    CHECK(trn_tokenizer_type(tok, 15043) == TRN_TOKEN_NORMAL);

    size_t inp_len = 0, out_len = 0;
    char *inp = test_read_file(inp_path, &inp_len);
    char *out = test_read_file(out_path, &out_len);
    CHECK(inp && out);
    int n_cases = 0, n_passed = 0, n_round_trip = 0;
    const char *in_pos = inp, *out_pos = out;
    while (inp && out && in_pos < inp + inp_len) {
        const char *sep = strstr(in_pos, SEPARATOR);
        if (!sep)
            break;
        size_t text_len = (size_t)(sep - in_pos);
        const char *line_end = strchr(out_pos, '\n');
        if (!line_end)
            line_end = out_pos + strlen(out_pos);

        int want[1024], n_want = 0;
        for (const char *p = out_pos; p < line_end && n_want < 1024;) {
            char *endp;
            long v = strtol(p, &endp, 10);
            if (endp == p)
                break;
            want[n_want++] = (int)v;
            p = endp;
        }

        int *ids = NULL, n = 0;
        st = trn_tokenizer_encode(tok, in_pos, text_len, 0, &ids, &n);
        CHECK_MSG(st == TRN_OK, "case %d: %s", n_cases, trn_last_error());
        int ok = st == TRN_OK && ids_equal(ids, n, want, n_want);
        CHECK_MSG(ok, "case %d ('%.*s') gave unexpected ids", n_cases, (int)text_len, in_pos);
        if (!ok && st == TRN_OK) {
            print_ids("got", ids, n);
            print_ids("want", want, n_want);
        }
        n_passed += ok;

        /* decode(encode(text)) == text: the decoder drops exactly the dummy-prefix space. */
        size_t dec_len = 0;
        char *dec = decode_all(tok, ids, n, &dec_len);
        int rt = dec_len == text_len && memcmp(dec, in_pos, text_len) == 0;
        CHECK_MSG(rt, "case %d: decode gave '%s' for '%.*s'", n_cases, dec, (int)text_len, in_pos);
        n_round_trip += rt;
        free(dec);

        /* With BOS: the same ids after a leading BOS, and the same decoded text. */
        int *bos_ids = NULL, n_bos = 0;
        st = trn_tokenizer_encode(tok, in_pos, text_len, 1, &bos_ids, &n_bos);
        CHECK(st == TRN_OK && n_bos == n + 1 && bos_ids[0] == 1 && ids_equal(bos_ids + 1, n_bos - 1, ids, n));
        if (st == TRN_OK) {
            dec = decode_all(tok, bos_ids, n_bos, &dec_len);
            CHECK_MSG(dec_len == text_len && memcmp(dec, in_pos, text_len) == 0, "case %d: decode after BOS gave '%s'",
                      n_cases, dec);
            free(dec);
        }
        free(bos_ids);
        free(ids);

        n_cases++;
        in_pos = sep + strlen(SEPARATOR);
        out_pos = *line_end ? line_end + 1 : line_end;
    }
    CHECK_MSG(n_cases == 46, "read %d cases, expected 46", n_cases);
    printf("test_tokenizer: llama-spm vectors: %d/%d encoded exactly, %d/%d round-trip\n", n_passed, n_cases,
           n_round_trip, n_cases);

    /* A long prompt: the merge is O(n log n), and the result is the same as encoding its pieces. */
    {
        const char *unit = "Hello, world! The quick brown fox jumps over the lazy dog. ";
        size_t unit_len = strlen(unit);
        int reps = 5000;
        char *big = malloc(unit_len * (size_t)reps + 1);
        for (int r = 0; r < reps; r++)
            memcpy(big + (size_t)r * unit_len, unit, unit_len);
        big[unit_len * (size_t)reps] = 0;
        int *ids = NULL, n = 0;
        double t0 = trn_time_s();
        st = trn_tokenizer_encode(tok, big, unit_len * (size_t)reps, 0, &ids, &n);
        double dt = trn_time_s() - t0;
        CHECK(st == TRN_OK);
        if (st == TRN_OK) {
            size_t dec_len = 0;
            char *dec = decode_all(tok, ids, n, &dec_len);
            CHECK(dec_len == unit_len * (size_t)reps && memcmp(dec, big, dec_len) == 0);
            free(dec);
            printf("test_tokenizer: encoded %zu bytes into %d tokens in %.3f s\n", unit_len * (size_t)reps, n, dt);
        }
        free(ids);
        /* A run of one character (many equal-score candidates). */
        memset(big, 'a', 200000);
        st = trn_tokenizer_encode(tok, big, 200000, 0, &ids, &n);
        CHECK(st == TRN_OK);
        if (st == TRN_OK) {
            size_t dec_len = 0;
            char *dec = decode_all(tok, ids, n, &dec_len);
            CHECK(dec_len == 200000 && memcmp(dec, big, dec_len) == 0);
            free(dec);
        }
        free(ids);
        free(big);
    }

    /* Invalid UTF-8 goes through byte fallback and still round-trips. */
    {
        const char bad[] = "a\xC3(b\xE2\x82 \xF0\x9F\x98\x80\xFF\xC0\x80z\xE2";
        int *ids = NULL, n = 0;
        st = trn_tokenizer_encode(tok, bad, sizeof(bad) - 1, 0, &ids, &n);
        CHECK(st == TRN_OK);
        if (st == TRN_OK) {
            size_t dec_len = 0;
            char *dec = decode_all(tok, ids, n, &dec_len);
            CHECK(dec_len == sizeof(bad) - 1 && memcmp(dec, bad, dec_len) == 0);
            free(dec);
            /* The lone 0xC3 is <0xC3> (id 3 + 0xC3), not merged with '('. */
            int found = 0;
            for (int i = 0; i < n; i++)
                found |= ids[i] == 3 + 0xC3;
            CHECK(found);
        }
        free(ids);
    }

    free(inp);
    free(out);
    trn_tokenizer_free(tok);
    trn_gguf_close(g);
    return 1;
}

/* ---- stories260K ---------------------------------------------------------------------------------- */

static int test_stories(void) {
    const char *path = test_data_path("stories260K/stories260K.gguf");
    if (!path) {
        printf("test_tokenizer: SKIPPED the stories260K test (test data not found)\n");
        return 0;
    }
    trn_gguf *g = NULL;
    trn_status st = trn_gguf_open(path, &g);
    CHECK_MSG(st == TRN_OK, "%s", trn_last_error());
    if (st != TRN_OK)
        return 0;
    trn_tokenizer *tok = NULL;
    st = trn_tokenizer_from_gguf(g, &tok);
    CHECK_MSG(st == TRN_OK, "%s", trn_last_error());
    if (st == TRN_OK) {
        CHECK(trn_tokenizer_n_vocab(tok) == 512);
        CHECK(trn_tokenizer_bos(tok) == 1);
        CHECK(trn_tokenizer_eos(tok) == 2);
        CHECK(trn_tokenizer_type(tok, 0) == TRN_TOKEN_UNKNOWN);
        CHECK(trn_tokenizer_type(tok, 3) == TRN_TOKEN_BYTE);
        CHECK(trn_tokenizer_type(tok, 300) == TRN_TOKEN_NORMAL);
        check_decode(tok, 5, 3 + 'A', "A");
        check_decode(tok, 5, 1, "");

        const char *texts[] = {"Once upon a time", "Once upon a time, there was a little girl named Lily."};
        for (size_t t = 0; t < TRN_ARRAY_LEN(texts); t++) {
            int *ids = NULL, n = 0;
            st = trn_tokenizer_encode(tok, texts[t], strlen(texts[t]), 1, &ids, &n);
            CHECK(st == TRN_OK);
            if (st != TRN_OK)
                continue;
            CHECK(n >= 2 && ids[0] == 1);
            int fallback = 0;
            for (int i = 1; i < n; i++)
                fallback |= ids[i] < 259;
            CHECK_MSG(!fallback, "'%s' used byte fallback", texts[t]);
            size_t dec_len = 0;
            char *dec = decode_all(tok, ids, n, &dec_len);
            CHECK_MSG(strcmp(dec, texts[t]) == 0, "round trip gave '%s'", dec);
            if (t == 0) {
                fprintf(stdout, "test_tokenizer: stories260K 'Once upon a time' ->");
                for (int i = 0; i < n; i++)
                    fprintf(stdout, " %d", ids[i]);
                fputc('\n', stdout);
            }
            free(dec);
            free(ids);
        }
        trn_tokenizer_free(tok);
    }
    trn_gguf_close(g);
    return 1;
}

/* ---- tiny in-memory vocabularies ------------------------------------------------------------------ */

#define SP "\xe2\x96\x81"

typedef struct {
    const char *pieces[300];
    float scores[300];
    int32_t types[300];
    int n;
} vocab_spec;

static int add_piece(vocab_spec *v, const char *piece, float score, int32_t type) {
    v->pieces[v->n] = piece;
    v->scores[v->n] = score;
    v->types[v->n] = type;
    return v->n++;
}

/* Builds a GGUF image from the spec; n_scores / n_types of -1 mean "same as tokens", 0 means "absent". */
static trn_status open_vocab(const vocab_spec *v, int n_scores, int n_types, const char *model, int bos,
                             trn_gguf **out) {
    trn_gguf_writer *w = trn_gguf_writer_new();
    trn_gguf_set_string(w, "general.architecture", "llama");
    if (model)
        trn_gguf_set_string(w, "tokenizer.ggml.model", model);
    trn_gguf_set_string_array(w, "tokenizer.ggml.tokens", v->pieces, (uint64_t)v->n);
    if (n_scores != 0)
        trn_gguf_set_array(w, "tokenizer.ggml.scores", TRN_GGUF_F32, v->scores, (uint64_t)(n_scores < 0 ? v->n : n_scores));
    if (n_types != 0)
        trn_gguf_set_array(w, "tokenizer.ggml.token_type", TRN_GGUF_I32, v->types,
                           (uint64_t)(n_types < 0 ? v->n : n_types));
    trn_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
    trn_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    trn_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    void *data = NULL;
    size_t size = 0;
    trn_status st = trn_gguf_write_memory(w, &data, &size);
    trn_gguf_writer_free(w);
    if (st != TRN_OK)
        return st;
    return trn_gguf_open_memory(data, size, 1, "tiny", out);
}

static char byte_names[256][8];

static void tiny_vocab(vocab_spec *v, int with_bytes) {
    v->n = 0;
    add_piece(v, "<unk>", 0, TRN_TOKEN_UNKNOWN);
    add_piece(v, "<s>", 0, TRN_TOKEN_CONTROL);
    add_piece(v, "</s>", 0, TRN_TOKEN_CONTROL);
    if (with_bytes) {
        for (int b = 0; b < 256; b++) {
            snprintf(byte_names[b], sizeof(byte_names[b]), "<0x%02X>", b);
            add_piece(v, byte_names[b], 0, TRN_TOKEN_BYTE);
        }
    }
}

static void test_tiny(void) {
    vocab_spec v;
    tiny_vocab(&v, 1);
    int sp = add_piece(&v, SP, -1, TRN_TOKEN_NORMAL);
    int h = add_piece(&v, "h", -1, TRN_TOKEN_NORMAL);
    int e = add_piece(&v, "e", -1, TRN_TOKEN_NORMAL);
    int l = add_piece(&v, "l", -1, TRN_TOKEN_NORMAL);
    int o = add_piece(&v, "o", -1, TRN_TOKEN_NORMAL);
    int sp_h = add_piece(&v, SP "h", -5, TRN_TOKEN_NORMAL);
    int he = add_piece(&v, "he", -2, TRN_TOKEN_NORMAL);
    int sp_he = add_piece(&v, SP "he", -3, TRN_TOKEN_NORMAL);
    int ll = add_piece(&v, "ll", -4, TRN_TOKEN_NORMAL);
    int llo = add_piece(&v, "llo", -6, TRN_TOKEN_NORMAL);
    int dup_h = add_piece(&v, "h", 5, TRN_TOKEN_NORMAL); /* a duplicate: lookups keep the lower id */
    int sp_sp = add_piece(&v, SP SP, -7, TRN_TOKEN_NORMAL);
    int unused = add_piece(&v, "zz", -1, TRN_TOKEN_UNUSED);
    int user = add_piece(&v, SP "x" SP, -1, TRN_TOKEN_USER_DEFINED);
    (void)sp_h;
    (void)dup_h;

    trn_gguf *g = NULL;
    trn_status st = open_vocab(&v, -1, -1, "llama", 1, &g);
    CHECK_MSG(st == TRN_OK, "%s", trn_last_error());
    if (st != TRN_OK)
        return;
    trn_tokenizer *tok = NULL;
    st = trn_tokenizer_from_gguf(g, &tok);
    CHECK_MSG(st == TRN_OK, "%s", trn_last_error());
    if (st != TRN_OK) {
        trn_gguf_close(g);
        return;
    }
    CHECK(trn_tokenizer_n_vocab(tok) == v.n);
    CHECK(trn_tokenizer_bos(tok) == 1 && trn_tokenizer_eos(tok) == 2);
    CHECK(strcmp(trn_tokenizer_piece(tok, he), "he") == 0);
    CHECK(strcmp(trn_tokenizer_piece(tok, 3 + 0x41), "<0x41>") == 0);
    CHECK(trn_tokenizer_type(tok, 3) == TRN_TOKEN_BYTE);
    CHECK(trn_tokenizer_type(tok, user) == TRN_TOKEN_USER_DEFINED);
    CHECK(strcmp(trn_tokenizer_piece(tok, -1), "") == 0);

    /* "▁hello": he (-2) first, then ▁he (-3) beats ▁h (-5, now stale), then ll (-4), then llo (-6). */
    check_encode(tok, "hello", 0, (int[]){sp_he, llo}, 2);
    check_encode(tok, "hello", 1, (int[]){1, sp_he, llo}, 3);
    /* "▁lll": two equal-score "ll" candidates; the leftmost merges. */
    check_encode(tok, "lll", 0, (int[]){sp, ll, l}, 3);
    /* "▁h": ▁h is the only merge; the duplicate "h" piece never shadows the first. */
    check_encode(tok, "h", 0, (int[]){sp_h}, 1);
    check_encode(tok, "oh", 0, (int[]){sp, o, h}, 3);
    /* Byte fallback: é is not a piece, so its two bytes are emitted. */
    check_encode(tok, "\xc3\xa9", 0, (int[]){sp, 3 + 0xC3, 3 + 0xA9}, 3);
    check_encode(tok, "e\xc3\xa9o", 0, (int[]){sp, e, 3 + 0xC3, 3 + 0xA9, o}, 5);
    /* Spaces become ▁ and merge like any character: "▁▁h" -> ▁ + ▁h (▁h -5 beats ▁▁ -7). */
    check_encode(tok, " h", 0, (int[]){sp, sp_h}, 2);
    check_encode(tok, "  ", 0, (int[]){sp_sp, sp}, 2);
    /* Empty text: nothing, or only BOS. */
    check_encode(tok, "", 0, NULL, 0);
    check_encode(tok, "", 1, (int[]){1}, 1);
    /* Characters unknown even as bytes are impossible here; invalid UTF-8 becomes single bytes. */
    check_encode(tok, "\xc3h", 0, (int[]){sp, 3 + 0xC3, h}, 3);

    /* Decoding. */
    check_decode(tok, -1, sp_he, "he");
    check_decode(tok, 1, sp_he, "he");
    check_decode(tok, he, sp_he, " he");
    check_decode(tok, -1, sp_sp, " ");
    check_decode(tok, 7, sp_sp, "  ");
    check_decode(tok, -1, he, "he");
    check_decode(tok, -1, 3 + 0x20, " "); /* a byte piece is never stripped */
    check_decode(tok, 7, 3 + 0xC3, "\xc3");
    {
        char nul[2] = {'#', '#'};
        CHECK(trn_tokenizer_decode(tok, 7, 3 + 0x00, nul, 2) == 1 && nul[0] == 0 && nul[1] == '#');
    }
    check_decode(tok, 7, 1, "");          /* control */
    check_decode(tok, 7, 2, "");
    check_decode(tok, 7, unused, "");
    check_decode(tok, 7, 0, "<unk>");
    check_decode(tok, 7, user, " x ");
    check_decode(tok, 7, -5, "");
    check_decode(tok, 7, v.n, "");
    /* The returned length is the full piece; nothing past cap is written. */
    {
        char buf[4] = {'#', '#', '#', '#'};
        CHECK(trn_tokenizer_decode(tok, he, sp_he, buf, 2) == 3);
        CHECK(buf[0] == ' ' && buf[1] == 'h' && buf[2] == '#');
        CHECK(trn_tokenizer_decode(tok, he, sp_he, NULL, 0) == 3);
    }
    /* Round trip through byte pieces. */
    {
        const char *text = "h\xc3\xa9llo  \xf0\x9f\x98\x80";
        int *ids = NULL, n = 0;
        st = trn_tokenizer_encode(tok, text, strlen(text), 1, &ids, &n);
        CHECK(st == TRN_OK);
        if (st == TRN_OK) {
            char *dec = decode_all(tok, ids, n, NULL);
            CHECK_MSG(strcmp(dec, text) == 0, "round trip gave '%s'", dec);
            free(dec);
        }
        free(ids);
    }
    trn_tokenizer_free(tok);
    trn_gguf_close(g);

    /* Without byte pieces, token types or scores: byte fallback gives <unk>, all scores are 0 (so merges
     * go leftmost first), and a <0xNN> piece still decodes as its byte. */
    tiny_vocab(&v, 0);
    int a = add_piece(&v, "a", 0, 0);
    int sp_a = add_piece(&v, SP "a", 0, 0);
    int aa = add_piece(&v, "aa", 0, 0);
    int x41 = add_piece(&v, "<0x41>", 0, 0);
    int sp2 = add_piece(&v, SP, 0, 0);
    st = open_vocab(&v, 0, 0, NULL, 1, &g);
    CHECK_MSG(st == TRN_OK, "%s", trn_last_error());
    if (st == TRN_OK) {
        st = trn_tokenizer_from_gguf(g, &tok);
        CHECK_MSG(st == TRN_OK, "%s", trn_last_error());
        if (st == TRN_OK) {
            CHECK(trn_tokenizer_type(tok, a) == TRN_TOKEN_NORMAL);
            CHECK(trn_tokenizer_type(tok, 1) == TRN_TOKEN_NORMAL);
            check_encode(tok, "aaa", 0, (int[]){sp_a, aa}, 2);
            check_encode(tok, "\xc3\xa9", 0, (int[]){sp2, 0, 0}, 3);
            check_decode(tok, 7, x41, "A");
            check_decode(tok, -1, sp_a, "a");
            trn_tokenizer_free(tok);
        }
        trn_gguf_close(g);
    }
}

/* ---- malformed vocabularies ----------------------------------------------------------------------- */

static void expect_failure(const vocab_spec *v, int n_scores, int n_types, const char *model, int bos,
                           trn_status want, const char *key) {
    trn_gguf *g = NULL;
    trn_status st = open_vocab(v, n_scores, n_types, model, bos, &g);
    CHECK_MSG(st == TRN_OK, "%s", trn_last_error());
    if (st != TRN_OK)
        return;
    trn_tokenizer *tok = (trn_tokenizer *)&st; /* must be reset to NULL on failure */
    st = trn_tokenizer_from_gguf(g, &tok);
    CHECK_MSG(st == want, "expected status %d, got %d (%s)", (int)want, (int)st, trn_last_error());
    CHECK(tok == NULL);
    CHECK_MSG(strstr(trn_last_error(), key) != NULL, "message '%s' does not name '%s'", trn_last_error(), key);
    CHECK_MSG(strstr(trn_last_error(), "tiny") != NULL, "message '%s' does not name the file", trn_last_error());
    if (st == TRN_OK)
        trn_tokenizer_free(tok);
    trn_gguf_close(g);
}

static void test_malformed(void) {
    vocab_spec v;
    tiny_vocab(&v, 0);
    add_piece(&v, "a", 0, TRN_TOKEN_NORMAL);
    add_piece(&v, "b", 0, TRN_TOKEN_NORMAL);
    expect_failure(&v, v.n - 1, -1, "llama", 1, TRN_ERR_FORMAT, "tokenizer.ggml.scores");
    expect_failure(&v, -1, v.n + 1, "llama", 1, TRN_ERR_FORMAT, "tokenizer.ggml.token_type");
    expect_failure(&v, -1, -1, "llama", v.n, TRN_ERR_FORMAT, "tokenizer.ggml.bos_token_id");
    expect_failure(&v, -1, -1, "gpt2", 1, TRN_ERR_UNSUPPORTED, "tokenizer.ggml.model");

    /* No tokens at all. */
    trn_gguf_writer *w = trn_gguf_writer_new();
    trn_gguf_set_string(w, "tokenizer.ggml.model", "llama");
    void *data = NULL;
    size_t size = 0;
    trn_gguf *g = NULL;
    if (trn_gguf_write_memory(w, &data, &size) == TRN_OK && trn_gguf_open_memory(data, size, 1, "tiny", &g) == TRN_OK) {
        trn_tokenizer *tok = NULL;
        trn_status st = trn_tokenizer_from_gguf(g, &tok);
        CHECK(st == TRN_ERR_FORMAT && tok == NULL);
        CHECK(strstr(trn_last_error(), "tokenizer.ggml.tokens") != NULL);
        trn_gguf_close(g);
    } else {
        CHECK(0);
    }
    trn_gguf_writer_free(w);
}

/* ---- text stream ---------------------------------------------------------------------------------- */

/* Whether s[0..n) is a sequence of complete UTF-8 characters (ASCII or valid 2..4-byte sequences). */
static int all_complete_utf8(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        int need = s[i] < 0x80 ? 1 : (s[i] & 0xE0) == 0xC0 ? 2 : (s[i] & 0xF0) == 0xE0 ? 3 : (s[i] & 0xF8) == 0xF0 ? 4 : 0;
        if (need == 0 || i + (size_t)need > n)
            return 0;
        for (int k = 1; k < need; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
        i += (size_t)need;
    }
    return 1;
}

#ifdef __GLIBC__
/* A FILE whose every underlying write is checked to hold only complete characters. */
typedef struct {
    int n_writes, n_split;
} write_log;

static ssize_t log_write(void *cookie, const char *buf, size_t size) {
    write_log *log = cookie;
    log->n_writes++;
    if (!all_complete_utf8((const unsigned char *)buf, size))
        log->n_split++;
    return (ssize_t)size;
}
#endif

static void test_stream(void) {
    char *buf = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&buf, &size);
    CHECK(f != NULL);
    if (!f)
        return;
    trn_text_stream s;
    trn_text_stream_init(&s, f);

    /* A 4-byte emoji one byte at a time: nothing appears until its last byte. */
    const char emoji[] = "\xf0\x9f\x98\x80";
    for (int i = 0; i < 4; i++) {
        trn_text_stream_write(&s, emoji + i, 1);
        fflush(f);
        CHECK_MSG(size == (i < 3 ? 0u : 4u), "after byte %d: %zu bytes written", i, size);
        CHECK(all_complete_utf8((const unsigned char *)buf, size));
    }
    CHECK(size == 4 && memcmp(buf, emoji, 4) == 0);

    /* Mixed chunks splitting 2-, 3- and 4-byte characters. */
    const char text[] = "a\xc3\xa9 \xe2\x82\xac!\xf0\x9f\x98\x80z";
    size_t text_len = sizeof(text) - 1;
    for (size_t chunk = 1; chunk <= 5; chunk++) {
        size_t before = size;
        for (size_t pos = 0; pos < text_len; pos += chunk) {
            trn_text_stream_write(&s, text + pos, TRN_MIN(chunk, text_len - pos));
            fflush(f);
            CHECK(all_complete_utf8((const unsigned char *)buf + before, size - before));
        }
        CHECK(size - before == text_len && memcmp(buf + before, text, text_len) == 0);
    }

    /* A held byte that cannot be continued goes out as it is, followed by the new byte. */
    size_t before = size;
    trn_text_stream_write(&s, "\xe2\x82", 2);
    fflush(f);
    CHECK(size == before);
    trn_text_stream_write(&s, "x", 1);
    fflush(f);
    CHECK(size == before + 3 && memcmp(buf + before, "\xe2\x82x", 3) == 0);
    /* A held sequence interrupted by the lead byte of another: the first goes out, the second is held. */
    before = size;
    trn_text_stream_write(&s, "\xc3", 1);
    trn_text_stream_write(&s, "\xe2\x82", 2);
    fflush(f);
    CHECK(size == before + 1);
    trn_text_stream_write(&s, "\xac", 1);
    fflush(f);
    CHECK(size == before + 4 && memcmp(buf + before, "\xc3\xe2\x82\xac", 4) == 0);
    /* Stray continuation and invalid bytes pass straight through. */
    before = size;
    trn_text_stream_write(&s, "\x80\xff", 2);
    fflush(f);
    CHECK(size == before + 2);
    /* Flush writes what is held. */
    before = size;
    trn_text_stream_write(&s, "\xf0\x9f", 2);
    fflush(f);
    CHECK(size == before);
    trn_text_stream_flush(&s);
    fflush(f);
    CHECK(size == before + 2 && memcmp(buf + before, "\xf0\x9f", 2) == 0);
    CHECK(s.n_pending == 0);
    fclose(f);
    free(buf);

#ifdef __GLIBC__
    /* Unbuffered, every fwrite reaches the cookie as one write: none may split a character. */
    write_log log = {0, 0};
    cookie_io_functions_t io = {NULL, log_write, NULL, NULL};
    f = fopencookie(&log, "w", io);
    CHECK(f != NULL);
    if (f) {
        setvbuf(f, NULL, _IONBF, 0);
        trn_text_stream_init(&s, f);
        for (size_t chunk = 1; chunk <= 5; chunk++)
            for (size_t pos = 0; pos < text_len; pos += chunk)
                trn_text_stream_write(&s, text + pos, TRN_MIN(chunk, text_len - pos));
        trn_text_stream_flush(&s);
        fclose(f);
        CHECK(log.n_writes > 0);
        CHECK_MSG(log.n_split == 0, "%d of %d writes split a character", log.n_split, log.n_writes);
    }
#endif
}

int main(void) {
    test_tiny();
    test_malformed();
    test_stream();
    test_vectors();
    test_stories();
    return test_finish("test_tokenizer");
}
