/* chat.c: the chat formats of `trinity serve` (see chat.h): recognising a model's template by its markers and
 * rendering a conversation as text pieces with BOS and EOS between them. */
#include "chat.h"

#include <stdlib.h>
#include <string.h>

static const char *const format_names[] = {"llama2", "zephyr", "chatml"};

const char *trn_chat_format_name(trn_chat_format format) { return format_names[format]; }

int trn_chat_format_from_name(const char *name, trn_chat_format *format) {
    for (int i = 0; i < (int)(sizeof(format_names) / sizeof(format_names[0])); i++)
        if (strcmp(name, format_names[i]) == 0) {
            *format = (trn_chat_format)i;
            return 1;
        }
    return 0;
}

int trn_chat_format_detect(const char *chat_template, trn_chat_format *format) {
    if (strstr(chat_template, "<|im_start|>"))
        *format = TRN_CHAT_CHATML;
    else if (strstr(chat_template, "<|user|>") && strstr(chat_template, "<|assistant|>"))
        *format = TRN_CHAT_ZEPHYR;
    else if (strstr(chat_template, "[INST]"))
        *format = TRN_CHAT_LLAMA2;
    else
        return 0;
    return 1;
}

/* ---- the prompt being built ---- */

typedef struct {
    trn_chat_prompt *prompt;
    size_t text_cap;
    int pieces_cap;
    int failed; /* memory ran out: every later call does nothing */
} builder;

static void add_piece(builder *b, trn_chat_piece_kind kind, size_t offset, size_t len) {
    trn_chat_prompt *p = b->prompt;
    if (b->failed)
        return;
    if (kind == TRN_CHAT_TEXT && len == 0)
        return;
    if (kind == TRN_CHAT_TEXT && p->n_pieces > 0 && p->pieces[p->n_pieces - 1].kind == TRN_CHAT_TEXT) {
        p->pieces[p->n_pieces - 1].len += len; /* text follows text: one piece */
        return;
    }
    if (p->n_pieces == b->pieces_cap) {
        const int cap = b->pieces_cap ? 2 * b->pieces_cap : 16;
        trn_chat_piece *grown = realloc(p->pieces, (size_t)cap * sizeof(*grown));
        if (!grown) {
            b->failed = 1;
            return;
        }
        p->pieces = grown;
        b->pieces_cap = cap;
    }
    p->pieces[p->n_pieces++] = (trn_chat_piece){kind, offset, len};
}

static void add_bytes(builder *b, const char *bytes, size_t len) {
    trn_chat_prompt *p = b->prompt;
    if (b->failed)
        return;
    if (p->text_len + len + 1 > b->text_cap) {
        size_t cap = b->text_cap ? b->text_cap : 256;
        while (cap < p->text_len + len + 1)
            cap *= 2;
        char *grown = realloc(p->text, cap);
        if (!grown) {
            b->failed = 1;
            return;
        }
        p->text = grown;
        b->text_cap = cap;
    }
    memcpy(p->text + p->text_len, bytes, len);
    add_piece(b, TRN_CHAT_TEXT, p->text_len, len);
    p->text_len += len;
    p->text[p->text_len] = 0;
}

static void add_text(builder *b, const char *text) { add_bytes(b, text, strlen(text)); }

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

/* text without leading and trailing white space (Llama 2's template strips each message) */
static void add_stripped(builder *b, const char *text) {
    size_t len = strlen(text);
    while (len > 0 && is_space(*text)) {
        text++;
        len--;
    }
    while (len > 0 && is_space(text[len - 1]))
        len--;
    add_bytes(b, text, len);
}

/* Llama 2: each user turn "<s>[INST] ... [/INST]", each assistant turn " ... </s>"; the system messages go into the
 * next user turn as a <<SYS>> block (one with no user turn after it gets an empty one). */
static void render_llama2(builder *b, const trn_chat_message *messages, int n) {
    int system_from = 0, n_system = 0; /* the system messages since the last user turn: from messages[system_from] */
    for (int i = 0; i <= n; i++) {
        const int at_end = i == n;
        if (!at_end && strcmp(messages[i].role, "system") == 0) {
            n_system++;
            continue;
        }
        const int user = !at_end && strcmp(messages[i].role, "assistant") != 0;
        if (user || (at_end && n_system > 0)) {
            add_piece(b, TRN_CHAT_BOS, 0, 0);
            add_text(b, "[INST] ");
            if (n_system > 0) {
                add_text(b, "<<SYS>>\n");
                for (int k = system_from, first = 1; k < i; k++)
                    if (strcmp(messages[k].role, "system") == 0) {
                        if (!first)
                            add_text(b, "\n");
                        first = 0;
                        add_stripped(b, messages[k].content);
                    }
                add_text(b, "\n<</SYS>>\n\n");
            }
            if (user)
                add_stripped(b, messages[i].content);
            add_text(b, " [/INST]");
            system_from = i + 1;
            n_system = 0;
        } else if (!at_end) {
            add_text(b, " ");
            add_stripped(b, messages[i].content);
            add_text(b, " ");
            add_piece(b, TRN_CHAT_EOS, 0, 0);
        }
    }
}

/* Zephyr (TinyLlama chat): "<|role|>\n" CONTENT "</s>\n" per message, then "<|assistant|>\n". */
static void render_zephyr(builder *b, const trn_chat_message *messages, int n) {
    for (int i = 0; i < n; i++) {
        const char *role = strcmp(messages[i].role, "system") == 0 || strcmp(messages[i].role, "assistant") == 0
                               ? messages[i].role
                               : "user";
        add_text(b, "<|");
        add_text(b, role);
        add_text(b, "|>\n");
        add_text(b, messages[i].content);
        add_piece(b, TRN_CHAT_EOS, 0, 0);
        add_text(b, "\n");
    }
    add_text(b, "<|assistant|>\n");
}

/* ChatML: "<|im_start|>role\n" CONTENT "<|im_end|>\n" per message, then "<|im_start|>assistant\n". */
static void render_chatml(builder *b, const trn_chat_message *messages, int n) {
    for (int i = 0; i < n; i++) {
        const char *role = strcmp(messages[i].role, "system") == 0 || strcmp(messages[i].role, "assistant") == 0
                               ? messages[i].role
                               : "user";
        add_text(b, "<|im_start|>");
        add_text(b, role);
        add_text(b, "\n");
        add_text(b, messages[i].content);
        add_text(b, "<|im_end|>\n");
    }
    add_text(b, "<|im_start|>assistant\n");
}

int trn_chat_render(trn_chat_format format, const trn_chat_message *messages, int n_messages, trn_chat_prompt *out) {
    memset(out, 0, sizeof(*out));
    builder b = {out, 0, 0, 0};
    add_text(&b, ""); /* the text buffer exists (and is NUL-terminated) even where no text is added */
    switch (format) {
    case TRN_CHAT_LLAMA2: render_llama2(&b, messages, n_messages); break;
    case TRN_CHAT_ZEPHYR: render_zephyr(&b, messages, n_messages); break;
    case TRN_CHAT_CHATML: render_chatml(&b, messages, n_messages); break;
    }
    if (b.failed) {
        trn_chat_prompt_free(out);
        return -1;
    }
    return 0;
}

void trn_chat_prompt_free(trn_chat_prompt *prompt) {
    free(prompt->text);
    free(prompt->pieces);
    memset(prompt, 0, sizeof(*prompt));
}
