/* cuda_fp16.h of the CUDA emulator: __half and its conversions live in its cuda_runtime.h. */
#include "cuda_runtime.h"
