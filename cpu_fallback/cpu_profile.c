/* cpu_profile.c: TRN_CPU_PROFILE: per thread and kind of node, the time spent working and then waiting at the
 * barrier after it, printed when the backend is freed (the timing itself is profile_mark, cpu_internal.h). */
#include <stdio.h>

#include "cpu_internal.h"


/* The profile kind of node n: its op, or for MATVEC one kind per output width (the first PROF_MATVEC_WIDTHS
 * widths met; later ones share the op's own kind). */
int trn_cpu_profile_kind(prof_entry *table, const trn_node *node, int64_t width) {
    if (node->op != TRN_OP_MATVEC)
        return node->op;
    prof_entry *e = table + TRN_OP_COUNT + 1;
    for (int k = 0; k < PROF_MATVEC_WIDTHS; k++)
        if (e[k].width == width || (e[k].width == 0 && (e[k].width = width)))
            return TRN_OP_COUNT + 1 + k;
    return node->op;
}

void trn_cpu_print_profile(const cpu_context *c) {
    if (!c->profile || c->profile_steps == 0)
        return;
    const double steps = c->profile_steps;
    fprintf(stderr, "cpu profile (TRN_CPU_PROFILE): %d %s, microseconds per pass, work / barrier wait per thread\n",
            c->profile_steps, c->profile_batches ? "prefill batches" : "steps");
    double total[2] = {0.0, 0.0};
    for (int k = 0; k < PROF_KINDS; k++) {
        const prof_entry *e0 = &c->profile[0][k];
        if (e0->count == 0)
            continue;
        char name[48];
        if (k == PROF_QUANTIZE)
            snprintf(name, sizeof(name), "quantize");
        else if (k > PROF_QUANTIZE)
            snprintf(name, sizeof(name), "matvec %lld rows", (long long)e0->width);
        else
            snprintf(name, sizeof(name), "%s", trn_op_name((trn_op)k));
        fprintf(stderr, "  %-18s %6.1f calls", name, e0->count / steps);
        for (int th = 0; th < c->n_threads; th++) {
            const prof_entry *e = &c->profile[th][k];
            fprintf(stderr, "  %8.1f / %6.1f", e->work_s / steps * 1e6, e->wait_s / steps * 1e6);
            total[0] += th == 0 ? e->work_s : 0.0;
            total[1] += th == 0 ? e->wait_s : 0.0;
        }
        fprintf(stderr, "\n");
    }
    int barriers = 0;
    for (int i = 0; i < c->n_plan; i++)
        barriers += c->plan[i].kind == ITEM_BARRIER;
    fprintf(stderr, "  thread 0: %.1f us work + %.1f us waiting per step; %d barriers per step (%d nodes)\n",
            total[0] / steps * 1e6, total[1] / steps * 1e6, barriers, c->graph->n_nodes);
}
