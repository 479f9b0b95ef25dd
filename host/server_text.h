/* server_text.h: the text side of `trinity serve` (server.c), apart from HTTP and JSON parsing so that a test or a
 * fuzz target can drive it alone: growing byte buffers, JSON string literals, a streaming UTF-8 decoder, and the
 * hold-back of generated text that could begin a stop string. */
#ifndef TRN_SERVER_TEXT_H
#define TRN_SERVER_TEXT_H

#include <stddef.h>

/* ---- growing byte buffers ---- */

typedef struct {
    char *data; /* NUL-terminated where not empty */
    size_t len, cap;
    int failed; /* memory ran out: later additions are dropped */
} trn_strbuf;

void trn_sb_add(trn_strbuf *b, const char *bytes, size_t n);
void trn_sb_adds(trn_strbuf *b, const char *text);
void trn_sb_addf(trn_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* n bytes of UTF-8 as a JSON string, quotes included (NUL and other control bytes escaped). */
void trn_sb_add_json_string(trn_strbuf *b, const char *s, size_t n);
void trn_sb_clear(trn_strbuf *b);
void trn_sb_free(trn_strbuf *b);

/* ---- UTF-8: whole characters, ill-formed bytes replaced ---- */

/* A decoder that passes on whole characters only and replaces each maximal ill-formed subsequence by U+FFFD (the
 * Unicode recommendation, as Python's errors="replace"); the bytes of a character still incomplete are held, so
 * bytes fed in any pieces give the same text as fed at once. */
typedef struct {
    unsigned char held[4];
    int n_held;
} trn_utf8_decoder;

void trn_utf8_decode(trn_utf8_decoder *d, const char *bytes, size_t n, trn_strbuf *out);
/* The end of the text: a character left incomplete becomes U+FFFD. */
void trn_utf8_finish(trn_utf8_decoder *d, trn_strbuf *out);

/* ---- stop strings ---- */

/* The first occurrence of needle[0..m) in hay[0..n), or -1 (also for an empty needle). */
long trn_find_bytes(const char *hay, size_t n, const char *needle, size_t m);

/* Moves text from `held` to `out`: up to the earliest stop string where one occurs in it (1 is returned and the
 * rest dropped); otherwise all of it (`all`, at the end of a sequence) or all but its longest end that begins a stop
 * string (kept in `held` for the next piece). stops[k] has stop_lens[k] > 0 bytes. */
int trn_stop_release(trn_strbuf *held, trn_strbuf *out, char *const stops[], const size_t stop_lens[], int n_stops,
                     int all);

#endif
