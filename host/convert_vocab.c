/* convert_vocab.c: vocabularies for `trinity convert` from the three tokenizer formats of Llama checkpoints
 * (see convert.h): SentencePiece's tokenizer.model, Hugging Face's tokenizer.json and llama2.c's tokenizer.bin.
 * Each format's reading rules are described above its reader below.
 *
 * Every reader loads the whole file, checks every length against it, and on failure records one line naming
 * the file and leaves *out empty (every array NULL, n = 0). The vocabulary's arrays come from malloc: pieces are
 * NUL-terminated strings with U+2581 for spaces, freed by trn_vocab_free. Also here: a GGUF file's vocabulary
 * (trn_vocab_from_gguf), writing one as tokenizer.ggml.* metadata (trn_vocab_write), and which source a Hugging Face
 * directory's vocabulary comes from (trn_vocab_for_hf_dir). Calls no converter (convert_internal.h). */
#define _POSIX_C_SOURCE 200809L
#include "convert_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef TRN_HAVE_CJSON
#include <cjson/cJSON.h>
#endif

#define SPACE_MARK "\xe2\x96\x81" /* U+2581 */
#define MAX_VOCAB (1 << 24)       /* far above any real vocabulary; keeps every count an int */

/* ---- shared helpers ------------------------------------------------------------------------------------ */


static void vocab_clear(trn_vocab *v) {
    memset(v, 0, sizeof(*v));
    v->bos = 1;
    v->eos = 2;
    v->unk = 0;
}

/* Arrays for n entries, pieces NULL, scores 0, types NORMAL. */
static trn_status vocab_alloc(trn_vocab *v, int n, const char *path) {
    v->tokens = calloc((size_t)n, sizeof(char *));
    v->scores = calloc((size_t)n, sizeof(float));
    v->types = malloc((size_t)n * sizeof(int32_t));
    v->n = n;
    if (!v->tokens || !v->scores || !v->types) {
        trn_vocab_free(v);
        vocab_clear(v);
        return trn_fail(TRN_ERR_NOMEM, "%s: out of memory for a vocabulary of %d pieces", path, n);
    }
    for (int i = 0; i < n; i++)
        v->types[i] = TRN_TOKEN_NORMAL;
    return TRN_OK;
}

/* A malloc'd copy of n bytes with every ' ' replaced by U+2581 when `escape_spaces`. NULL when out of memory. */
static char *piece_copy(const uint8_t *s, size_t n, int escape_spaces) {
    size_t spaces = 0;
    if (escape_spaces)
        for (size_t i = 0; i < n; i++)
            spaces += s[i] == ' ';
    char *out = malloc(n + 2 * spaces + 1);
    if (!out)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (escape_spaces && s[i] == ' ') {
            memcpy(out + k, SPACE_MARK, 3);
            k += 3;
        } else {
            out[k++] = (char)s[i];
        }
    }
    out[k] = 0;
    return out;
}

static int is_hex_digit(char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

#ifdef TRN_HAVE_CJSON /* helpers of the tokenizer.json reader */

/* Exactly "<0xNN>" with two hex digits of either case. */
static int is_byte_piece(const char *s) {
    return strlen(s) == 6 && memcmp(s, "<0x", 3) == 0 && is_hex_digit(s[3]) && is_hex_digit(s[4]) && s[5] == '>';
}

/* A piece -> id table (open addressing, FNV-1a); the first id inserted for a piece wins. */
typedef struct {
    const trn_vocab *v;
    int32_t *slots;
    size_t mask;
} piece_index;

static uint64_t hash_str(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int index_build(piece_index *ix, const trn_vocab *v) {
    size_t n_slots = 16;
    while (n_slots < 2 * (size_t)v->n)
        n_slots *= 2;
    ix->v = v;
    ix->mask = n_slots - 1;
    ix->slots = malloc(n_slots * sizeof(int32_t));
    if (!ix->slots)
        return 0;
    memset(ix->slots, 0xff, n_slots * sizeof(int32_t));
    for (int id = 0; id < v->n; id++) {
        const char *s = v->tokens[id];
        size_t n = strlen(s);
        for (size_t i = (size_t)hash_str(s, n) & ix->mask;; i = (i + 1) & ix->mask) {
            int32_t other = ix->slots[i];
            if (other < 0) {
                ix->slots[i] = id;
                break;
            }
            if (strcmp(v->tokens[other], s) == 0)
                break;
        }
    }
    return 1;
}

/* The id of the piece with these n bytes, or -1. */
static int index_find(const piece_index *ix, const char *s, size_t n) {
    for (size_t i = (size_t)hash_str(s, n) & ix->mask;; i = (i + 1) & ix->mask) {
        int32_t id = ix->slots[i];
        if (id < 0)
            return -1;
        const char *t = ix->v->tokens[id];
        if (strncmp(t, s, n) == 0 && t[n] == 0)
            return id;
    }
}

static void index_free(piece_index *ix) {
    free(ix->slots);
    ix->slots = NULL;
}

#endif

/* ---- SentencePiece tokenizer.model (protobuf) ---------------------------------------------------------- */

/* tokenizer.model is a protobuf ModelProto; a small bounds-checked reader (varint, fixed32, fixed64 and
 * length-delimited fields; the group wire types 3 and 4 are refused) walks it:
 *   ModelProto    1: repeated SentencePiece, 2: TrainerSpec, (3: NormalizerSpec, ... skipped)
 *   SentencePiece 1: string piece, 2: float score (fixed32), 3: enum type (NORMAL=1 .. BYTE=6; absent = NORMAL)
 *   TrainerSpec   45/46/47: unk/bos/eos piece strings (defaults "<unk>", "<s>", "</s>"); the rest skipped.
 * The piece types are the same numbers as trn_token_type. Special ids: unk is the first piece of type UNKNOWN,
 * bos and eos the pieces named by the trainer spec (as SentencePiece's bos_id()/eos_id() find them); each falls
 * back to 0/1/2 when absent. */

typedef struct {
    const uint8_t *p, *end;
    const uint8_t *base; /* start of the file, for offsets in messages */
} pb_reader;

enum { PB_VARINT = 0, PB_FIXED64 = 1, PB_LEN = 2, PB_FIXED32 = 5 };

/* A base-128 varint of at most 10 bytes. 0 when truncated or too long. */
static int pb_varint(pb_reader *r, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end)
            return 0;
        uint8_t b = *r->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 1;
        }
    }
    return 0;
}

/* Reads a field key. 0 at a malformed key (the caller reports). */
static int pb_key(pb_reader *r, uint32_t *field, int *wire) {
    uint64_t key;
    if (!pb_varint(r, &key) || (key >> 3) == 0 || (key >> 3) > 0x1fffffff)
        return 0;
    *field = (uint32_t)(key >> 3);
    *wire = (int)(key & 7);
    return 1;
}

/* The payload of a length-delimited field, bounds-checked. */
static int pb_bytes(pb_reader *r, const uint8_t **data, size_t *len) {
    uint64_t n;
    if (!pb_varint(r, &n) || n > (uint64_t)(r->end - r->p))
        return 0;
    *data = r->p;
    *len = (size_t)n;
    r->p += n;
    return 1;
}

static int pb_fixed32(pb_reader *r, uint32_t *out) {
    if (r->end - r->p < 4)
        return 0;
    *out = (uint32_t)r->p[0] | (uint32_t)r->p[1] << 8 | (uint32_t)r->p[2] << 16 | (uint32_t)r->p[3] << 24;
    r->p += 4;
    return 1;
}

/* Skips a field's value by its wire type; 0 for the group types (3, 4), unknown types and truncation. */
static int pb_skip(pb_reader *r, int wire) {
    uint64_t v;
    const uint8_t *d;
    size_t n;
    switch (wire) {
    case PB_VARINT: return pb_varint(r, &v);
    case PB_FIXED64:
        if (r->end - r->p < 8)
            return 0;
        r->p += 8;
        return 1;
    case PB_LEN: return pb_bytes(r, &d, &n);
    case PB_FIXED32:
        if (r->end - r->p < 4)
            return 0;
        r->p += 4;
        return 1;
    default: return 0;
    }
}

static trn_status pb_error(const char *path, const pb_reader *r, const char *what) {
    return trn_fail(TRN_ERR_FORMAT, "%s: not a valid SentencePiece model: %s at byte %zu", path, what,
                    (size_t)(r->p - r->base));
}

/* What a field of the wrong wire type or a broken value means, for the message. */
static const char *pb_wire_problem(int wire) {
    return (wire == 3 || wire == 4) ? "a group field (wire type 3/4, not supported)"
                                    : "a truncated or malformed field";
}

typedef struct {
    const uint8_t *piece;
    size_t piece_len;
    float score;
    uint64_t type;
} sp_piece;

/* One SentencePiece message. */
static trn_status sp_parse_piece(const char *path, pb_reader *outer, const uint8_t *data, size_t len, sp_piece *out) {
    pb_reader r = {data, data + len, outer->base};
    out->piece = NULL;
    out->piece_len = 0;
    out->score = 0.0f;
    out->type = TRN_TOKEN_NORMAL;
    int have_piece = 0;
    while (r.p < r.end) {
        uint32_t field;
        int wire;
        if (!pb_key(&r, &field, &wire))
            return pb_error(path, &r, "a malformed field key in a piece");
        if (field == 1 && wire == PB_LEN) {
            if (!pb_bytes(&r, &out->piece, &out->piece_len))
                return pb_error(path, &r, "a piece string running past its message");
            have_piece = 1;
        } else if (field == 2 && wire == PB_FIXED32) {
            uint32_t bits;
            if (!pb_fixed32(&r, &bits))
                return pb_error(path, &r, "a truncated score");
            memcpy(&out->score, &bits, sizeof(bits));
        } else if (field == 3 && wire == PB_VARINT) {
            if (!pb_varint(&r, &out->type))
                return pb_error(path, &r, "a truncated piece type");
        } else if (field <= 3) {
            return pb_error(path, &r, "a piece field of the wrong wire type");
        } else if (!pb_skip(&r, wire)) {
            return pb_error(path, &r, pb_wire_problem(wire));
        }
    }
    if (!have_piece)
        return pb_error(path, &r, "a piece without its string");
    return TRN_OK;
}

typedef struct {
    const uint8_t *s;
    size_t n;
} byte_span;

/* The unk/bos/eos piece names of a TrainerSpec message. */
static trn_status sp_parse_trainer(const char *path, pb_reader *outer, const uint8_t *data, size_t len,
                                   byte_span names[3]) {
    pb_reader r = {data, data + len, outer->base};
    while (r.p < r.end) {
        uint32_t field;
        int wire;
        if (!pb_key(&r, &field, &wire))
            return pb_error(path, &r, "a malformed field key in the trainer spec");
        if (field >= 45 && field <= 47 && wire == PB_LEN) {
            byte_span *s = &names[field - 45];
            if (!pb_bytes(&r, &s->s, &s->n))
                return pb_error(path, &r, "a special piece name running past the trainer spec");
        } else if (!pb_skip(&r, wire)) {
            return pb_error(path, &r, pb_wire_problem(wire));
        }
    }
    return TRN_OK;
}

static int find_piece(const trn_vocab *v, const byte_span *name) {
    for (int i = 0; i < v->n; i++)
        if (strlen(v->tokens[i]) == name->n && memcmp(v->tokens[i], name->s, name->n) == 0)
            return i;
    return -1;
}

static trn_status sp_parse(const char *path, const uint8_t *buf, size_t size, trn_vocab *out) {
    /* Pass 1: check the top level and count the pieces; pass 2: fill. */
    pb_reader r = {buf, buf + size, buf};
    int n = 0;
    byte_span names[3] = {{(const uint8_t *)"<unk>", 5}, {(const uint8_t *)"<s>", 3}, {(const uint8_t *)"</s>", 4}};
    while (r.p < r.end) {
        uint32_t field;
        int wire;
        if (!pb_key(&r, &field, &wire))
            return pb_error(path, &r, "a malformed field key");
        if ((field == 1 || field == 2) && wire != PB_LEN)
            return pb_error(path, &r,
                            (wire == 3 || wire == 4) ? pb_wire_problem(wire) : "a top-level field of the wrong wire type");
        if (field == 1) {
            const uint8_t *d = NULL;
            size_t len = 0;
            if (!pb_bytes(&r, &d, &len))
                return pb_error(path, &r, "a piece running past the end of the file");
            if (++n > MAX_VOCAB)
                return trn_fail(TRN_ERR_FORMAT, "%s: more than %d pieces", path, MAX_VOCAB);
        } else if (field == 2) {
            const uint8_t *d = NULL;
            size_t len = 0;
            if (!pb_bytes(&r, &d, &len))
                return pb_error(path, &r, "the trainer spec running past the end of the file");
            TRN_TRY(sp_parse_trainer(path, &r, d, len, names));
        } else if (!pb_skip(&r, wire)) {
            return pb_error(path, &r, pb_wire_problem(wire));
        }
    }
    if (n == 0)
        return trn_fail(TRN_ERR_FORMAT, "%s: not a SentencePiece model: no pieces", path);

    TRN_TRY(vocab_alloc(out, n, path));
    trn_status status = TRN_OK;
    int unk = -1;
    r.p = buf;
    for (int i = 0; i < n && status == TRN_OK;) {
        uint32_t field = 0;
        int wire = 0;
        const uint8_t *d = NULL;
        size_t len = 0;
        pb_key(&r, &field, &wire); /* checked in pass 1 */
        if (field != 1) {
            pb_skip(&r, wire);
            continue;
        }
        pb_bytes(&r, &d, &len);
        sp_piece p;
        status = sp_parse_piece(path, &r, d, len, &p);
        if (status != TRN_OK)
            break;
        if (memchr(p.piece, 0, p.piece_len)) {
            status = trn_fail(TRN_ERR_FORMAT, "%s: piece %d contains a NUL byte", path, i);
            break;
        }
        if (p.type < TRN_TOKEN_NORMAL || p.type > TRN_TOKEN_BYTE) {
            status = trn_fail(TRN_ERR_FORMAT, "%s: piece %d has type %llu (valid: 1..6)", path, i,
                              (unsigned long long)p.type);
            break;
        }
        out->tokens[i] = piece_copy(p.piece, p.piece_len, 0);
        if (!out->tokens[i]) {
            status = trn_fail(TRN_ERR_NOMEM, "%s: out of memory", path);
            break;
        }
        out->scores[i] = p.score;
        out->types[i] = (int32_t)p.type;
        if (p.type == TRN_TOKEN_UNKNOWN && unk < 0)
            unk = i;
        i++;
    }
    if (status != TRN_OK) {
        trn_vocab_free(out);
        vocab_clear(out);
        return status;
    }
    if (unk < 0)
        unk = find_piece(out, &names[0]);
    int bos = find_piece(out, &names[1]);
    int eos = find_piece(out, &names[2]);
    out->unk = unk >= 0 ? unk : 0;
    out->bos = bos >= 0 ? bos : 1;
    out->eos = eos >= 0 ? eos : 2;
    if (out->bos >= n || out->eos >= n) { /* only a vocabulary of one or two pieces gets here */
        trn_vocab_free(out);
        vocab_clear(out);
        return trn_fail(TRN_ERR_FORMAT, "%s: %d pieces: no room for the BOS/EOS pieces", path, n);
    }
    return TRN_OK;
}

trn_status trn_vocab_from_sentencepiece(const char *path, trn_vocab *out) {
    vocab_clear(out);
    uint8_t *buf;
    size_t size;
    TRN_TRY(trn_read_file(path, TRN_MAX_VOCAB_BYTES, "a vocabulary", (char **)&buf, &size));
    trn_status status = sp_parse(path, buf, size, out);
    free(buf);
    return status;
}

/* ---- Hugging Face tokenizer.json ----------------------------------------------------------------------- */

/* tokenizer.json (Hugging Face, a SentencePiece-BPE Llama tokenizer) is parsed with cJSON. Hugging Face's BPE
 * applies merges by rank (lowest first); this engine's tokenizer (SentencePiece's algorithm) merges the adjacent
 * pair whose concatenation has the highest score. So the scores encode the ranks:
 *   - a piece that some merge produces scores -(r + 1), r the rank of the FIRST merge producing it;
 *   - single characters, byte pieces <0xNN> and added tokens score 0 (nothing merges into them: the tokenizer
 *     starts from single characters, and added tokens are not reached by merges in Hugging Face either);
 *   - any other multi-character piece (one no merge produces, which Hugging Face never forms) scores
 *     -(n_merges + 1), below every merge, so it can only be formed when nothing else is left to merge.
 * This reproduces the merge order exactly when all merges producing one piece have consecutive ranks, which
 * holds for every tokenizer.json converted from SentencePiece (transformers sorts the merges by the score of
 * the merged piece). Types: <0xNN> pieces BYTE, added tokens marked special CONTROL, the model's unk_token
 * ("<unk>") UNKNOWN, other added tokens USER_DEFINED (as llama.cpp's converter marks them), the rest NORMAL.
 * Special ids: the pieces "<s>", "</s>" and unk_token (defaults 1/2/0). Without cJSON this reader is not compiled
 * (host/convert_nojson.c stands in for it). */

#ifdef TRN_HAVE_CJSON

/* An integer-valued JSON number in [0, limit). */
static int json_id(const cJSON *item, int limit, int *out) {
    if (!cJSON_IsNumber(item))
        return 0;
    double d = item->valuedouble;
    if (!(d >= 0 && d < (double)limit) || d != (double)(int)d)
        return 0;
    *out = (int)d;
    return 1;
}

/* Splits merge `m` into its two pieces: "a b" (exactly one space) or ["a", "b"]. */
static int merge_parts(const cJSON *m, const char **a, size_t *na, const char **b, size_t *nb) {
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring;
        const char *sp = strchr(s, ' ');
        if (!sp || sp == s || sp[1] == 0 || strchr(sp + 1, ' '))
            return 0;
        *a = s;
        *na = (size_t)(sp - s);
        *b = sp + 1;
        *nb = strlen(sp + 1);
        return 1;
    }
    if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2) {
        const cJSON *x = cJSON_GetArrayItem(m, 0), *y = cJSON_GetArrayItem(m, 1);
        if (!cJSON_IsString(x) || !cJSON_IsString(y) || !x->valuestring[0] || !y->valuestring[0])
            return 0;
        *a = x->valuestring;
        *na = strlen(x->valuestring);
        *b = y->valuestring;
        *nb = strlen(y->valuestring);
        return 1;
    }
    return 0;
}

/* Number of UTF-8 characters in s (continuation bytes not counted). */
static size_t utf8_chars(const char *s) {
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static trn_status hf_json_parse(const char *path, const cJSON *root, trn_vocab *out) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!cJSON_IsObject(model))
        return trn_fail(TRN_ERR_FORMAT, "%s: no \"model\" object", path);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
    if (type && !(cJSON_IsString(type) && strcmp(type->valuestring, "BPE") == 0))
        return trn_fail(TRN_ERR_UNSUPPORTED, "%s: tokenizer model type is '%s'; only BPE (SentencePiece-style) is supported",
                        path, cJSON_IsString(type) ? type->valuestring : "?");
    /* A byte-level BPE (GPT-2 style, Ġ for spaces) would need another tokenizer than 'llama'. */
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *pre_type = cJSON_IsObject(pre) ? cJSON_GetObjectItemCaseSensitive(pre, "type") : NULL;
    if (cJSON_IsString(pre_type) && strcmp(pre_type->valuestring, "ByteLevel") == 0)
        return trn_fail(TRN_ERR_UNSUPPORTED,
                        "%s: a byte-level BPE tokenizer (GPT-2 style); only SentencePiece-style Llama tokenizers are "
                        "supported", path);
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab))
        return trn_fail(TRN_ERR_FORMAT, "%s: no \"model\".\"vocab\" object", path);
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    if (merges && !cJSON_IsArray(merges))
        return trn_fail(TRN_ERR_FORMAT, "%s: \"model\".\"merges\" is not an array", path);
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (added && !cJSON_IsNull(added) && !cJSON_IsArray(added))
        return trn_fail(TRN_ERR_FORMAT, "%s: \"added_tokens\" is not an array", path);
    if (!cJSON_IsArray(added))
        added = NULL;
    const char *unk_piece = "<unk>";
    const cJSON *unk_item = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    if (cJSON_IsString(unk_item))
        unk_piece = unk_item->valuestring;

    /* Ids must cover 0..n-1 without holes, so n is at most the number of entries. */
    int entries = cJSON_GetArraySize(vocab) + (added ? cJSON_GetArraySize(added) : 0);
    if (entries <= 0 || entries > MAX_VOCAB)
        return trn_fail(TRN_ERR_FORMAT, "%s: %d vocabulary entries", path, entries);
    int n = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, vocab) {
        int id;
        if (!json_id(item, entries, &id))
            return trn_fail(TRN_ERR_FORMAT, "%s: vocabulary piece '%.64s' has id %g, not an integer in 0..%d", path,
                            item->string, cJSON_IsNumber(item) ? item->valuedouble : -1.0, entries - 1);
        if (id + 1 > n)
            n = id + 1;
    }
    if (added) {
        cJSON_ArrayForEach(item, added) {
            const cJSON *id_item = cJSON_GetObjectItemCaseSensitive(item, "id");
            const cJSON *content = cJSON_GetObjectItemCaseSensitive(item, "content");
            int id;
            if (!cJSON_IsString(content) || !json_id(id_item, entries, &id))
                return trn_fail(TRN_ERR_FORMAT,
                                "%s: an added token without a string \"content\" and an integer \"id\" in 0..%d", path,
                                entries - 1);
            if (id + 1 > n)
                n = id + 1;
        }
    }

    TRN_TRY(vocab_alloc(out, n, path));
    uint8_t *is_added = calloc((size_t)n, 1);
    int *first_rank = NULL;
    piece_index ix = {0};
    trn_status status = TRN_OK;
    if (!is_added) {
        status = trn_fail(TRN_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }

    cJSON_ArrayForEach(item, vocab) {
        int id = (int)item->valuedouble;
        if (out->tokens[id]) {
            status = trn_fail(TRN_ERR_FORMAT, "%s: id %d is given to both '%.64s' and '%.64s'", path, id,
                              out->tokens[id], item->string);
            goto done;
        }
        out->tokens[id] = strdup(item->string);
        if (!out->tokens[id]) {
            status = trn_fail(TRN_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
    }
    if (added) {
        cJSON_ArrayForEach(item, added) {
            int id = (int)cJSON_GetObjectItemCaseSensitive(item, "id")->valuedouble;
            const char *content = cJSON_GetObjectItemCaseSensitive(item, "content")->valuestring;
            if (out->tokens[id] && strcmp(out->tokens[id], content) != 0) {
                status = trn_fail(TRN_ERR_FORMAT, "%s: added token '%.64s' has id %d, which the vocabulary gives to '%.64s'",
                                  path, content, id, out->tokens[id]);
                goto done;
            }
            if (!out->tokens[id] && !(out->tokens[id] = strdup(content))) {
                status = trn_fail(TRN_ERR_NOMEM, "%s: out of memory", path);
                goto done;
            }
            is_added[id] = 1;
            out->types[id] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(item, "special")) ? TRN_TOKEN_CONTROL
                                                                                              : TRN_TOKEN_USER_DEFINED;
        }
    }
    for (int id = 0; id < n; id++) {
        if (!out->tokens[id]) {
            status = trn_fail(TRN_ERR_FORMAT, "%s: no piece has id %d (ids must cover 0..%d without holes)", path, id,
                              n - 1);
            goto done;
        }
    }

    /* Scores from the merge ranks (see the top of the file). */
    int n_merges = merges ? cJSON_GetArraySize(merges) : 0;
    first_rank = malloc((size_t)n * sizeof(int));
    if (!first_rank || !index_build(&ix, out)) {
        status = trn_fail(TRN_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (int id = 0; id < n; id++)
        first_rank[id] = -1;
    char *joined = NULL;
    size_t joined_cap = 0;
    int rank = 0;
    if (merges) {
        cJSON_ArrayForEach(item, merges) {
            const char *a, *b;
            size_t na, nb;
            if (!merge_parts(item, &a, &na, &b, &nb)) {
                status = trn_fail(TRN_ERR_FORMAT, "%s: merge %d is neither \"A B\" nor [\"A\", \"B\"]", path, rank);
                break;
            }
            if (index_find(&ix, a, na) < 0 || index_find(&ix, b, nb) < 0) {
                status = trn_fail(TRN_ERR_FORMAT, "%s: merge %d ('%.*s' '%.*s') uses a piece not in the vocabulary", path,
                                  rank, (int)TRN_MIN(na, 64), a, (int)TRN_MIN(nb, 64), b);
                break;
            }
            if (na + nb + 1 > joined_cap) {
                size_t cap = 2 * (na + nb + 1);
                char *grown = realloc(joined, cap);
                if (!grown) {
                    status = trn_fail(TRN_ERR_NOMEM, "%s: out of memory", path);
                    break;
                }
                joined = grown;
                joined_cap = cap;
            }
            memcpy(joined, a, na);
            memcpy(joined + na, b, nb);
            int id = index_find(&ix, joined, na + nb);
            if (id < 0) {
                status = trn_fail(TRN_ERR_FORMAT, "%s: merge %d ('%.*s' '%.*s') makes a piece not in the vocabulary",
                                  path, rank, (int)TRN_MIN(na, 64), a, (int)TRN_MIN(nb, 64), b);
                break;
            }
            if (first_rank[id] < 0)
                first_rank[id] = rank;
            rank++;
        }
    }
    free(joined);
    if (status != TRN_OK)
        goto done;

    int unk = -1, bos = -1, eos = -1;
    for (int id = 0; id < n; id++) {
        const char *s = out->tokens[id];
        if (first_rank[id] >= 0)
            out->scores[id] = -(float)first_rank[id] - 1.0f;
        else if (is_added[id] || is_byte_piece(s) || utf8_chars(s) <= 1)
            out->scores[id] = 0.0f;
        else
            out->scores[id] = -(float)n_merges - 1.0f;
        if (is_byte_piece(s))
            out->types[id] = TRN_TOKEN_BYTE;
        else if (unk < 0 && strcmp(s, unk_piece) == 0)
            out->types[id] = TRN_TOKEN_UNKNOWN;
        if (unk < 0 && strcmp(s, unk_piece) == 0)
            unk = id;
        if (bos < 0 && strcmp(s, "<s>") == 0)
            bos = id;
        if (eos < 0 && strcmp(s, "</s>") == 0)
            eos = id;
    }
    out->unk = unk >= 0 ? unk : 0;
    out->bos = bos >= 0 ? bos : 1;
    out->eos = eos >= 0 ? eos : 2;
    if (out->bos >= n || out->eos >= n)
        status = trn_fail(TRN_ERR_FORMAT, "%s: %d pieces: no room for the BOS/EOS pieces", path, n);

done:
    index_free(&ix);
    free(first_rank);
    free(is_added);
    if (status != TRN_OK) {
        trn_vocab_free(out);
        vocab_clear(out);
    }
    return status;
}

trn_status trn_vocab_from_hf_json(const char *path, trn_vocab *out) {
    vocab_clear(out);
    uint8_t *buf;
    size_t size;
    TRN_TRY(trn_read_file(path, TRN_MAX_VOCAB_BYTES, "a vocabulary", (char **)&buf, &size));
    cJSON *root = cJSON_ParseWithLength((const char *)buf, size);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        const char *text = (const char *)buf;
        long offset = (at && at >= text && at <= text + size) ? (long)(at - text) : -1;
        free(buf);
        return trn_fail(TRN_ERR_FORMAT, "%s: not valid JSON (near byte %ld)", path, offset);
    }
    free(buf);
    trn_status status = cJSON_IsObject(root) ? hf_json_parse(path, root, out)
                                             : trn_fail(TRN_ERR_FORMAT, "%s: not a JSON object", path);
    cJSON_Delete(root);
    return status;
}

#else /* !TRN_HAVE_CJSON: the one reader that needs it fails, saying so (as the Hugging Face and TRIN converters do,
       * host/convert_nojson.c) */

trn_status trn_vocab_from_hf_json(const char *path, trn_vocab *out) {
    (void)out;
    return trn_fail(TRN_ERR_UNSUPPORTED, "%s needs cJSON, which this build lacks: install libcjson-dev (Debian) "
                    "and rebuild", path);
}

#endif /* TRN_HAVE_CJSON */

/* ---- llama2.c tokenizer.bin ------------------------------------------------------------------------------ */

/* tokenizer.bin (llama2.c) is converted exactly as llama.cpp's llama2c converter did (the one that produced
 * stories260K.gguf): int32 max_token_length (unused), then per id a float32 score, an int32 length and the
 * bytes. Id 0 becomes "<unk>" (UNKNOWN), ids 1 and 2 "<s>" and "</s>" (CONTROL), an empty piece is CONTROL, a
 * piece starting "<0x" and a hex digit is BYTE (llama.cpp's sscanf test), the rest NORMAL; spaces become
 * U+2581; scores are copied. */

static int32_t get_i32(const uint8_t *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    int32_t v;
    memcpy(&v, &u, sizeof(v));
    return v;
}

static float get_f32(const uint8_t *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float v;
    memcpy(&v, &u, sizeof(v));
    return v;
}

static trn_status llama2c_parse(const char *path, const uint8_t *buf, size_t size, int vocab_size, trn_vocab *out) {
    if (size < 4)
        return trn_fail(TRN_ERR_FORMAT, "%s: truncated llama2.c tokenizer: %zu bytes, no header", path, size);
    uint64_t least = 0; /* every piece needs at least its 8-byte score and length: checked before allocating */
    if (!trn_size_mul((uint64_t)vocab_size, 8, &least) || least > size - 4)
        return trn_fail(TRN_ERR_FORMAT, "%s: truncated llama2.c tokenizer: %d pieces need at least %llu bytes, the file "
                        "has %zu", path, vocab_size, (unsigned long long)least + 4, size);
    TRN_TRY(vocab_alloc(out, vocab_size, path));
    size_t pos = 4; /* int32 max_token_length: unused, as in llama.cpp */
    for (int id = 0; id < vocab_size; id++) {
        if (size - pos < 8) {
            trn_vocab_free(out);
            vocab_clear(out);
            return trn_fail(TRN_ERR_FORMAT, "%s: truncated llama2.c tokenizer: %d of %d pieces, then %zu bytes", path, id,
                            vocab_size, size - pos);
        }
        float score = get_f32(buf + pos);
        int32_t len = get_i32(buf + pos + 4);
        pos += 8;
        if (len < 0 || (size_t)len > size - pos) {
            trn_vocab_free(out);
            vocab_clear(out);
            return trn_fail(TRN_ERR_FORMAT,
                            "%s: truncated or corrupt llama2.c tokenizer: piece %d has length %ld but %zu bytes remain",
                            path, id, (long)len, size - pos);
        }
        const uint8_t *text = buf + pos;
        pos += (size_t)len;
        if (memchr(text, 0, (size_t)len)) {
            trn_vocab_free(out);
            vocab_clear(out);
            return trn_fail(TRN_ERR_FORMAT, "%s: piece %d contains a NUL byte", path, id);
        }
        int32_t type;
        if (id == 0) {
            text = (const uint8_t *)"<unk>";
            len = 5;
            type = TRN_TOKEN_UNKNOWN;
        } else if (id == 1) {
            text = (const uint8_t *)"<s>";
            len = 3;
            type = TRN_TOKEN_CONTROL;
        } else if (id == 2) {
            text = (const uint8_t *)"</s>";
            len = 4;
            type = TRN_TOKEN_CONTROL;
        } else if (len == 0) {
            type = TRN_TOKEN_CONTROL;
        } else if (len >= 4 && memcmp(text, "<0x", 3) == 0 && is_hex_digit((char)text[3])) {
            type = TRN_TOKEN_BYTE; /* llama.cpp: sscanf(text, "<0x%02hhX>", ...) == 1 */
        } else {
            type = TRN_TOKEN_NORMAL;
        }
        out->tokens[id] = piece_copy(text, (size_t)len, 1);
        if (!out->tokens[id]) {
            trn_vocab_free(out);
            vocab_clear(out);
            return trn_fail(TRN_ERR_NOMEM, "%s: out of memory", path);
        }
        out->scores[id] = score;
        out->types[id] = type;
    }
    out->unk = 0;
    out->bos = 1;
    out->eos = 2;
    return TRN_OK;
}

trn_status trn_vocab_from_llama2c(const char *path, int vocab_size, trn_vocab *out) {
    vocab_clear(out);
    if (vocab_size < 3 || vocab_size > MAX_VOCAB)
        return trn_fail(TRN_ERR_INVALID, "%s: a vocabulary of %d pieces (needs 3..%d)", path, vocab_size, MAX_VOCAB);
    uint8_t *buf;
    size_t size;
    TRN_TRY(trn_read_file(path, TRN_MAX_VOCAB_BYTES, "a vocabulary", (char **)&buf, &size));
    trn_status status = llama2c_parse(path, buf, size, vocab_size, out);
    free(buf);
    return status;
}

/* ---- a GGUF file's vocabulary, writing one as metadata, and the choice for a Hugging Face directory ---------- */

void trn_vocab_free(trn_vocab *v) {
    if (!v)
        return;
    for (int i = 0; v->tokens && i < v->n; i++)
        free(v->tokens[i]);
    free(v->tokens);
    free(v->scores);
    free(v->types);
    memset(v, 0, sizeof(*v));
}

void trn_vocab_write(trn_gguf_writer *w, const trn_vocab *v) {
    trn_gguf_set_string(w, "tokenizer.ggml.model", "llama");
    trn_gguf_set_string_array(w, "tokenizer.ggml.tokens", (const char *const *)v->tokens, (uint64_t)v->n);
    trn_gguf_set_array(w, "tokenizer.ggml.scores", TRN_GGUF_F32, v->scores, (uint64_t)v->n);
    trn_gguf_set_array(w, "tokenizer.ggml.token_type", TRN_GGUF_I32, v->types, (uint64_t)v->n);
    trn_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)v->bos);
    trn_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)v->eos);
    trn_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)v->unk);
}

trn_status trn_vocab_from_gguf(const char *path, trn_vocab *out) {
    memset(out, 0, sizeof(*out));
    trn_gguf *g = NULL;
    TRN_TRY(trn_gguf_open(path, &g));
    trn_tokenizer *tok = NULL;
    trn_status status = trn_tokenizer_from_gguf(g, &tok);
    if (status == TRN_OK) {
        const int n = trn_tokenizer_n_vocab(tok);
        out->tokens = calloc((size_t)n, sizeof(char *));
        out->scores = calloc((size_t)n, sizeof(float));
        out->types = calloc((size_t)n, sizeof(int32_t));
        const trn_gguf_kv *scores = trn_gguf_find_kv(g, "tokenizer.ggml.scores");
        out->n = n;
        for (int i = 0; out->tokens && out->scores && out->types && i < n; i++) {
            out->tokens[i] = strdup(trn_tokenizer_piece(tok, i));
            out->types[i] = (int32_t)trn_tokenizer_type(tok, i);
            out->scores[i] = scores && scores->type == TRN_GGUF_ARRAY && (uint64_t)i < scores->n_elems
                                 ? (float)trn_gguf_array_float(scores, (uint64_t)i)
                                 : 0.0f;
            if (!out->tokens[i])
                break;
        }
        if (!out->tokens || !out->scores || !out->types || (n > 0 && !out->tokens[n - 1]))
            status = trn_fail(TRN_ERR_NOMEM, "out of memory reading the vocabulary of %s", path);
        out->bos = trn_tokenizer_bos(tok);
        out->eos = trn_tokenizer_eos(tok);
        int64_t unk = 0;
        trn_gguf_get_int(g, "tokenizer.ggml.unknown_token_id", &unk, TRN_OK);
        out->unk = (int)unk;
    }
    trn_tokenizer_free(tok);
    trn_gguf_close(g);
    if (status != TRN_OK)
        trn_vocab_free(out);
    return status;
}

static int file_exists(const char *path) { return access(path, R_OK) == 0; }

trn_status trn_vocab_for_hf_dir(const char *dir, const char *vocab_gguf, trn_vocab *out) {
    if (vocab_gguf)
        return trn_vocab_from_gguf(vocab_gguf, out);
    char path[4096];
    snprintf(path, sizeof(path), "%s/tokenizer.model", dir);
    if (file_exists(path))
        return trn_vocab_from_sentencepiece(path, out);
    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    if (file_exists(path))
        return trn_vocab_from_hf_json(path, out);
    memset(out, 0, sizeof(*out));
    return trn_fail(TRN_ERR_IO, "%s: no tokenizer.model or tokenizer.json; give the vocabulary with --vocab FILE.gguf",
                    dir);
}
