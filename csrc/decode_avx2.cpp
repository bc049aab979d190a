// AVX2 kernels (decode.h): 8 keys per step in u32 lanes, table reads by gather. The kernel is
// the shared one (decode_x86_kernel.h); this file gives its vector type and the sinks. Only the
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

    WL_AVX2 void put(uint64_t i, __m256i w) const {
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

    WL_AVX2 void put(uint64_t i, __m256i w) const {
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

    WL_AVX2 void put(uint64_t, __m256i w) { lanes = _mm256_sub_epi32(lanes, below(w, _mm256_set1_epi32(int(size)))); }
    void put1(uint64_t, uint32_t w) { tail += w < size; }
};

// The u32 vector of 8 lanes for the shared kernel (decode_x86_kernel.h).
struct V {
    using reg = __m256i;
    static constexpr uint32_t kLanes = 8;
    WL_AVX2 static reg set1(uint32_t v) { return _mm256_set1_epi32(int(v)); }
    WL_AVX2 static reg iota(uint32_t base) { return _mm256_add_epi32(set1(base), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }
    WL_AVX2 static reg add(reg a, reg b) { return _mm256_add_epi32(a, b); }
    WL_AVX2 static reg xor_(reg a, reg b) { return _mm256_xor_si256(a, b); }
    WL_AVX2 static reg and_(reg a, reg b) { return _mm256_and_si256(a, b); }
    template <int N>
    WL_AVX2 static reg srli(reg a) { return _mm256_srli_epi32(a, N); }
    WL_AVX2 static reg mullo(reg a, reg b) { return _mm256_mullo_epi32(a, b); }
    WL_AVX2 static reg mulhi(reg a, reg b) { return wl::detail::mulhi(a, b); }
    // Cells Bytes wide (RunCells): a 4-byte gather at scale Bytes, masked to the cell.
    template <int Bytes>
    WL_AVX2 static reg gather(const void* cells, reg index) {
        reg v = _mm256_i32gather_epi32(static_cast<const int*>(cells), index, Bytes);
        if constexpr (Bytes == 4) return v;
        return _mm256_and_si256(v, set1(Bytes == 2 ? 0xFFFF : 0xFF));
    }
    // (half * m) >> 16 for the four 16-bit halves of x and y: one 16-bit multiply-high each.
    WL_AVX2 static void chunk_cells(reg x, reg y, reg m, reg h[4]) {
        const reg m16 = _mm256_or_si256(m, _mm256_slli_epi32(m, 16));
        const reg low = set1(0xFFFF);
        reg cx = _mm256_mulhi_epu16(x, m16), cy = _mm256_mulhi_epu16(y, m16);
        h[0] = and_(cx, low);
        h[1] = srli<16>(cx);
        h[2] = and_(cy, low);
        h[3] = srli<16>(cy);
    }
};

#define WL_TARGET WL_AVX2
#include "decode_x86_kernel.h"
#undef WL_TARGET

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
