/* fuzz_llama2c.c: libFuzzer target for `trinity convert --from llama2c`: a llama2.c checkpoint and its
 * tokenizer.bin, both memfds, converted by trn_convert into the process's temporary directory (the output is
 * deleted after each run).
 *
 * Input layout (structure-aware, so most inputs pass the checkpoint's exact-size check):
 *   byte 0       flags. Odd: RAW mode. Even: STRUCTURED mode; bit 1: header values taken more literally (heads
 *                that need not divide, so the header checks see bad combinations), bit 2: separate classifier
 *                (negative vocab_size), bit 3: weights cycled from the input (else zero-padded), bit 4: weight
 *                bytes as raw float32 bits (else each byte a small float), bits 5-6: linear type f32, f16,
 *                tq2_0, tq1_0, bit 7: embeddings f16 (else f32).
 *   RAW:         bytes 1-2: u16 checkpoint length L; the next L bytes are the checkpoint as it is, the rest the
 *                tokenizer.bin.
 *   STRUCTURED:  bytes 1-7 choose dim (1..64), hidden_dim (1..64), n_layers (1..3), heads, kv heads, vocab_size
 *                (1..64), seq_len (1..64); bytes 8-9: u16 count W of weight bytes; the next W bytes fill the
 *                weights (to exactly the size the header implies); the rest is the tokenizer.bin.
 * Seeds: tests/fuzz/corpus/llama2c (scripts/make_fuzz_corpus.py writes inputs in this layout). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "host/convert.h"

static void convert(const uint8_t *ckpt, size_t ckpt_size, const uint8_t *tok, size_t tok_size, uint8_t flags) {
    char ckpt_path[FUZZ_PATH_MAX], tok_path[FUZZ_PATH_MAX], out_path[FUZZ_PATH_MAX];
    int ckpt_fd = fuzz_memfd("model.bin", ckpt, ckpt_size, ckpt_path);
    int tok_fd = fuzz_memfd("tokenizer.bin", tok, tok_size, tok_path);
    fuzz_path_join(out_path, fuzz_tmpdir(), "out.gguf");
    static const trn_type linear_types[4] = {TRN_TYPE_F32, TRN_TYPE_F16, TRN_TYPE_TQ2_0, TRN_TYPE_TQ1_0};
    trn_convert_options o = trn_convert_defaults();
    o.from = "llama2c";
    o.input = ckpt_path;
    o.tokenizer = tok_path;
    o.output = out_path;
    o.type = linear_types[(flags >> 5) & 3];
    o.embed_type = (flags & 0x80) ? TRN_TYPE_F16 : TRN_TYPE_F32;
    trn_status status = trn_convert(&o);
    fuzz_log("%s: %s", "llama2c", status == TRN_OK ? "converted" : trn_last_error());
    fuzz_remove_output(out_path);
    fuzz_memfd_close(ckpt_fd);
    fuzz_memfd_close(tok_fd);
}

static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    const uint8_t flags = data[0];
    if (flags & 1) { /* RAW */
        if (size < 3)
            return 0;
        size_t len = TRN_MIN((size_t)get_u16(data + 1), size - 3);
        convert(data + 3, len, data + 3 + len, size - 3 - len, flags);
        return 0;
    }
    if (size < 10)
        return 0;
    const uint8_t *h = data + 1;
    int32_t hdr[7];
    int dim, n_heads, n_kv;
    if (flags & 2) { /* literal-ish: any small values, divisibility not guaranteed */
        dim = 1 + h[0] % 64;
        n_heads = 1 + h[3] % 16;
        n_kv = 1 + h[4] % 16;
    } else { /* valid by construction: n_kv | n_heads, n_heads | dim, even head size, dim <= 64 */
        n_kv = 1 + h[4] % 2;
        n_heads = n_kv * (1 + h[3] % 4);
        const int head_size = 2 * (1 + h[0] % 4);
        dim = n_heads * head_size;
    }
    const int hidden = 1 + h[1] % 64, n_layers = 1 + h[2] % 3, vocab = 1 + h[5] % 64, seq_len = 1 + h[6] % 64;
    hdr[0] = dim;
    hdr[1] = hidden;
    hdr[2] = n_layers;
    hdr[3] = n_heads;
    hdr[4] = n_kv;
    hdr[5] = (flags & 4) ? -vocab : vocab;
    hdr[6] = seq_len;
    /* the size the header implies (for bad head combinations: some size, the converter refuses the header) */
    const int head_size = n_heads > 0 ? dim / n_heads : 1;
    const size_t kv_dim = (size_t)head_size * (size_t)n_kv;
    const size_t d = (size_t)dim, l = (size_t)n_layers, hd = (size_t)hidden, v = (size_t)vocab;
    const size_t floats = v * d + l * d + l * d * d + 2 * l * kv_dim * d + l * d * d + l * d + 3 * l * hd * d + d +
                          2 * (size_t)seq_len * (size_t)(head_size / 2) + ((flags & 4) ? v * d : 0);
    const size_t ckpt_size = 28 + 4 * floats;

    const size_t w_avail = size - 10;
    const size_t w_len = TRN_MIN((size_t)get_u16(data + 8), w_avail);
    const uint8_t *w = data + 10;
    uint8_t *ckpt = calloc(1, ckpt_size);
    if (!ckpt)
        return 0;
    for (int i = 0; i < 7; i++)
        fuzz_put_u32(ckpt + 4 * i, (uint32_t)hdr[i]);
    uint8_t *body = ckpt + 28;
    if (flags & 0x10) { /* raw float bits */
        const size_t n = (flags & 8) ? 4 * floats : TRN_MIN(4 * floats, w_len);
        for (size_t i = 0; w_len > 0 && i < n; i++)
            body[i] = w[i % w_len];
    } else { /* one byte per float: a small value, never NaN */
        const size_t n = (flags & 8) ? floats : TRN_MIN(floats, w_len);
        for (size_t i = 0; w_len > 0 && i < n; i++) {
            float f = (float)(int8_t)w[i % w_len] / 64.0f;
            memcpy(body + 4 * i, &f, 4);
        }
    }
    convert(ckpt, ckpt_size, data + 10 + w_len, size - 10 - w_len, flags);
    free(ckpt);
    return 0;
}
