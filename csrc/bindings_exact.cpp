// pybind11 bindings of the exact codec (csrc/codecs/exact.h): whole numpy arrays in and out,
// the GIL released while the core works. Policy (pruning, clustering, dtypes) lives in
// weightless/exact.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "codecs/exact.h"

namespace py = pybind11;

namespace {

std::string_view view(const py::buffer& b, py::buffer_info& info) {
    info = b.request();
    if (info.ndim != 1 || info.itemsize != 1 || (info.shape[0] > 1 && info.strides[0] != 1))
        throw std::invalid_argument("exact: expected a contiguous bytes-like object");
    return {static_cast<const char*>(info.ptr), size_t(info.shape[0])};
}

py::bytes encode(py::array_t<uint64_t, py::array::c_style | py::array::forcecast> positions,
                 py::array_t<uint32_t, py::array::c_style | py::array::forcecast> codes,
                 std::vector<uint64_t> shape,
                 py::array_t<float, py::array::c_style | py::array::forcecast> codebook, int gap_mode,
                 int code_mode, int ways) {
    if (positions.ndim() != 1 || codes.ndim() != 1 || codebook.ndim() != 1)
        throw std::invalid_argument("exact_encode: positions, codes and codebook must be 1-D");
    if (positions.shape(0) != codes.shape(0))
        throw std::invalid_argument("exact_encode: positions and codes differ in length");
    wl::ExactOptions options;
    options.gap_mode = gap_mode;
    options.code_mode = code_mode;
    options.ways = ways;
    std::vector<uint8_t> out;
    {
        py::gil_scoped_release release;
        out = wl::exact_encode(positions.data(), codes.data(), size_t(positions.shape(0)), shape.data(),
                               shape.size(), codebook.data(), size_t(codebook.shape(0)), options);
    }
    return py::bytes(reinterpret_cast<const char*>(out.data()), out.size());
}

py::dict info(const py::buffer& data) {
    py::buffer_info b;
    auto s = view(data, b);
    wl::ExactInfo i = wl::exact_info(reinterpret_cast<const uint8_t*>(s.data()), s.size());
    py::dict d;
    d["shape"] = py::tuple(py::cast(i.shape));
    d["size"] = i.size;
    d["kept"] = i.kept;
    py::array_t<float> book(py::ssize_t(i.codebook.size()));
    std::copy(i.codebook.begin(), i.codebook.end(), book.mutable_data());
    d["codebook"] = book;
    d["gap_mode"] = i.gap_mode;
    d["code_mode"] = i.code_mode;
    return d;
}

void decode_weights(const py::buffer& data, py::array_t<float, py::array::c_style> out) {
    py::buffer_info b;
    auto s = view(data, b);
    if (!out.writeable()) throw std::invalid_argument("exact_decode_weights: out is read-only");
    float* dst = out.mutable_data();
    uint64_t n = uint64_t(out.size());
    py::gil_scoped_release release;
    wl::exact_decode_weights(reinterpret_cast<const uint8_t*>(s.data()), s.size(), dst, n);
}

py::tuple decode_sparse(const py::buffer& data, uint64_t kept) {
    py::buffer_info b;
    auto s = view(data, b);
    // kept comes from exact_info of the same bytes (the caller bounds the allocation); the
    // decoder checks it against the header again.
    py::array_t<uint64_t> positions{py::ssize_t(kept)};
    py::array_t<uint32_t> codes{py::ssize_t(kept)};
    uint64_t* p = positions.mutable_data();
    uint32_t* c = codes.mutable_data();
    {
        py::gil_scoped_release release;
        wl::exact_decode_sparse(reinterpret_cast<const uint8_t*>(s.data()), s.size(), p, c, kept);
    }
    return py::make_tuple(positions, codes);
}

}  // namespace

void bind_exact(py::module_& m) {
    m.attr("EXACT_VERSION") = wl::kExactVersion;
    m.attr("EXACT_MAX_CLUSTERS") = wl::kExactMaxClusters;
    m.attr("EXACT_MAX_CONTEXT_CLUSTERS") = wl::kExactMaxContextClusters;
    m.def("exact_encode", &encode, py::arg("positions"), py::arg("codes"), py::arg("shape"), py::arg("codebook"),
          py::arg("gap_mode") = -1, py::arg("code_mode") = -1, py::arg("ways") = 0);
    m.def("exact_info", &info, py::arg("data"));
    m.def("exact_decode_weights", &decode_weights, py::arg("data"), py::arg("out"));
    m.def("exact_decode_sparse", &decode_sparse, py::arg("data"), py::arg("kept"));
}
