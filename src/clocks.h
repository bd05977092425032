/* src/clocks.h — the GPU's SM clock and its clock-event (throttle) reasons while a point runs,
 * from NVML (DESIGN.md §4: record the SM clock before/after, flag throttling).
 *
 * NVML is loaded at run time (dlopen of libnvidia-ml.so.1, which comes with the driver), so the
 * binary needs no NVML at build time and runs where there is none: open then says "absent" and
 * every point records 0 MHz ("not measured"; files older than these fields read the same).
 *
 * A point is sampled by a thread of its own every DSA_CLOCK_PERIOD_MS from begin to end (and once
 * at each end), because one reading before and one after miss what happens in between: a 200K
 * prefill on the H200 spends most of its 20 s at the board's power cap with the SM clock moving
 * between ~1.5 and 1.98 GHz. */
#ifndef DSA_CLOCKS_H
#define DSA_CLOCKS_H

#include <stdint.h>
#include <stdio.h>

#include "results.h"

#define DSA_CLOCK_PERIOD_MS 50

/* NVML clock-event reasons that lower the clock below what the load asks for (nvml.h's
 * nvmlClocksEventReason*): software power cap, hardware slowdown, software and hardware thermal
 * slowdown, hardware power brake. Idle, application-clock and sync-boost reasons are not throttling. */
#define DSA_CLOCK_THROTTLE_MASK (0x4ull | 0x8ull | 0x20ull | 0x40ull | 0x80ull)

typedef struct dsa_clocks dsa_clocks; /* NVML handle for one GPU and the sampling thread */

/* NVML for CUDA device cuda_device (matched by its PCI bus id). Returns NULL when NVML or the
 * device is not there (not an error: clocks are then not recorded), or when the environment
 * variable DSA_CLOCKS is "off". */
dsa_clocks *dsa_clocks_open(int cuda_device);
void dsa_clocks_close(dsa_clocks *c);

/* Starts sampling for one point (NULL c: nothing). Returns 0, or -1 when the thread could not
 * start (the point then records one reading at each end). */
int dsa_clocks_begin(dsa_clocks *c);
/* Stops it and fills pt's clock fields (with c NULL they stay 0: not measured). */
void dsa_clocks_end(dsa_clocks *c, dsa_point *pt);

/* The progress line's clock part ("; SM clock 1856 MHz mean, 1755 min, throttled 99%") for a
 * point that has readings; nothing otherwise. */
void dsa_clocks_progress(FILE *f, const dsa_point *pt);

/* Names of the throttle reasons set in mask, "+"-joined into buf ("sw_power_cap+hw_thermal"),
 * or "none". */
const char *dsa_clock_events_str(uint64_t mask, char *buf, int size);

#endif
