/* make_test_models.c: writes the small GGUF files the command-line tests use (tests/test_cli.sh).
 *
 *   make_test_models OUTDIR
 *
 * good.gguf           a valid tiny llama model: 2 layers, n_embd 256, n_ff 512, 4 heads, 2 KV heads,
 *                     context 64, TQ2_0 linear layers (random valid codes), F32 norms, F16 embeddings,
 *                     a vocabulary of <unk> <s> </s>, the 256 <0xNN> byte pieces, U+2581-prefixed letters
 *                     and a few words
 * vocab_only.gguf     the tokenizer metadata and no tensors (opens for `tokenize`, not as a model)
 * and broken variants, each with exactly one defect:
 * truncated.gguf      good.gguf cut in the middle of the tensor data
 * truncated_meta.gguf good.gguf cut inside the metadata (the token list)
 * bad_magic.gguf      "GGUX" instead of "GGUF"
 * bad_version.gguf    GGUF version 1;  bad_version4.gguf: version 4
 * unknown_type.gguf   blk.0.attn_q.weight has tensor type id 99 (patched after writing)
 * missing_tensor.gguf no blk.1.ffn_down.weight
 * wrong_shape.gguf    blk.0.attn_q.weight with 128 rows instead of 256
 * bad_arch.gguf       general.architecture = "gpt2"
 * huge_count.gguf     a header claiming 2^40 tensors
 * vocab_mismatch.gguf token_embd.weight and output.weight with one row more than the vocabulary
 * empty.gguf          0 bytes
 * and, for `trinity serve`, good.gguf with a context of 1024 and a tokenizer.chat_template:
 * chat_llama2.gguf    Llama 2's template ([INST], <<SYS>>)
 * chat_zephyr.gguf    TinyLlama chat's (Zephyr: <|user|>, <|assistant|>)
 * chat_chatml.gguf    ChatML's (<|im_start|>)
 * chat_unknown.gguf   a template of none of these formats
 *
 * The output is deterministic (fixed seeds, no time or environment). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "host/gguf.h"

enum { N_LAYER = 2, N_EMBD = 256, N_FF = 512, N_HEAD = 4, N_HEAD_KV = 2, N_CTX = 64 };
enum { HEAD_DIM = N_EMBD / N_HEAD, KV_DIM = N_HEAD_KV * HEAD_DIM };

typedef struct {
    const char *arch;           /* general.architecture */
    const char *omit_tensor;    /* a tensor left out, or NULL */
    const char *short_tensor;   /* a matrix written with half its rows, or NULL */
    int extra_embd_rows;        /* rows added to token_embd/output beyond the vocabulary */
    int vocab_only;             /* metadata only: no hyperparameters, no tensors */
    uint32_t n_ctx;             /* llama.context_length; 0: N_CTX */
} variant;

static const variant GOOD = {"llama", NULL, NULL, 0, 0, 0};

static const char *out_dir;

static void die(const char *what) {
    fprintf(stderr, "make_test_models: %s: %s\n", what, trn_last_error());
    exit(1);
}

/* splitmix64 */
static uint64_t next_random(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float uniform_pm1(uint64_t *state) { return (float)((next_random(state) >> 40) * (2.0 / 16777216.0) - 1.0); }

static uint64_t name_seed(const char *name) { /* FNV-1a: each tensor's values depend only on its name */
    uint64_t h = 0xcbf29ce484222325ull;
    for (const char *p = name; *p; p++)
        h = (h ^ (uint8_t)*p) * 0x100000001b3ull;
    return h;
}

/* ---- vocabulary ---- */

#define MAX_VOCAB 512
static char *vocab[MAX_VOCAB];
static float vocab_scores[MAX_VOCAB];
static int32_t vocab_types[MAX_VOCAB];
static int n_vocab;

static void add_piece(const char *piece, int type, float score) {
    if (n_vocab >= MAX_VOCAB) {
        fprintf(stderr, "make_test_models: vocabulary overflow\n");
        exit(1);
    }
    vocab[n_vocab] = strdup(piece);
    if (!vocab[n_vocab]) {
        fprintf(stderr, "make_test_models: out of memory\n");
        exit(1);
    }
    vocab_types[n_vocab] = type;
    vocab_scores[n_vocab] = score;
    n_vocab++;
}

static void make_vocab(void) {
    add_piece("<unk>", 2, 0.0f);
    add_piece("<s>", 3, 0.0f);
    add_piece("</s>", 3, 0.0f);
    for (int b = 0; b < 256; b++) {
        char piece[8];
        snprintf(piece, sizeof(piece), "<0x%02X>", b);
        add_piece(piece, 6, 0.0f);
    }
    const char *sp = "\xe2\x96\x81"; /* U+2581 */
    float rank = 0.0f;
    /* whole words first (highest scores) so the tokenizer merges into them */
    static const char *words[] = {"hello", "world", "hi", "he", "ll", "lo", "wor", "ld"};
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        char piece[32];
        snprintf(piece, sizeof(piece), "%s%s", sp, words[i]);
        add_piece(piece, 1, rank -= 1.0f);
        add_piece(words[i], 1, rank -= 1.0f);
    }
    add_piece(sp, 1, rank -= 1.0f);
    for (char c = 'a'; c <= 'z'; c++) {
        char piece[8];
        snprintf(piece, sizeof(piece), "%c", c);
        add_piece(piece, 1, rank -= 1.0f);
        snprintf(piece, sizeof(piece), "%s%c", sp, c);
        add_piece(piece, 1, rank -= 1.0f);
    }
}

/* ---- tensors ---- */

/* Tensor data buffers must outlive trn_gguf_write_*; they are kept here and freed after each file. */
#define MAX_BUFFERS 64
static void *buffers[MAX_BUFFERS];
static int n_buffers;

static void *keep(size_t bytes) {
    if (n_buffers >= MAX_BUFFERS) {
        fprintf(stderr, "make_test_models: too many tensors\n");
        exit(1);
    }
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "make_test_models: out of memory\n");
        exit(1);
    }
    return buffers[n_buffers++] = p;
}

static void free_buffers(void) {
    for (int i = 0; i < n_buffers; i++)
        free(buffers[i]);
    n_buffers = 0;
}

/* A TQ2_0 matrix [rows][cols] of random codes in {0, 1, 2} (weights -1, 0, +1) and a scale that keeps
 * activations near unit variance. */
static void add_tq2(trn_gguf_writer *w, const char *name, int64_t cols, int64_t rows) {
    const int64_t blocks = cols / TRN_QK_K;
    trn_block_tq2_0 *data = keep((size_t)(rows * blocks) * sizeof(trn_block_tq2_0));
    uint64_t state = name_seed(name);
    const trn_fp16 d = trn_f32_to_fp16(1.0f / sqrtf((float)cols * 2.0f / 3.0f));
    for (int64_t b = 0; b < rows * blocks; b++) {
        for (int i = 0; i < TRN_QK_K / 4; i++) {
            uint8_t byte = 0;
            for (int k = 0; k < 4; k++)
                byte |= (uint8_t)((next_random(&state) % 3) << (2 * k));
            data[b].qs[i] = byte;
        }
        data[b].d = d;
    }
    int64_t ne[2] = {cols, rows};
    if (trn_gguf_add_tensor(w, name, TRN_TYPE_TQ2_0, 2, ne, data) != TRN_OK)
        die(name);
}

static void add_norm(trn_gguf_writer *w, const char *name) {
    float *data = keep(N_EMBD * sizeof(float));
    uint64_t state = name_seed(name);
    for (int i = 0; i < N_EMBD; i++)
        data[i] = 1.0f + 0.1f * uniform_pm1(&state);
    int64_t ne[1] = {N_EMBD};
    if (trn_gguf_add_tensor(w, name, TRN_TYPE_F32, 1, ne, data) != TRN_OK)
        die(name);
}

static void add_f16_embd(trn_gguf_writer *w, const char *name, int64_t rows) {
    trn_fp16 *data = keep((size_t)(rows * N_EMBD) * sizeof(trn_fp16));
    uint64_t state = name_seed(name);
    for (int64_t i = 0; i < rows * N_EMBD; i++)
        data[i] = trn_f32_to_fp16(uniform_pm1(&state));
    int64_t ne[2] = {N_EMBD, rows};
    if (trn_gguf_add_tensor(w, name, TRN_TYPE_F16, 2, ne, data) != TRN_OK)
        die(name);
}

/* ---- whole files ---- */

static trn_gguf_writer *build(const variant *v) {
    trn_gguf_writer *w = trn_gguf_writer_new();
    if (!w) {
        fprintf(stderr, "make_test_models: out of memory\n");
        exit(1);
    }
    trn_gguf_set_string(w, "general.architecture", v->arch);
    trn_gguf_set_string(w, "general.name", v->vocab_only ? "trinity-test-vocab" : "trinity-test-tiny");
    if (!v->vocab_only) {
        trn_gguf_set_u32(w, "llama.block_count", N_LAYER);
        trn_gguf_set_u32(w, "llama.context_length", v->n_ctx ? v->n_ctx : N_CTX);
        trn_gguf_set_u32(w, "llama.embedding_length", N_EMBD);
        trn_gguf_set_u32(w, "llama.feed_forward_length", N_FF);
        trn_gguf_set_u32(w, "llama.attention.head_count", N_HEAD);
        trn_gguf_set_u32(w, "llama.attention.head_count_kv", N_HEAD_KV);
        trn_gguf_set_u32(w, "llama.rope.dimension_count", HEAD_DIM);
        trn_gguf_set_f32(w, "llama.rope.freq_base", 10000.0f);
        trn_gguf_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    }
    trn_gguf_set_string(w, "tokenizer.ggml.model", "llama");
    trn_gguf_set_string_array(w, "tokenizer.ggml.tokens", (const char *const *)vocab, (uint64_t)n_vocab);
    trn_gguf_set_array(w, "tokenizer.ggml.scores", TRN_GGUF_F32, vocab_scores, (uint64_t)n_vocab);
    trn_gguf_set_array(w, "tokenizer.ggml.token_type", TRN_GGUF_I32, vocab_types, (uint64_t)n_vocab);
    trn_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    trn_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    trn_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    if (v->vocab_only)
        return w;

    const int64_t rows_vocab = n_vocab + v->extra_embd_rows;
    add_f16_embd(w, "token_embd.weight", rows_vocab);
    add_norm(w, "output_norm.weight");
    add_tq2(w, "output.weight", N_EMBD, rows_vocab);
    for (int l = 0; l < N_LAYER; l++) {
        static const struct {
            const char *suffix;
            int64_t cols, rows; /* rows 0: a norm */
        } layer_tensors[] = {
            {"attn_norm", N_EMBD, 0},    {"attn_q", N_EMBD, N_EMBD},  {"attn_k", N_EMBD, KV_DIM},
            {"attn_v", N_EMBD, KV_DIM},  {"attn_output", N_EMBD, N_EMBD}, {"ffn_norm", N_EMBD, 0},
            {"ffn_gate", N_EMBD, N_FF},  {"ffn_up", N_EMBD, N_FF},    {"ffn_down", N_FF, N_EMBD},
        };
        for (size_t i = 0; i < sizeof(layer_tensors) / sizeof(layer_tensors[0]); i++) {
            char name[64];
            snprintf(name, sizeof(name), "blk.%d.%s.weight", l, layer_tensors[i].suffix);
            if (v->omit_tensor && strcmp(name, v->omit_tensor) == 0)
                continue;
            int64_t rows = layer_tensors[i].rows;
            if (v->short_tensor && strcmp(name, v->short_tensor) == 0)
                rows /= 2;
            if (rows == 0)
                add_norm(w, name);
            else
                add_tq2(w, name, layer_tensors[i].cols, rows);
        }
    }
    return w;
}

static char *out_path(const char *name) {
    static char path[4096];
    snprintf(path, sizeof(path), "%s/%s", out_dir, name);
    return path;
}

static void write_variant(const char *name, const variant *v) {
    trn_gguf_writer *w = build(v);
    if (trn_gguf_write_file(w, out_path(name)) != TRN_OK)
        die(name);
    trn_gguf_writer_free(w);
    free_buffers();
}

/* good.gguf with a context of 1024 and the chat template `chat_template`. */
static void write_chat_variant(const char *name, const char *chat_template) {
    trn_gguf_writer *w = build(&(variant){"llama", NULL, NULL, 0, 0, 1024});
    trn_gguf_set_string(w, "tokenizer.chat_template", chat_template);
    if (trn_gguf_write_file(w, out_path(name)) != TRN_OK)
        die(name);
    trn_gguf_writer_free(w);
    free_buffers();
}

/* The templates as the models' tokenizer_config.json have them (Llama-2-chat, TinyLlama-1.1B-Chat, a ChatML model). */
static const char LLAMA2_TEMPLATE[] =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = "
    "messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}{% set content = "
    "'<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = "
    "message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + "
    "' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}"
    "{% endfor %}";
static const char ZEPHYR_TEMPLATE[] =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";
static const char CHATML_TEMPLATE[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + "
    "'\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
static const char UNKNOWN_TEMPLATE[] =
    "{% for message in messages %}### {{ message['role'] }}: {{ message['content'] }}\n{% endfor %}### Response:";

static void write_bytes(const char *name, const void *data, size_t size) {
    const char *path = out_path(name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        fprintf(stderr, "make_test_models: cannot write %s\n", path);
        exit(1);
    }
}

/* good.gguf as an image in memory, to patch or cut. */
static uint8_t *good_image(size_t *size) {
    trn_gguf_writer *w = build(&GOOD);
    void *data = NULL;
    if (trn_gguf_write_memory(w, &data, size) != TRN_OK)
        die("good image");
    trn_gguf_writer_free(w);
    free_buffers();
    return data;
}

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Offset of the type field of tensor `name` in the tensor-info section: the info is u64 name length,
 * the name, u32 n_dims, n_dims x u64, then u32 type. */
static size_t tensor_type_offset(const uint8_t *image, size_t size, const char *name) {
    const size_t len = strlen(name);
    for (size_t pos = 8; pos + len + 8 <= size; pos++) {
        if (memcmp(image + pos, name, len) != 0)
            continue;
        uint64_t stored = 0;
        for (int i = 0; i < 8; i++)
            stored |= (uint64_t)image[pos - 8 + i] << (8 * i);
        if (stored != len || pos + len + 4 > size)
            continue;
        uint32_t n_dims = get_u32(image + pos + len);
        size_t type_at = pos + len + 4 + 8 * (size_t)n_dims;
        if (n_dims >= 1 && n_dims <= 4 && type_at + 4 <= size)
            return type_at;
    }
    fprintf(stderr, "make_test_models: tensor %s not found in the image\n", name);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_test_models OUTDIR\n");
        return 2;
    }
    out_dir = argv[1];
    make_vocab();

    write_variant("good.gguf", &GOOD);
    write_variant("vocab_only.gguf", &(variant){"llama", NULL, NULL, 0, 1, 0});
    write_variant("missing_tensor.gguf", &(variant){"llama", "blk.1.ffn_down.weight", NULL, 0, 0, 0});
    write_variant("wrong_shape.gguf", &(variant){"llama", NULL, "blk.0.attn_q.weight", 0, 0, 0});
    write_variant("bad_arch.gguf", &(variant){"gpt2", NULL, NULL, 0, 0, 0});
    write_variant("vocab_mismatch.gguf", &(variant){"llama", NULL, NULL, 1, 0, 0});
    /* a small file that declares a context of 2^20 positions (the limit) and one past it */
    write_variant("long_context.gguf", &(variant){"llama", NULL, NULL, 0, 0, 1u << 20});
    write_variant("too_long_context.gguf", &(variant){"llama", NULL, NULL, 0, 0, (1u << 20) + 1});
    write_bytes("empty.gguf", "", 0);
    write_chat_variant("chat_llama2.gguf", LLAMA2_TEMPLATE);
    write_chat_variant("chat_zephyr.gguf", ZEPHYR_TEMPLATE);
    write_chat_variant("chat_chatml.gguf", CHATML_TEMPLATE);
    write_chat_variant("chat_unknown.gguf", UNKNOWN_TEMPLATE);

    size_t size = 0;
    uint8_t *image = good_image(&size);
    uint8_t *copy = malloc(size);
    if (!copy) {
        fprintf(stderr, "make_test_models: out of memory\n");
        return 1;
    }

    /* Where the sections lie: parse the good image with the reader. */
    trn_gguf *g = NULL;
    memcpy(copy, image, size);
    if (trn_gguf_open_memory(copy, size, 0, "good image", &g) != TRN_OK)
        die("parsing the good image");
    const size_t data_offset = trn_gguf_data_offset(g);
    const trn_gguf_kv *tokens = trn_gguf_find_kv(g, "tokenizer.ggml.tokens");
    if (!tokens || !tokens->data || data_offset >= size) {
        fprintf(stderr, "make_test_models: unexpected layout of the good image\n");
        return 1;
    }
    /* the middle of the token list: inside the metadata */
    const size_t meta_cut = (size_t)(tokens->data - copy) + 8 + (size_t)tokens->n_elems * 4;
    trn_gguf_close(g);

    write_bytes("truncated.gguf", image, data_offset + (size - data_offset) / 2);
    write_bytes("truncated_meta.gguf", image, meta_cut);

    memcpy(copy, image, size);
    memcpy(copy, "GGUX", 4);
    write_bytes("bad_magic.gguf", copy, size);

    memcpy(copy, image, size);
    put_u32(copy + 4, 1);
    write_bytes("bad_version.gguf", copy, size);
    put_u32(copy + 4, 4);
    write_bytes("bad_version4.gguf", copy, size);

    memcpy(copy, image, size);
    put_u64(copy + 8, (uint64_t)1 << 40);
    write_bytes("huge_count.gguf", copy, size);

    memcpy(copy, image, size);
    size_t type_at = tensor_type_offset(copy, data_offset, "blk.0.attn_q.weight");
    if (get_u32(copy + type_at) != TRN_TYPE_TQ2_0) {
        fprintf(stderr, "make_test_models: the type field of blk.0.attn_q.weight is not where expected\n");
        return 1;
    }
    put_u32(copy + type_at, 99);
    write_bytes("unknown_type.gguf", copy, size);

    free(copy);
    trn_free(image);
    for (int i = 0; i < n_vocab; i++)
        free(vocab[i]);
    return 0;
}
