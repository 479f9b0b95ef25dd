/* ops.c: choosing the kernel table at run time: by name (the backend configuration, else TRN_KERNELS) and by the
 * CPU's features (ops.h). */
#include "ops.h"

#include <stdlib.h>
#include <string.h>

#include "amx.h"
#include "ops_simd.h"

const trn_cpu_ops *trn_cpu_ops_avx2(void) {
#if defined(TRN_HAVE_AVX2) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return trn_cpu_ops_avx2_table(); /* every AVX2 CPU also has F16C */
#endif
    return NULL;
}

const trn_cpu_ops *trn_cpu_ops_avx512_variant(int prefetch) {
#if defined(TRN_HAVE_AVX512) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    /* the table reuses AVX2 kernels for its other entries */
    if (trn_cpu_ops_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
        return trn_cpu_ops_avx512_table(prefetch);
#endif
    (void)prefetch;
    return NULL;
}

const trn_cpu_ops *trn_cpu_ops_avx512(void) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_cpu_init();
    /* Intel's streams need the software prefetch, AMD's do better without (ops_avx512.c, matvec_ternary_x16) */
    return trn_cpu_ops_avx512_variant(__builtin_cpu_is("intel"));
#else
    return trn_cpu_ops_avx512_variant(0);
#endif
}

const trn_cpu_ops *trn_cpu_ops_amx(const char **why) {
#if defined(TRN_HAVE_AMX)
    if (!trn_cpu_ops_avx512()) {
        if (why)
            *why = "the AMX table needs the AVX-512 VNNI one, which this CPU cannot run";
        return NULL;
    }
    return trn_amx_usable(why) ? trn_cpu_ops_amx_table(0) : NULL;
#else
    if (why)
        *why = "this build has no AMX kernel (TRN_AMX off, no AVX-512 kernels, or a compiler without -mamx-int8)";
    return NULL;
#endif
}

const trn_cpu_ops *trn_cpu_ops_amx_emulated(void) {
#if defined(TRN_HAVE_AMX)
    return trn_cpu_ops_avx512() ? trn_cpu_ops_amx_table(1) : NULL;
#else
    return NULL;
#endif
}

/* amx is not among the candidates until its tiles have run on AMX hardware (only the emulator has checked them):
 * --kernels amx asks for it. */
const trn_cpu_ops *trn_cpu_ops_best(void) {
    const trn_cpu_ops *avx512 = trn_cpu_ops_avx512(), *avx2 = trn_cpu_ops_avx2();
    return avx512 ? avx512 : avx2 ? avx2 : trn_cpu_ops_ref();
}

const trn_cpu_ops *trn_cpu_ops_by_name(const char *name) {
    if (!name)
        return NULL;
    if (strcmp(name, "auto") == 0)
        return trn_cpu_ops_best();
    if (strcmp(name, "scalar") == 0)
        return trn_cpu_ops_ref();
    if (strcmp(name, "avx2") == 0)
        return trn_cpu_ops_avx2();
    if (strcmp(name, "avx512") == 0)
        return trn_cpu_ops_avx512();
    if (strcmp(name, "amx") == 0)
        return trn_cpu_ops_amx(NULL);
    if (strcmp(name, "amx-emulated") == 0)
        return trn_cpu_ops_amx_emulated();
    return NULL;
}

const trn_cpu_ops *trn_cpu_ops_for_backend(const char *kernels, const char **requested) {
    const char *env = getenv("TRN_KERNELS");
    *requested = kernels && *kernels ? kernels : env && *env ? env : "auto";
    return trn_cpu_ops_by_name(*requested);
}
