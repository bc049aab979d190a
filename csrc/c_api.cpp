// The C API (weightless_c.h): a thin layer over the one .wl reader (csrc/model/container.h),
// which does every check; this file turns its exceptions into status codes and messages.
#include "weightless_c.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>

#include "model/container.h"

namespace model = wl::model;

struct wl_model {
    std::string source;  // the path, or "<buffer>"
    std::unique_ptr<model::Reader> reader;
};

namespace {

struct Error {
    int code;
    std::string message;
};

[[noreturn]] void fail(int code, std::string message) { throw Error{code, std::move(message)}; }

void set_error(char* err, size_t errlen, const std::string& message) {
    if (!err || errlen == 0) return;
    size_t n = std::min(message.size(), errlen - 1);
    std::memcpy(err, message.data(), n);
    err[n] = '\0';
}

// Runs fn for the model's source (a path or "<buffer>"), mapping the reader's errors to statuses.
template <class Fn>
int guarded(char* err, size_t errlen, const std::string& source, Fn&& fn) {
    try {
        fn();
        set_error(err, errlen, "");
        return WL_OK;
    } catch (const Error& e) {
        set_error(err, errlen, e.message);
        return e.code;
    } catch (const model::FormatError& e) {
        set_error(err, errlen, source + ": malformed .wl file: " + e.what());
        return WL_ERR_FORMAT;
    } catch (const model::UnsupportedError& e) {
        set_error(err, errlen, source + ": " + e.what());
        return WL_ERR_UNSUPPORTED;
    } catch (const model::IoError& e) {
        set_error(err, errlen, source + ": " + e.what());
        return WL_ERR_IO;
    } catch (const std::invalid_argument& e) {  // the caller's: a small buffer, a bad WEIGHTLESS_ISA
        set_error(err, errlen, e.what());
        return WL_ERR_ARGUMENT;
    } catch (const std::bad_alloc&) {
        set_error(err, errlen, "out of memory");
        return WL_ERR_MEMORY;
    } catch (const std::exception& e) {
        set_error(err, errlen, std::string("internal error: ") + e.what());
        return WL_ERR_INTERNAL;
    } catch (...) {
        set_error(err, errlen, "internal error");
        return WL_ERR_INTERNAL;
    }
}

const model::Entry* entry(const wl_model* m, size_t index) {
    return m && index < m->reader->entries().size() ? &m->reader->entries()[index] : nullptr;
}

int open_model(wl_model** out, char* err, size_t errlen, const std::string& source,
               std::shared_ptr<const model::Source> (*make)(const void*, size_t, const char*), const void* data,
               size_t size, const char* path) {
    if (out) *out = nullptr;
    wl_model* result = nullptr;
    int status = guarded(err, errlen, source, [&] {
        if (!out) fail(WL_ERR_ARGUMENT, "wl_open: out is NULL");
        std::unique_ptr<wl_model> m(new wl_model);
        m->source = source;
        m->reader.reset(new model::Reader(make(data, size, path)));
        result = m.release();
    });
    if (out) *out = result;
    return status;
}

}  // namespace

extern "C" {

int wl_open_buffer_ex(const void* data, size_t size, wl_model** out, char* err, size_t errlen) {
    if (!data && size) {
        if (out) *out = nullptr;
        set_error(err, errlen, "wl_open_buffer: data is NULL");
        return WL_ERR_ARGUMENT;
    }
    auto make = [](const void* d, size_t n, const char*) {
        const uint8_t* p = static_cast<const uint8_t*>(d);
        return model::memory_source(n ? std::vector<uint8_t>(p, p + n) : std::vector<uint8_t>());
    };
    return open_model(out, err, errlen, "<buffer>", make, data, size, nullptr);
}

int wl_open_file_ex(const char* path, wl_model** out, char* err, size_t errlen) {
    if (!path) {
        if (out) *out = nullptr;
        set_error(err, errlen, "wl_open_file: path is NULL");
        return WL_ERR_ARGUMENT;
    }
    auto make = [](const void*, size_t, const char* p) { return model::file_source(p); };
    return open_model(out, err, errlen, path, make, nullptr, 0, path);
}

wl_model* wl_open_file(const char* path, char* err, size_t errlen) {
    wl_model* m = nullptr;
    wl_open_file_ex(path, &m, err, errlen);
    return m;
}

wl_model* wl_open_buffer(const void* data, size_t size, char* err, size_t errlen) {
    wl_model* m = nullptr;
    wl_open_buffer_ex(data, size, &m, err, errlen);
    return m;
}

void wl_close(wl_model* model) { delete model; }

size_t wl_tensor_count(const wl_model* model) { return model ? model->reader->entries().size() : 0; }

const char* wl_tensor_name(const wl_model* model, size_t index) {
    const model::Entry* t = entry(model, index);
    return t ? t->name.c_str() : nullptr;
}

const char* wl_tensor_dtype(const wl_model* model, size_t index) {
    const model::Entry* t = entry(model, index);
    return t ? model::dtype_name(t->dtype) : nullptr;
}

int wl_tensor_kind(const wl_model* model, size_t index) {
    const model::Entry* t = entry(model, index);
    return t ? int(t->codec) : -1;  // the WL_KIND_* values are the codec ids
}

size_t wl_tensor_ndim(const wl_model* model, size_t index) {
    const model::Entry* t = entry(model, index);
    return t ? t->shape.size() : 0;
}

const uint64_t* wl_tensor_shape(const wl_model* model, size_t index) {
    const model::Entry* t = entry(model, index);
    return t && !t->shape.empty() ? t->shape.data() : nullptr;
}

uint64_t wl_tensor_numel(const wl_model* model, size_t index) {
    const model::Entry* t = entry(model, index);
    return t ? t->numel : 0;
}

size_t wl_tensor_itemsize(const wl_model* model, size_t index) {
    const model::Entry* t = entry(model, index);
    return t ? model::dtype_itemsize(t->dtype) : 0;
}

size_t wl_tensor_nbytes(const wl_model* model, size_t index) {
    const model::Entry* t = entry(model, index);
    if (!t) return 0;
    const uint64_t n = model->reader->decoded_bytes(index);
    return n > std::numeric_limits<size_t>::max() ? std::numeric_limits<size_t>::max() : size_t(n);
}

uint64_t wl_tensor_stored_bytes(const wl_model* model, size_t index) {
    const model::Entry* t = entry(model, index);
    return t ? t->length : 0;
}

int wl_find_tensor(const wl_model* model, const char* name, size_t* index) {
    if (!model || !name || !index) return WL_ERR_ARGUMENT;
    const size_t i = model->reader->find(name);
    if (i == model->reader->entries().size()) return WL_ERR_ARGUMENT;
    *index = i;
    return WL_OK;
}

int wl_decode_tensor(const wl_model* model, size_t index, void* out, size_t out_bytes, unsigned threads, char* err,
                     size_t errlen) {
    return guarded(err, errlen, model ? model->source : std::string(), [&] {
        if (!model) fail(WL_ERR_ARGUMENT, "wl_decode_tensor: model is NULL");
        const model::Entry* t = entry(model, index);
        if (!t)
            fail(WL_ERR_ARGUMENT, "wl_decode_tensor: index " + std::to_string(index) + " out of range (" +
                                      std::to_string(model->reader->entries().size()) + " tensors)");
        const uint64_t need = model->reader->decoded_bytes(index);
        if (need > std::numeric_limits<size_t>::max())
            fail(WL_ERR_UNSUPPORTED, model->source + ": tensor " + model::quoted(t->name) + " is too large for this machine");
        if (need > out_bytes)
            fail(WL_ERR_ARGUMENT, "tensor " + model::quoted(t->name) + " needs " + std::to_string(need) + " bytes, the buffer has " +
                                      std::to_string(out_bytes));
        if (need && !out) fail(WL_ERR_ARGUMENT, "wl_decode_tensor: out is NULL");
        model->reader->decode(index, out, out_bytes, threads);
    });
}

const char* wl_status_name(int status) {
    switch (status) {
        case WL_OK: return "ok";
        case WL_ERR_ARGUMENT: return "bad argument";
        case WL_ERR_IO: return "I/O error";
        case WL_ERR_FORMAT: return "format error";
        case WL_ERR_UNSUPPORTED: return "unsupported";
        case WL_ERR_MEMORY: return "out of memory";
        case WL_ERR_INTERNAL: return "internal error";
        default: return "unknown status";
    }
}

}  // extern "C"
