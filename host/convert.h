/* convert.h: `trinity convert`: turning other checkpoint formats into self-contained GGUF files. This header is
 * the command's side: the options and the entry point (host/convert.c). What the converters share among themselves
 * is host/convert_internal.h.
 *
 * Sources: the packed ternary file (TRIN) of the original Python release plus its base Hugging Face checkpoint,
 * Hugging Face checkpoints (config.json + *.safetensors), and llama2.c checkpoints with their tokenizer. Every
 * conversion builds the whole file with the GGUF writer (host/gguf.h), which writes to a temporary name and renames
 * it only when complete: a failed conversion leaves no output file behind.
 *
 * Conventions of the output: architecture "llama", Q and K rows in the GGUF llama order (RoPE on adjacent
 * pairs; Hugging Face checkpoints are permuted, llama.2c ones already are in that order), norms in F32,
 * linear layers in the requested type, embeddings in F16 or F32. */
#ifndef TRN_CONVERT_H
#define TRN_CONVERT_H

#include "common.h"
#include "tensor_types.h"

typedef enum {
    TRN_TERNARY_ABSMEAN = 0, /* BitNet b1.58: s = mean|w|, q = clip(round(w / s), -1, 1), w ~ s q */
    TRN_TERNARY_SEED = 1,    /* the original Python release's rule: q = sign(w), s = std(w) / std(q) */
} trn_ternary_rule;

typedef struct {
    const char *from;        /* "trin", "hf" or "llama2c" */
    const char *input;       /* the TRIN file, the Hugging Face directory, or the llama2.c checkpoint */
    const char *base_dir;    /* trin: --base HF_DIR (shapes, scales, norms, embeddings, vocabulary) */
    const char *tokenizer;   /* llama2c: --tokenizer TOK.bin */
    const char *vocab_gguf;  /* --vocab FILE.gguf: take the tokenizer metadata from this GGUF instead */
    const char *output;      /* -o OUT.gguf */
    trn_type type;           /* linear layers (hf, llama2c): tq2_0, tq1_0, f16 or f32 */
    trn_type embed_type;     /* token_embd: f16 or f32 */
    trn_ternary_rule rule;   /* hf: how float weights become ternary */
    int progress;            /* draw a progress bar on standard error */
} trn_convert_options;

/* Defaults: type tq2_0, embed_type f16, absmean. The command makes both f32 for llama2c (its rows are rarely a
 * multiple of 256, and llama.cpp's converter keeps its tensors in f32). */
trn_convert_options trn_convert_defaults(void);
trn_status trn_convert(const trn_convert_options *opts);

#endif
