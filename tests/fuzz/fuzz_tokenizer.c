/* fuzz_tokenizer.c: libFuzzer target for the SentencePiece tokenizer with a fixed vocabulary (the synthetic "tiny"
 * model's, built once): encoding arbitrary bytes, decoding every produced id (and ids taken from the input,
 * out-of-range ones included) into buffers of fuzzed capacity, and the UTF-8-safe text stream writer on /dev/null.
 * Input: byte 0 holds flags (bit 0: add BOS; bits 1-4: a small decode capacity), the rest is the text. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "host/model.h"
#include "host/tokenizer.h"

static trn_gguf *vocab_gguf;
static trn_tokenizer *tokenizer;
static FILE *sink;

static void init_once(void) {
    if (tokenizer)
        return;
    if (trn_synthetic_gguf("tiny", &vocab_gguf) != TRN_OK ||
        trn_tokenizer_from_gguf(vocab_gguf, &tokenizer) != TRN_OK) {
        fprintf(stderr, "fuzz_tokenizer: cannot build the tiny vocabulary: %s\n", trn_last_error());
        abort();
    }
    sink = fopen("/dev/null", "w");
    if (!sink)
        abort();
}

/* Decodes token after prev into a buffer of `cap` bytes (heap, exact size, so a write past cap is caught), then
 * into one of the reported length when it did not fit; streams the result. */
static void decode_one(trn_text_stream *stream, int prev, int token, size_t cap) {
    char *buf = malloc(cap ? cap : 1);
    if (!buf)
        return;
    size_t n = trn_tokenizer_decode(tokenizer, prev, token, buf, cap);
    if (n > cap) {
        char *full = malloc(n);
        if (full) {
            size_t again = trn_tokenizer_decode(tokenizer, prev, token, full, n);
            if (again != n)
                abort(); /* the same call must report the same length */
            trn_text_stream_write(stream, full, n);
            free(full);
        }
    } else {
        trn_text_stream_write(stream, buf, n);
    }
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init_once();
    if (size == 0)
        return 0;
    const int add_bos = data[0] & 1;
    const size_t cap = (data[0] >> 1) & 15; /* 0..15: small buffers exercise the truncation */
    const char *text = (const char *)data + 1;
    const size_t len = size - 1;

    int *ids = NULL, n_ids = 0;
    if (trn_tokenizer_encode(tokenizer, text, len, add_bos, &ids, &n_ids) == TRN_OK) {
        trn_text_stream stream;
        trn_text_stream_init(&stream, sink);
        int prev = -1;
        for (int i = 0; i < n_ids; i++) {
            decode_one(&stream, prev, ids[i], cap);
            (void)trn_tokenizer_piece(tokenizer, ids[i]);
            (void)trn_tokenizer_type(tokenizer, ids[i]);
            prev = ids[i];
        }
        trn_text_stream_flush(&stream);
        fuzz_log("tokenizer: %zu bytes -> %d ids", len, n_ids);
        free(ids);
    } else {
        fuzz_log("tokenizer: %s", trn_last_error());
    }

    /* the input as raw 16-bit ids (negative and past the vocabulary included), and as raw stream bytes */
    trn_text_stream stream;
    trn_text_stream_init(&stream, sink);
    int prev = -1;
    for (size_t i = 0; i + 1 < len && i < 512; i += 2) {
        int id = (int16_t)(uint16_t)((uint8_t)text[i] | (uint8_t)text[i + 1] << 8);
        decode_one(&stream, prev, id, cap + 8);
        (void)trn_tokenizer_piece(tokenizer, id);
        (void)trn_tokenizer_type(tokenizer, id);
        prev = id;
    }
    for (size_t i = 0; i < len; i += 1 + cap)
        trn_text_stream_write(&stream, text + i, TRN_MIN(len - i, 1 + cap));
    trn_text_stream_flush(&stream);
    return 0;
}
