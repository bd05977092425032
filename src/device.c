#include "device.h"

#include <cuda_runtime_api.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ref.h"

int dsa_gpu_probe(dsa_err *e)
{
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) return dsa_fail(e, DSA_EXIT_RUNTIME, "no CUDA GPU: %s", cudaGetErrorString(err));
    if (n < 1) return dsa_fail(e, DSA_EXIT_RUNTIME, "no CUDA GPU: none found");
    return 0;
}

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
    int rc = dsa_gpu_probe(e);
    if (rc) return rc;
    return dsa_fail(e, DSA_EXIT_RUNTIME,
                    "the GPU forward path is not built yet (it comes with the kernels of issue [2/5]); "
                    "use --device cpu");
}

void dsa_device_close(int cpu, dsa_ops *ops)
{
    if (cpu) dsa_ref_ops_fini(ops);
}
