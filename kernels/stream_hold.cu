// kernels/stream_hold.cu — hold the stream while the host queues what is to be timed (nvbench's
// blocking kernel). One thread spins on a flag in mapped host memory until the host releases it,
// so the start event, a replayed graph and the end event reach the GPU together and the events
// time the replay alone, not the host's cost of launching it (which CUPTI raises ~1.5 ms per
// 1550-node graph). A timeout ends the hold if the host never releases it (a launch queue that
// fills up behind a held stream would otherwise deadlock); the host reports that as a failure.
#include <stdint.h>

#include "cuda_ops.h"

namespace {

constexpr unsigned long long HOLD_TIMEOUT_NS = 10ull * 1000 * 1000 * 1000;

// flags[0]: set by the kernel when it runs; flags[1]: set by the host to release;
// flags[2]: set by the kernel when it gave up waiting.
__global__ void stream_hold(volatile int *flags)
{
    unsigned long long t0, now;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    flags[0] = 1;
    __threadfence_system();
    while (!flags[1]) {
        __nanosleep(1000);
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(now));
        if (now - t0 > HOLD_TIMEOUT_NS) {
            flags[2] = 1;
            __threadfence_system();
            return;
        }
    }
}

} // namespace

extern "C" int dsa_cuda_stream_hold_launch(void *ctx, volatile int *flags_dev)
{
    dsa_cuda_ctx *c = static_cast<dsa_cuda_ctx *>(ctx);
    stream_hold<<<1, 1, 0, c->stream>>>(flags_dev);
    return dsa_cuda_check(c, "stream hold");
}
