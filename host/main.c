/* main.c: the `trinity` command, the first user of the public API (trinity.h): generate, tokenize, info, graph,
 * bench, perplexity, logits, convert and serve, with llama.cpp-style flags read from one table (cli_flags) that also
 * writes each command's --help. The engine is reached only through trinity.h; besides it, the command uses the
 * small utilities every program here shares (common.h: time, checked file reads; output_file.h; npy.h) and, for
 * serve, the HTTP server (server.h), which prints its own lines as it runs. Otherwise this is the only place that
 * prints errors and chooses exit codes: 0 on success, 1 on an error at run time (bad model file, prompt too long,
 * ...), 2 on bad usage (unknown flag, impossible value). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "chat.h"
#include "common.h"
#include "npy.h"
#include "output_file.h"
#include "profiling/bench_parallel.h"
#include "server.h"
#include "trinity.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

/* ---- the commands and their flags ------------------------------------------------------------------------ */

enum {
    CMD_GENERATE = 1 << 0,
    CMD_TOKENIZE = 1 << 1,
    CMD_INFO = 1 << 2,
    CMD_GRAPH = 1 << 3,
    CMD_BENCH = 1 << 4,
    CMD_PERPLEXITY = 1 << 5,
    CMD_LOGITS = 1 << 6,
    CMD_CONVERT = 1 << 7,
    CMD_SERVE = 1 << 8,
    CMD_MODEL = CMD_GENERATE | CMD_TOKENIZE | CMD_INFO | CMD_GRAPH | CMD_BENCH | CMD_PERPLEXITY | CMD_LOGITS |
                CMD_SERVE,
    CMD_RUN = CMD_GENERATE | CMD_BENCH | CMD_PERPLEXITY | CMD_LOGITS | CMD_SERVE, /* commands that run the model */
};

typedef struct {
    unsigned command;       /* CMD_* */
    const char *command_name;
    const char *model_path; /* -m, or "synthetic:NAME" */
    char synthetic_path[64];
    const char *synthetic;
    const char *prompt;
    int n_predict;          /* -1: up to 128 within the context */
    int n_ctx;              /* 0: the model's, at most TRINITY_DEFAULT_CONTEXT */
    int n_threads;          /* 0: all cores */
    const char *device, *act, *kernels, *weights, *dense;
    int scalar, no_bos, json, compare_weights, resident_layers;
    float temp, top_p, repeat_penalty;
    int top_k;
    unsigned long long seed;
    const char *text;       /* tokenize's TEXT */
    int bench_prompt, bench_decode, bench_parallel;
    const char *text_file;  /* perplexity -f */
    const char *ids;        /* logits --ids */
    const char *output;     /* logits -o, convert -o */
    int top;                /* logits --top */
    const char *from, *input, *base_dir, *tokenizer, *vocab, *type, *embed_type, *ternary_rule; /* convert */
    const char *host, *api_key, *chat_template; /* serve */
    int port, n_parallel;
    unsigned char given[64]; /* given[i]: flag cli_flags[i] was on the command line */
} cli_options;

typedef enum {
    VALUE_NONE,   /* a switch: the int at `offset` becomes 1 */
    VALUE_INT,    /* an integer in [min, max] */
    VALUE_FLOAT,  /* a number in [min, max] */
    VALUE_U64,    /* a non-negative integer */
    VALUE_TEXT,   /* any string */
    VALUE_CHOICE, /* one of `choices` ("a|b|c"), kept as the string */
} value_kind;

typedef struct {
    const char *names;   /* "-n, --n-predict": a short and/or a long spelling */
    const char *value;   /* the value's name in the help ("N"); NULL for a switch */
    unsigned commands;   /* CMD_* that take it */
    int group;           /* 0: the command's own, 1: running the model (printed after) */
    value_kind kind;
    size_t offset;       /* in cli_options */
    double min, max;     /* VALUE_INT, VALUE_FLOAT */
    const char *choices; /* VALUE_CHOICE */
    const char *help;    /* says the default */
} cli_flag;

#define AT(field) offsetof(cli_options, field)
static const cli_flag cli_flags[] = {
    {"-m, --model", "FILE", CMD_MODEL, 0, VALUE_TEXT, AT(model_path), 0, 0, NULL, "a GGUF model"},
    {"--synthetic", "NAME", CMD_MODEL, 0, VALUE_CHOICE, AT(synthetic), 0, 0, "tinyllama|tinyllama-tq1|tiny",
     "instead of -m: a built-in model with random weights, generated in memory (meaningless text; for benchmarks "
     "and tests)"},
    {"-p, --prompt", "TEXT", CMD_GENERATE, 0, VALUE_TEXT, AT(prompt), 0, 0, NULL,
     "the prompt, UTF-8 (default: empty: generation starts from BOS)"},
    {"-p, --prompt", "TEXT", CMD_LOGITS | CMD_TOKENIZE, 0, VALUE_TEXT, AT(prompt), 0, 0, NULL,
     "the text to tokenize (with BOS unless --no-bos)"},
    {"-n, --n-predict", "N", CMD_GENERATE, 0, VALUE_INT, AT(n_predict), 0, INT_MAX, NULL,
     "new tokens (default: up to 128, within the context)"},
    {"-c, --ctx-size", "N", CMD_GENERATE | CMD_GRAPH | CMD_LOGITS, 0, VALUE_INT, AT(n_ctx), 1, TRINITY_MAX_CONTEXT,
     NULL, "context positions (default: the model's, at most 4096)"},
    {"-c, --ctx-size", "N", CMD_SERVE, 0, VALUE_INT, AT(n_ctx), 1, TRINITY_MAX_CONTEXT, NULL,
     "context positions of all slots together, split evenly across the --parallel slots (default: the model's "
     "context, at most 4096)"},
    {"--host", "ADDRESS", CMD_SERVE, 0, VALUE_TEXT, AT(host), 0, 0, NULL,
     "the address to listen on (default 127.0.0.1)"},
    {"--port", "PORT", CMD_SERVE, 0, VALUE_INT, AT(port), 0, 65535, NULL, "(default 8080; 0: a free port)"},
    {"--parallel", "N", CMD_SERVE, 0, VALUE_INT, AT(n_parallel), 1, 1024, NULL,
     "sequences generated at once, each in its own slot (default 4)"},
    {"--api-key", "KEY", CMD_SERVE, 0, VALUE_TEXT, AT(api_key), 0, 0, NULL,
     "every /v1 request must send \"Authorization: Bearer KEY\" (default: none needed)"},
    {"--chat-template", "FORMAT", CMD_SERVE, 0, VALUE_CHOICE, AT(chat_template), 0, 0, TRN_CHAT_FORMAT_NAMES,
     "the chat format (default: the model's tokenizer.chat_template, recognised by its markers; chatml where the "
     "model has none)"},
    {"-c, --ctx-size", "N", CMD_PERPLEXITY, 0, VALUE_INT, AT(n_ctx), 1, TRINITY_MAX_CONTEXT, NULL,
     "chunk length (default: the model's context, at most 512)"},
    {"--temp", "T", CMD_GENERATE, 0, VALUE_FLOAT, AT(temp), 0.0, 1e6, NULL, "temperature (default 0.8; 0 is greedy)"},
    {"--top-k", "K", CMD_GENERATE, 0, VALUE_INT, AT(top_k), 0, INT_MAX, NULL, "(default 40; 0 keeps every token)"},
    {"--top-p", "P", CMD_GENERATE, 0, VALUE_FLOAT, AT(top_p), 1e-6, 1.0, NULL, "(default 0.95)"},
    {"--repeat-penalty", "R", CMD_GENERATE, 0, VALUE_FLOAT, AT(repeat_penalty), 1e-3, 1e3, NULL, "(default 1.0: off)"},
    {"-s, --seed", "S", CMD_GENERATE, 0, VALUE_U64, AT(seed), 0, 0, NULL,
     "(default: taken from the clock and printed on stderr)"},
    {"--no-bos", NULL, CMD_GENERATE | CMD_TOKENIZE | CMD_LOGITS, 0, VALUE_NONE, AT(no_bos), 0, 0, NULL,
     "do not start with the BOS token"},
    {"-f, --file", "TEXT.txt", CMD_PERPLEXITY, 0, VALUE_TEXT, AT(text_file), 0, 0, NULL, "UTF-8 text (at most 256 MB)"},
    {"--ids", "\"1 2 3\"", CMD_LOGITS, 0, VALUE_TEXT, AT(ids), 0, 0, NULL, "token ids instead of text"},
    {"-o, --output", "OUT.npy", CMD_LOGITS, 0, VALUE_TEXT, AT(output), 0, 0, NULL,
     "every position's logits as float32 [tokens, vocab]"},
    {"--top", "K", CMD_LOGITS, 0, VALUE_INT, AT(top), 1, 1 << 20, NULL, "the K best ids and logits per position, as text"},
    {"--prompt-tokens", "N", CMD_BENCH, 0, VALUE_INT, AT(bench_prompt), 1, 2048, NULL,
     "prompt length (default 64; 512 with --device cuda)"},
    {"--decode-tokens", "N", CMD_BENCH, 0, VALUE_INT, AT(bench_decode), 1, 2048, NULL, "decode steps timed (default 32)"},
    {"--parallel", "N", CMD_BENCH, 0, VALUE_INT, AT(bench_parallel), 1, 64, NULL,
     "aggregate decode tokens/s of 1, 4, 8, 16 ... N sequences decoded together, and the time to every first token "
     "when their prompts arrive at once"},
    {"--compare-weights", NULL, CMD_BENCH, 0, VALUE_NONE, AT(compare_weights), 0, 0, NULL,
     "(--device cuda) every GPU weight mode in one run"},
    {"--dense", "f16", CMD_BENCH, 0, VALUE_CHOICE, AT(dense), 0, 0, "f16",
     "(--device cuda) the dense baseline: every ternary matrix expanded to FP16 at load"},
    {"--json", NULL, CMD_BENCH | CMD_PERPLEXITY, 0, VALUE_NONE, AT(json), 0, 0, NULL, "one JSON object on stdout"},
    {"--from", "SOURCE", CMD_CONVERT, 0, VALUE_CHOICE, AT(from), 0, 0, "hf|trin|llama2c",
     "hf: HF_DIR with config.json + *.safetensors (F32, F16, BF16); trin: PACKED.bin, packed ternary codes (with "
     "--base); llama2c: MODEL.bin, a llama2.c checkpoint (with --tokenizer)"},
    {"--base", "HF_DIR", CMD_CONVERT, 0, VALUE_TEXT, AT(base_dir), 0, 0, NULL,
     "trin: the base checkpoint (shapes, scales, norms, embeddings)"},
    {"--tokenizer", "TOK.bin", CMD_CONVERT, 0, VALUE_TEXT, AT(tokenizer), 0, 0, NULL, "llama2c: its tokenizer"},
    {"-o, --output", "OUT.gguf", CMD_CONVERT, 0, VALUE_TEXT, AT(output), 0, 0, NULL,
     "the file to write (never one of the inputs)"},
    {"--type", "T", CMD_CONVERT, 0, VALUE_CHOICE, AT(type), 0, 0, "tq2_0|tq1_0|f16|f32",
     "linear layers: hf tq2_0 (default), tq1_0, f16, f32; trin tq2_0 (default), tq1_0; llama2c f32 (default), f16, "
     "tq2_0, tq1_0 (rows a multiple of 256)"},
    {"--embed-type", "T", CMD_CONVERT, 0, VALUE_CHOICE, AT(embed_type), 0, 0, "f16|f32",
     "token embeddings (default f16; llama2c f32)"},
    {"--ternary-rule", "RULE", CMD_CONVERT, 0, VALUE_CHOICE, AT(ternary_rule), 0, 0, "absmean|seed",
     "hf: how float weights become ternary (default absmean; seed: sign times std, as the TRIN release)"},
    {"--vocab", "V.gguf", CMD_CONVERT, 0, VALUE_TEXT, AT(vocab), 0, 0, NULL, "take the vocabulary from this GGUF"},
    {"-t, --threads", "N", CMD_RUN, 1, VALUE_INT, AT(n_threads), 1, 1024, NULL,
     "CPU threads (default: all cores; more than the cores is allowed but slow)"},
    {"--device", "DEV", CMD_RUN, 1, VALUE_CHOICE, AT(device), 0, 0, "cpu|cuda|auto",
     "where to run (default auto: CUDA where a usable GPU and a CUDA build exist)"},
    {"--act", "A", CMD_RUN, 1, VALUE_CHOICE, AT(act), 0, 0, "int8|f32",
     "ternary layers' activations: int8 per block of 256 as llama.cpp (default) or exact floats"},
    {"--kernels", "K", CMD_RUN, 1, VALUE_CHOICE, AT(kernels), 0, 0, "scalar|avx2|avx512|amx|auto",
     "CPU kernel table (default auto: the fastest this CPU runs; also the TRN_KERNELS environment variable)"},
    {"--scalar", NULL, CMD_RUN, 1, VALUE_NONE, AT(scalar), 0, 0, NULL, "the same as --kernels scalar"},
    {"--weights", "W", CMD_RUN, 1, VALUE_CHOICE, AT(weights), 0, 0, "auto|resident|streaming|mapped",
     "GPU weights (default auto: resident where they fit, else the first layers resident and the rest streamed)"},
    {"--resident-layers", "K", CMD_RUN, 1, VALUE_INT, AT(resident_layers), 0, 4096, NULL,
     "with --weights streaming or auto: the first K layers resident, the rest streamed"},
};
#undef AT

typedef struct {
    const char *name;
    unsigned bit;
    const char *synopsis; /* after "trinity NAME" */
    const char *summary;
} cli_command;

static const cli_command cli_commands[] = {
    {"generate", CMD_GENERATE, "-m FILE -p TEXT [options]", "the prompt, then generated text on stdout"},
    {"tokenize", CMD_TOKENIZE, "-m FILE [--no-bos] TEXT", "token ids on one line (a vocabulary-only GGUF works)"},
    {"info", CMD_INFO, "-m FILE", "hyperparameters and the tensor table"},
    {"graph", CMD_GRAPH, "-m FILE [-c CTX]", "the decode-step graph, one node per line, with fusion marks and the "
     "buffer plan"},
    {"bench", CMD_BENCH, "(-m FILE | --synthetic NAME) [options]", "prefill and decode tokens/s against measured "
     "bounds"},
    {"perplexity", CMD_PERPLEXITY, "-m FILE -f TEXT.txt [options]", "perplexity by llama.cpp's method"},
    {"logits", CMD_LOGITS, "-m FILE (-p TEXT | --ids \"1 2 3\") (-o OUT.npy | --top K)", "teacher-forced logits"},
    {"convert", CMD_CONVERT, "--from hf|trin|llama2c INPUT -o OUT.gguf [options]", "another checkpoint format to "
     "GGUF"},
    {"serve", CMD_SERVE, "(-m FILE | --synthetic NAME) [--port P] [--parallel N] [options]", "an OpenAI-compatible "
     "HTTP server (/v1/completions, /v1/chat/completions) with continuous batching"},
};

static const cli_command *find_command(const char *name) {
    for (size_t i = 0; i < TRN_ARRAY_LEN(cli_commands); i++)
        if (strcmp(cli_commands[i].name, name) == 0)
            return &cli_commands[i];
    return NULL;
}

static void usage(FILE *out) {
    fprintf(out, "usage: trinity COMMAND [options]\ncommands:\n");
    for (size_t i = 0; i < TRN_ARRAY_LEN(cli_commands); i++)
        fprintf(out, "  %-10s %s\n", cli_commands[i].name, cli_commands[i].synopsis);
    fprintf(out, "model: -m FILE.gguf, or --synthetic tinyllama|tinyllama-tq1|tiny (generated in memory, no download)\n"
                 "help: trinity COMMAND --help (or trinity help COMMAND) lists a command's flags and defaults\n");
}

/* Prints `text` from column `indent` on, wrapped at 118 columns. */
static void print_wrapped(FILE *out, const char *text, int column, int indent) {
    while (*text) {
        const int room = 118 - column;
        int cut = (int)strlen(text);
        if (cut > room) {
            cut = room;
            while (cut > 0 && text[cut] != ' ')
                cut--;
            if (cut == 0)
                cut = room;
        }
        fprintf(out, "%.*s\n", cut, text);
        text += cut;
        while (*text == ' ')
            text++;
        if (*text)
            fprintf(out, "%*s", indent, "");
        column = indent;
    }
}

/* `trinity COMMAND --help`: that command's flags with their defaults, from the table. */
static void command_usage(const cli_command *c, FILE *out) {
    fprintf(out, "usage: trinity %s %s: %s\n", c->name, c->synopsis, c->summary);
    for (int group = 0; group < 2; group++) {
        int first = 1;
        for (size_t i = 0; i < TRN_ARRAY_LEN(cli_flags); i++) {
            const cli_flag *f = &cli_flags[i];
            if (!(f->commands & c->bit) || f->group != group)
                continue;
            if (first && group == 1)
                fprintf(out, "running the model:\n");
            first = 0;
            char head[64];
            snprintf(head, sizeof(head), "  %s%s%s", f->names, f->value ? " " : "",
                     f->kind == VALUE_CHOICE ? f->choices : f->value ? f->value : "");
            fprintf(out, "%-28s", head);
            if ((int)strlen(head) >= 28)
                fprintf(out, "\n%28s", "");
            print_wrapped(out, f->help, 28, 28);
        }
    }
    fprintf(out, "exit codes: 0 success, 1 an error at run time, 2 bad usage\n");
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see trinity --help)\n");
    return EXIT_USAGE;
}

/* Whether `arg` is one of the comma-separated spellings in `names`. */
static int names_match(const char *names, const char *arg) {
    const size_t len = strlen(arg);
    for (const char *p = names; *p;) {
        const char *end = strchr(p, ',');
        const size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && strncmp(p, arg, n) == 0)
            return 1;
        p += n;
        while (*p == ',' || *p == ' ')
            p++;
    }
    return 0;
}

/* Whether `value` is one of `choices` ("a|b|c"). */
static int choice_match(const char *choices, const char *value) {
    const size_t len = strlen(value);
    for (const char *p = choices; *p;) {
        const char *end = strchr(p, '|');
        const size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == len && strncmp(p, value, n) == 0)
            return 1;
        p += end ? n + 1 : n;
    }
    return 0;
}

/* Stores `value` for flag f (spelled `arg`); 0, or EXIT_USAGE with one line. */
static int set_flag(const cli_flag *f, const char *arg, const char *value, cli_options *o) {
    void *field = (char *)o + f->offset;
    char *end;
    errno = 0;
    switch (f->kind) {
    case VALUE_NONE:
        *(int *)field = 1;
        return 0;
    case VALUE_TEXT:
        *(const char **)field = value;
        return 0;
    case VALUE_CHOICE:
        if (!choice_match(f->choices, value)) {
            fprintf(stderr, "error: %s %s: expected %s (see trinity %s --help)\n", arg, value, f->choices,
                    o->command_name);
            return EXIT_USAGE;
        }
        *(const char **)field = value;
        return 0;
    case VALUE_INT: {
        const long v = strtol(value, &end, 10);
        if (errno || end == value || *end || v < f->min || v > f->max) {
            fprintf(stderr, "error: %s %s: expected an integer from %.0f to %.0f\n", arg, value, f->min, f->max);
            return EXIT_USAGE;
        }
        *(int *)field = (int)v;
        return 0;
    }
    case VALUE_FLOAT: {
        const double v = strtod(value, &end);
        if (errno || end == value || *end || !(v >= f->min && v <= f->max)) {
            fprintf(stderr, "error: %s %s: expected a number from %g to %g\n", arg, value, f->min, f->max);
            return EXIT_USAGE;
        }
        *(float *)field = (float)v;
        return 0;
    }
    case VALUE_U64: {
        const unsigned long long v = strtoull(value, &end, 10);
        if (errno || end == value || *end || value[0] == '-')
            return usage_error("%s: expected a non-negative integer", arg);
        *(unsigned long long *)field = v;
        return 0;
    }
    }
    return EXIT_USAGE;
}

/* Whether the flag spelled `names` was given (any of its entries). */
static int given(const cli_options *o, const char *names) {
    for (size_t i = 0; i < TRN_ARRAY_LEN(cli_flags); i++)
        if (o->given[i] && strcmp(cli_flags[i].names, names) == 0)
            return 1;
    return 0;
}

/* Which commands take a flag spelled `arg`, as "a, b" (for the message that it is not this one's). */
static void commands_taking(const char *arg, char *out, size_t cap) {
    unsigned bits = 0;
    for (size_t i = 0; i < TRN_ARRAY_LEN(cli_flags); i++)
        if (names_match(cli_flags[i].names, arg))
            bits |= cli_flags[i].commands;
    out[0] = 0;
    for (size_t i = 0; i < TRN_ARRAY_LEN(cli_commands); i++)
        if (bits & cli_commands[i].bit) {
            const size_t len = strlen(out);
            snprintf(out + len, cap - len, "%s%s", len ? ", " : "", cli_commands[i].name);
        }
}

/* Checks between flags, after all are read. */
static int check_combination(cli_options *o) {
    if (o->command == CMD_CONVERT) {
        if (!o->from)
            return usage_error("%s needs --from hf, trin or llama2c", o->command_name);
        if (!o->input || !o->output)
            return usage_error("%s needs an input and -o OUT.gguf", o->command_name);
        if (strcmp(o->from, "trin") == 0 && !o->base_dir)
            return usage_error("%s --from trin needs --base HF_DIR (shapes, scales, norms, embeddings)", o->command_name);
        if (strcmp(o->from, "llama2c") == 0 && !o->tokenizer && !o->vocab)
            return usage_error("%s --from llama2c needs --tokenizer TOK.bin (or --vocab FILE.gguf)", o->command_name);
        return 0;
    }
    if (o->synthetic) {
        snprintf(o->synthetic_path, sizeof(o->synthetic_path), "synthetic:%s", o->synthetic);
        o->model_path = o->synthetic_path;
    }
    if (!o->model_path)
        return usage_error("%s needs a model: -m FILE or --synthetic NAME", o->command_name);
    if (o->scalar)
        o->kernels = "scalar";
    const int weights_given = given(o, "--weights"), layers_given = given(o, "--resident-layers");
    if (layers_given && o->weights && (strcmp(o->weights, "resident") == 0 || strcmp(o->weights, "mapped") == 0))
        return usage_error("--resident-layers goes with --weights streaming or auto, not %s", o->weights);
    if ((weights_given || layers_given || o->compare_weights) && strcmp(o->device, "cpu") == 0)
        return usage_error("%s: GPU weight modes need --device cuda or auto",
                           o->compare_weights ? "--compare-weights" : weights_given ? "--weights" : "--resident-layers");
    if (o->command == CMD_BENCH && !given(o, "--prompt-tokens") && !o->bench_parallel && !o->compare_weights &&
        strcmp(o->device, "cuda") == 0)
        o->bench_prompt = 512; /* a GPU's batched prefill is measured on a prompt of a realistic length */
    if (o->dense && strcmp(o->device, "cpu") == 0)
        return usage_error("%s: a GPU baseline, it needs --device cuda or auto", "--dense f16");
    if (o->dense && (o->compare_weights || o->bench_parallel))
        return usage_error("--dense is its own benchmark, not with %s",
                           o->compare_weights ? "--compare-weights" : "--parallel");
    if (o->compare_weights && o->bench_parallel)
        return usage_error("%s: --compare-weights and --parallel are separate benchmarks", o->command_name);
    if (o->compare_weights && (weights_given || layers_given))
        return usage_error("%s: --compare-weights runs every weight mode itself", o->command_name);
    if (o->command == CMD_TOKENIZE && !o->text)
        o->text = o->prompt;
    if (o->command == CMD_TOKENIZE && !o->text)
        return usage_error("%s needs the text to tokenize", o->command_name);
    if (o->command == CMD_PERPLEXITY && !o->text_file)
        return usage_error("%s needs a text file: -f TEXT.txt", o->command_name);
    if (o->command == CMD_LOGITS) {
        if (!o->prompt == !o->ids)
            return usage_error("%s needs exactly one of -p TEXT and --ids \"1 2 3\"", o->command_name);
        if (!o->output == !o->top)
            return usage_error("%s needs exactly one of -o OUT.npy and --top K", o->command_name);
    }
    return 0;
}

/* Returns 0 on success, else the exit code (help printed: -1, exit 0). */
static int parse_args(int argc, char **argv, cli_options *o) {
    memset(o, 0, sizeof(*o));
    _Static_assert(TRN_ARRAY_LEN(cli_flags) <= sizeof(o->given), "one given[] entry per flag");
    o->n_predict = -1;
    o->device = "auto";
    o->temp = 0.8f;
    o->top_k = 40;
    o->top_p = 0.95f;
    o->repeat_penalty = 1.0f;
    o->bench_prompt = 64;
    o->bench_decode = 32;
    o->host = "127.0.0.1";
    o->port = 8080;
    o->n_parallel = 4;
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    o->command_name = argv[1];
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0) {
        const cli_command *c = argc > 2 ? find_command(argv[2]) : NULL; /* trinity help COMMAND */
        if (c)
            command_usage(c, stdout);
        else
            usage(stdout);
        return -1;
    }
    const cli_command *command = find_command(argv[1]);
    if (!command)
        return usage_error("unknown command '%s'", argv[1]);
    o->command = command->bit;
    const char **positional = o->command == CMD_TOKENIZE ? &o->text : o->command == CMD_CONVERT ? &o->input : NULL;
    int positional_only = 0; /* after "--", every argument is text (e.g. tokenize -- -5) */
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!positional_only && strcmp(a, "--") == 0) {
            positional_only = 1;
            continue;
        }
        if (positional_only || a[0] != '-' || a[1] == 0) {
            if (!positional || *positional)
                return usage_error("unexpected argument '%s'", a);
            *positional = a;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            command_usage(command, stdout);
            return -1;
        }
        size_t k = 0, known = 0;
        for (; k < TRN_ARRAY_LEN(cli_flags); k++) {
            known |= (size_t)names_match(cli_flags[k].names, a);
            if ((cli_flags[k].commands & o->command) && names_match(cli_flags[k].names, a))
                break;
        }
        if (k == TRN_ARRAY_LEN(cli_flags)) {
            if (!known)
                return usage_error("unknown flag '%s'", a);
            char takers[128];
            commands_taking(a, takers, sizeof(takers));
            fprintf(stderr, "error: %s is not a flag of %s (it is one of: %s)\n", a, o->command_name, takers);
            return EXIT_USAGE;
        }
        const cli_flag *f = &cli_flags[k];
        const char *value = NULL;
        if (f->kind != VALUE_NONE) {
            if (i + 1 >= argc)
                return usage_error("%s needs a value", a);
            value = argv[++i];
        }
        const int rc = set_flag(f, a, value, o);
        if (rc)
            return rc;
        o->given[k] = 1;
    }
    return check_combination(o);
}

/* ---- running the commands --------------------------------------------------------------------------------- */

static int fail(void) {
    fprintf(stderr, "error: %s\n", trinity_last_error());
    return EXIT_RUNTIME;
}

static trinity_device device_of(const char *name) {
    return strcmp(name, "cpu") == 0 ? TRINITY_DEVICE_CPU
           : strcmp(name, "cuda") == 0 ? TRINITY_DEVICE_CUDA : TRINITY_DEVICE_AUTO;
}

static trinity_weights weights_of(const char *name) {
    return !name || strcmp(name, "auto") == 0 ? TRINITY_WEIGHTS_AUTO
           : strcmp(name, "resident") == 0   ? TRINITY_WEIGHTS_RESIDENT
           : strcmp(name, "streaming") == 0  ? TRINITY_WEIGHTS_STREAMING
                                             : TRINITY_WEIGHTS_MAPPED;
}

/* -c, or the model's context up to TRINITY_DEFAULT_CONTEXT (said on standard error where that is less than the file
 * declares: the KV cache is allocated for the whole context up front). */
static int context_size(const cli_options *o, int n_ctx_train) {
    if (o->n_ctx > n_ctx_train)
        fprintf(stderr, "warning: -c %d exceeds the context length the model declares (%d)\n", o->n_ctx, n_ctx_train);
    if (o->n_ctx > 0)
        return o->n_ctx;
    const int n_ctx = TRN_MIN(n_ctx_train, TRINITY_DEFAULT_CONTEXT);
    if (n_ctx < n_ctx_train)
        fprintf(stderr, "context: %d positions (the model declares %d; -c N for more)\n", n_ctx, n_ctx_train);
    return n_ctx;
}

/* The model parameters the run flags give (-t, --device, --act, --weights, --kernels, --scalar). */
static trinity_model_params model_params_of(const cli_options *o, int vocab_only) {
    trinity_model_params p = trinity_model_params_default();
    p.device = device_of(o->device);
    p.n_threads = o->n_threads;
    p.weights = weights_of(o->weights);
    p.resident_layers = given(o, "--resident-layers") ? o->resident_layers : -1;
    p.f32_activations = o->act && strcmp(o->act, "f32") == 0;
    p.kernels = o->kernels; /* NULL: TRN_KERNELS, else auto */
    p.vocab_only = vocab_only;
    return p;
}

/* The model with the run flags. */
static int open_model(const cli_options *o, int vocab_only, trinity_model **model) {
    const trinity_model_params p = model_params_of(o, vocab_only);
    const double t0 = trn_time_s();
    if (trinity_model_open(o->model_path, &p, model) != TRINITY_OK)
        return fail();
    if (o->command == CMD_GENERATE || o->command == CMD_BENCH)
        fprintf(stderr, "load: %s in %.2f s\n", trinity_model_name(*model), trn_time_s() - t0);
    return 0;
}

/* A session of n_ctx positions with the sampling flags (greedy where `greedy`). */
static int open_session(const cli_options *o, trinity_model *model, int n_ctx, int greedy, trinity_session **out) {
    trinity_session_params p = trinity_session_params_default();
    p.n_ctx = n_ctx;
    p.temperature = greedy ? 0.0f : o->temp;
    p.top_k = o->top_k;
    p.top_p = o->top_p;
    p.repeat_penalty = o->repeat_penalty;
    p.seed = o->seed;
    if (!greedy && !given(o, "-s, --seed") && p.temperature > 0.0f) {
        p.seed = (uint64_t)time(NULL);
        fprintf(stderr, "seed: %llu\n", (unsigned long long)p.seed);
    }
    if (trinity_session_new(model, &p, out) != TRINITY_OK)
        return fail();
    if (trinity_session_device_choice(*out)[0])
        fprintf(stderr, "device: %s\n", trinity_session_device_choice(*out));
    return 0;
}

/* The ids of `text` (with BOS where add_bos), malloc'd; 0 on success. */
static int tokenize_text(trinity_model *model, const char *text, size_t len, int add_bos, int **ids, int *n_ids) {
    int n = 0;
    trinity_tokenize(model, text, len, add_bos, NULL, 0, &n); /* the count */
    *ids = malloc((size_t)(n > 0 ? n : 1) * sizeof(int));
    if (!*ids) {
        fprintf(stderr, "error: out of memory for %d token ids\n", n);
        return EXIT_RUNTIME;
    }
    if (trinity_tokenize(model, text, len, add_bos, *ids, n, n_ids) != TRINITY_OK) {
        free(*ids);
        *ids = NULL;
        return fail();
    }
    return 0;
}

static int print_piece(const char *piece, size_t len, int token, void *user) {
    (void)token;
    (void)user;
    fwrite(piece, 1, len, stdout);
    fflush(stdout);
    return 0;
}

/* The command's text inputs (-p, tokenize's argument, perplexity -f) are UTF-8: anything else is refused with the
 * offset of the first bad byte, the same way for every source (the library's tokenizer itself takes any bytes). */
static int check_utf8(const char *what, const char *text, size_t len) {
    size_t bad = 0;
    if (trinity_utf8_valid(text, len, &bad))
        return 0;
    fprintf(stderr, "error: %s: not UTF-8 text (invalid byte 0x%02x at offset %zu)\n", what,
            (unsigned)(unsigned char)text[bad], bad);
    return EXIT_RUNTIME;
}

static int cmd_generate(const cli_options *o) {
    trinity_model *model = NULL;
    trinity_session *session = NULL;
    int rc = open_model(o, 0, &model);
    if (rc)
        return rc;
    const char *prompt = o->prompt ? o->prompt : "";
    const int n_ctx = context_size(o, trinity_model_n_ctx_train(model));
    int *ids = NULL, n_ids = 0;
    rc = tokenize_text(model, prompt, strlen(prompt), !o->no_bos, &ids, &n_ids);
    /* default: up to 128 new tokens, within the context */
    const int n_predict = o->n_predict >= 0 ? o->n_predict : TRN_MAX(0, TRN_MIN(128, n_ctx - n_ids));
    if (rc == 0 && n_ids == 0) {
        fprintf(stderr, "error: the prompt is empty and --no-bos was given: nothing to start from\n");
        rc = EXIT_RUNTIME;
    } else if (rc == 0 && n_ids > n_ctx) {
        fprintf(stderr, "error: the prompt is %d tokens, longer than the context of %d (-c)\n", n_ids, n_ctx);
        rc = EXIT_RUNTIME;
    } else if (rc == 0 && (int64_t)n_ids + n_predict > n_ctx) {
        fprintf(stderr, "error: -n %d after a %d-token prompt needs %lld positions, more than the context of %d (-c)\n",
                n_predict, n_ids, (long long)n_ids + n_predict, n_ctx);
        rc = EXIT_RUNTIME;
    }
    if (rc == 0)
        rc = open_session(o, model, n_ctx, 0, &session);
    if (rc == 0) {
        /* the prompt as its tokens decode (whole characters: the prompt is UTF-8), then each new piece */
        char piece[256];
        for (int i = 0, prev = -1; i < n_ids; prev = ids[i++])
            fwrite(piece, 1, TRN_MIN(trinity_token_piece(model, prev, ids[i], piece, sizeof(piece)), sizeof(piece)),
                   stdout);
        fflush(stdout);
        double t0 = trn_time_s();
        int n_generated = 0;
        if (trinity_session_feed(session, ids, n_ids, NULL) != TRINITY_OK)
            rc = fail();
        const double prompt_s = trn_time_s() - t0;
        t0 = trn_time_s();
        if (rc == 0 && trinity_session_generate(session, n_predict, print_piece, NULL, &n_generated) != TRINITY_OK)
            rc = fail();
        const double generate_s = trn_time_s() - t0;
        if (rc == 0) {
            printf("\n");
            fprintf(stderr, "backend: %s\n", trinity_session_device(session));
            fprintf(stderr, "prompt: %d tokens in %.3f s (%.2f tokens/s)\n", n_ids, prompt_s, n_ids / prompt_s);
            /* the first new token comes from the prompt's logits; each later one costs a decode step */
            const int hit_eos = n_generated > 0 && trinity_session_last_token(session) == trinity_token_eos(model);
            const int printed = n_generated - hit_eos, steps = n_generated - 1;
            fprintf(stderr, "generate: %d new token%s%s", printed, printed == 1 ? "" : "s", hit_eos ? ", then EOS" : "");
            if (steps > 0)
                fprintf(stderr, "; %d decode step%s in %.3f s (%.2f tokens/s)", steps, steps == 1 ? "" : "s",
                        generate_s, steps / generate_s);
            fprintf(stderr, "\n");
        }
    }
    free(ids);
    trinity_session_free(session);
    trinity_model_free(model);
    return rc;
}

static int cmd_tokenize(const cli_options *o) {
    trinity_model *model = NULL; /* the vocabulary alone: a vocabulary-only GGUF has no tensors */
    int rc = open_model(o, 1, &model);
    int *ids = NULL, n_ids = 0;
    if (rc == 0)
        rc = tokenize_text(model, o->text, strlen(o->text), !o->no_bos, &ids, &n_ids);
    if (rc == 0) {
        for (int i = 0; i < n_ids; i++)
            printf("%s%d", i ? " " : "", ids[i]);
        printf("\n");
    }
    free(ids);
    trinity_model_free(model);
    return rc;
}

static int cmd_info(const cli_options *o) {
    trinity_model *model = NULL;
    int rc = open_model(o, 0, &model);
    if (rc)
        return rc;
    trinity_model_info m = {.size = sizeof(m)};
    if (trinity_model_get_info(model, &m) != TRINITY_OK) {
        trinity_model_free(model);
        return fail();
    }
    printf("file             %s (GGUF v%u, %llu bytes, %lld metadata keys, alignment %llu)\n", m.path, m.gguf_version,
           (unsigned long long)m.file_bytes, (long long)m.n_metadata, (unsigned long long)m.alignment);
    printf("name             %s\n", trinity_model_name(model));
    printf("architecture     llama\n");
    printf("layers           %d\n", m.n_layer);
    printf("embedding        %d\n", m.n_embd);
    printf("feed-forward     %d\n", m.n_ff);
    printf("heads            %d (head size %d)\n", m.n_head, m.head_dim);
    printf("kv heads         %d (GQA group %d)\n", m.n_head_kv, m.n_head / m.n_head_kv);
    printf("vocabulary       %d\n", m.n_vocab);
    printf("context length   %d\n", m.n_ctx_train);
    printf("rope base        %g\n", m.rope_base);
    printf("rms epsilon      %g\n", m.rms_eps);
    printf("lm head          %s\n", m.lm_head_tied ? "tied to token_embd.weight" : "output.weight");
    printf("\n%-28s %-6s %-16s %14s\n", "tensor", "type", "shape", "bytes");
    for (int64_t i = 0; i < m.n_tensors; i++) {
        trinity_tensor_info t = {.size = sizeof(t)};
        if (trinity_model_tensor(model, i, &t) != TRINITY_OK) {
            trinity_model_free(model);
            return fail();
        }
        char shape[48];
        if (t.n_dims == 1)
            snprintf(shape, sizeof(shape), "%lld", (long long)t.ne[0]);
        else
            snprintf(shape, sizeof(shape), "%lld x %lld", (long long)t.ne[0], (long long)t.ne[1]);
        printf("%-28s %-6s %-16s %14llu\n", t.name, t.type, shape, (unsigned long long)t.bytes);
    }
    printf("\ntotal            %lld tensors, %lld parameters, %.2f MB (%.3f bits per parameter)\n",
           (long long)m.n_tensors, (long long)m.n_params, m.tensor_bytes / 1e6,
           8.0 * (double)m.tensor_bytes / (double)m.n_params);
    printf("read per token   %.2f MB\n", m.bytes_per_token / 1e6);
    trinity_model_free(model);
    return 0;
}

static int cmd_graph(const cli_options *o) {
    trinity_model *model = NULL;
    int rc = open_model(o, 0, &model);
    if (rc)
        return rc;
    if (trinity_model_print_graph(model, context_size(o, trinity_model_n_ctx_train(model)), stdout) != TRINITY_OK)
        rc = fail();
    trinity_model_free(model);
    return rc;
}

static int cmd_bench(const cli_options *o) {
    trinity_model *model = NULL;
    int rc = open_model(o, 0, &model);
    if (rc)
        return rc;
    trinity_bench_params p = trinity_bench_params_default();
    p.device = device_of(o->device);
    p.n_threads = o->n_threads;
    p.kernels = o->kernels;
    p.f32_activations = o->act && strcmp(o->act, "f32") == 0;
    p.weights = weights_of(o->weights);
    p.resident_layers = given(o, "--resident-layers") ? o->resident_layers : -1;
    p.n_prompt = o->bench_prompt;
    p.n_decode = o->bench_decode;
    p.json = o->json;
    p.compare_weights = o->compare_weights;
    p.dense_f16 = o->dense != NULL;
    const trinity_status st = o->bench_parallel > 0 ? trn_bench_parallel(model, o->bench_parallel, o->bench_prompt,
                                                                         o->bench_decode, o->json, stdout)
                                                    : trinity_bench(model, &p, stdout);
    if (st != TRINITY_OK)
        rc = fail();
    trinity_model_free(model);
    return rc;
}

static void print_progress(int chunk, int n_chunks, double ppl, void *user) {
    (void)user;
    fprintf(stderr, "\rperplexity: chunk %d/%d, running %.4f", chunk, n_chunks, ppl);
}

static int cmd_perplexity(const cli_options *o) {
    size_t len = 0;
    char *text = NULL;
    if (trn_read_file(o->text_file, TRN_MAX_TEXT_BYTES, "a text file", &text, &len) != TRN_OK)
        return fail();
    if (check_utf8(o->text_file, text, len)) {
        free(text);
        return EXIT_RUNTIME;
    }
    trinity_model *model = NULL;
    trinity_session *session = NULL;
    int rc = open_model(o, 0, &model), *ids = NULL, n_ids = 0;
    const int n_ctx_train = rc == 0 ? trinity_model_n_ctx_train(model) : 0;
    const int ctx = o->n_ctx > 0 ? o->n_ctx : TRN_MIN(512, n_ctx_train);
    if (rc == 0 && ctx > n_ctx_train) {
        fprintf(stderr, "error: -c %d is larger than the model's context length %d\n", ctx, n_ctx_train);
        rc = EXIT_RUNTIME;
    }
    if (rc == 0)
        rc = tokenize_text(model, text, len, 1, &ids, &n_ids);
    if (rc == 0 && (n_ids < ctx || n_ids < 4)) {
        fprintf(stderr, "error: %s is %d tokens; perplexity with -c %d needs at least %d\n", o->text_file, n_ids, ctx,
                TRN_MAX(ctx, 4));
        rc = EXIT_RUNTIME;
    }
    if (rc == 0)
        rc = open_session(o, model, ctx, 1, &session);
    if (rc == 0) {
        const int show = isatty(2) && !o->json;
        trinity_perplexity_result r = {.size = sizeof(r)};
        if (trinity_session_perplexity(session, text, len, ctx, show ? print_progress : NULL, NULL, &r) != TRINITY_OK) {
            rc = fail();
        } else {
            if (show)
                fprintf(stderr, "\n");
            if (o->json)
                printf("{\"perplexity\": %.10g, \"stderr\": %.6g, \"tokens\": %d, \"scored\": %d, \"chunks\": %d, "
                       "\"ctx\": %d, \"tokens_per_s\": %.3f, \"device\": \"%s\"}\n",
                       r.perplexity, r.std_error, r.n_tokens, r.n_scored, r.n_chunks, r.chunk, r.tokens_per_s,
                       trinity_session_device(session));
            else
                printf("perplexity: %.4f +/- %.4f over %d scored tokens (%d chunks of %d, %d tokens in the text); "
                       "%.1f tokens/s on %s\n",
                       r.perplexity, r.std_error, r.n_scored, r.n_chunks, r.chunk, r.n_tokens, r.tokens_per_s,
                       trinity_session_device(session));
        }
    }
    free(ids);
    free(text);
    trinity_session_free(session);
    trinity_model_free(model);
    return rc;
}

/* "1 2 3" -> ids; 0 with a message on anything that is not a list of integers. */
static int parse_ids(const char *s, int **ids, int *n_ids) {
    int cap = 16, n = 0;
    int *out = malloc((size_t)cap * sizeof(int));
    while (out) {
        while (*s == ' ' || *s == ',' || *s == '\t')
            s++;
        if (!*s)
            break;
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < INT_MIN || v > INT_MAX) {
            fprintf(stderr, "error: --ids: '%.20s' is not an integer\n", s);
            free(out);
            return 0;
        }
        if (n == cap)
            out = realloc(out, (size_t)(cap *= 2) * sizeof(int));
        if (out)
            out[n++] = (int)v;
        s = end;
    }
    if (!out || n == 0) {
        fprintf(stderr, "error: --ids: no token ids given\n");
        free(out);
        return 0;
    }
    *ids = out;
    *n_ids = n;
    return 1;
}

static int cmd_logits(const cli_options *o) {
    int *ids = NULL, n_ids = 0;
    if (o->ids && !parse_ids(o->ids, &ids, &n_ids))
        return EXIT_USAGE;
    trinity_model *model = NULL;
    trinity_session *session = NULL;
    int rc = open_model(o, 0, &model);
    if (rc) {
        free(ids);
        return rc;
    }
    if (o->prompt)
        rc = tokenize_text(model, o->prompt, strlen(o->prompt), !o->no_bos, &ids, &n_ids);
    const int n_vocab = trinity_model_n_vocab(model);
    for (int i = 0; rc == 0 && i < n_ids; i++)
        if (ids[i] < 0 || ids[i] >= n_vocab) {
            fprintf(stderr, "error: token id %d is outside the vocabulary of %d\n", ids[i], n_vocab);
            rc = EXIT_RUNTIME;
        }
    if (rc == 0 && n_ids == 0) {
        fprintf(stderr, "error: the prompt is empty and --no-bos was given: no tokens to score\n");
        rc = EXIT_RUNTIME;
    }
    const int n_ctx = rc == 0 ? context_size(o, trinity_model_n_ctx_train(model)) : 0;
    if (rc == 0 && n_ids > n_ctx) {
        fprintf(stderr, "error: %d tokens are more than the context of %d (-c)\n", n_ids, n_ctx);
        rc = EXIT_RUNTIME;
    }
    float *logits = NULL;
    if (rc == 0 && (rc = open_session(o, model, n_ctx, 1, &session)) == 0) {
        logits = malloc((size_t)n_ids * n_vocab * sizeof(float));
        if (!logits) {
            fprintf(stderr, "error: out of memory for %d x %d logits\n", n_ids, n_vocab);
            rc = EXIT_RUNTIME;
        } else if (trinity_session_feed(session, ids, n_ids, logits) != TRINITY_OK) {
            rc = fail();
        } else if (o->output) {
            if (trn_npy_write_f32(o->output, logits, n_ids, n_vocab) != TRN_OK)
                rc = fail();
            else
                fprintf(stderr, "logits: [%d, %d] float32 written to %s\n", n_ids, n_vocab, o->output);
        } else {
            const int k = TRN_MIN(o->top, n_vocab);
            int *best = malloc((size_t)k * sizeof(int));
            for (int i = 0; best && i < n_ids; i++) {
                const float *row = logits + (size_t)i * n_vocab;
                int kept = 0; /* insertion into a sorted prefix: descending logit, ascending id on ties */
                for (int t = 0; t < n_vocab; t++) {
                    if (kept == k && !(row[t] > row[best[k - 1]]))
                        continue;
                    int j = kept < k ? kept++ : k - 1;
                    while (j > 0 && row[t] > row[best[j - 1]]) {
                        best[j] = best[j - 1];
                        j--;
                    }
                    best[j] = t;
                }
                printf("%d\t%d", i, ids[i]);
                for (int j = 0; j < kept; j++)
                    printf("\t%d:%.4f", best[j], row[best[j]]);
                printf("\n");
            }
            free(best);
        }
    }
    free(logits);
    free(ids);
    trinity_session_free(session);
    trinity_model_free(model);
    return rc;
}

/* Checks before anything is loaded: every text UTF-8, an output that is none of the inputs. (File arguments are
 * checked by the readers that open them: a regular file under its kind's size cap.) */
static int check_inputs(const cli_options *o) {
    if (o->prompt && check_utf8("-p", o->prompt, strlen(o->prompt)))
        return EXIT_RUNTIME;
    if (o->command == CMD_TOKENIZE && check_utf8("the text to tokenize", o->text, strlen(o->text)))
        return EXIT_RUNTIME;
    if (o->output) {
        const char *inputs[] = {o->model_path, o->input, o->base_dir, o->tokenizer, o->vocab};
        if (trn_output_check(o->output, inputs, (int)TRN_ARRAY_LEN(inputs)) != TRN_OK)
            return fail();
    }
    return 0;
}

static int cmd_convert(const cli_options *o) {
    trinity_convert_params p = trinity_convert_params_default();
    p.from = o->from;
    p.input = o->input;
    p.base_dir = o->base_dir;
    p.tokenizer = o->tokenizer;
    p.vocab = o->vocab;
    p.output = o->output;
    p.type = o->type;
    p.embed_type = o->embed_type;
    p.ternary_rule = o->ternary_rule;
    p.progress = 1;
    const double t0 = trn_time_s();
    if (trinity_convert(&p) != TRINITY_OK)
        return fail();
    fprintf(stderr, "convert: wrote %s in %.2f s\n", o->output, trn_time_s() - t0);
    return 0;
}

/* The server (server.c) opens the model itself and runs until SIGINT or SIGTERM. */
static int cmd_serve(const cli_options *o) {
    const trn_serve_options options = {
        .model_path = o->model_path,
        .model_params = model_params_of(o, 0),
        .host = o->host,
        .port = o->port,
        .n_parallel = o->n_parallel,
        .n_ctx_total = o->n_ctx,
        .api_key = o->api_key,
        .chat_template = o->chat_template,
    };
    return trn_serve(&options);
}

int main(int argc, char **argv) {
    cli_options o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc; /* -1: help was printed */
    if ((rc = check_inputs(&o)) != 0)
        return rc;
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores > 0 && o.n_threads > cores)
        fprintf(stderr, "warning: -t %d is more threads than the %ld processors here: every step will be slower\n",
                o.n_threads, cores);
    trn_output_install_signal_cleanup(); /* an interrupted convert or logits -o leaves no temporary behind */
    switch (o.command) {
    case CMD_GENERATE: return cmd_generate(&o);
    case CMD_TOKENIZE: return cmd_tokenize(&o);
    case CMD_INFO: return cmd_info(&o);
    case CMD_GRAPH: return cmd_graph(&o);
    case CMD_BENCH: return cmd_bench(&o);
    case CMD_PERPLEXITY: return cmd_perplexity(&o);
    case CMD_LOGITS: return cmd_logits(&o);
    case CMD_SERVE: return cmd_serve(&o);
    default: return cmd_convert(&o);
    }
}
