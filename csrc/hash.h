// The filter's hash functions (docs/FORMAT.md, "Hashing"). Internal header.
//
// Everything a decoder computes per key is 32-bit lane arithmetic (multiply, xor, shift, one
// 32x32->64 multiply-high), so AVX2 and NEON kernels can evaluate 8 or 4 keys at once; the
// 64-bit helpers below run once per piece, never per key.
#pragma once

#include <cstdint>

#include "weightless.h"

namespace wl {

// MurmurHash3's 32-bit finalizer: a bijection with full avalanche.
inline uint32_t fmix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

inline uint64_t splitmix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

// Seed of piece `index` at construction attempt `attempt` (informative: the format stores the
// result, so decoders never derive it).
inline uint64_t piece_hash_seed(uint64_t seed, uint64_t index, uint32_t attempt) {
    return splitmix64(seed ^ splitmix64((index << 8) | attempt));
}

// Seed of chunk `index` at attempt `attempt` (chunked layout; the format stores only the attempt,
// so decoders derive it).
inline uint64_t chunk_hash_seed(uint64_t seed, uint64_t index, uint32_t attempt) {
    return splitmix64(seed ^ splitmix64((index << 4) | attempt));
}

// A key mixed with a piece's seed: two Feistel rounds, so (x, y) is a bijection of the 64-bit
// key and distinct keys never share both words.
struct KeyHash {
    uint32_t x;
    uint32_t y;
};

inline KeyHash hash_key(uint64_t key, uint64_t hash_seed) {
    uint32_t x = uint32_t(key) ^ uint32_t(hash_seed);
    uint32_t y = uint32_t(key >> 32) ^ uint32_t(hash_seed >> 32);
    y ^= fmix32(x);
    x ^= fmix32(y);
    return {x, y};
}

// The per-piece constants the cell positions need.
struct PieceGeometry {
    uint32_t first_cells;     // S * L: h0 ranges over [0, S * L)
    uint32_t segment_length;  // L
    uint32_t offset_mask;     // L - 1
};

inline PieceGeometry piece_geometry(const Piece& piece) {
    uint32_t length = piece.segment_length();
    return {piece.segment_count * length, length, length - 1};
}

inline uint32_t mulhi32(uint32_t a, uint32_t b) { return uint32_t((uint64_t(a) * b) >> 32); }

// The block of a key of a piece with keys (num_blocks() >= 1).
inline uint32_t block_of(const Piece& piece, uint64_t key) {
    uint64_t b = (key - piece.first_key) >> piece.block_log2;
    return uint32_t(b < piece.num_blocks() ? b : piece.num_blocks() - 1);
}

// The first cells block b's keys may take: [base, base + width). width may be 0 for an empty
// block (its keys are all absent), and then base < S * L still holds.
struct FirstCells {
    uint32_t base;
    uint32_t width;
};

inline FirstCells first_cells_of_block(const Piece& piece, uint32_t block) {
    return {piece.block_starts[block], piece.block_starts[block + 1] - piece.block_starts[block]};
}

// The key's first cell h0, uniform over its block's slice of the first cells.
inline uint32_t first_cell(const KeyHash& h, FirstCells range) { return range.base + mulhi32(h.x, range.width); }

// The offset XORed into the key's cell j >= 1 inside segment h0 / L + j.
inline uint32_t cell_offset(const KeyHash& h, const PieceGeometry& g, uint32_t j) {
    return (j == 1 ? h.y : j == 2 ? h.y >> 16 : h.x) & g.offset_mask;
}

// The key's cells, one in each of `Arity` consecutive segments. Cell j lies in segment
// (h0 / L) + j; XOR with an offset < L keeps it inside that aligned segment.
template <uint32_t Arity>
inline void key_cells(const KeyHash& h, uint32_t h0, const PieceGeometry& g, uint32_t cells[Arity]) {
    static_assert(Arity == 3 || Arity == 4, "arity is 3 or 4");
    cells[0] = h0;
    for (uint32_t j = 1; j < Arity; ++j) cells[j] = (h0 + j * g.segment_length) ^ cell_offset(h, g, j);
}

inline void key_cells(const KeyHash& h, uint32_t h0, const PieceGeometry& g, uint32_t arity, uint32_t cells[4]) {
    if (arity == 4)
        key_cells<4>(h, h0, g, cells);
    else
        key_cells<3>(h, h0, g, cells);
}

// Inverse of key_cells: h0 from the key's cell j (construction knows a peeled key's hash and
// the cell it was peeled from, not the key, so not its block).
inline uint32_t first_cell_from(const KeyHash& h, const PieceGeometry& g, uint32_t cell, uint32_t j) {
    return j == 0 ? cell : (cell ^ cell_offset(h, g, j)) - j * g.segment_length;
}

// The chunked layout's cells of a key in a chunk of m < 2^16 cells: each 16-bit half of x and y
// scaled to [0, m). Cells may coincide (they then cancel in the XOR; construction knows it).
inline uint32_t scale16(uint32_t half, uint32_t m) { return (half * m) >> 16; }

inline void chunk_cells(const KeyHash& h, uint32_t m, uint32_t cells[4]) {
    cells[0] = scale16(h.x & 0xFFFF, m);
    cells[1] = scale16(h.x >> 16, m);
    cells[2] = scale16(h.y & 0xFFFF, m);
    cells[3] = scale16(h.y >> 16, m);
}

inline uint32_t low_bits_mask(uint32_t bits) {
    return bits >= 32 ? 0xFFFFFFFFu : (uint32_t(1) << bits) - 1;
}

// The t-bit mask XORed into every query of the key.
inline uint32_t key_mask(const KeyHash& h, uint32_t cell_mask) {
    return fmix32(h.x + h.y) & cell_mask;
}

}  // namespace wl
