#include "device.h"

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cuda_ctx.h"
#include "ref.h"

#include <cupti.h>

static void cpu_info(dsa_device_info *d, double *free_bytes)
{
    snprintf(d->kind, sizeof d->kind, "cpu");
    snprintf(d->name, sizeof d->name, "host CPU");
    FILE *fp = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (fp && fgets(line, sizeof line, fp))
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            if (c) {
                c += 2;
                c[strcspn(c, "\n")] = 0;
                snprintf(d->name, sizeof d->name, "%s", c);
            }
            break;
        }
    if (fp) fclose(fp);
    d->sms = (int32_t)sysconf(_SC_NPROCESSORS_ONLN);
    d->mem_bytes = (int64_t)sysconf(_SC_PHYS_PAGES) * sysconf(_SC_PAGESIZE);
    *free_bytes = (double)d->mem_bytes;
    fp = fopen("/proc/meminfo", "r");
    long long kb;
    while (fp && fgets(line, sizeof line, fp))
        if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) {
            *free_bytes = kb * 1024.0;
            break;
        }
    if (fp) fclose(fp);
}

int dsa_device_open(int cpu, dsa_ops *ops, dsa_device_info *info, double *free_bytes, dsa_err *e)
{
    memset(info, 0, sizeof *info);
    if (cpu) {
        cpu_info(info, free_bytes);
        if (dsa_ref_ops_init(ops)) return dsa_fail(e, DSA_EXIT_RUNTIME, "cannot set up the reference ops");
        return 0;
    }
    char err[256];
    if (dsa_cuda_ops_init(ops, 0, err, sizeof err)) return dsa_fail(e, DSA_EXIT_RUNTIME, "%s", err);
    for (const void **f = (const void **)&ops->fill_bf16; f <= (const void **)&ops->moe_experts; f++)
        if (!*f) {
            dsa_cuda_ops_fini(ops);
            return dsa_fail(e, DSA_EXIT_RUNTIME, "this build lacks some GPU kernels (they land with issue [2/5])");
        }
    struct cudaDeviceProp p;
    cudaGetDeviceProperties(&p, 0);
    snprintf(info->kind, sizeof info->kind, "cuda");
    snprintf(info->name, sizeof info->name, "%.127s", p.name);
    info->cc_major = p.major;
    info->cc_minor = p.minor;
    info->sms = p.multiProcessorCount;
    info->l2_bytes = p.l2CacheSize;
    info->mem_bytes = (int64_t)p.totalGlobalMem;
    cudaDriverGetVersion(&info->driver_version);
    cudaRuntimeGetVersion(&info->runtime_version);
    uint32_t cupti = 0;
    if (cuptiGetVersion(&cupti) == CUPTI_SUCCESS) info->cupti_version = (int32_t)cupti;
    int khz = 0;
    if (cudaDeviceGetAttribute(&khz, cudaDevAttrClockRate, 0) == cudaSuccess) info->sm_clock_mhz = khz / 1000.0;
    if (cudaDeviceGetAttribute(&khz, cudaDevAttrMemoryClockRate, 0) == cudaSuccess) info->mem_clock_mhz = khz / 1000.0;
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    *free_bytes = (double)free_b;
    return 0;
}

void dsa_device_close(int cpu, dsa_ops *ops)
{
    if (cpu) dsa_ref_ops_fini(ops);
    else dsa_cuda_ops_fini(ops);
}
