// pybind11 bindings: whole numpy arrays cross the boundary, and the GIL is released while the
// core works. Argument checking that needs Python types lives in weightless/filter.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "weightless.h"

namespace py = pybind11;

namespace {

using KeyArray = py::array_t<uint64_t, py::array::c_style>;

wl::Filter build(KeyArray keys, py::array_t<uint32_t, py::array::c_style> values, uint32_t value_bits,
                 uint32_t cell_bits, uint64_t seed, uint32_t arity, uint64_t piece_keys, uint64_t block_keys,
                 unsigned threads, uint32_t format_version, uint64_t chunk_keys) {
    if (keys.ndim() != 1 || values.ndim() != 1) throw std::invalid_argument("keys and values must be 1-D arrays");
    if (keys.shape(0) != values.shape(0))
        throw std::invalid_argument("keys and values differ in length: " + std::to_string(keys.shape(0)) + " vs " +
                                    std::to_string(values.shape(0)));
    wl::BuildOptions options;
    options.value_bits = value_bits;
    options.cell_bits = cell_bits;
    options.seed = seed;
    options.arity = arity;
    options.piece_keys = piece_keys;
    options.block_keys = block_keys;
    options.threads = threads;
    options.format_version = format_version;
    options.chunk_keys = chunk_keys;
    py::gil_scoped_release release;
    return wl::build_filter(keys.data(), values.data(), size_t(keys.shape(0)), options);
}

template <typename Out, typename Fn>
py::array_t<Out> map_keys(const wl::Filter& f, KeyArray keys, Fn fn) {
    if (keys.ndim() != 1) throw std::invalid_argument("keys must be a 1-D array");
    py::array_t<Out> out(keys.shape(0));
    const uint64_t* in = keys.data();
    Out* dst = out.mutable_data();
    py::gil_scoped_release release;
    fn(f, in, size_t(keys.shape(0)), dst);
    return out;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "weightless C++ core: Bloomier filter construction, queries and serialization";
    m.attr("FORMAT_VERSION") = wl::kFormatVersion;
    m.attr("FUSE_FORMAT_VERSION") = wl::kFuseFormatVersion;
    m.attr("DEFAULT_CHUNK_KEYS") = wl::kDefaultChunkKeys;
    m.attr("DEFAULT_PIECE_KEYS") = wl::kDefaultPieceKeys;
    m.attr("DEFAULT_BLOCK_KEYS") = wl::kDefaultBlockKeys;

    py::class_<wl::Filter>(m, "Filter")
        .def_static("build", &build, py::arg("keys"), py::arg("values"), py::arg("value_bits"), py::arg("cell_bits"),
                    py::arg("seed"), py::arg("arity"), py::arg("piece_keys"), py::arg("block_keys"),
                    py::arg("threads"), py::arg("format_version") = wl::kFormatVersion, py::arg("chunk_keys") = 0)
        .def("query_raw",
             [](const wl::Filter& f, KeyArray keys) { return map_keys<uint32_t>(f, keys, wl::query_raw); })
        .def("query_values",
             [](const wl::Filter& f, KeyArray keys) { return map_keys<int32_t>(f, keys, wl::query_values); })
        .def("decode_range",
             [](const wl::Filter& f, uint64_t begin, uint64_t end) {
                 if (end < begin) throw std::invalid_argument("decode_range: stop < start");
                 py::array_t<int32_t> out(py::ssize_t(end - begin));
                 int32_t* dst = out.mutable_data();
                 py::gil_scoped_release release;
                 wl::decode_range(f, begin, end, dst);
                 return out;
             })
        .def("decode_weights",
             [](const wl::Filter& f, uint64_t size, py::array_t<float, py::array::c_style> codebook,
                unsigned threads) {
                 if (codebook.ndim() != 1) throw std::invalid_argument("codebook must be a 1-D float32 array");
                 py::array_t<float> out{py::ssize_t(size)};
                 float* dst = out.mutable_data();
                 const float* book = codebook.data();
                 uint32_t book_size = uint32_t(std::min<py::ssize_t>(codebook.shape(0), 1 << 16));
                 py::gil_scoped_release release;
                 wl::decode_weights(f, 0, size, book, book_size, dst, threads);
                 return out;
             })
        // Into the caller's array (filter.py checks dtype, contiguity and size): a model loaded
        // again and again reuses its buffers and skips the page faults of a fresh allocation.
        .def("decode_weights_into",
             [](const wl::Filter& f, py::array out, py::array_t<float, py::array::c_style> codebook, unsigned threads) {
                 if (codebook.ndim() != 1) throw std::invalid_argument("codebook must be a 1-D float32 array");
                 if (!out.dtype().is(py::dtype::of<float>()) || !(out.flags() & py::array::c_style) || !out.writeable())
                     throw std::invalid_argument("out must be a writeable C-contiguous float32 array");
                 float* dst = static_cast<float*>(out.mutable_data());
                 const float* book = codebook.data();
                 uint32_t book_size = uint32_t(std::min<py::ssize_t>(codebook.shape(0), 1 << 16));
                 uint64_t size = uint64_t(out.size());
                 py::gil_scoped_release release;
                 wl::decode_weights(f, 0, size, book, book_size, dst, threads);
             })
        .def("count_decoded",
             [](const wl::Filter& f, uint64_t size, uint32_t codebook_size, unsigned threads) {
                 py::gil_scoped_release release;
                 return wl::count_decoded(f, 0, size, codebook_size, threads);
             })
        .def("to_bytes",
             [](const wl::Filter& f) {
                 std::vector<uint8_t> bytes;
                 {
                     py::gil_scoped_release release;
                     bytes = wl::serialize(f);
                 }
                 return py::bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size());
             })
        .def_static("from_bytes",
                    [](py::buffer data) {
                        py::buffer_info info = data.request();
                        if (info.itemsize != 1 || info.ndim > 1)
                            throw std::invalid_argument("from_bytes expects a bytes-like object");
                        const uint8_t* ptr = static_cast<const uint8_t*>(info.ptr);
                        size_t size = size_t(info.size);
                        py::gil_scoped_release release;
                        return wl::deserialize(ptr, size);
                    })
        .def_property_readonly("nbytes", [](const wl::Filter& f) { return wl::serialized_size(f); })
        .def_property_readonly("num_cells", [](const wl::Filter& f) { return f.cells.size(); })
        .def_property_readonly("version", [](const wl::Filter& f) { return f.version; })
        .def_property_readonly("num_chunks", [](const wl::Filter& f) { return f.chunks.size(); })
        .def_property_readonly("num_pieces", [](const wl::Filter& f) { return f.version == 3 ? f.chunks.size() : f.pieces.size(); })
        .def_property_readonly("num_blocks",
                               [](const wl::Filter& f) {
                                   if (f.version == 3) return uint64_t(f.chunks.size());
                                   uint64_t blocks = 0;
                                   for (const wl::Piece& p : f.pieces) blocks += p.num_blocks();
                                   return blocks;
                               })
        .def_property_readonly("num_keys", [](const wl::Filter& f) { return f.num_keys; })
        .def_property_readonly("value_bits", [](const wl::Filter& f) { return f.value_bits; })
        .def_property_readonly("cell_bits", [](const wl::Filter& f) { return f.cell_bits; })
        .def_property_readonly("arity", [](const wl::Filter& f) { return f.arity; })
        .def_property_readonly("seed", [](const wl::Filter& f) { return f.seed; });

    // The decoders' instruction set (weightless.h): set_isa, else WEIGHTLESS_ISA read once.
    m.def("active_isa", [] { return std::string(wl::active_isa()); },
          "The instruction set the decoders use now: the last set_isa, else WEIGHTLESS_ISA (read once, at the "
          "first decode), else the fastest supported one. ValueError if WEIGHTLESS_ISA names an unknown or "
          "unsupported one and set_isa was not called.");
    m.def("set_isa",
          [](py::object name) {
              std::string s = name.is_none() ? std::string() : py::cast<std::string>(name);
              return std::string(wl::set_isa(s.c_str()));
          },
          py::arg("name"),
          "Use the named instruction set ('scalar', 'avx2', 'avx512', 'neon'; None or '' for the fastest) from now "
          "on; returns the name now active. ValueError for one this build or CPU cannot run.");
    m.def("supported_isas", &wl::supported_isas,
          "The instruction sets this build runs on this CPU, 'scalar' first, the default last.");

    m.def("crc32", [](py::bytes data) {
        std::string s = data;
        return wl::crc32(reinterpret_cast<const uint8_t*>(s.data()), s.size());
    });

    void bind_exact(py::module_&); bind_exact(m);  // the exact codec: csrc/bindings_exact.cpp
    void bind_model(py::module_&); bind_model(m);  // the .wl container: csrc/bindings_model.cpp
}
