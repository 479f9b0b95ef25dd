/* ops.c: choosing the kernel table at run time from the CPU's features (see ops.h). */
#include "ops.h"

#if defined(TRN_HAVE_AVX2)
const trn_cpu_ops *trn_cpu_ops_avx2_table(void); /* ops_avx2.c */
#endif

const trn_cpu_ops *trn_cpu_ops_avx2(void) {
#if defined(TRN_HAVE_AVX2) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return trn_cpu_ops_avx2_table(); /* every AVX2 CPU also has F16C */
#endif
    return NULL;
}

const trn_cpu_ops *trn_cpu_ops_best(void) {
    const trn_cpu_ops *avx2 = trn_cpu_ops_avx2();
    return avx2 ? avx2 : trn_cpu_ops_ref();
}
