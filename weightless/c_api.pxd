# cython: language_level=3
# The C API of weightless (weightless/include/weightless_c.h) for Cython: read and decode a .wl
# model container without Python objects, so a decode loop can run inside `with nogil:`.
#
#     from weightless.c_api cimport wl_model, wl_open_file, wl_decode_tensor, wl_close, WL_OK
#
# Build the extension against the installed package (see weightless.get_include()):
#
#     Extension("m", ["m.pyx"], include_dirs=[weightless.get_include()],
#               library_dirs=weightless.get_library_dirs(),
#               runtime_library_dirs=weightless.get_library_dirs(),
#               libraries=weightless.get_libraries())
#
# Every function that can fail returns a status (WL_OK = 0, else a WL_ERR_* code) and writes a
# one-line, NUL-terminated message to err (at most errlen bytes). A wl_model is immutable after
# opening: decoding from several threads at once is safe. The header's comments are the reference.

from libc.stdint cimport uint64_t


cdef extern from "weightless_c.h" nogil:
    ctypedef struct wl_model:
        pass

    enum:
        WL_OK
        WL_ERR_ARGUMENT
        WL_ERR_IO
        WL_ERR_FORMAT
        WL_ERR_UNSUPPORTED
        WL_ERR_MEMORY
        WL_ERR_INTERNAL

    enum:
        WL_KIND_RAW
        WL_KIND_ENCODED
        WL_KIND_EXACT
        WL_KIND_FLOAT16

    # Open a .wl file or an in-memory image (copied); NULL on error (message in err).
    wl_model* wl_open_file(const char* path, char* err, size_t errlen)
    wl_model* wl_open_buffer(const void* data, size_t size, char* err, size_t errlen)
    # The same, returning the status; out[0] is set to the model or NULL.
    int wl_open_file_ex(const char* path, wl_model** out, char* err, size_t errlen)
    int wl_open_buffer_ex(const void* data, size_t size, wl_model** out, char* err, size_t errlen)
    # Frees the model; NULL is allowed.
    void wl_close(wl_model* model)

    # Tensors in file order; for a bad index: 0 / NULL / -1. Strings and arrays live as long as
    # the model.
    size_t wl_tensor_count(const wl_model* model)
    const char* wl_tensor_name(const wl_model* model, size_t index)
    const char* wl_tensor_dtype(const wl_model* model, size_t index)  # numpy names: "float32", ...
    int wl_tensor_kind(const wl_model* model, size_t index)  # WL_KIND_RAW / WL_KIND_ENCODED / WL_KIND_EXACT / WL_KIND_FLOAT16
    size_t wl_tensor_ndim(const wl_model* model, size_t index)
    const uint64_t* wl_tensor_shape(const wl_model* model, size_t index)  # NULL for a scalar
    uint64_t wl_tensor_numel(const wl_model* model, size_t index)
    size_t wl_tensor_itemsize(const wl_model* model, size_t index)
    size_t wl_tensor_nbytes(const wl_model* model, size_t index)  # SIZE_MAX if it does not fit
    uint64_t wl_tensor_stored_bytes(const wl_model* model, size_t index)
    int wl_find_tensor(const wl_model* model, const char* name, size_t* index)

    # Decode tensor `index` into out (C order, its dtype, little-endian); out_bytes must be at
    # least wl_tensor_nbytes. threads: 0 = all hardware threads (the output does not depend on it).
    int wl_decode_tensor(const wl_model* model, size_t index, void* out, size_t out_bytes, unsigned threads,
                         char* err, size_t errlen)

    # A short name for a status code ("ok", "format error", ...).
    const char* wl_status_name(int status)
