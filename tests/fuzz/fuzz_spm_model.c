/* fuzz_spm_model.c: libFuzzer target for the SentencePiece tokenizer.model reader (a bounds-checked protobuf
 * walker): the bytes as a tokenizer.model (memfd, /proc/self/fd/N) -> trn_vocab_from_sentencepiece; an accepted
 * vocabulary is checked for the invariants the converters rely on and freed. Seeds: tests/fuzz/corpus/spm_model. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "host/convert_internal.h"

/* What every vocabulary reader promises on success (convert_internal.h): n pieces, NUL-terminated, special ids in
 * range. */
static void fuzz_check_vocab(const trn_vocab *v) {
    if (v->n <= 0 || !v->tokens || !v->scores || !v->types)
        abort();
    if (v->bos < 0 || v->bos >= v->n || v->eos < 0 || v->eos >= v->n || v->unk < 0 || v->unk >= v->n)
        abort();
    volatile size_t total = 0;
    for (int i = 0; i < v->n; i++) {
        if (!v->tokens[i])
            abort();
        total += strlen(v->tokens[i]);
        if (v->types[i] < 1 || v->types[i] > 6)
            abort();
    }
    (void)total;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[FUZZ_PATH_MAX];
    int fd = fuzz_memfd("tokenizer.model", data, size, path);
    trn_vocab vocab;
    if (trn_vocab_from_sentencepiece(path, &vocab) == TRN_OK) {
        fuzz_check_vocab(&vocab);
        fuzz_log("spm_model: %d pieces (bos %d, eos %d, unk %d)", vocab.n, vocab.bos, vocab.eos, vocab.unk);
    } else {
        fuzz_log("spm_model: %s", trn_last_error());
    }
    trn_vocab_free(&vocab);
    fuzz_memfd_close(fd);
    return 0;
}
