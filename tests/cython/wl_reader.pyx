# cython: language_level=3
"""A small .wl reader built on weightless.c_api (tests/test_cython.py cythonizes it against the
installed package): opens a file or a buffer, lists its tensors and decodes them into numpy
arrays it allocates, with the C calls made inside `with nogil:`."""

import os

import numpy as np

from libc.stdint cimport uint64_t
from libc.stdlib cimport free, malloc

from weightless.c_api cimport (
    WL_OK,
    wl_close,
    wl_decode_tensor,
    wl_model,
    wl_open_buffer_ex,
    wl_open_file_ex,
    wl_status_name,
    wl_tensor_count,
    wl_tensor_dtype,
    wl_tensor_name,
    wl_tensor_nbytes,
    wl_tensor_ndim,
    wl_tensor_shape,
)


class WlError(Exception):
    """A C API error: .status is its WL_ERR_* code, the message the C API's."""

    def __init__(self, int status, str message):
        super().__init__(message)
        self.status = status
        self.status_name = wl_status_name(status).decode()


cdef class Reader:
    cdef wl_model* model

    def __cinit__(self, source):
        """source: a path (str or os.PathLike) or the bytes of a .wl file."""
        cdef char err[512]
        cdef int status
        cdef bytes path
        cdef const char* c_path
        cdef const unsigned char[::1] data
        cdef const void* c_data = NULL
        cdef size_t size
        err[0] = 0
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = source
            size = data.shape[0]
            if size:
                c_data = &data[0]
            with nogil:
                status = wl_open_buffer_ex(c_data, size, &self.model, err, sizeof(err))
        else:
            path = os.fsencode(source)
            c_path = path
            with nogil:
                status = wl_open_file_ex(c_path, &self.model, err, sizeof(err))
        if status != WL_OK:
            raise WlError(status, err.decode("utf-8", "replace"))

    def __dealloc__(self):
        wl_close(self.model)

    def __len__(self):
        return wl_tensor_count(self.model)

    def names(self):
        return [wl_tensor_name(self.model, i).decode() for i in range(wl_tensor_count(self.model))]

    cdef _empty(self, size_t i):
        cdef const uint64_t* shape = wl_tensor_shape(self.model, i)
        dims = tuple(shape[d] for d in range(wl_tensor_ndim(self.model, i)))
        return np.empty(dims, dtype=wl_tensor_dtype(self.model, i).decode())

    def decode(self, size_t i, unsigned threads=0):
        """Tensor i as a new numpy array."""
        if i >= wl_tensor_count(self.model):
            raise IndexError(f"tensor {i} of {wl_tensor_count(self.model)}")
        out = self._empty(i)
        cdef unsigned char[::1] view = out.reshape(-1).view(np.uint8)
        cdef void* c_out = &view[0] if view.shape[0] else NULL
        cdef size_t nbytes = view.shape[0]
        cdef char err[512]
        cdef int status
        with nogil:
            status = wl_decode_tensor(self.model, i, c_out, nbytes, threads, err, sizeof(err))
        if status != WL_OK:
            raise WlError(status, err.decode("utf-8", "replace"))
        return out

    def decode_all(self, unsigned threads=0):
        """Every tensor, {name: array}: the arrays are allocated first, then decoded in one loop
        without the GIL or a Python object."""
        cdef size_t n = wl_tensor_count(self.model), i
        cdef void** outs = <void**>malloc(n * sizeof(void*) + 1)
        cdef unsigned char[::1] view
        cdef char err[512]
        cdef int status = WL_OK
        if outs == NULL:
            raise MemoryError()
        arrays = {}
        try:
            for i in range(n):
                out = self._empty(i)
                view = out.reshape(-1).view(np.uint8)
                outs[i] = &view[0] if view.shape[0] else NULL
                arrays[wl_tensor_name(self.model, i).decode()] = out
            with nogil:
                for i in range(n):
                    status = wl_decode_tensor(self.model, i, outs[i], wl_tensor_nbytes(self.model, i), threads,
                                              err, sizeof(err))
                    if status != WL_OK:
                        break
            if status != WL_OK:
                raise WlError(status, err.decode("utf-8", "replace"))
            return arrays
        finally:
            free(outs)
