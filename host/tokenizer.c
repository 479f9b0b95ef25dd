/* tokenizer.c: the Llama SentencePiece BPE tokenizer (see tokenizer.h): loading the vocabulary from GGUF
 * metadata, a string -> id hash table, the score-greedy bigram merge with byte fallback, decoding of single
 * tokens, and the UTF-8-preserving text stream.
 *
 * Encoding works on a doubly-linked list of symbols (byte ranges of the escaped text) and a max-heap of
 * candidate bigrams ordered by (score desc, left position asc). A merge only ever absorbs a symbol into its
 * left neighbour, so a heap entry is stale exactly when one of its two symbols is gone or their combined
 * length changed; stale entries are skipped when popped. Each merge pushes at most two new candidates, so
 * the whole encode is O(n log n) in the text length. */
#include "tokenizer.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define TRN_SPACE_MARK "\xe2\x96\x81" /* U+2581, SentencePiece's visible space */
#define TRN_SPACE_MARK_LEN 3

struct trn_tokenizer {
    int n_vocab;
    char *text;          /* every piece, NUL-terminated, back to back */
    size_t *offset;      /* piece i starts at text + offset[i] */
    uint32_t *len;       /* piece byte length (without the NUL) */
    float *score;
    uint8_t *type;       /* trn_token_type values */
    int16_t *byte_value; /* 0..255 for byte pieces, -1 otherwise */
    uint32_t max_len;    /* the longest piece, to skip impossible lookups */
    int bos, eos, unk;
    int add_space_prefix;
    int byte_to_id[256]; /* id of <0xNN>, or unk where the piece is missing */
    int32_t *slots;      /* open-addressing hash table of ids, -1 = empty */
    size_t mask;         /* number of slots - 1 (a power of two minus one) */
};

/* ---- UTF-8 ---------------------------------------------------------------------------------------- */

/* Length of the sequence a lead byte announces: 2..4 for a valid lead, 1 for ASCII and for bytes that
 * cannot start a sequence (continuation bytes, C0/C1 and F5..FF). */
static int utf8_seq_len(unsigned char lead) {
    if (lead >= 0xC2 && lead <= 0xDF)
        return 2;
    if (lead >= 0xE0 && lead <= 0xEF)
        return 3;
    if (lead >= 0xF0 && lead <= 0xF4)
        return 4;
    return 1;
}

int trn_utf8_continues(unsigned char lead, int pos, unsigned char b) {
    if (pos == 1) {
        if (lead == 0xE0)
            return b >= 0xA0 && b <= 0xBF;
        if (lead == 0xED)
            return b >= 0x80 && b <= 0x9F;
        if (lead == 0xF0)
            return b >= 0x90 && b <= 0xBF;
        if (lead == 0xF4)
            return b >= 0x80 && b <= 0x8F;
    }
    return b >= 0x80 && b <= 0xBF;
}

/* Byte length of the character starting at s[0] (n bytes available): the full sequence when it is valid
 * and complete, otherwise 1 (the byte stands alone). */
static size_t utf8_char_len(const unsigned char *s, size_t n) {
    int need = utf8_seq_len(s[0]);
    if ((size_t)need > n)
        return 1;
    for (int k = 1; k < need; k++)
        if (!trn_utf8_continues(s[0], k, s[k]))
            return 1;
    return (size_t)need;
}

int trn_utf8_valid(const char *text, size_t n, size_t *bad) {
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < n;) {
        const size_t len = utf8_char_len(s + i, n - i);
        /* a byte standing alone is valid only as ASCII other than NUL */
        if (len == 1 && (s[i] == 0 || s[i] >= 0x80)) {
            if (bad)
                *bad = i;
            return 0;
        }
        i += len;
    }
    return 1;
}

/* ---- vocabulary hash table ------------------------------------------------------------------------ */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* The id of the piece with exactly these bytes, or -1. */
static int vocab_lookup(const trn_tokenizer *tok, const char *s, size_t n) {
    if (n > tok->max_len)
        return -1;
    for (size_t i = (size_t)hash_bytes(s, n) & tok->mask;; i = (i + 1) & tok->mask) {
        int32_t id = tok->slots[i];
        if (id < 0)
            return -1;
        if (tok->len[id] == n && memcmp(tok->text + tok->offset[id], s, n) == 0)
            return id;
    }
}

/* Inserts ids in increasing order; a duplicate piece keeps the id inserted first (the lowest). */
static void vocab_insert(trn_tokenizer *tok, int id) {
    const char *s = tok->text + tok->offset[id];
    size_t n = tok->len[id];
    for (size_t i = (size_t)hash_bytes(s, n) & tok->mask;; i = (i + 1) & tok->mask) {
        int32_t other = tok->slots[i];
        if (other < 0) {
            tok->slots[i] = id;
            return;
        }
        if (tok->len[other] == n && memcmp(tok->text + tok->offset[other], s, n) == 0)
            return;
    }
}

/* ---- loading -------------------------------------------------------------------------------------- */

/* 0..255 when the piece is exactly "<0xNN>" (hex digits of either case), else -1. */
static int parse_byte_piece(const char *s, size_t n) {
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>')
        return -1;
    int value = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return -1;
        value = value * 16 + d;
    }
    return value;
}

static int is_int_type(trn_gguf_vtype t) {
    return t == TRN_GGUF_U8 || t == TRN_GGUF_I8 || t == TRN_GGUF_U16 || t == TRN_GGUF_I16 || t == TRN_GGUF_U32 ||
           t == TRN_GGUF_I32 || t == TRN_GGUF_U64 || t == TRN_GGUF_I64;
}

/* An optional array key: NULL when absent (*status TRN_OK); an error when present with the wrong element
 * kind or a length different from n_vocab. */
static const trn_gguf_kv *optional_array(const trn_gguf *g, const char *key, int want_float, uint64_t n_vocab,
                                         trn_status *status) {
    *status = TRN_OK;
    const trn_gguf_kv *kv = trn_gguf_find_kv(g, key);
    if (!kv)
        return NULL;
    int ok = kv->type == TRN_GGUF_ARRAY &&
             (want_float ? (kv->elem_type == TRN_GGUF_F32 || kv->elem_type == TRN_GGUF_F64) : is_int_type(kv->elem_type));
    if (!ok) {
        *status = trn_fail(TRN_ERR_FORMAT, "%s: metadata key '%s' is not an array of %s", trn_gguf_path(g), key,
                           want_float ? "f32" : "integers");
        return NULL;
    }
    if (kv->n_elems != n_vocab) {
        *status = trn_fail(TRN_ERR_FORMAT,
                           "%s: metadata key '%s' has %llu entries but tokenizer.ggml.tokens has %llu", trn_gguf_path(g),
                           key, (unsigned long long)kv->n_elems, (unsigned long long)n_vocab);
        return NULL;
    }
    return kv;
}

static trn_status special_id(const trn_gguf *g, const char *key, int n_vocab, int *id) {
    int64_t v = *id;
    TRN_TRY(trn_gguf_get_int(g, key, &v, TRN_OK));
    if (v < 0 || v >= n_vocab)
        return trn_fail(TRN_ERR_FORMAT, "%s: metadata key '%s' is %lld, outside the vocabulary of %d tokens",
                        trn_gguf_path(g), key, (long long)v, n_vocab);
    *id = (int)v;
    return TRN_OK;
}

static trn_status load(trn_tokenizer *tok, const trn_gguf *g) {
    const char *path = trn_gguf_path(g);

    trn_gguf_str model;
    const trn_gguf_kv *model_kv = trn_gguf_find_kv(g, "tokenizer.ggml.model");
    if (model_kv) {
        TRN_TRY(trn_gguf_get_string(g, "tokenizer.ggml.model", &model, TRN_OK));
        if (model.len != 5 || memcmp(model.ptr, "llama", 5) != 0)
            return trn_fail(TRN_ERR_UNSUPPORTED,
                            "%s: tokenizer.ggml.model is '%.*s'; only the SentencePiece tokenizer 'llama' is supported",
                            path, (int)TRN_MIN(model.len, 64), model.ptr);
    }

    const trn_gguf_kv *tokens = trn_gguf_get_array(g, "tokenizer.ggml.tokens", TRN_GGUF_STRING);
    if (!tokens)
        return TRN_ERR_FORMAT; /* message recorded by the getter */
    if (tokens->n_elems == 0 || tokens->n_elems > (uint64_t)INT32_MAX / 2)
        return trn_fail(TRN_ERR_FORMAT, "%s: metadata key 'tokenizer.ggml.tokens' has %llu entries", path,
                        (unsigned long long)tokens->n_elems);
    int n = (int)tokens->n_elems;
    tok->n_vocab = n;

    trn_status status;
    const trn_gguf_kv *scores = optional_array(g, "tokenizer.ggml.scores", 1, tokens->n_elems, &status);
    if (status != TRN_OK)
        return status;
    const trn_gguf_kv *types = optional_array(g, "tokenizer.ggml.token_type", 0, tokens->n_elems, &status);
    if (status != TRN_OK)
        return status;

    tok->bos = 1;
    tok->eos = 2;
    tok->unk = 0;
    TRN_TRY(special_id(g, "tokenizer.ggml.bos_token_id", n, &tok->bos));
    TRN_TRY(special_id(g, "tokenizer.ggml.eos_token_id", n, &tok->eos));
    TRN_TRY(special_id(g, "tokenizer.ggml.unknown_token_id", n, &tok->unk));
    tok->add_space_prefix = 1;
    TRN_TRY(trn_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &tok->add_space_prefix, TRN_OK));

    size_t total = 0;
    for (int i = 0; i < n; i++) {
        if (tokens->strings[i].len > UINT32_MAX / 2)
            return trn_fail(TRN_ERR_FORMAT, "%s: metadata key 'tokenizer.ggml.tokens': token %d is too long", path, i);
        total += (size_t)tokens->strings[i].len + 1;
    }
    tok->text = malloc(total);
    tok->offset = malloc((size_t)n * sizeof(size_t));
    tok->len = malloc((size_t)n * sizeof(uint32_t));
    tok->score = malloc((size_t)n * sizeof(float));
    tok->type = malloc((size_t)n);
    tok->byte_value = malloc((size_t)n * sizeof(int16_t));
    size_t n_slots = 16;
    while (n_slots < 2 * (size_t)n)
        n_slots *= 2;
    tok->slots = malloc(n_slots * sizeof(int32_t));
    tok->mask = n_slots - 1;
    if (!tok->text || !tok->offset || !tok->len || !tok->score || !tok->type || !tok->byte_value || !tok->slots)
        return trn_fail(TRN_ERR_NOMEM, "%s: out of memory loading a vocabulary of %d tokens", path, n);
    memset(tok->slots, 0xff, n_slots * sizeof(int32_t));

    size_t pos = 0;
    for (int i = 0; i < n; i++) {
        const trn_gguf_str *s = &tokens->strings[i];
        memcpy(tok->text + pos, s->ptr, s->len);
        tok->text[pos + s->len] = 0;
        tok->offset[i] = pos;
        tok->len[i] = (uint32_t)s->len;
        pos += s->len + 1;
        if (tok->len[i] > tok->max_len)
            tok->max_len = tok->len[i];
        tok->score[i] = scores ? (float)trn_gguf_array_float(scores, (uint64_t)i) : 0.0f;
        int64_t t = types ? trn_gguf_array_int(types, (uint64_t)i) : TRN_TOKEN_NORMAL;
        if (t < TRN_TOKEN_NORMAL || t > TRN_TOKEN_BYTE)
            t = TRN_TOKEN_NORMAL; /* undefined types behave as normal pieces */
        tok->type[i] = (uint8_t)t;
        /* With a type array only BYTE tokens decode as bytes; without one, the piece form decides. */
        int b = parse_byte_piece(s->ptr, s->len);
        tok->byte_value[i] = (int16_t)((types && t != TRN_TOKEN_BYTE) ? -1 : b);
        vocab_insert(tok, i);
    }

    for (int b = 0; b < 256; b++) {
        char piece[8];
        snprintf(piece, sizeof(piece), "<0x%02X>", b);
        int id = vocab_lookup(tok, piece, 6);
        tok->byte_to_id[b] = id >= 0 ? id : tok->unk;
    }
    return TRN_OK;
}

trn_status trn_tokenizer_from_gguf(const trn_gguf *gguf, trn_tokenizer **out) {
    *out = NULL;
    trn_tokenizer *tok = calloc(1, sizeof(*tok));
    if (!tok)
        return trn_fail(TRN_ERR_NOMEM, "%s: out of memory loading the tokenizer", trn_gguf_path(gguf));
    trn_status status = load(tok, gguf);
    if (status != TRN_OK) {
        trn_tokenizer_free(tok);
        return status;
    }
    *out = tok;
    return TRN_OK;
}

void trn_tokenizer_free(trn_tokenizer *tok) {
    if (!tok)
        return;
    free(tok->text);
    free(tok->offset);
    free(tok->len);
    free(tok->score);
    free(tok->type);
    free(tok->byte_value);
    free(tok->slots);
    free(tok);
}

int trn_tokenizer_n_vocab(const trn_tokenizer *tok) { return tok->n_vocab; }
int trn_tokenizer_bos(const trn_tokenizer *tok) { return tok->bos; }
int trn_tokenizer_eos(const trn_tokenizer *tok) { return tok->eos; }

const char *trn_tokenizer_piece(const trn_tokenizer *tok, int id) {
    if (id < 0 || id >= tok->n_vocab)
        return "";
    return tok->text + tok->offset[id];
}

trn_token_type trn_tokenizer_type(const trn_tokenizer *tok, int id) {
    if (id < 0 || id >= tok->n_vocab)
        return TRN_TOKEN_UNUSED;
    return (trn_token_type)tok->type[id];
}

/* ---- encoding ------------------------------------------------------------------------------------- */

typedef struct {
    int start;      /* byte offset in the escaped text */
    int n;          /* byte length; 0 once merged into the left neighbour */
    int prev, next; /* neighbours in the list, -1 at the ends */
} symbol;

typedef struct {
    float score;
    int left, right; /* symbol indices when pushed */
    int n;           /* combined byte length when pushed (the stale check) */
} bigram;

typedef struct {
    bigram *items;
    size_t count, cap;
} bigram_heap;

/* Whether a should be popped before b: higher score first, then the leftmost pair. */
static int bigram_before(const bigram *a, const bigram *b) {
    if (a->score != b->score)
        return a->score > b->score;
    return a->left < b->left;
}

static int heap_push(bigram_heap *h, bigram item) {
    if (h->count == h->cap) {
        size_t cap = h->cap ? 2 * h->cap : 64;
        bigram *grown = realloc(h->items, cap * sizeof(bigram));
        if (!grown)
            return 0;
        h->items = grown;
        h->cap = cap;
    }
    size_t i = h->count++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bigram_before(&item, &h->items[parent]))
            break;
        h->items[i] = h->items[parent];
        i = parent;
    }
    h->items[i] = item;
    return 1;
}

static bigram heap_pop(bigram_heap *h) {
    bigram top = h->items[0];
    bigram last = h->items[--h->count];
    size_t i = 0;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->count)
            break;
        if (child + 1 < h->count && bigram_before(&h->items[child + 1], &h->items[child]))
            child++;
        if (!bigram_before(&h->items[child], &last))
            break;
        h->items[i] = h->items[child];
        i = child;
    }
    if (h->count > 0)
        h->items[i] = last;
    return top;
}

/* Queues the pair (left, right) if their concatenation is a vocabulary piece. Returns 0 on allocation
 * failure. */
static int try_bigram(const trn_tokenizer *tok, const char *text, const symbol *sym, bigram_heap *heap, int left,
                      int right) {
    if (left < 0 || right < 0)
        return 1;
    int n = sym[left].n + sym[right].n;
    int id = vocab_lookup(tok, text + sym[left].start, (size_t)n);
    if (id < 0)
        return 1;
    bigram b = {tok->score[id], left, right, n};
    return heap_push(heap, b);
}

trn_status trn_tokenizer_encode(const trn_tokenizer *tok, const char *text, size_t len, int add_bos, int **ids,
                                int *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    if (len > (size_t)(INT_MAX / 4 - 16))
        return trn_fail(TRN_ERR_INVALID, "text of %zu bytes is too long to tokenize", len);

    /* Escaped text: the dummy-prefix space, then the input with each ' ' replaced by U+2581. */
    size_t cap = len == 0 ? 0 : (len + 1) * TRN_SPACE_MARK_LEN;
    char *esc = malloc(cap + 1);
    symbol *sym = malloc((cap + 1) * sizeof(symbol));
    int *out = malloc((cap + 1) * sizeof(int)); /* at most one id per escaped byte, plus BOS */
    bigram_heap heap = {0};
    trn_status status = TRN_OK;
    if (!esc || !sym || !out) {
        status = trn_fail(TRN_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
        goto done;
    }

    size_t n_esc = 0;
    if (len > 0 && tok->add_space_prefix) {
        memcpy(esc, TRN_SPACE_MARK, TRN_SPACE_MARK_LEN);
        n_esc = TRN_SPACE_MARK_LEN;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(esc + n_esc, TRN_SPACE_MARK, TRN_SPACE_MARK_LEN);
            n_esc += TRN_SPACE_MARK_LEN;
        } else {
            esc[n_esc++] = text[i];
        }
    }

    /* One symbol per UTF-8 character (an invalid byte is a character of its own). */
    int n_sym = 0;
    for (size_t pos = 0; pos < n_esc;) {
        size_t n = utf8_char_len((const unsigned char *)esc + pos, n_esc - pos);
        sym[n_sym].start = (int)pos;
        sym[n_sym].n = (int)n;
        sym[n_sym].prev = n_sym - 1;
        sym[n_sym].next = pos + n < n_esc ? n_sym + 1 : -1;
        n_sym++;
        pos += n;
    }

    for (int i = 0; i + 1 < n_sym; i++)
        if (!try_bigram(tok, esc, sym, &heap, i, i + 1))
            goto nomem;

    while (heap.count > 0) {
        bigram b = heap_pop(&heap);
        symbol *l = &sym[b.left], *r = &sym[b.right];
        /* Stale: one side was merged away, or the right side grew (the left cannot grow without
         * absorbing the right). */
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.n || l->next != b.right)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (l->next >= 0)
            sym[l->next].prev = b.left;
        if (!try_bigram(tok, esc, sym, &heap, l->prev, b.left) || !try_bigram(tok, esc, sym, &heap, b.left, l->next))
            goto nomem;
    }

    int count = 0;
    if (add_bos)
        out[count++] = tok->bos;
    for (int i = n_sym > 0 ? 0 : -1; i >= 0; i = sym[i].next) {
        int id = vocab_lookup(tok, esc + sym[i].start, (size_t)sym[i].n);
        if (id >= 0) {
            out[count++] = id;
        } else { /* byte fallback */
            for (int k = 0; k < sym[i].n; k++)
                out[count++] = tok->byte_to_id[(unsigned char)esc[sym[i].start + k]];
        }
    }
    *ids = out;
    *n_ids = count;
    out = NULL;
    goto done;

nomem:
    status = trn_fail(TRN_ERR_NOMEM, "out of memory tokenizing %zu bytes", len);
done:
    free(esc);
    free(sym);
    free(out);
    free(heap.items);
    return status;
}

/* ---- decoding ------------------------------------------------------------------------------------- */

size_t trn_tokenizer_decode(const trn_tokenizer *tok, int prev_token, int token, char *out, size_t cap) {
    if (token < 0 || token >= tok->n_vocab)
        return 0;
    int type = tok->type[token];
    if (type == TRN_TOKEN_CONTROL || type == TRN_TOKEN_UNUSED)
        return 0;
    if (tok->byte_value[token] >= 0) {
        if (cap > 0)
            out[0] = (char)tok->byte_value[token];
        return 1;
    }
    const char *s = tok->text + tok->offset[token];
    size_t n = tok->len[token];
    /* SentencePiece drops the dummy-prefix space from the first piece of a text. */
    int strip = tok->add_space_prefix && (prev_token == -1 || prev_token == tok->bos);
    size_t written = 0;
    for (size_t i = 0; i < n;) {
        char c;
        if (n - i >= TRN_SPACE_MARK_LEN && memcmp(s + i, TRN_SPACE_MARK, TRN_SPACE_MARK_LEN) == 0) {
            c = ' ';
            i += TRN_SPACE_MARK_LEN;
        } else {
            c = s[i++];
        }
        if (strip && written == 0 && c == ' ') {
            strip = 0;
            continue;
        }
        strip = 0;
        if (written < cap)
            out[written] = c;
        written++;
    }
    return written;
}

/* ---- text stream ---------------------------------------------------------------------------------- */

static void write_file(void *file, const char *bytes, size_t n) { fwrite(bytes, 1, n, (FILE *)file); }

void trn_text_stream_init(trn_text_stream *stream, FILE *file) { trn_text_stream_init_sink(stream, write_file, file); }

void trn_text_stream_init_sink(trn_text_stream *stream, void (*write)(void *user, const char *bytes, size_t n),
                               void *user) {
    stream->write = write;
    stream->user = user;
    stream->n_pending = 0;
}

void trn_text_stream_write(trn_text_stream *stream, const char *bytes, size_t n) {
    const unsigned char *b = (const unsigned char *)bytes;
    size_t i = 0;

    /* First complete (or give up on) the held sequence. */
    while (stream->n_pending > 0 && i < n) {
        unsigned char lead = stream->pending[0];
        if (trn_utf8_continues(lead, stream->n_pending, b[i])) {
            stream->pending[stream->n_pending++] = b[i++];
            if (stream->n_pending < utf8_seq_len(lead))
                continue;
        }
        /* Complete, or the next byte cannot continue it: either way the held bytes go out as they are,
         * and a byte that did not fit is handled below. */
        stream->write(stream->user, (const char *)stream->pending, (size_t)stream->n_pending);
        stream->n_pending = 0;
    }
    if (i == n)
        return;

    /* Write everything up to an incomplete sequence at the very end, which is held. */
    size_t end = n;
    for (size_t pos = i; pos < n;) {
        int need = utf8_seq_len(b[pos]);
        size_t k = 1;
        while ((int)k < need && pos + k < n && trn_utf8_continues(b[pos], (int)k, b[pos + k]))
            k++;
        if ((int)k < need && pos + k == n) { /* a valid prefix cut off by the end of the input */
            end = pos;
            break;
        }
        pos += (int)k == need ? k : 1; /* an invalid sequence: its lead byte goes out alone */
    }
    if (end > i)
        stream->write(stream->user, (const char *)b + i, end - i);
    memcpy(stream->pending, b + end, n - end);
    stream->n_pending = (int)(n - end);
}

void trn_text_stream_flush(trn_text_stream *stream) {
    if (stream->n_pending > 0)
        stream->write(stream->user, (const char *)stream->pending, (size_t)stream->n_pending);
    stream->n_pending = 0;
}
