/* server_request.c: a `trinity serve` request's JSON (cJSON) checked and turned into a trn_request: the prompt
 * (a completion's string, or chat messages rendered in the server's chat format) tokenized, the sampling settings,
 * max_tokens, stop strings, stream (server_request.h). Every refusal is one line naming the field. */
#define _POSIX_C_SOURCE 200809L
#include "server_request.h"

#if defined(TRN_HAVE_CJSON)

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common.h"
#include "server_text.h"

/* message (NUL-terminated, in a buffer of cap bytes) made one line of UTF-8: a message quotes the client's strings,
 * which may be ill-formed, hold control characters (cJSON takes them raw inside strings) or be cut inside a character
 * ("%.40s", the buffer's end), and it goes into a JSON reply and the log. Ill-formed bytes become U+FFFD, control
 * characters spaces; a character that no longer fits is left out. */
static void one_line_utf8(char *message, size_t cap) {
    for (char *c = message; *c; c++)
        if ((unsigned char)*c < 0x20)
            *c = ' ';
    trn_strbuf clean = {0};
    trn_utf8_decoder decoder = {{0}, 0};
    trn_utf8_decode(&decoder, message, strlen(message), &clean);
    trn_utf8_finish(&decoder, &clean);
    if (clean.failed) { /* no memory: ASCII only */
        for (char *c = message; *c; c++)
            if ((unsigned char)*c >= 0x80)
                *c = '?';
    } else {
        size_t n = TRN_MIN(clean.len, cap - 1);
        while (n > 0 && n < clean.len && ((unsigned char)clean.data[n] & 0xC0) == 0x80)
            n--; /* clean.data[n] continues a character: cut before that character */
        memcpy(message, clean.data ? clean.data : "", n);
        message[n] = 0;
    }
    trn_sb_free(&clean);
}

int trn_request_fail(trn_request_error *e, unsigned status, const char *code, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, args);
    va_end(args);
    one_line_utf8(e->message, sizeof(e->message));
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
static int number_field(const cJSON *body, const char *name, double min, double max, double *out, trn_request_error *e) {
    const cJSON *item = member(body, name);
    if (!item)
        return 1;
    if (!cJSON_IsNumber(item) || !(item->valuedouble >= min && item->valuedouble <= max))
        return trn_request_fail(e, 400, NULL, "'%s' must be a number from %g to %g", name, min, max);
    *out = item->valuedouble;
    return 1;
}

/* An optional integer in [min, max], the same way. */
static int integer_field(const cJSON *body, const char *name, double min, double max, double *out,
                         trn_request_error *e) {
    const cJSON *item = member(body, name);
    if (!item)
        return 1;
    if (!cJSON_IsNumber(item) || item->valuedouble != floor(item->valuedouble) || !(item->valuedouble >= min) ||
        !(item->valuedouble <= max))
        return trn_request_fail(e, 400, NULL, "'%s' must be an integer from %.0f to %.0f", name, min, max);
    *out = item->valuedouble;
    return 1;
}

static int check_utf8(const char *what, const char *text, trn_request_error *e) {
    size_t bad = 0;
    if (trinity_utf8_valid(text, strlen(text), &bad))
        return 1;
    return trn_request_fail(e, 400, NULL, "%s is not UTF-8 text (invalid byte 0x%02x at offset %zu)", what,
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
static int tokens_add_text(const trn_request_context *s, token_list *list, const char *text, size_t len, int add_bos,
                           trn_request_error *e) {
    int n = 0;
    trinity_tokenize(s->model, text, len, add_bos, NULL, 0, &n); /* the count */
    if (list->n + n > list->cap) {
        int *grown = realloc(list->ids, (size_t)(list->n + n + 1) * sizeof(int));
        if (!grown)
            return trn_request_fail(e, 500, NULL, "out of memory for %d prompt tokens", n);
        list->ids = grown;
        list->cap = list->n + n + 1;
    }
    if (trinity_tokenize(s->model, text, len, add_bos, list->ids + list->n, list->cap - list->n, &n) != TRINITY_OK)
        return trn_request_fail(e, 500, NULL, "tokenizing the prompt failed: %s", trinity_last_error());
    list->n += n;
    return 1;
}

/* The text of a chat message's content: a string, or an array of {"type": "text", "text": ...} parts (joined). */
static char *message_content(const cJSON *content, int index, trn_request_error *e) {
    if (cJSON_IsString(content))
        return strdup(content->valuestring);
    if (!cJSON_IsArray(content)) {
        trn_request_fail(e, 400, NULL, "messages[%d].content must be a string", index);
        return NULL;
    }
    trn_strbuf text = {0};
    const cJSON *part;
    cJSON_ArrayForEach(part, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *part_text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 || !cJSON_IsString(part_text)) {
            trn_sb_free(&text);
            trn_request_fail(e, 400, NULL, "messages[%d].content: only text parts ({\"type\": \"text\", \"text\": ...}) "
                         "are supported", index);
            return NULL;
        }
        trn_sb_adds(&text, part_text->valuestring);
    }
    if (text.failed) {
        trn_sb_free(&text);
        trn_request_fail(e, 500, NULL, "out of memory for a message");
        return NULL;
    }
    return text.data ? text.data : strdup("");
}

/* The prompt of a chat request: its messages rendered in the server's chat format and tokenized, BOS first. */
static int chat_prompt(const trn_request_context *s, const cJSON *body, token_list *tokens, trn_request_error *e) {
    const cJSON *messages = member(body, "messages");
    if (!messages)
        return trn_request_fail(e, 400, NULL, "'messages' is missing: an array of {\"role\", \"content\"} objects");
    if (!cJSON_IsArray(messages) || cJSON_GetArraySize(messages) == 0)
        return trn_request_fail(e, 400, NULL, "'messages' must be a non-empty array of {\"role\", \"content\"} objects");
    const int n = cJSON_GetArraySize(messages);
    trn_chat_message *list = calloc((size_t)n, sizeof(*list));
    char **contents = calloc((size_t)n, sizeof(char *));
    int ok = list && contents ? 1 : trn_request_fail(e, 500, NULL, "out of memory for %d messages", n);
    int i = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, messages) {
        if (!ok)
            break;
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsObject(m))
            ok = trn_request_fail(e, 400, NULL, "messages[%d] must be an object with \"role\" and \"content\"", i);
        else if (!cJSON_IsString(role))
            ok = trn_request_fail(e, 400, NULL, "messages[%d].role must be a string", i);
        else if (strcmp(role->valuestring, "system") != 0 && strcmp(role->valuestring, "user") != 0 &&
                 strcmp(role->valuestring, "assistant") != 0)
            ok = trn_request_fail(e, 400, NULL, "messages[%d].role '%.40s': expected system, user or assistant", i,
                              role->valuestring);
        else if (!content)
            ok = trn_request_fail(e, 400, NULL, "messages[%d].content is missing", i);
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
        ok = trn_request_fail(e, 500, NULL, "out of memory for the chat prompt");
    /* BOS as the tokenizer adds it, once: the template's own where it starts with one */
    if (ok && (rendered.n_pieces == 0 || rendered.pieces[0].kind != TRN_CHAT_BOS))
        ok = tokens_add(tokens, trinity_token_bos(s->model)) ? 1 : trn_request_fail(e, 500, NULL, "out of memory");
    for (int p = 0; ok && p < rendered.n_pieces; p++) {
        const trn_chat_piece *piece = &rendered.pieces[p];
        if (piece->kind == TRN_CHAT_TEXT)
            ok = tokens_add_text(s, tokens, rendered.text + piece->offset, piece->len, 0, e);
        else if (!tokens_add(tokens, piece->kind == TRN_CHAT_BOS ? trinity_token_bos(s->model)
                                                                  : trinity_token_eos(s->model)))
            ok = trn_request_fail(e, 500, NULL, "out of memory");
    }
    trn_chat_prompt_free(&rendered);
    for (int k = 0; contents && k < n; k++)
        free(contents[k]);
    free(contents);
    free(list);
    return ok;
}

/* The prompt of a completion request: a string, or an array of one string, tokenized with BOS. */
static int completion_prompt(const trn_request_context *s, const cJSON *body, token_list *tokens, trn_request_error *e) {
    const cJSON *prompt = member(body, "prompt");
    if (prompt && cJSON_IsArray(prompt) && cJSON_GetArraySize(prompt) == 1 &&
        cJSON_IsString(cJSON_GetArrayItem(prompt, 0)))
        prompt = cJSON_GetArrayItem(prompt, 0);
    if (!prompt)
        return trn_request_fail(e, 400, NULL, "'prompt' is missing");
    if (!cJSON_IsString(prompt))
        return trn_request_fail(e, 400, NULL, "'prompt' must be a string or an array of one string");
    if (prompt->valuestring[0] == 0)
        return trn_request_fail(e, 400, NULL, "the prompt is empty");
    if (!check_utf8("the prompt", prompt->valuestring, e))
        return 0;
    return tokens_add_text(s, tokens, prompt->valuestring, strlen(prompt->valuestring), 1, e);
}

/* Whether JSON text (valid: every backslash starts an escape) holds the escape \u0000. cJSON keeps strings
 * NUL-terminated, so a string with U+0000 would end there without a word. */
static int has_nul_escape(const char *text, size_t len) {
    for (size_t i = 0; i + 6 <= len; i++)
        if (text[i] == '\\') {
            if (memcmp(text + i + 1, "u0000", 5) == 0)
                return 1;
            i++; /* the escaped character (a second backslash is not the start of another escape) */
        }
    return 0;
}

int trn_request_parse(const trn_request_context *s, const char *body_text, size_t body_len, int chat,
                      trn_request *out, trn_request_error *e) {
    memset(out, 0, sizeof(*out));
    const char *end = NULL;
    cJSON *body = cJSON_ParseWithLengthOpts(body_text, body_len, &end, 0);
    while (body && end && end < body_text + body_len && (*end == ' ' || *end == '\t' || *end == '\n' || *end == '\r'))
        end++;
    if (!body || (end && end < body_text + body_len)) {
        cJSON_Delete(body);
        return trn_request_fail(e, 400, NULL, "the request body is not valid JSON");
    }
    if (has_nul_escape(body_text, body_len)) {
        cJSON_Delete(body);
        return trn_request_fail(e, 400, NULL, "a string holds U+0000 (\\u0000), which this server does not take");
    }
    token_list prompt = {0};
    trinity_session_params sampling = trinity_session_params_default();
    double max_tokens = -1, temperature = sampling.temperature, top_p = sampling.top_p, top_k = sampling.top_k;
    double repeat_penalty = sampling.repeat_penalty, seed = 0, n = 1;
    const cJSON *stream_item = member(body, "stream"), *stop = member(body, "stop");
    const cJSON *logprobs = member(body, "logprobs"), *echo = member(body, "echo");
    int ok = 1;
    if (!cJSON_IsObject(body))
        ok = trn_request_fail(e, 400, NULL, "the request body must be a JSON object");
    ok = ok && integer_field(body, "n", 1, 1e9, &n, e);
    if (ok && n != 1)
        ok = trn_request_fail(e, 400, NULL, "'n' must be 1: one completion per request");
    if (ok && stream_item && !cJSON_IsBool(stream_item))
        ok = trn_request_fail(e, 400, NULL, "'stream' must be true or false");
    const int wants_logprobs = logprobs && !cJSON_IsFalse(logprobs) &&
                               !(cJSON_IsNumber(logprobs) && logprobs->valuedouble == 0);
    if (ok && (wants_logprobs || (echo && !cJSON_IsFalse(echo))))
        ok = trn_request_fail(e, 400, NULL, "'%s' is not supported by this server",
                              wants_logprobs ? "logprobs" : "echo");
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
        if (n_stops < 0 || n_stops > TRN_MAX_STOPS)
            ok = trn_request_fail(e, 400, NULL, "'stop' must be a string or an array of up to %d strings",
                                  TRN_MAX_STOPS);
        for (int k = 0; ok && k < n_stops; k++) {
            const cJSON *item = cJSON_IsString(stop) ? stop : cJSON_GetArrayItem(stop, k);
            if (!cJSON_IsString(item) || item->valuestring[0] == 0)
                ok = trn_request_fail(e, 400, NULL, "'stop' must hold non-empty strings");
            else if (check_utf8("a stop string", item->valuestring, e)) {
                out->stops[out->n_stops] = strdup(item->valuestring);
                out->stop_lens[out->n_stops] = strlen(item->valuestring);
                ok = out->stops[out->n_stops++] ? 1 : trn_request_fail(e, 500, NULL, "out of memory");
            } else
                ok = 0;
        }
    }
    if (ok)
        ok = chat ? chat_prompt(s, body, &prompt, e) : completion_prompt(s, body, &prompt, e);
    if (ok && prompt.n >= s->n_ctx)
        ok = trn_request_fail(e, 400, "context_length_exceeded",
                              "the prompt is %d tokens, and a slot holds %d positions for the prompt and the "
                              "completion together (-c is split across the --parallel slots)", prompt.n, s->n_ctx);
    if (ok) {
        sampling.temperature = (float)temperature;
        sampling.top_p = (float)top_p;
        sampling.top_k = (int)top_k;
        sampling.repeat_penalty = (float)repeat_penalty;
        out->has_seed = member(body, "seed") != NULL;
        sampling.seed = (uint64_t)(int64_t)seed; /* a negative seed as its two's complement */
        out->sampling = sampling;
        out->prompt = prompt.ids;
        out->n_prompt = prompt.n;
        out->max_tokens = (int)max_tokens;
        out->stream = stream_item && cJSON_IsTrue(stream_item);
    }
    cJSON_Delete(body);
    if (!ok) {
        free(prompt.ids);
        trn_request_free(out);
    }
    return ok;
}

void trn_request_free(trn_request *r) {
    free(r->prompt);
    for (int i = 0; i < r->n_stops; i++)
        free(r->stops[i]);
    memset(r, 0, sizeof(*r));
}

#else
typedef int trn_request_without_cjson; /* a build without cJSON has no server: nothing here */
#endif
