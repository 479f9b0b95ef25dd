/* main.c: the `trinity` command: generate, tokenize, info, graph and bench, with llama.cpp-style flags.
 * This is the only place that prints errors and chooses exit codes: 0 on success, 1 on an error at run
 * time (bad model file, prompt too long, ...), 2 on bad usage (unknown flag, impossible value). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../graph/graph.h"
#include "../profiling/bench.h"
#include "convert.h"
#include "eval.h"
#include "npy.h"
#include "output_file.h"
#include "trinity.h"
#include "model.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

typedef struct {
    const char *command;
    const char *model_path;
    char synthetic_path[64];
    const char *prompt;
    int n_predict;        /* -1: default */
    int n_ctx;            /* 0: the model's */
    int n_threads;        /* 0: all cores */
    const char *device;
    int add_bos;
    int json;
    const char *kernels;  /* --kernels, or NULL */
    int seed_given;
    trn_sampling sampling;
    const char *text;     /* tokenize */
    int bench_prompt, bench_decode;
    trn_act_mode act;
    trn_weight_mode weights;
    int weights_given, resident_layers_given, resident_layers, compare_weights;
    const char *text_file; /* perplexity -f */
    const char *ids;       /* logits --ids */
    const char *output;    /* logits -o */
    int top;               /* logits --top */
    trn_convert_options convert;
    int type_given, embed_type_given;
} cli_options;

static void usage(FILE *out) {
    fprintf(out,
            "usage: trinity COMMAND [options]\n"
            "commands:\n"
            "  generate  -m FILE -p TEXT [-n N] [-c CTX] [--temp T] [--top-k K] [--top-p P]\n"
            "            [--repeat-penalty R] [--seed S] [-t THREADS] [--device cpu|cuda|auto] [--no-bos]\n"
            "  tokenize  -m FILE [--no-bos] TEXT\n"
            "  info      -m FILE\n"
            "  graph     -m FILE [-c CTX]\n"
            "  bench     (-m FILE | --synthetic NAME) [-t THREADS] [--json] [--prompt-tokens N] [--decode-tokens N]\n"
            "  perplexity -m FILE -f TEXT.txt [-c CTX] [--json]\n"
            "  logits    -m FILE (-p TEXT | --ids \"1 2 3\") (-o OUT.npy | --top K)\n"
            "  convert   --from hf HF_DIR -o OUT.gguf [--type tq2_0|tq1_0|f16|f32] [--embed-type f16|f32]\n"
            "            [--ternary-rule absmean|seed] [--vocab V.gguf]\n"
            "  convert   --from trin PACKED.bin --base HF_DIR -o OUT.gguf [--type tq2_0|tq1_0] [--vocab V.gguf]\n"
            "  convert   --from llama2c MODEL.bin --tokenizer TOK.bin -o OUT.gguf [--type f32|f16|tq2_0|tq1_0]\n"
            "ternary layers: --act int8 (default: int8 activations, as llama.cpp) or --act f32 (exact float math)\n"
            "GPU weights: --weights auto|resident|streaming|mapped, --resident-layers K (the rest streamed);\n"
            "             bench --compare-weights runs every mode (--device cuda)\n"
            "model: -m FILE.gguf, or --synthetic tinyllama|tinyllama-tq1|tiny (generated in memory, no download)\n"
            "cpu kernels: --kernels scalar|avx2|avx512|auto (default auto: the fastest this CPU runs; also the\n"
            "             TRN_KERNELS environment variable), --scalar (the same as --kernels scalar)\n"
            "help: trinity COMMAND --help (or trinity help COMMAND) lists a command's flags and defaults\n");
}

/* Flags shared by every command that runs the model. */
static const char run_flags[] =
    "running the model:\n"
    "  -t, --threads N           CPU threads (default: all cores; more than the cores is allowed but slow)\n"
    "  --device cpu|cuda|auto    where to run (default auto: CUDA where a usable GPU and a CUDA build exist)\n"
    "  --act int8|f32            ternary layers' activations: int8 per block of 256 as llama.cpp (default) or\n"
    "                            exact floats\n"
    "  --kernels scalar|avx2|avx512|auto   CPU kernel table (default auto: the fastest this CPU runs; also\n"
    "                            TRN_KERNELS); --scalar is --kernels scalar\n"
    "  --weights auto|resident|streaming|mapped   GPU weights (default auto: resident where they fit);\n"
    "  --resident-layers K       with streaming or auto: the first K layers resident, the rest streamed\n";

static const char model_flag[] =
    "  -m, --model FILE          a GGUF model; or --synthetic tinyllama|tinyllama-tq1|tiny (random weights,\n"
    "                            generated in memory: meaningless text, for benchmarks and tests)\n";

typedef struct {
    const char *name, *synopsis, *flags;
    int runs_model; /* also takes run_flags */
} command_help;

static const command_help command_helps[] = {
    {"generate", "-m FILE -p TEXT [options]: the prompt, then generated text on stdout",
     "  -p, --prompt TEXT         the prompt, UTF-8 (default: empty: generation starts from BOS)\n"
     "  -n, --n-predict N         new tokens (default: up to 128, within the context)\n"
     "  -c, --ctx-size N          context positions (default: the model's, at most 4096; limit 1048576)\n"
     "  --temp T                  temperature (default 0.8; 0 is greedy)\n"
     "  --top-k K                 (default 40; 0 keeps every token)\n"
     "  --top-p P                 (default 0.95)\n"
     "  --repeat-penalty R        (default 1.0: off)\n"
     "  -s, --seed S              (default: taken from the clock and printed on stderr)\n"
     "  --no-bos                  do not start with the BOS token\n", 1},
    {"tokenize", "-m FILE [--no-bos] TEXT: token ids on one line (a vocabulary-only GGUF works)",
     "  --no-bos                  do not start with the BOS token\n", 0},
    {"info", "-m FILE: hyperparameters and the tensor table", "", 0},
    {"graph", "-m FILE [-c CTX]: the decode-step graph, one node per line, and its buffer plan",
     "  -c, --ctx-size N          context positions (default: the model's, at most 4096)\n", 0},
    {"bench", "(-m FILE | --synthetic NAME) [options]: prefill and decode tokens/s against measured bounds",
     "  --prompt-tokens N         prompt length (default 64)\n"
     "  --decode-tokens N         decode steps timed (default 32)\n"
     "  --json                    one JSON object on stdout\n"
     "  --compare-weights         (--device cuda) every GPU weight mode in one run\n", 1},
    {"perplexity", "-m FILE -f TEXT.txt [options]: perplexity by llama.cpp's method",
     "  -f, --file TEXT.txt       UTF-8 text (at most 256 MB)\n"
     "  -c, --ctx-size N          chunk length (default: the model's context, at most 512)\n"
     "  --json                    one JSON object on stdout\n", 1},
    {"logits", "-m FILE (-p TEXT | --ids \"1 2 3\") (-o OUT.npy | --top K): teacher-forced logits",
     "  -p, --prompt TEXT         text to tokenize (with BOS unless --no-bos)\n"
     "  --ids \"1 2 3\"             token ids instead of text\n"
     "  -o, --output OUT.npy      every position's logits as float32 [tokens, vocab]\n"
     "  --top K                   the K best ids and logits per position, as text\n"
     "  -c, --ctx-size N          context positions (default: the model's, at most 4096)\n", 1},
    {"convert", "--from hf|trin|llama2c INPUT -o OUT.gguf [options]: another checkpoint format to GGUF",
     "  --from hf HF_DIR          config.json + *.safetensors (F32, F16, BF16)\n"
     "  --from trin PACKED.bin --base HF_DIR   the seed's packed ternary codes + their base checkpoint\n"
     "  --from llama2c MODEL.bin --tokenizer TOK.bin   a llama2.c checkpoint (legacy float32 format)\n"
     "  -o, --output OUT.gguf     the file to write (never one of the inputs)\n"
     "  --type T                  linear layers: hf tq2_0 (default), tq1_0, f16, f32; trin tq2_0 (default),\n"
     "                            tq1_0; llama2c f32 (default), f16, tq2_0, tq1_0 (rows a multiple of 256)\n"
     "  --embed-type f16|f32      token embeddings (default f16; llama2c f32)\n"
     "  --ternary-rule absmean|seed   hf: how float weights become ternary (default absmean)\n"
     "  --vocab V.gguf            take the vocabulary from this GGUF instead\n", 0},
};

static const command_help *find_command_help(const char *name) {
    for (size_t i = 0; i < TRN_ARRAY_LEN(command_helps); i++)
        if (strcmp(command_helps[i].name, name) == 0)
            return &command_helps[i];
    return NULL;
}

/* `trinity COMMAND --help`: that command's flags with their defaults. */
static void command_usage(const command_help *h, FILE *out) {
    fprintf(out, "usage: trinity %s %s\n", h->name, h->synopsis);
    if (strcmp(h->name, "convert") != 0)
        fprintf(out, "%s", model_flag);
    fprintf(out, "%s", h->flags);
    if (h->runs_model)
        fprintf(out, "%s", run_flags);
    fprintf(out, "exit codes: 0 success, 1 an error at run time, 2 bad usage\n");
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see trinity --help)\n");
    return EXIT_USAGE;
}

static int parse_int(const char *flag, const char *s, long min, long max, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "error: %s %s: expected an integer from %ld to %ld\n", flag, s, min, max);
        return 0;
    }
    *out = (int)v;
    return 1;
}

static int parse_float(const char *flag, const char *s, double min, double max, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max)) {
        fprintf(stderr, "error: %s %s: expected a number from %g to %g\n", flag, s, min, max);
        return 0;
    }
    *out = (float)v;
    return 1;
}

/* Returns 0 on success, else the exit code. */
static int parse_args(int argc, char **argv, cli_options *o) {
    memset(o, 0, sizeof(*o));
    o->n_predict = -1;
    o->device = "auto";
    o->add_bos = 1;
    o->sampling = trn_sampling_default();
    o->bench_prompt = 64;
    o->bench_decode = 32;
    o->convert = trn_convert_defaults();
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    o->command = argv[1];
    if (strcmp(o->command, "-h") == 0 || strcmp(o->command, "--help") == 0 || strcmp(o->command, "help") == 0) {
        const command_help *h = argc > 2 ? find_command_help(argv[2]) : NULL; /* trinity help COMMAND */
        if (h)
            command_usage(h, stdout);
        else
            usage(stdout);
        exit(0);
    }
    if (!find_command_help(o->command))
        return usage_error("unknown command '%s'", o->command);
    int positional_only = 0; /* after "--", every argument is text (e.g. tokenize -- -5) */
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!positional_only && strcmp(a, "--") == 0) {
            positional_only = 1;
            continue;
        }
        if (positional_only) {
            if (strcmp(o->command, "tokenize") == 0 && !o->text)
                o->text = a;
            else if (strcmp(o->command, "convert") == 0 && !o->convert.input)
                o->convert.input = a;
            else
                return usage_error("unexpected argument '%s'", a);
            continue;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE()                                               \
        do {                                                       \
            if (!v)                                                \
                return usage_error("%s needs a value", a);         \
            i++;                                                   \
        } while (0)
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            command_usage(find_command_help(o->command), stdout);
            exit(0);
        } else if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) {
            NEED_VALUE();
            o->model_path = v;
        } else if (strcmp(a, "--synthetic") == 0) {
            NEED_VALUE();
            if (!trn_synthetic_known(v))
                return usage_error("--synthetic %s: unknown synthetic model (tinyllama, tinyllama-tq1 or tiny)", v);
            snprintf(o->synthetic_path, sizeof(o->synthetic_path), "synthetic:%s", v);
            o->model_path = o->synthetic_path;
        } else if (strcmp(a, "-p") == 0 || strcmp(a, "--prompt") == 0) {
            NEED_VALUE();
            o->prompt = v;
        } else if (strcmp(a, "-n") == 0 || strcmp(a, "--n-predict") == 0) {
            NEED_VALUE();
            if (!parse_int(a, v, 0, INT_MAX, &o->n_predict))
                return EXIT_USAGE;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--ctx-size") == 0) {
            NEED_VALUE();
            if (!parse_int(a, v, 1, TRN_MAX_CONTEXT, &o->n_ctx))
                return EXIT_USAGE;
        } else if (strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) {
            NEED_VALUE();
            if (!parse_int(a, v, 1, 1024, &o->n_threads))
                return EXIT_USAGE;
        } else if (strcmp(a, "--temp") == 0) {
            NEED_VALUE();
            if (!parse_float(a, v, 0.0, 1e6, &o->sampling.temp))
                return EXIT_USAGE;
        } else if (strcmp(a, "--top-k") == 0) {
            NEED_VALUE();
            if (!parse_int(a, v, 0, INT_MAX, &o->sampling.top_k))
                return EXIT_USAGE;
        } else if (strcmp(a, "--top-p") == 0) {
            NEED_VALUE();
            if (!parse_float(a, v, 1e-6, 1.0, &o->sampling.top_p))
                return EXIT_USAGE;
        } else if (strcmp(a, "--repeat-penalty") == 0) {
            NEED_VALUE();
            if (!parse_float(a, v, 1e-3, 1e3, &o->sampling.repeat_penalty))
                return EXIT_USAGE;
        } else if (strcmp(a, "--seed") == 0 || strcmp(a, "-s") == 0) {
            NEED_VALUE();
            char *end;
            errno = 0;
            unsigned long long seed = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-')
                return usage_error("--seed %s: expected a non-negative integer", v);
            o->sampling.seed = seed;
            o->seed_given = 1;
        } else if (strcmp(a, "--device") == 0) {
            NEED_VALUE();
            if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto"))
                return usage_error("--device %s: expected cpu, cuda or auto", v);
            o->device = v;
        } else if (strcmp(a, "--prompt-tokens") == 0) {
            NEED_VALUE();
            if (!parse_int(a, v, 1, 2048, &o->bench_prompt))
                return EXIT_USAGE;
        } else if (strcmp(a, "--decode-tokens") == 0) {
            NEED_VALUE();
            if (!parse_int(a, v, 1, 2048, &o->bench_decode))
                return EXIT_USAGE;
        } else if (strcmp(a, "--act") == 0) {
            NEED_VALUE();
            if (strcmp(v, "int8") && strcmp(v, "f32"))
                return usage_error("--act %s: expected int8 or f32", v);
            o->act = strcmp(v, "f32") == 0 ? TRN_ACT_F32 : TRN_ACT_INT8;
        } else if (strcmp(a, "--weights") == 0) {
            NEED_VALUE();
            const char *modes[] = {"auto", "resident", "streaming", "mapped"}; /* in trn_weight_mode's order */
            int found = -1;
            for (int m = 0; m < 4; m++)
                if (strcmp(v, modes[m]) == 0)
                    found = m;
            if (found < 0)
                return usage_error("--weights %s: expected auto, resident, streaming or mapped", v);
            o->weights = (trn_weight_mode)found;
            o->weights_given = 1;
        } else if (strcmp(a, "--resident-layers") == 0) {
            NEED_VALUE();
            if (!parse_int(a, v, 0, 4096, &o->resident_layers))
                return EXIT_USAGE;
            o->resident_layers_given = 1;
        } else if (strcmp(a, "--compare-weights") == 0) {
            o->compare_weights = 1;
        } else if (strcmp(a, "--kernels") == 0) {
            NEED_VALUE();
            if (strcmp(v, "scalar") && strcmp(v, "avx2") && strcmp(v, "avx512") && strcmp(v, "auto"))
                return usage_error("--kernels %s: expected scalar, avx2, avx512 or auto", v);
            o->kernels = v;
        } else if (strcmp(a, "-f") == 0 || strcmp(a, "--file") == 0) {
            NEED_VALUE();
            o->text_file = v;
        } else if (strcmp(a, "--ids") == 0) {
            NEED_VALUE();
            o->ids = v;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            NEED_VALUE();
            o->output = v;
        } else if (strcmp(a, "--top") == 0) {
            NEED_VALUE();
            if (!parse_int(a, v, 1, 1 << 20, &o->top))
                return EXIT_USAGE;
        } else if (strcmp(a, "--from") == 0) {
            NEED_VALUE();
            if (strcmp(v, "hf") && strcmp(v, "trin") && strcmp(v, "llama2c"))
                return usage_error("--from %s: expected hf, trin or llama2c", v);
            o->convert.from = v;
        } else if (strcmp(a, "--base") == 0) {
            NEED_VALUE();
            o->convert.base_dir = v;
        } else if (strcmp(a, "--tokenizer") == 0) {
            NEED_VALUE();
            o->convert.tokenizer = v;
        } else if (strcmp(a, "--vocab") == 0) {
            NEED_VALUE();
            o->convert.vocab_gguf = v;
        } else if (strcmp(a, "--type") == 0 || strcmp(a, "--embed-type") == 0) {
            NEED_VALUE();
            const int type = trn_type_from_name(v);
            const int embed = strcmp(a, "--embed-type") == 0;
            if (embed ? type != TRN_TYPE_F16 && type != TRN_TYPE_F32
                      : type != TRN_TYPE_TQ2_0 && type != TRN_TYPE_TQ1_0 && type != TRN_TYPE_F16 && type != TRN_TYPE_F32)
                return usage_error(embed ? "--embed-type %s: expected f16 or f32" : "--type %s: expected tq2_0, tq1_0, f16 or f32", v);
            if (embed) {
                o->convert.embed_type = (trn_type)type;
                o->embed_type_given = 1;
            } else {
                o->convert.type = (trn_type)type;
                o->type_given = 1;
            }
        } else if (strcmp(a, "--ternary-rule") == 0) {
            NEED_VALUE();
            if (strcmp(v, "absmean") && strcmp(v, "seed"))
                return usage_error("--ternary-rule %s: expected absmean or seed", v);
            o->convert.rule = strcmp(v, "seed") == 0 ? TRN_TERNARY_SEED : TRN_TERNARY_ABSMEAN;
        } else if (strcmp(a, "--no-bos") == 0) {
            o->add_bos = 0;
        } else if (strcmp(a, "--json") == 0) {
            o->json = 1;
        } else if (strcmp(a, "--scalar") == 0) {
            o->kernels = "scalar";
        } else if (a[0] == '-' && a[1] != 0) {
            return usage_error("unknown flag '%s'", a);
        } else if (strcmp(o->command, "tokenize") == 0 && !o->text) {
            o->text = a;
        } else if (strcmp(o->command, "convert") == 0 && !o->convert.input) {
            o->convert.input = a;
        } else {
            return usage_error("unexpected argument '%s'", a);
        }
#undef NEED_VALUE
    }
    if (strcmp(o->command, "convert") == 0) {
        o->convert.output = o->output;
        if (!o->convert.from)
            return usage_error("%s needs --from hf, trin or llama2c", o->command);
        if (!o->convert.input || !o->convert.output)
            return usage_error("%s needs an input and -o OUT.gguf", o->command);
        if (strcmp(o->convert.from, "trin") == 0 && !o->convert.base_dir)
            return usage_error("%s --from trin needs --base HF_DIR (shapes, scales, norms, embeddings)", o->command);
        if (strcmp(o->convert.from, "llama2c") == 0 && !o->convert.tokenizer && !o->convert.vocab_gguf)
            return usage_error("%s --from llama2c needs --tokenizer TOK.bin (or --vocab FILE.gguf)", o->command);
        if (strcmp(o->convert.from, "llama2c") == 0 && !o->type_given)
            o->convert.type = TRN_TYPE_F32; /* llama2.c rows are rarely a multiple of 256 */
        if (strcmp(o->convert.from, "llama2c") == 0 && !o->embed_type_given)
            o->convert.embed_type = TRN_TYPE_F32; /* as llama.cpp's converter keeps them: small models, exact */
        o->convert.progress = 1;
        return 0;
    }
    if (!o->model_path)
        return usage_error("%s needs a model: -m FILE or --synthetic NAME", o->command);
    if (o->resident_layers_given && (o->weights == TRN_WEIGHTS_RESIDENT || o->weights == TRN_WEIGHTS_MAPPED))
        return usage_error("--resident-layers goes with --weights streaming or auto, not %s",
                           o->weights == TRN_WEIGHTS_RESIDENT ? "resident" : "mapped");
    if ((o->weights_given || o->resident_layers_given || o->compare_weights) && strcmp(o->device, "cpu") == 0)
        return usage_error("%s: GPU weight modes need --device cuda or auto", o->compare_weights ? "--compare-weights"
                           : o->weights_given ? "--weights" : "--resident-layers");
    if (o->compare_weights && strcmp(o->command, "bench") != 0)
        return usage_error("--compare-weights is a bench option, not one of %s", o->command);
    if (o->compare_weights && (o->weights_given || o->resident_layers_given))
        return usage_error("%s: --compare-weights runs every weight mode itself", o->command);
    if (strcmp(o->command, "tokenize") == 0 && !o->text)
        o->text = o->prompt;
    if (strcmp(o->command, "tokenize") == 0 && !o->text)
        return usage_error("%s needs the text to tokenize", o->command);
    if (strcmp(o->command, "perplexity") == 0 && !o->text_file)
        return usage_error("%s needs a text file: -f TEXT.txt", o->command);
    if (strcmp(o->command, "logits") == 0) {
        if (!o->prompt == !o->ids)
            return usage_error("%s needs exactly one of -p TEXT and --ids \"1 2 3\"", o->command);
        if (!o->output == !o->top)
            return usage_error("%s needs exactly one of -o OUT.npy and --top K", o->command);
    }
    return 0;
}

static int fail(void) {
    fprintf(stderr, "error: %s\n", trn_last_error());
    return EXIT_RUNTIME;
}

static int load_model(const cli_options *o, trn_model **model) {
    double t0 = trn_time_s();
    if (trn_model_load(o->model_path, model) != TRN_OK)
        return fail();
    if (strcmp(o->command, "bench") == 0)
        fprintf(stderr, "load: %s in %.2f s\n", (*model)->name, trn_time_s() - t0);
    return 0;
}

/* -c, or the model's context up to TRN_DEFAULT_CONTEXT (said on standard error where that is less than the file
 * declares: the KV cache is allocated for the whole context up front). */
static int context_size(const cli_options *o, int n_ctx_train) {
    if (o->n_ctx > n_ctx_train)
        fprintf(stderr, "warning: -c %d exceeds the context length the model declares (%d)\n", o->n_ctx, n_ctx_train);
    if (o->n_ctx > 0)
        return o->n_ctx;
    const int n_ctx = TRN_MIN(n_ctx_train, TRN_DEFAULT_CONTEXT);
    if (n_ctx < n_ctx_train)
        fprintf(stderr, "context: %d positions (the model declares %d; -c N for more)\n", n_ctx, n_ctx_train);
    return n_ctx;
}

/* The model through the public API, with the run flags (-t, --device, --act, --weights, --kernels, --scalar). */
static int open_model(const cli_options *o, int vocab_only, trinity_model **model) {
    trinity_model_params p = trinity_model_params_default();
    p.device = strcmp(o->device, "cpu") == 0 ? TRINITY_DEVICE_CPU
               : strcmp(o->device, "cuda") == 0 ? TRINITY_DEVICE_CUDA : TRINITY_DEVICE_AUTO;
    p.n_threads = o->n_threads;
    p.weights = (trinity_weights)o->weights;
    p.resident_layers = o->resident_layers_given ? o->resident_layers : -1;
    p.f32_activations = o->act == TRN_ACT_F32;
    p.kernels = o->kernels; /* NULL: TRN_KERNELS, else auto */
    p.vocab_only = vocab_only;
    const double t0 = trn_time_s();
    if (trinity_model_open(o->model_path, &p, model) != TRINITY_OK)
        return fail();
    if (strcmp(o->command, "generate") == 0)
        fprintf(stderr, "load: %s in %.2f s\n", trinity_model_name(*model), trn_time_s() - t0);
    return 0;
}

/* A session of n_ctx positions with the sampling flags (greedy where `greedy`). */
static int open_session(const cli_options *o, trinity_model *model, int n_ctx, int greedy, trinity_session **out) {
    trinity_session_params p = trinity_session_params_default();
    p.n_ctx = n_ctx;
    p.temperature = greedy ? 0.0f : o->sampling.temp;
    p.top_k = o->sampling.top_k;
    p.top_p = o->sampling.top_p;
    p.repeat_penalty = o->sampling.repeat_penalty;
    p.seed = o->sampling.seed;
    if (!greedy && !o->seed_given && p.temperature > 0.0f) {
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
    if (trn_utf8_valid(text, len, &bad))
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
    rc = tokenize_text(model, prompt, strlen(prompt), o->add_bos, &ids, &n_ids);
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
        rc = tokenize_text(model, o->text, strlen(o->text), o->add_bos, &ids, &n_ids);
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
    trn_model *model = NULL;
    int rc = load_model(o, &model);
    if (rc)
        return rc;
    const trn_hparams *hp = &model->hp;
    const trn_gguf *g = model->gguf;
    printf("file             %s (GGUF v%u, %zu bytes, %lld metadata keys, alignment %zu)\n", trn_gguf_path(g),
           trn_gguf_version(g), trn_gguf_file_size(g), (long long)trn_gguf_n_kv(g), trn_gguf_alignment(g));
    printf("name             %s\n", model->name);
    printf("architecture     llama\n");
    printf("layers           %d\n", hp->n_layer);
    printf("embedding        %d\n", hp->n_embd);
    printf("feed-forward     %d\n", hp->n_ff);
    printf("heads            %d (head size %d)\n", hp->n_head, hp->head_dim);
    printf("kv heads         %d (GQA group %d)\n", hp->n_head_kv, hp->n_head / hp->n_head_kv);
    printf("vocabulary       %d\n", hp->n_vocab);
    printf("context length   %d\n", hp->n_ctx_train);
    printf("rope base        %g\n", hp->rope_base);
    printf("rms epsilon      %g\n", hp->rms_eps);
    printf("lm head          %s\n", model->output_tied ? "tied to token_embd.weight" : "output.weight");
    printf("\n%-28s %-6s %-16s %14s\n", "tensor", "type", "shape", "bytes");
    size_t total = 0;
    int64_t params = 0;
    for (int64_t i = 0; i < trn_gguf_n_tensors(g); i++) {
        const trn_gguf_tensor *t = trn_gguf_tensor_at(g, i);
        char shape[48];
        if (t->n_dims == 1)
            snprintf(shape, sizeof(shape), "%lld", (long long)t->ne[0]);
        else
            snprintf(shape, sizeof(shape), "%lld x %lld", (long long)t->ne[0], (long long)t->ne[1]);
        printf("%-28s %-6s %-16s %14zu\n", t->name, trn_type_name(t->type), shape, t->bytes);
        total += t->bytes;
        params += t->n_elems;
    }
    printf("\ntotal            %lld tensors, %lld parameters, %.2f MB (%.3f bits per parameter)\n",
           (long long)trn_gguf_n_tensors(g), (long long)params, total / 1e6, 8.0 * total / (double)params);
    printf("read per token   %.2f MB\n", trn_model_weight_bytes_per_token(model) / 1e6);
    trn_model_free(model);
    return 0;
}

static int cmd_graph(const cli_options *o) {
    trn_model *model = NULL;
    int rc = load_model(o, &model);
    if (rc)
        return rc;
    trn_graph *graph = NULL;
    if (trn_graph_build_decode(model, context_size(o, model->hp.n_ctx_train), &graph) != TRN_OK)
        rc = fail();
    else
        trn_graph_print(graph, stdout);
    trn_graph_free(graph);
    trn_model_free(model);
    return rc;
}

static int cmd_bench(const cli_options *o) {
    trn_model *model = NULL;
    int rc = load_model(o, &model);
    if (rc)
        return rc;
    trn_bench_options opts = {.device = o->device, .n_threads = o->n_threads, .act = o->act, .n_prompt = o->bench_prompt,
                              .n_decode = o->bench_decode, .kernels = o->kernels, .json = o->json,
                              .weights = o->weights, .resident_layers_given = o->resident_layers_given,
                              .resident_layers = o->resident_layers};
    trn_bench_result result;
    if (o->compare_weights) {
        if (trn_bench_compare_weights(model, &opts, stdout) != TRN_OK)
            rc = fail();
    } else if (trn_bench_run(model, &opts, &result) != TRN_OK) {
        rc = fail();
    } else {
        trn_bench_print(model, &result, o->json, stdout);
    }
    trn_model_free(model);
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
        rc = tokenize_text(model, o->prompt, strlen(o->prompt), o->add_bos, &ids, &n_ids);
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
    if (strcmp(o->command, "tokenize") == 0 && check_utf8("the text to tokenize", o->text, strlen(o->text)))
        return EXIT_RUNTIME;
    if (o->output) {
        const trn_convert_options *c = &o->convert;
        const char *inputs[] = {o->model_path, c->input, c->base_dir, c->tokenizer, c->vocab_gguf};
        if (trn_output_check(o->output, inputs, (int)TRN_ARRAY_LEN(inputs)) != TRN_OK)
            return fail();
    }
    return 0;
}

int main(int argc, char **argv) {
    cli_options o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc;
    if ((rc = check_inputs(&o)) != 0)
        return rc;
    const long cores = sysconf(_SC_NPROCESSORS_ONLN);
    if (cores > 0 && o.n_threads > cores)
        fprintf(stderr, "warning: -t %d is more threads than the %ld processors here: every step will be slower\n",
                o.n_threads, cores);
    trn_output_install_signal_cleanup(); /* an interrupted convert or logits -o leaves no temporary behind */
    if (strcmp(o.command, "generate") == 0)
        return cmd_generate(&o);
    if (strcmp(o.command, "tokenize") == 0)
        return cmd_tokenize(&o);
    if (strcmp(o.command, "info") == 0)
        return cmd_info(&o);
    if (strcmp(o.command, "graph") == 0)
        return cmd_graph(&o);
    if (strcmp(o.command, "perplexity") == 0)
        return cmd_perplexity(&o);
    if (strcmp(o.command, "logits") == 0)
        return cmd_logits(&o);
    if (strcmp(o.command, "convert") == 0) {
        const double t0 = trn_time_s();
        if (trn_convert(&o.convert) != TRN_OK)
            return fail();
        fprintf(stderr, "convert: wrote %s in %.2f s\n", o.convert.output, trn_time_s() - t0);
        return 0;
    }
    return cmd_bench(&o);
}
