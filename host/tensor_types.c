/* tensor_types.c: the table of tensor types Trinity knows (see tensor_types.h). */
#include "tensor_types.h"

#include <stdio.h>
#include <strings.h>

static const struct {
    uint32_t id;
    trn_type_traits traits;
} type_table[] = {
    {TRN_TYPE_F32, {"f32", 1, 4, 0}},
    {TRN_TYPE_F16, {"f16", 1, 2, 0}},
    {TRN_TYPE_BF16, {"bf16", 1, 2, 0}},
    {TRN_TYPE_Q8_0, {"q8_0", TRN_QK8_0, sizeof(trn_block_q8_0), 0}},
    {TRN_TYPE_Q4_K, {"q4_K", TRN_QK_K, sizeof(trn_block_q4_k), 0}},
    {TRN_TYPE_Q6_K, {"q6_K", TRN_QK_K, sizeof(trn_block_q6_k), 0}},
    {TRN_TYPE_TQ1_0, {"tq1_0", TRN_QK_K, sizeof(trn_block_tq1_0), 1}},
    {TRN_TYPE_TQ2_0, {"tq2_0", TRN_QK_K, sizeof(trn_block_tq2_0), 1}},
};

const trn_type_traits *trn_type_get(uint32_t type) {
    for (size_t i = 0; i < sizeof(type_table) / sizeof(type_table[0]); i++)
        if (type_table[i].id == type)
            return &type_table[i].traits;
    return NULL;
}

const char *trn_type_name(uint32_t type) {
    const trn_type_traits *traits = trn_type_get(type);
    if (traits)
        return traits->name;
    static _Thread_local char unknown[32];
    snprintf(unknown, sizeof(unknown), "type %u", type);
    return unknown;
}

int trn_type_from_name(const char *name) {
    for (size_t i = 0; i < sizeof(type_table) / sizeof(type_table[0]); i++)
        if (strcasecmp(type_table[i].traits.name, name) == 0)
            return (int)type_table[i].id;
    return -1;
}

size_t trn_row_bytes(trn_type type, int64_t n) {
    const trn_type_traits *traits = trn_type_get(type);
    if (!traits || n <= 0 || n % traits->block_size != 0)
        return 0;
    return (size_t)(n / traits->block_size) * (size_t)traits->block_bytes;
}
