/* server.c: `trinity serve` (server.h), an OpenAI-compatible HTTP server on the public API (trinity.h) with
 * continuous batching.
 *
 * Owns the HTTP side (libmicrohttpd, one thread per connection: routing, the API key, request bodies, the JSON of
 * requests, parsed by cJSON, and of replies, server-sent events), the request queue, and the scheduler: one thread
 * that alone uses the trinity_batch. Each scheduler step is one trinity_batch_decode call holding one token of every
 * generating slot and chunks of the prompts being read, then one trinity_sampler draw per slot whose logits came
 * back; the pieces become text (whole UTF-8 characters, ill-formed bytes as U+FFFD; text that could begin a stop
 * string held back) that is handed to the connections under one mutex, with a condition variable. Connection
 * threads never touch the batch: they queue a request, wait on the condition variable and send what was handed
 * over; a client that goes away cancels its request, which frees its slot. */
#define _POSIX_C_SOURCE 200809L
#include "server.h"

#if defined(TRN_HAVE_MICROHTTPD) && defined(TRN_HAVE_CJSON)

#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "chat.h"
#include "common.h"

#if MHD_VERSION >= 0x00097002
typedef enum MHD_Result mhd_result;
#else
typedef int mhd_result;
#endif

#define MAX_BODY_BYTES (1u << 20)         /* a request body larger than this: 413 */
#define MAX_DISCARDED_BODY (64u << 20)    /* beyond this (Content-Length) the 413 goes out before the body is read */
#define MAX_QUEUED 64                     /* requests waiting for a slot; one more: 503 */
#define PROMPT_TOKENS_PER_STEP 128        /* prompt tokens of all slots together in one scheduler step */
#define MAX_STOPS 4
#define MAX_CONNECTIONS 256               /* open connections (threads) at once */
#define KEEPALIVE_S 5                     /* an SSE comment after this long without text */
#define DISCONNECT_POLL_MS 200            /* a non-streaming request checks its client this often */
#define STOP_GRACE_S 5                    /* at a stop, open requests get this long to send their last bytes */

static const char REPLACEMENT_CHARACTER[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* ---- growing byte buffers ------------------------------------------------------------------------------------ */

typedef struct {
    char *data; /* NUL-terminated where not empty */
    size_t len, cap;
    int failed; /* memory ran out: later additions are dropped */
} strbuf;

static int sb_reserve(strbuf *b, size_t extra) {
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

static void sb_add(strbuf *b, const char *bytes, size_t n) {
    if (n == 0 || !sb_reserve(b, n))
        return;
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void sb_adds(strbuf *b, const char *text) { sb_add(b, text, strlen(text)); }

static void sb_addf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_addf(strbuf *b, const char *fmt, ...) {
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

/* n bytes of UTF-8 as a JSON string, quotes included (NUL and other control bytes escaped). */
static void sb_add_json_string(strbuf *b, const char *s, size_t n) {
    sb_add(b, "\"", 1);
    size_t run = 0; /* bytes copied as they are, written in one go */
    for (size_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        sb_add(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': sb_add(b, "\\\"", 2); break;
        case '\\': sb_add(b, "\\\\", 2); break;
        case '\n': sb_add(b, "\\n", 2); break;
        case '\r': sb_add(b, "\\r", 2); break;
        case '\t': sb_add(b, "\\t", 2); break;
        default: sb_addf(b, "\\u%04x", c); break;
        }
    }
    sb_add(b, s + run, n - run);
    sb_add(b, "\"", 1);
}

static void sb_clear(strbuf *b) {
    b->len = 0;
    if (b->data)
        b->data[0] = 0;
}

static void sb_free(strbuf *b) {
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* ---- UTF-8: whole characters, ill-formed bytes replaced ------------------------------------------------------ */

/* A decoder that passes on whole characters only and replaces each maximal ill-formed subsequence by U+FFFD (the
 * Unicode recommendation, as Python's errors="replace"); the bytes of a character still incomplete are held. */
typedef struct {
    unsigned char held[4];
    int n_held;
} utf8_decoder;

/* Bytes of the character a lead byte starts: 1 (ASCII), 2 to 4, or 0 for a byte no character starts with. */
static int utf8_sequence_length(unsigned char lead) {
    return lead < 0x80 ? 1 : lead >= 0xC2 && lead <= 0xDF ? 2 : lead >= 0xE0 && lead <= 0xEF ? 3
                                                            : lead >= 0xF0 && lead <= 0xF4 ? 4 : 0;
}

/* Whether `byte` may stand at index 1..3 of the character started by `lead` (no overlong forms, surrogates or code
 * points past U+10FFFF). */
static int utf8_continues(unsigned char lead, int index, unsigned char byte) {
    if (index == 1) {
        if (lead == 0xE0)
            return byte >= 0xA0 && byte <= 0xBF;
        if (lead == 0xED)
            return byte >= 0x80 && byte <= 0x9F;
        if (lead == 0xF0)
            return byte >= 0x90 && byte <= 0xBF;
        if (lead == 0xF4)
            return byte >= 0x80 && byte <= 0x8F;
    }
    return byte >= 0x80 && byte <= 0xBF;
}

static void utf8_decode(utf8_decoder *d, const char *bytes, size_t n, strbuf *out) {
    for (size_t i = 0; i < n; i++) {
        const unsigned char byte = (unsigned char)bytes[i];
        if (d->n_held > 0) {
            if (utf8_continues(d->held[0], d->n_held, byte)) {
                d->held[d->n_held++] = byte;
                if (d->n_held == utf8_sequence_length(d->held[0])) {
                    sb_add(out, (const char *)d->held, (size_t)d->n_held);
                    d->n_held = 0;
                }
                continue;
            }
            sb_adds(out, REPLACEMENT_CHARACTER); /* the held bytes end ill-formed; this byte starts afresh */
            d->n_held = 0;
        }
        const int length = utf8_sequence_length(byte);
        if (length == 1)
            sb_add(out, (const char *)&byte, 1);
        else if (length == 0)
            sb_adds(out, REPLACEMENT_CHARACTER);
        else
            d->held[d->n_held++] = byte;
    }
}

/* The end of the text: a character left incomplete becomes U+FFFD. */
static void utf8_finish(utf8_decoder *d, strbuf *out) {
    if (d->n_held > 0)
        sb_adds(out, REPLACEMENT_CHARACTER);
    d->n_held = 0;
}

/* ---- requests (jobs) and the server ------------------------------------------------------------------------- */

typedef enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE } job_state;

/* One completion. The connection fills the first part and queues it; the scheduler reads it and, under the server's
 * lock, appends text and finally sets the state to JOB_DONE. Freed when both have let go of it (refs). */
typedef struct job {
    int *prompt;
    int n_prompt;
    trinity_sampler *sampler;
    int max_tokens; /* -1: until EOS or the slot's context is full */
    char *stops[MAX_STOPS];
    size_t stop_lens[MAX_STOPS];
    int n_stops;
    double submitted_s;
    /* under the server's lock */
    job_state state;
    int cancelled;
    strbuf text;               /* the completion so far: final text, safe to send */
    int n_generated;           /* completion tokens (EOS not counted) */
    const char *finish_reason; /* at JOB_DONE: "stop" or "length"; NULL where cancelled or failed */
    char error[256];           /* at JOB_DONE after an engine failure or at shutdown */
    int refs;
    struct job *next_queued;
} job;

/* What the scheduler keeps for a slot that holds a job (scheduler thread only, but for `job`, set under the lock). */
typedef struct {
    job *job;
    int *tokens;   /* the sequence: prompt (BOS first) and the tokens sampled so far; [n_ctx] */
    int n_tokens;
    int n_fed;     /* tokens run through the model: the slot's filled positions */
    int n_generated;
    utf8_decoder decoder;
    strbuf held;   /* decoded text not yet released: it could begin a stop string */
    strbuf outbox; /* text released in this step, handed over under the lock */
    const char *finish_reason; /* set in this step: "stop" or "length" */
} slot;

typedef struct {
    trinity_model *model;
    trinity_batch *batch;
    trn_chat_format chat_format;
    char *model_name; /* as JSON-safe UTF-8 */
    const char *api_key;
    int n_slots, n_ctx, n_vocab, eos;
    slot *slots;
    float *logits;              /* [n_slots][n_vocab]: one row per slot at most in a step */
    trinity_batch_token *step_tokens; /* [n_slots + PROMPT_TOKENS_PER_STEP] */
    int *row_slot;              /* [n_slots]: the slot of each logits row */
    int prompt_turn;            /* the slot whose prompt goes first in the next step */
    pthread_t scheduler;
    int scheduler_started;
    pthread_mutex_t lock;
    pthread_cond_t work;        /* to the scheduler: a request was queued or cancelled, or the server stops */
    pthread_cond_t progress;    /* to the connections: text was added or a job finished */
    job *queue_head, *queue_tail;
    int n_queued, n_busy;
    int n_open_requests; /* from MHD's first call for a request to its completion notice */
    int stopping;
    uint64_t request_counter;
} server;

static double now_s(void) { return trn_time_s(); }

/* A deadline `seconds` from now on the clock the condition variables use (CLOCK_MONOTONIC). */
static struct timespec deadline_in(double seconds) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    const long long ns = (long long)t.tv_nsec + (long long)(seconds * 1e9);
    t.tv_sec += (time_t)(ns / 1000000000LL);
    t.tv_nsec = (long)(ns % 1000000000LL);
    return t;
}

static void job_free(job *j) {
    free(j->prompt);
    trinity_sampler_free(j->sampler);
    for (int i = 0; i < j->n_stops; i++)
        free(j->stops[i]);
    sb_free(&j->text);
    free(j);
}

/* Drops one reference; the caller holds the lock. */
static void job_release_locked(job *j) {
    if (--j->refs == 0)
        job_free(j);
}

/* A job still queued or running stops: a queued one leaves the queue at once, a running one frees its slot at the
 * scheduler's next step. The caller holds the lock. */
static void job_cancel_locked(server *s, job *j) {
    if (j->state == JOB_DONE)
        return;
    j->cancelled = 1;
    if (j->state == JOB_QUEUED) {
        job **link = &s->queue_head;
        job *prev = NULL;
        while (*link && *link != j) {
            prev = *link;
            link = &(*link)->next_queued;
        }
        if (*link) {
            *link = j->next_queued;
            if (s->queue_tail == j)
                s->queue_tail = prev;
            s->n_queued--;
            j->state = JOB_DONE;
            job_release_locked(j); /* the scheduler's reference */
        }
    }
    pthread_cond_signal(&s->work);
    pthread_cond_broadcast(&s->progress);
}

/* ---- the scheduler ------------------------------------------------------------------------------------------ */

/* The first occurrence of needle[0..m) in hay[0..n), or -1. */
static long find_bytes(const char *hay, size_t n, const char *needle, size_t m) {
    if (m == 0 || m > n)
        return -1;
    for (size_t i = 0; i + m <= n; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, m) == 0)
            return (long)i;
    return -1;
}

/* Moves held text to the outbox: up to the first stop string where one occurs (1 is returned and the rest dropped);
 * otherwise all of it (`all`) or all but its longest end that begins a stop string. */
static int release_text(slot *sl, int all) {
    const job *j = sl->job;
    long stop_at = -1;
    for (int k = 0; k < j->n_stops; k++) {
        const long at = find_bytes(sl->held.data, sl->held.len, j->stops[k], j->stop_lens[k]);
        if (at >= 0 && (stop_at < 0 || at < stop_at))
            stop_at = at;
    }
    if (stop_at >= 0) {
        sb_add(&sl->outbox, sl->held.data, (size_t)stop_at);
        sb_clear(&sl->held);
        return 1;
    }
    size_t keep = 0; /* the longest end of the held text that is the beginning of a stop string */
    for (int k = 0; k < j->n_stops && !all; k++)
        for (size_t len = TRN_MIN(j->stop_lens[k] - 1, sl->held.len); len > keep; len--)
            if (memcmp(sl->held.data + sl->held.len - len, j->stops[k], len) == 0) {
                keep = len;
                break;
            }
    const size_t release = sl->held.len - keep;
    sb_add(&sl->outbox, sl->held.data, release);
    if (release > 0 && keep > 0)
        memmove(sl->held.data, sl->held.data + release, keep);
    sl->held.len = keep;
    if (sl->held.data)
        sl->held.data[keep] = 0;
    return 0;
}

/* The slot's sequence ends ("stop" or "length"): what is held goes out, but for a stop string and what follows. */
static void finish_slot(slot *sl, const char *reason) {
    utf8_finish(&sl->decoder, &sl->held);
    if (release_text(sl, 1))
        reason = "stop";
    sl->finish_reason = reason;
}

/* The token after the slot's sequence, drawn from its logits; its text goes to the outbox as far as it is final. */
static void sample_slot(server *s, slot *sl, float *logits) {
    job *j = sl->job;
    const int token = trinity_sampler_sample(j->sampler, logits, sl->tokens, sl->n_tokens);
    if (token == s->eos) {
        finish_slot(sl, "stop");
        return;
    }
    char piece[256];
    char *text = piece;
    size_t len = trinity_token_piece(s->model, sl->tokens[sl->n_tokens - 1], token, piece, sizeof(piece));
    if (len > sizeof(piece) && (text = malloc(len)) != NULL)
        trinity_token_piece(s->model, sl->tokens[sl->n_tokens - 1], token, text, len);
    if (!text) {
        text = piece;
        len = sizeof(piece);
    }
    sl->tokens[sl->n_tokens++] = token;
    sl->n_generated++;
    utf8_decode(&sl->decoder, text, len, &sl->held);
    if (text != piece)
        free(text);
    if (release_text(sl, 0))
        sl->finish_reason = "stop";
    else if (sl->n_generated == j->max_tokens || sl->n_tokens == s->n_ctx)
        finish_slot(sl, "length");
}

/* Takes a slot back from its job (the lock is held). */
static void free_slot_locked(server *s, int index) {
    slot *sl = &s->slots[index];
    trinity_batch_clear(s->batch, index);
    job_release_locked(sl->job);
    sl->job = NULL;
    sb_clear(&sl->held);
    sb_clear(&sl->outbox);
    sl->finish_reason = NULL;
    s->n_busy--;
}

/* Queued jobs into free slots, cancelled jobs out of theirs (the lock is held). */
static void assign_slots_locked(server *s) {
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->job && sl->job->cancelled) {
            fprintf(stderr, "slot %d: cancelled after %d of its prompt's %d tokens and %d new ones\n", i,
                    TRN_MIN(sl->n_fed, sl->job->n_prompt), sl->job->n_prompt, sl->n_generated);
            sl->job->state = JOB_DONE;
            free_slot_locked(s, i);
        }
        if (sl->job || !s->queue_head)
            continue;
        job *j = s->queue_head;
        s->queue_head = j->next_queued;
        if (!s->queue_head)
            s->queue_tail = NULL;
        s->n_queued--;
        j->state = JOB_RUNNING;
        sl->job = j;
        memcpy(sl->tokens, j->prompt, (size_t)j->n_prompt * sizeof(int));
        sl->n_tokens = j->n_prompt;
        sl->n_fed = 0;
        sl->n_generated = 0;
        sl->decoder.n_held = 0;
        s->n_busy++;
    }
}

/* One decode call: a token for every generating slot, then prompt chunks from the slot whose turn it is on; then a
 * draw for every slot whose logits came back, and the text handed over. */
static void scheduler_step(server *s) {
    int n = 0, n_rows = 0;
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->job && sl->n_fed >= sl->job->n_prompt) {
            s->step_tokens[n++] = (trinity_batch_token){sl->tokens[sl->n_fed], i, sl->n_fed, 1};
            s->row_slot[n_rows++] = i;
            sl->n_fed++;
        }
    }
    int budget = PROMPT_TOKENS_PER_STEP;
    for (int k = 0; k < s->n_slots && budget > 0; k++) {
        const int i = (s->prompt_turn + k) % s->n_slots;
        slot *sl = &s->slots[i];
        if (!sl->job || sl->n_fed >= sl->job->n_prompt)
            continue;
        const int take = TRN_MIN(budget, sl->job->n_prompt - sl->n_fed);
        for (int t = 0; t < take; t++, sl->n_fed++) {
            const int last = sl->n_fed == sl->job->n_prompt - 1;
            s->step_tokens[n++] = (trinity_batch_token){sl->tokens[sl->n_fed], i, sl->n_fed, last};
            if (last)
                s->row_slot[n_rows++] = i;
        }
        budget -= take;
    }
    s->prompt_turn = (s->prompt_turn + 1) % s->n_slots;

    const trinity_status status = trinity_batch_decode(s->batch, s->step_tokens, n, s->logits);
    char failure[256] = "";
    if (status != TRINITY_OK)
        snprintf(failure, sizeof(failure), "the engine failed: %s", trinity_last_error());
    else
        for (int r = 0; r < n_rows; r++)
            sample_slot(s, &s->slots[s->row_slot[r]], s->logits + (size_t)r * s->n_vocab);

    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        job *j = sl->job;
        if (!j)
            continue;
        if (failure[0]) {
            snprintf(j->error, sizeof(j->error), "%s", failure);
        } else {
            sb_add(&j->text, sl->outbox.data ? sl->outbox.data : "", sl->outbox.len);
            sb_clear(&sl->outbox);
            j->n_generated = sl->n_generated;
            if (j->text.failed)
                snprintf(j->error, sizeof(j->error), "out of memory for the completion's text");
        }
        if (j->error[0] || sl->finish_reason) {
            j->finish_reason = j->error[0] ? NULL : sl->finish_reason;
            j->state = JOB_DONE;
            if (j->error[0])
                fprintf(stderr, "slot %d: error: %s\n", i, j->error);
            else
                fprintf(stderr, "slot %d: %d prompt + %d completion tokens, finish %s, %.2f s\n", i, j->n_prompt,
                        j->n_generated, j->finish_reason, now_s() - j->submitted_s);
            free_slot_locked(s, i);
        }
    }
    pthread_cond_broadcast(&s->progress);
    pthread_mutex_unlock(&s->lock);
}

static void *scheduler_main(void *arg) {
    server *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        assign_slots_locked(s);
        if (s->stopping)
            break;
        if (s->n_busy == 0) {
            pthread_cond_wait(&s->work, &s->lock);
            continue;
        }
        pthread_mutex_unlock(&s->lock);
        scheduler_step(s);
        pthread_mutex_lock(&s->lock);
    }
    /* stopping: every job still held ends with an error */
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].job) {
            snprintf(s->slots[i].job->error, sizeof(s->slots[i].job->error), "the server is shutting down");
            s->slots[i].job->state = JOB_DONE;
            free_slot_locked(s, i);
        }
    while (s->queue_head) {
        job *j = s->queue_head;
        s->queue_head = j->next_queued;
        snprintf(j->error, sizeof(j->error), "the server is shutting down");
        j->state = JOB_DONE;
        job_release_locked(j);
    }
    s->queue_tail = NULL;
    s->n_queued = 0;
    pthread_cond_broadcast(&s->progress);
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* ---- requests: JSON in ---------------------------------------------------------------------------------------- */

typedef struct {
    unsigned status; /* HTTP status */
    char message[512];
    const char *code; /* OpenAI's "code", or NULL */
} request_error;

static int fail_request(request_error *e, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail_request(request_error *e, unsigned status, const char *code, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, args);
    va_end(args);
    e->status = status;
    e->code = code;
    return 0;
}

/* A member that is present and not null. */
static const cJSON *member(const cJSON *object, const char *name) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    return item && !cJSON_IsNull(item) ? item : NULL;
}

/* An optional number in [min, max]: 1 (and *out where present), else 0 with a 400. */
static int number_field(const cJSON *body, const char *name, double min, double max, double *out, request_error *e) {
    const cJSON *item = member(body, name);
    if (!item)
        return 1;
    if (!cJSON_IsNumber(item) || !(item->valuedouble >= min && item->valuedouble <= max))
        return fail_request(e, 400, NULL, "'%s' must be a number from %g to %g", name, min, max);
    *out = item->valuedouble;
    return 1;
}

/* An optional integer in [min, max], the same way. */
static int integer_field(const cJSON *body, const char *name, double min, double max, double *out,
                         request_error *e) {
    const cJSON *item = member(body, name);
    if (!item)
        return 1;
    if (!cJSON_IsNumber(item) || item->valuedouble != floor(item->valuedouble) || !(item->valuedouble >= min) ||
        !(item->valuedouble <= max))
        return fail_request(e, 400, NULL, "'%s' must be an integer from %.0f to %.0f", name, min, max);
    *out = item->valuedouble;
    return 1;
}

static int check_utf8(const char *what, const char *text, request_error *e) {
    size_t bad = 0;
    if (trinity_utf8_valid(text, strlen(text), &bad))
        return 1;
    return fail_request(e, 400, NULL, "%s is not UTF-8 text (invalid byte 0x%02x at offset %zu)", what,
                        (unsigned)(unsigned char)text[bad], bad);
}

typedef struct {
    int *ids;
    int n, cap;
} token_list;

static int tokens_add(token_list *list, int id) {
    if (list->n == list->cap) {
        const int cap = list->cap ? 2 * list->cap : 64;
        int *grown = realloc(list->ids, (size_t)cap * sizeof(int));
        if (!grown)
            return 0;
        list->ids = grown;
        list->cap = cap;
    }
    list->ids[list->n++] = id;
    return 1;
}

/* The tokens of len bytes of text (BOS first where add_bos) appended to the list. */
static int tokens_add_text(const server *s, token_list *list, const char *text, size_t len, int add_bos,
                           request_error *e) {
    int n = 0;
    trinity_tokenize(s->model, text, len, add_bos, NULL, 0, &n); /* the count */
    if (list->n + n > list->cap) {
        int *grown = realloc(list->ids, (size_t)(list->n + n + 1) * sizeof(int));
        if (!grown)
            return fail_request(e, 500, NULL, "out of memory for %d prompt tokens", n);
        list->ids = grown;
        list->cap = list->n + n + 1;
    }
    if (trinity_tokenize(s->model, text, len, add_bos, list->ids + list->n, list->cap - list->n, &n) != TRINITY_OK)
        return fail_request(e, 500, NULL, "tokenizing the prompt failed: %s", trinity_last_error());
    list->n += n;
    return 1;
}

/* The text of a chat message's content: a string, or an array of {"type": "text", "text": ...} parts (joined). */
static char *message_content(const cJSON *content, int index, request_error *e) {
    if (cJSON_IsString(content))
        return strdup(content->valuestring);
    if (!cJSON_IsArray(content)) {
        fail_request(e, 400, NULL, "messages[%d].content must be a string", index);
        return NULL;
    }
    strbuf text = {0};
    const cJSON *part;
    cJSON_ArrayForEach(part, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *part_text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 || !cJSON_IsString(part_text)) {
            sb_free(&text);
            fail_request(e, 400, NULL, "messages[%d].content: only text parts ({\"type\": \"text\", \"text\": ...}) "
                         "are supported", index);
            return NULL;
        }
        sb_adds(&text, part_text->valuestring);
    }
    if (text.failed) {
        sb_free(&text);
        fail_request(e, 500, NULL, "out of memory for a message");
        return NULL;
    }
    return text.data ? text.data : strdup("");
}

/* The prompt of a chat request: its messages rendered in the server's chat format and tokenized, BOS first. */
static int chat_prompt(const server *s, const cJSON *body, token_list *tokens, request_error *e) {
    const cJSON *messages = member(body, "messages");
    if (!messages)
        return fail_request(e, 400, NULL, "'messages' is missing: an array of {\"role\", \"content\"} objects");
    if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0)
        return fail_request(e, 400, NULL, "'messages' must be a non-empty array of {\"role\", \"content\"} objects");
    const int n = cJSON_GetArraySize(messages);
    trn_chat_message *list = calloc((size_t)n, sizeof(*list));
    char **contents = calloc((size_t)n, sizeof(char *));
    int ok = list && contents ? 1 : fail_request(e, 500, NULL, "out of memory for %d messages", n);
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, messages) {
        if (!ok)
            break;
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsObject(m))
            ok = fail_request(e, 400, NULL, "messages[%d] must be an object with \"role\" and \"content\"", i);
        else if (!cJSON_IsString(role))
            ok = fail_request(e, 400, NULL, "messages[%d].role must be a string", i);
        else if (strcmp(role->valuestring, "system") != 0 && strcmp(role->valuestring, "user") != 0 &&
                 strcmp(role->valuestring, "assistant") != 0)
            ok = fail_request(e, 400, NULL, "messages[%d].role '%.40s': expected system, user or assistant", i,
                              role->valuestring);
        else if (!content)
            ok = fail_request(e, 400, NULL, "messages[%d].content is missing", i);
        else if ((contents[i] = message_content(content, i, e)) == NULL)
            ok = 0;
        else {
            char what[48];
            snprintf(what, sizeof(what), "messages[%d].content", i);
            ok = check_utf8(what, contents[i], e);
            list[i] = (trn_chat_message){role->valuestring, contents[i]};
        }
        i++;
    }
    trn_chat_prompt rendered = {0};
    if (ok && trn_chat_render(s->chat_format, list, n, &rendered) != 0)
        ok = fail_request(e, 500, NULL, "out of memory for the chat prompt");
    /* BOS as the tokenizer adds it, once: the template's own where it starts with one */
    if (ok && (rendered.n_pieces == 0 || rendered.pieces[0].kind != TRN_CHAT_BOS))
        ok = tokens_add(tokens, trinity_token_bos(s->model)) ? 1 : fail_request(e, 500, NULL, "out of memory");
    for (int p = 0; ok && p < rendered.n_pieces; p++) {
        const trn_chat_piece *piece = &rendered.pieces[p];
        if (piece->kind == TRN_CHAT_TEXT)
            ok = tokens_add_text(s, tokens, rendered.text + piece->offset, piece->len, 0, e);
        else if (!tokens_add(tokens, piece->kind == TRN_CHAT_BOS ? trinity_token_bos(s->model)
                                                                  : trinity_token_eos(s->model)))
            ok = fail_request(e, 500, NULL, "out of memory");
    }
    trn_chat_prompt_free(&rendered);
    for (int k = 0; contents && k < n; k++)
        free(contents[k]);
    free(contents);
    free(list);
    return ok;
}

/* The prompt of a completion request: a string, or an array of one string, tokenized with BOS. */
static int completion_prompt(const server *s, const cJSON *body, token_list *tokens, request_error *e) {
    const cJSON *prompt = member(body, "prompt");
    if (prompt && cJSON_IsArray(prompt) && cJSON_GetArraySize(prompt) == 1 &&
        cJSON_IsString(cJSON_GetArrayItem(prompt, 0)))
        prompt = cJSON_GetArrayItem(prompt, 0);
    if (!prompt)
        return fail_request(e, 400, NULL, "'prompt' is missing");
    if (!cJSON_IsString(prompt))
        return fail_request(e, 400, NULL, "'prompt' must be a string or an array of one string");
    if (prompt->valuestring[0] == 0)
        return fail_request(e, 400, NULL, "the prompt is empty");
    if (!check_utf8("the prompt", prompt->valuestring, e))
        return 0;
    return tokens_add_text(s, tokens, prompt->valuestring, strlen(prompt->valuestring), 1, e);
}

static uint64_t mix64(uint64_t z) { /* splitmix64's finalizer */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* What a request asks for, checked: the prompt's tokens, the sampling settings, max_tokens, stop strings and
 * whether to stream. Returns the job (one reference) or NULL with the error. */
static job *parse_request(server *s, const char *body_text, size_t body_len, int chat, int *stream,
                          request_error *e) {
    const char *end = NULL;
    cJSON *body = cJSON_ParseWithLengthOpts(body_text, body_len, &end, 0);
    while (body && end && end < body_text + body_len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        end++;
    if (!body || (end && end < body_text + body_len)) {
        cJSON_Delete(body);
        fail_request(e, 400, NULL, "the request body is not valid JSON");
        return NULL;
    }
    job *j = calloc(1, sizeof(*j));
    token_list prompt = {0};
    trinity_session_params sampling = trinity_session_params_default();
    double max_tokens = -1, temperature = sampling.temperature, top_p = sampling.top_p, top_k = sampling.top_k;
    double repeat_penalty = sampling.repeat_penalty, seed = 0, n = 1;
    const cJSON *stream_item = member(body, "stream"), *stop = member(body, "stop");
    const cJSON *logprobs = member(body, "logprobs"), *echo = member(body, "echo");
    int ok = j ? 1 : fail_request(e, 500, NULL, "out of memory for a request");
    if (ok && !cJSON_IsObject(body))
        ok = fail_request(e, 400, NULL, "the request body must be a JSON object");
    ok = ok && integer_field(body, "n", 1, 1e9, &n, e);
    if (ok && n != 1)
        ok = fail_request(e, 400, NULL, "'n' must be 1: one completion per request");
    if (ok && stream_item && !cJSON_IsBool(stream_item))
        ok = fail_request(e, 400, NULL, "'stream' must be true or false");
    const int wants_logprobs = logprobs && !cJSON_IsFalse(logprobs) &&
                               !(cJSON_IsNumber(logprobs) && logprobs->valuedouble == 0);
    if (ok && (wants_logprobs || (echo && !cJSON_IsFalse(echo))))
        ok = fail_request(e, 400, NULL, "'%s' is not supported by this server", wants_logprobs ? "logprobs" : "echo");
    ok = ok && integer_field(body, "max_tokens", 0, 1e9, &max_tokens, e);
    ok = ok && integer_field(body, "max_completion_tokens", 0, 1e9, &max_tokens, e);
    ok = ok && number_field(body, "temperature", 0, 1e6, &temperature, e);
    ok = ok && number_field(body, "top_p", 1e-6, 1, &top_p, e);
    ok = ok && integer_field(body, "top_k", 0, 1e9, &top_k, e);
    ok = ok && number_field(body, "repeat_penalty", 1e-3, 1e3, &repeat_penalty, e);
    ok = ok && number_field(body, "repetition_penalty", 1e-3, 1e3, &repeat_penalty, e);
    ok = ok && integer_field(body, "seed", -9007199254740992.0, 9007199254740992.0, &seed, e);
    if (ok && stop) {
        const int n_stops = cJSON_IsString(stop) ? 1 : cJSON_IsArray(stop) ? cJSON_GetArraySize(stop) : -1;
        if (n_stops < 0 || n_stops > MAX_STOPS)
            ok = fail_request(e, 400, NULL, "'stop' must be a string or an array of up to %d strings", MAX_STOPS);
        for (int k = 0; ok && k < n_stops; k++) {
            const cJSON *item = cJSON_IsString(stop) ? stop : cJSON_GetArrayItem(stop, k);
            if (!cJSON_IsString(item) || item->valuestring[0] == 0)
                ok = fail_request(e, 400, NULL, "'stop' must hold non-empty strings");
            else if (check_utf8("a stop string", item->valuestring, e)) {
                j->stops[j->n_stops] = strdup(item->valuestring);
                j->stop_lens[j->n_stops] = strlen(item->valuestring);
                ok = j->stops[j->n_stops++] ? 1 : fail_request(e, 500, NULL, "out of memory");
            } else
                ok = 0;
        }
    }
    if (ok)
        ok = chat ? chat_prompt(s, body, &prompt, e) : completion_prompt(s, body, &prompt, e);
    if (ok && prompt.n >= s->n_ctx)
        ok = fail_request(e, 400, "context_length_exceeded",
                          "the prompt is %d tokens, and a slot holds %d positions for the prompt and the completion "
                          "together (-c is split across the --parallel slots)", prompt.n, s->n_ctx);
    if (ok) {
        sampling.temperature = (float)temperature;
        sampling.top_p = (float)top_p;
        sampling.top_k = (int)top_k;
        sampling.repeat_penalty = (float)repeat_penalty;
        pthread_mutex_lock(&s->lock);
        const uint64_t counter = ++s->request_counter;
        pthread_mutex_unlock(&s->lock);
        /* a seed as given (a negative one as its two's complement), else a new one per request */
        sampling.seed = member(body, "seed") ? (uint64_t)(int64_t)seed : mix64((uint64_t)time(NULL) ^ counter << 32);
        if (trinity_sampler_new(s->model, &sampling, &j->sampler) != TRINITY_OK)
            ok = fail_request(e, 400, NULL, "%s", trinity_last_error());
    }
    *stream = stream_item && cJSON_IsTrue(stream_item);
    cJSON_Delete(body);
    if (!ok) {
        free(prompt.ids);
        if (j)
            job_free(j);
        return NULL;
    }
    j->prompt = prompt.ids;
    j->n_prompt = prompt.n;
    j->max_tokens = (int)max_tokens;
    j->refs = 1;
    return j;
}

/* Queues a job (a second reference goes to the scheduler); 0 with a 503 where the queue is full or the server stops.
 * max_tokens 0 finishes at once. */
static int submit_job(server *s, job *j, request_error *e) {
    pthread_mutex_lock(&s->lock);
    int ok = 1;
    j->submitted_s = now_s();
    if (s->stopping) {
        ok = fail_request(e, 503, NULL, "the server is shutting down");
    } else if (j->max_tokens == 0) {
        j->state = JOB_DONE;
        j->finish_reason = "length";
    } else if (s->n_queued >= MAX_QUEUED) {
        ok = fail_request(e, 503, NULL, "the server is busy: %d requests are waiting for a slot; retry later",
                          s->n_queued);
    } else {
        j->state = JOB_QUEUED;
        j->refs++;
        if (s->queue_tail)
            s->queue_tail->next_queued = j;
        else
            s->queue_head = j;
        s->queue_tail = j;
        s->n_queued++;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->lock);
    return ok;
}

/* ---- replies: JSON out ---------------------------------------------------------------------------------------- */

/* What a reply needs besides the text: the id, the time, the kind of endpoint. */
typedef struct {
    char id[48];
    long long created;
    int chat;
} reply_head;

static void reply_head_init(server *s, reply_head *h, int chat) {
    pthread_mutex_lock(&s->lock);
    const uint64_t counter = ++s->request_counter;
    pthread_mutex_unlock(&s->lock);
    h->created = (long long)time(NULL);
    h->chat = chat;
    snprintf(h->id, sizeof(h->id), "%s-%016llx", chat ? "chatcmpl" : "cmpl",
             (unsigned long long)mix64((uint64_t)h->created << 20 ^ counter));
}

static void add_object_start(const server *s, strbuf *b, const reply_head *h, const char *object) {
    sb_addf(b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", h->id, object, h->created);
    sb_add_json_string(b, s->model_name, strlen(s->model_name));
}

static void add_usage(strbuf *b, int prompt_tokens, int completion_tokens) {
    sb_addf(b, ",\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}", prompt_tokens,
            completion_tokens, prompt_tokens + completion_tokens);
}

static void add_finish_reason(strbuf *b, const char *reason) {
    if (reason)
        sb_addf(b, ",\"finish_reason\":\"%s\"}]", reason);
    else
        sb_adds(b, ",\"finish_reason\":null}]");
}

/* The whole completion (non-streaming). */
static void completion_json(const server *s, strbuf *b, const reply_head *h, const char *text, size_t len,
                            const char *reason, int prompt_tokens, int completion_tokens) {
    add_object_start(s, b, h, h->chat ? "chat.completion" : "text_completion");
    if (h->chat) {
        sb_adds(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
        sb_add_json_string(b, text, len);
        sb_adds(b, "},\"logprobs\":null");
    } else {
        sb_adds(b, ",\"choices\":[{\"index\":0,\"text\":");
        sb_add_json_string(b, text, len);
        sb_adds(b, ",\"logprobs\":null");
    }
    add_finish_reason(b, reason);
    add_usage(b, prompt_tokens, completion_tokens);
    sb_adds(b, "}");
}

/* One server-sent event of a stream: new text (the chat's first also names the role), or the end with its finish
 * reason and the usage. */
static void chunk_event(const server *s, strbuf *b, const reply_head *h, const char *text, size_t len, int role,
                        const char *reason, int prompt_tokens, int completion_tokens) {
    sb_adds(b, "data: ");
    add_object_start(s, b, h, h->chat ? "chat.completion.chunk" : "text_completion");
    if (h->chat) {
        sb_adds(b, ",\"choices\":[{\"index\":0,\"delta\":{");
        if (role)
            sb_adds(b, "\"role\":\"assistant\",\"content\":\"\"");
        else if (!reason) {
            sb_adds(b, "\"content\":");
            sb_add_json_string(b, text, len);
        }
        sb_adds(b, "},\"logprobs\":null");
    } else {
        sb_adds(b, ",\"choices\":[{\"index\":0,\"text\":");
        sb_add_json_string(b, text, len);
        sb_adds(b, ",\"logprobs\":null");
    }
    add_finish_reason(b, reason);
    if (reason)
        add_usage(b, prompt_tokens, completion_tokens);
    sb_adds(b, "}\n\n");
}

static void error_json(strbuf *b, unsigned status, const char *message, const char *code) {
    sb_adds(b, "{\"error\":{\"message\":");
    sb_add_json_string(b, message, strlen(message));
    sb_addf(b, ",\"type\":\"%s\",\"param\":null,\"code\":", status >= 500 ? "server_error" : "invalid_request_error");
    if (code)
        sb_addf(b, "\"%s\"}}", code);
    else
        sb_adds(b, "null}}");
}

/* ---- HTTP ---------------------------------------------------------------------------------------------------- */

/* What MHD keeps for a request (*con_cls): the body as it arrives, and the job once queued. */
typedef struct {
    strbuf body;
    int body_too_large;
    job *job;
} request;

/* The state of a streamed reply, owned by its MHD response (freed with it). */
typedef struct {
    server *srv;
    job *job;          /* one reference */
    reply_head head;
    strbuf out;        /* events not yet handed to MHD: out.data[sent .. len) */
    size_t sent;
    size_t text_sent;  /* bytes of job->text already in events */
    int role_sent, finished;
} stream;

static mhd_result send_reply(struct MHD_Connection *c, unsigned status, const strbuf *b, const char *content_type,
                             const char *allow) {
    struct MHD_Response *r = MHD_create_response_from_buffer(b->len, b->data ? b->data : (void *)"",
                                                             MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", content_type);
    if (allow)
        MHD_add_response_header(r, "Allow", allow);
    if (status == 401)
        MHD_add_response_header(r, "WWW-Authenticate", "Bearer");
    const mhd_result result = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return result;
}

static mhd_result send_error(struct MHD_Connection *c, unsigned status, const char *message, const char *code,
                             const char *allow) {
    strbuf b = {0};
    error_json(&b, status, message, code);
    const mhd_result result = send_reply(c, status, &b, "application/json", allow);
    sb_free(&b);
    return result;
}

static mhd_result send_request_error(struct MHD_Connection *c, const request_error *e) {
    return send_error(c, e->status, e->message, e->code, NULL);
}

/* Whether the client has closed its end (a non-streaming request checks while it waits). */
static int client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info)
        return 0;
    char byte;
    const ssize_t n = recv(info->connect_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* Constant-time comparison of the Authorization header with "Bearer KEY". */
static int authorized(const server *s, struct MHD_Connection *c) {
    if (!s->api_key)
        return 1;
    const char *header = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!header || strncmp(header, "Bearer ", 7) != 0)
        return 0;
    const char *given = header + 7;
    const size_t given_len = strlen(given), key_len = strlen(s->api_key);
    unsigned char diff = given_len != key_len;
    for (size_t i = 0; i < key_len; i++)
        diff |= (unsigned char)(s->api_key[i] ^ given[i < given_len ? i : 0]);
    return diff == 0;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max);

static void stream_free(void *cls) {
    stream *st = cls;
    pthread_mutex_lock(&st->srv->lock);
    job_cancel_locked(st->srv, st->job);
    job_release_locked(st->job);
    pthread_mutex_unlock(&st->srv->lock);
    sb_free(&st->out);
    free(st);
}

/* The next events of a stream into st->out: new text, the end (also where the server stops), or (after KEEPALIVE_S
 * without either) a comment that keeps the connection open. 0 where memory ran out. */
static int stream_next_events(stream *st) {
    server *s = st->srv;
    job *j = st->job;
    sb_clear(&st->out);
    st->sent = 0;
    if (st->head.chat && !st->role_sent) {
        chunk_event(s, &st->out, &st->head, "", 0, 1, NULL, 0, 0);
        st->role_sent = 1;
        return !st->out.failed;
    }
    strbuf text = {0};
    pthread_mutex_lock(&s->lock);
    const struct timespec deadline = deadline_in(KEEPALIVE_S);
    while (j->text.len == st->text_sent && j->state != JOB_DONE && !s->stopping)
        if (pthread_cond_timedwait(&s->progress, &s->lock, &deadline) == ETIMEDOUT)
            break;
    if (j->text.len > st->text_sent)
        sb_add(&text, j->text.data + st->text_sent, j->text.len - st->text_sent);
    st->text_sent = j->text.len;
    const int done = j->state == JOB_DONE || s->stopping; /* at a stop, the end now, before the job's */
    const char *reason = j->state == JOB_DONE ? j->finish_reason : NULL;
    char error[sizeof(j->error)];
    snprintf(error, sizeof(error), "%s", j->state == JOB_DONE ? j->error : "the server is shutting down");
    const int n_generated = j->n_generated, n_prompt = j->n_prompt;
    pthread_mutex_unlock(&s->lock);
    if (text.len > 0)
        chunk_event(s, &st->out, &st->head, text.data, text.len, 0, NULL, 0, 0);
    if (done) {
        if (reason) {
            chunk_event(s, &st->out, &st->head, "", 0, 0, reason, n_prompt, n_generated);
        } else {
            sb_adds(&st->out, "data: ");
            error_json(&st->out, 500, error[0] ? error : "the request was cancelled", NULL);
            sb_adds(&st->out, "\n\n");
        }
        sb_adds(&st->out, "data: [DONE]\n\n");
        st->finished = 1;
    } else if (text.len == 0) {
        sb_adds(&st->out, ": keep-alive\n\n");
    }
    const int ok = !text.failed && !st->out.failed;
    sb_free(&text);
    return ok;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    stream *st = cls;
    (void)pos;
    while (st->sent == st->out.len) {
        if (st->finished)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (!stream_next_events(st))
            return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    const size_t n = TRN_MIN(max, st->out.len - st->sent);
    memcpy(buf, st->out.data + st->sent, n);
    st->sent += n;
    return (ssize_t)n;
}

/* A streamed reply: server-sent events as the scheduler hands the text over. */
static mhd_result reply_stream(server *s, struct MHD_Connection *c, job *j, int chat) {
    stream *st = calloc(1, sizeof(*st));
    if (!st)
        return send_error(c, 500, "out of memory for a stream", NULL, NULL);
    st->srv = s;
    st->job = j;
    pthread_mutex_lock(&s->lock);
    j->refs++;
    pthread_mutex_unlock(&s->lock);
    reply_head_init(s, &st->head, chat);
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_read, st,
                                                               stream_free);
    if (!r) {
        stream_free(st);
        return send_error(c, 500, "out of memory for a stream", NULL, NULL);
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    const mhd_result result = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return result;
}

/* A whole reply: waits for the job, checking that the client is still there. */
static mhd_result reply_whole(server *s, struct MHD_Connection *c, job *j, int chat) {
    reply_head head;
    reply_head_init(s, &head, chat);
    pthread_mutex_lock(&s->lock);
    struct timespec next_check = deadline_in(DISCONNECT_POLL_MS / 1000.0);
    while (j->state != JOB_DONE && !s->stopping) {
        if (pthread_cond_timedwait(&s->progress, &s->lock, &next_check) != ETIMEDOUT)
            continue; /* woken by progress, maybe another job's: the client is checked on schedule */
        pthread_mutex_unlock(&s->lock);
        const int gone = client_gone(c);
        pthread_mutex_lock(&s->lock);
        if (gone) {
            job_cancel_locked(s, j);
            pthread_mutex_unlock(&s->lock);
            return MHD_NO; /* nobody to answer */
        }
        next_check = deadline_in(DISCONNECT_POLL_MS / 1000.0);
    }
    if (j->state != JOB_DONE) { /* the server stops */
        pthread_mutex_unlock(&s->lock);
        return send_error(c, 503, "the server is shutting down", NULL, NULL);
    }
    strbuf b = {0};
    unsigned status = 200;
    if (j->finish_reason)
        completion_json(s, &b, &head, j->text.data ? j->text.data : "", j->text.len, j->finish_reason, j->n_prompt,
                        j->n_generated);
    else
        error_json(&b, status = 500, j->error[0] ? j->error : "the request was cancelled", NULL);
    pthread_mutex_unlock(&s->lock);
    const mhd_result result = b.failed ? send_error(c, 500, "out of memory for the reply", NULL, NULL)
                                       : send_reply(c, status, &b, "application/json", NULL);
    sb_free(&b);
    return result;
}

static mhd_result handle_completion(server *s, struct MHD_Connection *c, request *req, int chat) {
    request_error e = {0};
    int stream_reply = 0;
    job *j = parse_request(s, req->body.data ? req->body.data : "", req->body.len, chat, &stream_reply, &e);
    if (!j)
        return send_request_error(c, &e);
    if (!submit_job(s, j, &e)) {
        pthread_mutex_lock(&s->lock);
        job_release_locked(j);
        pthread_mutex_unlock(&s->lock);
        return send_request_error(c, &e);
    }
    req->job = j; /* released (and cancelled where unfinished) when MHD says the request is over */
    return stream_reply ? reply_stream(s, c, j, chat) : reply_whole(s, c, j, chat);
}

static mhd_result handle_health(server *s, struct MHD_Connection *c) {
    strbuf b = {0};
    pthread_mutex_lock(&s->lock);
    sb_addf(&b, "{\"status\":\"ok\",\"slots_idle\":%d,\"slots_busy\":%d,\"requests_queued\":%d}",
            s->n_slots - s->n_busy, s->n_busy, s->n_queued);
    pthread_mutex_unlock(&s->lock);
    const mhd_result result = send_reply(c, 200, &b, "application/json", NULL);
    sb_free(&b);
    return result;
}

static mhd_result handle_models(server *s, struct MHD_Connection *c) {
    strbuf b = {0};
    sb_adds(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
    sb_add_json_string(&b, s->model_name, strlen(s->model_name));
    sb_addf(&b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"trinity\",\"meta\":{\"n_ctx_slot\":%d,"
            "\"n_slots\":%d,\"n_vocab\":%d}}]}", (long long)time(NULL), s->n_ctx, s->n_slots, s->n_vocab);
    const mhd_result result = send_reply(c, 200, &b, "application/json", NULL);
    sb_free(&b);
    return result;
}

static mhd_result handle_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                 const char *version, const char *upload_data, size_t *upload_data_size,
                                 void **con_cls) {
    server *s = cls;
    (void)version;
    request *req = *con_cls;
    if (!req) { /* the headers: the body follows in later calls */
        if (!(req = calloc(1, sizeof(*req))))
            return MHD_NO;
        *con_cls = req;
        pthread_mutex_lock(&s->lock);
        s->n_open_requests++;
        pthread_mutex_unlock(&s->lock);
        const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (length && strtoull(length, NULL, 10) > MAX_DISCARDED_BODY)
            return send_error(c, 413, "the request body is larger than 1 MB", NULL, NULL);
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (req->body.len + *upload_data_size > MAX_BODY_BYTES)
            req->body_too_large = 1;
        if (!req->body_too_large)
            sb_add(&req->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    const int get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0, post = strcmp(method, "POST") == 0;
    int chat = 0;
    if (strcmp(url, "/health") == 0)
        return get ? handle_health(s, c) : send_error(c, 405, "/health takes GET", NULL, "GET, HEAD");
    if (strcmp(url, "/v1/models") != 0 && !(chat = strcmp(url, "/v1/chat/completions") == 0) &&
        strcmp(url, "/v1/completions") != 0) {
        char message[300];
        snprintf(message, sizeof(message), "no such endpoint: %.200s (this server has /v1/completions, "
                 "/v1/chat/completions, /v1/models and /health)", url);
        return send_error(c, 404, message, "not_found", NULL);
    }
    if (!authorized(s, c))
        return send_error(c, 401, s->api_key && MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization")
                                      ? "the API key is wrong"
                                      : "an API key is needed: send \"Authorization: Bearer KEY\"",
                          "invalid_api_key", NULL);
    if (strcmp(url, "/v1/models") == 0)
        return get ? handle_models(s, c) : send_error(c, 405, "/v1/models takes GET", NULL, "GET, HEAD");
    if (!post) {
        char message[96];
        snprintf(message, sizeof(message), "%s takes POST", url);
        return send_error(c, 405, message, NULL, "POST");
    }
    if (req->body_too_large)
        return send_error(c, 413, "the request body is larger than 1 MB", NULL, NULL);
    if (req->body.failed)
        return send_error(c, 500, "out of memory for the request body", NULL, NULL);
    return handle_completion(s, c, req, chat);
}

/* MHD is done with a request (answered, or the client went away): an unfinished job is cancelled. */
static void request_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                              enum MHD_RequestTerminationCode code) {
    server *s = cls;
    request *req = *con_cls;
    (void)c;
    (void)code;
    if (!req)
        return;
    pthread_mutex_lock(&s->lock);
    if (req->job) {
        job_cancel_locked(s, req->job);
        job_release_locked(req->job);
    }
    s->n_open_requests--;
    pthread_cond_broadcast(&s->progress);
    pthread_mutex_unlock(&s->lock);
    sb_free(&req->body);
    free(req);
    *con_cls = NULL;
}

/* ---- start and stop -------------------------------------------------------------------------------------------- */

/* A listening TCP socket on host:port (port 0: a free one): its descriptor, and the port in *bound; -1 with one
 * line on standard error. */
static int open_listener(const char *host, int port, int *bound) {
    char service[16];
    snprintf(service, sizeof(service), "%d", port);
    struct addrinfo hints, *addresses = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    const int rc = getaddrinfo(host, service, &hints, &addresses);
    if (rc != 0) {
        fprintf(stderr, "error: --host %s: %s\n", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1, error = 0;
    for (const struct addrinfo *a = addresses; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) {
            error = errno;
            continue;
        }
        const int on = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 128) != 0) {
            error = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(addresses);
    if (fd < 0) {
        fprintf(stderr, "error: cannot listen on %s port %d: %s\n", host, port, strerror(error));
        return -1;
    }
    struct sockaddr_storage address;
    socklen_t length = sizeof(address);
    *bound = port;
    if (getsockname(fd, (struct sockaddr *)&address, &length) == 0)
        *bound = address.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&address)->sin6_port)
                                               : ntohs(((struct sockaddr_in *)&address)->sin_port);
    return fd;
}

/* The chat format: --chat-template, else the model's template by its markers, else chatml for a model without one;
 * 0 with one line where the model's template is none of the known ones. */
static int choose_chat_format(const trinity_model *model, const char *forced, trn_chat_format *format) {
    if (forced) {
        if (!trn_chat_format_from_name(forced, format)) {
            fprintf(stderr, "error: --chat-template %s: expected %s\n", forced, TRN_CHAT_FORMAT_NAMES);
            return 0;
        }
        fprintf(stderr, "chat template: %s (--chat-template)\n", forced);
        return 1;
    }
    size_t len = 0;
    char probe[1];
    if (trinity_model_meta_string(model, "tokenizer.chat_template", probe, sizeof(probe), &len) != TRINITY_OK) {
        *format = TRN_CHAT_CHATML;
        fprintf(stderr, "chat template: chatml (the model has no tokenizer.chat_template; --chat-template to "
                        "choose)\n");
        return 1;
    }
    char *text = malloc(len + 1);
    const int known = text && trinity_model_meta_string(model, "tokenizer.chat_template", text, len + 1, NULL) ==
                                  TRINITY_OK && trn_chat_format_detect(text, format);
    free(text);
    if (!known) {
        fprintf(stderr, "error: the model's tokenizer.chat_template is none of the formats this server knows "
                        "(llama2, zephyr, chatml, recognised by their markers): choose one with --chat-template "
                        TRN_CHAT_FORMAT_NAMES "\n");
        return 0;
    }
    fprintf(stderr, "chat template: %s (from the model's tokenizer.chat_template)\n", trn_chat_format_name(*format));
    return 1;
}

/* The model's name as valid UTF-8 (a file's general.name may hold any bytes). */
static char *utf8_copy(const char *name) {
    strbuf b = {0};
    utf8_decoder d = {{0}, 0};
    utf8_decode(&d, name, strlen(name), &b);
    utf8_finish(&d, &b);
    if (b.failed) {
        sb_free(&b);
        return NULL;
    }
    return b.data ? b.data : strdup("");
}

static void server_free(server *s) {
    for (int i = 0; s->slots && i < s->n_slots; i++) {
        free(s->slots[i].tokens);
        sb_free(&s->slots[i].held);
        sb_free(&s->slots[i].outbox);
    }
    free(s->slots);
    free(s->logits);
    free(s->step_tokens);
    free(s->row_slot);
    free(s->model_name);
    trinity_batch_free(s->batch);
    trinity_model_free(s->model);
}

/* The model, the chat format, the batch and the scheduler's buffers; 0 with one line on failure. */
static int server_open(server *s, const trn_serve_options *o) {
    const double t0 = now_s();
    if (trinity_model_open(o->model_path, &o->model_params, &s->model) != TRINITY_OK) {
        fprintf(stderr, "error: %s\n", trinity_last_error());
        return 0;
    }
    fprintf(stderr, "load: %s in %.2f s\n", trinity_model_name(s->model), now_s() - t0);
    if (!choose_chat_format(s->model, o->chat_template, &s->chat_format))
        return 0;
    const int n_train = trinity_model_n_ctx_train(s->model);
    const int total = o->n_ctx_total > 0 ? o->n_ctx_total : TRN_MIN(n_train, TRINITY_DEFAULT_CONTEXT);
    s->n_slots = o->n_parallel;
    s->n_ctx = total / o->n_parallel;
    if (s->n_ctx < 2) {
        fprintf(stderr, "error: a context of %d positions (-c) split across %d slots (--parallel) leaves %d per slot; "
                "each needs at least 2\n", total, o->n_parallel, s->n_ctx);
        return 0;
    }
    fprintf(stderr, "context: %d positions%s across %d slot%s: %d per slot\n", total,
            o->n_ctx_total > 0 ? "" : " (the model's context, at most 4096; -c to change)", s->n_slots,
            s->n_slots == 1 ? "" : "s", s->n_ctx);
    if (s->n_ctx > n_train)
        fprintf(stderr, "warning: %d positions per slot exceed the context length the model declares (%d)\n", s->n_ctx,
                n_train);
    trinity_batch_params bp = trinity_batch_params_default();
    bp.n_slots = s->n_slots;
    bp.n_ctx = s->n_ctx;
    if (trinity_batch_new(s->model, &bp, &s->batch) != TRINITY_OK) {
        fprintf(stderr, "error: %s\n", trinity_last_error());
        return 0;
    }
    s->n_vocab = trinity_model_n_vocab(s->model);
    s->eos = trinity_token_eos(s->model);
    s->model_name = utf8_copy(trinity_model_name(s->model));
    s->slots = calloc((size_t)s->n_slots, sizeof(slot));
    s->logits = malloc((size_t)s->n_slots * (size_t)s->n_vocab * sizeof(float));
    s->step_tokens = malloc((size_t)(s->n_slots + PROMPT_TOKENS_PER_STEP) * sizeof(trinity_batch_token));
    s->row_slot = malloc((size_t)s->n_slots * sizeof(int));
    int ok = s->model_name && s->slots && s->logits && s->step_tokens && s->row_slot;
    for (int i = 0; ok && i < s->n_slots; i++)
        ok = (s->slots[i].tokens = malloc((size_t)s->n_ctx * sizeof(int))) != NULL;
    if (!ok)
        fprintf(stderr, "error: out of memory for the server's %d slots\n", s->n_slots);
    return ok;
}

int trn_serve(const trn_serve_options *o) {
    server s;
    memset(&s, 0, sizeof(s));
    s.api_key = o->api_key;
    if (!server_open(&s, o)) {
        server_free(&s);
        return 1;
    }
    int port = 0;
    const int listen_fd = open_listener(o->host, o->port, &port);
    if (listen_fd < 0) {
        server_free(&s);
        return 1;
    }

    /* SIGINT and SIGTERM are taken by sigwait below: blocked here, before any thread starts, so every thread
     * inherits the mask. A write to a closed connection fails instead of killing the process. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    pthread_condattr_t monotonic;
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_mutex_init(&s.lock, NULL);
    pthread_cond_init(&s.work, &monotonic);
    pthread_cond_init(&s.progress, &monotonic);
    pthread_condattr_destroy(&monotonic);
    int rc = 0;
    if (pthread_create(&s.scheduler, NULL, scheduler_main, &s) != 0) {
        fprintf(stderr, "error: cannot start the scheduler thread\n");
        close(listen_fd);
        rc = 1;
    } else {
        s.scheduler_started = 1;
    }
    struct MHD_Daemon *daemon = NULL;
    if (rc == 0) {
        daemon = MHD_start_daemon(MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION, 0,
                                  NULL, NULL, handle_request, &s, MHD_OPTION_LISTEN_SOCKET, listen_fd,
                                  MHD_OPTION_NOTIFY_COMPLETED, request_completed, &s, MHD_OPTION_CONNECTION_LIMIT,
                                  (unsigned)MAX_CONNECTIONS, MHD_OPTION_END);
        if (!daemon) {
            fprintf(stderr, "error: the HTTP server (libmicrohttpd) did not start on %s port %d\n", o->host, port);
            close(listen_fd);
            rc = 1;
        }
    }
    if (rc == 0) {
        const int ipv6 = strchr(o->host, ':') != NULL;
        fprintf(stderr, "listening on http://%s%s%s:%d (%d slot%s of %d positions, %s)\n", ipv6 ? "[" : "", o->host,
                ipv6 ? "]" : "", port, s.n_slots, s.n_slots == 1 ? "" : "s", s.n_ctx, trinity_batch_device(s.batch));
        int signal_number = 0;
        while (sigwait(&stop_signals, &signal_number) != 0) {
        }
        fprintf(stderr, "stopping (signal %d)\n", signal_number);
    }
    pthread_mutex_lock(&s.lock);
    s.stopping = 1;
    pthread_cond_broadcast(&s.work);
    pthread_cond_broadcast(&s.progress);
    pthread_mutex_unlock(&s.lock);
    if (s.scheduler_started)
        pthread_join(s.scheduler, NULL);
    /* every job is over now: the replies still being sent (streams ending with an error event) get a moment */
    pthread_mutex_lock(&s.lock);
    const struct timespec grace = deadline_in(STOP_GRACE_S);
    while (s.n_open_requests > 0 && pthread_cond_timedwait(&s.progress, &s.lock, &grace) != ETIMEDOUT) {
    }
    pthread_mutex_unlock(&s.lock);
    if (daemon)
        MHD_stop_daemon(daemon); /* closes the connections left and waits for their threads */
    pthread_cond_destroy(&s.work);
    pthread_cond_destroy(&s.progress);
    pthread_mutex_destroy(&s.lock);
    server_free(&s);
    return rc;
}

#else /* a build without libmicrohttpd or cJSON */

#include <stdio.h>

int trn_serve(const trn_serve_options *options) {
    (void)options;
    fprintf(stderr, "error: this build has no HTTP server: install libmicrohttpd-dev (and libcjson-dev) and rebuild\n");
    return 1;
}

#endif
