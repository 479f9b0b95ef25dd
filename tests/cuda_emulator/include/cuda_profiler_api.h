/* cuda_profiler_api.h of the CUDA emulator: cudaProfilerStart/Stop are declared in its cuda_runtime.h (no-ops). */
#include "cuda_runtime.h"
