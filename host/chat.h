/* chat.h: chat templates for `trinity serve`: which format a model's tokenizer.chat_template is, and a conversation
 * rendered in that format as text pieces and the special tokens BOS and EOS between them.
 *
 * Formats (recognised in a template by their characteristic markers; the template itself is not executed):
 *   llama2  <s>[INST] <<SYS>>\nSYSTEM\n<</SYS>>\n\nUSER [/INST] ASSISTANT </s><s>[INST] USER [/INST]
 *   zephyr  <|system|>\nSYSTEM</s>\n<|user|>\nUSER</s>\n<|assistant|>\n   (TinyLlama's chat models)
 *   chatml  <|im_start|>system\nSYSTEM<|im_end|>\n<|im_start|>user\nUSER<|im_end|>\n<|im_start|>assistant\n
 * A rendered conversation ends with the assistant's turn opened. BOS and EOS are kept apart from the text, so a
 * message that contains "</s>" stays text and never becomes a special token. */
#ifndef TRN_CHAT_H
#define TRN_CHAT_H

#include <stddef.h>

typedef enum { TRN_CHAT_LLAMA2, TRN_CHAT_ZEPHYR, TRN_CHAT_CHATML } trn_chat_format;

#define TRN_CHAT_FORMAT_NAMES "llama2|zephyr|chatml"

/* "llama2", "zephyr" or "chatml". */
const char *trn_chat_format_name(trn_chat_format format);
/* The format called `name` (one of TRN_CHAT_FORMAT_NAMES): 1 and *format, else 0. */
int trn_chat_format_from_name(const char *name, trn_chat_format *format);
/* The format of a tokenizer.chat_template by its markers (<|im_start|>: chatml; <|user|> and <|assistant|>: zephyr;
 * [INST]: llama2): 1 and *format, else 0 (a template of none of them). */
int trn_chat_format_detect(const char *chat_template, trn_chat_format *format);

typedef struct {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content; /* UTF-8 */
} trn_chat_message;

typedef enum { TRN_CHAT_TEXT, TRN_CHAT_BOS, TRN_CHAT_EOS } trn_chat_piece_kind;

typedef struct {
    trn_chat_piece_kind kind;
    size_t offset, len; /* TRN_CHAT_TEXT: the bytes text[offset .. offset + len) of the rendered prompt */
} trn_chat_piece;

typedef struct {
    char *text;             /* every text piece, one after another (NUL-terminated) */
    size_t text_len;
    trn_chat_piece *pieces; /* in order; adjacent text pieces are merged */
    int n_pieces;
} trn_chat_prompt;

/* Renders messages[0..n_messages) in `format`, ending with the assistant's turn opened. Roles other than system,
 * user and assistant must be refused by the caller (they are rendered as user turns). 0 on success, -1 where
 * memory ran out. Free with trn_chat_prompt_free. */
int trn_chat_render(trn_chat_format format, const trn_chat_message *messages, int n_messages, trn_chat_prompt *out);
void trn_chat_prompt_free(trn_chat_prompt *prompt);

#endif
