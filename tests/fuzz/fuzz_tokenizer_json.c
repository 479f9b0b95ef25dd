/* fuzz_tokenizer_json.c: libFuzzer target for the Hugging Face tokenizer.json reader (cJSON, merge ranks ->
 * scores): the bytes as a tokenizer.json (memfd, /proc/self/fd/N) -> trn_vocab_from_hf_json; an accepted
 * vocabulary is checked and freed. Built only where cJSON is (TRN_HAVE_CJSON). Seeds: corpus/tokenizer_json. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "host/convert_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[FUZZ_PATH_MAX];
    int fd = fuzz_memfd("tokenizer.json", data, size, path);
    trn_vocab vocab;
    if (trn_vocab_from_hf_json(path, &vocab) == TRN_OK) {
        if (vocab.n <= 0 || vocab.bos < 0 || vocab.bos >= vocab.n || vocab.eos < 0 || vocab.eos >= vocab.n ||
            vocab.unk < 0 || vocab.unk >= vocab.n)
            abort();
        volatile size_t total = 0;
        for (int i = 0; i < vocab.n; i++)
            total += strlen(vocab.tokens[i]);
        (void)total;
        fuzz_log("tokenizer_json: %d pieces (bos %d, eos %d, unk %d)", vocab.n, vocab.bos, vocab.eos, vocab.unk);
    } else {
        fuzz_log("tokenizer_json: %s", trn_last_error());
    }
    trn_vocab_free(&vocab);
    fuzz_memfd_close(fd);
    return 0;
}
