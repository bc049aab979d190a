// Shared by the fuzz harnesses (tests/fuzz/fuzz_*.cpp): little-endian helpers, CRC fix-ups (so
// the fuzzer gets past the checksums to the checks behind them), and a check that aborts, which
// libFuzzer reports as a crash with the input that caused it.
//
// Harnesses use only public interfaces: weightless.h (wl::deserialize, the decoders),
// weightless_c.h (the C API) and json_min.h. See docs/HARDENING.md.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "weightless.h"

namespace wl_fuzz {

using Bytes = std::vector<uint8_t>;

inline uint64_t get_le(const uint8_t* p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= uint64_t(p[i]) << (8 * i);
    return v;
}

inline void put_le(uint8_t* p, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; ++i) p[i] = uint8_t(v >> (8 * i));
}

// Rewrites the last 4 bytes of [p, p + n) as the CRC-32 of the bytes before them.
inline void fix_crc(uint8_t* p, size_t n) {
    if (n >= 4) put_le(p + n - 4, wl::crc32(p, n - 4), 4);
}

[[noreturn]] inline void violated(const char* what) {
    std::fprintf(stderr, "fuzz invariant violated: %s\n", what);
    std::abort();
}

#define WL_FUZZ_REQUIRE(cond)                          \
    do {                                               \
        if (!(cond)) ::wl_fuzz::violated(#cond);       \
    } while (0)

// The instruction set of the next decode calls: nullptr = the default (fastest) one.
inline void set_isa(const char* isa) { wl::set_isa(isa); }

}  // namespace wl_fuzz
