// NEON kernels (decode.h) for AArch64, where NEON is baseline. Tuned for in-order cores such as
// the Cortex-A53, which have no gather: the hashing runs in u32x4 lanes (fmix32, the Feistel
// rounds, the 32x32->64 multiply-high) for a block of keys at a time and leaves the cell indices
// in a small buffer; the table reads are scalar loads from it. While one block is read, the next
// one is already hashed and its cells prefetched, so an in-order core does not stall on them.
// Tables are read from a 1- or 2-byte copy where t allows (RunCells): with 512 KB of L2 shared
// by four cores (Raspberry Pi 3), the smaller table misses less often.
#include "decode.h"

#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>

namespace wl {
namespace detail {
namespace {

inline uint32x4_t fmix(uint32x4_t h) {
    h = veorq_u32(h, vshrq_n_u32(h, 16));
    h = vmulq_n_u32(h, 0x85EBCA6Bu);
    h = veorq_u32(h, vshrq_n_u32(h, 13));
    h = vmulq_n_u32(h, 0xC2B2AE35u);
    return veorq_u32(h, vshrq_n_u32(h, 16));
}

// High 32 bits of a * b in each lane.
inline uint32x4_t mulhi(uint32x4_t a, uint32_t b) {
    uint64x2_t low = vmull_n_u32(vget_low_u32(a), b);
    uint64x2_t high = vmull_high_n_u32(a, b);
    return vuzp2q_u32(vreinterpretq_u32_u64(low), vreinterpretq_u32_u64(high));
}

constexpr unsigned kBlock = 16;  // keys hashed ahead of their table reads

struct Block {
    alignas(16) uint32_t mask[kBlock];
    alignas(16) uint32_t cell[4][kBlock];
};

// Chunked: the chunked layout's cells (hash.h, chunk_cells).
template <uint32_t Arity, bool Chunked>
struct Hasher {
    uint32x4_t seed_lo, y0, cell_mask, length, length2, length3, offset_mask, first_base;
    uint32_t first_width;
    uint32_t chunk_cells = 0;

    explicit Hasher(const Run& run)
        : seed_lo(vdupq_n_u32(run.seed_lo)), y0(vdupq_n_u32(run.key_hi ^ run.seed_hi)),
          cell_mask(vdupq_n_u32(run.cell_mask)), length(vdupq_n_u32(run.geometry.segment_length)),
          length2(vdupq_n_u32(2 * run.geometry.segment_length)), length3(vdupq_n_u32(3 * run.geometry.segment_length)),
          offset_mask(vdupq_n_u32(run.geometry.offset_mask)), first_base(vdupq_n_u32(run.first.base)),
          first_width(run.first.width), chunk_cells(uint32_t(run.num_cells)) {}

    // Hashes the kBlock keys whose low halves are lo, lo + 1, ...; returns lo + kBlock.
    uint32x4_t hash(uint32x4_t lo, Block& b) const {
        const uint32x4_t four = vdupq_n_u32(4);
        for (unsigned at = 0; at < kBlock; at += 4) {
            uint32x4_t x = veorq_u32(lo, seed_lo);
            uint32x4_t y = veorq_u32(y0, fmix(x));
            x = veorq_u32(x, fmix(y));
            vst1q_u32(b.mask + at, vandq_u32(fmix(vaddq_u32(x, y)), cell_mask));
            if constexpr (Chunked) {
                const uint32x4_t low16 = vdupq_n_u32(0xFFFF);
                vst1q_u32(b.cell[0] + at, vshrq_n_u32(vmulq_n_u32(vandq_u32(x, low16), chunk_cells), 16));
                vst1q_u32(b.cell[1] + at, vshrq_n_u32(vmulq_n_u32(vshrq_n_u32(x, 16), chunk_cells), 16));
                vst1q_u32(b.cell[2] + at, vshrq_n_u32(vmulq_n_u32(vandq_u32(y, low16), chunk_cells), 16));
                if constexpr (Arity == 4)
                    vst1q_u32(b.cell[3] + at, vshrq_n_u32(vmulq_n_u32(vshrq_n_u32(y, 16), chunk_cells), 16));
            } else if constexpr (Arity != 0) {
                uint32x4_t h0 = vaddq_u32(first_base, mulhi(x, first_width));
                vst1q_u32(b.cell[0] + at, h0);
                vst1q_u32(b.cell[1] + at, veorq_u32(vaddq_u32(h0, length), vandq_u32(y, offset_mask)));
                vst1q_u32(b.cell[2] + at, veorq_u32(vaddq_u32(h0, length2), vandq_u32(vshrq_n_u32(y, 16), offset_mask)));
                if constexpr (Arity == 4)
                    vst1q_u32(b.cell[3] + at, veorq_u32(vaddq_u32(h0, length3), vandq_u32(x, offset_mask)));
            }
            lo = vaddq_u32(lo, four);
        }
        return lo;
    }
};

template <uint32_t Arity, typename Cell>
inline void prefetch(const Cell* table, const Block& b) {
    if constexpr (Arity != 0)
        for (unsigned k = 0; k < kBlock; ++k)
            for (uint32_t j = 0; j < Arity; ++j) __builtin_prefetch(table + b.cell[j][k]);
}

// Cell: the width of the table's cells (RunCells). Arity 0: a piece without cells, word = mask.
template <uint32_t Arity, typename Cell, typename Sink, bool Chunked = false>
void kernel(const Run& run, const void* cells, Sink& sink) {
    const Hasher<Arity, Chunked> hasher(run);
    const Cell* table = static_cast<const Cell*>(cells);
    const uint64_t count = run.count, blocks = count / kBlock;  // locals: the stores to out may alias run
    Block buffers[2];
    uint32x4_t lo = vaddq_u32(vdupq_n_u32(run.key_lo), uint32x4_t{0, 1, 2, 3});
    if (blocks > 0) {
        lo = hasher.hash(lo, buffers[0]);
        prefetch<Arity>(table, buffers[0]);
    }
    for (uint64_t b = 0; b < blocks; ++b) {
        const Block& cur = buffers[b & 1];
        if (b + 1 < blocks) {
            lo = hasher.hash(lo, buffers[(b + 1) & 1]);
            prefetch<Arity>(table, buffers[(b + 1) & 1]);
        }
        const uint64_t base = b * kBlock;
        for (unsigned k = 0; k < kBlock; ++k) {
            uint32_t w = cur.mask[k];
            if constexpr (Arity != 0) w ^= table[cur.cell[0][k]] ^ table[cur.cell[1][k]] ^ table[cur.cell[2][k]];
            if constexpr (Arity == 4) w ^= table[cur.cell[3][k]];
            sink.put(base + k, w);
        }
    }
    for (uint64_t i = blocks * kBlock; i < count; ++i) sink.put(i, run_word(run, run.key_lo + uint32_t(i)));
}

struct WeightsSink {
    const float* codebook;
    uint32_t size;
    float* out;
    void put(uint64_t i, uint32_t w) const { out[i] = w < size ? codebook[w] : 0.0f; }
};

struct ValuesSink {
    uint32_t value_bits;
    int32_t* out;
    void put(uint64_t i, uint32_t w) const { out[i] = (w >> value_bits) == 0 ? int32_t(w) : -1; }
};

struct CountSink {
    uint32_t size;
    uint64_t count;
    void put(uint64_t, uint32_t w) { count += w < size; }
};

template <typename Sink>
void run_kernel(const Run& run, Sink& sink) {
    if (run.num_cells == 0) return kernel<0, uint32_t>(run, nullptr, sink);
    if (run.chunked) {
        switch (run.cell_bytes * 8 + run.arity) {
            case 8 + 3: return kernel<3, uint8_t, Sink, true>(run, run.cells, sink);
            case 8 + 4: return kernel<4, uint8_t, Sink, true>(run, run.cells, sink);
            case 16 + 3: return kernel<3, uint16_t, Sink, true>(run, run.cells, sink);
            case 16 + 4: return kernel<4, uint16_t, Sink, true>(run, run.cells, sink);
            case 32 + 4: return kernel<4, uint32_t, Sink, true>(run, run.cells, sink);
            default: return kernel<3, uint32_t, Sink, true>(run, run.cells, sink);
        }
    }
    switch (run.cell_bytes * 8 + run.arity) {
        case 8 + 3: return kernel<3, uint8_t>(run, run.cells, sink);
        case 8 + 4: return kernel<4, uint8_t>(run, run.cells, sink);
        case 16 + 3: return kernel<3, uint16_t>(run, run.cells, sink);
        case 16 + 4: return kernel<4, uint16_t>(run, run.cells, sink);
        case 32 + 4: return kernel<4, uint32_t>(run, run.cells, sink);
        default: return kernel<3, uint32_t>(run, run.cells, sink);
    }
}

void weights(const Run& run, const float* codebook, uint32_t codebook_size, float* out) {
    WeightsSink sink{codebook, codebook_size, out};
    run_kernel(run, sink);
}

void values(const Run& run, uint32_t value_bits, int32_t* out) {
    ValuesSink sink{value_bits, out};
    run_kernel(run, sink);
}

uint64_t count(const Run& run, uint32_t codebook_size) {
    CountSink sink{codebook_size, 0};
    run_kernel(run, sink);
    return sink.count;
}

const Kernels kNeon{"neon", weights, values, count};

}  // namespace

const Kernels* neon_kernels() { return &kNeon; }

}  // namespace detail
}  // namespace wl

#else

namespace wl {
namespace detail {
const Kernels* neon_kernels() { return nullptr; }
}  // namespace detail
}  // namespace wl

#endif
