/* server.c: `trinity serve` (server.h), an OpenAI-compatible HTTP server on the public API (trinity.h) with
 * continuous batching.
 *
 * Owns the HTTP side (libmicrohttpd, one thread per connection: routing, the API key, request bodies, the JSON of
 * replies, server-sent events), the request queue, and the scheduler: one thread that alone uses the trinity_batch.
 * A request's JSON is checked by server_request.c; the text side (UTF-8, stop strings) is server_text.c. Each scheduler step is one trinity_batch_decode call holding one token of every
 * generating slot and chunks of the prompts being read, then one trinity_sampler draw per slot whose logits came
 * back; the pieces become text (whole UTF-8 characters, ill-formed bytes as U+FFFD; text that could begin a stop
 * string held back) that is handed to the connections under one mutex, with a condition variable. Connection
 * threads never touch the batch: they queue a request, wait on the condition variable and send what was handed
 * over; a client that goes away cancels its request, which frees its slot. */
#define _POSIX_C_SOURCE 200809L
#include "server.h"

#if defined(TRN_HAVE_MICROHTTPD) && defined(TRN_HAVE_CJSON)

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "chat.h"
#include "common.h"
#include "server_request.h"
#include "server_text.h"

#if MHD_VERSION >= 0x00097002
typedef enum MHD_Result mhd_result;
#else
typedef int mhd_result;
#endif

#define MAX_BODY_BYTES (1u << 20)         /* a request body larger than this: 413 */
#define MAX_DISCARDED_BODY (64u << 20)    /* beyond this (Content-Length) the 413 goes out before the body is read */
#define MAX_QUEUED 64                     /* requests waiting for a slot; one more: 503 */
#define PROMPT_TOKENS_PER_STEP 128        /* prompt tokens of all slots together in one scheduler step */
#define MAX_CONNECTIONS 256               /* open connections (threads) at once */
#define KEEPALIVE_S 5                     /* an SSE comment after this long without text */
#define DISCONNECT_POLL_MS 200            /* a non-streaming request checks its client this often */
#define STOP_GRACE_S 5                    /* at a stop, open requests get this long to send their last bytes */

/* ---- requests (jobs) and the server ------------------------------------------------------------------------- */

typedef enum { JOB_QUEUED, JOB_RUNNING, JOB_DONE } job_state;

/* One completion. The connection fills the first part and queues it; the scheduler reads it and, under the server's
 * lock, appends text and finally sets the state to JOB_DONE. Freed when both have let go of it (refs). */
typedef struct job {
    int *prompt;
    int n_prompt;
    trinity_sampler *sampler;
    int max_tokens; /* -1: until EOS or the slot's context is full */
    char *stops[TRN_MAX_STOPS];
    size_t stop_lens[TRN_MAX_STOPS];
    int n_stops;
    double submitted_s;
    /* under the server's lock */
    job_state state;
    int cancelled;
    trn_strbuf text;               /* the completion so far: final text, safe to send */
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
    trn_utf8_decoder decoder;
    trn_strbuf held;   /* decoded text not yet released: it could begin a stop string */
    trn_strbuf outbox; /* text released in this step, handed over under the lock */
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
    trn_sb_free(&j->text);
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

/* Moves the slot's held text to its outbox, as far as it is final (trn_stop_release); 1 at a stop string. */
static int release_text(slot *sl, int all) {
    const job *j = sl->job;
    return trn_stop_release(&sl->held, &sl->outbox, j->stops, j->stop_lens, j->n_stops, all);
}

/* The slot's sequence ends ("stop" or "length"): what is held goes out, but for a stop string and what follows. */
static void finish_slot(slot *sl, const char *reason) {
    trn_utf8_finish(&sl->decoder, &sl->held);
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
    trn_utf8_decode(&sl->decoder, text, len, &sl->held);
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
    trn_sb_clear(&sl->held);
    trn_sb_clear(&sl->outbox);
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
            trn_sb_add(&j->text, sl->outbox.data ? sl->outbox.data : "", sl->outbox.len);
            trn_sb_clear(&sl->outbox);
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

static uint64_t mix64(uint64_t z) { /* splitmix64's finalizer */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* A request's JSON checked (trn_request_parse) and its sampler made: the job (one reference) or NULL with the
 * error. */
static job *parse_request(server *s, const char *body, size_t len, int chat, int *stream, trn_request_error *e) {
    const trn_request_context context = {s->model, s->chat_format, s->n_ctx};
    trn_request r;
    if (!trn_request_parse(&context, body, len, chat, &r, e))
        return NULL;
    job *j = calloc(1, sizeof(*j));
    if (!j) {
        trn_request_free(&r);
        trn_request_fail(e, 500, NULL, "out of memory for a request");
        return NULL;
    }
    pthread_mutex_lock(&s->lock);
    const uint64_t counter = ++s->request_counter;
    pthread_mutex_unlock(&s->lock);
    if (!r.has_seed) /* a new seed per request */
        r.sampling.seed = mix64((uint64_t)time(NULL) ^ counter << 32);
    if (trinity_sampler_new(s->model, &r.sampling, &j->sampler) != TRINITY_OK) {
        trn_request_fail(e, 400, NULL, "%s", trinity_last_error());
        trn_request_free(&r);
        free(j);
        return NULL;
    }
    j->prompt = r.prompt; /* the job owns the prompt and the stop strings now */
    j->n_prompt = r.n_prompt;
    j->max_tokens = r.max_tokens;
    memcpy(j->stops, r.stops, sizeof(j->stops));
    memcpy(j->stop_lens, r.stop_lens, sizeof(j->stop_lens));
    j->n_stops = r.n_stops;
    j->refs = 1;
    *stream = r.stream;
    return j;
}

/* Queues a job (a second reference goes to the scheduler); 0 with a 503 where the queue is full or the server stops.
 * max_tokens 0 finishes at once. */
static int submit_job(server *s, job *j, trn_request_error *e) {
    pthread_mutex_lock(&s->lock);
    int ok = 1;
    j->submitted_s = now_s();
    if (s->stopping) {
        ok = trn_request_fail(e, 503, NULL, "the server is shutting down");
    } else if (j->max_tokens == 0) {
        j->state = JOB_DONE;
        j->finish_reason = "length";
    } else if (s->n_queued >= MAX_QUEUED) {
        ok = trn_request_fail(e, 503, NULL, "the server is busy: %d requests are waiting for a slot; retry later",
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

static void add_object_start(const server *s, trn_strbuf *b, const reply_head *h, const char *object) {
    trn_sb_addf(b, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld,\"model\":", h->id, object, h->created);
    trn_sb_add_json_string(b, s->model_name, strlen(s->model_name));
}

static void add_usage(trn_strbuf *b, int prompt_tokens, int completion_tokens) {
    trn_sb_addf(b, ",\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}", prompt_tokens,
            completion_tokens, prompt_tokens + completion_tokens);
}

static void add_finish_reason(trn_strbuf *b, const char *reason) {
    if (reason)
        trn_sb_addf(b, ",\"finish_reason\":\"%s\"}]", reason);
    else
        trn_sb_adds(b, ",\"finish_reason\":null}]");
}

/* The whole completion (non-streaming). */
static void completion_json(const server *s, trn_strbuf *b, const reply_head *h, const char *text, size_t len,
                            const char *reason, int prompt_tokens, int completion_tokens) {
    add_object_start(s, b, h, h->chat ? "chat.completion" : "text_completion");
    if (h->chat) {
        trn_sb_adds(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
        trn_sb_add_json_string(b, text, len);
        trn_sb_adds(b, "},\"logprobs\":null");
    } else {
        trn_sb_adds(b, ",\"choices\":[{\"index\":0,\"text\":");
        trn_sb_add_json_string(b, text, len);
        trn_sb_adds(b, ",\"logprobs\":null");
    }
    add_finish_reason(b, reason);
    add_usage(b, prompt_tokens, completion_tokens);
    trn_sb_adds(b, "}");
}

/* One server-sent event of a stream: new text (the chat's first also names the role), or the end with its finish
 * reason and the usage. */
static void chunk_event(const server *s, trn_strbuf *b, const reply_head *h, const char *text, size_t len, int role,
                        const char *reason, int prompt_tokens, int completion_tokens) {
    trn_sb_adds(b, "data: ");
    add_object_start(s, b, h, h->chat ? "chat.completion.chunk" : "text_completion");
    if (h->chat) {
        trn_sb_adds(b, ",\"choices\":[{\"index\":0,\"delta\":{");
        if (role)
            trn_sb_adds(b, "\"role\":\"assistant\",\"content\":\"\"");
        else if (!reason) {
            trn_sb_adds(b, "\"content\":");
            trn_sb_add_json_string(b, text, len);
        }
        trn_sb_adds(b, "},\"logprobs\":null");
    } else {
        trn_sb_adds(b, ",\"choices\":[{\"index\":0,\"text\":");
        trn_sb_add_json_string(b, text, len);
        trn_sb_adds(b, ",\"logprobs\":null");
    }
    add_finish_reason(b, reason);
    if (reason)
        add_usage(b, prompt_tokens, completion_tokens);
    trn_sb_adds(b, "}\n\n");
}

static void error_json(trn_strbuf *b, unsigned status, const char *message, const char *code) {
    trn_sb_adds(b, "{\"error\":{\"message\":");
    trn_sb_add_json_string(b, message, strlen(message));
    trn_sb_addf(b, ",\"type\":\"%s\",\"param\":null,\"code\":", status >= 500 ? "server_error" : "invalid_request_error");
    if (code)
        trn_sb_addf(b, "\"%s\"}}", code);
    else
        trn_sb_adds(b, "null}}");
}

/* ---- HTTP ---------------------------------------------------------------------------------------------------- */

/* What MHD keeps for a request (*con_cls): the body as it arrives, and the job once queued. */
typedef struct {
    trn_strbuf body;
    int body_too_large;
    job *job;
} request;

/* The state of a streamed reply, owned by its MHD response (freed with it). */
typedef struct {
    server *srv;
    job *job;          /* one reference */
    reply_head head;
    trn_strbuf out;        /* events not yet handed to MHD: out.data[sent .. len) */
    size_t sent;
    size_t text_sent;  /* bytes of job->text already in events */
    int role_sent, finished;
} stream;

static mhd_result send_reply(struct MHD_Connection *c, unsigned status, const trn_strbuf *b, const char *content_type,
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
    trn_strbuf b = {0};
    error_json(&b, status, message, code);
    const mhd_result result = send_reply(c, status, &b, "application/json", allow);
    trn_sb_free(&b);
    return result;
}

static mhd_result send_request_error(struct MHD_Connection *c, const trn_request_error *e) {
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
    trn_sb_free(&st->out);
    free(st);
}

/* The next events of a stream into st->out: new text, the end (also where the server stops), or (after KEEPALIVE_S
 * without either) a comment that keeps the connection open. 0 where memory ran out. */
static int stream_next_events(stream *st) {
    server *s = st->srv;
    job *j = st->job;
    trn_sb_clear(&st->out);
    st->sent = 0;
    if (st->head.chat && !st->role_sent) {
        chunk_event(s, &st->out, &st->head, "", 0, 1, NULL, 0, 0);
        st->role_sent = 1;
        return !st->out.failed;
    }
    trn_strbuf text = {0};
    pthread_mutex_lock(&s->lock);
    const struct timespec deadline = deadline_in(KEEPALIVE_S);
    while (j->text.len == st->text_sent && j->state != JOB_DONE && !s->stopping)
        if (pthread_cond_timedwait(&s->progress, &s->lock, &deadline) == ETIMEDOUT)
            break;
    if (j->text.len > st->text_sent)
        trn_sb_add(&text, j->text.data + st->text_sent, j->text.len - st->text_sent);
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
            trn_sb_adds(&st->out, "data: ");
            error_json(&st->out, 500, error[0] ? error : "the request was cancelled", NULL);
            trn_sb_adds(&st->out, "\n\n");
        }
        trn_sb_adds(&st->out, "data: [DONE]\n\n");
        st->finished = 1;
    } else if (text.len == 0) {
        trn_sb_adds(&st->out, ": keep-alive\n\n");
    }
    const int ok = !text.failed && !st->out.failed;
    trn_sb_free(&text);
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
    trn_strbuf b = {0};
    unsigned status = 200;
    if (j->finish_reason)
        completion_json(s, &b, &head, j->text.data ? j->text.data : "", j->text.len, j->finish_reason, j->n_prompt,
                        j->n_generated);
    else
        error_json(&b, status = 500, j->error[0] ? j->error : "the request was cancelled", NULL);
    pthread_mutex_unlock(&s->lock);
    const mhd_result result = b.failed ? send_error(c, 500, "out of memory for the reply", NULL, NULL)
                                       : send_reply(c, status, &b, "application/json", NULL);
    trn_sb_free(&b);
    return result;
}

static mhd_result handle_completion(server *s, struct MHD_Connection *c, request *req, int chat) {
    trn_request_error e = {0};
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
    trn_strbuf b = {0};
    pthread_mutex_lock(&s->lock);
    trn_sb_addf(&b, "{\"status\":\"ok\",\"slots_idle\":%d,\"slots_busy\":%d,\"requests_queued\":%d}",
            s->n_slots - s->n_busy, s->n_busy, s->n_queued);
    pthread_mutex_unlock(&s->lock);
    const mhd_result result = send_reply(c, 200, &b, "application/json", NULL);
    trn_sb_free(&b);
    return result;
}

static mhd_result handle_models(server *s, struct MHD_Connection *c) {
    trn_strbuf b = {0};
    trn_sb_adds(&b, "{\"object\":\"list\",\"data\":[{\"id\":");
    trn_sb_add_json_string(&b, s->model_name, strlen(s->model_name));
    trn_sb_addf(&b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"trinity\",\"meta\":{\"n_ctx_slot\":%d,"
            "\"n_slots\":%d,\"n_vocab\":%d}}]}", (long long)time(NULL), s->n_ctx, s->n_slots, s->n_vocab);
    const mhd_result result = send_reply(c, 200, &b, "application/json", NULL);
    trn_sb_free(&b);
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
            trn_sb_add(&req->body, upload_data, *upload_data_size);
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
    trn_sb_free(&req->body);
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
    trn_strbuf b = {0};
    trn_utf8_decoder d = {{0}, 0};
    trn_utf8_decode(&d, name, strlen(name), &b);
    trn_utf8_finish(&d, &b);
    if (b.failed) {
        trn_sb_free(&b);
        return NULL;
    }
    return b.data ? b.data : strdup("");
}

static void server_free(server *s) {
    for (int i = 0; s->slots && i < s->n_slots; i++) {
        free(s->slots[i].tokens);
        trn_sb_free(&s->slots[i].held);
        trn_sb_free(&s->slots[i].outbox);
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
