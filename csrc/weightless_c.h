/* weightless C API: read and decode a .wl model container, format version 3 (docs/FORMAT.md,
 * "The model container, version 3"), without Python. A thin layer over csrc/model/container.h,
 * the one reader of the format (the Python package uses it too).
 *
 *   char err[256];
 *   wl_model* m = wl_open_file("model.wl", err, sizeof err);
 *   if (!m) { fprintf(stderr, "%s\n", err); return 1; }
 *   for (size_t i = 0; i < wl_tensor_count(m); ++i) {
 *       size_t bytes = wl_tensor_nbytes(m, i);
 *       void* buf = malloc(bytes);
 *       if (wl_decode_tensor(m, i, buf, bytes, 0, err, sizeof err) != WL_OK) ...
 *   }
 *   wl_close(m);
 *
 * Every function that can fail returns a status (WL_OK = 0, else a WL_ERR_* code) and writes a
 * one-line, NUL-terminated message to err (truncated to errlen bytes; err may be NULL when
 * errlen is 0). Nothing aborts on malformed input, and nothing reads outside the file's bytes.
 *
 * Opening a file reads its trailer and directory (not the payloads) and checks them: lengths
 * against the file's size, the directory CRC-32, names, dtypes, codecs, shapes. Decoding a
 * tensor reads its payload and checks it (CRC-32, the codec's own checks) before writing the
 * output. Version 1 files (JSON header, written before version 3) get WL_ERR_UNSUPPORTED:
 * the Python package still reads them. Decoded data is in the host's byte order, which must be
 * little-endian (every supported target is).
 *
 * A wl_model is immutable after opening: decoding from several threads at once is safe.
 */
#ifndef WEIGHTLESS_C_H
#define WEIGHTLESS_C_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wl_model wl_model;

enum {
    WL_OK = 0,
    WL_ERR_ARGUMENT = 1,    /* bad argument: NULL pointer, index out of range, buffer too small */
    WL_ERR_IO = 2,          /* the file cannot be opened or read (missing, a directory, ...) */
    WL_ERR_FORMAT = 3,      /* malformed, truncated or corrupted data */
    WL_ERR_UNSUPPORTED = 4, /* a valid file this library cannot decode (e.g. a newer version) */
    WL_ERR_MEMORY = 5,      /* out of memory */
    WL_ERR_INTERNAL = 6     /* anything else (e.g. a thread could not be started) */
};

/* How a tensor is stored (its codec id in the file): exactly as it is, in a Bloomier filter
 * (lossy: false positives), by the exact codec (the pruned, clustered tensor, losslessly), or
 * as IEEE half floats (a float tensor rounded to float16: lossy; written only when asked). */
enum { WL_KIND_RAW = 0, WL_KIND_ENCODED = 1, WL_KIND_EXACT = 2, WL_KIND_FLOAT16 = 3 };

/* Open a .wl file; NULL on error (message in err). */
wl_model* wl_open_file(const char* path, char* err, size_t errlen);
/* Open a .wl image in memory; the bytes are copied, so the buffer may be freed afterwards. */
wl_model* wl_open_buffer(const void* data, size_t size, char* err, size_t errlen);
/* The same, returning the status; *out is set to the model or NULL. */
int wl_open_file_ex(const char* path, wl_model** out, char* err, size_t errlen);
int wl_open_buffer_ex(const void* data, size_t size, wl_model** out, char* err, size_t errlen);
/* Frees the model; NULL is allowed. */
void wl_close(wl_model* model);

/* Tensors, in file order. For an index out of range (or a NULL model) the accessors return
 * 0 / NULL / -1. Returned strings and arrays live as long as the model. */
size_t wl_tensor_count(const wl_model* model);
const char* wl_tensor_name(const wl_model* model, size_t index);
/* "bool", "int8", ..., "float64", "bfloat16" (numpy / ml_dtypes names): the dtype wl_decode_tensor writes. */
const char* wl_tensor_dtype(const wl_model* model, size_t index);
/* WL_KIND_RAW, WL_KIND_ENCODED, WL_KIND_EXACT or WL_KIND_FLOAT16; -1 for a bad index. */
int wl_tensor_kind(const wl_model* model, size_t index);
size_t wl_tensor_ndim(const wl_model* model, size_t index);
/* ndim dimensions (NULL for a scalar or a bad index). */
const uint64_t* wl_tensor_shape(const wl_model* model, size_t index);
/* Number of elements (product of the shape; 1 for a scalar). */
uint64_t wl_tensor_numel(const wl_model* model, size_t index);
/* Bytes per element of the decoded dtype (1, 2, 4 or 8); 0 for a bad index. */
size_t wl_tensor_itemsize(const wl_model* model, size_t index);
/* Bytes wl_decode_tensor writes: numel * itemsize; SIZE_MAX if that does not fit in a size_t. */
size_t wl_tensor_nbytes(const wl_model* model, size_t index);
/* Bytes the tensor takes in the file (its payload). */
uint64_t wl_tensor_stored_bytes(const wl_model* model, size_t index);
/* Index of the tensor called name; WL_ERR_ARGUMENT if there is none. */
int wl_find_tensor(const wl_model* model, const char* name, size_t* index);

/* Decode tensor `index` into out (C order, its dtype, host = little-endian byte order).
 * out_bytes must be at least wl_tensor_nbytes. threads: decoding threads for an encoded tensor,
 * 0 = all hardware threads; the output does not depend on it. An encoded, exact or float16
 * tensor decodes to float32 and is converted to its dtype (float16, bfloat16: round to nearest
 * even; float64). */
int wl_decode_tensor(const wl_model* model, size_t index, void* out, size_t out_bytes, unsigned threads, char* err,
                     size_t errlen);

/* A short name for a status code ("ok", "format error", ...). */
const char* wl_status_name(int status);

#ifdef __cplusplus
}
#endif

#endif /* WEIGHTLESS_C_H */
