/* weights.h: where the CUDA backend keeps the weights, and the copies that bring streamed ones to the device
 * (C++, internal to cuda/; implemented in weights.cu).
 *
 * Weights are grouped by first use: group 0 the input (token embedding), 1..n_layer the blocks, n_layer + 1 the head
 * (output norm, LM head). Each group is one blob in the layout the kernels read (ternary codes and scales split,
 * norms widened to F32; every weight 256-byte aligned in it) and is placed
 *   resident  in device memory;
 *   streamed  in pinned host memory, copied before use into slot (s mod kRingSlots) of a device ring, s being the
 *             group's rank among streamed groups; a kernel's weight pointers are the slot's, so a captured CUDA Graph
 *             serves every step;
 *   mapped    in pinned host memory mapped into the device's address space: kernels read it over the bus.
 * The copy schedule of one step (enqueue_begin, enqueue_group, enqueue_end around the launches): a copy stream forked
 * from the compute stream copies the first kRingSlots streamed groups at once; the compute stream waits for group
 * s's copy before its first kernel; after its last kernel it records `done`, on which the copy of group
 * s + kRingSlots (into the same slot) waits. Under stream capture these become copy nodes and edges of the graph. */
#ifndef TRN_CUDA_WEIGHTS_H
#define TRN_CUDA_WEIGHTS_H

#include <cuda_runtime.h>

#include <vector>

#include "cuda_ops.h"

extern "C" {
#include "graph/backend.h"
}

namespace trn_cuda {

constexpr int kRingSlots = 3;

enum class placement { resident, streamed, mapped };

struct weight_group {
    placement where = placement::resident;
    size_t bytes = 0;
    uint8_t *host = nullptr;   /* streamed, mapped: the blob in host memory */
    uint8_t *device = nullptr; /* resident: the blob; streamed: its ring slot; mapped: the host blob's device address */
    int seq = -1;              /* streamed: rank among streamed groups */
    bool pinned = false;       /* host blob from cudaHostAlloc (else malloc) */
};

struct weights {
    std::vector<int> group_of_buffer;   /* [n_buffers] group of each weight buffer, -1 for other buffers */
    std::vector<int> group_of_node;     /* [n_nodes] */
    std::vector<size_t> offset;         /* [n_buffers] offset of each weight in its group's blob */
    std::vector<weight_group> groups;
    std::vector<int> streamed;          /* group of each streamed rank */
    bool pinned = true;                 /* host blobs pinned (else pageable: no graph capture of the copies) */
    uint8_t *ring = nullptr;
    size_t slot_bytes = 0;
    int resident_layers = 0, n_layers = 0;
    trn_weight_mode mode = TRN_WEIGHTS_RESIDENT;
    cudaStream_t copy_stream = nullptr;
    std::vector<cudaEvent_t> copied, done; /* [streamed groups] */
    cudaEvent_t fork = nullptr, join = nullptr;
    int slow_copy_us = 0;               /* TRN_CUDA_SLOW_COPY_US: a delay kernel before each copy (tests) */
    bool dense_f16 = false;             /* ternary matrices expanded to F16 (config dense_f16: the dense baseline) */
    size_t device_bytes = 0;
    char note[160] = "";                /* the placement in words, for describe() */
};

/* Chooses placements (config's mode; other_bytes: device memory the rest of the backend needs), builds every blob and
 * fills matrix[] and buffer[] for the weight buffers. Allocations are recorded in *w (weights_release frees them). */
trn_status weights_place(weights *w, const trn_graph *g, const trn_backend_config *config, size_t free_bytes,
                         size_t other_bytes, std::vector<trn_cuda_matrix> &matrix, std::vector<void *> &buffer);
void weights_release(weights *w);

/* The copy schedule of one step (see the file comment): begin before the first launch, group before each launch
 * whose node's group differs from the previous launch's, end after the last launch. n_nodes: the nodes this step
 * runs (all, or the body's). */
trn_status weights_enqueue_begin(weights *w, cudaStream_t compute, int n_nodes);
trn_status weights_enqueue_group(weights *w, cudaStream_t compute, int previous_group, int group, int n_nodes);
trn_status weights_enqueue_end(weights *w, cudaStream_t compute, int last_group, int n_nodes);

/* Weight bytes copied host -> device, and read by kernels from host memory, per full step. */
double weights_h2d_bytes(const weights *w);
double weights_mapped_bytes(const weights *w, const trn_graph *g);

/* Bandwidth of cudaMemcpy between pinned host memory and the device (host_to_device) or within the device (read +
 * written bytes over time), GB/s, the median of reps copies of `bytes`. */
trn_status copy_bandwidth(bool host_to_device, size_t bytes, int reps, double *gbs);

} // namespace trn_cuda

#endif
