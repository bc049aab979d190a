// wl-decode: list and decode the tensors of a .wl model file with the C API, without Python.
//
//   wl-decode FILE.wl                          list the tensors (name, dtype, shape, kind)
//   wl-decode FILE.wl --tensor NAME [-o OUT.npy] [--repeat N] [--threads N]
//   wl-decode FILE.wl --all [--repeat N] [--threads N]
//
// Decoding prints the best and mean wall time over --repeat runs. -o writes the tensor as a
// .npy file (format version 1.0, little-endian dtype, C order), atomically: a temporary file in
// the same directory renamed over OUT.npy, removed on any failure, so OUT.npy is never partial;
// OUT.npy may not be the input or a directory. A tensor is decoded only if its output fits in
// WEIGHTLESS_MAX_DECODE_BYTES (default: the machine's physical memory), checked before
// allocating. Any error: one line on stderr and exit status 1 (2 for a usage error).
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

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

const char* kind_name(int kind) {
    return kind == WL_KIND_ENCODED ? "encoded" : kind == WL_KIND_EXACT ? "exact" : kind == WL_KIND_FLOAT16 ? "float16" : "raw";
}

const char* npy_descr(const char* dtype) {
    static const struct {
        const char* dtype;
        const char* descr;
    } table[] = {{"bool", "|b1"},    {"int8", "|i1"},    {"int16", "<i2"},   {"int32", "<i4"},
                 {"int64", "<i8"},   {"uint8", "|u1"},   {"uint16", "<u2"},  {"uint32", "<u4"},
                 {"uint64", "<u8"},  {"float16", "<f2"}, {"float32", "<f4"}, {"float64", "<f8"},
                 // numpy has no bfloat16: what np.save writes for ml_dtypes.bfloat16 (2-byte void),
                 // read back with np.load(path).view(ml_dtypes.bfloat16).
                 {"bfloat16", "<V2"}};
    for (const auto& row : table)
        if (std::strcmp(row.dtype, dtype) == 0) return row.descr;
    return nullptr;
}

// The largest output (bytes) wl-decode allocates: WEIGHTLESS_MAX_DECODE_BYTES if set, else the
// machine's physical memory. 0 if the variable is not a number (an error for the caller).
uint64_t max_decode_bytes(std::string* source) {
    if (const char* env = std::getenv("WEIGHTLESS_MAX_DECODE_BYTES")) {
        *source = "WEIGHTLESS_MAX_DECODE_BYTES";
        char* end = nullptr;
        errno = 0;
        unsigned long long v = std::strtoull(env, &end, 10);
        return (errno || !*env || *end || env[0] == '-') ? 0 : uint64_t(v);
    }
    *source = "this machine's memory; WEIGHTLESS_MAX_DECODE_BYTES changes it";
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : UINT64_MAX;
}

// Problems with the output path found before any work: it is the input, or a directory.
bool check_output(const char* in_path, const char* out_path, std::string* err) {
    struct stat in_st, out_st;
    if (::stat(out_path, &out_st) != 0) return true;  // does not exist yet: fine
    if (S_ISDIR(out_st.st_mode)) {
        *err = std::string(out_path) + ": is a directory";
        return false;
    }
    if (::stat(in_path, &in_st) == 0 && in_st.st_dev == out_st.st_dev && in_st.st_ino == out_st.st_ino) {
        *err = std::string("the output ") + out_path + " is the input file";
        return false;
    }
    return true;
}

bool write_all(int fd, const void* data, size_t size) {
    const unsigned char* p = static_cast<const unsigned char*>(data);
    while (size) {
        ssize_t n = ::write(fd, p, size);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        p += n;
        size -= size_t(n);
    }
    return true;
}

// Writes a .npy file, format version 1.0: magic, version, u16 header length, a Python dict
// literal padded with spaces and ending in '\n' so the data starts at a multiple of 64. The
// bytes go to a temporary file next to path, renamed over it once complete.
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
    const std::string out(path);
    const size_t slash = out.rfind('/');
    const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : out.substr(0, slash));
    const std::string base = slash == std::string::npos ? out : out.substr(slash + 1);
    const std::string tmp_name = dir + "/." + base + ".XXXXXX.tmp";
    std::vector<char> tmp(tmp_name.begin(), tmp_name.end());
    tmp.push_back('\0');
    int fd = ::mkstemps(tmp.data(), 4);
    if (fd < 0) {
        *err = out + ": cannot create a file in " + dir + ": " + std::strerror(errno);
        return false;
    }
    const mode_t mask = ::umask(0);  // mkstemp's 0600 would carry over to the output
    ::umask(mask);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, uint8_t(header.size() & 0xFF),
                             uint8_t(header.size() >> 8)};
    bool ok = ::fchmod(fd, 0666 & ~mask) == 0 && write_all(fd, pre, 10) &&
              write_all(fd, header.data(), header.size()) && write_all(fd, data.data(), data.size()) &&
              ::fsync(fd) == 0;
    int saved = errno;
    ok = (::close(fd) == 0) && ok;
    if (ok && ::rename(tmp.data(), path) == 0) return true;
    if (ok) saved = errno;
    ::unlink(tmp.data());
    *err = out + ": write failed: " + std::strerror(saved);
    return false;
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

    if (out_path) {
        std::string oerr;
        if (!check_output(path, out_path, &oerr)) return error(oerr);
    }
    std::string limit_source;
    const uint64_t limit = max_decode_bytes(&limit_source);
    if (limit == 0) return error("WEIGHTLESS_MAX_DECODE_BYTES must be a number of bytes");

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
            std::printf("%-8s %-8s %-20s %s\n", kind_name(wl_tensor_kind(m, i)),
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
        const std::string where = std::string(path) + ": tensor '" + wl_tensor_name(m, i) + "'";
        if (bytes == SIZE_MAX) return error(where + ": too large for this machine");
        if (bytes > limit)
            return error(where + ": decoding needs " + std::to_string(bytes) + " bytes, more than the limit of " +
                         std::to_string(limit) + " (" + limit_source + ")");
        std::vector<unsigned char> buf;
        try {
            buf.resize(bytes);
        } catch (...) {
            return error(where + ": out of memory for " + std::to_string(bytes) + " bytes");
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
                    kind_name(wl_tensor_kind(m, i)), wl_tensor_dtype(m, i),
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
