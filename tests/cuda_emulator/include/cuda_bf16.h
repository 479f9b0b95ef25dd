/* cuda_bf16.h of the CUDA emulator: __nv_bfloat16 and its conversions live in its cuda_runtime.h. */
#include "cuda_runtime.h"
