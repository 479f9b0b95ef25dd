/* fuzz_safetensors.c: libFuzzer target for the safetensors reader: the bytes as one .safetensors file (a memfd
 * passed as /proc/self/fd/N to trn_safetensors_open_file), then every tensor converted with trn_st_to_f32 into a
 * buffer of exactly n_elems floats (tensors above FUZZ_MAX_ELEMS are skipped), and a lookup of each by name.
 * Built only where cJSON is (TRN_HAVE_CJSON). Seeds: tests/fuzz/corpus/safetensors. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "host/safetensors.h"

#define FUZZ_MAX_ELEMS ((int64_t)1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[FUZZ_PATH_MAX];
    int fd = fuzz_memfd("fuzz.safetensors", data, size, path);
    trn_safetensors *st = NULL;
    if (trn_safetensors_open_file(path, &st) != TRN_OK)
        fuzz_log("safetensors: %s", trn_last_error());
    if (st) {
        const int n = trn_safetensors_count(st);
        fuzz_log("safetensors: %d tensors", n);
        for (int i = 0; i < n; i++) {
            const trn_st_tensor *t = trn_safetensors_at(st, i);
            if (!t || t->n_elems < 0 || t->n_elems > FUZZ_MAX_ELEMS)
                continue;
            if (trn_safetensors_find(st, t->name) != t)
                abort(); /* a name the reader accepted must find its own tensor */
            float *dst = malloc((size_t)(t->n_elems ? t->n_elems : 1) * sizeof(float));
            if (!dst)
                continue;
            trn_st_to_f32(t, dst);
            volatile float sum = 0.0f;
            for (int64_t k = 0; k < t->n_elems; k++)
                sum += dst[k];
            (void)sum;
            free(dst);
        }
        (void)trn_safetensors_find(st, "model.embed_tokens.weight"); /* also with no tensors at all */
        (void)trn_safetensors_at(st, n);
        trn_safetensors_close(st);
    }
    fuzz_memfd_close(fd);
    return 0;
}
