/* bench/cli.c — the options shared by plan and run. */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SETS 64

int cli_error(const char *cmd, int code, const char *msg)
{
    fprintf(stderr, "dsa-bench %s: %s\n", cmd, msg);
    return code;
}

int cli_option_error(const char *cmd, int c, const char *arg)
{
    char msg[160];
    const char *eq = strchr(arg, '=');
    if (c == ':')
        snprintf(msg, sizeof msg, "option %s needs a value", arg);
    else if (optopt && !strncmp(arg, "--", 2) && eq) /* a known option without a value, given one */
        snprintf(msg, sizeof msg, "option '%.*s' takes no value", (int)(eq - arg), arg);
    else
        snprintf(msg, sizeof msg, "unknown option '%s'", arg);
    return cli_error(cmd, 2, msg);
}

static void usage(FILE *o, int cmd)
{
    const char *name = cmd == CLI_PLAN ? "plan" : "run";
    fprintf(o,
            "usage: dsa-bench %s [options]\n"
            "  -m, --model NAME|config.json   preset (dsa-bench models) or a Hugging Face config (glm-4.7-flash-dsa)\n"
            "      --set KEY=VALUE            override a model field (repeatable)\n"
            "  -c, --context LIST             contexts, k = 1000, Ki = 1024 (10k,60k,120k,200k)\n"
            "  -i, --config LIST              IndexCache configs: full, 1/N, freq:N, pattern:FS..., model (full,1/2,1/4)\n"
            "  -p, --phase LIST               prefill,decode (both)\n"
            "  -b, --batch LIST               decode batch sizes (1)\n"
            "      --chunk N                  prefill chunk tokens (8192)\n"
            "      --layers N                 run N layers of the model's shapes (all)\n"
            "      --weights per-layer|shared one weight set per layer, or one for all (per-layer)\n"
            "      --weight-dtype bf16|fp8    linear-layer weights (bf16)\n"
            "      --indexer split|fused      F layers: idx_logits + topk, or idx_fused (no score matrix) (split)\n"
            "      --mem GiB                  memory a point may use (plan: 141; run: what is free)\n",
            name);
    if (cmd == CLI_PLAN)
        fprintf(o, "      --peak-bf16 T, --peak-fp8 T  TFLOP/s ceilings (800, 1470)\n"
                   "      --bw GB/s                  memory bandwidth ceiling (4000)\n");
    else
        fprintf(o, "      --device cuda|cpu          cpu: the C reference with host timers, small shapes only (cuda)\n"
                   "  -r, --reps N                   at least N measured repetitions, >= 3 (5)\n"
                   "      --warmup N                 warm-up repetitions, >= 1 (1)\n"
                   "      --max-time S               add repetitions until stdev <= 1%% of the median or S seconds (30; 2 with --device cpu)\n"
                   "      --seed N                   synthetic weights and inputs (1)\n"
                   "      --graph on|off             decode: replay the step as a CUDA graph (on)\n"
                   "      --trace both|on|off        GPU: untraced wall then traced components and overhead; one traced\n"
                   "                                 pass (half the time, no overhead figure); or no CUPTI (both)\n"
                   "      --max-records N            raw kernel records kept per point, first repetition; -1 all (20000)\n"
                   "  -o, --output FILE.h5           HDF5 report (written to FILE.h5.tmp, then renamed)\n");
}

enum { O_SET = 256, O_CHUNK, O_LAYERS, O_WEIGHTS, O_WDTYPE, O_MEM, O_PBF16, O_PFP8, O_BW, O_WARMUP, O_MAXT,
       O_DEVICE, O_SEED, O_GRAPH, O_INDEXER, O_TRACE, O_MAXREC };

int cli_parse_axes(int argc, char **argv, int cmd, cli_axes *a)
{
    const char *name = cmd == CLI_PLAN ? "plan" : "run";
    static const struct option run_opts[] = {
        {"model", 1, 0, 'm'}, {"set", 1, 0, O_SET}, {"context", 1, 0, 'c'}, {"config", 1, 0, 'i'},
        {"phase", 1, 0, 'p'}, {"batch", 1, 0, 'b'}, {"chunk", 1, 0, O_CHUNK}, {"layers", 1, 0, O_LAYERS},
        {"weights", 1, 0, O_WEIGHTS}, {"weight-dtype", 1, 0, O_WDTYPE}, {"mem", 1, 0, O_MEM}, {"indexer", 1, 0, O_INDEXER},
        {"help", 0, 0, 'h'}, {"device", 1, 0, O_DEVICE}, {"reps", 1, 0, 'r'}, {"warmup", 1, 0, O_WARMUP},
        {"max-time", 1, 0, O_MAXT}, {"seed", 1, 0, O_SEED}, {"output", 1, 0, 'o'}, {"graph", 1, 0, O_GRAPH},
        {"trace", 1, 0, O_TRACE}, {"max-records", 1, 0, O_MAXREC},
        {0, 0, 0, 0}};
    static const struct option plan_opts[] = {
        {"model", 1, 0, 'm'}, {"set", 1, 0, O_SET}, {"context", 1, 0, 'c'}, {"config", 1, 0, 'i'},
        {"phase", 1, 0, 'p'}, {"batch", 1, 0, 'b'}, {"chunk", 1, 0, O_CHUNK}, {"layers", 1, 0, O_LAYERS},
        {"weights", 1, 0, O_WEIGHTS}, {"weight-dtype", 1, 0, O_WDTYPE}, {"mem", 1, 0, O_MEM}, {"indexer", 1, 0, O_INDEXER},
        {"help", 0, 0, 'h'}, {"peak-bf16", 1, 0, O_PBF16}, {"peak-fp8", 1, 0, O_PFP8}, {"bw", 1, 0, O_BW},
        {0, 0, 0, 0}};
    dsa_sweep_opts *s = &a->sweep;
    dsa_sweep_defaults(s);
    a->ceil = dsa_ceilings_default();
    const char *model = "glm-4.7-flash-dsa", *ctx = "10k,60k,120k,200k", *cfg = "full,1/2,1/4",
               *phase = "prefill,decode", *batch = "1";
    const char *sets[MAX_SETS];
    int n_sets = 0;
    dsa_err e = {{0}};
    int c, rc;
    char *end;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, cmd == CLI_PLAN ? ":m:c:i:p:b:h" : ":m:c:i:p:b:r:o:h",
                            cmd == CLI_PLAN ? plan_opts : run_opts, NULL)) != -1) {
        switch (c) {
        case 'm': model = optarg; break;
        case O_SET:
            if (n_sets == MAX_SETS) return cli_error(name, 2, "too many --set options");
            sets[n_sets++] = optarg;
            break;
        case 'c': ctx = optarg; break;
        case 'i': cfg = optarg; break;
        case 'p': phase = optarg; break;
        case 'b': batch = optarg; break;
        case 'o': s->out_path = optarg; break;
        case 'h': usage(stdout, cmd); return -1;
        case O_CHUNK: case O_LAYERS: case 'r': case O_WARMUP: {
            int64_t v;
            const char *what = c == O_CHUNK ? "--chunk" : c == O_LAYERS ? "--layers" : c == 'r' ? "-r" : "--warmup";
            if ((rc = dsa_parse_count(optarg, what, &v, &e))) return cli_error(name, rc, e.msg);
            if (c == O_CHUNK) s->chunk = (int)v;
            else if (c == O_LAYERS) s->layers = (int)v;
            else if (c == 'r') s->reps = (int)v;
            else s->warmup = (int)v;
            break;
        }
        case O_SEED:
            s->seed = strtoull(optarg, &end, 10);
            if (!*optarg || *end) return cli_error(name, 2, "--seed: not an unsigned integer");
            break;
        case O_WEIGHTS:
            if (!strcmp(optarg, "shared")) s->shared_weights = 1;
            else if (!strcmp(optarg, "per-layer")) s->shared_weights = 0;
            else return cli_error(name, 2, "--weights: expected per-layer or shared");
            break;
        case O_WDTYPE:
            if (!strcmp(optarg, "fp8")) s->weight_fp8 = 1;
            else if (!strcmp(optarg, "bf16")) s->weight_fp8 = 0;
            else return cli_error(name, 2, "--weight-dtype: expected bf16 or fp8");
            break;
        case O_INDEXER:
            if (!strcmp(optarg, "fused")) s->fused_indexer = 1;
            else if (!strcmp(optarg, "split")) s->fused_indexer = 0;
            else return cli_error(name, 2, "--indexer: expected fused or split");
            break;
        case O_TRACE:
            if (!strcmp(optarg, "both")) s->trace = DSA_TRACE_BOTH;
            else if (!strcmp(optarg, "on")) s->trace = DSA_TRACE_ON;
            else if (!strcmp(optarg, "off")) s->trace = DSA_TRACE_OFF;
            else return cli_error(name, 2, "--trace: expected both, on or off");
            break;
        case O_MAXREC: {
            long long v = strtoll(optarg, &end, 10);
            if (!*optarg || *end || v < -1) return cli_error(name, 2, "--max-records: expected an integer >= -1");
            s->max_records = v;
            break;
        }
        case O_GRAPH:
            if (!strcmp(optarg, "on")) s->no_graph = 0;
            else if (!strcmp(optarg, "off")) s->no_graph = 1;
            else return cli_error(name, 2, "--graph: expected on or off");
            break;
        case O_DEVICE:
            if (!strcmp(optarg, "cpu")) s->device_cpu = 1;
            else if (!strcmp(optarg, "cuda")) s->device_cpu = 0;
            else return cli_error(name, 2, "--device: expected cuda or cpu");
            break;
        case O_MEM: case O_PBF16: case O_PFP8: case O_BW: case O_MAXT: {
            double v;
            const char *what = c == O_MEM ? "--mem" : c == O_PBF16 ? "--peak-bf16" : c == O_PFP8 ? "--peak-fp8"
                             : c == O_BW ? "--bw" : "--max-time";
            if ((rc = dsa_parse_double(optarg, what, &v, &e))) return cli_error(name, rc, e.msg);
            if (c == O_MEM) s->mem_gib = v;
            else if (c == O_PBF16) a->ceil.bf16_tflops = v;
            else if (c == O_PFP8) a->ceil.fp8_tflops = v;
            else if (c == O_BW) a->ceil.bw_gbs = v;
            else s->max_time_s = v;
            break;
        }
        case ':': {
            char msg[128];
            snprintf(msg, sizeof msg, "option %s needs a value", argv[optind - 1]);
            return cli_error(name, 2, msg);
        }
        default: {
            char msg[160];
            snprintf(msg, sizeof msg, "unknown option '%s' (dsa-bench %s --help)", argv[optind - 1], name);
            return cli_error(name, 2, msg);
        }
        }
    }
    if (optind < argc) {
        char msg[160];
        snprintf(msg, sizeof msg, "unexpected argument '%s'", argv[optind]);
        return cli_error(name, 2, msg);
    }
    if ((rc = dsa_model_load(model, &s->model, &e))) return cli_error(name, rc, e.msg);
    for (int i = 0; i < n_sets; i++)
        if ((rc = dsa_model_set_kv(&s->model, sets[i], &e))) return cli_error(name, rc, e.msg);
    if ((rc = dsa_model_validate(&s->model, &e))) return cli_error(name, rc, e.msg);
    if ((rc = dsa_parse_count_list(ctx, "-c", s->contexts, &s->n_contexts, &e))) return cli_error(name, rc, e.msg);
    if ((rc = dsa_parse_count_list(batch, "-b", s->batches, &s->n_batches, &e))) return cli_error(name, rc, e.msg);
    char *items[DSA_MAX_LIST];
    int n;
    if ((rc = dsa_split_list(cfg, "-i", a->list_buf[0], sizeof a->list_buf[0], items, &n, &e)))
        return cli_error(name, rc, e.msg);
    for (int i = 0; i < n; i++) s->configs[i] = items[i];
    s->n_configs = n;
    if ((rc = dsa_split_list(phase, "-p", a->list_buf[1], sizeof a->list_buf[1], items, &n, &e)))
        return cli_error(name, rc, e.msg);
    s->n_phases = 0;
    for (int i = 0; i < n; i++) {
        int p = !strcmp(items[i], "prefill") ? DSA_PREFILL : !strcmp(items[i], "decode") ? DSA_DECODE : -1;
        if (p < 0) {
            char msg[160];
            snprintf(msg, sizeof msg, "-p: '%.100s' is not prefill or decode", items[i]);
            return cli_error(name, 2, msg);
        }
        if (s->n_phases == 2 || (s->n_phases == 1 && s->phases[0] == p)) return cli_error(name, 2, "-p: a phase is listed twice");
        s->phases[s->n_phases++] = p;
    }
    if (s->layers > s->model.n_layers) {
        char msg[160];
        snprintf(msg, sizeof msg, "--layers %d: the model has %d layers", s->layers, s->model.n_layers);
        return cli_error(name, 2, msg);
    }
    return 0;
}
