/* trinity.h: the public C API of the Trinity engine (libtrinity): ternary Llama-architecture models from GGUF files,
 * run on the CPU or an NVIDIA GPU.
 *
 * A model (weights, vocabulary; read-only once open) is shared by any number of sessions; a session owns its KV cache,
 * its position and its sampler settings. Functions return a trinity_status; on failure trinity_last_error() gives
 * one line naming the file, key, tensor or value at fault (per thread). There is no global state: sessions may run
 * on different threads at once; one session is used by one thread at a time. Structs the caller fills start with
 * their own size and come from a *_default() function, so later versions can add fields without breaking callers.
 *
 *     trinity_model *model;
 *     trinity_model_params mp = trinity_model_params_default();
 *     if (trinity_model_open("model.gguf", &mp, &model) != TRINITY_OK) fprintf(stderr, "%s\n", trinity_last_error());
 *     trinity_session *s;
 *     trinity_session_params sp = trinity_session_params_default();
 *     trinity_session_new(model, &sp, &s);
 *     trinity_session_feed_text(s, "Once upon a time", 1);        // the prompt, with BOS
 *     trinity_session_generate(s, 64, print_piece, NULL, NULL);  // up to 64 new tokens, each piece to a callback
 *     trinity_session_free(s);
 *     trinity_model_free(model); */
#ifndef TRINITY_H
#define TRINITY_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TRINITY_VERSION_MAJOR 0
#define TRINITY_VERSION_MINOR 3
#define TRINITY_VERSION_PATCH 0

#define TRINITY_MAX_CONTEXT (1 << 20) /* KV cache positions of a session, at most */
#define TRINITY_DEFAULT_CONTEXT 4096  /* where none is asked for: the model's context, at most this many */

#if defined(__GNUC__)
#define TRINITY_API __attribute__((visibility("default")))
#else
#define TRINITY_API
#endif

typedef enum {
    TRINITY_OK = 0,
    TRINITY_ERR_IO = 1,          /* a file could not be opened, read, mapped or written */
    TRINITY_ERR_FORMAT = 2,      /* a file is malformed or truncated */
    TRINITY_ERR_UNSUPPORTED = 3, /* a valid input this engine does not handle */
    TRINITY_ERR_INVALID = 4,     /* an impossible argument (a prompt longer than the context, a bad id, ...) */
    TRINITY_ERR_NOMEM = 5,       /* memory could not be allocated */
    TRINITY_ERR_DEVICE = 6,      /* the device asked for is unavailable */
} trinity_status;

typedef enum { TRINITY_DEVICE_AUTO = 0, TRINITY_DEVICE_CPU = 1, TRINITY_DEVICE_CUDA = 2 } trinity_device;

/* Where a GPU keeps the weights (the CPU reads them where the file is mapped). */
typedef enum {
    TRINITY_WEIGHTS_AUTO = 0,      /* resident where they fit in free device memory, else part streamed */
    TRINITY_WEIGHTS_RESIDENT = 1,
    TRINITY_WEIGHTS_STREAMING = 2, /* pinned host memory, copied layer by layer while earlier layers compute */
    TRINITY_WEIGHTS_MAPPED = 3,    /* pinned host memory read by the kernels directly */
} trinity_weights;

typedef struct trinity_model trinity_model;
typedef struct trinity_session trinity_session;

typedef struct {
    size_t size;             /* sizeof(trinity_model_params): set by trinity_model_params_default */
    trinity_device device;   /* AUTO: CUDA where a usable GPU and a CUDA build exist, else the CPU */
    int n_threads;           /* CPU threads; 0: all cores */
    trinity_weights weights; /* GPU weight placement */
    int resident_layers;     /* STREAMING or AUTO: the first K layers resident; -1: as the mode decides */
    int f32_activations;     /* 1: ternary layers see float activations (exact, slow); 0: int8 as llama.cpp */
    const char *kernels;     /* CPU kernel table: NULL or "auto" (the fastest this CPU runs), "scalar", "avx2",
                                "avx512", "amx" */
    int vocab_only;          /* 1: read the vocabulary alone (a vocabulary-only GGUF works): tokenize and pieces
                                only, no sessions */
} trinity_model_params;

typedef struct {
    size_t size;          /* sizeof(trinity_session_params): set by trinity_session_params_default */
    int n_ctx;            /* positions of the KV cache; 0: the model's context, at most 4096 */
    float temperature;    /* 0.8; 0 is greedy */
    int top_k;            /* 40; 0 keeps every token */
    float top_p;          /* 0.95 */
    float repeat_penalty; /* 1.0: off */
    uint64_t seed;        /* the draw for position p is a hash of (seed, p): the same seed gives the same text */
} trinity_session_params;

typedef struct {
    size_t size;            /* sizeof(trinity_perplexity_result): set it before the call */
    double perplexity;
    double std_error;       /* of the perplexity, as llama.cpp prints it */
    int n_tokens;           /* of the whole text, BOS included */
    int n_scored;           /* tokens whose probability was scored */
    int n_chunks;
    int chunk;              /* tokens per chunk */
    double tokens_per_s;    /* tokens run through the model per second */
} trinity_perplexity_result;

/* Called after each perplexity chunk with the running perplexity. */
typedef void (*trinity_progress_fn)(int chunk, int n_chunks, double running_perplexity, void *user);

/* Called once per generated token with the text it completes: whole UTF-8 characters, possibly none (a token that
 * ends inside a character gives its bytes with the token that completes it). Text still held when generation ends
 * (an incomplete character) comes in one last call with token -1. Returning nonzero stops the generation. */
typedef int (*trinity_piece_fn)(const char *piece, size_t len, int token, void *user);

TRINITY_API const char *trinity_version(void);                /* "0.3.0": TRINITY_VERSION_* */
TRINITY_API const char *trinity_last_error(void);             /* this thread's last failure, one line */
TRINITY_API const char *trinity_status_name(trinity_status status);

/* ---- models ---- */
TRINITY_API trinity_model_params trinity_model_params_default(void);
/* path: a GGUF file, or "synthetic:tinyllama", "synthetic:tinyllama-tq1", "synthetic:tiny" (built-in models with
 * random weights, for tests and benchmarks). params may be NULL (the defaults). */
TRINITY_API trinity_status trinity_model_open(const char *path, const trinity_model_params *params,
                                              trinity_model **out);
TRINITY_API void trinity_model_free(trinity_model *model);
TRINITY_API const char *trinity_model_name(const trinity_model *model);
TRINITY_API int trinity_model_n_vocab(const trinity_model *model);
TRINITY_API int trinity_model_n_ctx_train(const trinity_model *model); /* the context the file declares */
TRINITY_API int trinity_token_bos(const trinity_model *model);
TRINITY_API int trinity_token_eos(const trinity_model *model);

/* What a model file holds (trinity info). Fails for a vocabulary-only model. */
typedef struct {
    size_t size;             /* sizeof(trinity_model_info): set it before the call */
    const char *path;        /* the file, or the synthetic model's label; valid while the model is open */
    uint32_t gguf_version;
    uint64_t file_bytes;     /* of the file, or of the synthetic model's image in memory */
    uint64_t alignment;      /* of the tensor data */
    int64_t n_metadata;      /* key-value pairs */
    int n_layer, n_embd, n_ff, n_head, n_head_kv, head_dim, n_vocab, n_ctx_train;
    float rope_base, rms_eps;
    int lm_head_tied;        /* 1: the LM head is token_embd.weight */
    int64_t n_tensors, n_params;
    uint64_t tensor_bytes;   /* all tensors */
    uint64_t bytes_per_token; /* weight bytes one decode step reads */
} trinity_model_info;
TRINITY_API trinity_status trinity_model_get_info(const trinity_model *model, trinity_model_info *info);

typedef struct {
    size_t size;             /* sizeof(trinity_tensor_info): set it before the call */
    const char *name;        /* valid while the model is open */
    const char *type;        /* "tq2_0", "tq1_0", "f16", "f32", ... */
    int n_dims;
    int64_t ne[4];           /* ne[0] contiguous (GGUF order); 1 past n_dims */
    int64_t n_elements;
    uint64_t bytes;
} trinity_tensor_info;
/* Tensor `index` (0 .. n_tensors - 1) in file order. */
TRINITY_API trinity_status trinity_model_tensor(const trinity_model *model, int64_t index, trinity_tensor_info *info);

/* The string value of metadata `key` (e.g. "tokenizer.chat_template", "general.name") into buf[0..capacity),
 * NUL-terminated (truncated to fit); *len (may be NULL) receives its full length. TRINITY_ERR_INVALID where the key
 * is absent or not a string. Works for vocabulary-only models too. */
TRINITY_API trinity_status trinity_model_meta_string(const trinity_model *model, const char *key, char *buf,
                                                     size_t capacity, size_t *len);

/* ---- tokens ---- */
/* Encodes len bytes of text (UTF-8; other bytes go through byte fallback) into ids[0..capacity). *n_ids is the number
 * of ids the text needs, also when capacity is too small (then TRINITY_ERR_INVALID and ids holds the first ones). */
TRINITY_API trinity_status trinity_tokenize(const trinity_model *model, const char *text, size_t len, int add_bos,
                                            int *ids, int capacity, int *n_ids);
/* Whether len bytes of text are valid UTF-8 (the tokenizer takes any bytes; callers that want text can refuse the
 * rest); where not, *bad (may be NULL) receives the offset of the first invalid byte. */
TRINITY_API int trinity_utf8_valid(const char *text, size_t len, size_t *bad);
/* The bytes printing `token` gives after `prev` (-1 at the start): written to buf[0..capacity), not
 * NUL-terminated; returns the piece's length (which may exceed capacity; nothing is written past it). */
TRINITY_API size_t trinity_token_piece(const trinity_model *model, int prev, int token, char *buf, size_t capacity);

/* ---- sessions ---- */
TRINITY_API trinity_session_params trinity_session_params_default(void);
/* A session with its own KV cache on the model's device. params may be NULL (the defaults). */
TRINITY_API trinity_status trinity_session_new(trinity_model *model, const trinity_session_params *params,
                                               trinity_session **out);
TRINITY_API void trinity_session_free(trinity_session *session);
TRINITY_API int trinity_session_n_ctx(const trinity_session *session);
TRINITY_API int trinity_session_n_past(const trinity_session *session); /* positions filled so far */
TRINITY_API const char *trinity_session_device(const trinity_session *session); /* e.g. "cpu (avx512, 2 threads)" */
/* How TRINITY_DEVICE_AUTO chose: "cuda", or "cpu (CUDA unavailable: REASON)"; "" where the device was named. */
TRINITY_API const char *trinity_session_device_choice(const trinity_session *session);
/* Forgets the context: the next token fed goes to position 0. */
TRINITY_API void trinity_session_reset(trinity_session *session);

/* Runs ids[0..n_ids) at the next positions (batched where the device can), then samples the next token from the last
 * one's logits. all_logits: NULL, or [n_ids][n_vocab] floats receiving every token's logits. Refused (nothing run)
 * when the tokens do not fit the context or an id is outside the vocabulary. */
TRINITY_API trinity_status trinity_session_feed(trinity_session *session, const int *ids, int n_ids,
                                                float *all_logits);
/* Tokenizes text (with BOS when add_bos and nothing was fed yet) and feeds it. */
TRINITY_API trinity_status trinity_session_feed_text(trinity_session *session, const char *text, int add_bos);
/* The logits after the last token fed or generated, [n_vocab]; NULL before any. */
TRINITY_API const float *trinity_session_logits(const trinity_session *session);
/* Generates up to n_predict tokens after what was fed: each sampled token is passed to on_piece (may be NULL) as
 * text and, but for the last, run to sample the next. Stops early at EOS (not passed on) or when on_piece returns
 * nonzero. *n_generated (may be NULL): tokens generated, EOS included. Refused when n_predict would pass the
 * context, or when nothing was fed. */
TRINITY_API trinity_status trinity_session_generate(trinity_session *session, int n_predict, trinity_piece_fn on_piece,
                                                    void *user, int *n_generated);
/* The last token generated (EOS when generation stopped there); -1 before any. */
TRINITY_API int trinity_session_last_token(const trinity_session *session);

/* Perplexity of text by llama.cpp's method: tokenized with BOS, cut into chunks of `chunk` tokens (0: the session's
 * context, at most 512), each chunk run from position 0 and the second half of it scored. Needs at least one chunk of
 * text. progress may be NULL. Resets the session. */
TRINITY_API trinity_status trinity_session_perplexity(trinity_session *session, const char *text, size_t len,
                                                      int chunk, trinity_progress_fn progress, void *user,
                                                      trinity_perplexity_result *result);

/* ---- sequences decoded together (continuous batching) ----
 * A trinity_batch holds n_slots sequences on the model's device, each slot with its own KV cache of n_ctx positions.
 * trinity_batch_decode runs tokens of any slots in one call: on the CPU as one batch, every weight read once for all
 * of them (the batched prefill kernels); on a device without a batched decode, slot by slot. A slot's logits are
 * those of the same tokens run alone through a session (bitwise on the CPU), whatever else shares the call. Sampling
 * is the caller's (trinity_sampler), with each sequence's own settings. One thread at a time uses a batch. */
typedef struct trinity_batch trinity_batch;

typedef struct {
    size_t size;  /* sizeof(trinity_batch_params): set by trinity_batch_params_default */
    int n_slots;  /* sequences held at once (4) */
    int n_ctx;    /* positions of each slot's KV cache; 0: the model's context, at most 4096 */
} trinity_batch_params;

typedef struct {
    int token;
    int slot;     /* 0 .. n_slots - 1 */
    int pos;      /* its position in the slot: at most the positions the slot has filled (run in earlier calls, or
                     earlier in this one): the next one, or an earlier one to overwrite what followed */
    int logits;   /* 1: return this token's logits */
} trinity_batch_token;

TRINITY_API trinity_batch_params trinity_batch_params_default(void);
TRINITY_API trinity_status trinity_batch_new(trinity_model *model, const trinity_batch_params *params,
                                             trinity_batch **out);
TRINITY_API void trinity_batch_free(trinity_batch *batch);
TRINITY_API int trinity_batch_n_slots(const trinity_batch *batch);
TRINITY_API int trinity_batch_n_ctx(const trinity_batch *batch);
TRINITY_API const char *trinity_batch_device(const trinity_batch *batch); /* e.g. "cpu (avx512 kernels, ...)" */
/* Positions slot `slot` has filled: its next token goes there. */
TRINITY_API int trinity_batch_n_past(const trinity_batch *batch, int slot);
/* Forgets a slot's positions: its next token goes to position 0. */
TRINITY_API void trinity_batch_clear(trinity_batch *batch, int slot);
/* Runs tokens[0..n_tokens). logits: [number of tokens with .logits set][n_vocab], in their order (may be NULL when
 * none is set). Refused, nothing run, where an id, slot or position is out of range. */
TRINITY_API trinity_status trinity_batch_decode(trinity_batch *batch, const trinity_batch_token *tokens, int n_tokens,
                                                float *logits);

/* ---- sampling outside a session ---- */
typedef struct trinity_sampler trinity_sampler;
/* A sampler with a session's settings (temperature, top_k, top_p, repeat_penalty, seed; n_ctx is not used). */
TRINITY_API trinity_status trinity_sampler_new(const trinity_model *model, const trinity_session_params *params,
                                               trinity_sampler **out);
TRINITY_API void trinity_sampler_free(trinity_sampler *sampler);
/* The token to follow a sequence's tokens history[0..n_history) (n_history >= 1), given the logits[n_vocab] of its
 * last token (changed in place): the token a session with the same settings samples after the same tokens (the
 * draw is a hash of the seed and the last token's position, n_history - 1). */
TRINITY_API int trinity_sampler_sample(trinity_sampler *sampler, float *logits, const int *history, int n_history);

/* ---- tools: what the trinity command's info, graph, convert and bench run (text output may change) ---- */

/* The decode-step graph of the model for a context of n_ctx positions (0: the model's, at most 4096), one node per
 * line with its buffers, fusion marks and the activation plan (trinity graph), written to out. */
TRINITY_API trinity_status trinity_model_print_graph(const trinity_model *model, int n_ctx, FILE *out);

/* Conversion of another checkpoint format to a GGUF file (trinity convert). The output is written under a temporary
 * name and renamed only when complete. */
typedef struct {
    size_t size;              /* sizeof(trinity_convert_params): set by trinity_convert_params_default */
    const char *from;         /* "hf" (config.json + *.safetensors), "trin" (packed ternary codes) or "llama2c" */
    const char *input;        /* the Hugging Face directory, the TRIN file, or the llama2.c checkpoint */
    const char *base_dir;     /* trin: the base Hugging Face checkpoint (shapes, scales, norms, embeddings) */
    const char *tokenizer;    /* llama2c: its tokenizer.bin */
    const char *vocab;        /* NULL, or a GGUF whose vocabulary is used instead */
    const char *output;       /* OUT.gguf */
    const char *type;         /* linear layers: "tq2_0", "tq1_0", "f16", "f32"; NULL: tq2_0 (hf, trin), f32 (llama2c) */
    const char *embed_type;   /* token embeddings: "f16", "f32"; NULL: f16 (hf, trin), f32 (llama2c) */
    const char *ternary_rule; /* hf to ternary: "absmean" (NULL) or "seed" (sign, scaled by std as the TRIN release) */
    int progress;             /* 1: a progress bar on standard error where it is a terminal */
} trinity_convert_params;
TRINITY_API trinity_convert_params trinity_convert_params_default(void);
TRINITY_API trinity_status trinity_convert(const trinity_convert_params *params);

/* Prefill and decode tokens/s against the bounds measured in the same run (trinity bench): the model's file is run
 * again on the device and settings given here (the model's own params are not used). */
typedef struct {
    size_t size;              /* sizeof(trinity_bench_params): set by trinity_bench_params_default */
    trinity_device device;
    int n_threads;            /* 0: all cores */
    const char *kernels;      /* as trinity_model_params.kernels */
    int f32_activations;
    trinity_weights weights;
    int resident_layers;      /* -1: as the mode decides */
    int n_prompt;             /* prompt tokens for the prefill figure (64) */
    int n_decode;             /* decode steps timed (32) */
    int json;                 /* 1: one JSON object instead of a table */
    int compare_weights;      /* 1: every GPU weight mode in one run */
    int dense_f16;            /* 1 (CUDA only): every ternary matrix expanded to FP16 at load and run as a dense
                                 FP16 model: the baseline the ternary kernels are measured against */
} trinity_bench_params;
TRINITY_API trinity_bench_params trinity_bench_params_default(void);
TRINITY_API trinity_status trinity_bench(const trinity_model *model, const trinity_bench_params *params, FILE *out);

#ifdef __cplusplus
}
#endif

#endif
