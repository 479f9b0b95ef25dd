/* server.h: `trinity serve`, an OpenAI-compatible HTTP server with continuous batching (host/server.c). Its one entry
 * point opens the model, serves until SIGINT or SIGTERM and returns the command's exit code. */
#ifndef TRN_SERVER_H
#define TRN_SERVER_H

#include "trinity.h"

typedef struct {
    const char *model_path;            /* a GGUF file, or "synthetic:NAME" */
    trinity_model_params model_params; /* device, threads, kernels, activations, GPU weights */
    const char *host;                  /* the address to listen on, e.g. "127.0.0.1" */
    int port;                          /* 0: a free port, chosen by the system */
    int n_parallel;                    /* sequences served at once (slots of the batch), at least 1 */
    int n_ctx_total;                   /* positions of all slots together, split evenly; 0: the model's context,
                                          at most TRINITY_DEFAULT_CONTEXT */
    const char *api_key;               /* NULL: none; else every /v1 request needs "Authorization: Bearer KEY" */
    const char *chat_template;         /* NULL: the model's tokenizer.chat_template (chatml where it has none);
                                          else "llama2", "zephyr" or "chatml" */
} trn_serve_options;

/* Serves until SIGINT or SIGTERM. Prints "listening on http://HOST:PORT (N slots of C positions, DEVICE)" on
 * standard error once requests are accepted, one line per finished request, and one "error: ..." line where it
 * cannot start. Returns 0 after a signal, 1 on an error (also in a build without libmicrohttpd or cJSON). */
int trn_serve(const trn_serve_options *options);

#endif
