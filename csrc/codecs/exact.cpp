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

// A table as read: its scale and symbols' frequencies (in Header::freq from `first`). The
// decoder's slot tables are built from it (SlotTables), not by exact_info().
struct DecTable {
    uint32_t b = kUnusedTable;
    uint32_t symbols = 0, first = 0;
    bool unused() const { return b == kUnusedTable; }
};

DecTable read_table(BitReader& r, uint32_t max_symbols, std::vector<uint32_t>& freq) {
    DecTable t;
    t.b = r.get(4);
    if (t.b == kUnusedTable) return t;
    if (t.b > kMaxScaleBits) malformed("table scale out of range");
    const uint32_t scale = 1u << t.b;
    uint32_t a = r.gamma(12);
    if (a > max_symbols) malformed("table has more symbols than its alphabet");
    t.symbols = a;
    t.first = uint32_t(freq.size());
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
        freq.push_back(f);
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
    std::vector<uint32_t> freq;  // every table's frequencies, in table order
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
    for (uint32_t i = 0; i < ng; ++i) h.gap.push_back(read_table(tr, kGapSymbols, h.freq));
    for (uint32_t i = 0; i < nc; ++i) h.code.push_back(read_table(tr, h.k, h.freq));
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

// --- decoding -----------------------------------------------------------------------------
//
// One forward pass over the kept weights in chunks of kChunk (a multiple of W), each chunk's
// positions and codes into small arrays, then (dense output) the chunk's zeros and values
// written, so that the scattered values land in cache lines just zeroed and no position is
// written twice but the kept ones. Loops per payload kind (Chunks):
// - dense masks (no gap of 16 or more; or every gap 0, when the gap stream holds nothing to
//   decode: see kGapIdentity) decode a chunk's gaps, then its codes, each loop holding only its
//   own W states;
// - otherwise, and with code contexts, gaps and codes in one loop (the work of one fills the
//   other's latency).
// Inside a chunk nothing is checked against a stream's end: when fewer words are left than a
// chunk could read if every renormalisation read one, the stream's last words are copied ahead
// of zeros (Tail), and a stream read past its end is found after the chunk. The n mod W last
// weights, and payloads without a chunk loop, take Decoder::step: every check in the format's
// order, the reference the loops must agree with.
//
// Slot tables: one array of entries per stream. An entry of a table of at most 256 symbols is
// freq | (slot - cum) << 12 | symbol << 24: a symbol is one load, a mask, a multiply and an
// add. A table whose slots all belong to one symbol leaves the state as it is (x = 2^b
// floor(x / 2^b) + slot); it is stored as scale 1 (freq 1, shift 0), so every stored freq is
// below 4096. Where memory allows, a stream's tables share one stride 2^B (B its largest scale;
// a table of scale b < B repeated 2^(B - b) times), so that the table of context c starts at
// c << B: a code's table depends on the previous code by arithmetic, not through a load. A
// table of more than 256 symbols (a code table of K > 256, mode 0) keeps slot -> symbol and
// symbol -> freq | cum << 16; such payloads take the checked step throughout.

constexpr uint64_t kChunk = 512;

// Gap symbol s >= 16: (s >> 2) - 2 raw bits below a base of (4 | (s & 3)) << bits; s < 16: s.
constexpr uint32_t gap_raw_bits(uint32_t sym) {  // without a branch: s >= 16 is a coin toss
    return ((sym >> 2) - 2) & (0u - uint32_t(sym >= kDirectGaps));
}
constexpr uint64_t gap_base(uint32_t sym, uint32_t bits) {
    return sym >= kDirectGaps ? uint64_t(4 | (sym & 3)) << bits : sym;
}
struct GapBases {
    uint64_t v[kGapSymbols];
    constexpr GapBases() : v() {
        for (uint32_t s = 0; s < kGapSymbols; ++s) v[s] = gap_base(s, s >= kDirectGaps ? (s >> 2) - 2 : 0);
    }
};
constexpr GapBases kGapBase;

struct SlotTables {
    std::vector<uint32_t> entry;        // freq | (slot - cum) << 12 | symbol << 24, all tables
    std::vector<uint32_t> offset;       // per table: its first entry
    std::vector<uint32_t> shift, mask;  // per table: b, and the mask of its slot index
    std::vector<uint8_t> unused;        // per table
    uint32_t stride_log2 = 0;           // B when strided (offset[t] = t << B, mask[t] = 2^B - 1)
    bool strided = false;
    bool wide = false;                  // a table of more than 256 symbols: sym / fc below
    std::vector<uint16_t> sym;
    std::vector<uint32_t> fc;
    uint32_t max_symbols = 0;           // largest alphabet of a used table
};

SlotTables build_slots(const std::vector<DecTable>& tables, const std::vector<uint32_t>& freq) {
    SlotTables s;
    const size_t nt = tables.size();
    s.offset.assign(nt, 0);
    s.shift.assign(nt, 0);
    s.mask.assign(nt, 0);
    s.unused.assign(nt, 1);
    uint32_t bmax = 0;
    uint64_t total = 0;
    for (const auto& t : tables) {
        if (t.unused()) continue;
        bmax = std::max(bmax, t.b);
        total += uint64_t(1) << t.b;
        s.max_symbols = std::max(s.max_symbols, t.symbols);
        if (t.symbols > 256) s.wide = true;
    }
    if (s.wide) {  // only a lone code table (contexts need K <= 256)
        for (size_t i = 0; i < nt; ++i) {
            const DecTable& t = tables[i];
            if (t.unused()) continue;
            s.unused[i] = 0;
            s.shift[i] = t.b;
            s.mask[i] = (1u << t.b) - 1;
            s.offset[i] = uint32_t(s.sym.size());
            s.sym.resize(s.sym.size() + (size_t(1) << t.b));
            uint16_t* sym = s.sym.data() + s.offset[i];
            uint32_t cum = 0;
            for (uint32_t a = 0; a < t.symbols; ++a) {
                uint32_t f = freq[t.first + a];
                s.fc.push_back(f | cum << 16);
                for (uint32_t j = 0; j < f; ++j) sym[cum + j] = uint16_t(a);
                cum += f;
            }
        }
        return s;
    }
    // Strided when it costs at most 4x the plain layout (or 8192 entries, 32 KB): always for
    // the 3 gap tables, for fc1's 19 code tables of scales 5..8; not for 259 tables of 4096.
    const uint64_t strided_entries = uint64_t(nt) << bmax;
    s.strided = nt > 1 && strided_entries <= std::max<uint64_t>(4 * total, 8192);
    s.stride_log2 = s.strided ? bmax : 0;
    s.entry.resize(size_t(s.strided ? strided_entries : total));
    uint32_t at = 0;
    for (size_t i = 0; i < nt; ++i) {
        const DecTable& t = tables[i];
        const uint32_t block = s.strided ? 1u << bmax : t.unused() ? 0 : 1u << t.b;
        s.offset[i] = s.strided ? uint32_t(i) << bmax : at;
        at += block;
        if (t.unused()) continue;
        s.unused[i] = 0;
        uint32_t* e = s.entry.data() + s.offset[i];
        uint32_t b = t.b, cum = 0;
        for (uint32_t a = 0; a < t.symbols; ++a) {
            const uint32_t f = freq[t.first + a];
            if (f == 1u << t.b) {  // the only symbol with slots: the identity, stored as scale 1
                b = 0;
                e[0] = 1 | a << 24;
                break;
            }
            for (uint32_t j = 0; j < f; ++j) e[cum + j] = f | j << 12 | a << 24;
            cum += f;
        }
        s.shift[i] = b;
        s.mask[i] = block - 1;
        for (uint32_t j = 1u << b; j < block; ++j) e[j] = e[j & ((1u << b) - 1)];  // repeats
    }
    return s;
}

// Renormalisation inside a chunk, where the stream is known to hold every word it may read.
inline void renorm_unchecked(uint64_t& x, const uint8_t*& in) {
    if (x < kRansL) {
        x = (x << 32) | load_le32(in);
        in += 4;
    }
}

// A symbol from a packed table whose entries start at e: slot = x mod 2^b (the mask may be
// wider: strided entries repeat), then x = f * floor(x / 2^b) + slot - cum.
inline uint32_t packed_symbol(uint64_t& x, const uint32_t* e, uint64_t mask, uint32_t b) {
    const uint32_t v = e[x & mask];
    x = uint64_t(v & 0xFFF) * (x >> b) + ((v >> 12) & 0xFFF);
    return v >> 24;
}

inline uint64_t decode_raw(uint64_t& x, Stream& s, uint32_t bits) {  // bits <= 16
    uint64_t v = x & ((uint64_t(1) << bits) - 1);
    x >>= bits;
    rans_renorm(x, s);
    return v;
}

// A stream's last words copied, with zero words after them, once fewer are left than a chunk
// may read: the chunk loops then read without checks, and a stream read past its end (into the
// zeros) is malformed, found after the chunk.
struct Tail {
    std::vector<uint8_t> bytes;
    void room(Stream& s, uint64_t need) {
        if (!bytes.empty() || uint64_t(s.end - s.in) >= need + 4) return;
        const size_t left = size_t(s.end - s.in);
        bytes.assign(left + size_t(kChunk) * 4 * 5 + 8, 0);  // a chunk reads at most 5 words per weight
        if (left) std::memcpy(bytes.data(), s.in, left);
        s.in = bytes.data();
        s.end = bytes.data() + left;
    }
};

struct Decoder {
    const Header& h;
    SlotTables gt, ct;
    unsigned ways;
    uint64_t gx[4] = {}, cx[4] = {};
    Stream gs{}, cs{};
    uint64_t size, row_len, next = 0, prev_pos = 0, row_end = 0;
    uint32_t prev_gap = kDirectGaps, prev_code = 0;
    uint32_t gap_words = 2;  // most words one weight's gap can read (its symbol and raw chunks)
    Tail gtail, ctail;

    explicit Decoder(const Header& hd)
        : h(hd), gt(build_slots(hd.gap, hd.freq)), ct(build_slots(hd.code, hd.freq)), ways(hd.ways),
          size(hd.info.size), row_len(row_length(hd.info.shape, hd.info.size)) {
        rans_start(gs, h.gap_stream, h.gap_size, ways, gx);
        rans_start(cs, h.code_stream, h.code_size, ways, cx);
        if (gt.max_symbols == 1) gap_words = 0;  // kGapIdentity: no word is ever read
        else if (gt.max_symbols > kDirectGaps) {
            uint32_t bits = gap_raw_bits(gt.max_symbols - 1);
            gap_words = 1 + std::max<uint32_t>(1, (bits + kRawChunk - 1) / kRawChunk);
        }
    }

    static uint32_t symbol(uint64_t& x, Stream& s, const SlotTables& t, uint32_t table) {
        uint32_t sym;
        if (t.wide) {
            const uint32_t slot = uint32_t(x) & t.mask[table];
            sym = t.sym[t.offset[table] + slot];
            const uint32_t fc = t.fc[sym];
            x = uint64_t(fc & 0xFFFF) * (x >> t.shift[table]) + slot - (fc >> 16);
        } else {
            sym = packed_symbol(x, t.entry.data() + t.offset[table], t.mask[table], t.shift[table]);
        }
        rans_renorm(x, s);
        return sym;
    }

    // Kept weight i, every step checked: the reference the chunk loops must agree with.
    template <typename Emit>
    void step(uint64_t i, Emit& emit) {
        const unsigned j = unsigned(i % ways);
        const uint32_t gctx = h.info.gap_mode ? gap_context(prev_gap) : 0;
        if (gt.unused[gctx]) malformed("gap in an unused context");
        const uint32_t sym = symbol(gx[j], gs, gt, gctx);
        const uint32_t bits = gap_raw_bits(sym);
        uint64_t g = gap_base(sym, bits) | decode_raw(gx[j], gs, std::min(bits, kRawChunk));
        for (uint32_t at = kRawChunk; at < bits; at += kRawChunk)  // gaps of 2^18 and more
            g |= decode_raw(gx[j], gs, std::min(kRawChunk, bits - at)) << at;
        if (g >= size - next) malformed("position past the end of the tensor");
        const uint64_t pos = next + g;
        uint32_t ctx = 0;
        if (h.info.code_mode != 0) {
            const bool same = i > 0 && pos < row_end;
            while (row_end <= pos) row_end += row_len;
            const bool adjacent = same && prev_pos + 1 == pos;
            const uint32_t cm = h.info.code_mode;
            ctx = adjacent ? 1 + prev_code
                : same && cm == 2 ? 1 + prev_code
                : same && cm == 3 ? h.k + 1 + uint32_t(2 * prev_code >= h.k)
                : 0;
        }
        if (ct.unused[ctx]) malformed("code in an unused context");
        const uint32_t c = symbol(cx[j], cs, ct, ctx);
        emit(i, pos, c);
        prev_pos = pos;
        prev_code = c;
        prev_gap = sym;
        next = pos + 1;
    }
};

// Gap kinds: every used gap table is the lone symbol 0 (dense: nothing to decode, no state
// changes, no word is read), or has only symbols below 16 (no raw bits), or anything.
enum GapKind { kGapIdentity, kGapDirect, kGapAny };

// What the chunk loops read of a stream's tables, hoisted out of the loops.
struct View {
    const uint32_t* entry;
    const uint32_t* shift;
    const uint8_t* unused;
    uint32_t stride_log2;
    uint64_t stride_mask;  // 2^B - 1 (strided)
    uint64_t stride;       // 2^B
    uint64_t mask0;        // table 0's slot mask (one table)
    uint32_t shift0, shift1, shift2;  // the first 3 tables' shifts (the gap tables of mode 1)
    explicit View(const SlotTables& t)
        : entry(t.entry.data()), shift(t.shift.data()), unused(t.unused.data()), stride_log2(t.stride_log2),
          stride_mask((uint64_t(1) << t.stride_log2) - 1), stride(uint64_t(1) << t.stride_log2), mask0(t.mask[0]),
          shift0(t.shift[0]), shift1(t.shift.size() > 1 ? t.shift[1] : 0), shift2(t.shift.size() > 2 ? t.shift[2] : 0) {}
};

// One gap, unchecked (the chunk's words suffice): the gap and, in prev, its symbol.
template <uint32_t GM, int Kind>
inline __attribute__((always_inline)) uint64_t gap_one(uint64_t& x, const uint8_t*& in, const View& v,
                                                       uint32_t& prev) {
    if constexpr (Kind == kGapIdentity) {
        // x = 2^b floor(x / 2^b) + slot and zero raw bits leave x as it is, and it started at
        // 2^31 or more: no renormalisation reads a word.
        if constexpr (GM != 0) {
            if (v.unused[gap_context(prev)]) malformed("gap in an unused context");
            prev = 0;
        }
        return 0;
    }
    uint32_t sym;
    if constexpr (GM == 0) {
        sym = packed_symbol(x, v.entry, v.mask0, v.shift0);
    } else {
        // The 3 contexts' entries loaded at once and the previous symbol's one kept: from one
        // gap's symbol to the next is then two compares and selects, not a load.
        const uint64_t slot = x & v.stride_mask;
        const uint32_t e0 = v.entry[slot], e1 = v.entry[slot + v.stride], e2 = v.entry[slot + 2 * v.stride];
        // Masks, not ?: (which compilers turn into branches, a coin toss on dense layers).
        const uint32_t m0 = 0u - uint32_t(prev == 0), m2 = 0u - uint32_t(prev >= 4), m1 = ~(m0 | m2);
        const uint32_t ctx = (m1 & 1) | (m2 & 2);
        if (v.unused[ctx]) malformed("gap in an unused context");
        const uint32_t e = (e0 & m0) | (e1 & m1) | (e2 & m2);
        const uint32_t b = (v.shift0 & m0) | (v.shift1 & m1) | (v.shift2 & m2);
        x = uint64_t(e & 0xFFF) * (x >> b) + ((e >> 12) & 0xFFF);
        sym = e >> 24;
    }
    renorm_unchecked(x, in);
    prev = sym;
    if constexpr (Kind == kGapDirect) {
        renorm_unchecked(x, in);  // zero raw bits: x unchanged, then renormalised
        return sym;
    }
    const uint32_t bits = gap_raw_bits(sym);
    const uint32_t first = std::min(bits, kRawChunk);
    uint64_t g = kGapBase.v[sym] | (x & ((uint64_t(1) << first) - 1));
    x >>= first;
    renorm_unchecked(x, in);
    if (__builtin_expect(bits > kRawChunk, 0)) {  // gaps of 2^18 and more
        for (uint32_t at = kRawChunk; at < bits; at += kRawChunk) {
            const uint32_t nb = std::min(kRawChunk, bits - at);
            g |= (x & ((uint64_t(1) << nb) - 1)) << at;
            x >>= nb;
            renorm_unchecked(x, in);
        }
    }
    return g;
}

// m gaps (m a multiple of W; the stream holds m * gap_words words more) to positions pos[].
template <unsigned W, uint32_t GM, int Kind>
void gap_chunk(Decoder& d, uint64_t m, uint64_t* pos) {
    uint64_t x[W];
    for (unsigned j = 0; j < W; ++j) x[j] = d.gx[j];
    const uint8_t* in = d.gs.in;
    const View v(d.gt);
    const uint64_t size = d.size;
    uint64_t next = d.next;
    uint32_t prev = d.prev_gap;
    if (!GM && v.unused[0]) malformed("gap in an unused context");
    for (uint64_t t = 0; t < m; t += W) {
#pragma GCC unroll 4
        for (unsigned j = 0; j < W; ++j) {
            const uint64_t g = gap_one<GM, Kind>(x[j], in, v, prev);
            if (g >= size - next) malformed("position past the end of the tensor");
            pos[t + j] = next + g;
            next += g + 1;
        }
    }
    for (unsigned j = 0; j < W; ++j) d.gx[j] = x[j];
    d.gs.in = in;
    d.next = next;
    d.prev_gap = prev;
    d.prev_pos = next - 1;
}

// The same m weights' codes with code mode 0 (the stream holds m words more) to codes[].
template <unsigned W>
void code_chunk(Decoder& d, uint64_t m, uint32_t* codes) {
    uint64_t x[W];
    for (unsigned j = 0; j < W; ++j) x[j] = d.cx[j];
    const uint8_t* in = d.cs.in;
    const View v(d.ct);
    if (v.unused[0]) malformed("code in an unused context");
    uint32_t c = d.prev_code;
    for (uint64_t t = 0; t < m; t += W) {
#pragma GCC unroll 4
        for (unsigned j = 0; j < W; ++j) {
            c = packed_symbol(x[j], v.entry, v.mask0, v.shift0);
            renorm_unchecked(x[j], in);
            codes[t + j] = c;
        }
    }
    for (unsigned j = 0; j < W; ++j) d.cx[j] = x[j];
    d.cs.in = in;
    d.prev_code = c;
}

// m weights with code contexts (modes 1-3), gaps and codes in one loop: each code's table
// depends on the previous code, a chain of loads the gaps' work fills in beside. The code
// tables are strided (SlotTables): the chain is arithmetic, a shift and one load.
template <unsigned W, uint32_t GM, uint32_t CM, int Kind>
void context_chunk(Decoder& d, uint64_t m, uint64_t* pos, uint32_t* codes) {
    uint64_t gx[W], cx[W];
    for (unsigned j = 0; j < W; ++j) gx[j] = d.gx[j], cx[j] = d.cx[j];
    const uint8_t* gin = d.gs.in;
    const uint8_t* cin = d.cs.in;
    const View gv(d.gt), cv(d.ct);
    const uint64_t size = d.size, row_len = d.row_len;
    const uint32_t k = d.h.k;
    uint64_t next = d.next, row_end = d.row_end;
    uint32_t prev_gap = d.prev_gap, prev = d.prev_code;
    if (!GM && gv.unused[0]) malformed("gap in an unused context");
    if (!CM && cv.unused[0]) malformed("code in an unused context");
    for (uint64_t t = 0; t < m; t += W) {
#pragma GCC unroll 4
        for (unsigned j = 0; j < W; ++j) {
            const uint64_t g = gap_one<GM, Kind>(gx[j], gin, gv, prev_gap);
            if (g >= size - next) malformed("position past the end of the tensor");
            const uint64_t p = next + g;
            if constexpr (CM == 0) {
                prev = packed_symbol(cx[j], cv.entry, cv.mask0, cv.shift0);
            } else {
                const uint32_t same = p < row_end;  // row_end is 0 before the first weight
                while (row_end <= p) row_end += row_len;  // O(rows) in all
                // Arithmetic rather than branches: adjacency is close to a coin toss.
                const uint32_t adjacent = same & uint32_t(g == 0);
                const uint32_t left = 1 + prev;
                const uint32_t other = CM == 2 ? left : CM == 3 ? k + 1 + uint32_t(2 * prev >= k) : 0;
                const uint32_t ctx = adjacent * left + (same & (adjacent ^ 1)) * other;
                if (cv.unused[ctx]) malformed("code in an unused context");
                prev = packed_symbol(cx[j], cv.entry + (ctx << cv.stride_log2), cv.stride_mask, cv.shift[ctx]);
            }
            renorm_unchecked(cx[j], cin);
            pos[t + j] = p;
            codes[t + j] = prev;
            next = p + 1;
        }
    }
    for (unsigned j = 0; j < W; ++j) d.gx[j] = gx[j], d.cx[j] = cx[j];
    d.gs.in = gin;
    d.cs.in = cin;
    d.next = next;
    d.row_end = row_end;
    d.prev_gap = prev_gap;
    d.prev_code = prev;
    d.prev_pos = next - 1;
}

// The chunk loops for a payload's ways, modes and gap kind; none for tables of more than 256
// symbols or code contexts whose tables are too many to stride (the checked step throughout).
struct Chunks {
    using Gap = void (*)(Decoder&, uint64_t, uint64_t*);
    using Code = void (*)(Decoder&, uint64_t, uint32_t*);
    using Context = void (*)(Decoder&, uint64_t, uint64_t*, uint32_t*);
    Gap gap = nullptr;
    Code code = nullptr;
    Context context = nullptr;

    template <unsigned W>
    void pick(uint32_t gm, uint32_t cm, int kind) {
        if (cm == 0 && kind == kGapAny) {  // sparse: one loop, the gaps' raw bits beside the codes
            context = gm == 0 ? context_chunk<W, 0, 0, kGapAny> : context_chunk<W, 1, 0, kGapAny>;
            return;
        }
        if (cm == 0) {
            code = code_chunk<W>;
            if (gm == 0)
                gap = kind == kGapIdentity ? gap_chunk<W, 0, kGapIdentity>
                    : kind == kGapDirect   ? gap_chunk<W, 0, kGapDirect>
                                           : gap_chunk<W, 0, kGapAny>;
            else
                gap = kind == kGapIdentity ? gap_chunk<W, 1, kGapIdentity>
                    : kind == kGapDirect   ? gap_chunk<W, 1, kGapDirect>
                                           : gap_chunk<W, 1, kGapAny>;
            return;
        }
        const bool direct = kind != kGapAny;  // kGapIdentity is a kGapDirect table
        switch (gm * 8 + cm * 2 + direct) {
            case 2: context = context_chunk<W, 0, 1, kGapAny>; break;
            case 3: context = context_chunk<W, 0, 1, kGapDirect>; break;
            case 4: context = context_chunk<W, 0, 2, kGapAny>; break;
            case 5: context = context_chunk<W, 0, 2, kGapDirect>; break;
            case 6: context = context_chunk<W, 0, 3, kGapAny>; break;
            case 7: context = context_chunk<W, 0, 3, kGapDirect>; break;
            case 10: context = context_chunk<W, 1, 1, kGapAny>; break;
            case 11: context = context_chunk<W, 1, 1, kGapDirect>; break;
            case 12: context = context_chunk<W, 1, 2, kGapAny>; break;
            case 13: context = context_chunk<W, 1, 2, kGapDirect>; break;
            case 14: context = context_chunk<W, 1, 3, kGapAny>; break;
            default: context = context_chunk<W, 1, 3, kGapDirect>; break;
        }
    }

    explicit Chunks(const Decoder& d) {
        const Header& h = d.h;
        const uint32_t gm = h.info.gap_mode, cm = h.info.code_mode;
        if (d.gt.wide || d.ct.wide || (gm != 0 && !d.gt.strided) || (cm != 0 && !d.ct.strided)) return;
        const int kind = d.gt.max_symbols == 1          ? kGapIdentity
                       : d.gt.max_symbols <= kDirectGaps ? kGapDirect
                                                         : kGapAny;
        if (d.ways == 1) pick<1>(gm, cm, kind);
        else if (d.ways == 2) pick<2>(gm, cm, kind);
        else pick<4>(gm, cm, kind);
    }
};

// Chunks while both streams allow them, then the checked step for the rest. A chunk's positions
// and codes go to the arrays emit.chunk(i) gives (the sparse output itself, or local arrays),
// then emit.done(i, m); the checked step calls emit(i, pos, code); emit.finish() at the end.
template <typename Emit>
void decode_pass(const Header& h, Emit& emit) {
    const uint64_t n = h.info.kept;
    if (n == 0) return emit.finish();
    Decoder d(h);
    const unsigned W = d.ways;
    uint64_t i = 0;
    const Chunks chunks(d);
    if (chunks.gap || chunks.context) {
        for (;;) {
            uint64_t m = std::min<uint64_t>(kChunk, n - i);
            m -= m % W;
            if (m == 0) break;
            d.gtail.room(d.gs, m * d.gap_words * 4);
            d.ctail.room(d.cs, m * 4);
            uint64_t* pos = emit.positions(i);
            uint32_t* codes = emit.codes(i);
            if (chunks.context) {
                chunks.context(d, m, pos, codes);
            } else {
                chunks.gap(d, m, pos);
                chunks.code(d, m, codes);
            }
            if (d.gs.in > d.gs.end || d.cs.in > d.cs.end) malformed("rANS stream truncated");
            emit.done(m);
            i += m;
        }
    }
    for (; i < n; ++i) d.step(i, emit);
    for (unsigned j = 0; j < W; ++j)
        if (d.gx[j] != kRansL || d.cx[j] != kRansL) malformed("rANS stream does not end where it should");
    if (d.gs.in != d.gs.end || d.cs.in != d.cs.end) malformed("rANS stream does not end where it should");
    emit.finish();
}

// The dense output: zeros between kept weights written a chunk at a time, just before the
// chunk's values (so those land in cache lines just written, and no position is written twice
// but the kept ones).
struct DenseEmit {
    float* out;
    uint64_t size;
    const float* book;
    uint64_t zeroed = 0;  // positions below it are written
    uint64_t pos[kChunk];
    uint32_t code[kChunk];

    void zero_to(uint64_t end) {
        if (end > zeroed) std::memset(out + zeroed, 0, size_t(end - zeroed) * sizeof(float));
        zeroed = end;
    }
    uint64_t* positions(uint64_t) { return pos; }
    uint32_t* codes(uint64_t) { return code; }
    void done(uint64_t m) {
        zero_to(pos[m - 1] + 1);
        for (uint64_t t = 0; t < m; ++t) out[pos[t]] = book[code[t]];
    }
    void operator()(uint64_t, uint64_t p, uint32_t c) {
        zero_to(p + 1);
        out[p] = book[c];
    }
    void finish() { zero_to(size); }
};

struct SparseEmit {
    uint64_t* pos;
    uint32_t* code;
    uint64_t* positions(uint64_t i) { return pos + i; }
    uint32_t* codes(uint64_t i) { return code + i; }
    void done(uint64_t) {}
    void operator()(uint64_t i, uint64_t p, uint32_t c) {
        pos[i] = p;
        code[i] = c;
    }
    void finish() {}
};

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
    DenseEmit emit{out, out_size, h.info.codebook.data(), 0, {}, {}};
    decode_pass(h, emit);
}

void exact_decode_sparse(const uint8_t* data, size_t size, uint64_t* positions, uint32_t* codes, uint64_t kept) {
    Header h = parse(data, size);
    if (kept != h.info.kept)
        throw std::invalid_argument("exact_decode_sparse: arrays have " + std::to_string(kept) +
                                    " entries, the tensor keeps " + std::to_string(h.info.kept));
    SparseEmit emit{positions, codes};
    decode_pass(h, emit);
}

}  // namespace wl
