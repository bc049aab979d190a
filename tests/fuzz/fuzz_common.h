// Shared by the fuzz harnesses (tests/fuzz/fuzz_*.cpp): little-endian helpers, CRC fix-ups (so
// the fuzzer gets past the checksums to the checks behind them), and a check that aborts, which
// libFuzzer reports as a crash with the input that caused it.
//
// Harnesses use only public interfaces: weightless.h (wl::deserialize, the decoders),
// weightless_c.h (the C API) and csrc/model/container.h. See docs/HARDENING.md.
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

inline void put_varint(Bytes& out, uint64_t v) {
    while (v >= 0x80) out.push_back(uint8_t(v | 0x80)), v >>= 7;
    out.push_back(uint8_t(v));
}

// Reads a varint at *at (< end); false if it runs past end or beyond 10 bytes.
inline bool get_varint(const uint8_t* p, size_t end, size_t* at, uint64_t* v) {
    *v = 0;
    for (unsigned i = 0; i < 10 && *at < end; ++i) {
        const uint8_t b = p[(*at)++];
        *v |= uint64_t(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) return true;
    }
    return false;
}

// A .wl version 3 file of one tensor (docs/FORMAT.md), its checksums right, whatever the payload.
inline Bytes container_v3(uint8_t dtype, uint8_t codec, const std::vector<uint64_t>& shape, const Bytes& payload) {
    Bytes out = {'W', 'L', 'M', 'F', 3, 0, 0, 0}, dir;
    out.insert(out.end(), payload.begin(), payload.end());
    put_varint(dir, 1);
    put_varint(dir, 1);
    dir.push_back('w'), dir.push_back(dtype), dir.push_back(codec), dir.push_back(uint8_t(shape.size()));
    for (uint64_t d : shape) put_varint(dir, d);
    put_varint(dir, payload.size());
    Bytes crc(4);
    put_le(crc.data(), wl::crc32(payload.data(), payload.size()), 4);
    dir.insert(dir.end(), crc.begin(), crc.end());
    out.insert(out.end(), dir.begin(), dir.end());
    Bytes trailer(16);
    put_le(trailer.data(), dir.size(), 4);
    put_le(trailer.data() + 8, wl::crc32(dir.data(), dir.size()), 4);
    std::memcpy(trailer.data() + 12, "WLMF", 4);
    out.insert(out.end(), trailer.begin(), trailer.end());
    return out;
}

// Rewrites the CRC-32s of a .wl version 3 image the fuzzer cannot forge: each payload's (in
// the directory) as far as the directory can be walked, then the directory + metadata's.
inline void fix_container_crcs(Bytes& b) {
    if (b.size() < 24 || std::memcmp(b.data() + b.size() - 4, "WLMF", 4) != 0) return;
    const uint64_t dir_len = get_le(b.data() + b.size() - 16, 4), meta_len = get_le(b.data() + b.size() - 12, 4);
    if (dir_len + meta_len > b.size() - 24) return;
    const size_t dir_start = size_t(b.size() - 16 - meta_len - dir_len), dir_end = size_t(dir_start + dir_len);
    size_t at = dir_start, offset = 8;
    uint64_t count, v;
    if (get_varint(b.data(), dir_end, &at, &count)) {
        for (uint64_t i = 0; i < count && at < dir_end; ++i) {
            if (!get_varint(b.data(), dir_end, &at, &v) || v > dir_end - at) break;
            at += size_t(v);
            if (dir_end - at < 3) break;
            const uint8_t ndim = b[at + 2];
            at += 3;
            bool ok = true;
            for (unsigned d = 0; d < ndim && ok; ++d) ok = get_varint(b.data(), dir_end, &at, &v);
            uint64_t length;
            if (!ok || !get_varint(b.data(), dir_end, &at, &length) || dir_end - at < 4) break;
            if (length <= dir_start - offset) {
                put_le(b.data() + at, wl::crc32(b.data() + offset, size_t(length)), 4);
                offset += size_t(length);
            }
            at += 4;
        }
    }
    put_le(b.data() + b.size() - 8, wl::crc32(b.data() + dir_start, size_t(dir_len + meta_len)), 4);
}

// The instruction set of the next decode calls: nullptr = the default (fastest) one.
inline void set_isa(const char* isa) { wl::set_isa(isa); }

}  // namespace wl_fuzz
