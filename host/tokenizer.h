/* tokenizer.h: the Llama SentencePiece BPE tokenizer, built from GGUF metadata.
 *
 * Reads tokenizer.ggml.tokens / scores / token_type and the bos/eos/unknown ids (defaults 1/2/0).
 * Encoding follows llama.cpp's SPM tokenizer with parse_special off: a space is prepended to non-empty
 * text (the dummy prefix), spaces become U+2581, the text is split into UTF-8 characters, adjacent
 * symbols are merged greedily by the score of the merged piece (highest first, leftmost on ties), and
 * a final symbol that is not a token is emitted as its bytes' <0xNN> tokens (byte fallback).
 * Decoding maps U+2581 back to a space and <0xNN> pieces to their byte; control tokens print nothing;
 * the first piece after BOS (or at the start) loses one leading space, as SentencePiece does. */
#ifndef TRN_TOKENIZER_H
#define TRN_TOKENIZER_H

#include <stdio.h>

#include "gguf.h"

typedef enum {
    TRN_TOKEN_NORMAL = 1,
    TRN_TOKEN_UNKNOWN = 2,
    TRN_TOKEN_CONTROL = 3,
    TRN_TOKEN_USER_DEFINED = 4,
    TRN_TOKEN_UNUSED = 5,
    TRN_TOKEN_BYTE = 6,
} trn_token_type;

typedef struct trn_tokenizer trn_tokenizer;

/* Fails with a message naming the file and key when the vocabulary is missing or inconsistent
 * (tokenizer.ggml.model other than "llama", arrays of different lengths, special ids out of range). */
trn_status trn_tokenizer_from_gguf(const trn_gguf *gguf, trn_tokenizer **out);
void trn_tokenizer_free(trn_tokenizer *tok);

int trn_tokenizer_n_vocab(const trn_tokenizer *tok);
int trn_tokenizer_bos(const trn_tokenizer *tok);
int trn_tokenizer_eos(const trn_tokenizer *tok);
/* The raw piece text as stored (with U+2581 for spaces), NUL-terminated. */
const char *trn_tokenizer_piece(const trn_tokenizer *tok, int id);
trn_token_type trn_tokenizer_type(const trn_tokenizer *tok, int id);

/* Whether s[0..n) is valid UTF-8 without NUL bytes (overlong forms, surrogates and code points past U+10FFFF are
 * invalid: the rules the tokenizer splits characters by); where not, *bad (may be NULL) is the offset of the first
 * offending byte. The `trinity` command refuses text that fails this check, from every source (-p, tokenize's
 * argument, perplexity -f). */
int trn_utf8_valid(const char *s, size_t n, size_t *bad);
/* Whether byte b may stand at position pos (1..3) of the character started by `lead`. The second byte is
 * range-restricted to exclude overlong forms, surrogates and code points above U+10FFFF. */
int trn_utf8_continues(unsigned char lead, int pos, unsigned char b);

/* Encodes `len` bytes of UTF-8 text. On success *ids is malloc'd (caller frees) and holds *n_ids ids,
 * starting with BOS when add_bos is set. Invalid UTF-8 is tokenized byte by byte through byte fallback. */
trn_status trn_tokenizer_encode(const trn_tokenizer *tok, const char *text, size_t len, int add_bos, int **ids,
                                int *n_ids);

/* The bytes that printing `token` produces after `prev_token` (-1 at the start of the text). Writes at
 * most `cap` bytes and returns the piece length (which may exceed cap; nothing is written past cap). */
size_t trn_tokenizer_decode(const trn_tokenizer *tok, int prev_token, int token, char *out, size_t cap);

/* A writer that never splits a UTF-8 character across writes: bytes of an incomplete character are
 * held until the character completes. trn_text_stream_flush writes whatever is held. */
typedef struct {
    void (*write)(void *user, const char *bytes, size_t n); /* where complete characters go */
    void *user;
    unsigned char pending[4];
    int n_pending;
} trn_text_stream;

/* Writes to a FILE, or through write(user, bytes, n). */
void trn_text_stream_init(trn_text_stream *stream, FILE *file);
void trn_text_stream_init_sink(trn_text_stream *stream, void (*write)(void *user, const char *bytes, size_t n),
                               void *user);
void trn_text_stream_write(trn_text_stream *stream, const char *bytes, size_t n);
void trn_text_stream_flush(trn_text_stream *stream);

#endif
