/* cuda_backend.h: the CUDA backend (cuda/cuda_backend.cu), built where nvcc exists (TRN_HAVE_CUDA). */
#ifndef TRN_CUDA_BACKEND_H
#define TRN_CUDA_BACKEND_H

#include "graph/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fails with TRN_ERR_DEVICE and one line when no usable GPU is present (no device, a driver too old for this
 * build, a device that cannot be used). */
trn_status trn_cuda_backend_create(trn_backend **out);

/* Copy bandwidth of device 0 in GB/s, the median of `reps` copies of `bytes`: from pinned host memory to the device
 * (host_to_device), or within device memory (bytes read + bytes written). */
trn_status trn_cuda_copy_bandwidth(int host_to_device, size_t bytes, int reps, double *gbs);

/* The capture range of an attached profiler (cuda/profiler.cu): cudaProfilerStart / cudaProfilerStop, so that
 * `nsys profile --capture-range=cudaProfilerApi` and `ncu --profile-from-start off` record only what runs between
 * them (trinity bench: its timed decode steps). Without a profiler they do nothing; their errors are ignored. */
void trn_cuda_profiler_start(void);
void trn_cuda_profiler_stop(void);

#ifdef __cplusplus
}
#endif

#endif
