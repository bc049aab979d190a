// pybind11 bindings of the .wl v3 reader and writer (csrc/model/container.h). Policy (which
// tensors, which codec, metadata JSON, atomic replacement) lives in weightless/container.py.
// Errors: a malformed or unsupported file raises ValueError("malformed .wl file: ..."), an
// unreadable one OSError; the caller adds the path.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "model/container.h"

namespace py = pybind11;
namespace model = wl::model;

namespace {

std::pair<const uint8_t*, size_t> bytes_of(const py::buffer& b, py::buffer_info& info, const char* what) {
    info = b.request();
    if (info.itemsize != 1 || (info.ndim == 1 && info.shape[0] > 1 && info.strides[0] != 1) || info.ndim > 1)
        throw std::invalid_argument(std::string(what) + ": expected a contiguous bytes-like object");
    return {static_cast<const uint8_t*>(info.ptr), info.ndim ? size_t(info.shape[0]) : 0};
}

py::bytes to_bytes(const std::vector<uint8_t>& v) { return py::bytes(reinterpret_cast<const char*>(v.data()), v.size()); }

model::Reader open_path(const std::string& path) {
    py::gil_scoped_release release;
    return model::Reader(model::file_source(path));
}

model::Reader open_buffer(const py::buffer& data) {
    py::buffer_info info;
    auto [p, n] = bytes_of(data, info, "ModelReader");
    std::vector<uint8_t> copy(p, p + n);
    py::gil_scoped_release release;
    return model::Reader(model::memory_source(std::move(copy)));
}

py::list entries(const model::Reader& r) {
    py::list out;
    for (const model::Entry& e : r.entries())
        out.append(py::make_tuple(e.name, model::dtype_name(e.dtype), int(e.codec), py::tuple(py::cast(e.shape)),
                                  e.offset, e.length, e.crc32));
    return out;
}

void check_index(const model::Reader& r, size_t i) {
    if (i >= r.entries().size()) throw py::index_error("tensor index out of range");
}

py::bytes payload(const model::Reader& r, size_t i) {
    check_index(r, i);
    std::vector<uint8_t> p;
    {
        py::gil_scoped_release release;
        p = r.payload(i);
    }
    return to_bytes(p);
}

void decode(const model::Reader& r, size_t i, py::array_t<uint8_t, py::array::c_style> out, unsigned threads) {
    check_index(r, i);
    if (!out.writeable()) throw std::invalid_argument("decode: out is read-only");
    uint8_t* dst = out.mutable_data();
    const size_t n = size_t(out.size());
    py::gil_scoped_release release;
    r.decode(i, dst, n, threads);
}

void append(model::Writer& w, const std::string& name, const std::string& dtype, int codec,
            const std::vector<uint64_t>& shape, const py::buffer& data) {
    const int id = model::dtype_id(dtype);
    if (id < 0) throw std::invalid_argument("dtype " + dtype + " cannot be stored in a .wl file");
    if (codec < 0 || codec >= model::kNumCodecs) throw std::invalid_argument("unknown codec id " + std::to_string(codec));
    py::buffer_info info;
    auto [p, n] = bytes_of(data, info, "append");
    py::gil_scoped_release release;
    w.append(name, uint8_t(id), uint8_t(codec), shape, p, n);
}

void finish(model::Writer& w, const py::bytes& metadata) {
    const std::string m = metadata;
    py::gil_scoped_release release;
    w.finish(reinterpret_cast<const uint8_t*>(m.data()), m.size());
}

py::bytes bloomier_payload(py::array_t<float, py::array::c_style | py::array::forcecast> codebook,
                           uint64_t false_positives, const py::bytes& filter, const py::object& outliers,
                           const std::vector<uint64_t>& shape) {
    const std::string f = filter;
    const std::string o = outliers.is_none() ? std::string() : std::string(py::bytes(outliers));
    return to_bytes(model::bloomier_payload(codebook.data(), size_t(codebook.size()), false_positives,
                                            reinterpret_cast<const uint8_t*>(f.data()), f.size(),
                                            reinterpret_cast<const uint8_t*>(o.data()), o.size(), shape));
}

py::tuple bloomier_split(const py::buffer& data, const std::vector<uint64_t>& shape) {
    py::buffer_info info;
    auto [p, n] = bytes_of(data, info, "bloomier_split");
    model::BloomierPayload b;
    try {
        py::gil_scoped_release release;
        b = model::parse_bloomier(p, n, shape);
    } catch (const model::FormatError& e) {  // a payload, not a file: the caller says which
        throw std::invalid_argument(e.what());
    }
    py::array_t<float> book(py::ssize_t(b.codebook.size()));
    std::copy(b.codebook.begin(), b.codebook.end(), book.mutable_data());
    py::object outliers = b.outliers.empty() ? py::object(py::none()) : py::object(to_bytes(b.outliers));
    return py::make_tuple(book, b.false_positives, py::bytes(reinterpret_cast<const char*>(b.filter), b.filter_size),
                          outliers);
}

// The exact payload as a version-3 file stores it (headless), and back (container.h).
py::bytes exact_headless(const py::buffer& data, const std::vector<uint64_t>& shape) {
    py::buffer_info info;
    auto [p, n] = bytes_of(data, info, "exact_headless");
    return to_bytes(model::exact_headless(p, n, shape));
}

py::bytes exact_full(const py::buffer& data, const std::vector<uint64_t>& shape) {
    py::buffer_info info;
    auto [p, n] = bytes_of(data, info, "exact_full");
    try {
        return to_bytes(model::exact_full(p, n, shape));
    } catch (const model::FormatError& e) {  // a payload, not a file: the caller says which
        throw std::invalid_argument(e.what());
    }
}

}  // namespace

void bind_model(py::module_& m) {
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const model::FormatError& e) {
            PyErr_SetString(PyExc_ValueError, (std::string("malformed .wl file: ") + e.what()).c_str());
        } catch (const model::UnsupportedError& e) {  // a newer version: as the v1 reader said it
            PyErr_SetString(PyExc_ValueError, (std::string("malformed .wl file: ") + e.what()).c_str());
        } catch (const model::IoError& e) {
            PyErr_SetString(PyExc_OSError, e.what());
        }
    });
    m.attr("MODEL_VERSION") = model::kVersion;
    py::list dtypes, codecs;
    for (uint8_t i = 0; i < model::kNumDtypes; ++i) dtypes.append(model::dtype_name(i));
    for (uint8_t i = 0; i < model::kNumCodecs; ++i) codecs.append(model::codec_name(i));
    m.attr("MODEL_DTYPES") = py::tuple(dtypes);
    m.attr("MODEL_CODECS") = py::tuple(codecs);

    py::class_<model::Reader>(m, "ModelReader")
        .def(py::init(&open_buffer), py::arg("data"))  // before the path: pybind11 takes bytes as a str too
        .def(py::init(&open_path), py::arg("path"))
        .def("entries", &entries)
        .def("metadata", [](const model::Reader& r) { return to_bytes(r.metadata()); })
        .def_property_readonly("metadata_length", &model::Reader::metadata_length)
        .def("payload", &payload, py::arg("index"))
        .def("decoded_bytes", [](const model::Reader& r, size_t i) { check_index(r, i); return r.decoded_bytes(i); },
             py::arg("index"))
        .def("decode", &decode, py::arg("index"), py::arg("out"), py::arg("threads"));

    py::class_<model::Writer>(m, "ModelWriter")
        .def(py::init<const std::string&>(), py::arg("path"))
        .def("append", &append, py::arg("name"), py::arg("dtype"), py::arg("codec"), py::arg("shape"), py::arg("payload"))
        .def("finish", &finish, py::arg("metadata"))
        .def_property_readonly("bytes_written", &model::Writer::bytes_written);

    m.def("bloomier_payload", &bloomier_payload, py::arg("codebook"), py::arg("false_positives"), py::arg("filter"),
          py::arg("outliers"), py::arg("shape"));
    m.def("exact_headless", &exact_headless, py::arg("payload"), py::arg("shape"));
    m.def("exact_full", &exact_full, py::arg("payload"), py::arg("shape"));
    m.def("bloomier_split", &bloomier_split, py::arg("payload"), py::arg("shape"));
}
