/* weights.cu: weight placement for the CUDA backend (resident, streamed through a device ring, mapped) and the copy
 * schedule of a step. See weights.h. */
#include "weights.h"

#include <nvtx3/nvToolsExt.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cuda_check.h"

extern "C" {
#include "cpu_fallback/quants.h"
}

namespace trn_cuda {

namespace {

size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

bool is_ternary(trn_type t) { return t == TRN_TYPE_TQ2_0 || t == TRN_TYPE_TQ1_0; }

bool is_norm(const trn_buffer *buf) { return buf->ne[1] == 1 && buf->type != TRN_TYPE_F32; }

/* Bytes of one weight in the layout the kernels read: ternary codes [rows][nb * 64 or 52] then, 256-byte aligned,
 * fp16 scales [rows][nb] (with dense_f16: the ternary matrix expanded to F16 rows, d * (code - 1), exact in fp16);
 * norms widened to F32; other types as stored. */
size_t layout_bytes(const trn_buffer *buf, bool dense_f16) {
    const int64_t rows = buf->ne[1], cols = buf->ne[0];
    if (is_norm(buf))
        return (size_t)cols * sizeof(float);
    if (is_ternary(buf->type) && dense_f16)
        return (size_t)(rows * cols) * sizeof(trn_fp16);
    if (is_ternary(buf->type)) {
        const int64_t nb = cols / TRN_QK_K;
        const size_t code_bytes = buf->type == TRN_TYPE_TQ2_0 ? 64 : 52; /* TQ1_0: qs[48] then qh[4] */
        return align256((size_t)(rows * nb) * code_bytes) + (size_t)(rows * nb) * sizeof(trn_fp16);
    }
    return buf->tensor->bytes;
}

/* Writes the layout of one weight to dst (host memory) and returns its matrix with pointers into device_base (where
 * the kernels will find those bytes). */
trn_cuda_matrix write_layout(const trn_buffer *buf, uint8_t *dst, uint8_t *device_base, bool dense_f16) {
    const trn_gguf_tensor *t = buf->tensor;
    const int64_t rows = buf->ne[1], cols = buf->ne[0];
    trn_cuda_matrix m{};
    m.type = buf->type;
    m.rows = rows;
    m.cols = cols;
    m.qs = device_base;
    if (is_norm(buf)) {
        trn_dequantize_row(buf->type, t->data, reinterpret_cast<float *>(dst), cols);
        m.type = TRN_TYPE_F32;
        m.row_bytes = (size_t)cols * sizeof(float);
    } else if (is_ternary(buf->type) && dense_f16) {
        std::vector<float> row((size_t)cols);
        trn_fp16 *out = reinterpret_cast<trn_fp16 *>(dst);
        for (int64_t r = 0; r < rows; r++) {
            trn_dequantize_row(buf->type, static_cast<const uint8_t *>(t->data) + (size_t)r * trn_row_bytes(buf->type, cols),
                               row.data(), cols);
            for (int64_t i = 0; i < cols; i++)
                out[r * cols + i] = trn_f32_to_fp16(row[(size_t)i]);
        }
        m.type = TRN_TYPE_F16;
        m.row_bytes = (size_t)cols * sizeof(trn_fp16);
    } else if (is_ternary(buf->type)) {
        const int64_t nb = cols / TRN_QK_K;
        const bool tq2 = buf->type == TRN_TYPE_TQ2_0;
        const size_t block_bytes = tq2 ? sizeof(trn_block_tq2_0) : sizeof(trn_block_tq1_0);
        const size_t code_bytes = tq2 ? 64 : 52;
        const size_t scales_at = align256((size_t)(rows * nb) * code_bytes);
        const uint8_t *src = static_cast<const uint8_t *>(t->data);
        for (int64_t b = 0; b < rows * nb; b++) {
            const uint8_t *block = src + (size_t)b * block_bytes;
            memcpy(dst + (size_t)b * code_bytes, block, code_bytes); /* TQ1_0: qs and qh are adjacent */
            memcpy(dst + scales_at + (size_t)b * sizeof(trn_fp16), block + code_bytes, sizeof(trn_fp16));
        }
        m.d = reinterpret_cast<const trn_fp16 *>(device_base + scales_at);
        m.row_bytes = (size_t)nb * code_bytes;
    } else {
        memcpy(dst, t->data, t->bytes);
        m.row_bytes = trn_row_bytes(buf->type, cols);
    }
    return m;
}

/* Device memory the weights need with the first k layers resident, the input group mapped, the other layers and the
 * head streamed through the ring (all resident where k == n_layers). */
size_t resident_need(const weights *w, int k) {
    size_t need = 0, slot = 0;
    const int L = w->n_layers;
    for (int g = 1; g < (int)w->groups.size(); g++) {
        const bool resident = k == L || (g <= L && g - 1 < k);
        if (resident)
            need += w->groups[(size_t)g].bytes;
        else
            slot = std::max(slot, w->groups[(size_t)g].bytes);
    }
    if (k == L)
        need += w->groups[0].bytes;
    return need + (size_t)kRingSlots * slot;
}

int most_resident_layers(const weights *w, size_t available) {
    for (int k = w->n_layers; k > 0; k--)
        if (resident_need(w, k) <= available)
            return k;
    return 0;
}

/* cudaHostAlloc, or an error where the OS refuses (TRN_CUDA_FAIL_PINNED=1 makes it refuse, for tests). */
cudaError_t pinned_alloc(void **p, size_t bytes, bool mapped) {
    const char *refuse = getenv("TRN_CUDA_FAIL_PINNED");
    if (refuse && refuse[0] == '1')
        return cudaErrorMemoryAllocation;
    const cudaError_t err = cudaHostAlloc(p, bytes, mapped ? cudaHostAllocMapped : cudaHostAllocDefault);
    if (err != cudaSuccess)
        (void)cudaGetLastError();
    return err;
}

/* The host blob of a streamed or mapped group: pinned, else (streamed only) pageable with a warning. */
trn_status alloc_host(weights *w, weight_group *grp, bool mapped) {
    void *p = nullptr;
    const cudaError_t err = pinned_alloc(&p, grp->bytes, mapped);
    if (err == cudaSuccess) {
        grp->host = static_cast<uint8_t *>(p);
        grp->pinned = true;
        return TRN_OK;
    }
    if (mapped)
        return trn_fail(TRN_ERR_NOMEM, "mapped weights need pinned host memory, and %zu bytes were refused: %s",
                        grp->bytes, cudaGetErrorString(err));
    if (w->pinned)
        fprintf(stderr, "warning: pinned host memory refused (%s): streaming weights from pageable memory, "
                        "without the CUDA Graph\n", cudaGetErrorString(err));
    w->pinned = false;
    grp->host = static_cast<uint8_t *>(malloc(grp->bytes ? grp->bytes : 1));
    if (!grp->host)
        return trn_fail(TRN_ERR_NOMEM, "out of host memory for %zu bytes of weights", grp->bytes);
    return TRN_OK;
}

trn_status device_malloc(weights *w, void **p, size_t bytes, const char *what) {
    return trn_cuda_alloc(p, bytes, what, &w->device_bytes);
}

/* Streamed groups whose first node is below n_nodes (the groups a step over those nodes uses). */
int streamed_in(const weights *w, int n_nodes) {
    int n = 0;
    for (int g : w->streamed) {
        const auto first = std::find(w->group_of_node.begin(), w->group_of_node.end(), g);
        if (first != w->group_of_node.end() && first - w->group_of_node.begin() < n_nodes)
            n++;
    }
    return n;
}

/* Enqueues the copy of streamed rank s (an NVTX range around the enqueue; on the timeline the copy itself shows on
 * the copy stream, beside the kernels of the compute stream). */
trn_status issue_copy(weights *w, int s) {
    const weight_group &grp = w->groups[(size_t)w->streamed[(size_t)s]];
    nvtxRangePushA("copy weights");
    if (w->slow_copy_us > 0 && trn_cuda_delay(w->slow_copy_us, reinterpret_cast<trn_cuda_stream>(w->copy_stream))) {
        nvtxRangePop();
        return trn_fail(TRN_ERR_DEVICE, "the copy-delay kernel failed: %s", cudaGetErrorString(cudaGetLastError()));
    }
    const cudaError_t err = cudaMemcpyAsync(grp.device, grp.host, grp.bytes, cudaMemcpyHostToDevice, w->copy_stream);
    nvtxRangePop();
    if (err != cudaSuccess)
        return trn_fail(TRN_ERR_DEVICE, "cudaMemcpyAsync of %zu bytes of weights failed: %s", grp.bytes,
                        cudaGetErrorString(err));
    CUDA_CHECK(cudaEventRecord(w->copied[(size_t)s], w->copy_stream));
    return TRN_OK;
}

/* After the last kernel of streamed group g: its slot may be refilled once those kernels are done. */
trn_status leave_group(weights *w, cudaStream_t compute, int g, int n_nodes) {
    if (g < 0 || w->groups[(size_t)g].where != placement::streamed)
        return TRN_OK;
    const int s = w->groups[(size_t)g].seq;
    CUDA_CHECK(cudaEventRecord(w->done[(size_t)s], compute));
    if (s + kRingSlots < streamed_in(w, n_nodes)) {
        CUDA_CHECK(cudaStreamWaitEvent(w->copy_stream, w->done[(size_t)s], 0));
        TRN_TRY(issue_copy(w, s + kRingSlots));
    }
    return TRN_OK;
}

} // namespace

trn_status weights_place(weights *w, const trn_graph *g, const trn_backend_config *config, size_t free_bytes,
                         size_t other_bytes, std::vector<trn_cuda_matrix> &matrix, std::vector<void *> &buffer) {
    const int L = g->model->hp.n_layer;
    w->n_layers = L;
    w->dense_f16 = config->dense_f16 != 0;
    w->groups.assign((size_t)L + 2, weight_group());
    w->group_of_node.assign((size_t)g->n_nodes, 0);
    w->group_of_buffer.assign((size_t)g->n_buffers, -1);
    w->offset.assign((size_t)g->n_buffers, 0);
    for (int n = 0; n < g->n_nodes; n++) {
        const trn_node *node = &g->nodes[n];
        const int grp = node->layer >= 0 ? 1 + node->layer : n < g->n_body_nodes ? 0 : L + 1;
        w->group_of_node[(size_t)n] = grp;
        for (int i = 0; i < TRN_MAX_SRC; i++) {
            const int id = node->src[i];
            if (id >= 0 && g->buffers[id].kind == TRN_BUF_WEIGHT && w->group_of_buffer[(size_t)id] < 0) {
                w->group_of_buffer[(size_t)id] = grp;
                w->offset[(size_t)id] = w->groups[(size_t)grp].bytes;
                w->groups[(size_t)grp].bytes += align256(layout_bytes(&g->buffers[id], w->dense_f16));
            }
        }
    }

    /* the mode, and for streaming how many layers stay resident */
    const size_t available = free_bytes > other_bytes ? free_bytes - other_bytes : 0;
    trn_weight_mode mode = config->weights;
    int k = config->resident_layers_given ? config->resident_layers : -1;
    if (k > L)
        return trn_fail(TRN_ERR_INVALID, "--resident-layers %d: the model has %d layers", k, L);
    if (mode == TRN_WEIGHTS_AUTO) {
        if (k < 0 && resident_need(w, L) <= available) {
            mode = TRN_WEIGHTS_RESIDENT;
        } else {
            mode = TRN_WEIGHTS_STREAMING;
            if (k < 0) {
                k = most_resident_layers(w, available);
                fprintf(stderr, "weights: %d of %d layers resident, the rest streamed from host memory (the model "
                                "needs %.2f GB, %.2f GB of device memory are free)\n",
                        k, L, (resident_need(w, L) + other_bytes) / 1e9, free_bytes / 1e9);
            }
        }
    }
    if (mode == TRN_WEIGHTS_RESIDENT)
        k = L;
    if (mode == TRN_WEIGHTS_STREAMING && k < 0)
        k = 0;
    if (mode == TRN_WEIGHTS_MAPPED)
        k = 0;
    w->mode = mode;
    w->resident_layers = k;
    if (mode == TRN_WEIGHTS_RESIDENT && resident_need(w, L) > available)
        return trn_fail(TRN_ERR_NOMEM, "out of device memory: the weights need %.2f GB and the rest %.2f GB, %.2f GB "
                        "are free; try --weights streaming or --resident-layers", resident_need(w, L) / 1e9,
                        other_bytes / 1e9, free_bytes / 1e9);
    if (mode == TRN_WEIGHTS_STREAMING && resident_need(w, k) > available)
        return trn_fail(TRN_ERR_NOMEM, "--resident-layers %d does not fit: %.2f GB of device memory are free; at most "
                        "%d layers fit", k, free_bytes / 1e9, most_resident_layers(w, available));

    /* placements */
    int n_streamed = 0;
    size_t slot = 0;
    for (int grp = 0; grp < L + 2; grp++) {
        weight_group &wg = w->groups[(size_t)grp];
        if (mode == TRN_WEIGHTS_MAPPED || (mode == TRN_WEIGHTS_STREAMING && grp == 0 && k < L))
            wg.where = placement::mapped;
        else if (mode == TRN_WEIGHTS_STREAMING && k < L && (grp == L + 1 || grp - 1 >= k))
            wg.where = placement::streamed;
        else
            wg.where = placement::resident;
        if (wg.where == placement::streamed && wg.bytes > 0) {
            wg.seq = n_streamed++;
            w->streamed.push_back(grp);
            slot = std::max(slot, wg.bytes);
        }
    }
    if (n_streamed > 0) {
        void *p = nullptr;
        w->slot_bytes = slot;
        TRN_TRY(device_malloc(w, &p, slot * kRingSlots, "the weight ring"));
        w->ring = static_cast<uint8_t *>(p);
        CUDA_CHECK(cudaStreamCreateWithFlags(&w->copy_stream, cudaStreamNonBlocking));
        w->copied.assign((size_t)n_streamed, nullptr);
        w->done.assign((size_t)n_streamed, nullptr);
        for (int s = 0; s < n_streamed; s++) {
            CUDA_CHECK(cudaEventCreateWithFlags(&w->copied[(size_t)s], cudaEventDisableTiming));
            CUDA_CHECK(cudaEventCreateWithFlags(&w->done[(size_t)s], cudaEventDisableTiming));
        }
        CUDA_CHECK(cudaEventCreateWithFlags(&w->fork, cudaEventDisableTiming));
        CUDA_CHECK(cudaEventCreateWithFlags(&w->join, cudaEventDisableTiming));
        const char *slow = getenv("TRN_CUDA_SLOW_COPY_US");
        w->slow_copy_us = slow ? atoi(slow) : 0;
    }

    /* blobs: built in host memory (pinned for streamed and mapped groups), resident ones copied to the device */
    for (int grp = 0; grp < L + 2; grp++) {
        weight_group &wg = w->groups[(size_t)grp];
        if (wg.bytes == 0)
            continue;
        std::vector<uint8_t> staging;
        uint8_t *host = nullptr;
        if (wg.where == placement::mapped && mode == TRN_WEIGHTS_STREAMING) {
            /* the embedding (one row read per token) is mapped where pinned memory is granted, else resident */
            void *p = nullptr;
            if (pinned_alloc(&p, wg.bytes, true) == cudaSuccess) {
                wg.host = static_cast<uint8_t *>(p);
                wg.pinned = true;
            } else {
                wg.where = placement::resident;
                if (w->pinned)
                    fprintf(stderr, "warning: pinned host memory refused: the token embedding stays on the device\n");
            }
        }
        if (wg.where == placement::resident) {
            void *p = nullptr;
            TRN_TRY(device_malloc(w, &p, wg.bytes, "weights"));
            wg.device = static_cast<uint8_t *>(p);
            staging.assign(wg.bytes, 0);
            host = staging.data();
        } else {
            if (!wg.host)
                TRN_TRY(alloc_host(w, &wg, wg.where == placement::mapped));
            host = wg.host;
            memset(host, 0, wg.bytes);
            if (wg.where == placement::mapped) {
                void *p = nullptr;
                CUDA_CHECK(cudaHostGetDevicePointer(&p, wg.host, 0));
                wg.device = static_cast<uint8_t *>(p);
            } else {
                wg.device = w->ring + (size_t)(wg.seq % kRingSlots) * w->slot_bytes;
            }
        }
        for (int id = 0; id < g->n_buffers; id++)
            if (w->group_of_buffer[(size_t)id] == grp) {
                const size_t at = w->offset[(size_t)id];
                matrix[(size_t)id] = write_layout(&g->buffers[id], host + at, wg.device + at, w->dense_f16);
                buffer[(size_t)id] = const_cast<void *>(matrix[(size_t)id].qs);
            }
        if (wg.where == placement::resident)
            CUDA_CHECK(cudaMemcpy(wg.device, host, wg.bytes, cudaMemcpyHostToDevice));
    }
    if (mode == TRN_WEIGHTS_RESIDENT)
        snprintf(w->note, sizeof(w->note), "weights resident");
    else if (mode == TRN_WEIGHTS_MAPPED)
        snprintf(w->note, sizeof(w->note), "weights mapped from host memory");
    else
        snprintf(w->note, sizeof(w->note), "weights streamed: %d of %d layers resident, ring of %d x %.1f MB%s", k, L,
                 kRingSlots, w->slot_bytes / 1e6, w->pinned ? "" : ", pageable");
    return TRN_OK;
}

void weights_release(weights *w) {
    for (weight_group &wg : w->groups) {
        if (wg.where == placement::resident && wg.device)
            cudaFree(wg.device);
        if (wg.host)
            wg.pinned ? (void)cudaFreeHost(wg.host) : free(wg.host);
    }
    if (w->ring)
        cudaFree(w->ring);
    for (cudaEvent_t e : w->copied)
        cudaEventDestroy(e);
    for (cudaEvent_t e : w->done)
        cudaEventDestroy(e);
    if (w->fork)
        cudaEventDestroy(w->fork);
    if (w->join)
        cudaEventDestroy(w->join);
    if (w->copy_stream)
        cudaStreamDestroy(w->copy_stream);
    *w = weights();
}

trn_status weights_enqueue_begin(weights *w, cudaStream_t compute, int n_nodes) {
    const int n = streamed_in(w, n_nodes);
    if (n == 0)
        return TRN_OK;
    CUDA_CHECK(cudaEventRecord(w->fork, compute));
    CUDA_CHECK(cudaStreamWaitEvent(w->copy_stream, w->fork, 0));
    for (int s = 0; s < std::min(n, kRingSlots); s++)
        TRN_TRY(issue_copy(w, s));
    return TRN_OK;
}

trn_status weights_enqueue_group(weights *w, cudaStream_t compute, int previous_group, int group, int n_nodes) {
    TRN_TRY(leave_group(w, compute, previous_group, n_nodes));
    const weight_group &wg = w->groups[(size_t)group];
    if (wg.where == placement::streamed && wg.seq >= 0)
        CUDA_CHECK(cudaStreamWaitEvent(compute, w->copied[(size_t)wg.seq], 0));
    return TRN_OK;
}

trn_status weights_enqueue_end(weights *w, cudaStream_t compute, int last_group, int n_nodes) {
    if (streamed_in(w, n_nodes) == 0)
        return TRN_OK;
    TRN_TRY(leave_group(w, compute, last_group, n_nodes));
    CUDA_CHECK(cudaEventRecord(w->join, w->copy_stream));
    CUDA_CHECK(cudaStreamWaitEvent(compute, w->join, 0));
    return TRN_OK;
}

double weights_h2d_bytes(const weights *w) {
    double bytes = 0;
    for (int g : w->streamed)
        bytes += (double)w->groups[(size_t)g].bytes;
    return bytes;
}

double weights_mapped_bytes(const weights *w, const trn_graph *g) {
    double bytes = 0;
    for (size_t grp = 0; grp < w->groups.size(); grp++)
        if (w->groups[grp].where == placement::mapped)
            bytes += grp == 0 ? (double)w->groups[grp].bytes / g->model->hp.n_vocab /* one embedding row per token */
                              : (double)w->groups[grp].bytes;
    return bytes;
}

trn_status copy_bandwidth(bool host_to_device, size_t bytes, int reps, double *gbs) {
    *gbs = 0;
    void *src = nullptr, *dst = nullptr;
    cudaEvent_t a = nullptr, b = nullptr;
    std::vector<float> ms;
    cudaError_t err = host_to_device ? cudaHostAlloc(&src, bytes, cudaHostAllocDefault) : cudaMalloc(&src, bytes);
    if (err == cudaSuccess)
        err = cudaMalloc(&dst, bytes);
    if (err == cudaSuccess)
        err = cudaMemset(dst, 1, bytes);
    if (err == cudaSuccess && host_to_device)
        memset(src, 1, bytes);
    else if (err == cudaSuccess)
        err = cudaMemset(src, 1, bytes);
    if (err == cudaSuccess)
        err = cudaEventCreate(&a);
    if (err == cudaSuccess)
        err = cudaEventCreate(&b);
    for (int r = -1; r < reps && err == cudaSuccess; r++) { /* r = -1: warm-up */
        float t = 0;
        err = cudaEventRecord(a);
        if (err == cudaSuccess)
            err = cudaMemcpyAsync(dst, src, bytes, host_to_device ? cudaMemcpyHostToDevice : cudaMemcpyDeviceToDevice);
        if (err == cudaSuccess)
            err = cudaEventRecord(b);
        if (err == cudaSuccess)
            err = cudaEventSynchronize(b);
        if (err == cudaSuccess)
            err = cudaEventElapsedTime(&t, a, b);
        if (r >= 0)
            ms.push_back(t);
    }
    if (a)
        cudaEventDestroy(a);
    if (b)
        cudaEventDestroy(b);
    if (src)
        host_to_device ? cudaFreeHost(src) : cudaFree(src);
    if (dst)
        cudaFree(dst);
    if (err != cudaSuccess)
        return trn_fail(TRN_ERR_DEVICE, "copy bandwidth probe failed: %s", cudaGetErrorString(err));
    std::sort(ms.begin(), ms.end());
    const double median_ms = ms.empty() ? 0 : ms[ms.size() / 2];
    const double moved = host_to_device ? (double)bytes : 2.0 * (double)bytes; /* device copies read and write */
    *gbs = median_ms > 0 ? moved / (median_ms * 1e-3) / 1e9 : 0;
    return TRN_OK;
}

} // namespace trn_cuda
