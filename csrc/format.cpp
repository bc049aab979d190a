// Serialization (docs/FORMAT.md): little-endian fields, cells packed at exactly t bits, CRC-32.
#include <algorithm>
#include <array>
#include <cstring>
#include <stdexcept>
#include <string>

#include "hash.h"
#include "weightless.h"

namespace wl {
namespace {

constexpr uint8_t kMagic[4] = {'W', 'L', 'B', 'F'};
constexpr size_t kHeaderSize = 32;
constexpr size_t kPieceEntrySize = 32;
constexpr size_t kChecksumSize = 4;

// Fields are written byte by byte so the format never depends on the host's endianness.
void put_le(uint8_t* p, uint64_t v, size_t bytes) {
    for (size_t i = 0; i < bytes; ++i) p[i] = uint8_t(v >> (8 * i));
}
uint64_t get_le(const uint8_t* p, size_t bytes) {
    uint64_t v = 0;
    for (size_t i = 0; i < bytes; ++i) v |= uint64_t(p[i]) << (8 * i);
    return v;
}

uint64_t packed_bytes(uint64_t cells, uint32_t bits) { return (cells * bits + 7) / 8; }

// Block starts stored for a piece: the inner ones (the first is 0 and the last S * L).
uint64_t stored_block_starts(const Piece& p) { return p.num_blocks() > 1 ? p.num_blocks() - 1 : 0; }

[[noreturn]] void malformed(const std::string& why) {
    throw std::invalid_argument("malformed weightless filter: " + why);
}

// Version 3 (the chunked layout).
constexpr size_t kV3HeaderSize = 28;

// A little-endian bit stream: bit b of the stream is bit b mod 8 of byte b div 8.
struct BitWriter {
    uint8_t* p;
    uint64_t acc = 0;
    uint32_t held = 0;
    void put(uint64_t v, uint32_t bits) {  // bits <= 64
        while (bits > 0) {
            uint32_t take = std::min<uint32_t>(bits, 32);
            acc |= (v & ((uint64_t(1) << take) - 1)) << held;
            held += take;
            v = take == 64 ? 0 : v >> take;
            bits -= take;
            while (held >= 8) {
                *p++ = uint8_t(acc);
                acc >>= 8;
                held -= 8;
            }
        }
    }
    void flush() {
        if (held) *p++ = uint8_t(acc);
        acc = 0;
        held = 0;
    }
};

struct BitReader {
    const uint8_t* p;
    const uint8_t* end;
    uint64_t acc = 0;
    uint32_t held = 0;
    uint64_t get(uint32_t bits) {  // the caller checked that the stream holds them
        uint64_t v = 0;
        for (uint32_t done = 0; done < bits;) {
            uint32_t take = std::min<uint32_t>(bits - done, 32);
            while (held < take) {
                acc |= uint64_t(p < end ? *p : 0) << held;
                ++p;
                held += 8;
            }
            v |= (acc & ((uint64_t(1) << take) - 1)) << done;
            acc >>= take;
            held -= take;
            done += take;
        }
        return v;
    }
};

uint32_t bit_width(uint64_t v) { return v == 0 ? 0 : 64 - uint32_t(__builtin_clzll(v)); }

// The chunk directory's fields: boundary shift, delta width, attempt width.
struct V3Layout {
    uint32_t shift = 0, delta_bits = 0, attempt_bits = 0;
    uint64_t directory_bits = 0, cell_bits_total = 0;
};

V3Layout v3_layout(const Filter& f) {
    V3Layout l;
    uint64_t any = 0, max_delta = 0;
    uint32_t max_attempt = 0;
    for (size_t i = 0; i < f.chunks.size(); ++i) {
        if (i > 0) any |= f.chunks[i].first_key;
        max_attempt = std::max(max_attempt, f.chunks[i].attempt);
    }
    l.shift = f.chunks.size() > 1 ? uint32_t(__builtin_ctzll(any)) : 0;
    for (size_t i = 1; i < f.chunks.size(); ++i)
        max_delta = std::max(max_delta, (f.chunks[i].first_key - f.chunks[i - 1].first_key) >> l.shift);
    l.delta_bits = bit_width(max_delta);
    l.attempt_bits = bit_width(max_attempt);
    const uint64_t C = f.chunks.size();
    l.directory_bits = (C > 0 ? (C - 1) * l.delta_bits : 0) + C * l.attempt_bits;
    l.cell_bits_total = uint64_t(f.cells.size()) * f.cell_bits;
    return l;
}

size_t v3_size(const V3Layout& l) { return kV3HeaderSize + (l.directory_bits + l.cell_bits_total + 7) / 8 + kChecksumSize; }

std::vector<uint8_t> serialize_v3(const Filter& f) {
    const V3Layout l = v3_layout(f);
    std::vector<uint8_t> out(v3_size(l), 0);
    uint8_t* p = out.data();
    std::memcpy(p, kMagic, 4);
    put_le(p + 4, 3, 2);
    p[6] = uint8_t(f.arity);
    p[7] = uint8_t(f.value_bits);
    p[8] = uint8_t(f.cell_bits);
    p[9] = uint8_t(l.shift);
    p[10] = uint8_t(l.delta_bits);
    p[11] = uint8_t(l.attempt_bits);
    put_le(p + 12, f.chunk_keys, 2);
    put_le(p + 14, f.num_keys, 6);
    put_le(p + 20, f.seed, 8);
    BitWriter w{p + kV3HeaderSize};
    for (size_t i = 0; i < f.chunks.size(); ++i) {
        if (i > 0) w.put((f.chunks[i].first_key - f.chunks[i - 1].first_key) >> l.shift, l.delta_bits);
        w.put(f.chunks[i].attempt, l.attempt_bits);
    }
    for (uint32_t cell : f.cells) w.put(cell, f.cell_bits);
    w.flush();
    put_le(out.data() + out.size() - kChecksumSize, crc32(out.data(), out.size() - kChecksumSize), 4);
    return out;
}

// The header fields every version has: arity, value and cell widths.
void check_widths(const Filter& f) {
    if (f.arity != 3 && f.arity != 4) malformed("arity " + std::to_string(f.arity) + " is not 3 or 4");
    if (f.value_bits < 1 || f.value_bits > kMaxValueBits || f.cell_bits < f.value_bits || f.cell_bits > kMaxCellBits)
        malformed("value_bits " + std::to_string(f.value_bits) + " / cell_bits " + std::to_string(f.cell_bits) +
                  " out of range");
}

Filter deserialize_v3(const uint8_t* data, size_t size) {
    if (size < kV3HeaderSize + kChecksumSize)
        malformed("truncated: " + std::to_string(size) + " bytes is shorter than the header");
    Filter f;
    f.version = 3;
    f.arity = data[6];
    f.value_bits = data[7];
    f.cell_bits = data[8];
    const uint32_t shift = data[9], delta_bits = data[10], attempt_bits = data[11];
    f.chunk_keys = uint32_t(get_le(data + 12, 2));
    f.num_keys = get_le(data + 14, 6);
    f.seed = get_le(data + 20, 8);
    check_widths(f);
    if (f.chunk_keys < 1 || f.chunk_keys > kMaxChunkKeys) malformed("chunk_keys out of range");
    if (shift > 63 || delta_bits > 64 || attempt_bits > 4) malformed("chunk directory widths out of range");
    const uint64_t C = (f.num_keys + f.chunk_keys - 1) / f.chunk_keys;
    if (C <= 1 && (shift || delta_bits)) malformed("boundary fields of a filter with at most one chunk are not zero");
    if (C == 0 && attempt_bits) malformed("attempt width of an empty filter is not zero");
    // Every chunk has at least as many cells as keys: bound the sizes by the buffer first.
    const uint64_t avail_bits = uint64_t(size - kV3HeaderSize - kChecksumSize) * 8;
    // Every chunk also has at least 3 cells.
    if (f.num_keys > avail_bits / f.cell_bits || C > avail_bits / (3 * f.cell_bits) ||
        (C > 0 && (C - 1) * uint64_t(delta_bits) + C * attempt_bits > avail_bits))
        malformed("truncated: " + std::to_string(f.num_keys) + " keys do not fit in " + std::to_string(size) + " bytes");
    BitReader r{data + kV3HeaderSize, data + size - kChecksumSize};
    f.chunks.resize(C);
    uint64_t total = 0, any_boundary = 0, max_delta = 0;
    uint32_t max_attempt = 0;
    for (uint64_t i = 0; i < C; ++i) {
        Chunk& c = f.chunks[i];
        if (i > 0) {
            uint64_t delta = r.get(delta_bits);
            max_delta = std::max(max_delta, delta);
            uint64_t prev = f.chunks[i - 1].first_key;
            if (delta == 0 || delta > ((~uint64_t(0) - prev) >> shift)) malformed("chunk boundaries are not increasing");
            c.first_key = prev + (delta << shift);
            any_boundary |= c.first_key;
        }
        c.attempt = uint32_t(r.get(attempt_bits));
        if (c.attempt >= kMaxChunkAttempts) malformed("chunk attempt out of range");
        max_attempt = std::max(max_attempt, c.attempt);
        c.num_keys = uint32_t((unsigned __int128)f.num_keys * (i + 1) / C - (unsigned __int128)f.num_keys * i / C);
        c.num_cells = chunk_num_cells(c.num_keys, f.arity, c.attempt);
        c.hash_seed = chunk_hash_seed(f.seed, i, c.attempt);
        c.cell_offset = total;
        total += c.num_cells;
    }
    // One encoding per filter: the shift is the boundaries' common power of two and the widths
    // are those of the largest delta and attempt, as the writer chooses them.
    if ((C > 1 && ((any_boundary >> shift) & 1) == 0) || bit_width(max_delta) != delta_bits ||
        bit_width(max_attempt) != attempt_bits)
        malformed("chunk directory widths are not the smallest (non-canonical encoding)");
    const uint64_t directory_bits = C > 0 ? (C - 1) * uint64_t(delta_bits) + C * attempt_bits : 0;
    const size_t expected = kV3HeaderSize + size_t((directory_bits + total * f.cell_bits + 7) / 8) + kChecksumSize;
    if (size != expected)
        malformed(std::string(size < expected ? "truncated" : "trailing bytes") + ": " + std::to_string(size) +
                  " bytes, the header describes " + std::to_string(expected));
    if (crc32(data, size - kChecksumSize) != uint32_t(get_le(data + size - kChecksumSize, 4)))
        malformed("checksum mismatch (the data is corrupted)");
    f.cells.resize(total);
    for (uint64_t i = 0; i < total; ++i) f.cells[i] = uint32_t(r.get(f.cell_bits));
    uint32_t pad = uint32_t((8 - (directory_bits + total * f.cell_bits) % 8) % 8);
    if (r.get(pad) != 0) malformed("padding bits are not zero");
    return f;
}

std::array<uint32_t, 256> make_crc_table() {
    std::array<uint32_t, 256> table{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    return table;
}

}  // namespace

uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc) {
    static const std::array<uint32_t, 256> table = make_crc_table();
    crc = ~crc;
    for (size_t i = 0; i < size; ++i) crc = table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

size_t serialized_size(const Filter& f) {
    if (f.version == 3) return v3_size(v3_layout(f));
    uint64_t starts = 0;
    for (const Piece& p : f.pieces) starts += stored_block_starts(p);
    return kHeaderSize + kPieceEntrySize * f.pieces.size() + 4 * starts + packed_bytes(f.cells.size(), f.cell_bits) +
           kChecksumSize;
}

std::vector<uint8_t> serialize(const Filter& f) {
    if (f.version == 3) return serialize_v3(f);
    std::vector<uint8_t> out(serialized_size(f), 0);
    uint8_t* p = out.data();
    std::memcpy(p, kMagic, 4);
    put_le(p + 4, kFuseFormatVersion, 2);  // a filter read from a version-1 file is written as version 2
    p[6] = uint8_t(f.arity);
    p[7] = uint8_t(f.value_bits);
    p[8] = uint8_t(f.cell_bits);
    put_le(p + 12, f.pieces.size(), 4);
    put_le(p + 16, f.num_keys, 8);
    put_le(p + 24, f.seed, 8);
    p += kHeaderSize;
    for (const Piece& piece : f.pieces) {
        put_le(p, piece.first_key, 8);
        put_le(p + 8, piece.hash_seed, 8);
        put_le(p + 16, piece.num_keys, 4);
        put_le(p + 20, piece.segment_count, 4);
        p[24] = uint8_t(piece.segment_length_log2);
        p[25] = uint8_t(piece.block_log2);
        put_le(p + 28, piece.num_blocks(), 4);
        p += kPieceEntrySize;
    }
    for (const Piece& piece : f.pieces)
        for (uint64_t b = 1; b <= stored_block_starts(piece); ++b, p += 4) put_le(p, piece.block_starts[b], 4);
    // Cell i occupies bits [i * t, (i + 1) * t) of the stream, least significant bit first.
    uint64_t acc = 0;
    uint32_t held = 0;
    for (uint32_t cell : f.cells) {
        acc |= uint64_t(cell) << held;
        held += f.cell_bits;
        while (held >= 8) {
            *p++ = uint8_t(acc);
            acc >>= 8;
            held -= 8;
        }
    }
    if (held) *p++ = uint8_t(acc);
    put_le(p, crc32(out.data(), out.size() - kChecksumSize), 4);
    return out;
}

Filter deserialize(const uint8_t* data, size_t size) {
    if (size < kV3HeaderSize + kChecksumSize)
        malformed("truncated: " + std::to_string(size) + " bytes is shorter than the header");
    if (std::memcmp(data, kMagic, 4) != 0) malformed("bad magic (not a weightless filter)");
    uint32_t version = uint32_t(get_le(data + 4, 2));
    if (version != 3 && size < kHeaderSize + kChecksumSize)
        malformed("truncated: " + std::to_string(size) + " bytes is shorter than the header");
    if (version == 3) return deserialize_v3(data, size);
    if (version != 1 && version != kFuseFormatVersion)
        malformed("unsupported format version " + std::to_string(version) + " (this library reads versions 1 to " +
                  std::to_string(kFormatVersion) + ")");

    Filter f;
    f.version = version;
    f.arity = data[6];
    f.value_bits = data[7];
    f.cell_bits = data[8];
    uint64_t num_pieces = get_le(data + 12, 4);
    f.num_keys = get_le(data + 16, 8);
    f.seed = get_le(data + 24, 8);
    check_widths(f);
    if (data[9] || data[10] || data[11]) malformed("reserved header bytes are not zero");

    // Every size is checked against the buffer before anything is allocated from it.
    if (num_pieces == 0) malformed("no pieces");
    if (num_pieces > (size - kHeaderSize - kChecksumSize) / kPieceEntrySize)
        malformed("truncated: a directory of " + std::to_string(num_pieces) + " pieces does not fit in " +
                  std::to_string(size) + " bytes");
    f.pieces.resize(num_pieces);
    uint64_t total_cells = 0, total_keys = 0, total_starts = 0;
    std::vector<uint32_t> blocks(num_pieces, 0);
    const uint8_t* entry = data + kHeaderSize;
    for (uint64_t i = 0; i < num_pieces; ++i, entry += kPieceEntrySize) {
        Piece& p = f.pieces[i];
        p.first_key = get_le(entry, 8);
        p.hash_seed = get_le(entry + 8, 8);
        p.num_keys = uint32_t(get_le(entry + 16, 4));
        p.segment_count = uint32_t(get_le(entry + 20, 4));
        p.segment_length_log2 = entry[24];
        // Version 1 has no blocks (these bytes were reserved): one block per piece with keys.
        if (version >= 2) {
            p.block_log2 = entry[25];
            blocks[i] = uint32_t(get_le(entry + 28, 4));
        } else {
            blocks[i] = p.segment_count ? 1 : 0;
        }
        if (entry[26] || entry[27] || (version == 1 && (entry[25] || get_le(entry + 28, 4))))
            malformed("reserved piece bytes are not zero");
        if (p.block_log2 > 63) malformed("block length out of range");
        if ((blocks[i] == 0) != (p.segment_count == 0)) malformed("a piece's block count and table disagree");
        if (i == 0 ? p.first_key != 0 : p.first_key <= f.pieces[i - 1].first_key)
            malformed("piece first keys are not increasing from 0");
        if (p.segment_length_log2 > kMaxSegmentLengthLog2) malformed("segment length out of range");
        if ((p.num_keys == 0) != (p.segment_count == 0)) malformed("a piece's key count and table disagree");
        uint64_t cells = piece_num_cells(p, f.arity);  // < 2^49: no overflow below
        if (cells >= (uint64_t(1) << 32)) malformed("piece table too large");
        if (p.num_keys > cells) malformed("piece has more keys than cells");
        p.cell_offset = total_cells;
        total_cells += cells;
        total_keys += p.num_keys;
        total_starts += blocks[i] > 1 ? blocks[i] - 1 : 0;
        if (4 * total_starts + packed_bytes(total_cells, f.cell_bits) > size)
            malformed("truncated: the block starts and cells do not fit in " + std::to_string(size) + " bytes");
    }
    if (total_keys != f.num_keys) malformed("piece key counts do not add up to the header's");
    size_t expected = kHeaderSize + kPieceEntrySize * num_pieces + 4 * total_starts +
                      packed_bytes(total_cells, f.cell_bits) + kChecksumSize;
    if (size != expected)
        malformed(std::string(size < expected ? "truncated" : "trailing bytes") + ": " + std::to_string(size) +
                  " bytes, the header describes " + std::to_string(expected));
    if (crc32(data, size - kChecksumSize) != uint32_t(get_le(data + size - kChecksumSize, 4)))
        malformed("checksum mismatch (the data is corrupted)");

    const uint8_t* starts = data + kHeaderSize + kPieceEntrySize * num_pieces;
    for (uint64_t i = 0; i < num_pieces; ++i) {
        Piece& p = f.pieces[i];
        if (blocks[i] == 0) continue;
        const uint32_t first_cells = p.segment_count << p.segment_length_log2;  // < 2^32: checked above
        p.block_starts.resize(size_t(blocks[i]) + 1);
        p.block_starts[0] = 0;
        for (uint32_t b = 1; b < blocks[i]; ++b, starts += 4) p.block_starts[b] = uint32_t(get_le(starts, 4));
        p.block_starts[blocks[i]] = first_cells;
        // Every block's slice lies inside the first cells and starts below their end, so every
        // first cell a key can get (decode.h: base + mulhi(x, width)) is below S * L.
        for (uint32_t b = 1; b < blocks[i]; ++b)
            if (p.block_starts[b] < p.block_starts[b - 1]) malformed("block starts are not increasing");
        if (p.block_starts[blocks[i] - 1] >= first_cells) malformed("the last block starts past the first cells");
    }

    f.cells.resize(total_cells);
    const uint8_t* bits = starts;
    const uint64_t cell_mask = (uint64_t(1) << f.cell_bits) - 1;
    uint64_t acc = 0;
    uint32_t held = 0;
    for (uint64_t i = 0; i < total_cells; ++i) {
        while (held < f.cell_bits) {
            acc |= uint64_t(*bits++) << held;
            held += 8;
        }
        f.cells[i] = uint32_t(acc & cell_mask);
        acc >>= f.cell_bits;
        held -= f.cell_bits;
    }
    if (acc != 0) malformed("padding bits are not zero");
    return f;
}

}  // namespace wl
