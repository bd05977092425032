/* src/device.h — picks the ops implementation and describes the machine for the report. */
#ifndef DSA_DEVICE_H
#define DSA_DEVICE_H

#include "err.h"
#include "ops.h"
#include "results.h"

/* cpu: the C reference; else the first CUDA GPU. free_bytes: memory a run may plan for.
 * No GPU (or no driver) is a runtime error (3) with one line that says so. */
int dsa_device_open(int cpu, dsa_ops *ops, dsa_device_info *info, double *free_bytes, dsa_err *e);
void dsa_device_close(int cpu, dsa_ops *ops);

#endif
