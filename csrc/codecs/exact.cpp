// Exact codec (exact.h): static-model rANS over gap and code symbols. Format: docs/FORMAT.md,
// "Exact codec". Encoder: symbolise, count per context, normalise tables, rANS in reverse.
// Decoder: check the checksum and header, build slot tables, then one forward pass.
#include "codecs/exact.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "weightless.h"

namespace wl {
namespace {

constexpr uint32_t kMaxScaleBits = 12;      // a table's frequencies sum to 2^b, b <= 12
constexpr uint32_t kUnusedTable = 15;       // the 4-bit b of a context no symbol uses
constexpr uint64_t kRansL = uint64_t(1) << 31;  // state in [L, 2^63): 32-bit renormalisation
constexpr uint32_t kRawChunk = 16;          // raw gap bits go through the gap stream 16 at a time
constexpr uint32_t kDirectGaps = 16;        // gaps 0..15 are their own symbol
constexpr uint32_t kGapSymbols = 256;
constexpr uint8_t kMagic[4] = {'W', 'L', 'E', 'X'};

[[noreturn]] void malformed(const std::string& what) {
    throw std::invalid_argument("malformed exact payload: " + what);
}

// --- CRC-32 (zlib's), sliced by 8: the decoder checks the whole payload first --------------

struct CrcTables {
    uint32_t t[8][256];
    CrcTables() {
        for (uint32_t i = 0; i < 256; ++i) {
            uint32_t c = i;
            for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            t[0][i] = c;
        }
        for (uint32_t i = 0; i < 256; ++i)
            for (int j = 1; j < 8; ++j) t[j][i] = t[0][t[j - 1][i] & 0xFF] ^ (t[j - 1][i] >> 8);
    }
};

uint32_t fast_crc32(const uint8_t* p, size_t n) {
    static const CrcTables tables;
    const auto& t = tables.t;
    uint32_t c = 0xFFFFFFFFu;
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t lo = (uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24) ^ c;
        uint32_t hi = uint32_t(p[4]) | uint32_t(p[5]) << 8 | uint32_t(p[6]) << 16 | uint32_t(p[7]) << 24;
        c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
            t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
    }
    for (; n; ++p, --n) c = t[0][(c ^ *p) & 0xFF] ^ (c >> 8);
    return ~c;
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

// --- byte and bit helpers -----------------------------------------------------------------

void put_varint(std::vector<uint8_t>& out, uint64_t v) {
    while (v >= 0x80) {
        out.push_back(uint8_t(v | 0x80));
        v >>= 7;
    }
    out.push_back(uint8_t(v));
}

inline uint32_t load_le32(const uint8_t* p) {
    return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
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

// LSB-first bits (the table section).
struct BitWriter {
    std::vector<uint8_t> bytes;
    uint64_t acc = 0;
    unsigned n = 0;
    void put(uint32_t v, unsigned k) {  // k <= 24
        acc |= uint64_t(v & ((1u << k) - 1)) << n;
        n += k;
        while (n >= 8) {
            bytes.push_back(uint8_t(acc));
            acc >>= 8;
            n -= 8;
        }
    }
    void gamma(uint32_t v) {  // v >= 1: floor(log2 v) zeros, a one, the bits below the leading one
        unsigned l = 31 - unsigned(__builtin_clz(v));
        put(0, l);
        put(1, 1);
        put(v, l);
    }
    void exp_golomb(uint32_t v, unsigned k) {
        gamma((v >> k) + 1);
        put(v, k);
    }
    void finish() {
        if (n) bytes.push_back(uint8_t(acc));
        acc = 0;
        n = 0;
    }
};

inline unsigned gamma_bits(uint32_t v) { return 2 * (31 - unsigned(__builtin_clz(v))) + 1; }
inline unsigned exp_golomb_bits(uint32_t v, unsigned k) { return gamma_bits((v >> k) + 1) + k; }

struct BitReader {
    const uint8_t* p;
    size_t size;
    uint64_t bit = 0;
    uint32_t get(unsigned k) {  // k <= 16
        if (k > size * 8 - bit) malformed("table section truncated");
        uint32_t v = 0;
        for (unsigned i = 0; i < k; ++i, ++bit) v |= uint32_t((p[bit >> 3] >> (bit & 7)) & 1) << i;
        return v;
    }
    uint32_t gamma(unsigned max_log2) {
        unsigned l = 0;
        while (get(1) == 0)
            if (++l > max_log2) malformed("table: gamma code too long");
        return (1u << l) | get(l);
    }
    uint32_t exp_golomb(unsigned k) {
        uint32_t high = gamma(13) - 1;
        return (high << k) | get(k);
    }
};

// --- frequency tables ---------------------------------------------------------------------

// Counts -> frequencies summing to 2^b, every counted symbol at least 1. Deterministic.
std::vector<uint32_t> normalise(const std::vector<uint64_t>& counts, uint32_t b) {
    const uint32_t scale = 1u << b;
    std::vector<uint32_t> f(counts.size(), 0);
    uint64_t total = 0;
    size_t largest = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
        total += counts[i];
        if (counts[i] > counts[largest]) largest = i;
    }
    int64_t sum = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
        if (!counts[i]) continue;
        long double share = (long double)counts[i] * scale / (long double)total;
        f[i] = std::max<uint32_t>(1, uint32_t(share + 0.5L));
        sum += f[i];
    }
    if (sum < int64_t(scale)) f[largest] += uint32_t(int64_t(scale) - sum);
    while (sum > int64_t(scale)) {  // take from the largest frequencies, keeping each >= 1
        size_t big = 0;
        for (size_t i = 0; i < f.size(); ++i)
            if (f[i] > f[big]) big = i;
        uint32_t take = uint32_t(std::min<int64_t>(sum - scale, std::max<uint32_t>(1, f[big] / 16)));
        take = std::min(take, f[big] - 1);
        f[big] -= take;
        sum -= take;
    }
    while (!f.empty() && f.back() == 0) f.pop_back();
    return f;
}

struct EncTable {
    uint32_t b = kUnusedTable, k = 0;
    std::vector<uint32_t> freq, cum;
};

// Bits of a table's description with Exp-Golomb order k.
uint64_t table_bits(const std::vector<uint32_t>& f, unsigned k) {
    uint64_t bits = 4 + gamma_bits(uint32_t(f.size()));
    if (f.size() >= 2) {
        bits += 4;
        for (size_t i = 0; i + 1 < f.size(); ++i) bits += exp_golomb_bits(f[i], k);
    }
    return bits;
}

// The table minimising (its description + the symbols it codes), over scales and orders.
EncTable choose_table(const std::vector<uint64_t>& counts) {
    EncTable best;
    size_t used = 0;
    for (uint64_t c : counts) used += c != 0;
    if (!used) return best;  // unused context
    uint32_t b_min = 0;
    while ((size_t(1) << b_min) < used) ++b_min;
    if (b_min > kMaxScaleBits) throw std::invalid_argument("exact_encode: more symbols than a table holds");
    long double best_bits = -1;
    for (uint32_t b = b_min; b <= kMaxScaleBits; ++b) {
        std::vector<uint32_t> f = normalise(counts, b);
        long double bits = 0;
        for (size_t i = 0; i < f.size(); ++i)
            if (counts[i]) bits += (long double)counts[i] * (b - std::log2((long double)f[i]));
        unsigned best_k = 0;
        uint64_t tb = table_bits(f, 0);
        for (unsigned k = 1; k <= kMaxScaleBits; ++k) {
            uint64_t t = table_bits(f, k);
            if (t < tb) tb = t, best_k = k;
        }
        bits += tb;
        if (best_bits < 0 || bits < best_bits) {
            best_bits = bits;
            best.b = b;
            best.k = best_k;
            best.freq = f;
        }
    }
    best.cum.resize(best.freq.size());
    uint32_t c = 0;
    for (size_t i = 0; i < best.freq.size(); ++i) {
        best.cum[i] = c;
        c += best.freq[i];
    }
    return best;
}

void write_table(BitWriter& w, const EncTable& t) {
    w.put(t.b, 4);
    if (t.b == kUnusedTable) return;
    w.gamma(uint32_t(t.freq.size()));
    if (t.freq.size() < 2) return;
    w.put(t.k, 4);
    for (size_t i = 0; i + 1 < t.freq.size(); ++i) w.exp_golomb(t.freq[i], t.k);
}

struct DecTable {
    uint32_t b = kUnusedTable, mask = 0;
    std::vector<uint16_t> sym;  // slot -> symbol, 2^b entries (tables of more than 256 symbols)
    // slot -> symbol | (freq - 1) << 8 | (slot - cum) << 20, one load per symbol (<= 256 symbols)
    std::vector<uint32_t> packed;
    std::vector<uint32_t> fc;   // symbol -> freq | cum << 16
};

DecTable read_table(BitReader& r, uint32_t max_symbols) {
    DecTable t;
    t.b = r.get(4);
    if (t.b == kUnusedTable) return t;
    if (t.b > kMaxScaleBits) malformed("table scale out of range");
    const uint32_t scale = 1u << t.b;
    t.mask = scale - 1;
    uint32_t a = r.gamma(12);
    if (a > max_symbols) malformed("table has more symbols than its alphabet");
    t.fc.resize(a);
    const bool pack = a <= 256;
    if (pack) t.packed.resize(scale);
    else t.sym.resize(scale);
    uint32_t k = a >= 2 ? r.get(4) : 0;
    if (k > kMaxScaleBits) malformed("table order out of range");
    uint32_t sum = 0;
    for (uint32_t i = 0; i < a; ++i) {
        uint32_t f;
        if (i + 1 < a) {
            f = r.exp_golomb(k);
            if (f > scale - sum) malformed("frequencies exceed the table scale");
        } else {
            f = scale - sum;
            if (f == 0) malformed("table ends in an unused symbol");
        }
        t.fc[i] = f | sum << 16;
        if (pack)
            for (uint32_t s = 0; s < f; ++s) t.packed[sum + s] = i | (f - 1) << 8 | s << 20;
        else
            for (uint32_t s = 0; s < f; ++s) t.sym[sum + s] = uint16_t(i);
        sum += f;
    }
    return t;
}

// --- modes and contexts -------------------------------------------------------------------

uint32_t gap_tables(uint32_t gap_mode) { return gap_mode == 0 ? 1 : 3; }
uint32_t code_tables(uint32_t code_mode, uint64_t k) {
    return code_mode == 0 ? 1 : code_mode == 3 ? uint32_t(k) + 3 : uint32_t(k) + 1;
}

// The 2-D view's row length: size / shape[0] (the whole tensor for 0-D and 1-D).
uint64_t row_length(const std::vector<uint64_t>& shape, uint64_t size) {
    if (shape.size() <= 1 || shape[0] == 0) return size ? size : 1;
    return size / shape[0];
}

// Walks the kept weights in order and gives each one's contexts; tracks the current row's end
// so that "same row" needs no division.
struct ContextTracker {
    uint32_t gap_mode, code_mode;
    uint64_t row_len;
    uint32_t k;
    uint64_t row_end = 0;
    bool has_prev = false;
    uint64_t prev_pos = 0;
    uint32_t prev_code = 0, prev_gap_sym = kDirectGaps;  // first gap: context 2

    uint32_t gap_ctx() const { return gap_mode == 0 ? 0 : gap_context(prev_gap_sym); }
    // Code context of a kept weight at pos (after its gap, before its code).
    uint32_t code_ctx(uint64_t pos) {
        if (code_mode == 0) return 0;
        bool same_row = has_prev && pos < row_end;
        if (!same_row) {
            while (row_end <= pos) row_end += row_len;  // O(rows) in all
            return 0;
        }
        if (prev_pos + 1 == pos) return 1 + prev_code;
        if (code_mode == 1) return 0;
        if (code_mode == 2) return 1 + prev_code;
        return k + 1 + (2 * prev_code >= k);  // mode 3: which half of the codebook
    }
    void advance(uint64_t pos, uint32_t gap_sym, uint32_t code) {
        has_prev = true;
        prev_pos = pos;
        prev_code = code;
        prev_gap_sym = gap_sym;
    }
};

// --- rANS, 64-bit state, 32-bit words ---------------------------------------------------------
// A stream holds W = 1, 2 or 4 interleaved states: symbol i of the stream uses state i mod W (a
// gap's raw bits use its symbol's state), and all share one word sequence.

struct RansEncoder {
    std::vector<uint32_t> words;  // in reverse order of reading
    uint64_t x[4] = {kRansL, kRansL, kRansL, kRansL};
    void put(unsigned j, uint32_t freq, uint32_t cum, uint32_t b) {
        uint64_t x_max = ((kRansL >> b) << 32) * freq;
        if (x[j] >= x_max) {
            words.push_back(uint32_t(x[j]));
            x[j] >>= 32;
        }
        x[j] = ((x[j] / freq) << b) + (x[j] % freq) + cum;
    }
    std::vector<uint8_t> finish(unsigned ways) {
        for (unsigned j = ways; j-- > 0;) {
            words.push_back(uint32_t(x[j] >> 32));
            words.push_back(uint32_t(x[j]));
        }
        std::vector<uint8_t> out;
        out.reserve(4 * words.size());
        for (size_t i = words.size(); i-- > 0;)
            for (int k = 0; k < 4; ++k) out.push_back(uint8_t(words[i] >> (8 * k)));
        return out;
    }
};

struct Stream {
    const uint8_t* begin;
    const uint8_t* in;
    const uint8_t* end;
};

inline void rans_start(Stream& s, const uint8_t* p, size_t n, unsigned ways, uint64_t* x) {
    if (n < 8 * ways || n % 4) malformed("rANS stream size");
    for (unsigned j = 0; j < ways; ++j) {
        x[j] = uint64_t(load_le32(p + 8 * j)) | uint64_t(load_le32(p + 8 * j + 4)) << 32;
        if (x[j] < kRansL || x[j] >> 63) malformed("rANS state out of range");
    }
    s.begin = p;
    s.in = p + 8 * ways;
    s.end = p + n;
}

inline void rans_renorm(uint64_t& x, Stream& s) {
    if (x < kRansL) {
        if (s.in == s.end) malformed("rANS stream truncated");
        x = (x << 32) | load_le32(s.in);
        s.in += 4;
    }
}

struct Header {
    ExactInfo info;
    uint32_t k = 0, ways = 1;
    std::vector<DecTable> gap, code;
    const uint8_t* gap_stream = nullptr;
    size_t gap_size = 0;
    const uint8_t* code_stream = nullptr;
    size_t code_size = 0;
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

Header parse(const uint8_t* data, size_t size) {
    if (!data && size) malformed("null buffer");
    if (size < 12) malformed("truncated (" + std::to_string(size) + " bytes)");
    if (std::memcmp(data, kMagic, 4) != 0) malformed("bad magic");
    if (fast_crc32(data, size - 4) != load_le32(data + size - 4)) malformed("checksum mismatch (the data is corrupted)");
    Reader r{data, size - 4, 4};
    Header h;
    if (r.byte("version") != kExactVersion) malformed("unsupported version");
    uint32_t ndim = r.byte("ndim");
    uint8_t modes = r.byte("modes");
    uint8_t ways_log2 = r.byte("ways");
    if (ways_log2 > 2) malformed("more than 4 rANS states per stream");
    h.ways = 1u << ways_log2;
    if (ndim > kExactMaxNdim) malformed("too many dimensions");
    h.info.gap_mode = modes & 3;
    h.info.code_mode = (modes >> 2) & 3;
    if ((modes >> 4) || h.info.gap_mode > 1 || h.info.code_mode > 3) malformed("unknown modes");
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
        uint32_t bits = load_le32(book + 4 * i);
        std::memcpy(&h.info.codebook[i], &bits, 4);
    }
    uint64_t table_size = r.varint("table section size");
    BitReader tr{r.take(table_size, "table section"), size_t(table_size)};
    uint32_t ng = gap_tables(h.info.gap_mode), nc = code_tables(h.info.code_mode, k);
    h.gap.reserve(ng);
    h.code.reserve(nc);
    for (uint32_t i = 0; i < ng; ++i) h.gap.push_back(read_table(tr, kGapSymbols));
    for (uint32_t i = 0; i < nc; ++i) h.code.push_back(read_table(tr, h.k));
    if ((tr.bit + 7) / 8 != table_size) malformed("table section has unused bytes");
    while (tr.bit % 8)
        if (tr.get(1)) malformed("table section padding is not zero");
    uint64_t gap_size = r.varint("gap stream size");
    h.gap_stream = r.take(gap_size, "gap stream");
    uint64_t code_size = r.varint("code stream size");
    h.code_stream = r.take(code_size, "code stream");
    h.gap_size = size_t(gap_size);
    h.code_size = size_t(code_size);
    if (r.at != r.size) malformed("trailing bytes before the checksum");
    if (h.info.kept == 0 && (gap_size || code_size)) malformed("streams present for an empty tensor");
    return h;
}

struct GapSymbols {  // gap symbol -> (smallest gap, raw bits)
    uint64_t base[kGapSymbols];
    uint32_t bits[kGapSymbols];
    GapSymbols() {
        for (uint32_t s = 0; s < kGapSymbols; ++s) {
            if (s < kDirectGaps) {
                base[s] = s;
                bits[s] = 0;
            } else {
                uint32_t e = (s - kDirectGaps) / 4 + 4;
                bits[s] = e - 2;
                base[s] = uint64_t(4 | ((s - kDirectGaps) & 3)) << (e - 2);
            }
        }
    }
};

// What the decode loop reads of a table: plain pointers, one cache line.
struct TableView {
    const uint32_t* packed;  // null for tables of more than 256 symbols
    const uint16_t* sym;
    const uint32_t* fc;
    uint32_t b, mask;
    bool unused;
};

TableView view_of(const DecTable& t) {
    return {t.packed.empty() ? nullptr : t.packed.data(), t.sym.empty() ? nullptr : t.sym.data(),
            t.fc.empty() ? nullptr : t.fc.data(), t.b == kUnusedTable ? 0 : t.b, t.mask, t.b == kUnusedTable};
}

inline uint32_t decode_symbol(uint64_t& x, Stream& s, const TableView& t) {
    uint32_t slot = uint32_t(x) & t.mask;
    if (t.packed) {
        uint32_t e = t.packed[slot];
        x = uint64_t(((e >> 8) & 0xFFF) + 1) * (x >> t.b) + (e >> 20);
        rans_renorm(x, s);
        return e & 0xFF;
    }
    uint32_t sym = t.sym[slot];
    uint32_t fc = t.fc[sym];
    x = uint64_t(fc & 0xFFFF) * (x >> t.b) + slot - (fc >> 16);
    rans_renorm(x, s);
    return sym;
}

inline uint64_t decode_raw(uint64_t& x, Stream& s, uint32_t bits) {  // bits <= 16
    uint64_t v = x & ((uint64_t(1) << bits) - 1);
    x >>= bits;
    rans_renorm(x, s);
    return v;
}

// The decoder's one pass; emit(pos, code) for every kept weight, in order. Gaps and codes are
// separate streams of W interleaved states each, so 2 W dependency chains overlap; contexts
// are chosen without branches where the compiler allows.
template <unsigned W, uint32_t gap_mode, uint32_t code_mode, typename Emit>
void decode_pass_w(const Header& h, Emit emit) {
    static const GapSymbols gap_symbols;
    const uint64_t n = h.info.kept;
    uint64_t gx[W], cx[W];
    Stream gs, cs;
    rans_start(gs, h.gap_stream, h.gap_size, W, gx);
    rans_start(cs, h.code_stream, h.code_size, W, cx);
    const uint64_t size = h.info.size;
    const uint64_t row_len = row_length(h.info.shape, h.info.size);
    std::vector<TableView> views;
    views.reserve(h.gap.size() + h.code.size());
    for (const auto& t : h.gap) views.push_back(view_of(t));
    for (const auto& t : h.code) views.push_back(view_of(t));
    const TableView* gap_t = views.data();
    const TableView* code_t = views.data() + h.gap.size();
    const uint32_t k = h.k;
    uint64_t next = 0, prev_pos = 0, row_end = 0;
    uint32_t prev_code = 0, prev_gap = kDirectGaps;
    auto step = [&](uint64_t& gxj, uint64_t& cxj) __attribute__((always_inline)) {
        const TableView& gt = gap_t[gap_mode ? gap_context(prev_gap) : 0];
        if (gt.unused) malformed("gap in an unused context");
        uint32_t sym = decode_symbol(gxj, gs, gt);
        uint32_t bits = gap_symbols.bits[sym];
        uint64_t g = gap_symbols.base[sym] | decode_raw(gxj, gs, std::min(bits, kRawChunk));
        for (uint32_t at = kRawChunk; at < bits; at += kRawChunk)  // gaps of 2^18 and more
            g |= decode_raw(gxj, gs, std::min(kRawChunk, bits - at)) << at;
        if (g >= size - next) malformed("position past the end of the tensor");
        const uint64_t pos = next + g;
        uint32_t ctx = 0;
        if constexpr (code_mode != 0) {
            bool same_row = pos < row_end;
            if (!same_row)
                while (row_end <= pos) row_end += row_len;  // O(rows) in all
            // Arithmetic rather than branches: adjacency is close to a coin toss.
            const uint32_t same = same_row, adjacent = same & uint32_t(prev_pos + 1 == pos);
            const uint32_t left = 1 + prev_code;
            const uint32_t other = code_mode == 2 ? left : code_mode == 3 ? k + 1 + uint32_t(2 * prev_code >= k) : 0;
            ctx = adjacent * left + (same & (adjacent ^ 1)) * other;
        }
        const TableView& ct = code_t[ctx];
        if (ct.unused) malformed("code in an unused context");
        const uint32_t c = decode_symbol(cxj, cs, ct);
        emit(pos, c);
        prev_pos = pos;
        prev_code = c;
        prev_gap = sym;
        next = pos + 1;
    };
    // Unrolled with constant state indices (states stay in registers).
    uint64_t i = 0;
    for (; i + W <= n; i += W) {
#pragma GCC unroll 4
        for (unsigned j = 0; j < W; ++j) step(gx[j], cx[j]);
    }
#pragma GCC unroll 4
    for (unsigned j = 0; j + 1 < W; ++j)
        if (i + j < n) step(gx[j], cx[j]);
    for (unsigned j = 0; j < W; ++j)
        if (gx[j] != kRansL || cx[j] != kRansL) malformed("rANS stream does not end where it should");
    if (gs.in != gs.end || cs.in != cs.end) malformed("rANS stream does not end where it should");
}

template <uint32_t GM, uint32_t CM, typename Emit>
void decode_pass_modes(const Header& h, Emit emit) {
    if (h.ways == 1) decode_pass_w<1, GM, CM>(h, emit);
    else if (h.ways == 2) decode_pass_w<2, GM, CM>(h, emit);
    else decode_pass_w<4, GM, CM>(h, emit);
}

// One loop per (ways, gap mode, code mode), so that the contexts' tests fold away.
template <typename Emit>
void decode_pass(const Header& h, Emit emit) {
    if (h.info.kept == 0) return;
    const uint32_t m = h.info.gap_mode * 4 + h.info.code_mode;
    switch (m) {
        case 0: return decode_pass_modes<0, 0>(h, emit);
        case 1: return decode_pass_modes<0, 1>(h, emit);
        case 2: return decode_pass_modes<0, 2>(h, emit);
        case 3: return decode_pass_modes<0, 3>(h, emit);
        case 4: return decode_pass_modes<1, 0>(h, emit);
        case 5: return decode_pass_modes<1, 1>(h, emit);
        case 6: return decode_pass_modes<1, 2>(h, emit);
        default: return decode_pass_modes<1, 3>(h, emit);
    }
}

std::vector<uint8_t> encode_modes(const uint64_t* positions, const uint32_t* codes, size_t n,
                                  const uint64_t* shape, size_t ndim, uint64_t size, const float* codebook,
                                  size_t k, uint32_t gap_mode, uint32_t code_mode, unsigned ways) {
    std::vector<uint64_t> shp(shape, shape + ndim);
    ContextTracker ctx{gap_mode, code_mode, row_length(shp, size), uint32_t(k)};
    // Symbolise once: contexts and symbols in decode order.
    std::vector<uint32_t> gsym(n), gctx(n), cctx(n);
    uint64_t next = 0;
    for (size_t i = 0; i < n; ++i) {
        uint32_t rb;
        uint64_t rv;
        gsym[i] = gap_symbol(positions[i] - next, &rb, &rv);
        gctx[i] = ctx.gap_ctx();
        cctx[i] = ctx.code_ctx(positions[i]);
        ctx.advance(positions[i], gsym[i], codes[i]);
        next = positions[i] + 1;
    }
    uint32_t ng = gap_tables(gap_mode), nc = code_tables(code_mode, k);
    std::vector<std::vector<uint64_t>> gcount(ng, std::vector<uint64_t>(kGapSymbols)),
        ccount(nc, std::vector<uint64_t>(k));
    for (size_t i = 0; i < n; ++i) {
        ++gcount[gctx[i]][gsym[i]];
        ++ccount[cctx[i]][codes[i]];
    }
    std::vector<EncTable> gt, ct;
    for (auto& c : gcount) gt.push_back(choose_table(c));
    for (auto& c : ccount) ct.push_back(choose_table(c));
    BitWriter tables;
    for (auto& t : gt) write_table(tables, t);
    for (auto& t : ct) write_table(tables, t);
    tables.finish();

    // Both streams in reverse decode order; weight i uses state i mod ways of each.
    std::vector<uint8_t> gap_bytes, code_bytes;
    if (n) {
        RansEncoder ge, ce;
        for (size_t i = n; i-- > 0;) {
            unsigned j = unsigned(i % ways);
            const EncTable& c = ct[cctx[i]];
            ce.put(j, c.freq[codes[i]], c.cum[codes[i]], c.b);
            uint64_t prev_end = i ? positions[i - 1] + 1 : 0;
            uint32_t rb;
            uint64_t rv;
            gap_symbol(positions[i] - prev_end, &rb, &rv);
            uint32_t last = rb ? (rb - 1) / kRawChunk * kRawChunk : 0;  // chunks read low first
            for (int64_t at = rb ? int64_t(last) : -1; at >= 0; at -= kRawChunk) {
                uint32_t bits = std::min(kRawChunk, rb - uint32_t(at));
                ge.put(j, 1, uint32_t(rv >> at) & ((1u << bits) - 1), bits);
            }
            const EncTable& g = gt[gctx[i]];
            ge.put(j, g.freq[gsym[i]], g.cum[gsym[i]], g.b);
        }
        gap_bytes = ge.finish(ways);
        code_bytes = ce.finish(ways);
    }

    std::vector<uint8_t> out(kMagic, kMagic + 4);
    out.push_back(uint8_t(kExactVersion));
    out.push_back(uint8_t(ndim));
    out.push_back(uint8_t(gap_mode | code_mode << 2));
    out.push_back(uint8_t(ways == 1 ? 0 : ways == 2 ? 1 : 2));
    for (size_t i = 0; i < ndim; ++i) put_varint(out, shape[i]);
    put_varint(out, n);
    put_varint(out, k);
    for (size_t i = 0; i < k; ++i) {
        uint32_t bits;
        std::memcpy(&bits, &codebook[i], 4);
        for (int b = 0; b < 4; ++b) out.push_back(uint8_t(bits >> (8 * b)));
    }
    put_varint(out, tables.bytes.size());
    out.insert(out.end(), tables.bytes.begin(), tables.bytes.end());
    put_varint(out, gap_bytes.size());
    out.insert(out.end(), gap_bytes.begin(), gap_bytes.end());
    put_varint(out, code_bytes.size());
    out.insert(out.end(), code_bytes.begin(), code_bytes.end());
    uint32_t crc = fast_crc32(out.data(), out.size());
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
    if (options.gap_mode < -1 || options.gap_mode > 1 || options.code_mode < -1 || options.code_mode > 3)
        throw std::invalid_argument("exact_encode: gap_mode must be -1..1 and code_mode -1..3");
    bool contexts_ok = codebook_size <= kExactMaxContextClusters;
    if (options.code_mode > 0 && !contexts_ok)
        throw std::invalid_argument("exact_encode: code contexts need at most 256 clusters");
    unsigned ways = options.ways ? unsigned(options.ways) : n < kExactTwoWaysFrom ? 1 : n < kExactFourWaysFrom ? 2 : 4;
    if (ways != 1 && ways != 2 && ways != 4) throw std::invalid_argument("exact_encode: ways must be 0, 1, 2 or 4");
    std::vector<uint8_t> best;
    for (uint32_t gm = 0; gm <= 1; ++gm) {
        if (options.gap_mode >= 0 && gm != uint32_t(options.gap_mode)) continue;
        for (uint32_t cm = 0; cm <= 3; ++cm) {
            if (options.code_mode >= 0 && cm != uint32_t(options.code_mode)) continue;
            if (cm && !contexts_ok) continue;
            auto candidate = encode_modes(positions, codes, n, shape, ndim, size, codebook, codebook_size, gm, cm, ways);
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
