// The decoders' internal interface: per-ISA kernels over a run of consecutive keys, and the
// run-time choice between them (csrc/dispatch.cpp). Internal header.
//
// query.cpp holds the scalar reference and cuts [begin, end) into runs; a kernel only ever sees
// keys of one block of one piece whose high 32 bits are constant, so it can count positions in
// u32 lanes and every key's first cell comes from the same slice of the table.
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <new>

#include "hash.h"

namespace wl {
namespace detail {

// Keys key_hi * 2^32 + key_lo + i for i in [0, count): inside one block of one piece (or one
// chunk), and
// key_lo + count <= 2^32.
struct Run {
    bool chunked;             // the chunked layout (version 3): cells = chunk_cells(h, num_cells)
    const uint32_t* table;    // the piece's (chunk's) cells; unused when num_cells == 0 (word = mask)
    uint64_t num_cells;       // cells in the piece's (chunk's) table, 0 for an empty piece
    const void* cells;        // the same cells, possibly narrower (RunCells): what kernels read
    unsigned cell_bytes;      // 1, 2 or 4
    FirstCells first;         // the block's slice of first cells
    uint32_t seed_lo;         // low and high 32 bits of the piece's hash seed
    uint32_t seed_hi;
    PieceGeometry geometry;
    uint32_t arity;           // 3 or 4
    uint32_t cell_mask;       // 2^t - 1
    uint32_t key_hi;
    uint32_t key_lo;
    uint64_t count;
};

// The word of key (key_hi, lo) in a run: the scalar definition every kernel's tail uses.
inline uint32_t run_word(const Run& run, uint32_t lo) {
    KeyHash h = hash_key((uint64_t(run.key_hi) << 32) | lo, (uint64_t(run.seed_hi) << 32) | run.seed_lo);
    uint32_t w = key_mask(h, run.cell_mask);
    if (run.num_cells == 0) return w;
    uint32_t cells[4] = {};
    if (run.chunked)
        chunk_cells(h, uint32_t(run.num_cells), cells);
    else
        key_cells(h, first_cell(h, run.first), run.geometry, run.arity, cells);
    for (uint32_t j = 0; j < run.arity; ++j) w ^= run.table[cells[j]];
    return w;
}

// The cells kernels read for a piece: its own 4-byte cells, or, when t <= 16 and the decode
// reads at least as many keys of the piece as it has cells, a copy in 2-byte (t <= 16) or 1-byte
// (t <= 8) cells. A layer decode reads each cell ~20 times, so the copy costs little, and the
// cells it reads are 2-4 times denser in cache. The copy has 3 bytes of zero padding: a 4-byte
// load at any cell stays inside.
class RunCells {
public:
    RunCells(const uint32_t* table, uint64_t num_cells, uint32_t cell_mask, uint64_t keys_read)
        : data_(table), bytes_(4) {
        if (num_cells == 0 || cell_mask > 0xFFFF || keys_read < num_cells) return;
        unsigned bytes = cell_mask <= 0xFF ? 1 : 2;
        copy_.reset(new (std::nothrow) uint8_t[num_cells * bytes + 3]);
        if (!copy_) return;  // decoders run on worker threads: no exceptions, just the 4-byte cells
        bytes_ = bytes;
        if (bytes_ == 1)
            narrow(table, num_cells, copy_.get());
        else
            narrow(table, num_cells, reinterpret_cast<uint16_t*>(copy_.get()));
        std::memset(copy_.get() + num_cells * bytes_, 0, 3);
        data_ = copy_.get();
    }

    const void* data() const { return data_; }
    unsigned bytes() const { return bytes_; }  // 1, 2 or 4

private:
    template <typename Cell>
    static void narrow(const uint32_t* table, uint64_t num_cells, Cell* out) {
        for (uint64_t c = 0; c < num_cells; ++c) out[c] = Cell(table[c]);
    }

    std::unique_ptr<uint8_t[]> copy_;
    const void* data_;
    unsigned bytes_;
};

// One ISA's kernels. Each writes out[0 .. run.count) (or counts over the run).
struct Kernels {
    const char* name;
    // codebook[w] where the word w < codebook_size (<= 2^value_bits), else 0.0f.
    void (*weights)(const Run& run, const float* codebook, uint32_t codebook_size, float* out);
    // w where w >> value_bits == 0, else -1.
    void (*values)(const Run& run, uint32_t value_bits, int32_t* out);
    // Number of words w < codebook_size.
    uint64_t (*count)(const Run& run, uint32_t codebook_size);
};

// Kernels compiled into this build for the named ISA, or nullptr. They may still need a CPU check.
const Kernels* avx2_kernels();    // decode_avx2.cpp: x86-64 only
const Kernels* avx512_kernels();  // decode_avx512.cpp: x86-64 only
const Kernels* neon_kernels();  // decode_neon.cpp: AArch64 only

// The kernels the decoders use now (set_isa, else WEIGHTLESS_ISA read once, else the best
// supported ISA). nullptr means the scalar reference in query.cpp. Throws std::invalid_argument
// for an unknown or unsupported WEIGHTLESS_ISA.
const Kernels* active_kernels();

// Forgets the selection, so that the next decode call reads WEIGHTLESS_ISA again (tests only).
void reread_isa_environment();

}  // namespace detail
}  // namespace wl
