/* fuzz_trin.c: libFuzzer target for `trinity convert --from trin`: a TRIN file (memfd) converted against a tiny
 * Hugging Face base checkpoint that the harness writes once into the process's temporary directory: two of them,
 * a 1-layer Llama (hidden 8, FFN 16, 2 heads, 1 KV head, 8 tokens) with an LM head (BF16 tensors) and one tied
 * to its embeddings (F32 tensors, F16 embeddings), each with config.json, model.safetensors and tokenizer.json.
 * The output goes to the temporary directory and is deleted after each run. Built only where cJSON is.
 *
 * Input layout:
 *   byte 0   flags. Bit 0: RAW, the rest of the input is the TRIN file as it is. Else STRUCTURED: the harness
 *            writes "TRIN" and, per layer of the base, the byte count its shape needs followed by that many code
 *            bytes taken from the input (from byte 3 on, cycled); bit 1: the tied base (else the one with an LM
 *            head); bit 2: leave the LM head layer out; bit 3: replace the invalid code 3 by 2 (so the conversion
 *            goes through); bit 4: add byte 2 (signed) to the byte count of layer byte 1 % n_layers; bit 5: linear
 *            layers in f16 (else f32); bit 6: embeddings f16 (else f32); bit 7: one trailing byte.
 *   bytes 1-2 the count perturbation (structured mode).
 * Seeds: tests/fuzz/corpus/trin. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "host/convert.h"

#define HIDDEN 8
#define FFN 16
#define KV_DIM 4
#define VOCAB 8
#define N_LINEAR 8 /* q, k, v, o, gate, up, down, head */

/* [rows][cols] of each linear layer in TRIN order (Hugging Face [out][in]) */
static const int linear_shape[N_LINEAR][2] = {
    {HIDDEN, HIDDEN}, {KV_DIM, HIDDEN}, {KV_DIM, HIDDEN}, {HIDDEN, HIDDEN},
    {FFN, HIDDEN},    {FFN, HIDDEN},    {HIDDEN, FFN},    {VOCAB, HIDDEN},
};

static char base_tied[FUZZ_PATH_MAX], base_untied[FUZZ_PATH_MAX];

static const char config_fmt[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": %d, "
    "\"intermediate_size\": %d, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"num_key_value_heads\": 1, "
    "\"vocab_size\": %d, \"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, "
    "\"hidden_act\": \"silu\", \"tie_word_embeddings\": %s}\n";

static const char tokenizer_json[] =
    "{\"version\": \"1.0\", \"added_tokens\": [{\"id\": 0, \"content\": \"<unk>\", \"special\": true}, "
    "{\"id\": 1, \"content\": \"<s>\", \"special\": true}, {\"id\": 2, \"content\": \"</s>\", \"special\": true}], "
    "\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"byte_fallback\": true, \"vocab\": {\"<unk>\": 0, "
    "\"<s>\": 1, \"</s>\": 2, \"\xe2\x96\x81\": 3, \"a\": 4, \"b\": 5, \"ab\": 6, \"\xe2\x96\x81" "a\": 7}, "
    "\"merges\": [\"a b\", \"\xe2\x96\x81 a\"]}}\n";

typedef struct {
    const char *name;
    int rows, cols; /* rows 0: a vector */
    const char *dtype;
} base_tensor;

/* One value of the base weights: deterministic, varied, finite. */
static float base_value(int tensor, int i) { return 0.05f * sinf(0.37f * (float)i + 1.3f * (float)tensor) + 0.01f; }

static void write_safetensors(const char *path, const base_tensor *t, int n) {
    char header[4096];
    size_t hlen = 0, offset = 0;
    hlen += (size_t)snprintf(header + hlen, sizeof(header) - hlen, "{\"__metadata__\": {\"format\": \"pt\"}");
    for (int i = 0; i < n; i++) {
        const size_t elems = (size_t)(t[i].rows ? t[i].rows : 1) * (size_t)t[i].cols;
        const size_t bytes = elems * (strcmp(t[i].dtype, "F32") == 0 ? 4 : 2);
        if (t[i].rows)
            hlen += (size_t)snprintf(header + hlen, sizeof(header) - hlen,
                                     ", \"%s\": {\"dtype\": \"%s\", \"shape\": [%d, %d], \"data_offsets\": [%zu, %zu]}",
                                     t[i].name, t[i].dtype, t[i].rows, t[i].cols, offset, offset + bytes);
        else
            hlen += (size_t)snprintf(header + hlen, sizeof(header) - hlen,
                                     ", \"%s\": {\"dtype\": \"%s\", \"shape\": [%d], \"data_offsets\": [%zu, %zu]}",
                                     t[i].name, t[i].dtype, t[i].cols, offset, offset + bytes);
        offset += bytes;
    }
    hlen += (size_t)snprintf(header + hlen, sizeof(header) - hlen, "}");
    while (hlen % 8 != 0)
        header[hlen++] = ' ';
    uint8_t *file = calloc(1, 8 + hlen + offset);
    if (!file)
        abort();
    fuzz_put_u64(file, hlen);
    memcpy(file + 8, header, hlen);
    uint8_t *p = file + 8 + hlen;
    for (int i = 0; i < n; i++) {
        const size_t elems = (size_t)(t[i].rows ? t[i].rows : 1) * (size_t)t[i].cols;
        for (size_t k = 0; k < elems; k++) {
            float f = t[i].rows ? base_value(i, (int)k) : 1.0f + base_value(i, (int)k);
            if (strcmp(t[i].dtype, "F32") == 0) {
                memcpy(p, &f, 4);
                p += 4;
            } else {
                uint16_t h = strcmp(t[i].dtype, "F16") == 0 ? trn_f32_to_fp16(f) : trn_f32_to_bf16(f);
                p[0] = (uint8_t)h;
                p[1] = (uint8_t)(h >> 8);
                p += 2;
            }
        }
    }
    fuzz_write_file(path, file, 8 + hlen + offset);
    free(file);
}

static void write_base(char *dir, const char *name, int tied) {
    char path[FUZZ_PATH_MAX], config[1024];
    fuzz_path_join(dir, fuzz_tmpdir(), name);
    fuzz_mkdir(dir);
    snprintf(config, sizeof(config), config_fmt, HIDDEN, FFN, VOCAB, tied ? "true" : "false");
    fuzz_write_file(fuzz_path_join(path, dir, "config.json"), config, strlen(config));
    fuzz_write_file(fuzz_path_join(path, dir, "tokenizer.json"), tokenizer_json, strlen(tokenizer_json));
    const char *mat = tied ? "F32" : "BF16", *vec = tied ? "F32" : "BF16";
    const base_tensor tensors[] = {
        {"model.embed_tokens.weight", VOCAB, HIDDEN, tied ? "F16" : "BF16"},
        {"model.layers.0.input_layernorm.weight", 0, HIDDEN, vec},
        {"model.layers.0.self_attn.q_proj.weight", HIDDEN, HIDDEN, mat},
        {"model.layers.0.self_attn.k_proj.weight", KV_DIM, HIDDEN, mat},
        {"model.layers.0.self_attn.v_proj.weight", KV_DIM, HIDDEN, mat},
        {"model.layers.0.self_attn.o_proj.weight", HIDDEN, HIDDEN, mat},
        {"model.layers.0.post_attention_layernorm.weight", 0, HIDDEN, vec},
        {"model.layers.0.mlp.gate_proj.weight", FFN, HIDDEN, mat},
        {"model.layers.0.mlp.up_proj.weight", FFN, HIDDEN, mat},
        {"model.layers.0.mlp.down_proj.weight", HIDDEN, FFN, mat},
        {"model.norm.weight", 0, HIDDEN, vec},
        {"lm_head.weight", VOCAB, HIDDEN, mat},
    };
    const int n = (int)(sizeof(tensors) / sizeof(tensors[0])) - (tied ? 1 : 0);
    write_safetensors(fuzz_path_join(path, dir, "model.safetensors"), tensors, n);
}

static void init_once(void) {
    if (base_tied[0])
        return;
    write_base(base_untied, "base_untied", 0);
    write_base(base_tied, "base_tied", 1);
}

static void convert(const uint8_t *trin, size_t size, uint8_t flags) {
    char in_path[FUZZ_PATH_MAX], out_path[FUZZ_PATH_MAX];
    int fd = fuzz_memfd("model.trin", trin, size, in_path);
    fuzz_path_join(out_path, fuzz_tmpdir(), "out.gguf");
    trn_convert_options o = trn_convert_defaults();
    o.from = "trin";
    o.input = in_path;
    o.base_dir = (flags & 2) ? base_tied : base_untied;
    o.output = out_path;
    o.type = (flags & 0x20) ? TRN_TYPE_F16 : TRN_TYPE_F32;
    o.embed_type = (flags & 0x40) ? TRN_TYPE_F16 : TRN_TYPE_F32;
    trn_status status = trn_convert(&o);
    fuzz_log("%s: %s", "trin", status == TRN_OK ? "converted" : trn_last_error());
    fuzz_remove_output(out_path);
    fuzz_memfd_close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init_once();
    if (size < 1)
        return 0;
    const uint8_t flags = data[0];
    if (flags & 1) {
        convert(data + 1, size - 1, flags);
        return 0;
    }
    if (size < 3)
        return 0;
    const uint8_t *codes = data + 3;
    const size_t n_codes = size - 3;
    const int n_layers = (flags & 4) ? N_LINEAR - 1 : N_LINEAR;
    size_t total = 4 + ((flags & 0x80) ? 1 : 0);
    uint32_t counts[N_LINEAR];
    for (int i = 0; i < n_layers; i++) {
        counts[i] = (uint32_t)(linear_shape[i][0] * linear_shape[i][1] + 3) / 4;
        if ((flags & 0x10) && i == data[1] % n_layers)
            counts[i] = (uint32_t)((int64_t)counts[i] + (int8_t)data[2]);
        /* a count the data cannot hold is written as it is, followed by the bytes there are (at most 256) */
        total += 4 + TRN_MIN(counts[i], 256u);
    }
    uint8_t *file = malloc(total);
    if (!file)
        return 0;
    memcpy(file, "TRIN", 4);
    size_t pos = 4, k = 0;
    for (int i = 0; i < n_layers; i++) {
        fuzz_put_u32(file + pos, counts[i]);
        pos += 4;
        for (uint32_t j = 0; j < TRN_MIN(counts[i], 256u); j++, k++) {
            uint8_t b = n_codes ? codes[k % n_codes] : 0x55;
            if (flags & 8) /* each 2-bit code 3 -> 2 */
                for (int s = 0; s < 8; s += 2)
                    if (((b >> s) & 3) == 3)
                        b = (uint8_t)(b & ~(1u << s));
            file[pos++] = b;
        }
    }
    if (flags & 0x80)
        file[pos++] = n_codes ? codes[0] : 0;
    convert(file, pos, flags);
    free(file);
    return 0;
}
