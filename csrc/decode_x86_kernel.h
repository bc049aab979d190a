// The x86 SIMD decode kernel, written once (internal; the simdjson pattern). decode_avx2.cpp and
// decode_avx512.cpp each include it inside their own anonymous namespace, after defining
//
//   WL_TARGET   the ISA's target attribute, on every function here
//   struct V    the ISA's u32 vector: `reg`, `kLanes`, and static functions set1, iota, add, xor_,
//               and_, srli<N>, mullo, mulhi (by a broadcast), gather<Bytes> (cells Bytes wide,
//               RunCells), chunk_cells (the chunked layout's cells, hash.h)
//
// and sinks with put(i, reg) (kLanes words at out + i) and put1(i, word). One source for both
// widths, so the kernels cannot drift apart; the scalar run_word (decode.h) is the tail and the
// reference.
#ifndef WL_TARGET
#error "define WL_TARGET and struct V before including decode_x86_kernel.h"
#endif

WL_TARGET inline V::reg fmix(V::reg h) {
    h = V::xor_(h, V::template srli<16>(h));
    h = V::mullo(h, V::set1(0x85EBCA6Bu));
    h = V::xor_(h, V::template srli<13>(h));
    h = V::mullo(h, V::set1(0xC2B2AE35u));
    return V::xor_(h, V::template srli<16>(h));
}

template <typename Sink>
void scalar_run(const Run& run, Sink& sink) {
    for (uint64_t i = 0; i < run.count; ++i) sink.put1(i, run_word(run, run.key_lo + uint32_t(i)));
}

// Arity 0: a piece without cells, word = mask. Chunked: the chunked layout (version 3), else
// the fuse layout's segments and blocks.
template <uint32_t Arity, int Bytes, typename Sink, bool Chunked = false>
WL_TARGET void kernel(const Run& run, const void* table, Sink& sink) {
    const typename V::reg seed_lo = V::set1(run.seed_lo);
    const typename V::reg y0 = V::set1(run.key_hi ^ run.seed_hi);
    const typename V::reg cell_mask = V::set1(run.cell_mask);
    const typename V::reg chunk_cells = V::set1(Chunked ? uint32_t(run.num_cells) : 0);
    const typename V::reg first_base = V::set1(run.first.base);
    const typename V::reg first_width = V::set1(run.first.width);
    const typename V::reg length = V::set1(run.geometry.segment_length);
    const typename V::reg length2 = V::set1(2 * run.geometry.segment_length);
    const typename V::reg length3 = V::set1(3 * run.geometry.segment_length);
    const typename V::reg offset_mask = V::set1(run.geometry.offset_mask);
    const typename V::reg step = V::set1(V::kLanes);
    typename V::reg lo = V::iota(run.key_lo);
    const uint64_t count = run.count;  // a local: the stores to out may alias run
    uint64_t i = 0;
    for (; i + V::kLanes <= count; i += V::kLanes) {
        typename V::reg x = V::xor_(lo, seed_lo);
        typename V::reg y = V::xor_(y0, fmix(x));
        x = V::xor_(x, fmix(y));
        typename V::reg w = V::and_(fmix(V::add(x, y)), cell_mask);
        if constexpr (Chunked) {
            typename V::reg h[4];
            V::chunk_cells(x, y, chunk_cells, h);
            for (uint32_t j = 0; j < Arity; ++j) w = V::xor_(w, V::template gather<Bytes>(table, h[j]));
        } else if constexpr (Arity != 0) {
            typename V::reg h0 = V::add(first_base, V::mulhi(x, first_width));
            typename V::reg h1 = V::xor_(V::add(h0, length), V::and_(y, offset_mask));
            typename V::reg h2 = V::xor_(V::add(h0, length2), V::and_(V::template srli<16>(y), offset_mask));
            w = V::xor_(w, V::template gather<Bytes>(table, h0));
            w = V::xor_(w, V::template gather<Bytes>(table, h1));
            w = V::xor_(w, V::template gather<Bytes>(table, h2));
            if constexpr (Arity == 4) {
                typename V::reg h3 = V::xor_(V::add(h0, length3), V::and_(x, offset_mask));
                w = V::xor_(w, V::template gather<Bytes>(table, h3));
            }
        }
        sink.put(i, w);
        lo = V::add(lo, step);
    }
    for (; i < count; ++i) sink.put1(i, run_word(run, run.key_lo + uint32_t(i)));
}

template <typename Sink, bool Chunked>
WL_TARGET void run_layout(const Run& run, Sink& sink) {
    switch (run.cell_bytes * 8 + run.arity) {
        case 8 + 3: return kernel<3, 1, Sink, Chunked>(run, run.cells, sink);
        case 8 + 4: return kernel<4, 1, Sink, Chunked>(run, run.cells, sink);
        case 16 + 3: return kernel<3, 2, Sink, Chunked>(run, run.cells, sink);
        case 16 + 4: return kernel<4, 2, Sink, Chunked>(run, run.cells, sink);
        case 32 + 4: return kernel<4, 4, Sink, Chunked>(run, run.cells, sink);
        default: return kernel<3, 4, Sink, Chunked>(run, run.cells, sink);
    }
}

template <typename Sink>
WL_TARGET void run_kernel(const Run& run, Sink& sink) {
    if (run.num_cells == 0) return kernel<0, 4>(run, nullptr, sink);
    if (run.num_cells > (uint64_t(1) << 31)) return scalar_run(run, sink);  // gather indices are signed 32-bit
    if (run.chunked) return run_layout<Sink, true>(run, sink);
    return run_layout<Sink, false>(run, sink);
}
