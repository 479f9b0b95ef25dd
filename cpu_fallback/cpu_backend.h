/* cpu_backend.h: the CPU backend (OpenMP threads over the AVX2 or scalar kernels of ops.h). */
#ifndef TRN_CPU_BACKEND_H
#define TRN_CPU_BACKEND_H

#include "graph/backend.h"

trn_status trn_cpu_backend_create(trn_backend **out);

#endif
