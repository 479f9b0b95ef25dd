/* convert_nojson.c: stand-ins for the converters that need cJSON (Hugging Face and TRIN, which read
 * config.json, safetensors headers and tokenizer.json), compiled only where cJSON is absent. They fail with one
 * line saying how to get the real ones; the llama2.c converter and the rest of the engine do not need cJSON (the
 * tokenizer.json reader's stand-in is in convert_vocab.c, beside the real one). */
#include "convert_internal.h"

static trn_status needs_cjson(const char *what) {
    return trn_fail(TRN_ERR_UNSUPPORTED, "%s needs cJSON, which this build lacks: install libcjson-dev (Debian) "
                    "and rebuild", what);
}

trn_status trn_convert_hf(const trn_convert_options *opts) { return needs_cjson("--from hf"); }
trn_status trn_convert_trin(const trn_convert_options *opts) { return needs_cjson("--from trin"); }
