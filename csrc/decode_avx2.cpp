// AVX2 kernels (decode.h): 8 keys per step in u32 lanes, table reads by gather. Only the
// functions in this file are compiled for AVX2 (target attribute); dispatch.cpp calls them only
// on a CPU that has it.
//
// Measured on a 2-core Xeon (Sapphire Rapids class): with blocks keeping the cells read in cache,
// about half the time is the three gathers and half the hashing and the store; software
// prefetching, unrolling and streaming stores did not help, narrower table copies (RunCells) and
// register codebooks did.
#include "decode.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define WL_AVX2 __attribute__((target("avx2")))

namespace wl {
namespace detail {
namespace {

WL_AVX2 inline __m256i fmix(__m256i h) {
    h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
    h = _mm256_mullo_epi32(h, _mm256_set1_epi32(int(0x85EBCA6Bu)));
    h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 13));
    h = _mm256_mullo_epi32(h, _mm256_set1_epi32(int(0xC2B2AE35u)));
    return _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
}

// High 32 bits of a * b in each lane; b holds the same value in every lane.
WL_AVX2 inline __m256i mulhi(__m256i a, __m256i b) {
    __m256i even = _mm256_srli_epi64(_mm256_mul_epu32(a, b), 32);
    __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), b);
    return _mm256_blend_epi32(even, odd, 0xAA);
}

// Lanes where w < n (unsigned), all ones.
WL_AVX2 inline __m256i below(__m256i w, __m256i n) {
    __m256i at_least = _mm256_cmpeq_epi32(_mm256_max_epu32(w, n), w);
    return _mm256_xor_si256(at_least, _mm256_set1_epi32(-1));
}

// codebook[w] for w < size, else 0. A codebook of up to 8 * Regs <= 16 entries lives in
// registers, zero-padded, and a lookup is a permute per register (and a blend on bit 3 of w);
// a larger one is gathered (measured: permutes and blends for 32 entries cost more than a gather).
template <int Regs>  // 1 or 2 registers; 0: gather
struct WeightsSink {
    const float* codebook;
    uint32_t size;
    float* out;
    __m256 book[2];

    WL_AVX2 WeightsSink(const float* codebook_, uint32_t size_, float* out_) : codebook(codebook_), size(size_), out(out_) {
        alignas(32) float padded[16] = {};
        for (uint32_t i = 0; i < size && i < 16; ++i) padded[i] = codebook[i];
        book[0] = _mm256_load_ps(padded);
        book[1] = _mm256_load_ps(padded + 8);
    }

    WL_AVX2 void put8(uint64_t i, __m256i w) const {
        __m256 v;
        if constexpr (Regs == 0) {
            // Lanes past the codebook are masked: not read, zero.
            __m256 mask = _mm256_castsi256_ps(below(w, _mm256_set1_epi32(int(size))));
            v = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), codebook, w, mask, 4);
        } else {
            v = _mm256_permutevar8x32_ps(book[0], w);  // uses the low 3 bits of w
            if constexpr (Regs == 2)
                v = _mm256_blendv_ps(v, _mm256_permutevar8x32_ps(book[1], w),
                                     _mm256_castsi256_ps(_mm256_slli_epi32(w, 28)));
            __m256i inside = _mm256_cmpeq_epi32(_mm256_srli_epi32(w, Regs == 1 ? 3 : 4), _mm256_setzero_si256());
            v = _mm256_and_ps(v, _mm256_castsi256_ps(inside));
        }
        _mm256_storeu_ps(out + i, v);
    }

    void put1(uint64_t i, uint32_t w) const { out[i] = w < size ? codebook[w] : 0.0f; }
};

struct ValuesSink {
    uint32_t value_bits;
    int32_t* out;

    WL_AVX2 void put8(uint64_t i, __m256i w) const {
        __m256i absent = _mm256_cmpeq_epi32(_mm256_srl_epi32(w, _mm_cvtsi32_si128(int(value_bits))),
                                            _mm256_setzero_si256());
        absent = _mm256_xor_si256(absent, _mm256_set1_epi32(-1));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_or_si256(w, absent));
    }
    void put1(uint64_t i, uint32_t w) const { out[i] = (w >> value_bits) == 0 ? int32_t(w) : -1; }
};

struct CountSink {
    uint32_t size;
    __m256i lanes;  // per-lane counts: a run has at most 2^32 keys, so at most 2^29 per lane
    uint64_t tail;

    WL_AVX2 void put8(uint64_t, __m256i w) { lanes = _mm256_sub_epi32(lanes, below(w, _mm256_set1_epi32(int(size)))); }
    void put1(uint64_t, uint32_t w) { tail += w < size; }
};

template <typename Sink>
void scalar_run(const Run& run, Sink& sink) {
    for (uint64_t i = 0; i < run.count; ++i) sink.put1(i, run_word(run, run.key_lo + uint32_t(i)));
}

// Cells Bytes wide (RunCells): a 4-byte gather at scale Bytes, masked to the cell.
template <int Bytes>
WL_AVX2 inline __m256i gather_cells(const void* cells, __m256i index) {
    __m256i v = _mm256_i32gather_epi32(static_cast<const int*>(cells), index, Bytes);
    if constexpr (Bytes == 4) return v;
    return _mm256_and_si256(v, _mm256_set1_epi32(Bytes == 2 ? 0xFFFF : 0xFF));
}

// Arity 0: a piece without cells, word = mask. Chunked: the chunked layout's cells (hash.h,
// chunk_cells), each 16-bit half of x and y times the chunk's cell count, high half.
template <uint32_t Arity, int Bytes, typename Sink, bool Chunked = false>
WL_AVX2 void kernel(const Run& run, const void* table, Sink& sink) {
    const __m256i chunk_cells16 = _mm256_set1_epi16(short(uint16_t(Chunked ? run.num_cells : 0)));
    const __m256i low16 = _mm256_set1_epi32(0xFFFF);
    const __m256i seed_lo = _mm256_set1_epi32(int(run.seed_lo));
    const __m256i y0 = _mm256_set1_epi32(int(run.key_hi ^ run.seed_hi));
    const __m256i cell_mask = _mm256_set1_epi32(int(run.cell_mask));
    const __m256i first_base = _mm256_set1_epi32(int(run.first.base));
    const __m256i first_width = _mm256_set1_epi32(int(run.first.width));
    const __m256i length = _mm256_set1_epi32(int(run.geometry.segment_length));
    const __m256i length2 = _mm256_set1_epi32(int(2 * run.geometry.segment_length));
    const __m256i length3 = _mm256_set1_epi32(int(3 * run.geometry.segment_length));
    const __m256i offset_mask = _mm256_set1_epi32(int(run.geometry.offset_mask));
    __m256i lo = _mm256_add_epi32(_mm256_set1_epi32(int(run.key_lo)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i eight = _mm256_set1_epi32(8);
    const uint64_t count = run.count;  // a local: the stores to out may alias run
    uint64_t i = 0;
    for (; i + 8 <= count; i += 8) {
        __m256i x = _mm256_xor_si256(lo, seed_lo);
        __m256i y = _mm256_xor_si256(y0, fmix(x));
        x = _mm256_xor_si256(x, fmix(y));
        __m256i w = _mm256_and_si256(fmix(_mm256_add_epi32(x, y)), cell_mask);
        if constexpr (Chunked) {
            __m256i cx = _mm256_mulhi_epu16(x, chunk_cells16);
            __m256i cy = _mm256_mulhi_epu16(y, chunk_cells16);
            w = _mm256_xor_si256(w, gather_cells<Bytes>(table, _mm256_and_si256(cx, low16)));
            w = _mm256_xor_si256(w, gather_cells<Bytes>(table, _mm256_srli_epi32(cx, 16)));
            w = _mm256_xor_si256(w, gather_cells<Bytes>(table, _mm256_and_si256(cy, low16)));
            if constexpr (Arity == 4) w = _mm256_xor_si256(w, gather_cells<Bytes>(table, _mm256_srli_epi32(cy, 16)));
        } else if constexpr (Arity != 0) {
            __m256i h0 = _mm256_add_epi32(first_base, mulhi(x, first_width));
            __m256i h1 = _mm256_xor_si256(_mm256_add_epi32(h0, length), _mm256_and_si256(y, offset_mask));
            __m256i h2 = _mm256_xor_si256(_mm256_add_epi32(h0, length2),
                                          _mm256_and_si256(_mm256_srli_epi32(y, 16), offset_mask));
            w = _mm256_xor_si256(w, gather_cells<Bytes>(table, h0));
            w = _mm256_xor_si256(w, gather_cells<Bytes>(table, h1));
            w = _mm256_xor_si256(w, gather_cells<Bytes>(table, h2));
            if constexpr (Arity == 4) {
                __m256i h3 = _mm256_xor_si256(_mm256_add_epi32(h0, length3), _mm256_and_si256(x, offset_mask));
                w = _mm256_xor_si256(w, gather_cells<Bytes>(table, h3));
            }
        }
        sink.put8(i, w);
        lo = _mm256_add_epi32(lo, eight);
    }
    for (; i < count; ++i) sink.put1(i, run_word(run, run.key_lo + uint32_t(i)));
}

template <typename Sink>
WL_AVX2 void run_kernel(const Run& run, Sink& sink) {
    if (run.num_cells == 0) return kernel<0, 4>(run, nullptr, sink);
    if (run.num_cells > (uint64_t(1) << 31)) return scalar_run(run, sink);  // gather indices are signed 32-bit
    if (run.chunked) {
        switch (run.cell_bytes * 8 + run.arity) {
            case 8 + 3: return kernel<3, 1, Sink, true>(run, run.cells, sink);
            case 8 + 4: return kernel<4, 1, Sink, true>(run, run.cells, sink);
            case 16 + 3: return kernel<3, 2, Sink, true>(run, run.cells, sink);
            case 16 + 4: return kernel<4, 2, Sink, true>(run, run.cells, sink);
            case 32 + 4: return kernel<4, 4, Sink, true>(run, run.cells, sink);
            default: return kernel<3, 4, Sink, true>(run, run.cells, sink);
        }
    }
    switch (run.cell_bytes * 8 + run.arity) {
        case 8 + 3: return kernel<3, 1>(run, run.cells, sink);
        case 8 + 4: return kernel<4, 1>(run, run.cells, sink);
        case 16 + 3: return kernel<3, 2>(run, run.cells, sink);
        case 16 + 4: return kernel<4, 2>(run, run.cells, sink);
        case 32 + 4: return kernel<4, 4>(run, run.cells, sink);
        default: return kernel<3, 4>(run, run.cells, sink);
    }
}

template <int Regs>
WL_AVX2 void weights_with(const Run& run, const float* codebook, uint32_t codebook_size, float* out) {
    WeightsSink<Regs> sink(codebook, codebook_size, out);
    run_kernel(run, sink);
}

WL_AVX2 void weights(const Run& run, const float* codebook, uint32_t codebook_size, float* out) {
    if (codebook_size <= 8)
        weights_with<1>(run, codebook, codebook_size, out);
    else if (codebook_size <= 16)
        weights_with<2>(run, codebook, codebook_size, out);
    else
        weights_with<0>(run, codebook, codebook_size, out);
}

WL_AVX2 void values(const Run& run, uint32_t value_bits, int32_t* out) {
    ValuesSink sink{value_bits, out};
    run_kernel(run, sink);
}

WL_AVX2 uint64_t count(const Run& run, uint32_t codebook_size) {
    CountSink sink{codebook_size, _mm256_setzero_si256(), 0};
    run_kernel(run, sink);
    alignas(32) uint32_t lanes[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), sink.lanes);
    uint64_t total = sink.tail;
    for (uint32_t c : lanes) total += c;
    return total;
}

const Kernels kAvx2{"avx2", weights, values, count};

}  // namespace

const Kernels* avx2_kernels() { return &kAvx2; }

}  // namespace detail
}  // namespace wl

#else

namespace wl {
namespace detail {
const Kernels* avx2_kernels() { return nullptr; }
}  // namespace detail
}  // namespace wl

#endif
