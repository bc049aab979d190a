// AVX-512 kernels (decode.h): 16 keys per step in u32 lanes, table reads by gather, the
// codebook lookup by a permute of one or two registers (up to 32 clusters, the common case,
// where AVX2 needs a fourth gather). Only the functions in this file are compiled for AVX-512F
// and AVX-512BW (target attribute; every AVX-512 CPU since Skylake-SP has both); dispatch.cpp calls them only on a CPU (and OS) that has it. The kernel is
// the shared one (decode_x86_kernel.h); this file gives its vector type and the sinks.
#include "decode.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 reports the intrinsics' own `__Y = __Y` placeholders (avx512fintrin.h) as maybe
// uninitialized once inlined here: a known false positive, silenced for this file only.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#define WL_AVX512 __attribute__((target("avx512f,avx512bw")))

namespace wl {
namespace detail {
namespace {

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

    WL_AVX512 void put(uint64_t i, __m512i w) const {
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

    WL_AVX512 void put(uint64_t i, __m512i w) const {
        __m512i high = _mm512_srl_epi32(w, _mm_cvtsi32_si128(int(value_bits)));
        __mmask16 absent = _mm512_test_epi32_mask(high, high);
        _mm512_storeu_si512(out + i, _mm512_mask_mov_epi32(w, absent, _mm512_set1_epi32(-1)));
    }
    void put1(uint64_t i, uint32_t w) const { out[i] = (w >> value_bits) == 0 ? int32_t(w) : -1; }
};

struct CountSink {
    uint32_t size;
    uint64_t count;

    WL_AVX512 void put(uint64_t, __m512i w) {
        count += uint64_t(__builtin_popcount(_mm512_cmplt_epu32_mask(w, _mm512_set1_epi32(int(size)))));
    }
    void put1(uint64_t, uint32_t w) { count += w < size; }
};

// The u32 vector of 16 lanes for the shared kernel (decode_x86_kernel.h).
struct V {
    using reg = __m512i;
    static constexpr uint32_t kLanes = 16;
    WL_AVX512 static reg set1(uint32_t v) { return _mm512_set1_epi32(int(v)); }
    WL_AVX512 static reg iota(uint32_t base) {
        return _mm512_add_epi32(set1(base), _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    }
    WL_AVX512 static reg add(reg a, reg b) { return _mm512_add_epi32(a, b); }
    WL_AVX512 static reg xor_(reg a, reg b) { return _mm512_xor_si512(a, b); }
    WL_AVX512 static reg and_(reg a, reg b) { return _mm512_and_si512(a, b); }
    template <int N>
    WL_AVX512 static reg srli(reg a) { return _mm512_srli_epi32(a, N); }
    WL_AVX512 static reg mullo(reg a, reg b) { return _mm512_mullo_epi32(a, b); }
    WL_AVX512 static reg mulhi(reg a, reg b) { return wl::detail::mulhi(a, b); }
    // Cells Bytes wide (RunCells): a 4-byte gather at scale Bytes, masked to the cell.
    template <int Bytes>
    WL_AVX512 static reg gather(const void* cells, reg index) {
        reg v = _mm512_i32gather_epi32(index, cells, Bytes);
        if constexpr (Bytes == 4) return v;
        return _mm512_and_si512(v, set1(Bytes == 2 ? 0xFFFF : 0xFF));
    }
    // (half * m) >> 16 for the four 16-bit halves of x and y: one 16-bit multiply-high
    // (AVX-512BW) for each of x and y.
    WL_AVX512 static void chunk_cells(reg x, reg y, reg m, reg h[4]) {
        const reg m16 = _mm512_or_si512(m, _mm512_slli_epi32(m, 16));
        const reg low = set1(0xFFFF);
        reg cx = _mm512_mulhi_epu16(x, m16), cy = _mm512_mulhi_epu16(y, m16);
        h[0] = and_(cx, low);
        h[1] = srli<16>(cx);
        h[2] = and_(cy, low);
        h[3] = srli<16>(cy);
    }
};

#define WL_TARGET WL_AVX512
#include "decode_x86_kernel.h"
#undef WL_TARGET

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
