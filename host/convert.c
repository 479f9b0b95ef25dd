/* convert.c: trn_convert (convert.h): checks the options, refuses an output that is one of the inputs, and calls
 * the converter of opts->from. Owns the defaults and the dispatch only; each format is its own file
 * (convert_internal.h). */
#include "convert_internal.h"

#include <string.h>

#include "output_file.h"

trn_convert_options trn_convert_defaults(void) {
    trn_convert_options o = {0};
    o.type = TRN_TYPE_TQ2_0;
    o.embed_type = TRN_TYPE_F16;
    o.rule = TRN_TERNARY_ABSMEAN;
    return o;
}

trn_status trn_convert(const trn_convert_options *o) {
    if (!o->input || !o->output)
        return trn_fail(TRN_ERR_INVALID, "convert needs an input and -o OUT.gguf");
    if (o->type != TRN_TYPE_TQ2_0 && o->type != TRN_TYPE_TQ1_0 && o->type != TRN_TYPE_F16 && o->type != TRN_TYPE_F32)
        return trn_fail(TRN_ERR_INVALID, "--type %s: expected tq2_0, tq1_0, f16 or f32", trn_type_name(o->type));
    if (o->embed_type != TRN_TYPE_F16 && o->embed_type != TRN_TYPE_F32)
        return trn_fail(TRN_ERR_INVALID, "--embed-type %s: expected f16 or f32", trn_type_name(o->embed_type));
    /* the output must be none of the inputs (a checkpoint directory: none of its files), checked before any is read */
    const char *inputs[] = {o->input, o->base_dir, o->tokenizer, o->vocab_gguf};
    TRN_TRY(trn_output_check(o->output, inputs, (int)TRN_ARRAY_LEN(inputs)));
    if (strcmp(o->from, "hf") == 0)
        return trn_convert_hf(o);
    if (strcmp(o->from, "trin") == 0)
        return trn_convert_trin(o);
    if (strcmp(o->from, "llama2c") == 0)
        return trn_convert_llama2c(o);
    return trn_fail(TRN_ERR_INVALID, "--from %s: expected trin, hf or llama2c", o->from);
}
