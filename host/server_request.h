/* server_request.h: the JSON of a `trinity serve` request (/v1/completions, /v1/chat/completions) checked and turned
 * into what the scheduler runs: the prompt's tokens, the sampling settings, max_tokens, stop strings and whether to
 * stream (server_request.c, on cJSON). Apart from HTTP so that a fuzz target can drive it alone. */
#ifndef TRN_SERVER_REQUEST_H
#define TRN_SERVER_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "chat.h"
#include "trinity.h"

#define TRN_MAX_STOPS 4

/* Why a request was refused: the HTTP status, one line, and OpenAI's error "code" (or NULL). */
typedef struct {
    unsigned status;
    char message[512];
    const char *code;
} trn_request_error;

/* What a request is checked against. */
typedef struct {
    const trinity_model *model;
    trn_chat_format chat_format;
    int n_ctx; /* positions of a slot: the prompt must leave at least one */
} trn_request_context;

typedef struct {
    int *prompt; /* [n_prompt] token ids, BOS first; 1 <= n_prompt < n_ctx */
    int n_prompt;
    trinity_session_params sampling; /* temperature, top_k, top_p, repeat_penalty; seed where has_seed */
    int has_seed;
    int max_tokens; /* -1: until EOS or the slot's context is full */
    char *stops[TRN_MAX_STOPS];
    size_t stop_lens[TRN_MAX_STOPS];
    int n_stops;
    int stream;
} trn_request;

/* Fills e (status, message, code); returns 0, so that a check can end with `return trn_request_fail(...)`. */
int trn_request_fail(trn_request_error *e, unsigned status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* body[0..len): a completion (chat 0: "prompt") or chat completion (chat 1: "messages") request. 1 and *out (free
 * with trn_request_free), else 0 and e (400 for the client's mistakes, 500 where memory ran out). */
int trn_request_parse(const trn_request_context *ctx, const char *body, size_t len, int chat, trn_request *out,
                      trn_request_error *e);
void trn_request_free(trn_request *r);

#endif
