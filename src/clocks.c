/* src/clocks.c — SM clock and throttle reasons from NVML while a point runs (src/clocks.h). */
#include "clocks.h"

#include <cuda_runtime.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The few NVML entry points used, declared here (nvml.h is not part of every CUDA install):
 * nvmlReturn_t is an int enum with 0 = success, nvmlDevice_t an opaque pointer, and
 * NVML_CLOCK_SM = 1. Stable since NVML's first releases. */
typedef int nvml_ret;
typedef struct nvml_device *nvml_dev;
enum { NVML_OK = 0, NVML_CLOCK_SM = 1 };

struct dsa_clocks {
    void *lib;
    nvml_dev dev;
    nvml_ret (*shutdown)(void);
    nvml_ret (*clock_info)(nvml_dev, int, unsigned *);
    nvml_ret (*event_reasons)(nvml_dev, unsigned long long *);
    /* one point's readings: written by the sampling thread, read after it is joined */
    pthread_t thread;
    int running;
    atomic_int stop;
    long n, throttled;
    double first, last, sum, min;
    uint64_t events;
};

dsa_clocks *dsa_clocks_open(int cuda_device)
{
    const char *env = getenv("DSA_CLOCKS");
    if (env && !strcmp(env, "off")) return NULL; /* A/B of the sampler's own cost, or no NVML wanted */
    char bus[32];
    if (cudaDeviceGetPCIBusId(bus, (int)sizeof bus, cuda_device) != cudaSuccess) return NULL;
    void *lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return NULL;
    nvml_ret (*init)(void) = (nvml_ret(*)(void))dlsym(lib, "nvmlInit_v2");
    nvml_ret (*by_bus)(const char *, nvml_dev *) =
        (nvml_ret(*)(const char *, nvml_dev *))dlsym(lib, "nvmlDeviceGetHandleByPciBusId_v2");
    dsa_clocks *c = calloc(1, sizeof *c);
    if (c) {
        c->lib = lib;
        c->shutdown = (nvml_ret(*)(void))dlsym(lib, "nvmlShutdown");
        c->clock_info = (nvml_ret(*)(nvml_dev, int, unsigned *))dlsym(lib, "nvmlDeviceGetClockInfo");
        /* "ClocksThrottleReasons" was renamed "ClocksEventReasons" (same call); old drivers
         * have only the first name, and new ones keep it */
        c->event_reasons = (nvml_ret(*)(nvml_dev, unsigned long long *))dlsym(lib, "nvmlDeviceGetCurrentClocksEventReasons");
        if (!c->event_reasons)
            c->event_reasons =
                (nvml_ret(*)(nvml_dev, unsigned long long *))dlsym(lib, "nvmlDeviceGetCurrentClocksThrottleReasons");
    }
    if (!c || !init || !by_bus || !c->shutdown || !c->clock_info || !c->event_reasons || init() != NVML_OK) {
        free(c);
        dlclose(lib);
        return NULL;
    }
    unsigned mhz;
    if (by_bus(bus, &c->dev) != NVML_OK || c->clock_info(c->dev, NVML_CLOCK_SM, &mhz) != NVML_OK) {
        c->shutdown();
        dlclose(lib);
        free(c);
        return NULL;
    }
    return c;
}

void dsa_clocks_close(dsa_clocks *c)
{
    if (!c) return;
    if (c->running) {
        atomic_store(&c->stop, 1);
        pthread_join(c->thread, NULL);
    }
    c->shutdown();
    dlclose(c->lib);
    free(c);
}

static void take_reading(dsa_clocks *c)
{
    unsigned mhz = 0;
    unsigned long long why = 0;
    if (c->clock_info(c->dev, NVML_CLOCK_SM, &mhz) != NVML_OK || mhz == 0) return;
    if (c->event_reasons(c->dev, &why) != NVML_OK) why = 0;
    if (c->n == 0) c->first = c->min = mhz;
    if (mhz < c->min) c->min = mhz;
    c->last = mhz;
    c->sum += mhz;
    c->n++;
    c->throttled += (why & DSA_CLOCK_THROTTLE_MASK) != 0;
    c->events |= why;
}

static void *sampler(void *arg)
{
    dsa_clocks *c = arg;
    const struct timespec slice = {0, 5 * 1000000L}; /* the end of a point waits at most 5 ms */
    for (int ms = 0; !atomic_load(&c->stop); ms += 5) {
        nanosleep(&slice, NULL);
        if (ms % DSA_CLOCK_PERIOD_MS == 0 && !atomic_load(&c->stop)) take_reading(c);
    }
    return NULL;
}

int dsa_clocks_begin(dsa_clocks *c)
{
    if (!c) return 0;
    c->n = c->throttled = 0;
    c->first = c->last = c->sum = c->min = 0;
    c->events = 0;
    take_reading(c);
    atomic_store(&c->stop, 0);
    c->running = pthread_create(&c->thread, NULL, sampler, c) == 0;
    return c->running ? 0 : -1;
}

void dsa_clocks_end(dsa_clocks *c, dsa_point *pt)
{
    if (!c) return;
    if (c->running) {
        atomic_store(&c->stop, 1);
        pthread_join(c->thread, NULL);
        c->running = 0;
    }
    take_reading(c);
    if (c->n == 0) return;
    pt->sm_clock_begin_mhz = c->first;
    pt->sm_clock_end_mhz = c->last;
    pt->sm_clock_mean_mhz = c->sum / (double)c->n;
    pt->sm_clock_min_mhz = c->min;
    pt->throttled_pct = 100.0 * (double)c->throttled / (double)c->n;
    pt->clock_events = (int64_t)c->events;
}

void dsa_clocks_progress(FILE *f, const dsa_point *pt)
{
    if (pt->sm_clock_mean_mhz > 0)
        fprintf(f, "; SM clock %.0f MHz mean, %.0f min, throttled %.0f%%", pt->sm_clock_mean_mhz, pt->sm_clock_min_mhz,
                pt->throttled_pct);
}

const char *dsa_clock_events_str(uint64_t mask, char *buf, int size)
{
    static const struct {
        uint64_t bit;
        const char *name;
    } names[] = {{0x4, "sw_power_cap"}, {0x8, "hw_slowdown"}, {0x20, "sw_thermal"}, {0x40, "hw_thermal"},
                 {0x80, "hw_power_brake"}};
    int len = 0;
    if (size > 0) buf[0] = '\0';
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((mask & names[i].bit) && len < size)
            len += snprintf(buf + len, (size_t)(size - len), "%s%s", len ? "+" : "", names[i].name);
    if (len == 0 && size > 0) snprintf(buf, (size_t)size, "none");
    return buf;
}
