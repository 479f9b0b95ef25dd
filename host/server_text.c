/* server_text.c: growing byte buffers, JSON string literals, the streaming UTF-8 decoder and the stop-string
 * hold-back of `trinity serve` (server_text.h). */
#include "server_text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "tokenizer.h"

static const char REPLACEMENT_CHARACTER[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* ---- growing byte buffers ------------------------------------------------------------------------------------ */

static int sb_reserve(trn_strbuf *b, size_t extra) {
    if (b->failed)
        return 0;
    if (b->len + extra + 1 <= b->cap)
        return 1;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *grown = realloc(b->data, cap);
    if (!grown) {
        b->failed = 1;
        return 0;
    }
    b->data = grown;
    b->cap = cap;
    return 1;
}

void trn_sb_add(trn_strbuf *b, const char *bytes, size_t n) {
    if (n == 0 || !sb_reserve(b, n))
        return;
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    b->data[b->len] = 0;
}

void trn_sb_adds(trn_strbuf *b, const char *text) { trn_sb_add(b, text, strlen(text)); }

void trn_sb_addf(trn_strbuf *b, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    const int n = vsnprintf(NULL, 0, fmt, args);
    va_end(args);
    if (n < 0 || !sb_reserve(b, (size_t)n))
        return;
    va_start(args, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, args);
    va_end(args);
    b->len += (size_t)n;
}

void trn_sb_add_json_string(trn_strbuf *b, const char *s, size_t n) {
    trn_sb_add(b, "\"", 1);
    size_t run = 0; /* bytes copied as they are, written in one go */
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        trn_sb_add(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': trn_sb_add(b, "\\\"", 2); break;
        case '\\': trn_sb_add(b, "\\\\", 2); break;
        case '\n': trn_sb_add(b, "\\n", 2); break;
        case '\r': trn_sb_add(b, "\\r", 2); break;
        case '\t': trn_sb_add(b, "\\t", 2); break;
        default: trn_sb_addf(b, "\\u%04x", c); break;
        }
    }
    trn_sb_add(b, s + run, n - run);
    trn_sb_add(b, "\"", 1);
}

void trn_sb_clear(trn_strbuf *b) {
    b->len = 0;
    if (b->data)
        b->data[0] = 0;
}

void trn_sb_free(trn_strbuf *b) {
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* ---- UTF-8 --------------------------------------------------------------------------------------------------- */

/* Bytes of the character a lead byte starts: 1 (ASCII), 2 to 4, or 0 for a byte no character starts with. */
static int utf8_sequence_length(unsigned char lead) {
    return lead < 0x80 ? 1 : lead >= 0xC2 && lead <= 0xDF ? 2 : lead >= 0xE0 && lead <= 0xEF ? 3
                                                            : lead >= 0xF0 && lead <= 0xF4 ? 4 : 0;
}

void trn_utf8_decode(trn_utf8_decoder *d, const char *bytes, size_t n, trn_strbuf *out) {
    for (size_t i = 0; i < n; i++) {
        const unsigned char byte = (unsigned char)bytes[i];
        if (d->n_held > 0) {
            if (trn_utf8_continues(d->held[0], d->n_held, byte)) {
                d->held[d->n_held++] = byte;
                if (d->n_held == utf8_sequence_length(d->held[0])) {
                    trn_sb_add(out, (const char *)d->held, (size_t)d->n_held);
                    d->n_held = 0;
                }
                continue;
            }
            trn_sb_adds(out, REPLACEMENT_CHARACTER); /* the held bytes end ill-formed; this byte starts afresh */
            d->n_held = 0;
        }
        const int length = utf8_sequence_length(byte);
        if (length == 1)
            trn_sb_add(out, (const char *)&byte, 1);
        else if (length == 0)
            trn_sb_adds(out, REPLACEMENT_CHARACTER);
        else
            d->held[d->n_held++] = byte;
    }
}

void trn_utf8_finish(trn_utf8_decoder *d, trn_strbuf *out) {
    if (d->n_held > 0)
        trn_sb_adds(out, REPLACEMENT_CHARACTER);
    d->n_held = 0;
}

/* ---- stop strings -------------------------------------------------------------------------------------------- */

long trn_find_bytes(const char *hay, size_t n, const char *needle, size_t m) {
    if (m == 0 || m > n)
        return -1;
    for (size_t i = 0; i + m <= n; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, m) == 0)
            return (long)i;
    return -1;
}

int trn_stop_release(trn_strbuf *held, trn_strbuf *out, char *const stops[], const size_t stop_lens[], int n_stops,
                     int all) {
    long stop_at = -1;
    for (int k = 0; k < n_stops; k++) {
        const long at = trn_find_bytes(held->data, held->len, stops[k], stop_lens[k]);
        if (at >= 0 && (stop_at < 0 || at < stop_at))
            stop_at = at;
    }
    if (stop_at >= 0) {
        trn_sb_add(out, held->data, (size_t)stop_at);
        trn_sb_clear(held);
        return 1;
    }
    size_t keep = 0; /* the longest end of the held text that is the beginning of a stop string */
    for (int k = 0; k < n_stops && !all; k++)
        for (size_t len = TRN_MIN(stop_lens[k] - 1, held->len); len > keep; len--)
            if (memcmp(held->data + held->len - len, stops[k], len) == 0) {
                keep = len;
                break;
            }
    const size_t release = held->len - keep;
    trn_sb_add(out, held->data, release);
    if (release > 0 && keep > 0)
        memmove(held->data, held->data + release, keep);
    held->len = keep;
    if (held->data)
        held->data[keep] = 0;
    return 0;
}
