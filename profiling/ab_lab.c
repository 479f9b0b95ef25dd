/* ab_lab.c: two settings of the engine compared within one process. On a shared machine whose memory bandwidth
 * drifts by 2x from one minute to the next, two benchmark processes run one after the other compare the minutes,
 * not the settings; here two backends of one model, prepared under environment settings A and B (the switches the
 * backends read when they prepare: TRN_CPU_GROUPS, TRN_CPU_SPLIT_TOKENS, TRN_KERNELS, TRN_CUDA_FOLD_ENDS, ...), take
 * turns in short rounds (A then B, then B then A), and each round's B/A time ratio compares them under the same
 * conditions. A round is a run of decode steps (positions cycling through a window of 64 from --position P,
 * default 64, the positions before it filled once by a batched prefill) or one batched prefill.
 *
 *   ./build/ab_lab (-m FILE | --synthetic NAME) --a KEY=VALUE[,KEY=VALUE...] --b KEY=VALUE[,...]
 *                  [-t THREADS] [--device cpu|cuda] [--rounds R] [--steps S] [--prefill N] [--position P]
 *
 * Prints each side's median round time and the median B/A ratio with its quartiles (above 1: A is faster), and
 * whether the two backends' last logits are identical (both are fed the same tokens at the same positions). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph/backend.h"
#include "graph/graph.h"
#include "host/common.h"
#include "host/model.h"
#include "host/sampler.h"
#include "profiling/bench.h"

enum { MAX_SETTINGS = 8, WINDOW = 64 /* decode positions cycle through [position, position + WINDOW) */ };

typedef struct {
    char *keys[MAX_SETTINGS], *values[MAX_SETTINGS];
    int n;
} settings;

/* "KEY=VALUE,KEY=VALUE" into s (spec is modified in place); 0 where an item has no '=' or an empty key. */
static int parse_settings(char *spec, settings *s) {
    s->n = 0;
    for (char *item = strtok(spec, ","); item; item = strtok(NULL, ",")) {
        char *eq = strchr(item, '=');
        if (!eq || eq == item || s->n == MAX_SETTINGS)
            return 0;
        *eq = '\0';
        s->keys[s->n] = item;
        s->values[s->n++] = eq + 1;
    }
    return s->n > 0;
}

/* Prepares a backend with the settings in the environment, which is restored afterwards. */
static trn_status prepare_with(const char *device, const trn_graph *g, const trn_backend_config *config,
                               const settings *s, trn_backend **out) {
    char *saved[MAX_SETTINGS];
    for (int i = 0; i < s->n; i++) {
        const char *old = getenv(s->keys[i]);
        saved[i] = old ? strdup(old) : NULL;
        setenv(s->keys[i], s->values[i], 1);
    }
    trn_status st = trn_backend_create(device, out, NULL, 0);
    if (st == TRN_OK)
        st = trn_backend_prepare(*out, g, config);
    for (int i = 0; i < s->n; i++) {
        if (saved[i])
            setenv(s->keys[i], saved[i], 1);
        else
            unsetenv(s->keys[i]);
        free(saved[i]);
    }
    return st;
}

/* One round on backend b: `steps` decode steps from position *pos (wrapping within the window from `first`), or one
 * prefill of n_prefill tokens at position 0. The tokens are a fixed stream, the same for both sides. Returns seconds
 * per step, or per prefill. */
static double round_time(trn_backend *b, int steps, int n_prefill, const int *stream, int first, int *pos,
                         trn_status *st) {
    const double t0 = trn_time_s();
    int next = 0;
    if (n_prefill > 0) {
        *st = trn_backend_prefill(b, stream, n_prefill, 0, 1, &next, NULL);
        return trn_time_s() - t0;
    }
    for (int i = 0; i < steps && *st == TRN_OK; i++) {
        *st = trn_backend_step(b, stream[*pos], *pos, 1, &next);
        *pos = *pos + 1 < first + WINDOW ? *pos + 1 : first;
    }
    return (trn_time_s() - t0) / steps;
}

/* The rounds split by where the two threads sat (trn_core_latency_probe before each round): on a machine whose
 * threads are sometimes near (one core complex) and sometimes far apart (two, or wherever a VM's host puts them),
 * memory bandwidth and every barrier's cost change with it, so a setting may win in one placement only. The rounds'
 * latencies, sorted, are cut at their largest ratio between neighbours where it is at least 2 and leaves at least 3
 * rounds on each side (a lone slow probe, a thread preempted, is no placement); else all rounds are one placement.
 * Filled by near_far_ratios before the ratios are sorted, printed by print_near_far. */
enum { MIN_ROUNDS_PER_PLACEMENT = 3 };
static struct {
    double near[4096], far[4096], lowest, cut, above_cut, highest; /* --rounds is at most 4096 */
    int n_near, n_far, probed;
} placement;

static void near_far_ratios(const double *ratio, const double *latency, int rounds) {
    double sorted[4096];
    int n = 0;
    for (int r = 0; r < rounds; r++)
        if (latency[r] > 0)
            sorted[n++] = latency[r];
    placement.probed = n;
    if (n == 0)
        return;
    trn_median(sorted, n); /* sorts */
    placement.lowest = sorted[0];
    placement.highest = sorted[n - 1];
    placement.cut = 0.0; /* no cut: one placement */
    double widest = 2.0;
    for (int i = MIN_ROUNDS_PER_PLACEMENT; i <= n - MIN_ROUNDS_PER_PLACEMENT; i++)
        if (sorted[i] >= widest * sorted[i - 1]) {
            widest = sorted[i] / sorted[i - 1];
            placement.cut = sorted[i - 1]; /* the nearest's highest */
            placement.above_cut = sorted[i];
        }
    for (int r = 0; r < rounds; r++) {
        if (latency[r] <= 0 || placement.cut == 0.0)
            continue;
        if (latency[r] > placement.cut)
            placement.far[placement.n_far++] = ratio[r];
        else
            placement.near[placement.n_near++] = ratio[r];
    }
}

static void print_near_far(void) {
    if (placement.probed == 0) /* no probe: not a CPU run, or one thread */
        return;
    if (placement.cut == 0.0)
        printf("  threads %.0f-%.0f ns apart (one way): one placement throughout\n", placement.lowest,
               placement.highest);
    else
        printf("  by placement: %d rounds near (%.0f-%.0f ns one way): median B/A %.4f; %d rounds far (%.0f-%.0f "
               "ns): median B/A %.4f\n", placement.n_near, placement.lowest, placement.cut,
               trn_median(placement.near, placement.n_near), placement.n_far, placement.above_cut, placement.highest,
               trn_median(placement.far, placement.n_far));
}

static int usage(const char *why) {
    fprintf(stderr, "error: %s\nusage: ab_lab (-m FILE | --synthetic NAME) --a KEY=VALUE[,...] --b KEY=VALUE[,...] "
                    "[-t THREADS] [--device cpu|cuda] [--rounds R] [--steps S] [--prefill N] [--position P]\n", why);
    return 2;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *device = "cpu";
    char *spec[2] = {NULL, NULL};
    int threads = 0, rounds = 40, steps = 16, n_prefill = 0, first = WINDOW;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!value)
            return usage("every option takes a value");
        if (strcmp(arg, "-m") == 0) {
            model_path = value;
        } else if (strcmp(arg, "--synthetic") == 0) {
            static char name[96];
            snprintf(name, sizeof(name), "synthetic:%s", value);
            model_path = name;
        } else if (strcmp(arg, "--a") == 0 || strcmp(arg, "--b") == 0) {
            spec[arg[2] - 'a'] = argv[i + 1];
        } else if (strcmp(arg, "--device") == 0) {
            device = value;
        } else if (strcmp(arg, "-t") == 0 || strcmp(arg, "--rounds") == 0 || strcmp(arg, "--steps") == 0 ||
                   strcmp(arg, "--prefill") == 0 || strcmp(arg, "--position") == 0) {
            char *end;
            const long v = strtol(value, &end, 10);
            if (*end || v < (strcmp(arg, "--rounds") == 0 ? 2 : 1) || v > 4096)
                return usage("-t, --rounds, --steps, --prefill and --position take a number from 1 (--rounds 2) to "
                             "4096");
            *(strcmp(arg, "-t") == 0 ? &threads : strcmp(arg, "--rounds") == 0 ? &rounds
                                     : strcmp(arg, "--steps") == 0 ? &steps : strcmp(arg, "--prefill") == 0 ? &n_prefill
                                                                                                            : &first) =
                (int)v;
        } else {
            return usage("unknown option");
        }
        i++;
    }
    settings s[2];
    if (!model_path)
        return usage("a model is needed: -m FILE or --synthetic NAME");
    if (!spec[0] || !spec[1] || !parse_settings(spec[0], &s[0]) || !parse_settings(spec[1], &s[1]))
        return usage("--a and --b each take KEY=VALUE settings separated by commas (at most 8)");
    if (strcmp(device, "cpu") != 0 && strcmp(device, "cuda") != 0)
        return usage("--device is cpu or cuda");

    trn_model *model = NULL;
    trn_graph *graph = NULL;
    trn_backend *b[2] = {NULL, NULL};
    int *stream = NULL;
    double *t[2] = {NULL, NULL}, *ratio = NULL, *latency = NULL;
    int rc = 1;
    trn_status st = trn_model_load(model_path, &model);
    const int n_ctx = TRN_MAX(first + WINDOW, n_prefill) + 1;
    if (st == TRN_OK)
        st = trn_graph_build_decode(model, n_ctx, &graph);
    trn_backend_config config = {.n_threads = threads, .sampling = trn_sampling_default()};
    config.sampling.temp = 0.0f;
    for (int k = 0; k < 2 && st == TRN_OK; k++)
        st = prepare_with(device, graph, &config, &s[k], &b[k]);
    stream = malloc((size_t)n_ctx * sizeof(int));
    t[0] = malloc((size_t)rounds * sizeof(double));
    t[1] = malloc((size_t)rounds * sizeof(double));
    ratio = malloc((size_t)rounds * sizeof(double));
    latency = malloc((size_t)rounds * sizeof(double));
    if (st == TRN_OK && (!stream || !t[0] || !t[1] || !ratio || !latency))
        st = trn_fail(TRN_ERR_NOMEM, "out of memory for %d rounds", rounds);
    if (st != TRN_OK) {
        fprintf(stderr, "error: %s\n", trn_last_error());
        goto done;
    }
    const int n_vocab = model->hp.n_vocab;
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < n_ctx; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        stream[i] = 3 + (int)((x >> 33) % (uint64_t)(n_vocab - 3));
    }
    int pos[2] = {first, first};
    if (n_prefill == 0) /* the positions before the window, once per side */
        for (int k = 0; k < 2 && st == TRN_OK; k++) {
            int next = 0;
            st = trn_backend_prefill(b[k], stream, first, 0, 1, &next, NULL);
        }
    if (st != TRN_OK) {
        fprintf(stderr, "error: %s\n", trn_last_error());
        goto done;
    }
    const int probe_cores = strcmp(device, "cpu") == 0 && threads != 1;
    for (int r = 0; r < rounds && st == TRN_OK; r++) {
        latency[r] = probe_cores ? trn_core_latency_probe() : 0.0;
        for (int j = 0; j < 2 && st == TRN_OK; j++) {
            const int k = r % 2 ? 1 - j : j; /* A then B, then B then A */
            t[k][r] = round_time(b[k], steps, n_prefill, stream, first, &pos[k], &st);
        }
        ratio[r] = t[1][r] / t[0][r];
    }
    if (st != TRN_OK) {
        fprintf(stderr, "error: %s\n", trn_last_error());
        goto done;
    }
    const int same = memcmp(trn_backend_logits(b[0]), trn_backend_logits(b[1]), (size_t)n_vocab * sizeof(float)) == 0;
    const double median[2] = {trn_median(t[0], rounds), trn_median(t[1], rounds)};
    near_far_ratios(ratio, latency, rounds);
    const double median_ratio = trn_median(ratio, rounds); /* sorted now: quartiles from it */
    printf("%s, %s; %d rounds of %s\n", model_path, trn_backend_describe(b[0]), rounds,
           n_prefill ? "one batched prefill" : "decode steps");
    for (int k = 0; k < 2; k++) {
        printf("  %s:", k ? "B" : "A");
        for (int i = 0; i < s[k].n; i++)
            printf(" %s=%s", s[k].keys[i], s[k].values[i]);
        printf("  median %.3f ms per %s\n", median[k] * 1e3, n_prefill ? "prefill" : "step");
    }
    printf("  B/A per round: median %.4f, quartiles %.4f-%.4f (above 1: A faster)\n", median_ratio,
           ratio[rounds / 4], ratio[3 * rounds / 4]);
    printf("  last logits: %s\n", same ? "identical" : "differ");
    print_near_far();
    rc = 0;
done:
    for (int k = 0; k < 2; k++) {
        trn_backend_free(b[k]);
        free(t[k]);
    }
    free(ratio);
    free(latency);
    free(stream);
    trn_graph_free(graph);
    trn_model_free(model);
    return rc;
}
