/* cuda_check.h: checking every CUDA runtime call. Library code returns a status with a message naming the call,
 * file and line (trn_fail); only the command-line front end prints it. */
#ifndef TRN_CUDA_CHECK_H
#define TRN_CUDA_CHECK_H

#include <cuda_runtime.h>

extern "C" {
#include "host/common.h"
}

/* In a function returning trn_status: fails with "CALL failed at FILE:LINE: message". */
#define CUDA_CHECK(call)                                                                                  \
    do {                                                                                                  \
        cudaError_t cuda_check_err_ = (call);                                                             \
        if (cuda_check_err_ != cudaSuccess)                                                               \
            return trn_fail(TRN_ERR_DEVICE, "%s failed at %s:%d: %s", #call, __FILE__, __LINE__,          \
                            cudaGetErrorString(cuda_check_err_));                                         \
    } while (0)

/* For the kernel launchers of cuda_ops.h, which return (int)cudaError_t. */
#define CUDA_LAUNCH_CHECK(launch)                                                                         \
    do {                                                                                                  \
        int cuda_launch_err_ = (launch);                                                                  \
        if (cuda_launch_err_ != 0)                                                                        \
            return trn_fail(TRN_ERR_DEVICE, "%s failed at %s:%d: %s", #launch, __FILE__, __LINE__,        \
                            cudaGetErrorString((cudaError_t)cuda_launch_err_));                           \
    } while (0)

/* cudaMalloc of `bytes` (at least 1) into *out, adding bytes to *counted; out of memory fails with one line naming
 * what the memory was for. */
static inline trn_status trn_cuda_alloc(void **out, size_t bytes, const char *what, size_t *counted) {
    const cudaError_t err = cudaMalloc(out, bytes ? bytes : 1);
    if (err != cudaSuccess)
        return trn_fail(TRN_ERR_NOMEM, "out of device memory allocating %s (%zu bytes): %s", what, bytes,
                        cudaGetErrorString(err));
    *counted += bytes;
    return TRN_OK;
}

#endif
