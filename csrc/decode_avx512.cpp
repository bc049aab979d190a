// AVX-512 kernels (decode.h): 16 keys per step in u32 lanes, table reads by gather, the
// codebook lookup by a permute of one or two registers (up to 32 clusters, the common case,
// where AVX2 needs a fourth gather). Only the functions in this file are compiled for AVX-512F
// (target attribute); dispatch.cpp calls them only on a CPU (and OS) that has it.
#include "decode.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 reports the intrinsics' own `__Y = __Y` placeholders (avx512fintrin.h) as maybe
// uninitialized once inlined here: a known false positive, silenced for this file only.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#define WL_AVX512 __attribute__((target("avx512f")))

namespace wl {
namespace detail {
namespace {

WL_AVX512 inline __m512i fmix(__m512i h) {
    h = _mm512_xor_si512(h, _mm512_srli_epi32(h, 16));
    h = _mm512_mullo_epi32(h, _mm512_set1_epi32(int(0x85EBCA6Bu)));
    h = _mm512_xor_si512(h, _mm512_srli_epi32(h, 13));
    h = _mm512_mullo_epi32(h, _mm512_set1_epi32(int(0xC2B2AE35u)));
    return _mm512_xor_si512(h, _mm512_srli_epi32(h, 16));
}

// High 32 bits of a * b in each lane; b holds the same value in every lane.
WL_AVX512 inline __m512i mulhi(__m512i a, __m512i b) {
    __m512i even = _mm512_srli_epi64(_mm512_mul_epu32(a, b), 32);
    __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), b);
    return _mm512_mask_blend_epi32(0xAAAA, even, odd);
}

// codebook[w] for w < size, else 0: a permute over one (size <= 16) or two (<= 32) registers,
// zero-padded; a larger codebook is gathered in the lanes that name a cluster.
template <int Regs>  // 1 or 2 registers; 0: gather
struct WeightsSink {
    const float* codebook;
    uint32_t size;
    float* out;
    __m512 book[2];

    WL_AVX512 WeightsSink(const float* codebook_, uint32_t size_, float* out_)
        : codebook(codebook_), size(size_), out(out_) {
        alignas(64) float padded[32] = {};
        for (uint32_t i = 0; i < size && i < 32; ++i) padded[i] = codebook[i];
        book[0] = _mm512_load_ps(padded);
        book[1] = _mm512_load_ps(padded + 16);
    }

    WL_AVX512 void put16(uint64_t i, __m512i w) const {
        __mmask16 hit = _mm512_cmplt_epu32_mask(w, _mm512_set1_epi32(int(size)));
        __m512 v;
        if constexpr (Regs == 0)
            v = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), hit, w, codebook, 4);
        else if constexpr (Regs == 1)
            v = _mm512_maskz_permutexvar_ps(hit, w, book[0]);
        else
            v = _mm512_maskz_permutex2var_ps(hit, book[0], w, book[1]);
        _mm512_storeu_ps(out + i, v);
    }

    void put1(uint64_t i, uint32_t w) const { out[i] = w < size ? codebook[w] : 0.0f; }
};

struct ValuesSink {
    uint32_t value_bits;
    int32_t* out;

    WL_AVX512 void put16(uint64_t i, __m512i w) const {
        __m512i high = _mm512_srl_epi32(w, _mm_cvtsi32_si128(int(value_bits)));
        __mmask16 absent = _mm512_test_epi32_mask(high, high);
        _mm512_storeu_si512(out + i, _mm512_mask_mov_epi32(w, absent, _mm512_set1_epi32(-1)));
    }
    void put1(uint64_t i, uint32_t w) const { out[i] = (w >> value_bits) == 0 ? int32_t(w) : -1; }
};

struct CountSink {
    uint32_t size;
    uint64_t count;

    WL_AVX512 void put16(uint64_t, __m512i w) {
        count += uint64_t(__builtin_popcount(_mm512_cmplt_epu32_mask(w, _mm512_set1_epi32(int(size)))));
    }
    void put1(uint64_t, uint32_t w) { count += w < size; }
};

// Cells Bytes wide (RunCells): a 4-byte gather at scale Bytes, masked to the cell.
template <int Bytes>
WL_AVX512 inline __m512i gather_cells(const void* cells, __m512i index) {
    __m512i v = _mm512_i32gather_epi32(index, cells, Bytes);
    if constexpr (Bytes == 4) return v;
    return _mm512_and_si512(v, _mm512_set1_epi32(Bytes == 2 ? 0xFFFF : 0xFF));
}

// (half * m) >> 16 for halves and m below 2^16 (hash.h, scale16).
WL_AVX512 inline __m512i scale16(__m512i half, __m512i m) { return _mm512_srli_epi32(_mm512_mullo_epi32(half, m), 16); }

// Arity 0: a piece without cells, word = mask. Chunked: the chunked layout's cells (hash.h,
// chunk_cells), each 16-bit half of x and y times the chunk's cell count, high half.
template <uint32_t Arity, int Bytes, typename Sink, bool Chunked = false>
WL_AVX512 void kernel(const Run& run, const void* table, Sink& sink) {
    const __m512i chunk_cells32 = _mm512_set1_epi32(int(Chunked ? run.num_cells : 0));
    const __m512i low16 = _mm512_set1_epi32(0xFFFF);
    const __m512i seed_lo = _mm512_set1_epi32(int(run.seed_lo));
    const __m512i y0 = _mm512_set1_epi32(int(run.key_hi ^ run.seed_hi));
    const __m512i cell_mask = _mm512_set1_epi32(int(run.cell_mask));
    const __m512i first_base = _mm512_set1_epi32(int(run.first.base));
    const __m512i first_width = _mm512_set1_epi32(int(run.first.width));
    const __m512i length = _mm512_set1_epi32(int(run.geometry.segment_length));
    const __m512i length2 = _mm512_set1_epi32(int(2 * run.geometry.segment_length));
    const __m512i length3 = _mm512_set1_epi32(int(3 * run.geometry.segment_length));
    const __m512i offset_mask = _mm512_set1_epi32(int(run.geometry.offset_mask));
    __m512i lo = _mm512_add_epi32(_mm512_set1_epi32(int(run.key_lo)),
                                  _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m512i sixteen = _mm512_set1_epi32(16);
    const uint64_t count = run.count;  // a local: the stores to out may alias run
    uint64_t i = 0;
    for (; i + 16 <= count; i += 16) {
        __m512i x = _mm512_xor_si512(lo, seed_lo);
        __m512i y = _mm512_xor_si512(y0, fmix(x));
        x = _mm512_xor_si512(x, fmix(y));
        __m512i w = _mm512_and_si512(fmix(_mm512_add_epi32(x, y)), cell_mask);
        if constexpr (Chunked) {  // AVX-512F has no 16-bit multiply: (half * m) >> 16 in u32 lanes
            w = _mm512_xor_si512(w, gather_cells<Bytes>(table, scale16(_mm512_and_si512(x, low16), chunk_cells32)));
            w = _mm512_xor_si512(w, gather_cells<Bytes>(table, scale16(_mm512_srli_epi32(x, 16), chunk_cells32)));
            w = _mm512_xor_si512(w, gather_cells<Bytes>(table, scale16(_mm512_and_si512(y, low16), chunk_cells32)));
            if constexpr (Arity == 4) w = _mm512_xor_si512(w, gather_cells<Bytes>(table, scale16(_mm512_srli_epi32(y, 16), chunk_cells32)));
        } else if constexpr (Arity != 0) {
            __m512i h0 = _mm512_add_epi32(first_base, mulhi(x, first_width));
            __m512i h1 = _mm512_xor_si512(_mm512_add_epi32(h0, length), _mm512_and_si512(y, offset_mask));
            __m512i h2 = _mm512_xor_si512(_mm512_add_epi32(h0, length2),
                                          _mm512_and_si512(_mm512_srli_epi32(y, 16), offset_mask));
            w = _mm512_xor_si512(w, gather_cells<Bytes>(table, h0));
            w = _mm512_xor_si512(w, gather_cells<Bytes>(table, h1));
            w = _mm512_xor_si512(w, gather_cells<Bytes>(table, h2));
            if constexpr (Arity == 4) {
                __m512i h3 = _mm512_xor_si512(_mm512_add_epi32(h0, length3), _mm512_and_si512(x, offset_mask));
                w = _mm512_xor_si512(w, gather_cells<Bytes>(table, h3));
            }
        }
        sink.put16(i, w);
        lo = _mm512_add_epi32(lo, sixteen);
    }
    for (; i < count; ++i) sink.put1(i, run_word(run, run.key_lo + uint32_t(i)));
}

template <typename Sink>
WL_AVX512 void run_kernel(const Run& run, Sink& sink) {
    if (run.num_cells == 0) return kernel<0, 4>(run, nullptr, sink);
    if (run.num_cells > (uint64_t(1) << 31)) {  // gather indices are signed 32-bit
        for (uint64_t i = 0; i < run.count; ++i) sink.put1(i, run_word(run, run.key_lo + uint32_t(i)));
        return;
    }
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
WL_AVX512 void weights_with(const Run& run, const float* codebook, uint32_t codebook_size, float* out) {
    WeightsSink<Regs> sink(codebook, codebook_size, out);
    run_kernel(run, sink);
}

WL_AVX512 void weights(const Run& run, const float* codebook, uint32_t codebook_size, float* out) {
    if (codebook_size <= 16)
        weights_with<1>(run, codebook, codebook_size, out);
    else if (codebook_size <= 32)
        weights_with<2>(run, codebook, codebook_size, out);
    else
        weights_with<0>(run, codebook, codebook_size, out);
}

WL_AVX512 void values(const Run& run, uint32_t value_bits, int32_t* out) {
    ValuesSink sink{value_bits, out};
    run_kernel(run, sink);
}

WL_AVX512 uint64_t count(const Run& run, uint32_t codebook_size) {
    CountSink sink{codebook_size, 0};
    run_kernel(run, sink);
    return sink.count;
}

const Kernels kAvx512{"avx512", weights, values, count};

}  // namespace

const Kernels* avx512_kernels() { return &kAvx512; }

}  // namespace detail
}  // namespace wl

#else

namespace wl {
namespace detail {
const Kernels* avx512_kernels() { return nullptr; }
}  // namespace detail
}  // namespace wl

#endif
