/* profiler.cu: the capture range of an attached profiler. cudaProfilerStart / cudaProfilerStop around the code to
 * be recorded (trinity bench calls them around its timed decode steps), for `nsys profile
 * --capture-range=cudaProfilerApi` and `ncu --profile-from-start off` (profiling/nsight.sh). Without a profiler
 * attached both calls do nothing. Owns nothing else: the NVTX ranges are in cuda_backend.cu and weights.cu. */
#include <cuda_profiler_api.h>
#include <cuda_runtime.h>

extern "C" {
#include "cuda_backend.h"
}

/* An error here is not sticky; it is cleared so that no later check of cudaGetLastError reports it. */
void trn_cuda_profiler_start(void) {
    if (cudaProfilerStart() != cudaSuccess)
        (void)cudaGetLastError();
}

void trn_cuda_profiler_stop(void) {
    if (cudaProfilerStop() != cudaSuccess)
        (void)cudaGetLastError();
}
