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

#ifdef __cplusplus
extern "C" {
#endif

#define TRINITY_VERSION_MAJOR 0
#define TRINITY_VERSION_MINOR 2
#define TRINITY_VERSION_PATCH 0

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
                                "avx512" */
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

/* Called with each new piece of text (complete UTF-8 characters, possibly empty) and the token it came from;
 * returning nonzero stops the generation after this piece. */
typedef int (*trinity_piece_fn)(const char *piece, size_t len, int token, void *user);

TRINITY_API const char *trinity_version(void);                /* "0.2.0" */
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

/* ---- tokens ---- */
/* Encodes len bytes of text (UTF-8; other bytes go through byte fallback) into ids[0..capacity). *n_ids is the number
 * of ids the text needs, also when capacity is too small (then TRINITY_ERR_INVALID and ids holds the first ones). */
TRINITY_API trinity_status trinity_tokenize(const trinity_model *model, const char *text, size_t len, int add_bos,
                                            int *ids, int capacity, int *n_ids);
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

#ifdef __cplusplus
}
#endif

#endif
