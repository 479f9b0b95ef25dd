/* bench_parallel.h: `trinity bench --parallel N`, built into the command on the public API alone (trinity.h). */
#ifndef TRN_BENCH_PARALLEL_H
#define TRN_BENCH_PARALLEL_H

#include <stdio.h>

#include "host/trinity.h"

/* Aggregate decode tokens/s of 1, 4, 8, 16 ... up to max_parallel sequences decoded together (trinity_batch), each
 * after an n_prompt-token prompt, over n_decode steps; and the time until every sequence has its first token when
 * all prompts arrive at once. A table, or one JSON object, on out. */
trinity_status trn_bench_parallel(trinity_model *model, int max_parallel, int n_prompt, int n_decode, int json,
                                  FILE *out);

#endif
