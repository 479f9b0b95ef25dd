/* test_chat.c: the chat formats of `trinity serve` (host/chat.c): each format's rendering of the same conversations,
 * byte for byte, with BOS and EOS shown as <s> and </s>; a message holding "</s>" stays text; adjacent text merges
 * into one piece; the formats recognised from real templates by their markers, and names. */
#include <string.h>

#include "host/chat.h"
#include "test_util.h"

/* The rendered prompt with BOS as "<s>" and EOS as "</s>"; [TEXT|...] marks where text pieces start where `marks`. */
static void show(const trn_chat_prompt *p, int marks, char *out, size_t cap) {
    size_t n = 0;
    out[0] = 0;
    for (int i = 0; i < p->n_pieces; i++) {
        const trn_chat_piece *piece = &p->pieces[i];
        if (piece->kind == TRN_CHAT_TEXT)
            n += (size_t)snprintf(out + n, cap - n, "%s%.*s", marks ? "|" : "", (int)piece->len,
                                  p->text + piece->offset);
        else
            n += (size_t)snprintf(out + n, cap - n, "%s", piece->kind == TRN_CHAT_BOS ? "<s>" : "</s>");
        if (n >= cap)
            return;
    }
}

static void check_render(trn_chat_format format, const trn_chat_message *messages, int n, const char *want) {
    trn_chat_prompt p;
    char got[2048];
    CHECK(trn_chat_render(format, messages, n, &p) == 0);
    show(&p, 0, got, sizeof(got));
    CHECK_MSG(strcmp(got, want) == 0, "%s:\n got  [%s]\n want [%s]", trn_chat_format_name(format), got, want);
    for (int i = 1; i < p.n_pieces; i++)
        CHECK(!(p.pieces[i].kind == TRN_CHAT_TEXT && p.pieces[i - 1].kind == TRN_CHAT_TEXT));
    CHECK(p.text[p.text_len] == 0);
    trn_chat_prompt_free(&p);
}

int main(void) {
    const trn_chat_message one[] = {{"user", "Hello"}};
    const trn_chat_message conversation[] = {
        {"system", "Be brief."}, {"user", "Hi there "}, {"assistant", " Hello! "}, {"user", "Bye"}};

    check_render(TRN_CHAT_LLAMA2, one, 1, "<s>[INST] Hello [/INST]");
    check_render(TRN_CHAT_LLAMA2, conversation, 4,
                 "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST] Hello! </s><s>[INST] Bye [/INST]");
    check_render(TRN_CHAT_ZEPHYR, one, 1, "<|user|>\nHello</s>\n<|assistant|>\n");
    check_render(TRN_CHAT_ZEPHYR, conversation, 4,
                 "<|system|>\nBe brief.</s>\n<|user|>\nHi there </s>\n<|assistant|>\n Hello! </s>\n<|user|>\nBye</s>\n"
                 "<|assistant|>\n");
    check_render(TRN_CHAT_CHATML, one, 1, "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
    check_render(TRN_CHAT_CHATML, conversation, 4,
                 "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there <|im_end|>\n"
                 "<|im_start|>assistant\n Hello! <|im_end|>\n<|im_start|>user\nBye<|im_end|>\n"
                 "<|im_start|>assistant\n");

    /* Llama 2: two system messages join in one <<SYS>> block; one with no user turn after it gets an empty one */
    const trn_chat_message systems[] = {{"system", "A."}, {"system", " B. "}, {"user", "Q"}};
    check_render(TRN_CHAT_LLAMA2, systems, 3, "<s>[INST] <<SYS>>\nA.\nB.\n<</SYS>>\n\nQ [/INST]");
    const trn_chat_message system_only[] = {{"system", "S"}};
    check_render(TRN_CHAT_LLAMA2, system_only, 1, "<s>[INST] <<SYS>>\nS\n<</SYS>>\n\n [/INST]");

    /* "</s>" inside a message is text, never the EOS piece */
    const trn_chat_message tricky[] = {{"user", "a</s>b"}};
    trn_chat_prompt p;
    char got[512];
    CHECK(trn_chat_render(TRN_CHAT_ZEPHYR, tricky, 1, &p) == 0);
    show(&p, 1, got, sizeof(got));
    CHECK_MSG(strcmp(got, "|<|user|>\na</s>b</s>|\n<|assistant|>\n") == 0, "[%s]", got);
    CHECK(p.n_pieces == 3 && p.pieces[1].kind == TRN_CHAT_EOS);
    trn_chat_prompt_free(&p);

    /* recognised by markers, as in the templates of Llama-2-chat, TinyLlama chat and ChatML models */
    trn_chat_format f;
    CHECK(trn_chat_format_detect("{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}", &f) &&
          f == TRN_CHAT_LLAMA2);
    CHECK(trn_chat_format_detect("{{ '<|user|>\\n' + message['content'] + eos_token }}{{ '<|assistant|>' }}", &f) &&
          f == TRN_CHAT_ZEPHYR);
    CHECK(trn_chat_format_detect("{{'<|im_start|>' + message['role'] + '\\n'}}", &f) && f == TRN_CHAT_CHATML);
    CHECK(!trn_chat_format_detect("### {{ message['role'] }}: {{ message['content'] }}", &f));
    CHECK(!trn_chat_format_detect("", &f));
    CHECK(trn_chat_format_from_name("zephyr", &f) && f == TRN_CHAT_ZEPHYR);
    CHECK(!trn_chat_format_from_name("vicuna", &f));
    CHECK(strcmp(trn_chat_format_name(TRN_CHAT_CHATML), "chatml") == 0);
    return test_finish("test_chat");
}
