// The scalar reference: every SIMD and threaded decoder is tested byte-identical to this.
#include <algorithm>

#include "hash.h"
#include "weightless.h"

namespace wl {
namespace {

// The piece holding `key`: the last one whose first_key <= key.
size_t find_piece(const Filter& f, uint64_t key) {
    auto after = std::upper_bound(f.pieces.begin(), f.pieces.end(), key,
                                  [](uint64_t k, const Piece& p) { return k < p.first_key; });
    return size_t(after - f.pieces.begin()) - 1;
}

struct PieceReader {
    const uint32_t* table;
    uint64_t hash_seed;
    PieceGeometry geometry;
    uint32_t arity;
    uint32_t cell_mask;
    bool empty;

    PieceReader(const Filter& f, const Piece& p)
        : table(f.cells.data() + p.cell_offset), hash_seed(p.hash_seed), geometry(piece_geometry(p)),
          arity(f.arity), cell_mask(low_bits_mask(f.cell_bits)), empty(p.segment_count == 0) {}

    uint32_t word(uint64_t key) const {
        KeyHash h = hash_key(key, hash_seed);
        uint32_t w = key_mask(h, cell_mask);
        if (empty) return w;  // a piece without keys has no cells: XOR over none is 0
        uint32_t cells[4];
        key_cells(h, geometry, arity, cells);
        for (uint32_t j = 0; j < arity; ++j) w ^= table[cells[j]];
        return w;
    }
};

inline int32_t value_of(uint32_t word, uint32_t value_bits) {
    return (word >> value_bits) == 0 ? int32_t(word) : -1;
}

}  // namespace

void query_raw(const Filter& f, const uint64_t* keys, size_t n, uint32_t* words) {
    for (size_t i = 0; i < n; ++i) words[i] = PieceReader(f, f.pieces[find_piece(f, keys[i])]).word(keys[i]);
}

void query_values(const Filter& f, const uint64_t* keys, size_t n, int32_t* values) {
    for (size_t i = 0; i < n; ++i)
        values[i] = value_of(PieceReader(f, f.pieces[find_piece(f, keys[i])]).word(keys[i]), f.value_bits);
}

void decode_range(const Filter& f, uint64_t begin, uint64_t end, int32_t* out) {
    if (begin >= end) return;
    for (size_t p = find_piece(f, begin); begin < end; ++p) {
        // Decode up to the next piece's first key with this piece's table, which stays in cache.
        uint64_t stop = p + 1 < f.pieces.size() ? std::min(end, f.pieces[p + 1].first_key) : end;
        PieceReader reader(f, f.pieces[p]);
        for (uint64_t key = begin; key < stop; ++key) *out++ = value_of(reader.word(key), f.value_bits);
        begin = stop;
    }
}

}  // namespace wl
