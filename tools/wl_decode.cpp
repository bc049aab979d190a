// wl-decode: list and decode the tensors of a .wl model file with the C API, without Python.
//
//   wl-decode FILE.wl                          list the tensors (name, dtype, shape, kind)
//   wl-decode FILE.wl --tensor NAME [-o OUT.npy] [--repeat N] [--threads N]
//   wl-decode FILE.wl --all [--repeat N] [--threads N]
//
// Decoding prints the best and mean wall time over --repeat runs. -o writes the tensor as a
// .npy file (format version 1.0, little-endian dtype, C order). Any error: one line on stderr
// and exit status 1 (2 for a usage error).
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "weightless_c.h"

namespace {

const char* kUsage =
    "usage: wl-decode FILE.wl [--tensor NAME | --all] [-o OUT.npy] [--repeat N] [--threads N]\n";

int usage_error(const std::string& message) {
    std::fprintf(stderr, "wl-decode: %s (see wl-decode --help)\n", message.c_str());
    return 2;
}

int error(const std::string& message) {
    std::fprintf(stderr, "wl-decode: %s\n", message.c_str());
    return 1;
}

bool parse_count(const char* s, unsigned long min, unsigned long max, unsigned long* out) {
    if (!s || !*s) return false;
    char* end = nullptr;
    errno = 0;
    unsigned long v = std::strtoul(s, &end, 10);
    if (errno || *end || s[0] == '-' || v < min || v > max) return false;
    *out = v;
    return true;
}

std::string shape_string(const wl_model* m, size_t i, const char* open, const char* close, bool trailing_comma) {
    std::string s = open;
    size_t ndim = wl_tensor_ndim(m, i);
    const uint64_t* shape = wl_tensor_shape(m, i);
    for (size_t d = 0; d < ndim; ++d) {
        if (d) s += ", ";
        s += std::to_string(shape[d]);
    }
    if (trailing_comma && ndim == 1) s += ",";
    return s + close;
}

const char* npy_descr(const char* dtype) {
    static const struct {
        const char* dtype;
        const char* descr;
    } table[] = {{"bool", "|b1"},    {"int8", "|i1"},    {"int16", "<i2"},   {"int32", "<i4"},
                 {"int64", "<i8"},   {"uint8", "|u1"},   {"uint16", "<u2"},  {"uint32", "<u4"},
                 {"uint64", "<u8"},  {"float16", "<f2"}, {"float32", "<f4"}, {"float64", "<f8"}};
    for (const auto& row : table)
        if (std::strcmp(row.dtype, dtype) == 0) return row.descr;
    return nullptr;
}

// Writes a .npy file, format version 1.0: magic, version, u16 header length, a Python dict
// literal padded with spaces and ending in '\n' so the data starts at a multiple of 64.
bool write_npy(const char* path, const wl_model* m, size_t i, const std::vector<unsigned char>& data, std::string* err) {
    const char* descr = npy_descr(wl_tensor_dtype(m, i));
    if (!descr) {
        *err = "no .npy dtype for " + std::string(wl_tensor_dtype(m, i));
        return false;
    }
    std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " +
                         shape_string(m, i, "(", ")", true) + ", }";
    size_t total = 10 + header.size() + 1;
    size_t padded = (total + 63) / 64 * 64;
    header.append(padded - total, ' ');
    header.push_back('\n');
    if (header.size() > 65535) {
        *err = "shape too long for a version 1.0 .npy header";
        return false;
    }
    std::FILE* f = std::fopen(path, "wb");
    if (!f) {
        *err = std::string(path) + ": " + std::strerror(errno);
        return false;
    }
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, uint8_t(header.size() & 0xFF),
                             uint8_t(header.size() >> 8)};
    bool ok = std::fwrite(pre, 1, 10, f) == 10 && std::fwrite(header.data(), 1, header.size(), f) == header.size() &&
              (data.empty() || std::fwrite(data.data(), 1, data.size(), f) == data.size());
    ok = (std::fclose(f) == 0) && ok;
    if (!ok) *err = std::string(path) + ": write failed: " + std::strerror(errno);
    return ok;
}

}  // namespace

int main(int argc, char** argv) {
    const char* path = nullptr;
    const char* tensor = nullptr;
    const char* out_path = nullptr;
    bool all = false;
    unsigned long repeat = 1, threads = 0;
    for (int a = 1; a < argc; ++a) {
        std::string arg = argv[a];
        auto value = [&](const char* name) -> const char* {
            if (a + 1 >= argc) return nullptr;
            (void)name;
            return argv[++a];
        };
        if (arg == "-h" || arg == "--help") {
            std::fputs(kUsage, stdout);
            return 0;
        } else if (arg == "--tensor" || arg == "-t") {
            if (!(tensor = value("--tensor"))) return usage_error(arg + " needs a name");
        } else if (arg == "-o" || arg == "--output") {
            if (!(out_path = value("-o"))) return usage_error(arg + " needs a file name");
        } else if (arg == "--all") {
            all = true;
        } else if (arg == "--repeat") {
            if (!parse_count(value("--repeat"), 1, 1000000, &repeat)) return usage_error("--repeat needs a count >= 1");
        } else if (arg == "--threads") {
            if (!parse_count(value("--threads"), 0, 4096, &threads)) return usage_error("--threads needs a count (0 = all)");
        } else if (!arg.empty() && arg[0] == '-') {
            return usage_error("unknown option " + arg);
        } else if (!path) {
            path = argv[a];
        } else {
            return usage_error("more than one input file");
        }
    }
    if (!path) return usage_error("no input file");
    if (all && tensor) return usage_error("give --tensor or --all, not both");
    if (out_path && !tensor) return usage_error("-o needs --tensor");

    char err[512];
    wl_model* m = wl_open_file(path, err, sizeof err);
    if (!m) return error(err);
    struct Closer {
        wl_model* m;
        ~Closer() { wl_close(m); }
    } closer{m};

    const size_t count = wl_tensor_count(m);
    if (!tensor && !all) {
        std::printf("%s: %zu tensors\n", path, count);
        for (size_t i = 0; i < count; ++i)
            std::printf("%-8s %-8s %-20s %s\n", wl_tensor_kind(m, i) == WL_KIND_ENCODED ? "encoded" : "raw",
                        wl_tensor_dtype(m, i), shape_string(m, i, "[", "]", false).c_str(), wl_tensor_name(m, i));
        return 0;
    }

    std::vector<size_t> which;
    if (tensor) {
        size_t i;
        if (wl_find_tensor(m, tensor, &i) != WL_OK) return error(std::string(path) + ": no tensor named '" + tensor + "'");
        which.push_back(i);
    } else {
        for (size_t i = 0; i < count; ++i) which.push_back(i);
    }

    double total_best = 0;
    for (size_t i : which) {
        size_t bytes = wl_tensor_nbytes(m, i);
        if (bytes == SIZE_MAX) return error(std::string(wl_tensor_name(m, i)) + ": tensor too large for this machine");
        std::vector<unsigned char> buf;
        try {
            buf.resize(bytes);
        } catch (...) {
            return error(std::string(wl_tensor_name(m, i)) + ": out of memory for " + std::to_string(bytes) + " bytes");
        }
        double best = 1e300, sum = 0;
        for (unsigned long r = 0; r < repeat; ++r) {
            auto t0 = std::chrono::steady_clock::now();
            int status = wl_decode_tensor(m, i, buf.data(), buf.size(), unsigned(threads), err, sizeof err);
            auto t1 = std::chrono::steady_clock::now();
            if (status != WL_OK) return error(err);
            double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
            best = std::min(best, ms);
            sum += ms;
        }
        total_best += best;
        std::printf("%-8s %-8s %-20s %s: best %.3f ms, mean %.3f ms over %lu, %.1f M elements/s\n",
                    wl_tensor_kind(m, i) == WL_KIND_ENCODED ? "encoded" : "raw", wl_tensor_dtype(m, i),
                    shape_string(m, i, "[", "]", false).c_str(), wl_tensor_name(m, i), best, sum / double(repeat),
                    repeat, best > 0 ? double(wl_tensor_numel(m, i)) / best / 1e3 : 0.0);
        if (out_path) {
            std::string werr;
            if (!write_npy(out_path, m, i, buf, &werr)) return error(werr);
        }
    }
    if (which.size() > 1) std::printf("total (best): %.3f ms\n", total_best);
    return 0;
}
