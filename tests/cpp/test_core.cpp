// C++ tests of the core: construction, queries, the reference decoder and the format.
// Self-contained (no test framework to install or cross-compile); prints "N passed, N failed".
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "weightless.h"
#include "check.h"

namespace {

using wl_test::check;
using wl_test::failed;
using wl_test::passed;

template <typename E>
bool throws(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const E&) {
        return true;
    } catch (...) {
        return false;
    }
    return false;
}

struct Data {
    std::vector<uint64_t> keys;
    std::vector<uint32_t> values;
};

Data random_data(size_t n, uint32_t value_bits, uint64_t seed, bool sorted_positions) {
    std::mt19937_64 rng(seed);
    Data d;
    if (sorted_positions) {
        // Positions of kept weights: sorted, with random gaps.
        uint64_t pos = 0;
        for (size_t i = 0; i < n; ++i) d.keys.push_back(pos += 1 + rng() % 20);
    } else {
        std::vector<uint64_t> k(n);
        for (auto& x : k) x = rng();
        std::sort(k.begin(), k.end());
        k.erase(std::unique(k.begin(), k.end()), k.end());
        std::shuffle(k.begin(), k.end(), rng);
        d.keys = k;
    }
    for (size_t i = 0; i < d.keys.size(); ++i) d.values.push_back(uint32_t(rng()) & ((1u << value_bits) - 1));
    return d;
}

bool all_read_back(const wl::Filter& f, const Data& d) {
    std::vector<int32_t> got(d.keys.size());
    wl::query_values(f, d.keys.data(), d.keys.size(), got.data());
    for (size_t i = 0; i < got.size(); ++i)
        if (got[i] != int32_t(d.values[i])) return false;
    return true;
}

std::string layout_name(uint32_t version) { return version == 3 ? " [chunked v3]" : " [fuse v2]"; }

void test_round_trip(uint32_t version) {
    const uint32_t rt[][2] = {{1, 2}, {4, 8}, {4, 9}, {5, 12}, {8, 16}, {16, 32}};
    const size_t sizes[] = {0, 1, 2, 3, 17, 1000, 11500, 11511, 100000};
    for (auto& p : rt)
        for (size_t n : sizes)
            for (uint32_t arity : {3u, 4u})
                for (bool sorted : {true, false}) {
                    Data d = random_data(n, p[0], n * 31 + p[1], sorted);
                    wl::BuildOptions o;
                    o.value_bits = p[0];
                    o.cell_bits = p[1];
                    o.arity = arity;
                    o.format_version = version;
                    if (version == 2) o.piece_keys = 4096;  // several pieces from n = 6144 on
                    wl::Filter f = wl::build_filter(d.keys.data(), d.values.data(), d.keys.size(), o);
                    std::string tag = "n=" + std::to_string(n) + " r=" + std::to_string(p[0]) + " t=" +
                                      std::to_string(p[1]) + " arity=" + std::to_string(arity) +
                                      (sorted ? " sorted" : " random") + layout_name(version);
                    check(all_read_back(f, d), "stored keys read back, " + tag);
                    std::vector<uint8_t> bytes = wl::serialize(f);
                    check(bytes.size() == wl::serialized_size(f), "serialized_size, " + tag);
                    wl::Filter g = wl::deserialize(bytes.data(), bytes.size());
                    check(g.cells == f.cells && wl::serialize(g) == bytes, "byte-identical round trip, " + tag);
                    check(all_read_back(g, d), "read back after round trip, " + tag);
                }
}

void test_decode_range_matches_queries(uint32_t version) {
    Data d = random_data(20000, 5, 7, true);
    wl::BuildOptions o;
    o.value_bits = 5;
    o.cell_bits = 9;
    o.format_version = version;
    o.piece_keys = 3000;
    wl::Filter f = wl::build_filter(d.keys.data(), d.values.data(), d.keys.size(), o);
    check(version == 3 ? f.chunks.size() > 3 : f.pieces.size() > 3, "several pieces" + layout_name(version));
    uint64_t end = d.keys.back() + 100;
    std::vector<uint64_t> all(end);
    for (uint64_t k = 0; k < end; ++k) all[k] = k;
    std::vector<int32_t> by_query(end), by_range(end);
    wl::query_values(f, all.data(), end, by_query.data());
    wl::decode_range(f, 0, end, by_range.data());
    check(by_query == by_range, "decode_range equals query_values over every position");
    // Ranges starting and stopping inside pieces.
    for (uint64_t b : {uint64_t(0), uint64_t(1), uint64_t(12345), end / 2}) {
        std::vector<int32_t> part(end - b);
        wl::decode_range(f, b, end, part.data());
        check(std::equal(part.begin(), part.end(), by_query.begin() + b), "decode_range from " + std::to_string(b));
    }
    size_t fp = 0, absent = 0;
    for (uint64_t k = 0, i = 0; k < end; ++k) {
        if (i < d.keys.size() && d.keys[i] == k) {
            ++i;
            continue;
        }
        ++absent;
        fp += by_query[k] >= 0;
    }
    double rate = double(fp) / double(absent), expected = 1.0 / 16;
    check(rate > expected * 0.85 && rate < expected * 1.15, "false-positive rate near 2^(r-t): " + std::to_string(rate));
}

void test_decode_weights_matches_reference(uint32_t version) {
    Data d = random_data(60000, 4, 21, true);
    for (auto& v : d.values) v %= 11;  // 11 clusters in 4 bits: codes 11..15 name no cluster
    wl::BuildOptions o;
    o.format_version = version;
    o.value_bits = 4;
    o.cell_bits = 6;
    o.piece_keys = 7000;
    wl::Filter f = wl::build_filter(d.keys.data(), d.values.data(), d.keys.size(), o);
    uint64_t end = d.keys.back() + 77;
    std::vector<int32_t> codes(end);
    wl::decode_range(f, 0, end, codes.data());
    std::vector<float> book(11);
    for (size_t i = 0; i < book.size(); ++i) book[i] = 0.25f * float(i) - 1.0f;
    std::vector<float> expected(end);
    for (uint64_t k = 0; k < end; ++k) expected[k] = codes[k] >= 0 && codes[k] < 11 ? book[size_t(codes[k])] : 0.0f;
    for (unsigned threads : {1u, 2u, 3u, 8u}) {
        std::vector<float> got(end, 99.0f);
        wl::decode_weights(f, 0, end, book.data(), 11, got.data(), threads);
        check(std::memcmp(got.data(), expected.data(), end * sizeof(float)) == 0,
              "decode_weights equals the reference with " + std::to_string(threads) + " threads");
    }
    uint64_t present = 0;
    for (int32_t c : codes) present += c >= 0 && c < 11;
    for (unsigned threads : {1u, 3u})
        check(wl::count_decoded(f, 0, end, 11, threads) == present, "count_decoded");
    std::vector<float> part(end - 1001);
    wl::decode_weights(f, 1001, end, book.data(), 11, part.data(), 2);
    check(std::memcmp(part.data(), expected.data() + 1001, part.size() * sizeof(float)) == 0,
          "decode_weights from an offset");
}

void test_deterministic_and_threads(uint32_t version) {
    Data d = random_data(300000, 4, 11, false);
    wl::BuildOptions o;
    o.format_version = version;
    o.piece_keys = 50000;
    std::vector<uint8_t> ref;
    for (unsigned threads : {1u, 2u, 3u}) {
        o.threads = threads;
        auto bytes = wl::serialize(wl::build_filter(d.keys.data(), d.values.data(), d.keys.size(), o));
        if (ref.empty()) ref = bytes;
        check(bytes == ref, "identical output with " + std::to_string(threads) + " threads" + layout_name(version));
    }
    o.seed = 1;
    check(wl::serialize(wl::build_filter(d.keys.data(), d.values.data(), d.keys.size(), o)) != ref,
          "another seed gives another table");
    // One piece: the threads sort and count inside it.
    for (uint32_t arity : {3u, 4u}) {
        if (version == 3) break;
        o = wl::BuildOptions();
        o.format_version = version;
        o.arity = arity;
        o.threads = 1;
        std::vector<uint8_t> one = wl::serialize(wl::build_filter(d.keys.data(), d.values.data(), d.keys.size(), o));
        for (unsigned threads : {2u, 3u, 7u}) {
            o.threads = threads;
            wl::Filter f = wl::build_filter(d.keys.data(), d.values.data(), d.keys.size(), o);
            check(f.pieces.size() == 1 && wl::serialize(f) == one,
                  "one piece, identical with " + std::to_string(threads) + " threads, arity " + std::to_string(arity));
        }
    }
}

void test_bad_input(uint32_t version) {
    std::vector<uint64_t> keys = {5, 9, 5};
    std::vector<uint32_t> values = {1, 2, 3};
    wl::BuildOptions o;
    o.format_version = version;
    check(throws<std::invalid_argument>([&] { wl::build_filter(keys.data(), values.data(), 3, o); }),
          "duplicate keys (unsorted) rejected");
    std::vector<uint64_t> sorted_dup = {1, 2, 2, 3};
    check(throws<std::invalid_argument>([&] { wl::build_filter(sorted_dup.data(), values.data(), 3, o); }),
          "duplicate keys (sorted) rejected");
    Data big = random_data(50000, 4, 3, false);
    big.keys[40000] = big.keys[123];
    o.piece_keys = 10000;
    check(throws<std::invalid_argument>([&] { wl::build_filter(big.keys.data(), big.values.data(), 50000, o); }),
          "duplicate keys far apart rejected" + layout_name(version));
    std::sort(big.keys.begin(), big.keys.end());
    check(throws<std::invalid_argument>([&] { wl::build_filter(big.keys.data(), big.values.data(), 50000, o); }),
          "duplicate keys far apart rejected");
    o = wl::BuildOptions();
    values = {1, 16, 3};
    keys = {1, 2, 3};
    check(throws<std::invalid_argument>([&] { wl::build_filter(keys.data(), values.data(), 3, o); }),
          "value too large rejected");
    for (auto bad : {std::pair<uint32_t, uint32_t>{0, 8}, {17, 32}, {8, 7}, {4, 33}}) {
        o.value_bits = bad.first;
        o.cell_bits = bad.second;
        check(throws<std::invalid_argument>([&] { wl::build_filter(keys.data(), values.data(), 0, o); }),
              "bad bits rejected");
    }
    o = wl::BuildOptions();
    o.arity = 5;
    check(throws<std::invalid_argument>([&] { wl::build_filter(keys.data(), values.data(), 0, o); }),
          "bad arity rejected");
}

void test_malformed_bytes(uint32_t version) {
    Data d = random_data(3000, 4, 5, true);
    wl::BuildOptions o;
    o.format_version = version;
    o.chunk_keys = 700;
    o.piece_keys = 1000;
    auto bytes = wl::serialize(wl::build_filter(d.keys.data(), d.values.data(), d.keys.size(), o));
    bool all_flips = true;
    for (size_t bit = 0; bit < bytes.size() * 8; ++bit) {
        auto b = bytes;
        b[bit / 8] ^= uint8_t(1u << (bit % 8));
        all_flips &= throws<std::invalid_argument>([&] { wl::deserialize(b.data(), b.size()); });
    }
    check(all_flips, "every single flipped bit is rejected" + layout_name(version));
    bool all_cuts = true;
    for (size_t len = 0; len < bytes.size(); ++len)
        all_cuts &= throws<std::invalid_argument>([&] { wl::deserialize(bytes.data(), len); });
    check(all_cuts, "every truncation is rejected" + layout_name(version));
    auto longer = bytes;
    longer.push_back(0);
    check(throws<std::invalid_argument>([&] { wl::deserialize(longer.data(), longer.size()); }),
          "trailing bytes rejected");
}

// Blocks: many per piece, round trip, and the version 1 form of a filter with one block per piece.
void test_blocks_and_version_1() {
    Data d = random_data(20000, 4, 99, true);
    wl::BuildOptions o;
    o.format_version = 2;
    o.value_bits = 4;
    o.cell_bits = 9;
    o.piece_keys = 8000;
    o.block_keys = 100;
    wl::Filter f = wl::build_filter(d.keys.data(), d.values.data(), d.keys.size(), o);
    check(f.pieces.size() > 1 && f.pieces[0].num_blocks() > 20, "several pieces of many blocks");
    check(all_read_back(f, d), "stored keys read back with many blocks");
    std::vector<uint8_t> bytes = wl::serialize(f);
    wl::Filter g = wl::deserialize(bytes.data(), bytes.size());
    check(g.pieces[0].block_starts == f.pieces[0].block_starts && wl::serialize(g) == bytes, "blocks round-trip");
    check(throws<std::invalid_argument>([] { wl::BuildOptions bad; bad.format_version = 2; bad.block_keys = 63; uint64_t k = 1; uint32_t v = 0;
                                             wl::build_filter(&k, &v, 1, bad); }),
          "block_keys below 64 rejected");

    // A crafted directory whose second block starts after the third must be refused even with a
    // valid checksum: a slice past S * L would read outside the table.
    auto with_crc = [](std::vector<uint8_t> b) {
        uint32_t c = wl::crc32(b.data(), b.size() - 4);
        for (int i = 0; i < 4; ++i) b[b.size() - 4 + i] = uint8_t(c >> (8 * i));
        return b;
    };
    const size_t starts_at = 32 + 32 * f.pieces.size();  // piece 0's inner starts come first
    auto swapped = bytes;
    std::swap_ranges(swapped.begin() + starts_at, swapped.begin() + starts_at + 4, swapped.begin() + starts_at + 4);
    check(throws<std::invalid_argument>([&] { auto b = with_crc(swapped); wl::deserialize(b.data(), b.size()); }),
          "decreasing block starts rejected");
    auto past = bytes;
    for (int i = 0; i < 4; ++i) past[starts_at + 4 * (f.pieces[0].num_blocks() - 2) + i] = 0xFF;
    check(throws<std::invalid_argument>([&] { auto b = with_crc(past); wl::deserialize(b.data(), b.size()); }),
          "a block starting past the first cells rejected");

    // Version 1: the same filter with one block per piece, written without block fields.
    o.block_keys = 1u << 20;
    wl::Filter one = wl::build_filter(d.keys.data(), d.values.data(), d.keys.size(), o);
    std::vector<uint8_t> v1 = wl::serialize(one);
    check(one.pieces[0].num_blocks() == 1 && v1.size() == wl::serialized_size(one), "one block per piece");
    v1[4] = 1;
    for (size_t p = 0; p < one.pieces.size(); ++p)
        for (size_t b = 25; b < 32; ++b) v1[32 + 32 * p + b] = 0;
    v1 = with_crc(v1);
    wl::Filter old = wl::deserialize(v1.data(), v1.size());
    check(all_read_back(old, d) && old.cells == one.cells, "a version 1 filter reads back");
    check(wl::serialize(old) == wl::serialize(one), "a version 1 filter re-serializes as version 2");
}

// The chunked layout: the empty filter's size, chunk boundaries, crafted directories.
void test_chunked() {
    wl::BuildOptions o;
    check(wl::serialized_size(wl::build_filter(nullptr, nullptr, 0, o)) <= 32, "the empty filter has at most 32 bytes");
    check(wl::build_filter(nullptr, nullptr, 0, o).version == 3, "the chunked layout is the default");
    // Keys that share no high bits, keys packed together, one huge gap: boundaries stay exact.
    Data d;
    for (uint64_t i = 0; i < 5000; ++i) d.keys.push_back(i * 3);
    for (uint64_t i = 0; i < 5000; ++i) d.keys.push_back((uint64_t(1) << 63) + i * 1000003);
    d.keys.push_back(~uint64_t(0));
    for (size_t i = 0; i < d.keys.size(); ++i) d.values.push_back(uint32_t(i * 7) & 15);
    o.chunk_keys = 300;
    for (uint32_t arity : {3u, 4u}) {
        o.arity = arity;
        wl::Filter f = wl::build_filter(d.keys.data(), d.values.data(), d.keys.size(), o);
        check(all_read_back(f, d), "keys across the whole key space read back, arity " + std::to_string(arity));
        auto bytes = wl::serialize(f);
        wl::Filter g = wl::deserialize(bytes.data(), bytes.size());
        check(all_read_back(g, d) && wl::serialize(g) == bytes, "and round-trip");
        bool attempts_used = false;
        for (const wl::Chunk& c : f.chunks) attempts_used |= c.attempt > 0;
        check(attempts_used, "some chunk needed a second seed (the attempt is recorded)");
    }
    // A boundary delta of zero (chunks out of order) must be refused even with a valid checksum.
    o = wl::BuildOptions();
    o.chunk_keys = 100;
    Data e = random_data(1000, 4, 8, true);
    wl::Filter f = wl::build_filter(e.keys.data(), e.values.data(), e.keys.size(), o);
    auto bytes = wl::serialize(f);
    const unsigned delta_bits = bytes[10], attempt_bits = bytes[11];
    check(delta_bits > 0, "chunk boundaries stored");
    auto b = bytes;
    for (unsigned bit = 0; bit < delta_bits; ++bit) {  // chunk 1's delta: first field after chunk 0's attempt
        unsigned at = 28 * 8 + attempt_bits + bit;
        b[at / 8] &= uint8_t(~(1u << (at % 8)));
    }
    uint32_t c = wl::crc32(b.data(), b.size() - 4);
    for (int i = 0; i < 4; ++i) b[b.size() - 4 + i] = uint8_t(c >> (8 * i));
    check(throws<std::invalid_argument>([&] { wl::deserialize(b.data(), b.size()); }), "a zero boundary delta rejected");
    o.chunk_keys = 40000;
    check(throws<std::invalid_argument>([&] { wl::build_filter(e.keys.data(), e.values.data(), 10, o); }),
          "chunk_keys above 32768 rejected");
}

void test_crc32() {
    const char* s = "123456789";
    check(wl::crc32(reinterpret_cast<const uint8_t*>(s), 9) == 0xCBF43926u, "CRC-32 check value");
}

}  // namespace

int main() {
    return wl_test::run_tests([] {
        test_crc32();
        test_blocks_and_version_1();
        test_chunked();
        for (uint32_t version : {3u, 2u}) {
            test_round_trip(version);
            test_decode_range_matches_queries(version);
            test_deterministic_and_threads(version);
            test_decode_weights_matches_reference(version);
            test_bad_input(version);
            test_malformed_bytes(version);
        }
    });
}
