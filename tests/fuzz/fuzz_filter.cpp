// Fuzzes the filter parser (wl::deserialize) and, on every filter it accepts, the decoders.
//
// Each input is parsed as it is (the CRC-32 usually rejects it) and again with its last 4 bytes
// replaced by the right CRC-32, so mutations reach the size, layout and padding checks. An
// accepted filter must re-serialize to the same bytes (after conversion, for an older version),
// and its decoders must agree: the default
// instruction set (AVX2 / NEON) with the scalar reference, decode_range with query_values,
// decode_weights and count_decoded with decode_range, over the start of every piece and the top
// of the key space, in both layouts (version 3 chunks, versions 1 and 2 pieces). Any other exception than std::invalid_argument, any disagreement, and any
// sanitizer report is a crash.
#include <algorithm>
#include <stdexcept>

#include "fuzz_common.h"

namespace {

using wl_fuzz::Bytes;

constexpr uint64_t kSpan = 2048;  // positions decoded per range: enough to cover small tables

void check_range(const wl::Filter& f, uint64_t begin, uint64_t end, unsigned threads) {
    const size_t n = size_t(end - begin);
    std::vector<int32_t> ref(n), got(n);
    wl_fuzz::set_isa("scalar");
    wl::decode_range(f, begin, end, ref.data());
    wl_fuzz::set_isa(nullptr);
    wl::decode_range(f, begin, end, got.data());
    WL_FUZZ_REQUIRE(ref == got);

    // query_values on the same keys (a sample of them, to keep each input fast).
    std::vector<uint64_t> keys;
    for (uint64_t i = 0; i < end - begin; i += 1 + (end - begin) / 64) keys.push_back(begin + i);
    std::vector<int32_t> values(keys.size());
    wl::query_values(f, keys.data(), keys.size(), values.data());
    for (size_t i = 0; i < keys.size(); ++i) WL_FUZZ_REQUIRE(values[i] == ref[size_t(keys[i] - begin)]);
    for (int32_t v : ref) WL_FUZZ_REQUIRE(v >= -1 && v < (int32_t(1) << f.value_bits));

    // decode_weights and count_decoded follow from the values.
    const float codebook[5] = {-2.0f, -0.5f, 0.25f, 1.0f, 3.5f};
    for (uint32_t book_size : {1u, 5u}) {
        std::vector<float> w_ref(n), w_got(n);
        wl_fuzz::set_isa("scalar");
        wl::decode_weights(f, begin, end, codebook, book_size, w_ref.data(), 1);
        wl_fuzz::set_isa(nullptr);
        wl::decode_weights(f, begin, end, codebook, book_size, w_got.data(), threads);
        WL_FUZZ_REQUIRE(n == 0 || std::memcmp(w_ref.data(), w_got.data(), n * sizeof(float)) == 0);
        uint64_t count = 0;
        for (size_t i = 0; i < n; ++i) {
            const bool hit = ref[i] >= 0 && uint32_t(ref[i]) < book_size;
            count += hit;
            const float expected = hit ? codebook[ref[i]] : 0.0f;
            WL_FUZZ_REQUIRE(std::memcmp(&w_ref[i], &expected, sizeof(float)) == 0);
        }
        WL_FUZZ_REQUIRE(wl::count_decoded(f, begin, end, book_size, threads) == count);
    }
}

void exercise(const wl::Filter& f, const uint8_t* data, size_t size) {
    // Parsing is exact: an accepted filter of the current version serializes back to the same
    // bytes; one of an older version the reader still accepts converts to a stable new form.
    const Bytes again = wl::serialize(f);
    WL_FUZZ_REQUIRE(again.size() == wl::serialized_size(f));
    if (wl_fuzz::get_le(data + 4, 2) >= wl::kFuseFormatVersion) {  // versions 2 and 3 are written as read
        WL_FUZZ_REQUIRE(again == Bytes(data, data + size));
    } else {
        WL_FUZZ_REQUIRE(wl::serialize(wl::deserialize(again.data(), again.size())) == again);
    }
    std::vector<uint64_t> firsts;  // pieces' (version 1, 2) or chunks' (version 3) first keys
    if (f.version == 3) {
        WL_FUZZ_REQUIRE(f.pieces.empty() && (f.chunks.empty() || f.chunks[0].first_key == 0));
        WL_FUZZ_REQUIRE(f.chunks.size() == (f.num_keys + f.chunk_keys - 1) / f.chunk_keys);
        uint64_t cells = 0, keys = 0;
        for (size_t i = 0; i < f.chunks.size(); ++i) {
            const wl::Chunk& c = f.chunks[i];
            WL_FUZZ_REQUIRE(i == 0 || c.first_key > f.chunks[i - 1].first_key);
            WL_FUZZ_REQUIRE(c.cell_offset == cells && c.num_cells >= c.num_keys && c.num_cells < 65536);
            cells += c.num_cells;
            keys += c.num_keys;
            firsts.push_back(c.first_key);
        }
        WL_FUZZ_REQUIRE(cells == f.cells.size() && keys == f.num_keys);
    } else {
        WL_FUZZ_REQUIRE(!f.pieces.empty() && f.pieces[0].first_key == 0 && f.chunks.empty());
        for (const wl::Piece& p : f.pieces) firsts.push_back(p.first_key);
    }
    const unsigned threads = size % 5 == 0 ? 2 : 1;
    // The start of the first pieces (with the keys just before it), and the end of the key space.
    const size_t pieces = std::min<size_t>(firsts.size(), 4);
    check_range(f, 0, 8, threads);
    for (size_t i = 0; i < pieces; ++i) {
        const uint64_t first = firsts[i];
        const uint64_t begin = first - std::min<uint64_t>(first, 8);
        const uint64_t end = begin + std::min<uint64_t>(kSpan, UINT64_MAX - begin);
        check_range(f, begin, end, threads);
    }
    check_range(f, UINT64_MAX - 100, UINT64_MAX, 1);
    check_range(f, 5, 5, 1);  // empty range
}

void parse(const uint8_t* data, size_t size) {
    wl::Filter f;
    try {
        f = wl::deserialize(data, size);
    } catch (const std::invalid_argument&) {
        return;  // rejected with a message: the expected outcome for malformed input
    }
    exercise(f, data, size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    parse(data, size);
    if (size >= 4) {
        Bytes fixed(data, data + size);
        wl_fuzz::fix_crc(fixed.data(), fixed.size());
        parse(fixed.data(), fixed.size());
    }
    return 0;
}
