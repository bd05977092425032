/* src/h5report.c — dsa_run to HDF5 and back (layout in h5report.h, DESIGN.md §5).
 *
 * Every compound dataset and every attribute set is described once, as a list of columns (name,
 * kind, offsetof in its C struct, units). The writer and the reader both walk that list: it gives
 * the file type, the in-memory row type, and the copy between the C struct and a row. Rows are a
 * separate buffer because some columns are computed from the struct (K_TEXT), not stored in it;
 * they pass through it about IO_BYTES at a time, so a million kernel records need no second
 * full-size copy.
 *
 * Strings are fixed-length and NUL-terminated, never variable-length: HDF5 keeps variable-length
 * strings in the global heap, which has no checksum, and a corrupt heap crashes the library
 * (seen in 1.10.8, H5HG_read) instead of failing. Fixed strings live in the checksummed object
 * headers (attributes) or in the dataset's own rows. The reader refuses variable-length strings
 * before reading anything, with a message that says so.
 *
 * What HDF5 does not check, the reader does before each H5Dread (tests/test_h5_fuzz.c damages
 * files to prove it): each column's type class (check_columns), the bytes stored against the rows
 * claimed (check_storage), and the chunk index, which has no checksum in this file format
 * (check_chunks); and after it, that every component is one of ours. */
#include "h5report.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef H5I_INVALID_HID
#define H5I_INVALID_HID (-1)
#endif

/* ---- column descriptions ---------------------------------------------------------------- */

enum col_kind {
    K_I32,   /* int32_t */
    K_I64,   /* int64_t */
    K_U64,   /* uint64_t */
    K_F64,   /* double */
    K_I32X3, /* int32_t[3], an HDF5 array member */
    K_COMP,  /* int32_t holding an enum dsa_component: an HDF5 enum of the component names */
    K_STR,   /* char[size] in the struct, a fixed string of `size` bytes (NUL-terminated) */
    K_TEXT,  /* a string computed from the struct, `size` bytes in the file: written, not read */
};

typedef struct col {
    const char *name;
    int kind;
    size_t off, size;                     /* the member in its C struct (K_TEXT: size only) */
    const char *units;                    /* NULL when the column has none */
    const char *(*text)(const void *obj); /* K_TEXT only */
} col;

typedef struct table {
    const col *cols;
    int n;
} table;

#define MAX_COLS 48
#define NO_COL SIZE_MAX

#define COL(type, member, kind, units) \
    { #member, kind, offsetof(type, member), sizeof(((type *)0)->member), units, NULL }
#define TEXT_COL(name, size, fn) { name, K_TEXT, 0, size, NULL, fn }
#define TABLE(cols) { cols, (int)(sizeof cols / sizeof cols[0]) }

static const char *point_status_name(const void *obj)
{
    switch (((const dsa_point *)obj)->status) {
    case DSA_POINT_OK: return "ok";
    case DSA_POINT_SKIPPED: return "skipped";
    case DSA_POINT_FAILED: return "failed";
    }
    return "unknown";
}

static const char *comp_stat_name(const void *obj)
{
    const char *s = dsa_component_name(((const dsa_comp_stat *)obj)->component);
    return s ? s : "unknown";
}

/* Root attributes after `schema`, which is written and checked on its own. */
static const col run_cols[] = {
    COL(dsa_run, tool_version, K_STR, NULL),
    COL(dsa_run, git_sha, K_STR, NULL),
    COL(dsa_run, utc, K_STR, NULL),
    COL(dsa_run, argv, K_STR, NULL),
    COL(dsa_run, layers_run, K_I32, NULL),
    COL(dsa_run, shared_weights, K_I32, NULL),
    COL(dsa_run, weight_fp8, K_I32, NULL),    /* absent in older files: reads 0 (bf16) */
    COL(dsa_run, fused_indexer, K_I32, NULL), /* absent in older files: reads 0 (split) */
};

static const col device_cols[] = {
    COL(dsa_device_info, kind, K_STR, NULL),
    COL(dsa_device_info, name, K_STR, NULL),
    COL(dsa_device_info, cc_major, K_I32, NULL),
    COL(dsa_device_info, cc_minor, K_I32, NULL),
    COL(dsa_device_info, sms, K_I32, NULL),
    COL(dsa_device_info, l2_bytes, K_I64, NULL),
    COL(dsa_device_info, mem_bytes, K_I64, NULL),
    COL(dsa_device_info, driver_version, K_I32, NULL),
    COL(dsa_device_info, runtime_version, K_I32, NULL),
    COL(dsa_device_info, cupti_version, K_I32, NULL),
    COL(dsa_device_info, sm_clock_mhz, K_F64, NULL),
    COL(dsa_device_info, mem_clock_mhz, K_F64, NULL),
    COL(dsa_device_info, peak_bf16_tflops, K_F64, NULL),
    COL(dsa_device_info, peak_fp8_tflops, K_F64, NULL),
    COL(dsa_device_info, copy_gbs, K_F64, NULL),
};

static const col point_cols[] = {
    COL(dsa_point, id, K_I32, NULL),
    COL(dsa_point, phase, K_STR, NULL),
    COL(dsa_point, context, K_I64, "tokens"),
    COL(dsa_point, batch, K_I32, "requests"),
    COL(dsa_point, chunk, K_I32, "tokens"),
    COL(dsa_point, config, K_STR, NULL),
    COL(dsa_point, fs, K_STR, NULL),
    COL(dsa_point, n_full, K_I32, "layers"),
    COL(dsa_point, n_layers, K_I32, "layers"),
    COL(dsa_point, reps, K_I32, NULL),
    COL(dsa_point, wall_median_ms, K_F64, "ms"),
    COL(dsa_point, wall_min_ms, K_F64, "ms"),
    COL(dsa_point, wall_stdev_ms, K_F64, "ms"),
    COL(dsa_point, indexer_ms, K_F64, "ms"),
    COL(dsa_point, indexer_share, K_F64, NULL),
    COL(dsa_point, tok_s, K_F64, "tokens/s"),
    COL(dsa_point, flops, K_F64, "flop/rep"),
    COL(dsa_point, bytes, K_F64, "bytes/rep"),
    COL(dsa_point, status, K_I32, NULL),
    TEXT_COL("status_name", sizeof "unknown", point_status_name),
    COL(dsa_point, reason, K_STR, NULL),
    COL(dsa_point, traced_reps, K_I32, NULL),
    COL(dsa_point, wall_traced_median_ms, K_F64, "ms"),
    COL(dsa_point, trace_overhead_pct, K_F64, "%"),
    COL(dsa_point, coverage, K_F64, NULL),
    COL(dsa_point, dropped_records, K_I64, "records"),
    COL(dsa_point, unattributed, K_I64, "records"),
    COL(dsa_point, nonfinite, K_I64, "values"),
    COL(dsa_point, records_total, K_I64, "records"),
    /* absent in older files: read 0, "not measured" */
    COL(dsa_point, sm_clock_begin_mhz, K_F64, "MHz"),
    COL(dsa_point, sm_clock_end_mhz, K_F64, "MHz"),
    COL(dsa_point, sm_clock_mean_mhz, K_F64, "MHz"),
    COL(dsa_point, sm_clock_min_mhz, K_F64, "MHz"),
    COL(dsa_point, throttled_pct, K_F64, "%"),
    COL(dsa_point, clock_events, K_I64, NULL),
};

static const col comp_cols[] = {
    TEXT_COL("name", 24, comp_stat_name), /* the longest component name is 11 characters */
    COL(dsa_comp_stat, component, K_COMP, NULL),
    COL(dsa_comp_stat, median_ms, K_F64, "ms"),
    COL(dsa_comp_stat, min_ms, K_F64, "ms"),
    COL(dsa_comp_stat, stdev_ms, K_F64, "ms"),
    COL(dsa_comp_stat, share, K_F64, NULL),
    COL(dsa_comp_stat, kernels, K_I32, "launches/rep"),
};

static const col kernel_cols[] = {
    COL(dsa_kernel_rec, rep, K_I32, NULL),
    COL(dsa_kernel_rec, layer, K_I32, NULL),
    COL(dsa_kernel_rec, component, K_COMP, NULL),
    COL(dsa_kernel_rec, name, K_STR, NULL),
    COL(dsa_kernel_rec, start_ns, K_I64, "ns"),
    COL(dsa_kernel_rec, end_ns, K_I64, "ns"),
    COL(dsa_kernel_rec, graph_node, K_U64, NULL),
    COL(dsa_kernel_rec, grid, K_I32X3, "blocks"),
    COL(dsa_kernel_rec, block, K_I32X3, "threads"),
};

static const table run_table = TABLE(run_cols);
static const table device_table = TABLE(device_cols);
static const table point_table = TABLE(point_cols);
static const table comp_table = TABLE(comp_cols);
static const table kernel_table = TABLE(kernel_cols);

/* ---- errors ----------------------------------------------------------------------------- */

typedef struct h5io {
    const char *file; /* as named in messages */
    const char *verb; /* "write" | "read" */
    dsa_err *e;
} h5io;

static herr_t first_desc(unsigned n, const H5E_error2_t *err, void *data)
{
    char *buf = data;
    (void)n;
    if (!buf[0] && err->desc && err->desc[0]) snprintf(buf, 200, "%s", err->desc);
    return 0;
}

/* The innermost (most specific) message on HDF5's error stack, on one line; "" when empty. */
static void h5_detail(char buf[200])
{
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, first_desc, buf);
    for (char *c = buf; *c; c++)
        if (*c == '\n' || *c == '\r') *c = ' ';
}

/* "x.h5: cannot read /points/3/kernels: <HDF5's reason>". `where` is the parent's path ("" for
 * the root). */
static int io_fail(const h5io *io, const char *where, const char *name)
{
    char detail[200];
    h5_detail(detail);
    return dsa_fail(io->e, DSA_EXIT_RUNTIME, "%s: cannot %s %s/%s%s%s", io->file, io->verb, where,
                    name, detail[0] ? ": " : "", detail);
}

static int io_oom(const h5io *io)
{
    return dsa_fail(io->e, DSA_EXIT_RUNTIME, "%s: out of memory", io->file);
}

/* ---- types ------------------------------------------------------------------------------ */

static int is_str(int kind) { return kind == K_STR || kind == K_TEXT; }

/* Bytes of one value of the column, the same in memory and in the file. */
static size_t val_size(int kind, size_t str_size)
{
    switch (kind) {
    case K_I32:
    case K_COMP: return sizeof(int32_t);
    case K_I64: return sizeof(int64_t);
    case K_U64: return sizeof(uint64_t);
    case K_F64: return sizeof(double);
    case K_I32X3: return 3 * sizeof(int32_t);
    default: return str_size;
    }
}

static size_t mem_align(int kind)
{
    switch (kind) {
    case K_I32:
    case K_COMP:
    case K_I32X3: return _Alignof(int32_t);
    case K_I64: return _Alignof(int64_t);
    case K_U64: return _Alignof(uint64_t);
    case K_F64: return _Alignof(double);
    default: return 1;
    }
}

/* A fixed string of `size` bytes, NUL-terminated (a value of size - 1 characters at most). */
static hid_t new_str(size_t size, H5T_cset_t cset)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t >= 0 && (size == 0 || H5Tset_size(t, size) < 0 ||
                   H5Tset_strpad(t, H5T_STR_NULLTERM) < 0 || H5Tset_cset(t, cset) < 0)) {
        H5Tclose(t);
        t = H5I_INVALID_HID;
    }
    return t;
}

/* A new type id for one value of a column (caller closes it): little-endian standard types in the
 * file, native ones in memory. `str_size` is the size of a string column. */
static hid_t new_atom(int kind, size_t str_size, int file)
{
    hid_t t = H5I_INVALID_HID;
    switch (kind) {
    case K_I32: return H5Tcopy(file ? H5T_STD_I32LE : H5T_NATIVE_INT32);
    case K_I64: return H5Tcopy(file ? H5T_STD_I64LE : H5T_NATIVE_INT64);
    case K_U64: return H5Tcopy(file ? H5T_STD_U64LE : H5T_NATIVE_UINT64);
    case K_F64: return H5Tcopy(file ? H5T_IEEE_F64LE : H5T_NATIVE_DOUBLE);
    case K_I32X3: {
        hsize_t three = 3;
        hid_t base = new_atom(K_I32, 0, file);
        if (base < 0) return H5I_INVALID_HID;
        t = H5Tarray_create2(base, 1, &three);
        H5Tclose(base);
        return t;
    }
    case K_COMP:
        /* Native base in the file too: member values are given in the base's byte order. */
        t = H5Tenum_create(H5T_NATIVE_INT32);
        for (int32_t c = 0; t >= 0 && c < DSA_NCOMP; c++)
            if (H5Tenum_insert(t, dsa_component_name(c), &c) < 0) {
                H5Tclose(t);
                t = H5I_INVALID_HID;
            }
        return t;
    default: /* K_STR, K_TEXT */
        return new_str(str_size, H5T_CSET_UTF8);
    }
}

/* The character set of string member `name` of compound `ft`; UTF-8 (what we write) when it has
 * none. HDF5 does not convert between character sets, so the reader's type must match. */
static H5T_cset_t member_cset(hid_t ft, const char *name)
{
    H5T_cset_t cset = H5T_CSET_UTF8;
    int i = ft >= 0 ? H5Tget_member_index(ft, name) : -1;
    hid_t m = i >= 0 ? H5Tget_member_type(ft, (unsigned)i) : H5I_INVALID_HID;
    if (m >= 0 && H5Tget_class(m) == H5T_STRING) {
        H5T_cset_t c = H5Tget_cset(m);
        if (c >= 0) cset = c;
    }
    if (m >= 0) H5Tclose(m);
    return cset;
}

/* Where each column sits in an in-memory row; NO_COL for a column the row leaves out. */
typedef struct row_layout {
    size_t off[MAX_COLS];
    size_t size;
} row_layout;

/* The compound type of a table: packed for the file; for memory, aligned like a C struct and
 * described in *lay. `like` is the file's type when reading (H5I_INVALID_HID when writing): the
 * write-only K_TEXT columns are then left out and strings take the file's character set. */
static hid_t new_compound(const table *t, int file, hid_t like, row_layout *lay)
{
    hid_t atoms[MAX_COLS], ct = H5I_INVALID_HID;
    size_t off[MAX_COLS], size = 0, align = 1;
    int ok = t->n <= MAX_COLS, reading = like >= 0;

    for (int i = 0; i < t->n && i < MAX_COLS; i++) atoms[i] = H5I_INVALID_HID;
    for (int i = 0; ok && i < t->n; i++) {
        const col *c = &t->cols[i];
        off[i] = NO_COL;
        if (reading && c->kind == K_TEXT) continue;
        if ((is_str(c->kind) && c->size == 0) ||
            (c->kind != K_TEXT && c->size != val_size(c->kind, c->size))) {
            ok = 0; /* the description does not match the struct: a bug in this file */
            break;
        }
        atoms[i] = reading && c->kind == K_STR ? new_str(c->size, member_cset(like, c->name))
                                                : new_atom(c->kind, c->size, file);
        if (atoms[i] < 0) {
            ok = 0;
            break;
        }
        if (!file) {
            size_t a = mem_align(c->kind);
            size = (size + a - 1) / a * a;
            if (a > align) align = a;
        }
        off[i] = size;
        size += val_size(c->kind, c->size);
    }
    size = (size + align - 1) / align * align;
    if (ok) ct = H5Tcreate(H5T_COMPOUND, size);
    for (int i = 0; ct >= 0 && i < t->n; i++)
        if (atoms[i] >= 0 && H5Tinsert(ct, t->cols[i].name, off[i], atoms[i]) < 0) {
            H5Tclose(ct);
            ct = H5I_INVALID_HID;
        }
    for (int i = 0; i < t->n && i < MAX_COLS; i++)
        if (atoms[i] >= 0) H5Tclose(atoms[i]);
    if (lay) {
        memcpy(lay->off, off, sizeof off);
        lay->size = size;
    }
    return ct;
}

/* A string into a fixed cell of `size` bytes: cut to size - 1 characters, NUL-padded. */
static void put_str(unsigned char *cell, size_t size, const char *s)
{
    size_t n = strnlen(s, size - 1);
    memcpy(cell, s, n);
    memset(cell + n, 0, size - n);
}

/* struct -> row */
static void pack_row(const table *t, const row_layout *lay, const void *obj, unsigned char *row)
{
    for (int i = 0; i < t->n; i++) {
        const col *c = &t->cols[i];
        const char *field = (const char *)obj + c->off;
        unsigned char *cell = row + lay->off[i];
        if (lay->off[i] == NO_COL) continue;
        switch (c->kind) {
        case K_STR: put_str(cell, c->size, field); break;
        case K_TEXT: put_str(cell, c->size, c->text(obj)); break;
        default: memcpy(cell, field, c->size);
        }
    }
}

/* row -> struct. Returns the index of a column whose value is out of range (a component that is
 * not one of ours), -1 when the row is fine. */
static int unpack_row(const table *t, const row_layout *lay, const unsigned char *row, void *obj)
{
    for (int i = 0; i < t->n; i++) {
        const col *c = &t->cols[i];
        char *field = (char *)obj + c->off;
        if (lay->off[i] == NO_COL || c->kind == K_TEXT) continue;
        memcpy(field, row + lay->off[i], c->size);
        if (c->kind == K_STR) field[c->size - 1] = '\0';
        if (c->kind == K_COMP) {
            int32_t v;
            memcpy(&v, field, sizeof v);
            if (v < 0 || v >= DSA_NCOMP) return i;
        }
    }
    return -1;
}

/* ---- attributes ------------------------------------------------------------------------- */

/* One scalar attribute; `value` points at the value. A string (K_STR, K_TEXT) is at most `len`
 * characters, stops at its NUL, and is stored in a type just large enough for it. */
static int write_attr(hid_t obj, const char *where, const char *name, int kind, const void *value,
                      size_t len, const h5io *io)
{
    size_t size = is_str(kind) ? strnlen(value, len) + 1 : 0;
    char *s = size ? malloc(size) : NULL;
    hid_t ft = new_atom(kind, size, 1), mt = new_atom(kind, size, 0), sp = H5Screate(H5S_SCALAR);
    hid_t a = H5I_INVALID_HID;
    int rc = 0;
    if (size && !s) {
        rc = io_oom(io);
    } else {
        if (s) {
            memcpy(s, value, size - 1);
            s[size - 1] = '\0';
        }
        if (ft < 0 || mt < 0 || sp < 0 ||
            (a = H5Acreate2(obj, name, ft, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
            H5Awrite(a, mt, s ? (const void *)s : value) < 0)
            rc = io_fail(io, where, name);
    }
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    if (mt >= 0) H5Tclose(mt);
    if (ft >= 0) H5Tclose(ft);
    free(s);
    return rc;
}

static int write_attrs(hid_t obj, const char *where, const table *t, const void *base, const h5io *io)
{
    for (int i = 0; i < t->n; i++) {
        const col *c = &t->cols[i];
        const void *v = c->kind == K_TEXT ? (const void *)c->text(base) : (const char *)base + c->off;
        int rc = write_attr(obj, where, c->name, c->kind, v, c->size, io);
        if (rc) return rc;
    }
    return 0;
}

/* Reads a fixed-length string attribute of one element into buf (len >= 1 bytes; a longer value is
 * cut to len - 1 characters). 0 ok, -1 HDF5 error, -2 not a single string, -3 a variable-length
 * string (refused unread: those live in the global heap, which has no checksum). */
static int read_str_attr(hid_t a, char *buf, size_t len)
{
    hid_t ft = H5Aget_type(a), sp = H5Aget_space(a), mt = H5I_INVALID_HID;
    int rc = -1;
    htri_t vl;
    if (ft < 0 || sp < 0) goto done;
    if (H5Tget_class(ft) != H5T_STRING || H5Sget_simple_extent_npoints(sp) != 1) {
        rc = -2;
        goto done;
    }
    if ((vl = H5Tis_variable_str(ft)) < 0) goto done;
    if (vl) {
        rc = -3;
        goto done;
    }
    /* A copy of the file's type keeps its character set (HDF5 does not convert between them). */
    if ((mt = H5Tcopy(ft)) < 0 || H5Tset_size(mt, len) < 0 ||
        H5Tset_strpad(mt, H5T_STR_NULLTERM) < 0 || H5Aread(a, mt, buf) < 0)
        goto done;
    buf[len - 1] = '\0';
    rc = 0;
done:
    if (mt >= 0) H5Tclose(mt);
    if (sp >= 0) H5Sclose(sp);
    if (ft >= 0) H5Tclose(ft);
    return rc;
}

#define VL_REFUSED "is a variable-length string (this build reads fixed-length strings only)"

/* Reads one attribute into a struct member of `size` bytes. An absent attribute leaves the member
 * as it is (zero), so a later build may add fields without breaking older files. */
static int read_attr(hid_t obj, const char *where, const char *name, int kind, void *field,
                     size_t size, const h5io *io)
{
    htri_t exists = H5Aexists(obj, name);
    hid_t a = H5I_INVALID_HID, mt = H5I_INVALID_HID;
    int rc = 0;
    if (exists < 0) return io_fail(io, where, name);
    if (!exists) return 0;
    if ((a = H5Aopen(obj, name, H5P_DEFAULT)) < 0) return io_fail(io, where, name);
    if (kind == K_STR) {
        int r = read_str_attr(a, field, size);
        if (r == -2)
            rc = dsa_fail(io->e, DSA_EXIT_RUNTIME, "%s: %s/%s is not a string", io->file, where,
                          name);
        else if (r == -3)
            rc = dsa_fail(io->e, DSA_EXIT_RUNTIME, "%s: %s/%s " VL_REFUSED, io->file, where, name);
        else if (r)
            rc = io_fail(io, where, name);
    } else {
        hid_t sp = H5Aget_space(a);
        hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
        if (sp >= 0) H5Sclose(sp);
        if (n < 0)
            rc = io_fail(io, where, name);
        else if (n != 1) /* reading it would overrun the member */
            rc = dsa_fail(io->e, DSA_EXIT_RUNTIME, "%s: %s/%s is not a single value", io->file,
                          where, name);
        else if ((mt = new_atom(kind, 0, 0)) < 0 || H5Aread(a, mt, field) < 0)
            rc = io_fail(io, where, name);
    }
    if (mt >= 0) H5Tclose(mt);
    H5Aclose(a);
    return rc;
}

static int read_attrs(hid_t obj, const char *where, const table *t, void *base, const h5io *io)
{
    for (int i = 0; i < t->n; i++) {
        const col *c = &t->cols[i];
        if (c->kind == K_TEXT) continue;
        int rc = read_attr(obj, where, c->name, c->kind, (char *)base + c->off, c->size, io);
        if (rc) return rc;
    }
    return 0;
}

/* ---- datasets --------------------------------------------------------------------------- */

#define CHUNK_BYTES (256u << 10) /* target size of one chunk of a table, before compression */
#define IO_BYTES (1u << 20)      /* target size of the row buffer of one H5Dread / H5Dwrite */
#define MAX_INFLATE 1100         /* deflate expands a stored byte to 1032 at most */

/* "units": one string per member of the file type, in member order, "" where none. */
static int write_units(hid_t ds, const char *dpath, const table *t, const h5io *io)
{
    hsize_t n = (hsize_t)t->n;
    size_t size = 1;
    char *buf = NULL;
    hid_t st = H5I_INVALID_HID, sp = H5I_INVALID_HID, a = H5I_INVALID_HID;
    int rc = 0;
    for (int i = 0; i < t->n; i++)
        if (t->cols[i].units && strlen(t->cols[i].units) + 1 > size)
            size = strlen(t->cols[i].units) + 1;
    if (!(buf = calloc((size_t)t->n, size))) return io_oom(io);
    for (int i = 0; i < t->n; i++)
        if (t->cols[i].units)
            memcpy(buf + (size_t)i * size, t->cols[i].units, strlen(t->cols[i].units));
    if ((st = new_str(size, H5T_CSET_UTF8)) < 0 || (sp = H5Screate_simple(1, &n, NULL)) < 0 ||
        (a = H5Acreate2(ds, "units", st, sp, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(a, st, buf) < 0)
        rc = io_fail(io, dpath, "units");
    if (a >= 0) H5Aclose(a);
    if (sp >= 0) H5Sclose(sp);
    if (st >= 0) H5Tclose(st);
    free(buf);
    return rc;
}

/* Creation properties of a table of n rows of file type ft: chunks of about CHUNK_BYTES,
 * byte-shuffled then deflated at level 1, when it has rows and this HDF5 can deflate; contiguous
 * otherwise. The mostly-NUL 96-byte kernel names and the slowly changing numbers compress well:
 * 800k kernel rows take 125 MB raw, 13.4 MB deflated, 5.3 MB shuffled and deflated, for the same
 * CPU time (shuffle is built into every HDF5, so every reader has it).
 *
 * The fill value is all bytes 0xFF, not zeros: a chunk that a damaged chunk index hides reads back
 * as fill, and 0xFF rows are refused by the reader (component -1 in kernels and components, id -1
 * in the point table, whose group does not exist) where zeros would pass as data. */
static hid_t new_dcpl(hid_t ft, hsize_t n)
{
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    size_t row_bytes = H5Tget_size(ft);
    unsigned info = 0;
    hsize_t chunk = CHUNK_BYTES / (row_bytes ? row_bytes : 1);
    unsigned char *fill = NULL;
    if (dcpl < 0 || n == 0 || H5Zfilter_avail(H5Z_FILTER_DEFLATE) <= 0 ||
        H5Zget_filter_info(H5Z_FILTER_DEFLATE, &info) < 0 ||
        !(info & H5Z_FILTER_CONFIG_ENCODE_ENABLED))
        return dcpl;
    if (chunk < 1) chunk = 1;
    if (chunk > n) chunk = n;
    if (row_bytes == 0 || !(fill = malloc(row_bytes)) || H5Pset_chunk(dcpl, 1, &chunk) < 0 ||
        H5Pset_shuffle(dcpl) < 0 || H5Pset_deflate(dcpl, 1) < 0 ||
        H5Pset_fill_value(dcpl, ft, memset(fill, 0xFF, row_bytes)) < 0) {
        H5Pclose(dcpl);
        dcpl = H5I_INVALID_HID;
    }
    free(fill);
    return dcpl;
}

/* Rows per H5Dread / H5Dwrite of dataset ds (n rows of row_bytes in memory): about IO_BYTES, and
 * whole chunks when it is chunked, so no chunk is inflated twice. */
static hsize_t io_rows(hid_t ds, hsize_t n, size_t row_bytes)
{
    hsize_t rows = IO_BYTES / (row_bytes ? row_bytes : 1), chunk = 0;
    hid_t dcpl = H5Dget_create_plist(ds);
    if (rows < 1) rows = 1;
    if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED && H5Pget_chunk(dcpl, 1, &chunk) == 1 &&
        chunk > 0)
        rows = rows > chunk ? rows / chunk * chunk : chunk;
    if (dcpl >= 0) H5Pclose(dcpl);
    return rows < n ? rows : n;
}

/* Selects rows [first, first + count) of file space sp; returns the matching memory space. */
static hid_t select_rows(hid_t sp, hsize_t first, hsize_t count)
{
    if (H5Sselect_hyperslab(sp, H5S_SELECT_SET, &first, NULL, &count, NULL) < 0)
        return H5I_INVALID_HID;
    return H5Screate_simple(1, &count, NULL);
}

/* n structs of `stride` bytes at objs -> compound dataset loc/name (where = loc's path). */
static int write_table(hid_t loc, const char *where, const char *name, const table *t,
                       const void *objs, size_t n, size_t stride, const h5io *io)
{
    row_layout lay;
    hid_t mt = new_compound(t, 0, H5I_INVALID_HID, &lay);
    hid_t ft = new_compound(t, 1, H5I_INVALID_HID, NULL);
    hid_t sp = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, ds = H5I_INVALID_HID;
    hsize_t dims = n, block;
    unsigned char *rows = NULL;
    char dpath[64];
    int rc = 0;

    snprintf(dpath, sizeof dpath, "%s/%s", where, name);
    if (mt < 0 || ft < 0 || (sp = H5Screate_simple(1, &dims, NULL)) < 0 ||
        (dcpl = new_dcpl(ft, dims)) < 0 ||
        (ds = H5Dcreate2(loc, name, ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0) {
        rc = io_fail(io, where, name);
        goto done;
    }
    block = io_rows(ds, dims, lay.size);
    if (n && !(rows = calloc(block, lay.size))) {
        rc = io_oom(io);
        goto done;
    }
    for (hsize_t first = 0; first < dims; first += block) {
        hsize_t count = dims - first < block ? dims - first : block;
        hid_t msp;
        for (hsize_t i = 0; i < count; i++)
            pack_row(t, &lay, (const char *)objs + (first + i) * stride, rows + i * lay.size);
        if ((msp = select_rows(sp, first, count)) < 0 ||
            H5Dwrite(ds, mt, msp, sp, H5P_DEFAULT, rows) < 0)
            rc = io_fail(io, where, name);
        if (msp >= 0) H5Sclose(msp);
        if (rc) goto done;
    }
    rc = write_units(ds, dpath, t, io);
done:
    free(rows);
    if (ds >= 0) H5Dclose(ds);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (sp >= 0) H5Sclose(sp);
    if (ft >= 0) H5Tclose(ft);
    if (mt >= 0) H5Tclose(mt);
    return rc;
}

/* Opens loc/name, checks it is 1-D, returns its length in *n. */
static int open_1d(hid_t loc, const char *where, const char *name, hid_t *ds, hid_t *sp,
                   hsize_t *n, const h5io *io)
{
    if ((*ds = H5Dopen2(loc, name, H5P_DEFAULT)) < 0 || (*sp = H5Dget_space(*ds)) < 0)
        return io_fail(io, where, name);
    if (H5Sget_simple_extent_ndims(*sp) != 1)
        return dsa_fail(io->e, DSA_EXIT_RUNTIME, "%s: %s/%s is not a 1-D dataset", io->file,
                        where, name);
    if (H5Sget_simple_extent_dims(*sp, n, NULL) < 0) return io_fail(io, where, name);
    return 0;
}

/* Before reading n rows of file type ft: the bytes stored must be able to hold them (exactly, when
 * contiguous; deflated at most MAX_INFLATE to one, when chunked). Catches a row count or a type
 * that does not fit the data before HDF5 is asked to read it. */
static int check_storage(hid_t ds, hid_t ft, hsize_t n, const char *where, const char *name,
                         const h5io *io)
{
    size_t row = H5Tget_size(ft);
    hsize_t stored = H5Dget_storage_size(ds), need;
    hid_t dcpl = H5Dget_create_plist(ds);
    H5D_layout_t layout = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
    int bad;
    if (dcpl >= 0) H5Pclose(dcpl);
    if (row == 0 || layout == H5D_LAYOUT_ERROR) return io_fail(io, where, name);
    if (n > (hsize_t)-1 / row)
        return dsa_fail(io->e, DSA_EXIT_RUNTIME, "%s: %s/%s is too large (corrupt)", io->file,
                        where, name);
    need = n * row;
    if (layout == H5D_CONTIGUOUS)
        bad = stored != need;
    else if (layout == H5D_CHUNKED)
        bad = n > 0 && (stored == 0 || (stored <= (hsize_t)-1 / MAX_INFLATE &&
                                        stored * MAX_INFLATE < need));
    else
        bad = 0; /* compact: the rows are in the checksummed object header */
    if (bad)
        return dsa_fail(io->e, DSA_EXIT_RUNTIME,
                        "%s: %s/%s has %llu rows of %zu bytes but %llu bytes stored (truncated or "
                        "corrupt)",
                        io->file, where, name, (unsigned long long)n, row,
                        (unsigned long long)stored);
    return 0;
}

#if H5_VERSION_GE(1, 10, 5)
static int cmp_addr(const void *a, const void *b)
{
    haddr_t x = *(const haddr_t *)a, y = *(const haddr_t *)b;
    return x < y ? -1 : x > y;
}
#endif

/* Before reading a chunked dataset of n rows of row_bytes in the file: its chunk index must list
 * exactly the chunks that hold the rows, each at its own address, each with its filters applied or
 * else stored whole. In the HDF5 1.8 file format the chunk index is a v1 B-tree, which has no
 * checksum, and HDF5 1.10.8 trusts it: a damaged chunk offset reads a chunk as missing (rows of
 * zeros, silently), and a damaged filter mask makes it take a deflated chunk for a raw one and read
 * past its buffer. Needs HDF5 >= 1.10.5 (H5Dget_chunk_info_by_coord); older builds skip it. */
static int check_chunks(hid_t ds, hsize_t n, size_t row_bytes, const char *where,
                        const char *name, const h5io *io)
{
#if H5_VERSION_GE(1, 10, 5)
    hid_t dcpl = H5Dget_create_plist(ds), sp = H5I_INVALID_HID;
    hsize_t chunk = 0, count, listed = 0;
    haddr_t *addrs = NULL;
    char why[96] = "";
    int rc = 0;
    if (dcpl < 0) return io_fail(io, where, name);
    if (n == 0 || H5Pget_layout(dcpl) != H5D_CHUNKED) goto done;
    if (H5Pget_chunk(dcpl, 1, &chunk) != 1 || chunk == 0) {
        snprintf(why, sizeof why, "has a bad chunk shape");
        goto done;
    }
    count = n / chunk + (n % chunk != 0);
    if (!(addrs = malloc(count * sizeof *addrs))) {
        rc = io_oom(io);
        goto done;
    }
    if ((sp = H5Dget_space(ds)) < 0 || H5Dget_num_chunks(ds, sp, &listed) < 0) {
        rc = io_fail(io, where, name);
        goto done;
    }
    if (listed != count) {
        snprintf(why, sizeof why, "lists %llu chunks, not %llu", (unsigned long long)listed,
                 (unsigned long long)count);
        goto done;
    }
    for (hsize_t k = 0; k < count; k++) {
        hsize_t first = k * chunk, size = 0;
        unsigned mask = 0;
        haddr_t addr = HADDR_UNDEF;
        if (H5Dget_chunk_info_by_coord(ds, &first, &mask, &addr, &size) < 0) {
            rc = io_fail(io, where, name);
            goto done;
        }
        if (addr == HADDR_UNDEF || size == 0)
            snprintf(why, sizeof why, "has lost the chunk of row %llu", (unsigned long long)first);
        else if (mask != 0 && size < chunk * row_bytes)
            snprintf(why, sizeof why, "has a chunk marked unfiltered but too short at row %llu",
                     (unsigned long long)first);
        if (why[0]) goto done;
        addrs[k] = addr;
    }
    qsort(addrs, count, sizeof *addrs, cmp_addr);
    for (hsize_t k = 1; k < count && !why[0]; k++)
        if (addrs[k] == addrs[k - 1]) snprintf(why, sizeof why, "lists one chunk twice");
done:
    if (why[0])
        rc = dsa_fail(io->e, DSA_EXIT_RUNTIME, "%s: %s/%s %s (corrupt)", io->file, where, name,
                      why);
    free(addrs);
    if (sp >= 0) H5Sclose(sp);
    H5Pclose(dcpl);
    return rc;
#else
    (void)ds, (void)n, (void)row_bytes, (void)where, (void)name, (void)io;
    return 0;
#endif
}

/* The file's compound type must carry each column we read with a type HDF5 can convert to ours:
 * checked here, so a foreign or damaged table gets a message naming the column. A column the file
 * lacks is left zero (a build that did not have it). */
static int check_columns(hid_t ft, const table *t, const char *where, const char *name,
                         const h5io *io)
{
    if (H5Tget_class(ft) != H5T_COMPOUND)
        return dsa_fail(io->e, DSA_EXIT_RUNTIME, "%s: %s/%s is not a table (compound dataset)",
                        io->file, where, name);
    for (int i = 0; i < t->n; i++) {
        const col *c = &t->cols[i];
        int idx = c->kind == K_TEXT ? -1 : H5Tget_member_index(ft, c->name);
        hid_t m = idx >= 0 ? H5Tget_member_type(ft, (unsigned)idx) : H5I_INVALID_HID;
        H5T_class_t cls = m >= 0 ? H5Tget_class(m) : H5T_NO_CLASS;
        int ok = 1, vl = 0;
        if (idx < 0) continue;
        switch (c->kind) {
        case K_I32:
        case K_I64:
        case K_U64: ok = cls == H5T_INTEGER; break;
        case K_F64: ok = cls == H5T_FLOAT; break;
        case K_COMP: ok = cls == H5T_ENUM; break;
        case K_I32X3: {
            hsize_t d = 0;
            hid_t base = cls == H5T_ARRAY ? H5Tget_super(m) : H5I_INVALID_HID;
            ok = cls == H5T_ARRAY && H5Tget_array_ndims(m) == 1 && H5Tget_array_dims2(m, &d) == 1 &&
                 d == 3 && base >= 0 && H5Tget_class(base) == H5T_INTEGER;
            if (base >= 0) H5Tclose(base);
            break;
        }
        case K_STR:
            ok = cls == H5T_STRING;
            vl = ok && H5Tis_variable_str(m) != 0;
            break;
        }
        if (m >= 0) H5Tclose(m);
        if (vl)
            return dsa_fail(io->e, DSA_EXIT_RUNTIME, "%s: %s/%s: column '%s' " VL_REFUSED,
                            io->file, where, name, c->name);
        if (!ok)
            return dsa_fail(io->e, DSA_EXIT_RUNTIME, "%s: %s/%s: column '%s' has the wrong type",
                            io->file, where, name, c->name);
    }
    return 0;
}

/* Compound dataset loc/name -> a new array of *n structs of `stride` bytes (NULL when empty). */
static int read_table(hid_t loc, const char *where, const char *name, const table *t,
                      size_t stride, void **out, size_t *n_out, const h5io *io)
{
    row_layout lay;
    hid_t ds = H5I_INVALID_HID, sp = H5I_INVALID_HID, ft = H5I_INVALID_HID, mt = H5I_INVALID_HID;
    hsize_t n = 0, block;
    unsigned char *rows = NULL;
    char *objs = NULL;
    int rc;

    *out = NULL;
    *n_out = 0;
    if ((rc = open_1d(loc, where, name, &ds, &sp, &n, io))) goto done;
    if ((ft = H5Dget_type(ds)) < 0) {
        rc = io_fail(io, where, name);
        goto done;
    }
    if ((rc = check_columns(ft, t, where, name, io)) ||
        (rc = check_storage(ds, ft, n, where, name, io)) ||
        (rc = check_chunks(ds, n, H5Tget_size(ft), where, name, io)))
        goto done;
    if ((mt = new_compound(t, 0, ft, &lay)) < 0) {
        rc = io_fail(io, where, name);
        goto done;
    }
    if (n == 0) goto done;
    block = io_rows(ds, n, lay.size);
    if (n > SIZE_MAX / stride || !(rows = calloc(block, lay.size)) || !(objs = calloc(n, stride))) {
        rc = io_oom(io);
        goto done;
    }
    for (hsize_t first = 0; first < n; first += block) {
        hsize_t count = n - first < block ? n - first : block;
        hid_t msp = select_rows(sp, first, count);
        if (msp < 0 || H5Dread(ds, mt, msp, sp, H5P_DEFAULT, rows) < 0)
            rc = io_fail(io, where, name);
        if (msp >= 0) H5Sclose(msp);
        if (rc) goto done;
        for (hsize_t i = 0; i < count; i++) {
            int bad = unpack_row(t, &lay, rows + i * lay.size, objs + (first + i) * stride);
            if (bad >= 0) {
                rc = dsa_fail(io->e, DSA_EXIT_RUNTIME,
                              "%s: %s/%s row %llu: %s is out of range (corrupt)", io->file, where,
                              name, (unsigned long long)(first + i), t->cols[bad].name);
                goto done;
            }
        }
    }
    *out = objs;
    *n_out = n;
    objs = NULL;
done:
    free(objs);
    free(rows);
    if (mt >= 0) H5Tclose(mt);
    if (ft >= 0) H5Tclose(ft);
    if (sp >= 0) H5Sclose(sp);
    if (ds >= 0) H5Dclose(ds);
    return rc;
}

/* A 1-D double dataset loc/name (samples, samples_traced), units "ms". */
static int write_samples(hid_t loc, const char *where, const char *name, const double *v, size_t n,
                         const h5io *io)
{
    hsize_t dims = n;
    hid_t sp = H5Screate_simple(1, &dims, NULL), ds = H5I_INVALID_HID;
    char dpath[64];
    int rc = 0;
    snprintf(dpath, sizeof dpath, "%s/%s", where, name);
    if (sp < 0 ||
        (ds = H5Dcreate2(loc, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT)) < 0 ||
        (n && H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0))
        rc = io_fail(io, where, name);
    else
        rc = write_attr(ds, dpath, "units", K_STR, "ms", sizeof "ms", io);
    if (ds >= 0) H5Dclose(ds);
    if (sp >= 0) H5Sclose(sp);
    return rc;
}

static int read_samples(hid_t loc, const char *where, const char *name, double **out, size_t *n_out,
                        const h5io *io)
{
    hid_t ds = H5I_INVALID_HID, sp = H5I_INVALID_HID, ft = H5I_INVALID_HID;
    hsize_t n = 0;
    double *v = NULL;
    int rc;
    *out = NULL;
    *n_out = 0;
    if ((rc = open_1d(loc, where, name, &ds, &sp, &n, io))) goto done;
    if ((ft = H5Dget_type(ds)) < 0) {
        rc = io_fail(io, where, name);
        goto done;
    }
    if (H5Tget_class(ft) != H5T_FLOAT) {
        rc = dsa_fail(io->e, DSA_EXIT_RUNTIME, "%s: %s/%s is not floating point", io->file,
                      where, name);
        goto done;
    }
    if ((rc = check_storage(ds, ft, n, where, name, io))) goto done;
    if (n == 0) goto done;
    if (n > SIZE_MAX / sizeof *v || !(v = malloc(n * sizeof *v))) {
        rc = io_oom(io);
        goto done;
    }
    if (H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
        rc = io_fail(io, where, name);
        goto done;
    }
    *out = v;
    *n_out = n;
    v = NULL;
done:
    free(v);
    if (ft >= 0) H5Tclose(ft);
    if (sp >= 0) H5Sclose(sp);
    if (ds >= 0) H5Dclose(ds);
    return rc;
}

/* ---- groups ----------------------------------------------------------------------------- */

/* Members of dsa_model that /model carries besides the field table (each written only when the
 * table has no field of that key). */
static const col model_extra_cols[] = {
    COL(dsa_model, name, K_STR, NULL),
    COL(dsa_model, assumptions, K_STR, NULL),
};
static const table model_extra_table = TABLE(model_extra_cols);

static int is_model_field(const char *key)
{
    for (int i = 0; i < dsa_model_field_count(); i++)
        if (strcmp(dsa_model_field_at(i)->key, key) == 0) return 1;
    return 0;
}

/* /model: every field of the model's field table as its text, so there is no per-field code. */
static int write_model(hid_t file, const dsa_model *m, const h5io *io)
{
    hid_t g = H5Gcreate2(file, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    char buf[1024];
    int rc = 0;
    if (g < 0) return io_fail(io, "", "model");
    for (int i = 0; rc == 0 && i < dsa_model_field_count(); i++) {
        dsa_model_field_format(m, i, buf, (int)sizeof buf);
        rc = write_attr(g, "/model", dsa_model_field_at(i)->key, K_STR, buf, sizeof buf, io);
    }
    for (int i = 0; rc == 0 && i < model_extra_table.n; i++) {
        const col *c = &model_extra_table.cols[i];
        if (!is_model_field(c->name))
            rc = write_attr(g, "/model", c->name, c->kind, (const char *)m + c->off, c->size,
                           io);
    }
    H5Gclose(g);
    return rc;
}

static int read_model(hid_t file, dsa_model *m, const h5io *io)
{
    hid_t g = H5Gopen2(file, "model", H5P_DEFAULT);
    char buf[1024];
    int rc;
    if (g < 0) return io_fail(io, "", "model");
    memset(m, 0, sizeof *m);
    rc = read_attrs(g, "/model", &model_extra_table, m, io);
    for (int i = 0; rc == 0 && i < dsa_model_field_count(); i++) {
        const dsa_model_field *f = dsa_model_field_at(i);
        htri_t exists = H5Aexists(g, f->key);
        dsa_err sub;
        if (exists < 0) {
            rc = io_fail(io, "/model", f->key);
            break;
        }
        if (!exists) continue; /* written by a build without this field: stays zero */
        buf[0] = '\0';
        if ((rc = read_attr(g, "/model", f->key, K_STR, buf, sizeof buf, io))) break;
        if (f->type == DSA_FIELD_STRING && buf[0] == '\0') continue; /* already "" */
        if (dsa_model_set(m, f->key, buf, &sub) != 0)
            rc = dsa_fail(io->e, DSA_EXIT_RUNTIME, "%s: /model/%s: %s", io->file, f->key, sub.msg);
    }
    H5Gclose(g);
    return rc;
}

static int write_device(hid_t file, const dsa_device_info *d, const h5io *io)
{
    hid_t g = H5Gcreate2(file, "device", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc;
    if (g < 0) return io_fail(io, "", "device");
    rc = write_attrs(g, "/device", &device_table, d, io);
    H5Gclose(g);
    return rc;
}

static int read_device(hid_t file, dsa_device_info *d, const h5io *io)
{
    hid_t g = H5Gopen2(file, "device", H5P_DEFAULT);
    int rc;
    if (g < 0) return io_fail(io, "", "device");
    rc = read_attrs(g, "/device", &device_table, d, io);
    H5Gclose(g);
    return rc;
}

static int write_points(hid_t file, const dsa_run *run, const h5io *io)
{
    hid_t g = H5Gcreate2(file, "points", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    size_t n = run->points && run->n_points > 0 ? (size_t)run->n_points : 0;
    int rc;
    if (g < 0) return io_fail(io, "", "points");
    rc = write_table(g, "/points", "table", &point_table, run->points, n, sizeof(dsa_point), io);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        const dsa_point *p = &run->points[i];
        char name[16], where[32];
        size_t nc = p->comps && p->n_comps > 0 ? (size_t)p->n_comps : 0;
        size_t nk = p->kernels ? p->n_kernels : 0;
        size_t ns = p->samples && p->reps > 0 ? (size_t)p->reps : 0;
        hid_t pg;
        snprintf(name, sizeof name, "%d", (int)p->id);
        snprintf(where, sizeof where, "/points/%d", (int)p->id);
        if ((pg = H5Gcreate2(g, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0) {
            rc = io_fail(io, "/points", name);
            break;
        }
        rc = write_table(pg, where, "components", &comp_table, p->comps, nc, sizeof *p->comps, io);
        if (rc == 0)
            rc = write_table(pg, where, "kernels", &kernel_table, p->kernels, nk,
                             sizeof *p->kernels, io);
        if (rc == 0) rc = write_samples(pg, where, "samples", p->samples, ns, io);
        if (rc == 0)
            rc = write_samples(pg, where, "samples_traced", p->samples_traced,
                               p->samples_traced && p->traced_reps > 0 ? (size_t)p->traced_reps : 0, io);
        H5Gclose(pg);
    }
    H5Gclose(g);
    return rc;
}

static int read_point_arrays(hid_t g, dsa_point *p, const h5io *io)
{
    char name[16], where[32];
    void *v;
    size_t n;
    hid_t pg;
    int rc;
    snprintf(name, sizeof name, "%d", (int)p->id);
    snprintf(where, sizeof where, "/points/%d", (int)p->id);
    if ((pg = H5Gopen2(g, name, H5P_DEFAULT)) < 0) return io_fail(io, "/points", name);
    rc = read_table(pg, where, "components", &comp_table, sizeof *p->comps, &v, &n, io);
    if (rc == 0) {
        p->comps = v;
        p->n_comps = (int)n;
        if (n > INT_MAX)
            rc = dsa_fail(io->e, DSA_EXIT_RUNTIME, "%s: %s/components is too long", io->file,
                          where);
    }
    if (rc == 0)
        rc = read_table(pg, where, "kernels", &kernel_table, sizeof *p->kernels, &v, &n, io);
    if (rc == 0) {
        p->kernels = v;
        p->n_kernels = n;
        rc = read_samples(pg, where, "samples", &p->samples, &n, io);
    }
    if (rc == 0 && n != 0 && n != (size_t)(p->reps > 0 ? p->reps : 0))
        rc = dsa_fail(io->e, DSA_EXIT_RUNTIME, "%s: %s/samples has %zu values but reps = %d",
                      io->file, where, n, (int)p->reps);
    /* samples_traced: absent in files written before tracing was measured */
    htri_t traced = rc == 0 ? H5Lexists(pg, "samples_traced", H5P_DEFAULT) : 0;
    if (traced < 0) rc = io_fail(io, where, "samples_traced");
    n = 0;
    if (rc == 0 && traced > 0) rc = read_samples(pg, where, "samples_traced", &p->samples_traced, &n, io);
    if (rc == 0 && n != 0 && n != (size_t)(p->traced_reps > 0 ? p->traced_reps : 0))
        rc = dsa_fail(io->e, DSA_EXIT_RUNTIME,
                      "%s: %s/samples_traced has %zu values but traced_reps = %d", io->file, where,
                      n, (int)p->traced_reps);
    H5Gclose(pg);
    return rc;
}

static int read_points(hid_t file, dsa_run *run, const h5io *io)
{
    hid_t g = H5Gopen2(file, "points", H5P_DEFAULT);
    void *v;
    size_t n;
    int rc;
    if (g < 0) return io_fail(io, "", "points");
    rc = read_table(g, "/points", "table", &point_table, sizeof(dsa_point), &v, &n, io);
    if (rc == 0 && n > INT_MAX) {
        free(v);
        rc = dsa_fail(io->e, DSA_EXIT_RUNTIME, "%s: /points/table is too long", io->file);
    }
    if (rc == 0) {
        run->points = v;
        run->n_points = (int)n;
    }
    for (int i = 0; rc == 0 && i < run->n_points; i++) rc = read_point_arrays(g, &run->points[i], io);
    H5Gclose(g);
    return rc;
}

/* ---- files ------------------------------------------------------------------------------ */

static int write_run(hid_t file, const dsa_run *run, const h5io *io)
{
    int rc = write_attr(file, "", "schema", K_STR, DSA_SCHEMA, sizeof DSA_SCHEMA, io);
    if (rc == 0) rc = write_attrs(file, "", &run_table, run, io);
    if (rc == 0) rc = write_device(file, &run->dev, io);
    if (rc == 0) rc = write_model(file, &run->model, io);
    if (rc == 0) rc = write_points(file, run, io);
    return rc;
}

static int read_run(hid_t file, dsa_run *run, const h5io *io)
{
    htri_t has_schema = H5Aexists(file, "schema");
    hid_t a;
    int r, rc;
    if (has_schema < 0) return io_fail(io, "", "schema");
    if (!has_schema)
        return dsa_fail(io->e, DSA_EXIT_RUNTIME, "%s: not a dsa-bench report (no 'schema' attribute)",
                        io->file);
    if ((a = H5Aopen(file, "schema", H5P_DEFAULT)) < 0) return io_fail(io, "", "schema");
    r = read_str_attr(a, run->schema, sizeof run->schema);
    H5Aclose(a);
    if (r == -2)
        return dsa_fail(io->e, DSA_EXIT_RUNTIME,
                        "%s: not a dsa-bench report ('schema' is not a string)", io->file);
    if (r == -3) return dsa_fail(io->e, DSA_EXIT_RUNTIME, "%s: /schema " VL_REFUSED, io->file);
    if (r) return io_fail(io, "", "schema");
    if (strcmp(run->schema, DSA_SCHEMA) != 0)
        return dsa_fail(io->e, DSA_EXIT_RUNTIME,
                        "%s: schema '%s' is not supported (this build reads %s)", io->file,
                        run->schema, DSA_SCHEMA);
    rc = read_attrs(file, "", &run_table, run, io);
    if (rc == 0) rc = read_device(file, &run->dev, io);
    if (rc == 0) rc = read_model(file, &run->model, io);
    if (rc == 0) rc = read_points(file, run, io);
    return rc;
}

/* File access: closing the file closes everything still open in it (nothing should be). Files
 * are written in the HDF5 1.8 format, the first with checksummed metadata (object headers, heaps
 * and B-trees of links and attributes), so most corruption is detected rather than read back as
 * values; every HDF5 >= 1.8 and h5py reads it. Its chunk indexes are still the old, unchecksummed
 * v1 B-trees (the 1.10 format has checksummed ones, but HDF5 1.8 cannot read it): check_chunks. */
static hid_t new_fapl(void)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && (H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0
#if H5_VERSION_GE(1, 10, 2)
                      || H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18) < 0
#endif
                      )) {
        H5Pclose(fapl);
        fapl = H5I_INVALID_HID;
    }
    return fapl;
}

/* Flushes the closed file to the disk before the rename makes it visible. */
static int sync_file(const char *path, dsa_err *e)
{
    int fd = open(path, O_RDWR);
    if (fd < 0 || fsync(fd) != 0) {
        int err = errno;
        if (fd >= 0) close(fd);
        return dsa_fail(e, DSA_EXIT_RUNTIME, "cannot write %s: %s", path, strerror(err));
    }
    if (close(fd) != 0) return dsa_fail(e, DSA_EXIT_RUNTIME, "cannot write %s: %s", path, strerror(errno));
    return 0;
}

int dsa_h5_write(const char *path, const dsa_run *run, dsa_err *e)
{
    size_t len = strlen(path);
    char *tmp = malloc(len + sizeof ".tmp");
    char detail[200];
    H5E_auto2_t old_func = NULL;
    void *old_data = NULL;
    hid_t fapl, file = H5I_INVALID_HID;
    int fd, rc = 0;

    if (!tmp) return dsa_fail(e, DSA_EXIT_RUNTIME, "cannot write %s: out of memory", path);
    memcpy(tmp, path, len);
    memcpy(tmp + len, ".tmp", sizeof ".tmp");
    h5io io = {tmp, "write", e};

    /* Create it ourselves first, so a bad directory or permission is reported as the OS says. */
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666)) < 0) {
        rc = dsa_fail(e, DSA_EXIT_RUNTIME, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return rc;
    }
    close(fd);

    H5Eget_auto2(H5E_DEFAULT, &old_func, &old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    fapl = new_fapl();
    if (fapl < 0 || (file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl)) < 0) {
        h5_detail(detail);
        rc = dsa_fail(e, DSA_EXIT_RUNTIME, "cannot create %s: %s", tmp,
                      detail[0] ? detail : "HDF5 error");
    } else {
        rc = write_run(file, run, &io);
    }
    if (file >= 0 && H5Fclose(file) < 0 && rc == 0) {
        h5_detail(detail);
        rc = dsa_fail(e, DSA_EXIT_RUNTIME, "cannot write %s: %s", tmp,
                      detail[0] ? detail : "closing failed");
    }
    if (fapl >= 0) H5Pclose(fapl);
    if (rc == 0) rc = sync_file(tmp, e);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = dsa_fail(e, DSA_EXIT_RUNTIME, "cannot rename %s to %s: %s", tmp, path,
                      strerror(errno));
    if (rc) remove(tmp);
    H5Eset_auto2(H5E_DEFAULT, old_func, old_data);
    free(tmp);
    return rc;
}

int dsa_h5_read(const char *path, dsa_run *run, dsa_err *e)
{
    h5io io = {path, "read", e};
    H5E_auto2_t old_func = NULL;
    void *old_data = NULL;
    struct stat st;
    hid_t fapl, file = H5I_INVALID_HID;
    int fd, is_dir, rc;

    memset(run, 0, sizeof *run);
    if ((fd = open(path, O_RDONLY)) < 0)
        return dsa_fail(e, DSA_EXIT_RUNTIME, "cannot open %s: %s", path, strerror(errno));
    is_dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    close(fd);
    if (is_dir) return dsa_fail(e, DSA_EXIT_RUNTIME, "%s: is a directory, not a report", path);

    H5Eget_auto2(H5E_DEFAULT, &old_func, &old_data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    fapl = new_fapl();
    if (fapl < 0)
        rc = dsa_fail(e, DSA_EXIT_RUNTIME, "%s: cannot set up HDF5 file access", path);
    else if ((file = H5Fopen(path, H5F_ACC_RDONLY, fapl)) < 0)
        rc = dsa_fail(e, DSA_EXIT_RUNTIME, "%s: not a readable HDF5 file (truncated or corrupt)",
                      path);
    else
        rc = read_run(file, run, &io);
    if (file >= 0 && H5Fclose(file) < 0 && rc == 0)
        rc = dsa_fail(e, DSA_EXIT_RUNTIME, "%s: closing the file failed", path);
    if (fapl >= 0) H5Pclose(fapl);
    if (rc) dsa_run_free(run);
    /* After a failed read HDF5's printing stays off. HDF5 1.10.8 leaks an object header when a
     * damaged one fails its checksum (H5O__cache_get_final_load_size), and at exit it would then
     * print "HDF5: infinite loop closing library" and a line of interface names below our
     * one-line error; it prints that only while automatic error printing is on. */
    if (rc == 0) H5Eset_auto2(H5E_DEFAULT, old_func, old_data);
    return rc;
}
