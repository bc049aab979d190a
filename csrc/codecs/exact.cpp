// Exact codec (exact.h): static-model rANS over gap and code symbols. Format: docs/FORMAT.md,
// "Exact codec". Encoder: symbolise, count per context, normalise tables, rANS in reverse.
// Decoder: check the checksum and header, build slot tables, then one forward pass.
#include "codecs/exact.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "weightless.h"

namespace wl {
namespace {

constexpr uint32_t kScaleBits = 12;
constexpr uint32_t kScale = 1u << kScaleBits;
constexpr uint32_t kRansL = 1u << 23;  // state in [L, 256 L): byte-wise renormalisation
constexpr uint32_t kDirectGaps = 16;   // gaps 0..15 are their own symbol
constexpr uint32_t kGapSymbols = 256;
constexpr uint8_t kMagic[4] = {'W', 'L', 'E', 'X'};

[[noreturn]] void malformed(const std::string& what) {
    throw std::invalid_argument("malformed exact payload: " + what);
}

// --- symbolisation ------------------------------------------------------------------------

// Gap g -> symbol, with `raw_bits` low bits of g stored verbatim (value `raw`).
inline uint32_t gap_symbol(uint64_t g, uint32_t* raw_bits, uint64_t* raw) {
    if (g < kDirectGaps) {
        *raw_bits = 0;
        *raw = 0;
        return uint32_t(g);
    }
    uint32_t e = 63 - uint32_t(__builtin_clzll(g));  // 4..63
    *raw_bits = e - 2;
    *raw = g & ((uint64_t(1) << (e - 2)) - 1);
    return kDirectGaps + (e - 4) * 4 + uint32_t((g >> (e - 2)) & 3);
}

inline uint32_t gap_context(uint32_t previous_symbol) {
    return previous_symbol == 0 ? 0 : previous_symbol < 4 ? 1 : 2;
}

// --- little-endian helpers ----------------------------------------------------------------

void put_varint(std::vector<uint8_t>& out, uint64_t v) {
    while (v >= 0x80) {
        out.push_back(uint8_t(v | 0x80));
        v >>= 7;
    }
    out.push_back(uint8_t(v));
}

struct Reader {
    const uint8_t* p;
    size_t size;
    size_t at = 0;

    uint8_t byte(const char* what) {
        if (at >= size) malformed(std::string("truncated in ") + what);
        return p[at++];
    }
    uint64_t varint(const char* what) {
        uint64_t v = 0;
        for (unsigned shift = 0;; shift += 7) {
            uint8_t b = byte(what);
            if (shift == 63 && b > 1) malformed(std::string("varint overflow in ") + what);
            v |= uint64_t(b & 0x7f) << shift;
            if (!(b & 0x80)) {
                if (shift && b == 0) malformed(std::string("non-canonical varint in ") + what);
                return v;
            }
            if (shift == 63) malformed(std::string("varint overflow in ") + what);
        }
    }
    const uint8_t* take(uint64_t n, const char* what) {
        if (n > size - at) malformed(std::string("truncated in ") + what);
        const uint8_t* q = p + at;
        at += size_t(n);
        return q;
    }
};

// --- frequency tables ---------------------------------------------------------------------

// Counts -> frequencies summing to kScale, every counted symbol at least 1. Deterministic.
std::vector<uint32_t> normalise(const std::vector<uint64_t>& counts) {
    std::vector<uint32_t> f(counts.size(), 0);
    uint64_t total = 0;
    for (uint64_t c : counts) total += c;
    if (total == 0) return {};
    size_t used = 0, largest = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
        if (!counts[i]) continue;
        ++used;
        if (counts[i] > counts[largest] || !counts[largest]) largest = i;
        long double share = (long double)counts[i] * kScale / (long double)total;
        f[i] = std::max<uint32_t>(1, uint32_t(share + 0.5L));
    }
    if (used > kScale) throw std::invalid_argument("exact_encode: more symbols than the table scale");
    int64_t sum = 0;
    for (uint32_t v : f) sum += v;
    if (sum < int64_t(kScale)) f[largest] += uint32_t(int64_t(kScale) - sum);
    while (sum > int64_t(kScale)) {  // take from the largest frequencies, keeping each >= 1
        size_t big = 0;
        for (size_t i = 0; i < f.size(); ++i)
            if (f[i] > f[big]) big = i;
        uint32_t take = uint32_t(std::min<int64_t>(sum - kScale, std::max<uint32_t>(1, f[big] / 16)));
        take = std::min(take, f[big] - 1);
        f[big] -= take;
        sum -= take;
    }
    while (!f.empty() && f.back() == 0) f.pop_back();
    return f;
}

struct EncTable {
    std::vector<uint32_t> freq, cum;
};

EncTable enc_table(const std::vector<uint64_t>& counts) {
    EncTable t;
    t.freq = normalise(counts);
    t.cum.resize(t.freq.size());
    uint32_t c = 0;
    for (size_t i = 0; i < t.freq.size(); ++i) {
        t.cum[i] = c;
        c += t.freq[i];
    }
    return t;
}

struct DecTable {
    std::vector<uint16_t> freq, cum, sym;  // sym: slot -> symbol, kScale entries
};

// --- raw bits -----------------------------------------------------------------------------

struct BitWriter {
    std::vector<uint8_t> bytes;
    uint64_t acc = 0;
    unsigned n = 0;
    void put(uint64_t v, unsigned k) {  // k <= 61
        while (k) {
            unsigned step = std::min(k, 32u);
            acc |= (v & ((uint64_t(1) << step) - 1)) << n;
            n += step;
            v >>= step;
            k -= step;
            while (n >= 8) {
                bytes.push_back(uint8_t(acc));
                acc >>= 8;
                n -= 8;
            }
        }
    }
    void finish() {
        if (n) bytes.push_back(uint8_t(acc));
        acc = 0;
        n = 0;
    }
};

struct BitReader {
    const uint8_t* p;
    size_t size;
    uint64_t bit = 0;
    uint64_t get32(unsigned k) {  // k <= 32
        if (k > size * 8 - bit) malformed("raw bit stream truncated");
        size_t at = size_t(bit >> 3);
        unsigned sh = unsigned(bit & 7);
        uint64_t w;
        if (size - at >= 8) {
            w = 0;
            for (unsigned i = 0; i < 8; ++i) w |= uint64_t(p[at + i]) << (8 * i);
        } else {
            w = 0;
            for (size_t i = 0; at + i < size; ++i) w |= uint64_t(p[at + i]) << (8 * i);
        }
        bit += k;
        return (w >> sh) & ((uint64_t(1) << k) - 1);
    }
    uint64_t get(unsigned k) {
        if (k <= 32) return get32(k);
        uint64_t lo = get32(32);
        return lo | (get32(k - 32) << 32);
    }
};

// --- modes and contexts -------------------------------------------------------------------

uint32_t gap_tables(uint32_t gap_mode) { return gap_mode == 0 ? 1 : 3; }
uint32_t code_tables(uint32_t code_mode, uint64_t k) { return code_mode == 0 ? 1 : uint32_t(k) + 1; }

// The 2-D view's row length: size / shape[0] (the whole tensor for 0-D and 1-D).
uint64_t row_length(const std::vector<uint64_t>& shape, uint64_t size) {
    if (shape.size() <= 1 || shape[0] == 0) return size ? size : 1;
    return size / shape[0];
}

// Walks the kept weights in order and reports each one's contexts. `Row` tracks the current
// row's end so that "same row" needs no division.
struct ContextTracker {
    uint32_t gap_mode, code_mode;
    uint64_t row_len;
    uint64_t row_end = 0;
    bool has_prev = false;
    uint64_t prev_pos = 0;
    uint32_t prev_code = 0, prev_gap_sym = kDirectGaps;  // first gap: context 2

    uint32_t gap_ctx() const { return gap_mode == 0 ? 0 : gap_context(prev_gap_sym); }
    // Code context of a kept weight at pos (called after gap decoding, before the code).
    uint32_t code_ctx(uint64_t pos) {
        if (code_mode == 0) return 0;
        bool same_row = has_prev && pos < row_end;
        if (!same_row) {
            while (row_end <= pos) row_end += row_len;  // O(rows) in all
            return 0;
        }
        if (code_mode == 1 && prev_pos + 1 != pos) return 0;
        return 1 + prev_code;
    }
    void advance(uint64_t pos, uint32_t gap_sym, uint32_t code) {
        has_prev = true;
        prev_pos = pos;
        prev_code = code;
        prev_gap_sym = gap_sym;
    }
};

struct Header {
    ExactInfo info;
    uint32_t k = 0;
    std::vector<DecTable> gap, code;
    const uint8_t* rans = nullptr;
    size_t rans_size = 0;
    const uint8_t* raw = nullptr;
    size_t raw_size = 0;
};

uint64_t checked_size(const uint64_t* shape, size_t ndim) {
    uint64_t size = 1;
    bool zero = false;
    for (size_t i = 0; i < ndim; ++i) {
        if (shape[i] == 0) zero = true;
        else if (!zero && size > (uint64_t(1) << 62) / shape[i]) return UINT64_MAX;
        else if (!zero) size *= shape[i];
    }
    return zero ? 0 : size;
}

DecTable read_table(Reader& r, uint32_t max_symbols) {
    DecTable t;
    uint64_t a = r.varint("table size");
    if (a == 0) return t;  // a context no symbol uses
    if (a > max_symbols) malformed("table has more symbols than its alphabet");
    t.freq.resize(size_t(a));
    t.cum.resize(size_t(a));
    t.sym.resize(kScale);
    uint32_t sum = 0;
    for (size_t i = 0; i < a; ++i) {
        uint64_t f = r.varint("table");
        if (f > kScale - sum) malformed("frequencies exceed the table scale");
        t.cum[i] = uint16_t(sum);
        t.freq[i] = uint16_t(f);
        for (uint32_t s = 0; s < f; ++s) t.sym[sum + s] = uint16_t(i);
        sum += uint32_t(f);
    }
    if (sum != kScale) malformed("frequencies do not sum to the table scale");
    if (t.freq.back() == 0) malformed("table ends in an unused symbol");
    return t;
}

Header parse(const uint8_t* data, size_t size) {
    if (!data && size) malformed("null buffer");
    if (size < 12) malformed("truncated (" + std::to_string(size) + " bytes)");
    uint32_t crc = uint32_t(data[size - 4]) | uint32_t(data[size - 3]) << 8 | uint32_t(data[size - 2]) << 16 |
                   uint32_t(data[size - 1]) << 24;
    if (std::memcmp(data, kMagic, 4) != 0) malformed("bad magic");
    if (crc32(data, size - 4) != crc) malformed("checksum mismatch (the data is corrupted)");
    Reader r{data, size - 4, 4};
    Header h;
    if (r.byte("version") != kExactVersion) malformed("unsupported version");
    uint32_t ndim = r.byte("ndim");
    uint8_t modes = r.byte("modes");
    if (r.byte("reserved") != 0) malformed("reserved byte is not zero");
    if (ndim > kExactMaxNdim) malformed("too many dimensions");
    h.info.gap_mode = modes & 3;
    h.info.code_mode = (modes >> 2) & 3;
    if ((modes >> 4) || h.info.gap_mode > 1 || h.info.code_mode > 2) malformed("unknown modes");
    h.info.shape.resize(ndim);
    for (auto& d : h.info.shape) d = r.varint("shape");
    h.info.size = checked_size(h.info.shape.data(), ndim);
    if (h.info.size == UINT64_MAX) malformed("shape too large");
    h.info.kept = r.varint("kept count");
    if (h.info.kept > h.info.size) malformed("more kept weights than positions");
    uint64_t k = r.varint("codebook size");
    if (k > kExactMaxClusters) malformed("codebook too large");
    if (h.info.kept && !k) malformed("kept weights without a codebook");
    if (h.info.code_mode && k > kExactMaxContextClusters) malformed("code contexts with too many clusters");
    h.k = uint32_t(k);
    const uint8_t* book = r.take(4 * k, "codebook");
    h.info.codebook.resize(size_t(k));
    for (size_t i = 0; i < k; ++i) {
        uint32_t bits = uint32_t(book[4 * i]) | uint32_t(book[4 * i + 1]) << 8 | uint32_t(book[4 * i + 2]) << 16 |
                        uint32_t(book[4 * i + 3]) << 24;
        std::memcpy(&h.info.codebook[i], &bits, 4);
    }
    uint32_t ng = gap_tables(h.info.gap_mode), nc = code_tables(h.info.code_mode, k);
    h.gap.reserve(ng);
    h.code.reserve(nc);
    for (uint32_t i = 0; i < ng; ++i) h.gap.push_back(read_table(r, kGapSymbols));
    for (uint32_t i = 0; i < nc; ++i) h.code.push_back(read_table(r, h.k));
    uint64_t rans_size = r.varint("stream sizes"), raw_size = r.varint("stream sizes");
    h.rans = r.take(rans_size, "rANS stream");
    h.raw = r.take(raw_size, "raw bit stream");
    h.rans_size = size_t(rans_size);
    h.raw_size = size_t(raw_size);
    if (r.at != r.size) malformed("trailing bytes before the checksum");
    if (h.info.kept == 0 && (rans_size || raw_size)) malformed("streams present for an empty tensor");
    if (h.info.kept && rans_size < 4) malformed("rANS stream too short");
    return h;
}

// The decoder's one pass; emit(pos, code) for every kept weight, in order.
template <typename Emit>
void decode_pass(const Header& h, Emit emit) {
    const uint64_t n = h.info.kept;
    if (n == 0) return;
    const uint8_t* in = h.rans;
    const uint8_t* const end = h.rans + h.rans_size;
    uint32_t x = uint32_t(in[0]) | uint32_t(in[1]) << 8 | uint32_t(in[2]) << 16 | uint32_t(in[3]) << 24;
    in += 4;
    if (x < kRansL || x >= kRansL << 8) malformed("rANS state out of range");
    BitReader bits{h.raw, h.raw_size};
    ContextTracker ctx{h.info.gap_mode, h.info.code_mode, row_length(h.info.shape, h.info.size)};
    const uint64_t size = h.info.size;
    uint64_t next = 0;  // first position the next gap counts from
    auto decode_symbol = [&](const DecTable& t) -> uint32_t {
        if (t.sym.empty()) malformed("symbol in an unused context");
        uint32_t slot = x & (kScale - 1);
        uint32_t s = t.sym[slot];
        x = uint32_t(t.freq[s]) * (x >> kScaleBits) + slot - t.cum[s];
        while (x < kRansL) {
            if (in == end) malformed("rANS stream truncated");
            x = (x << 8) | *in++;
        }
        return s;
    };
    for (uint64_t i = 0; i < n; ++i) {
        uint32_t gs = decode_symbol(h.gap[ctx.gap_ctx()]);
        uint64_t g;
        if (gs < kDirectGaps) {
            g = gs;
        } else {
            uint32_t e = (gs - kDirectGaps) / 4 + 4;
            g = (uint64_t(4 | ((gs - kDirectGaps) & 3)) << (e - 2)) | bits.get(e - 2);
        }
        if (g >= size - next) malformed("position past the end of the tensor");
        uint64_t pos = next + g;
        uint32_t c = decode_symbol(h.code[ctx.code_ctx(pos)]);
        emit(pos, c);
        ctx.advance(pos, gs, c);
        next = pos + 1;
    }
    if (in != end || x != kRansL) malformed("rANS stream does not end where it should");
    if ((bits.bit + 7) / 8 != h.raw_size) malformed("raw bit stream has unused bytes");
}

std::vector<uint8_t> encode_modes(const uint64_t* positions, const uint32_t* codes, size_t n,
                                  const uint64_t* shape, size_t ndim, uint64_t size, const float* codebook,
                                  size_t k, uint32_t gap_mode, uint32_t code_mode) {
    std::vector<uint64_t> shp(shape, shape + ndim);
    ContextTracker ctx{gap_mode, code_mode, row_length(shp, size)};
    // Symbolise once: (context, symbol) pairs in decode order, raw bits in decode order.
    std::vector<uint32_t> gsym(n), gctx(n), cctx(n);
    BitWriter raw;
    uint64_t next = 0;
    for (size_t i = 0; i < n; ++i) {
        uint32_t rb;
        uint64_t rv;
        gsym[i] = gap_symbol(positions[i] - next, &rb, &rv);
        raw.put(rv, rb);
        gctx[i] = ctx.gap_ctx();
        cctx[i] = ctx.code_ctx(positions[i]);
        ctx.advance(positions[i], gsym[i], codes[i]);
        next = positions[i] + 1;
    }
    raw.finish();
    uint32_t ng = gap_tables(gap_mode), nc = code_tables(code_mode, k);
    std::vector<std::vector<uint64_t>> gcount(ng, std::vector<uint64_t>(kGapSymbols)),
        ccount(nc, std::vector<uint64_t>(k));
    for (size_t i = 0; i < n; ++i) {
        ++gcount[gctx[i]][gsym[i]];
        ++ccount[cctx[i]][codes[i]];
    }
    std::vector<EncTable> gt, ct;
    for (auto& c : gcount) gt.push_back(enc_table(c));
    for (auto& c : ccount) ct.push_back(enc_table(c));

    // rANS in reverse decode order; bytes collected backwards, then reversed.
    std::vector<uint8_t> rans;
    if (n) {
        uint32_t x = kRansL;
        auto put = [&](const EncTable& t, uint32_t s) {
            uint32_t f = t.freq[s], c = t.cum[s];
            uint32_t x_max = ((kRansL >> kScaleBits) << 8) * f;
            while (x >= x_max) {
                rans.push_back(uint8_t(x));
                x >>= 8;
            }
            x = ((x / f) << kScaleBits) + (x % f) + c;
        };
        for (size_t i = n; i-- > 0;) {
            put(ct[cctx[i]], codes[i]);
            put(gt[gctx[i]], gsym[i]);
        }
        for (int b = 3; b >= 0; --b) rans.push_back(uint8_t(x >> (8 * b)));
        std::reverse(rans.begin(), rans.end());
    }

    std::vector<uint8_t> out(kMagic, kMagic + 4);
    out.push_back(uint8_t(kExactVersion));
    out.push_back(uint8_t(ndim));
    out.push_back(uint8_t(gap_mode | code_mode << 2));
    out.push_back(0);
    for (size_t i = 0; i < ndim; ++i) put_varint(out, shape[i]);
    put_varint(out, n);
    put_varint(out, k);
    for (size_t i = 0; i < k; ++i) {
        uint32_t bits;
        std::memcpy(&bits, &codebook[i], 4);
        for (int b = 0; b < 4; ++b) out.push_back(uint8_t(bits >> (8 * b)));
    }
    auto put_table = [&](const EncTable& t) {
        put_varint(out, t.freq.size());
        for (uint32_t f : t.freq) put_varint(out, f);
    };
    for (auto& t : gt) put_table(t);
    for (auto& t : ct) put_table(t);
    put_varint(out, rans.size());
    put_varint(out, raw.bytes.size());
    out.insert(out.end(), rans.begin(), rans.end());
    out.insert(out.end(), raw.bytes.begin(), raw.bytes.end());
    uint32_t crc = crc32(out.data(), out.size());
    for (int b = 0; b < 4; ++b) out.push_back(uint8_t(crc >> (8 * b)));
    return out;
}

}  // namespace

std::vector<uint8_t> exact_encode(const uint64_t* positions, const uint32_t* codes, size_t n,
                                  const uint64_t* shape, size_t ndim, const float* codebook,
                                  size_t codebook_size, const ExactOptions& options) {
    if (ndim > kExactMaxNdim) throw std::invalid_argument("exact_encode: more than 32 dimensions");
    uint64_t size = checked_size(shape, ndim);
    if (size == UINT64_MAX) throw std::invalid_argument("exact_encode: shape too large (2^62 positions at most)");
    if (codebook_size > kExactMaxClusters)
        throw std::invalid_argument("exact_encode: at most 4096 clusters, got " + std::to_string(codebook_size));
    if (n && !codebook_size) throw std::invalid_argument("exact_encode: kept weights need a codebook");
    if (n > size) throw std::invalid_argument("exact_encode: more kept weights than positions");
    for (size_t i = 0; i < n; ++i) {
        if (positions[i] >= size) throw std::invalid_argument("exact_encode: position out of range");
        if (i && positions[i] <= positions[i - 1])
            throw std::invalid_argument("exact_encode: positions must be strictly increasing");
        if (codes[i] >= codebook_size) throw std::invalid_argument("exact_encode: code out of range");
    }
    if (options.gap_mode < -1 || options.gap_mode > 1 || options.code_mode < -1 || options.code_mode > 2)
        throw std::invalid_argument("exact_encode: gap_mode must be -1..1 and code_mode -1..2");
    bool contexts_ok = codebook_size <= kExactMaxContextClusters;
    if (options.code_mode > 0 && !contexts_ok)
        throw std::invalid_argument("exact_encode: code contexts need at most 256 clusters");
    std::vector<uint8_t> best;
    for (uint32_t gm = 0; gm <= 1; ++gm) {
        if (options.gap_mode >= 0 && gm != uint32_t(options.gap_mode)) continue;
        for (uint32_t cm = 0; cm <= 2; ++cm) {
            if (options.code_mode >= 0 && cm != uint32_t(options.code_mode)) continue;
            if (cm && !contexts_ok) continue;
            auto candidate = encode_modes(positions, codes, n, shape, ndim, size, codebook, codebook_size, gm, cm);
            if (best.empty() || candidate.size() < best.size()) best.swap(candidate);
        }
    }
    return best;
}

ExactInfo exact_info(const uint8_t* data, size_t size) { return parse(data, size).info; }

void exact_decode_weights(const uint8_t* data, size_t size, float* out, uint64_t out_size) {
    Header h = parse(data, size);
    if (out_size != h.info.size)
        throw std::invalid_argument("exact_decode_weights: output has " + std::to_string(out_size) +
                                    " elements, the tensor " + std::to_string(h.info.size));
    if (out_size) std::memset(out, 0, size_t(out_size) * sizeof(float));
    const float* book = h.info.codebook.data();
    decode_pass(h, [&](uint64_t pos, uint32_t c) { out[pos] = book[c]; });
}

void exact_decode_sparse(const uint8_t* data, size_t size, uint64_t* positions, uint32_t* codes, uint64_t kept) {
    Header h = parse(data, size);
    if (kept != h.info.kept)
        throw std::invalid_argument("exact_decode_sparse: arrays have " + std::to_string(kept) +
                                    " entries, the tensor keeps " + std::to_string(h.info.kept));
    uint64_t i = 0;
    decode_pass(h, [&](uint64_t pos, uint32_t c) {
        positions[i] = pos;
        codes[i] = c;
        ++i;
    });
}

}  // namespace wl
