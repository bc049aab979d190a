// The C API (weightless_c.h): reads a .wl container (docs/FORMAT.md, "The model container") and
// decodes its tensors with the core library. Every check the reference reader
// (weightless/container.py) performs is done here too; errors become status codes + messages.
#include "weightless_c.h"
#include "codecs/exact.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json_min.h"
#include "weightless.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the weightless C API writes tensors in host byte order and assumes a little-endian host"
#endif
static_assert(sizeof(float) == 4 && std::numeric_limits<float>::is_iec559, "float must be IEEE binary32");
static_assert(sizeof(double) == 8 && std::numeric_limits<double>::is_iec559, "double must be IEEE binary64");

namespace {

constexpr size_t kPreamble = 16;
constexpr size_t kCrc = 4;
constexpr uint64_t kAlign = 8;
constexpr size_t kMaxNdim = 64;
constexpr size_t kLayerHeader = 28;
constexpr size_t kLayerMaxNdim = 32;
constexpr uint32_t kMaxClusters = 1u << 16;
// Floats decoded at a time when the output needs converting (float16, float64, unaligned).
constexpr size_t kDecodeChunk = size_t(1) << 18;

struct Error {
    int code;
    std::string message;
};

[[noreturn]] void fail(int code, std::string message) { throw Error{code, std::move(message)}; }

uint64_t get_le(const uint8_t* p, size_t bytes) {
    uint64_t v = 0;
    for (size_t i = 0; i < bytes; ++i) v |= uint64_t(p[i]) << (8 * i);
    return v;
}

uint64_t align8(uint64_t x) { return (x + kAlign - 1) / kAlign * kAlign; }  // callers keep x < 2^63

// Product of dims, saturating at UINT64_MAX (0 if any dim is 0).
uint64_t product(const std::vector<uint64_t>& dims, bool* overflow) {
    *overflow = false;
    for (uint64_t d : dims)
        if (d == 0) return 0;
    uint64_t p = 1;
    for (uint64_t d : dims) {
        if (p > UINT64_MAX / d) {
            *overflow = true;
            return UINT64_MAX;
        }
        p *= d;
    }
    return p;
}

struct DtypeInfo {
    const char* name;
    size_t itemsize;
    bool encodable;
};
constexpr DtypeInfo kDtypes[] = {
    {"bool", 1, false},    {"int8", 1, false},   {"int16", 2, false},   {"int32", 4, false},
    {"int64", 8, false},   {"uint8", 1, false},  {"uint16", 2, false},  {"uint32", 4, false},
    {"uint64", 8, false},  {"float16", 2, true}, {"float32", 4, true},  {"float64", 8, true},
    {"bfloat16", 2, true},
};

const DtypeInfo* find_dtype(const std::string& name) {
    for (const DtypeInfo& d : kDtypes)
        if (name == d.name) return &d;
    return nullptr;
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

}  // namespace

struct wl_tensor_entry {
    std::string name;
    const DtypeInfo* dtype = nullptr;
    int kind = WL_KIND_RAW;
    std::vector<uint64_t> shape;
    uint64_t numel = 0;
    bool numel_overflow = false;
    uint64_t offset = 0, length = 0;
    uint32_t crc32 = 0;
    uint64_t kept = 0, clusters = 0, cell_bits = 0, false_positives = 0;
};

struct wl_model {
    std::string source;  // the path, or "<buffer>"
    std::vector<uint8_t> bytes;
    size_t data_start = 0;
    std::vector<wl_tensor_entry> tensors;
};

namespace {

[[noreturn]] void malformed(const wl_model& m, const std::string& problem) {
    fail(WL_ERR_FORMAT, m.source + ": malformed .wl file: " + problem);
}

bool as_u64(const wl::json::Value* v, uint64_t* out) {
    if (!v || v->type != wl::json::Type::Number || !v->is_u64) return false;
    *out = v->u64;
    return true;
}

wl_tensor_entry parse_entry(const wl_model& m, const wl::json::Value& e, size_t i) {
    using wl::json::Type;
    if (e.type != Type::Object) malformed(m, "bad header (tensor #" + std::to_string(i) + " is not a JSON object)");
    wl_tensor_entry t;
    const wl::json::Value* name = e.get("name");
    if (!name || name->type != Type::String)
        malformed(m, "bad header (tensor #" + std::to_string(i) + " has no name)");
    t.name = name->string;
    const std::string where = "bad header (tensor " + quoted(t.name) + ": ";
    const wl::json::Value* kind = e.get("kind");
    if (!kind || kind->type != Type::String ||
        (kind->string != "raw" && kind->string != "encoded" && kind->string != "exact"))
        malformed(m, where + "unknown kind)");
    t.kind = kind->string == "raw" ? WL_KIND_RAW : kind->string == "encoded" ? WL_KIND_ENCODED : WL_KIND_EXACT;
    const wl::json::Value* dtype = e.get("dtype");
    t.dtype = dtype && dtype->type == Type::String ? find_dtype(dtype->string) : nullptr;
    if (!t.dtype || (t.kind != WL_KIND_RAW && !t.dtype->encodable))
        malformed(m, where + "dtype is not allowed for a " + kind->string + " tensor)");
    const wl::json::Value* shape = e.get("shape");
    if (!shape || shape->type != Type::Array || shape->items.size() > kMaxNdim) malformed(m, where + "bad shape)");
    for (const wl::json::Value& d : shape->items) {
        uint64_t x;
        if (!as_u64(&d, &x)) malformed(m, where + "bad shape)");
        t.shape.push_back(x);
    }
    t.numel = product(t.shape, &t.numel_overflow);
    uint64_t crc;
    if (!as_u64(e.get("offset"), &t.offset) || !as_u64(e.get("length"), &t.length) || !as_u64(e.get("crc32"), &crc))
        malformed(m, where + "offset, length and crc32 must be non-negative integers)");
    if (crc >= (uint64_t(1) << 32)) malformed(m, where + "crc32 out of range)");
    t.crc32 = uint32_t(crc);
    if (t.kind == WL_KIND_ENCODED) {
        if (!as_u64(e.get("kept"), &t.kept) || !as_u64(e.get("clusters"), &t.clusters) ||
            !as_u64(e.get("cell_bits"), &t.cell_bits) || !as_u64(e.get("false_positives"), &t.false_positives))
            malformed(m, where + "kept, clusters, cell_bits and false_positives must be non-negative integers)");
        const wl::json::Value* options = e.get("options");
        if (!options || options->type != Type::Object) malformed(m, where + "options must be a JSON object)");
    }
    if (t.kind == WL_KIND_EXACT) {
        if (!as_u64(e.get("kept"), &t.kept) || !as_u64(e.get("clusters"), &t.clusters))
            malformed(m, where + "kept and clusters must be non-negative integers)");
        const wl::json::Value* options = e.get("options");
        if (!options || options->type != Type::Object) malformed(m, where + "options must be a JSON object)");
    }
    return t;
}

void parse_container(wl_model& m) {
    const std::vector<uint8_t>& b = m.bytes;
    const size_t size = b.size();
    if (size < 4 || std::memcmp(b.data(), "WLMF", 4) != 0)
        malformed(m, "not a weightless model file (bad magic)");
    if (size < kPreamble) malformed(m, "truncated (" + std::to_string(size) + " bytes)");
    uint64_t version = get_le(b.data() + 4, 2);
    if (version != 1)
        fail(WL_ERR_UNSUPPORTED, m.source + ": unsupported .wl version " + std::to_string(version) +
                                     " (this library reads version 1)");
    if (get_le(b.data() + 6, 2) != 0) malformed(m, "reserved field is not zero");
    uint64_t header_len = get_le(b.data() + 8, 8);
    if (size < kPreamble + kCrc || header_len > size - kPreamble - kCrc)
        malformed(m, "truncated (header of " + std::to_string(header_len) + " bytes in a " + std::to_string(size) +
                         "-byte file)");
    if ((kPreamble + header_len) % kAlign) malformed(m, "the data area is not 8-byte aligned");
    if (wl::crc32(b.data(), size - kCrc) != uint32_t(get_le(b.data() + size - kCrc, 4)))
        malformed(m, "checksum mismatch (the file is truncated or corrupted)");
    m.data_start = kPreamble + size_t(header_len);

    wl::json::Value header;
    std::string jerr;
    if (!wl::json::parse(reinterpret_cast<const char*>(b.data() + kPreamble), size_t(header_len), &header, &jerr))
        malformed(m, "bad header (" + jerr + ")");
    const wl::json::Value* tensors = header.get("tensors");
    if (!tensors || tensors->type != wl::json::Type::Array) malformed(m, "bad header (the header has no tensor list)");
    m.tensors.reserve(tensors->items.size());
    for (size_t i = 0; i < tensors->items.size(); ++i) m.tensors.push_back(parse_entry(m, tensors->items[i], i));

    // Layout: blobs in order, each at the next multiple of 8, filling the data area exactly.
    const uint64_t data_len = size - m.data_start - kCrc;
    std::vector<const std::string*> names;
    names.reserve(m.tensors.size());
    uint64_t expected = 0;
    for (const wl_tensor_entry& t : m.tensors) {
        names.push_back(&t.name);
        if (t.offset != expected)
            malformed(m, "tensor " + quoted(t.name) + " starts at " + std::to_string(t.offset) + ", expected " +
                             std::to_string(expected));
        if (t.length > data_len - t.offset)  // offset == expected <= data_len from the previous step
            malformed(m, "tensor " + quoted(t.name) + " extends past the data area");
        if (t.kind == WL_KIND_RAW) {
            bool ok = !t.numel_overflow && (t.numel == 0 || t.numel <= UINT64_MAX / t.dtype->itemsize) &&
                      t.numel * t.dtype->itemsize == t.length;
            if (!ok)
                malformed(m, "tensor " + quoted(t.name) + ": " + std::to_string(t.length) + " bytes for its shape and dtype");
        } else if (t.kind == WL_KIND_EXACT) {
            if (!(t.kept <= t.numel && t.clusters <= wl::kExactMaxClusters))
                malformed(m, "tensor " + quoted(t.name) + ": encoding statistics out of range");
        } else {
            bool ok = t.kept <= t.numel && t.false_positives <= t.numel - t.kept && t.clusters <= kMaxClusters &&
                      t.cell_bits >= 1 && t.cell_bits <= 32;
            if (!ok) malformed(m, "tensor " + quoted(t.name) + ": encoding statistics out of range");
        }
        expected = align8(t.offset + t.length);  // <= align8(data_len), data_len is a multiple of 8
        if (expected > data_len) malformed(m, "tensor " + quoted(t.name) + " extends past the data area");
    }
    if (expected != data_len)
        malformed(m, "the tensors take " + std::to_string(expected) + " bytes but the data area has " +
                         std::to_string(data_len));
    std::sort(names.begin(), names.end(), [](const std::string* a, const std::string* b) { return *a < *b; });
    for (size_t i = 1; i < names.size(); ++i)
        if (*names[i] == *names[i - 1]) malformed(m, "tensor " + quoted(*names[i]) + " appears twice");
}

void set_error(char* err, size_t errlen, const std::string& message) {
    if (!err || errlen == 0) return;
    size_t n = std::min(message.size(), errlen - 1);
    std::memcpy(err, message.data(), n);
    err[n] = '\0';
}

// Runs fn, turning every exception into a status + message.
template <typename Fn>
int guarded(char* err, size_t errlen, Fn&& fn) {
    try {
        fn();
        set_error(err, errlen, "");
        return WL_OK;
    } catch (const Error& e) {
        set_error(err, errlen, e.message);
        return e.code;
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

void read_file(const char* path, std::vector<uint8_t>* out) {
    int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail(WL_ERR_IO, std::string(path) + ": " + std::strerror(errno));
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st;
    if (::fstat(fd, &st) != 0) fail(WL_ERR_IO, std::string(path) + ": " + std::strerror(errno));
    if (S_ISDIR(st.st_mode)) fail(WL_ERR_IO, std::string(path) + ": is a directory, not a .wl file");
    if (!S_ISREG(st.st_mode)) fail(WL_ERR_IO, std::string(path) + ": not a regular file");
    if (st.st_size < 0 || uint64_t(st.st_size) > uint64_t(std::numeric_limits<ptrdiff_t>::max()))
        fail(WL_ERR_IO, std::string(path) + ": file too large");
    // The file is read whole: refuse one that cannot fit rather than be killed for it.
    const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0 && uint64_t(st.st_size) / uint64_t(page) >= uint64_t(pages))
        fail(WL_ERR_MEMORY, std::string(path) + ": " + std::to_string(st.st_size) +
                                " bytes do not fit in this machine's memory");
    out->resize(size_t(st.st_size));
    size_t done = 0;
    while (done < out->size()) {
        ssize_t got = ::read(fd, out->data() + done, out->size() - done);
        if (got < 0) {
            if (errno == EINTR) continue;
            fail(WL_ERR_IO, std::string(path) + ": " + std::strerror(errno));
        }
        if (got == 0) fail(WL_ERR_IO, std::string(path) + ": the file changed while it was read");
        done += size_t(got);
    }
}

// float32 -> float16 bits, round to nearest even (as numpy's astype(float16)); inf and NaN kept.
uint16_t float_to_half(float value) {
    uint32_t f;
    std::memcpy(&f, &value, 4);
    const uint16_t sign = uint16_t((f >> 16) & 0x8000u);
    const uint32_t exp = (f >> 23) & 0xFFu, mant = f & 0x7FFFFFu;
    if (exp == 0xFF) return uint16_t(sign | 0x7C00u | (mant ? 0x200u | (mant >> 13) : 0u));
    const int e = int(exp) - 127 + 15;  // the half exponent field if the result is normal
    if (e >= 31) return uint16_t(sign | 0x7C00u);
    uint32_t sig;     // significand with the implicit bit (24 bits) ...
    uint32_t shift;   // ... shifted right by this to become the half significand field
    if (e >= 1) {
        sig = mant;
        shift = 13;
    } else {
        if (e < -10) return sign;  // below half the smallest subnormal (and exactly half: ties to 0)
        sig = mant | 0x800000u;
        shift = uint32_t(14 - e);  // 14..24
    }
    uint32_t q = sig >> shift;
    const uint32_t rem = sig & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) ++q;
    // For normals a carry out of the significand increments the exponent (possibly to inf); for
    // subnormals it turns into the smallest normal. Both come out right by addition.
    uint32_t h = e >= 1 ? (uint32_t(e) << 10) + q : q;
    return uint16_t(sign | h);
}

// float32 -> bfloat16 bits: the top half, rounded to nearest even (as ml_dtypes' astype); NaN
// stays a quiet NaN, and a carry out of the mantissa rounds up into the exponent (to inf).
uint16_t float_to_bfloat16(float value) {
    uint32_t f;
    std::memcpy(&f, &value, 4);
    if ((f & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((f >> 16) | 0x40u);
    return uint16_t((f + 0x7FFFu + ((f >> 16) & 1u)) >> 16);
}

struct Layer {
    std::vector<uint64_t> shape;
    std::vector<float> codebook;
    wl::Filter filter;
    uint64_t false_positives = 0;
};

Layer parse_layer(const wl_model& m, const wl_tensor_entry& t, const uint8_t* p, uint64_t size) {
    const std::string where = "tensor " + quoted(t.name) + ": malformed encoded layer: ";
    if (size < kLayerHeader + 4) malformed(m, where + "truncated (" + std::to_string(size) + " bytes)");
    if (std::memcmp(p, "WLLY", 4) != 0) malformed(m, where + "bad magic");
    uint64_t version = get_le(p + 4, 2);
    if (version != 1)
        fail(WL_ERR_UNSUPPORTED, m.source + ": tensor " + quoted(t.name) + ": unsupported encoded layer version " +
                                     std::to_string(version) + " (this library reads 1)");
    uint32_t ndim = p[6];
    uint64_t clusters = get_le(p + 8, 4);
    Layer layer;
    layer.false_positives = get_le(p + 12, 8);
    uint64_t filter_len = get_le(p + 20, 8);
    if (ndim > kLayerMaxNdim || p[7] != 0 || clusters > kMaxClusters) malformed(m, where + "header fields out of range");
    const uint64_t fixed = kLayerHeader + 8 * uint64_t(ndim) + 4 * clusters + 4;
    if (filter_len > size || size - filter_len != fixed)
        malformed(m, where + std::to_string(size) + " bytes do not match the sizes in its header");
    if (wl::crc32(p, size_t(size - 4)) != uint32_t(get_le(p + size - 4, 4)))
        malformed(m, where + "checksum mismatch (the data is corrupted)");
    const uint8_t* at = p + kLayerHeader;
    for (uint32_t i = 0; i < ndim; ++i, at += 8) layer.shape.push_back(get_le(at, 8));
    layer.codebook.resize(size_t(clusters));
    for (uint64_t i = 0; i < clusters; ++i, at += 4) {
        uint32_t bits = uint32_t(get_le(at, 4));
        std::memcpy(&layer.codebook[size_t(i)], &bits, 4);
    }
    try {
        layer.filter = wl::deserialize(at, size_t(filter_len));
    } catch (const std::invalid_argument& e) {
        malformed(m, "tensor " + quoted(t.name) + ": " + e.what());
    }
    bool overflow;
    uint64_t numel = product(layer.shape, &overflow);
    for (uint64_t d : layer.shape)
        if (d >= (uint64_t(1) << 63)) overflow = true;
    if (overflow || numel >= (uint64_t(1) << 63)) malformed(m, where + "shape too large");
    const uint64_t kept = layer.filter.num_keys;
    if (kept > numel || layer.false_positives > numel - kept)
        malformed(m, where + "more kept weights or false positives than positions");
    bool finite = true;
    for (float c : layer.codebook) finite = finite && std::isfinite(c);
    if (clusters > (uint64_t(1) << layer.filter.value_bits) || !finite)
        malformed(m, where + "codebook does not match the filter");
    if (layer.shape != t.shape || kept != t.kept || clusters != t.clusters || layer.filter.cell_bits != t.cell_bits ||
        layer.false_positives != t.false_positives)
        malformed(m, "tensor " + quoted(t.name) + ": the encoded layer does not match its header entry");
    return layer;
}

const wl_tensor_entry* entry(const wl_model* m, size_t index) {
    return m && index < m->tensors.size() ? &m->tensors[index] : nullptr;
}

size_t nbytes_of(const wl_tensor_entry& t) {
    if (t.numel_overflow || (t.numel && t.numel > std::numeric_limits<size_t>::max() / t.dtype->itemsize))
        return std::numeric_limits<size_t>::max();
    return size_t(t.numel * t.dtype->itemsize);
}

// Writes n float32 values to out in the tensor's dtype (float16 and bfloat16 round to nearest
// even), out possibly unaligned.
void store_floats(const wl_tensor_entry& t, const float* values, size_t n, uint8_t* out) {
    const size_t item = t.dtype->itemsize;
    const bool brain = std::strcmp(t.dtype->name, "bfloat16") == 0;
    for (size_t i = 0; i < n; ++i) {
        if (item == 4) {
            std::memcpy(out + 4 * i, &values[i], 4);
        } else if (item == 2) {
            uint16_t h = brain ? float_to_bfloat16(values[i]) : float_to_half(values[i]);
            std::memcpy(out + 2 * i, &h, 2);
        } else {
            double d = values[i];
            std::memcpy(out + 8 * i, &d, 8);
        }
    }
}

// An exact-codec tensor (csrc/codecs/exact.h): its payload checked against the entry, decoded
// to float32 (straight into out when it is float32 and aligned), then stored in its dtype.
void decode_exact(const wl_model& m, const wl_tensor_entry& t, const uint8_t* blob, void* out) {
    wl::ExactInfo info;
    try {
        info = wl::exact_info(blob, size_t(t.length));
    } catch (const std::invalid_argument& e) {
        malformed(m, "tensor " + quoted(t.name) + ": " + e.what());
    }
    if (info.shape != t.shape || info.kept != t.kept || info.codebook.size() != t.clusters)
        malformed(m, "tensor " + quoted(t.name) + ": the exact layer does not match its header entry");
    const size_t n = size_t(t.numel);
    if (n == 0) return;
    const bool direct = t.dtype->itemsize == 4 && reinterpret_cast<uintptr_t>(out) % alignof(float) == 0;
    std::vector<float> tmp;
    if (!direct) tmp.resize(n);  // the whole tensor: the exact decoder writes every position at once
    float* dst = direct ? static_cast<float*>(out) : tmp.data();
    try {
        wl::exact_decode_weights(blob, size_t(t.length), dst, t.numel);
    } catch (const std::invalid_argument& e) {
        malformed(m, "tensor " + quoted(t.name) + ": " + e.what());
    }
    if (!direct) store_floats(t, tmp.data(), n, static_cast<uint8_t*>(out));
}

void decode(const wl_model* m, size_t index, void* out, size_t out_bytes, unsigned threads) {
    if (!m) fail(WL_ERR_ARGUMENT, "wl_decode_tensor: model is NULL");
    const wl_tensor_entry* t = entry(m, index);
    if (!t)
        fail(WL_ERR_ARGUMENT, "wl_decode_tensor: index " + std::to_string(index) + " out of range (" +
                                  std::to_string(m->tensors.size()) + " tensors)");
    const size_t need = nbytes_of(*t);
    if (need == std::numeric_limits<size_t>::max())
        fail(WL_ERR_UNSUPPORTED, m->source + ": tensor " + quoted(t->name) + " is too large for this machine");
    if (need > out_bytes)
        fail(WL_ERR_ARGUMENT, "tensor " + quoted(t->name) + " needs " + std::to_string(need) + " bytes, the buffer has " +
                                  std::to_string(out_bytes));
    if (need && !out) fail(WL_ERR_ARGUMENT, "wl_decode_tensor: out is NULL");

    const uint8_t* blob = m->bytes.data() + m->data_start + t->offset;  // in bounds: checked at open
    if (wl::crc32(blob, size_t(t->length)) != t->crc32)
        malformed(*m, "tensor " + quoted(t->name) + ": checksum mismatch (the data is corrupted)");

    if (t->kind == WL_KIND_RAW) {
        if (std::strcmp(t->dtype->name, "bool") == 0)
            for (uint64_t i = 0; i < t->length; ++i)
                if (blob[i] > 1) malformed(*m, "tensor " + quoted(t->name) + ": boolean bytes other than 0 and 1");
        if (need) std::memcpy(out, blob, need);  // the file is little-endian, like the host
        return;
    }

    if (t->kind == WL_KIND_EXACT) {
        decode_exact(*m, *t, blob, out);
        return;
    }
    Layer layer = parse_layer(*m, *t, blob, t->length);
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    const size_t n = size_t(t->numel);
    if (n == 0) return;
    auto decode_into = [&](uint64_t begin, uint64_t end, float* dst) {
        try {
            wl::decode_weights(layer.filter, begin, end, layer.codebook.data(), uint32_t(layer.codebook.size()), dst,
                               threads);
        } catch (const std::invalid_argument& e) {  // e.g. an unknown WEIGHTLESS_ISA
            fail(WL_ERR_ARGUMENT, std::string("decode: ") + e.what());
        } catch (const std::system_error& e) {
            fail(WL_ERR_INTERNAL, std::string("decode: ") + e.what());
        }
    };
    if (t->dtype->itemsize == 4 && reinterpret_cast<uintptr_t>(out) % alignof(float) == 0) {
        decode_into(0, n, static_cast<float*>(out));
        return;
    }
    // Another dtype, or an unaligned buffer: decode to float32 a chunk at a time, so the extra
    // memory is a small constant (kDecodeChunk floats) whatever the tensor's size.
    std::vector<float> tmp(std::min<size_t>(n, kDecodeChunk));
    uint8_t* o = static_cast<uint8_t*>(out);
    const size_t item = t->dtype->itemsize;
    for (size_t begin = 0; begin < n; begin += tmp.size()) {
        const size_t count = std::min(tmp.size(), n - begin);
        decode_into(begin, begin + count, tmp.data());
        uint8_t* at = o + begin * item;
        switch (item) {
            case 4: std::memcpy(at, tmp.data(), count * 4); break;
            case 2: {
                const bool brain = std::strcmp(t->dtype->name, "bfloat16") == 0;
                for (size_t i = 0; i < count; ++i) {
                    uint16_t h = brain ? float_to_bfloat16(tmp[i]) : float_to_half(tmp[i]);
                    std::memcpy(at + 2 * i, &h, 2);
                }
                break;
            }
            case 8:
                for (size_t i = 0; i < count; ++i) {
                    double d = tmp[i];
                    std::memcpy(at + 8 * i, &d, 8);
                }
                break;
            default: fail(WL_ERR_INTERNAL, "unexpected itemsize");
        }
    }
}

}  // namespace

extern "C" {

int wl_open_buffer_ex(const void* data, size_t size, wl_model** out, char* err, size_t errlen) {
    if (out) *out = nullptr;
    wl_model* model = nullptr;
    int status = guarded(err, errlen, [&] {
        if (!out) fail(WL_ERR_ARGUMENT, "wl_open_buffer: out is NULL");
        if (!data && size) fail(WL_ERR_ARGUMENT, "wl_open_buffer: data is NULL");
        std::unique_ptr<wl_model> m(new wl_model);
        m->source = "<buffer>";
        if (size) m->bytes.assign(static_cast<const uint8_t*>(data), static_cast<const uint8_t*>(data) + size);
        parse_container(*m);
        model = m.release();
    });
    if (out) *out = model;
    return status;
}

int wl_open_file_ex(const char* path, wl_model** out, char* err, size_t errlen) {
    if (out) *out = nullptr;
    wl_model* model = nullptr;
    int status = guarded(err, errlen, [&] {
        if (!out) fail(WL_ERR_ARGUMENT, "wl_open_file: out is NULL");
        if (!path) fail(WL_ERR_ARGUMENT, "wl_open_file: path is NULL");
        std::unique_ptr<wl_model> m(new wl_model);
        m->source = path;
        read_file(path, &m->bytes);
        parse_container(*m);
        model = m.release();
    });
    if (out) *out = model;
    return status;
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

size_t wl_tensor_count(const wl_model* model) { return model ? model->tensors.size() : 0; }

const char* wl_tensor_name(const wl_model* model, size_t index) {
    const wl_tensor_entry* t = entry(model, index);
    return t ? t->name.c_str() : nullptr;
}

const char* wl_tensor_dtype(const wl_model* model, size_t index) {
    const wl_tensor_entry* t = entry(model, index);
    return t ? t->dtype->name : nullptr;
}

int wl_tensor_kind(const wl_model* model, size_t index) {
    const wl_tensor_entry* t = entry(model, index);
    return t ? t->kind : -1;
}

size_t wl_tensor_ndim(const wl_model* model, size_t index) {
    const wl_tensor_entry* t = entry(model, index);
    return t ? t->shape.size() : 0;
}

const uint64_t* wl_tensor_shape(const wl_model* model, size_t index) {
    const wl_tensor_entry* t = entry(model, index);
    return t && !t->shape.empty() ? t->shape.data() : nullptr;
}

uint64_t wl_tensor_numel(const wl_model* model, size_t index) {
    const wl_tensor_entry* t = entry(model, index);
    return t ? t->numel : 0;
}

size_t wl_tensor_itemsize(const wl_model* model, size_t index) {
    const wl_tensor_entry* t = entry(model, index);
    return t ? t->dtype->itemsize : 0;
}

size_t wl_tensor_nbytes(const wl_model* model, size_t index) {
    const wl_tensor_entry* t = entry(model, index);
    return t ? nbytes_of(*t) : 0;
}

uint64_t wl_tensor_stored_bytes(const wl_model* model, size_t index) {
    const wl_tensor_entry* t = entry(model, index);
    return t ? t->length : 0;
}

int wl_find_tensor(const wl_model* model, const char* name, size_t* index) {
    if (!model || !name || !index) return WL_ERR_ARGUMENT;
    for (size_t i = 0; i < model->tensors.size(); ++i)
        if (model->tensors[i].name == name) {
            *index = i;
            return WL_OK;
        }
    return WL_ERR_ARGUMENT;
}

int wl_decode_tensor(const wl_model* model, size_t index, void* out, size_t out_bytes, unsigned threads, char* err,
                     size_t errlen) {
    return guarded(err, errlen, [&] { decode(model, index, out, out_bytes, threads); });
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
