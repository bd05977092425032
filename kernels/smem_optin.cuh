// kernels/smem_optin.cuh — the opt-in of a kernel to more than 48 KB of dynamic shared memory
// (and, for kernels that run several blocks per SM on large allocations, the whole L1/shared array
// as shared memory), set once per device and kernel instead of on every launch:
// cudaFuncSetAttribute is host work of a few microseconds, which an eager decode step would pay
// per launch. One ctx drives one device from one host thread (kernels/cuda_ctx.h), so the record
// is a plain static per kernel (a template instance per kernel pointer): the last device set and
// the largest size set there; a new device or a larger size sets the attribute again.
#pragma once

#include <cuda_runtime_api.h>
#include <stddef.h>

#include "cuda_ops.h"

namespace {

template <auto Kernel>
int smem_optin(dsa_cuda_ctx *c, size_t smem, bool max_shared_carveout, const char *op)
{
    static int device = -1;
    static size_t bytes = 0;
    if (device == c->device && smem <= bytes) return DSA_OK;
    cudaError_t st = cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (st == cudaSuccess && max_shared_carveout)
        st = cudaFuncSetAttribute(Kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                  (int)cudaSharedmemCarveoutMaxShared);
    if (int rc = dsa_cuda_status(c, st, op)) return rc;
    device = c->device;
    bytes = smem;
    return DSA_OK;
}

} // namespace
