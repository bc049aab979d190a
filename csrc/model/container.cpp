// The .wl container, version 3: reader, writer and decoders (container.h; the byte layout is
// docs/FORMAT.md, "The model container, version 3").
#include "model/container.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <thread>
#include <unordered_set>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codecs/exact.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the .wl reader writes tensors in host byte order and assumes a little-endian host"
#endif
static_assert(sizeof(float) == 4 && std::numeric_limits<float>::is_iec559, "float must be IEEE binary32");
static_assert(sizeof(double) == 8 && std::numeric_limits<double>::is_iec559, "double must be IEEE binary64");

namespace wl::model {
namespace {

constexpr char kMagic[4] = {'W', 'L', 'M', 'F'};
// Floats decoded at a time when the output needs converting (another dtype, an unaligned buffer),
// so the extra memory is a small constant whatever the tensor's size.
constexpr size_t kDecodeChunk = size_t(1) << 18;
constexpr uint64_t kMaxNumel = uint64_t(1) << 62;

struct DtypeInfo {
    const char* name;
    size_t itemsize;
    bool is_float;
};
constexpr DtypeInfo kDtypes[kNumDtypes] = {
    {"bool", 1, false},    {"int8", 1, false},    {"int16", 2, false},   {"int32", 4, false},  {"int64", 8, false},
    {"uint8", 1, false},   {"uint16", 2, false},  {"uint32", 4, false},  {"uint64", 8, false}, {"float16", 2, true},
    {"bfloat16", 2, true}, {"float32", 4, true},  {"float64", 8, true},
};
constexpr uint8_t kBool = 0, kFloat16Dtype = 9, kBfloat16Dtype = 10, kFloat32Dtype = 11;
constexpr const char* kCodecNames[kNumCodecs] = {"raw", "bloomier", "exact", "float16"};

[[noreturn]] void malformed(const std::string& what) { throw FormatError(what); }

uint32_t le32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }

void put_le(std::vector<uint8_t>& out, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; ++i) out.push_back(uint8_t(v >> (8 * i)));
}

void put_varint(std::vector<uint8_t>& out, uint64_t v) {
    while (v >= 0x80) {
        out.push_back(uint8_t(v | 0x80));
        v >>= 7;
    }
    out.push_back(uint8_t(v));
}

size_t varint_size(uint64_t v) {
    size_t n = 1;
    for (; v >= 0x80; v >>= 7) ++n;
    return n;
}

// A bounds-checked cursor over a byte range; every read names what it reads in its error.
struct Cursor {
    const uint8_t* p;
    size_t n;
    size_t at = 0;

    size_t left() const { return n - at; }
    const uint8_t* take(size_t k, const char* what) {
        if (k > left()) malformed(std::string("truncated ") + what);
        const uint8_t* q = p + at;
        at += k;
        return q;
    }
    uint8_t byte(const char* what) { return *take(1, what); }
    // Unsigned LEB128, canonical, below 2^64 (the rules of the exact codec's varints).
    uint64_t varint(const char* what) {
        uint64_t v = 0;
        for (unsigned i = 0; i < 10; ++i) {
            const uint8_t b = byte(what);
            if (i == 9 && b > 1) malformed(std::string(what) + " does not fit in 64 bits");
            v |= uint64_t(b & 0x7F) << (7 * i);
            if (!(b & 0x80)) {
                if (b == 0 && i > 0) malformed(std::string(what) + " is not a canonical varint");
                return v;
            }
        }
        malformed(std::string(what) + " does not fit in 64 bits");
    }
};

bool valid_utf8(const uint8_t* s, size_t n) {
    for (size_t i = 0; i < n;) {
        const uint8_t c = s[i];
        if (c < 0x80) {
            if (c == 0) return false;  // names are C strings in the C API
            ++i;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
        else return false;
        if (len > n - i) return false;
        for (size_t k = 1; k < len; ++k) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = cp << 6 | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

// Product of the dimensions, 0 if one is 0; each partial product at most 2^62, and the decoded
// bytes below 2^63 (so byte counts never overflow). Throws FormatError otherwise.
uint64_t numel_of(const std::vector<uint64_t>& shape, size_t itemsize) {
    for (uint64_t d : shape)
        if (d == 0) return 0;
    uint64_t p = 1;
    for (uint64_t d : shape) {
        if (d > kMaxNumel / p) malformed("shape too large");
        p *= d;
    }
    if (p > (std::numeric_limits<uint64_t>::max() >> 1) / itemsize) malformed("shape too large");
    return p;
}

}  // namespace

// A name in an error message: quoted, control characters, quote and backslash escaped, so that
// every message stays one line whatever the file's names hold.
std::string quoted(const std::string& s) {
    static const char hex[] = "0123456789abcdef";
    std::string out = "'";
    for (unsigned char c : s) {
        if (c < 0x20 || c == 0x7F || c == '\'' || c == '\\') {
            out += c == '\'' ? "\\'" : c == '\\' ? "\\\\" : std::string("\\x") + hex[c >> 4] + hex[c & 15];
        } else {
            out += char(c);
        }
    }
    return out + "'";
}

namespace {

// The checks a reader and the writer share: ids, the shape, and what the codec allows.
void check_entry(Entry& e) {
    const std::string where = "tensor " + quoted(e.name) + ": ";
    if (e.dtype >= kNumDtypes) malformed(where + "unknown dtype id " + std::to_string(e.dtype));
    if (e.codec >= kNumCodecs) malformed(where + "unknown codec id " + std::to_string(e.codec));
    if (e.shape.size() > kMaxNdim) malformed(where + "more than 64 dimensions");
    try {
        e.numel = numel_of(e.shape, kDtypes[e.dtype].itemsize);
    } catch (const FormatError& err) {
        malformed(where + err.what());
    }
    if (e.codec != kRaw && !kDtypes[e.dtype].is_float)
        malformed(where + kCodecNames[e.codec] + " needs a floating dtype, not " + kDtypes[e.dtype].name);
    if (e.codec == kRaw && e.length != e.numel * kDtypes[e.dtype].itemsize)
        malformed(where + std::to_string(e.length) + " bytes for " + std::to_string(e.numel) + " " +
                  kDtypes[e.dtype].name);
    if (e.codec == kFloat16 && e.length != e.numel * 2)
        malformed(where + std::to_string(e.length) + " bytes for " + std::to_string(e.numel) + " float16 values");
}

void store_floats(uint8_t dtype, const float* values, size_t n, uint8_t* out) {
    switch (kDtypes[dtype].itemsize) {
        case 4: std::memcpy(out, values, 4 * n); break;
        case 2:
            for (size_t i = 0; i < n; ++i) {
                const uint16_t h = dtype == kBfloat16Dtype ? float_to_bfloat16(values[i]) : float_to_half(values[i]);
                std::memcpy(out + 2 * i, &h, 2);
            }
            break;
        default:
            for (size_t i = 0; i < n; ++i) {
                const double d = values[i];
                std::memcpy(out + 8 * i, &d, 8);
            }
    }
}

class MemorySource final : public Source {
public:
    explicit MemorySource(std::vector<uint8_t> bytes) : bytes_(std::move(bytes)) {}
    uint64_t size() const override { return bytes_.size(); }
    void read(uint64_t offset, void* out, size_t n) const override {
        if (n) std::memcpy(out, bytes_.data() + offset, n);
    }
    const uint8_t* data() const override { return bytes_.data(); }

private:
    std::vector<uint8_t> bytes_;
};

class FileSource final : public Source {
public:
    explicit FileSource(const std::string& path) {
        fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd_ < 0) throw IoError(std::strerror(errno));
        struct stat st;
        if (::fstat(fd_, &st) != 0) {
            const int e = errno;
            ::close(fd_);
            throw IoError(std::strerror(e));
        }
        if (!S_ISREG(st.st_mode)) {
            ::close(fd_);
            throw IoError(S_ISDIR(st.st_mode) ? "is a directory, not a .wl file" : "not a regular file");
        }
        size_ = uint64_t(st.st_size);
    }
    ~FileSource() override { ::close(fd_); }
    uint64_t size() const override { return size_; }
    void read(uint64_t offset, void* out, size_t n) const override {
        uint8_t* o = static_cast<uint8_t*>(out);
        while (n) {
            const ssize_t got = ::pread(fd_, o, std::min<size_t>(n, size_t(1) << 30), off_t(offset));
            if (got < 0 && errno == EINTR) continue;
            if (got < 0) throw IoError(std::strerror(errno));
            if (got == 0) throw IoError("the file changed while it was read");
            o += got, offset += uint64_t(got), n -= size_t(got);
        }
    }

private:
    int fd_ = -1;
    uint64_t size_ = 0;
};

// Calls fn(bytes, size) with payload i, its CRC-32 checked: in place for an in-memory image, else
// read into a buffer (whose size the directory bounded by the file's).
template <class Fn>
void with_payload(const Source& src, const Entry& e, Fn&& fn) {
    std::vector<uint8_t> buf;
    const uint8_t* p = src.data() ? src.data() + e.offset : nullptr;
    if (!p) {
        buf.resize(size_t(e.length));
        src.read(e.offset, buf.data(), buf.size());
        p = buf.data();
    }
    if (crc32(p, size_t(e.length)) != e.crc32) malformed("tensor " + quoted(e.name) + ": checksum mismatch (the data is corrupted)");
    fn(p, size_t(e.length));
}

Filter filter_of(const BloomierPayload& b) { return deserialize(b.filter, b.filter_size); }

void decode_bloomier(const Entry& e, const uint8_t* p, size_t n, void* out, unsigned threads) {
    BloomierPayload b = parse_bloomier(p, n, e.shape);
    const Filter filter = filter_of(b);
    std::vector<uint64_t> positions;
    std::vector<uint32_t> codes;
    std::vector<float> outlier_book;
    if (!b.outliers.empty()) {
        ExactInfo info = exact_info(b.outliers.data(), b.outliers.size());
        positions.resize(size_t(info.kept));  // kept <= numel: at most 3x the output's bytes
        codes.resize(size_t(info.kept));
        exact_decode_sparse(b.outliers.data(), b.outliers.size(), positions.data(), codes.data(), info.kept);
        outlier_book = std::move(info.codebook);
    }
    if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
    const size_t total = size_t(e.numel), item = kDtypes[e.dtype].itemsize;
    const bool direct = item == 4 && reinterpret_cast<uintptr_t>(out) % alignof(float) == 0;
    std::vector<float> tmp(direct ? 0 : std::min(total, kDecodeChunk));
    const size_t step = direct ? std::max<size_t>(total, 1) : tmp.size();
    size_t k = 0;  // next outlier (positions ascend)
    for (size_t begin = 0; begin < total; begin += step) {
        const size_t count = std::min(step, total - begin);
        float* dst = direct ? static_cast<float*>(out) : tmp.data();
        decode_weights(filter, begin, begin + count, b.codebook.data(), uint32_t(b.codebook.size()), dst, threads);
        for (; k < positions.size() && positions[k] < begin + count; ++k) dst[positions[k] - begin] = outlier_book[codes[k]];
        if (!direct) store_floats(e.dtype, dst, count, static_cast<uint8_t*>(out) + begin * item);
    }
}

void decode_exact(const Entry& e, const uint8_t* p, size_t n, void* out) {
    const std::vector<uint8_t> full = exact_full(p, n, e.shape);  // headless in the file
    exact_info(full.data(), full.size());  // the tables; its shape is the tensor's by construction
    const size_t total = size_t(e.numel);
    if (total == 0) return;
    const bool direct = kDtypes[e.dtype].itemsize == 4 && reinterpret_cast<uintptr_t>(out) % alignof(float) == 0;
    std::vector<float> tmp(direct ? 0 : total);  // the exact decoder writes every position at once
    float* dst = direct ? static_cast<float*>(out) : tmp.data();
    exact_decode_weights(full.data(), full.size(), dst, e.numel);
    if (!direct) store_floats(e.dtype, dst, total, static_cast<uint8_t*>(out));
}

void decode_float16(const Entry& e, const uint8_t* p, void* out) {
    const size_t total = size_t(e.numel);
    if (e.dtype == kFloat16Dtype) {  // the payload is already the output, bit for bit
        if (total) std::memcpy(out, p, 2 * total);
        return;
    }
    std::vector<float> tmp(std::min(total, kDecodeChunk));
    const size_t item = kDtypes[e.dtype].itemsize;
    for (size_t begin = 0; begin < total; begin += tmp.size()) {
        const size_t count = std::min(tmp.size(), total - begin);
        for (size_t i = 0; i < count; ++i) tmp[i] = half_to_float(uint16_t(p[2 * (begin + i)] | p[2 * (begin + i) + 1] << 8));
        store_floats(e.dtype, tmp.data(), count, static_cast<uint8_t*>(out) + begin * item);
    }
}

}  // namespace

const char* dtype_name(uint8_t dtype) { return dtype < kNumDtypes ? kDtypes[dtype].name : nullptr; }
size_t dtype_itemsize(uint8_t dtype) { return dtype < kNumDtypes ? kDtypes[dtype].itemsize : 0; }
bool dtype_is_float(uint8_t dtype) { return dtype < kNumDtypes && kDtypes[dtype].is_float; }
int dtype_id(const std::string& name) {
    for (uint8_t i = 0; i < kNumDtypes; ++i)
        if (name == kDtypes[i].name) return i;
    return -1;
}
const char* codec_name(uint8_t codec) { return codec < kNumCodecs ? kCodecNames[codec] : nullptr; }

std::shared_ptr<const Source> memory_source(std::vector<uint8_t> bytes) {
    return std::make_shared<MemorySource>(std::move(bytes));
}
std::shared_ptr<const Source> file_source(const std::string& path) { return std::make_shared<FileSource>(path); }

// ---------------------------------------------------------------------------------- reading

Reader::Reader(std::shared_ptr<const Source> source) : source_(std::move(source)) {
    const Source& src = *source_;
    const uint64_t size = src.size();
    uint8_t pre[kPreambleSize];
    src.read(0, pre, std::min<uint64_t>(size, kPreambleSize));
    if (size < 4 || std::memcmp(pre, kMagic, 4) != 0) malformed("not a weightless model file (bad magic)");
    if (size < kPreambleSize) malformed("truncated (" + std::to_string(size) + " bytes)");
    const uint16_t version = uint16_t(pre[4] | pre[5] << 8), flags = uint16_t(pre[6] | pre[7] << 8);
    if (version == 1)
        throw UnsupportedError("a version 1 .wl file; this reader reads version 3 (rewrite it from Python: "
                               "weightless compress reads only model files, so decompress it and compress again)");
    if (version != kVersion)
        throw UnsupportedError("unsupported .wl version " + std::to_string(version) + " (this reader reads version 3)");
    if (flags) throw UnsupportedError("unknown flags 0x" + std::to_string(flags) + " (this reader knows none)");
    if (size < kPreambleSize + kTrailerSize) malformed("truncated (" + std::to_string(size) + " bytes)");

    uint8_t tr[kTrailerSize];
    src.read(size - kTrailerSize, tr, kTrailerSize);
    if (std::memcmp(tr + 12, kMagic, 4) != 0) malformed("no trailer (the file is truncated)");
    const uint64_t dir_len = le32(tr), meta_len = le32(tr + 4);
    const uint64_t room = size - kPreambleSize - kTrailerSize;
    if (dir_len > room || meta_len > room - dir_len)
        malformed("truncated (directory of " + std::to_string(dir_len) + " and metadata of " + std::to_string(meta_len) +
                  " bytes in a " + std::to_string(size) + "-byte file)");
    const uint64_t dir_start = size - kTrailerSize - meta_len - dir_len;
    metadata_offset_ = dir_start + dir_len;
    metadata_length_ = meta_len;

    std::vector<uint8_t> dir(static_cast<size_t>(dir_len));  // bounded by the file's size, just checked
    src.read(dir_start, dir.data(), dir.size());
    uint32_t crc = crc32(dir.data(), dir.size());
    std::vector<uint8_t> chunk(size_t(std::min<uint64_t>(meta_len, uint64_t(1) << 20)));
    for (uint64_t at = 0; at < meta_len; at += chunk.size()) {  // streamed: the metadata is not kept
        const size_t k = size_t(std::min<uint64_t>(chunk.size(), meta_len - at));
        src.read(metadata_offset_ + at, chunk.data(), k);
        crc = crc32(chunk.data(), k, crc);
    }
    if (crc != le32(tr + 8)) malformed("checksum mismatch in the directory (the file is truncated or corrupted)");

    Cursor c{dir.data(), dir.size()};
    const uint64_t count = c.varint("tensor count");
    if (count > c.left() / 9) malformed("the directory is too short for " + std::to_string(count) + " tensors");
    entries_.reserve(size_t(count));
    uint64_t offset = kPreambleSize;
    for (uint64_t i = 0; i < count; ++i) {
        Entry e;
        const uint64_t name_len = c.varint("name length");
        if (name_len > c.left()) malformed("truncated name of tensor #" + std::to_string(i));
        const uint8_t* name = c.take(size_t(name_len), "name");
        if (!valid_utf8(name, size_t(name_len))) malformed("the name of tensor #" + std::to_string(i) + " is not valid UTF-8 (or holds NUL)");
        e.name.assign(reinterpret_cast<const char*>(name), size_t(name_len));
        e.dtype = c.byte("dtype");
        e.codec = c.byte("codec");
        const uint8_t ndim = c.byte("ndim");
        if (ndim > kMaxNdim) malformed("tensor " + quoted(e.name) + ": more than 64 dimensions");
        for (unsigned d = 0; d < ndim; ++d) e.shape.push_back(c.varint("dimension"));
        e.length = c.varint("payload length");
        e.crc32 = le32(c.take(4, "CRC-32"));
        if (e.length > dir_start - offset)
            malformed("tensor " + quoted(e.name) + ": its payload extends past the payload area");
        e.offset = offset;
        offset += e.length;
        check_entry(e);
        entries_.push_back(std::move(e));
    }
    if (c.left()) malformed(std::to_string(c.left()) + " bytes left over after the directory");
    if (offset != dir_start)
        malformed("the payloads take " + std::to_string(offset - kPreambleSize) + " bytes but the payload area has " +
                  std::to_string(dir_start - kPreambleSize));
    std::vector<const std::string*> names;
    names.reserve(entries_.size());
    for (const Entry& e : entries_) names.push_back(&e.name);
    std::sort(names.begin(), names.end(), [](const std::string* a, const std::string* b) { return *a < *b; });
    for (size_t i = 1; i < names.size(); ++i)
        if (*names[i] == *names[i - 1]) malformed("tensor " + quoted(*names[i]) + " appears twice");
}

size_t Reader::find(const std::string& name) const {
    for (size_t i = 0; i < entries_.size(); ++i)
        if (entries_[i].name == name) return i;
    return entries_.size();
}

std::vector<uint8_t> Reader::metadata() const {
    std::vector<uint8_t> out(static_cast<size_t>(metadata_length_));
    source_->read(metadata_offset_, out.data(), out.size());
    return out;
}

std::vector<uint8_t> Reader::payload(size_t i) const {
    std::vector<uint8_t> out;
    with_payload(*source_, entries_.at(i), [&](const uint8_t* p, size_t n) { out.assign(p, p + n); });
    return out;
}

uint64_t Reader::decoded_bytes(size_t i) const {
    const Entry& e = entries_.at(i);
    return e.numel * kDtypes[e.dtype].itemsize;  // below 2^63 (numel_of)
}

void Reader::decode(size_t i, void* out, size_t out_bytes, unsigned threads) const {
    const Entry& e = entries_.at(i);
    const uint64_t need = decoded_bytes(i);
    if (e.codec == kBloomier) active_isa();  // a bad WEIGHTLESS_ISA is the caller's error, not the file's
    if (need > out_bytes) throw std::invalid_argument("tensor " + quoted(e.name) + " needs " + std::to_string(need) + " bytes, the buffer has " + std::to_string(out_bytes));
    with_payload(*source_, e, [&](const uint8_t* p, size_t n) {
        try {
            switch (e.codec) {
                case kRaw:
                    if (e.dtype == kBool)
                        for (size_t k = 0; k < n; ++k)
                            if (p[k] > 1) malformed("boolean bytes other than 0 and 1");
                    if (n) std::memcpy(out, p, n);  // the file is little-endian, like the host
                    break;
                case kFloat16: decode_float16(e, p, out); break;
                case kExact: decode_exact(e, p, n, out); break;
                default: decode_bloomier(e, p, n, out, threads);
            }
        } catch (const std::invalid_argument& err) {  // the payload's framing, or the codecs' own checks
            malformed("tensor " + quoted(e.name) + ": " + err.what());
        }
    });
}

// ------------------------------------------------------------------------ headless exact payloads

namespace {

constexpr uint8_t kExactMagic[4] = {'W', 'L', 'E', 'X'};

// exact_full, its messages starting with `what` ("exact payload" or "outliers").
std::vector<uint8_t> rebuild_exact(const uint8_t* data, size_t size, const std::vector<uint64_t>& shape,
                                   const std::string& what) {
    if (shape.size() > kExactMaxNdim)
        malformed(what + ": the exact codec stores at most 32 dimensions, the tensor has " + std::to_string(shape.size()));
    uint64_t numel;
    try {
        numel = numel_of(shape, 1);
    } catch (const FormatError& err) {
        malformed(what + ": " + err.what());
    }
    const std::string of = what + (what.back() == 's' ? "' " : "'s ");  // "outliers' ", "exact payload's "
    Cursor c{data, size};
    const uint8_t version = c.byte((of + "version").c_str());
    if (version != kExactVersion)
        malformed(what + ": exact codec version " + std::to_string(version) + " (this reader reads 1)");
    const uint8_t modes = c.byte((of + "modes").c_str());
    const uint8_t ways = c.byte((of + "ways").c_str());
    const unsigned code_mode = (modes >> 2) & 3;
    if ((modes >> 4) || (modes & 3) > 1) malformed(what + ": unknown modes (byte " + std::to_string(modes) + ")");
    if (ways > 2) malformed(what + ": more than 4 rANS states per stream");
    const uint64_t kept = c.varint((of + "kept count").c_str());
    if (kept > numel)
        malformed(what + ": " + std::to_string(kept) + " kept weights for " + std::to_string(numel) + " positions");
    const uint64_t k = c.varint((of + "codebook size").c_str());
    if (k > kExactMaxClusters) malformed(what + ": " + std::to_string(k) + " clusters, more than 4096");
    if (kept && !k) malformed(what + ": kept weights without a codebook");
    if (code_mode && k > kExactMaxContextClusters)
        malformed(what + ": code contexts with " + std::to_string(k) + " clusters, more than 256");
    c.take(size_t(4 * k), (of + "codebook").c_str());
    for (const char* part : {"table section", "gap stream", "code stream"}) {
        const uint64_t len = c.varint((of + part + " size").c_str());
        if (len > c.left()) malformed("truncated " + of + part);
        c.take(size_t(len), part);
    }
    if (c.left()) malformed(what + ": " + std::to_string(c.left()) + " bytes after the code stream");
    // The framing holds: rebuild the codec's own payload (at most 8 + 10 * 32 bytes more).
    std::vector<uint8_t> out;
    out.reserve(size + 8 + 10 * shape.size() + 4);
    out.insert(out.end(), kExactMagic, kExactMagic + 4);
    out.push_back(version);
    out.push_back(uint8_t(shape.size()));
    out.push_back(modes);
    out.push_back(ways);
    for (uint64_t d : shape) put_varint(out, d);
    out.insert(out.end(), data + 3, data + size);
    put_le(out, crc32(out.data(), out.size()), 4);
    return out;
}

}  // namespace

std::vector<uint8_t> exact_full(const uint8_t* headless, size_t size, const std::vector<uint64_t>& shape) {
    return rebuild_exact(headless, size, shape, "exact payload");
}

std::vector<uint8_t> exact_headless(const uint8_t* full, size_t size, const std::vector<uint64_t>& shape) {
    const ExactInfo info = exact_info(full, size);  // std::invalid_argument if malformed
    if (info.shape != shape) throw std::invalid_argument("the exact payload's shape is not the tensor's");
    // magic 4, version, ndim, modes, ways, the shape's varints (canonical: exact_info checked them)
    size_t head = 8;
    for (uint64_t d : shape) head += varint_size(d);
    std::vector<uint8_t> out;
    out.reserve(size - head - 4 + 3);
    out.push_back(full[4]), out.push_back(full[6]), out.push_back(full[7]);
    out.insert(out.end(), full + head, full + size - 4);
    return out;
}

// ------------------------------------------------------------------------------ bloomier payload

BloomierPayload parse_bloomier(const uint8_t* data, size_t size, const std::vector<uint64_t>& shape) {
    Cursor c{data, size};
    BloomierPayload b;
    const uint64_t clusters = c.varint("clusters");
    if (clusters > kMaxClusters) malformed("more than 65536 clusters");
    b.false_positives = c.varint("false positives");
    const uint8_t* book = c.take(size_t(4 * clusters), "codebook");
    b.codebook.resize(size_t(clusters));
    for (size_t i = 0; i < b.codebook.size(); ++i) {
        const uint32_t bits = le32(book + 4 * i);
        std::memcpy(&b.codebook[i], &bits, 4);
        if (!std::isfinite(b.codebook[i])) malformed("the codebook is not finite");
    }
    const uint64_t filter_size = c.varint("filter length");
    if (filter_size > c.left()) malformed("truncated filter");
    b.filter_size = size_t(filter_size);
    b.filter = c.take(b.filter_size, "filter");
    uint64_t numel = 1;
    for (uint64_t d : shape) numel *= d;  // the caller's shape, checked by check_entry
    const Filter f = deserialize(b.filter, b.filter_size);
    if (f.num_keys > numel || b.false_positives > numel - f.num_keys)
        malformed("more kept weights or false positives than positions");
    if (clusters > (uint64_t(1) << f.value_bits)) malformed("more clusters than the filter's values can name");
    if (c.left()) {  // the outliers, headless: checked, then rebuilt
        b.outliers = rebuild_exact(data + c.at, c.left(), shape, "outliers");
        const ExactInfo info = exact_info(b.outliers.data(), b.outliers.size());
        for (float v : info.codebook)
            if (!std::isfinite(v)) malformed("the outliers' codebook is not finite");
    }
    return b;
}

std::vector<uint8_t> bloomier_payload(const float* codebook, size_t clusters, uint64_t false_positives,
                                      const uint8_t* filter, size_t filter_size, const uint8_t* outliers,
                                      size_t outliers_size, const std::vector<uint64_t>& shape) {
    std::vector<uint8_t> headless;
    if (outliers_size) {
        try {
            headless = exact_headless(outliers, outliers_size, shape);
        } catch (const std::invalid_argument& err) {
            throw std::invalid_argument(std::string("the outliers: ") + err.what());
        }
    }
    std::vector<uint8_t> out;
    out.reserve(30 + 4 * clusters + filter_size + headless.size());
    put_varint(out, clusters);
    put_varint(out, false_positives);
    for (size_t i = 0; i < clusters; ++i) {
        uint32_t bits;
        std::memcpy(&bits, &codebook[i], 4);
        put_le(out, bits, 4);
    }
    put_varint(out, filter_size);
    out.insert(out.end(), filter, filter + filter_size);
    out.insert(out.end(), headless.begin(), headless.end());
    return out;
}

// ---------------------------------------------------------------------------------- writing

Writer::Writer() { emit(kMagic, 4), emit("\x03\x00\x00\x00", 4); }

Writer::Writer(const std::string& path) : path_(path) {
    file_ = std::fopen(path.c_str(), "wb");
    if (!file_) throw IoError(path + ": " + std::strerror(errno));
    emit(kMagic, 4), emit("\x03\x00\x00\x00", 4);
}

Writer::~Writer() {
    if (file_) std::fclose(file_);  // an unfinished file: the caller removes it
}

void Writer::emit(const void* data, size_t n) {
    if (!n) return;
    if (file_) {
        if (std::fwrite(data, 1, n, file_) != n) throw IoError(path_ + ": " + std::strerror(errno));
    } else {
        const uint8_t* p = static_cast<const uint8_t*>(data);
        image_.insert(image_.end(), p, p + n);
    }
    written_ += n;
}

void Writer::append(const std::string& name, uint8_t dtype, uint8_t codec, const std::vector<uint64_t>& shape,
                    const uint8_t* payload, size_t length) {
    if (finished_) throw std::invalid_argument("the .wl writer is finished");
    if (!valid_utf8(reinterpret_cast<const uint8_t*>(name.data()), name.size()))
        throw std::invalid_argument("tensor name " + quoted(name) + " is not valid UTF-8 or holds NUL");
    if (std::find(names_.begin(), names_.end(), name) != names_.end())
        throw std::invalid_argument("tensor " + quoted(name) + " appears twice");
    Entry e;
    e.name = name, e.dtype = dtype, e.codec = codec, e.shape = shape, e.length = length;
    try {
        check_entry(e);
        // A coded payload is checked as a reader checks it, so the writer cannot make a file the
        // reader refuses.
        try {
            if (codec == kBloomier) parse_bloomier(payload, length, shape);
            if (codec == kExact) {  // headless (exact_headless): rebuilt and checked as a reader does
                const std::vector<uint8_t> full = exact_full(payload, length, shape);
                exact_info(full.data(), full.size());
            }
        } catch (const std::invalid_argument& err) {
            malformed("tensor " + quoted(name) + ": " + err.what());
        }
    } catch (const std::invalid_argument& err) {
        throw std::invalid_argument(std::string("cannot write: ") + err.what());
    }
    const uint32_t crc = crc32(payload, length);
    emit(payload, length);
    put_varint(directory_, name.size());
    directory_.insert(directory_.end(), name.begin(), name.end());
    directory_.push_back(dtype), directory_.push_back(codec), directory_.push_back(uint8_t(shape.size()));
    for (uint64_t d : shape) put_varint(directory_, d);
    put_varint(directory_, length);
    put_le(directory_, crc, 4);
    names_.push_back(name);
    ++count_;
}

void Writer::finish(const uint8_t* metadata, size_t length) {
    if (finished_) throw std::invalid_argument("the .wl writer is finished");
    std::vector<uint8_t> dir;
    put_varint(dir, count_);
    dir.insert(dir.end(), directory_.begin(), directory_.end());
    if (dir.size() > UINT32_MAX || length > UINT32_MAX) throw std::invalid_argument("directory or metadata beyond 4 GiB");
    std::vector<uint8_t> trailer;
    put_le(trailer, dir.size(), 4);
    put_le(trailer, length, 4);
    put_le(trailer, crc32(metadata, length, crc32(dir.data(), dir.size())), 4);
    trailer.insert(trailer.end(), kMagic, kMagic + 4);
    emit(dir.data(), dir.size());
    emit(metadata, length);
    emit(trailer.data(), trailer.size());
    finished_ = true;
    if (file_) {
        const bool ok = std::fflush(file_) == 0;  // durability (fsync, rename) is the caller's
        const int e = errno;
        const bool closed = std::fclose(file_) == 0;
        file_ = nullptr;
        if (!ok || !closed) throw IoError(path_ + ": " + std::strerror(e));
    }
}

// ---------------------------------------------------------------------------- float conversions

// float32 -> IEEE half, round to nearest even (as numpy's astype); NaN stays a quiet NaN.
uint16_t float_to_half(float value) {
    uint32_t f;
    std::memcpy(&f, &value, 4);
    const uint32_t sign = (f >> 16) & 0x8000u, exp = (f >> 23) & 0xFFu, mant = f & 0x7FFFFFu;
    if (exp == 0xFF) return uint16_t(sign | 0x7C00u | (mant ? 0x200u | (mant >> 13) : 0u));
    const int e = int(exp) - 127 + 15;  // the half exponent field if the result is normal
    if (e >= 31) return uint16_t(sign | 0x7C00u);
    uint32_t sig;    // significand with the implicit bit (24 bits) ...
    uint32_t shift;  // ... shifted right by this to become the half significand field
    if (e >= 1) {
        sig = mant;
        shift = 13;
    } else {
        if (e < -10) return uint16_t(sign);  // below half the smallest subnormal (and exactly half: ties to 0)
        sig = mant | 0x800000u;
        shift = uint32_t(14 - e);  // 14..24
    }
    uint32_t q = sig >> shift;
    const uint32_t rem = sig & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) ++q;
    // For normals a carry out of the significand increments the exponent (possibly to inf); for
    // subnormals it turns into the smallest normal. Both come out right by addition.
    const uint32_t h = e >= 1 ? (uint32_t(e) << 10) + q : q;
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

float half_to_float(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu;
    uint32_t f;
    if (exp == 0x1F) {
        f = sign | 0x7F800000u | (mant << 13);  // inf, or NaN with its payload
    } else if (exp) {
        f = sign | ((exp + 112) << 23) | (mant << 13);
    } else if (mant == 0) {
        f = sign;
    } else {  // subnormal: normalise
        int e = -1;
        uint32_t m = mant;
        do {
            ++e;
            m <<= 1;
        } while (!(m & 0x400u));
        f = sign | (uint32_t(112 - e) << 23) | ((m & 0x3FFu) << 13);
    }
    float v;
    std::memcpy(&v, &f, 4);
    return v;
}

}  // namespace wl::model
