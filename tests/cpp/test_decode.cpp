// The decoders on every instruction set this build runs here (scalar, AVX2, NEON), each forced
// with WEIGHTLESS_ISA and compared byte for byte with the scalar reference (query_values, key by
// key, and the range decoders under WEIGHTLESS_ISA=scalar); and which instruction set ran.
// Self-contained like test_core.cpp; also runs under qemu-aarch64 (.ci/run).
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "decode.h"
#include "weightless.h"
#include "check.h"

namespace {

using wl_test::check;
using wl_test::failed;
using wl_test::passed;

// Runs fn and returns the message of the std::invalid_argument it throws ("" if none).
std::string invalid_argument_message(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const std::invalid_argument& e) {
        return e.what();
    } catch (...) {
        return "(another exception)";
    }
    return "";
}

// memcmp that accepts the null data() of empty vectors.
bool same_bytes(const void* a, const void* b, size_t bytes) { return bytes == 0 || std::memcmp(a, b, bytes) == 0; }

void set_isa(const char* isa) { wl::set_isa(isa); }

// Sets (or unsets) WEIGHTLESS_ISA and makes the next decode call read it.
void set_isa_environment(const char* isa) {
    if (isa)
        setenv("WEIGHTLESS_ISA", isa, 1);
    else
        unsetenv("WEIGHTLESS_ISA");
    wl::detail::reread_isa_environment();
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

// Keys in [base, base + span): each kept with probability `density`.
// The layout the tests build: every test runs for the chunked layout (3) and the fuse layout (2).
uint32_t g_version = 3;

std::string layout_tag() { return g_version == 3 ? " [chunked]" : " [fuse]"; }

// The first keys of the pieces (fuse) or chunks (chunked) after the first.
std::vector<uint64_t> boundaries(const wl::Filter& f) {
    std::vector<uint64_t> b;
    if (f.version == 3)
        for (size_t c = 1; c < f.chunks.size(); ++c) b.push_back(f.chunks[c].first_key);
    else
        for (size_t p = 1; p < f.pieces.size(); ++p) b.push_back(f.pieces[p].first_key);
    return b;
}

wl::Filter build(uint64_t base, uint64_t span, double density, uint32_t r, uint32_t t, uint32_t arity,
                 uint64_t piece_keys, uint64_t seed, uint64_t block_keys = 0) {
    std::mt19937_64 rng(seed);
    std::vector<uint64_t> keys;
    std::vector<uint32_t> values;
    for (uint64_t i = 0; i < span; ++i)
        if (double(rng() >> 11) * 0x1.0p-53 < density) {
            keys.push_back(base + i);
            values.push_back(uint32_t(rng()) & ((1u << r) - 1));
        }
    wl::BuildOptions o;
    o.value_bits = r;
    o.cell_bits = t;
    o.arity = arity;
    o.piece_keys = piece_keys;
    o.block_keys = block_keys;
    o.seed = seed;
    o.format_version = g_version;
    if (g_version == 3) o.chunk_keys = piece_keys ? piece_keys / 4 : 0;  // several chunks where the test wants pieces
    return wl::build_filter(keys.data(), values.data(), keys.size(), o);
}

// Inserts a piece without keys (no cells, word = mask) covering [first_key, the next piece).
wl::Filter with_empty_piece(wl::Filter f, uint64_t first_key, uint64_t hash_seed) {
    wl::Piece empty;
    empty.first_key = first_key;
    empty.hash_seed = hash_seed;
    auto at = std::upper_bound(f.pieces.begin(), f.pieces.end(), first_key,
                               [](uint64_t k, const wl::Piece& p) { return k < p.first_key; });
    empty.cell_offset = at == f.pieces.end() ? f.cells.size() : at->cell_offset;
    if (at != f.pieces.begin() && (at - 1)->first_key == first_key)
        *(at - 1) = empty;  // replaces a piece: its table stays in cells, unused
    else
        f.pieces.insert(at, empty);
    return f;
}

std::vector<float> make_codebook(uint32_t size, uint64_t seed) {
    std::mt19937 rng{uint32_t(seed)};
    std::vector<float> book(size);
    for (auto& v : book) v = std::uniform_real_distribution<float>(-2.0f, 2.0f)(rng);
    if (size > 0) book[0] = -0.0f;  // not 0.0f: a cluster that reads as zero keeps its sign bit
    return book;
}

// The ISAs to compare: every supported one.
const std::vector<std::string>& isas() {
    static const std::vector<std::string> all = wl::supported_isas();
    return all;
}

// Decodes [begin, begin + n) on every ISA and compares with the reference.
void check_range(const wl::Filter& f, uint64_t begin, uint64_t n, const std::vector<uint32_t>& book_sizes,
                 const std::string& tag) {
    std::vector<uint64_t> keys(n);
    for (uint64_t i = 0; i < n; ++i) keys[i] = begin + i;
    std::vector<int32_t> expected_values(n);
    wl::query_values(f, keys.data(), n, expected_values.data());
    std::string where = tag + layout_tag() + " [" + std::to_string(begin) + ", +" + std::to_string(n) + ")";

    for (uint32_t book_size : book_sizes) {
        std::vector<float> book = make_codebook(book_size, begin + n + book_size);
        uint32_t used = std::min<uint32_t>(book_size, 1u << f.value_bits);
        std::vector<float> expected(n);
        uint64_t expected_count = 0;
        for (uint64_t i = 0; i < n; ++i) {
            int32_t v = expected_values[i];
            bool hit = v >= 0 && uint32_t(v) < used;
            expected[i] = hit ? book[size_t(v)] : 0.0f;
            expected_count += hit;
        }
        for (const std::string& isa : isas()) {
            set_isa(isa.c_str());
            std::string what = where + " isa=" + isa + " codebook=" + std::to_string(book_size);
            for (unsigned threads : {1u, 2u, 3u}) {
                if (threads > 1 && n < 3 * 65536) continue;  // split_range uses one thread below that
                std::vector<float> got(n + 1, 42.0f);
                wl::decode_weights(f, begin, begin + n, book.data(), book_size, got.data(), threads);
                check(same_bytes(got.data(), expected.data(), n * sizeof(float)) && got[n] == 42.0f,
                      "decode_weights, " + what + " threads=" + std::to_string(threads));
                check(wl::count_decoded(f, begin, begin + n, book_size, threads) == expected_count,
                      "count_decoded, " + what + " threads=" + std::to_string(threads));
            }
        }
    }
    for (const std::string& isa : isas()) {
        set_isa(isa.c_str());
        std::vector<int32_t> got(n + 1, 42);
        wl::decode_range(f, begin, begin + n, got.data());
        check(same_bytes(got.data(), expected_values.data(), n * sizeof(int32_t)) && got[n] == 42,
              "decode_range, " + where + " isa=" + isa);
    }
    set_isa(nullptr);
}

const uint64_t kLengths[] = {0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 101, 997};

// Every length, from starts at 0, odd offsets, and around the pieces' and blocks' boundaries.
void check_many_ranges(const wl::Filter& f, uint64_t span, const std::vector<uint32_t>& book_sizes,
                       const std::string& tag) {
    std::vector<uint64_t> starts = {0, 1, 3, 13, 1001, span / 2 + 1};
    const std::vector<uint64_t> bounds = boundaries(f);
    for (size_t p = 0; p < bounds.size() && p < 3; ++p) {
        starts.push_back(bounds[p] - 5);  // crosses a boundary
        starts.push_back(bounds[p] + 7);  // inside a piece (chunk)
    }
    for (size_t p = 0; p < f.pieces.size() && p < 2; ++p)  // crosses a block boundary
        if (f.pieces[p].num_blocks() > 2) starts.push_back(f.pieces[p].first_key + (uint64_t(1) << f.pieces[p].block_log2) - 3);
    for (uint64_t b : starts)
        for (uint64_t n : kLengths) check_range(f, b, n, book_sizes, tag);
    check_range(f, 0, span, book_sizes, tag);   // the whole layer
    check_range(f, 5, span + 99, {book_sizes[0]}, tag);  // odd start, past the last key
}

void test_shapes() {
    struct Case {
        uint32_t r, t, arity;
    };
    const Case cases[] = {{4, 8, 3}, {4, 8, 4}, {5, 12, 3}, {5, 12, 4}, {4, 4, 3}, {1, 1, 4}, {8, 8, 3},
                          {16, 32, 3}, {16, 32, 4}, {3, 32, 3}, {16, 16, 4}};
    for (const Case& c : cases) {
        const uint64_t span = 300007;  // ~300k positions, 15k keys, several pieces
        // Blocks of ~4096 keys (one per piece) or of ~256 (many per piece; runs stop at each).
        const uint64_t block_keys = c.arity == 3 && c.t != 32 ? 256 : 0;
        wl::Filter f = build(0, span, 0.05, c.r, c.t, c.arity, 4096, c.r * 100 + c.t + c.arity, block_keys);
        std::string tag = "r=" + std::to_string(c.r) + " t=" + std::to_string(c.t) + " arity=" + std::to_string(c.arity) +
                          " block_keys=" + std::to_string(block_keys);
        check(boundaries(f).size() >= 2, "several pieces (chunks), " + tag + layout_tag());
        if (g_version == 2)
            check(block_keys ? f.pieces[1].num_blocks() > 4 : f.pieces[1].num_blocks() == 1, "blocks per piece, " + tag);
        uint32_t full = 1u << c.r;
        std::vector<uint32_t> sizes = {full, full > 2 ? full - 3 : 1};  // codebook = 2^r, and smaller
        if (c.r == 5) sizes = {32, 11, 1, 0, 70000};                   // also empty and larger than 2^r
        check_many_ranges(f, span, sizes, tag);
    }
}

// A layer whose kept positions come in dense stretches between whole empty rows: many blocks
// are empty (no first cells) or hold a stretch's edge.
void test_empty_blocks() {
    for (uint32_t arity : {3u, 4u}) {
        std::mt19937_64 rng(arity);
        std::vector<uint64_t> keys;
        std::vector<uint32_t> values;
        const uint64_t rows = 400, cols = 500;
        for (uint64_t row = 0; row < rows; ++row) {
            if (row % 7 < 3 || (row > 100 && row < 180)) continue;  // empty rows
            for (uint64_t col = 0; col < cols; ++col)
                if (rng() % 100 < (row % 2 ? 2 : 20)) {
                    keys.push_back(row * cols + col);
                    values.push_back(uint32_t(rng() % 16));
                }
        }
        wl::BuildOptions o;
        o.value_bits = 4;
        o.cell_bits = 10;
        o.arity = arity;
        o.block_keys = 64;
        o.format_version = g_version;
        o.chunk_keys = 200;
        wl::Filter f = wl::build_filter(keys.data(), values.data(), keys.size(), o);
        std::string tag = "empty rows arity=" + std::to_string(arity) + layout_tag();
        if (g_version == 3) {  // chunks whose boundaries fall in empty rows
            check(f.chunks.size() > 20, tag + ": many chunks");
            std::vector<int32_t> got(keys.size());
            wl::query_values(f, keys.data(), keys.size(), got.data());
            bool exact = true;
            for (size_t i = 0; i < keys.size(); ++i) exact &= got[i] == int32_t(values[i]);
            check(exact, tag + ": every kept position reads back");
            check_many_ranges(f, rows * cols, {16, 9}, tag);
            continue;
        }
        const wl::Piece& p = f.pieces[0];
        size_t empty = 0;
        for (uint32_t b = 0; b < p.num_blocks(); ++b) empty += p.block_starts[b] == p.block_starts[b + 1];
        check(f.pieces.size() == 1 && p.num_blocks() > 60 && empty > 5,
              tag + ": many blocks (" + std::to_string(p.num_blocks()) + "), some empty (" + std::to_string(empty) + ")");
        std::vector<int32_t> got(keys.size());
        wl::query_values(f, keys.data(), keys.size(), got.data());
        bool exact = true;
        for (size_t i = 0; i < keys.size(); ++i) exact &= got[i] == int32_t(values[i]);
        check(exact, tag + ": every kept position reads back");
        check_many_ranges(f, rows * cols, {16, 9}, tag);
    }
}

void test_empty_pieces() {
    for (uint32_t arity : {3u, 4u}) {
        if (g_version == 3) {  // no keys: no chunks, every key reads its mask
            wl::Filter none = build(0, 1000, 0.0, 4, 8, arity, 0, 3);
            check(none.chunks.empty() && none.cells.empty(), "a filter of no keys has no chunks");
            check_many_ranges(none, 1000, {16}, "no keys arity=" + std::to_string(arity));
            wl::Filter one = build(500, 1, 1.0, 4, 8, arity, 0, 3);
            check(one.chunks.size() == 1, "one key, one chunk");
            check_many_ranges(one, 1000, {16}, "one key arity=" + std::to_string(arity));
            continue;
        }
        const uint64_t span = 120000;
        wl::Filter f = build(0, span, 0.1, 4, 9, arity, 3000, 77 + arity);
        check(f.pieces.size() >= 4, "several pieces before adding empty ones");
        uint64_t second = f.pieces[2].first_key;
        f = with_empty_piece(f, f.pieces[1].first_key + 10, 0x0123456789ABCDEFull);  // in the middle of a piece
        f = with_empty_piece(f, second, 0xFEDCBA9876543210ull);                      // replacing a whole piece
        f = with_empty_piece(f, span - 50, 12345);                                   // the last, open-ended
        std::string tag = "empty pieces arity=" + std::to_string(arity);
        check_many_ranges(f, span, {16, 5}, tag);
        wl::Filter none = build(0, 1000, 0.0, 4, 8, arity, 0, 3);  // no keys: one empty piece
        check(none.pieces.size() == 1 && none.pieces[0].segment_count == 0, "a filter of no keys has one empty piece");
        check_many_ranges(none, 1000, {16}, "no keys arity=" + std::to_string(arity));
    }
}

// Runs whose keys cross a multiple of 2^32 (the kernels' lanes count the low 32 bits), and the
// very end of the key space.
void test_high_keys() {
    const uint64_t two32 = uint64_t(1) << 32;
    for (uint32_t arity : {3u, 4u}) {
        std::string tag = "near 2^32 arity=" + std::to_string(arity);
        wl::Filter f = build(two32 - 40000, 80000, 0.1, 5, 12, arity, 1500, 5 + arity);
        bool straddles = false;  // some piece (chunk) holds keys on both sides of 2^32
        std::vector<uint64_t> b = boundaries(f);
        b.insert(b.begin(), 0);
        for (size_t p = 0; p + 1 < b.size(); ++p) straddles |= b[p] < two32 - 200 && b[p + 1] > two32 + 200;
        check(straddles, "a piece straddles 2^32, " + tag + layout_tag());
        check_range(f, two32 - 100, 200, {32, 20}, tag);
        for (uint64_t back : {1, 3, 8, 9, 17})
            for (uint64_t n : kLengths) check_range(f, two32 - back, n, {20}, tag);
        check_range(f, two32 - 40001, 80003, {32}, tag);
        for (uint64_t hi : {uint64_t(7), uint64_t(0xFFFFFFFEull)}) {
            wl::Filter g = build(hi * two32 + two32 - 3000, 6000, 0.2, 4, 8, arity, 0, 9);
            check_range(g, hi * two32 + two32 - 100, 200, {16}, tag + " hi=" + std::to_string(hi));
        }
        wl::Filter top = build(~uint64_t(0) - 5000, 5000, 0.2, 4, 8, arity, 0, 11);  // keys up to 2^64 - 2
        check_range(top, ~uint64_t(0) - 300, 300, {16}, tag + " below 2^64");
    }
}

// The ISA that runs is the one expected for this machine: a SIMD path that silently compiled
// out (a wrong preprocessor test, a missing source file) fails here.
void test_active_isa() {
    set_isa(nullptr);
    std::vector<std::string> all = wl::supported_isas();
    check(!all.empty() && all.front() == "scalar", "scalar is always supported");
    std::string expected = "scalar";
#if defined(__x86_64__)
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2");
    const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    expected = avx512 ? "avx512" : avx2 ? "avx2" : "scalar";
    check(contains(all, "avx2") == avx2, "avx2 supported exactly when the CPU has it");
    check(contains(all, "avx512") == avx512, "avx512 supported exactly when the CPU has AVX-512F");
    check(!contains(all, "neon"), "no neon on x86-64");
#elif defined(__aarch64__)
    expected = "neon";
    check(contains(all, "neon"), "neon supported on AArch64");
    check(!contains(all, "avx2") && !contains(all, "avx512"), "no avx2 or avx512 on AArch64");
#endif
    std::printf("supported ISAs:");
    for (const auto& s : all) std::printf(" %s", s.c_str());
    std::printf("; default %s\n", wl::active_isa());
    check(wl::active_isa() == expected, "the default ISA is " + expected + ", got " + wl::active_isa());
    check(all.back() == expected, "the default is the last supported ISA");
    const wl::detail::Kernels* k = wl::detail::active_kernels();
    check(expected == "scalar" ? k == nullptr : k != nullptr && k->name == expected,
          "the kernels in use are " + expected + "'s");
    // Forcing each one.
    for (const std::string& isa : all) {
        set_isa(isa.c_str());
        check(wl::active_isa() == isa, "WEIGHTLESS_ISA=" + isa + " is active");
        k = wl::detail::active_kernels();
        check(isa == "scalar" ? k == nullptr : k != nullptr && k->name == isa, "WEIGHTLESS_ISA=" + isa + " kernels");
    }
    set_isa("SCALAR");
    check(std::string(wl::active_isa()) == "scalar", "set_isa is case-insensitive");
    set_isa("");
    check(wl::active_isa() == expected, "set_isa(\"\") means the default");
    // The environment: read once, at the first decode call after it was (re)armed.
    set_isa_environment("Scalar");
    check(std::string(wl::active_isa()) == "scalar", "WEIGHTLESS_ISA is read and case-insensitive");
    setenv("WEIGHTLESS_ISA", all.back().c_str(), 1);
    check(std::string(wl::active_isa()) == "scalar", "WEIGHTLESS_ISA is read once, not on every call");
    set_isa_environment("");
    check(wl::active_isa() == expected, "an empty WEIGHTLESS_ISA means the default");
    set_isa_environment(nullptr);
    set_isa(nullptr);
}

void test_bad_isa() {
    wl::Filter f = build(0, 5000, 0.1, 4, 8, 3, 0, 1);
    std::vector<float> book(16, 1.0f), out(5000);
    std::vector<int32_t> codes(5000);
    for (const char* bad : {"bogus", "sse4", "sse2"}) {
        std::string set_msg = invalid_argument_message([&] { wl::set_isa(bad); });
        check(set_msg.find(bad) != std::string::npos && set_msg.find("scalar") != std::string::npos,
              std::string("set_isa(") + bad + ") names the value and the supported ones: " + set_msg);
        check(wl::active_isa() == wl::supported_isas().back(), "a refused set_isa changes nothing");
        set_isa_environment(bad);
        std::string msg = invalid_argument_message([] { wl::active_isa(); });
        check(msg.find(bad) != std::string::npos && msg.find("scalar") != std::string::npos,
              std::string("WEIGHTLESS_ISA=") + bad + " names the value and the supported ones: " + msg);
        check(!invalid_argument_message([&] { wl::decode_weights(f, 0, 5000, book.data(), 16, out.data(), 2); }).empty(),
              std::string("decode_weights rejects WEIGHTLESS_ISA=") + bad);
        check(!invalid_argument_message([&] { wl::count_decoded(f, 0, 5000, 16, 2); }).empty(),
              std::string("count_decoded rejects WEIGHTLESS_ISA=") + bad);
        check(!invalid_argument_message([&] { wl::decode_range(f, 0, 5000, codes.data()); }).empty(),
              std::string("decode_range rejects WEIGHTLESS_ISA=") + bad);
        set_isa_environment(nullptr);
    }
    // Known, but not for this machine.
#if defined(__aarch64__)
    const char* foreign = "avx2";
#else
    const char* foreign = "neon";
#endif
    set_isa_environment(foreign);
    std::string msg = invalid_argument_message([] { wl::active_isa(); });
    check(msg.find(foreign) != std::string::npos && msg.find("not supported") != std::string::npos,
          std::string("WEIGHTLESS_ISA=") + foreign + " is not supported here: " + msg);
    set_isa(nullptr);
    check(invalid_argument_message([&] { wl::decode_weights(f, 0, 5000, book.data(), 16, out.data(), 2); }).empty(),
          "decoding works again once set_isa chooses");
    set_isa_environment(nullptr);
}

}  // namespace

int main() {
    return wl_test::run_tests([] {
        test_active_isa();
        test_bad_isa();
        for (uint32_t version : {3u, 2u}) {
            g_version = version;
            test_shapes();
            test_empty_blocks();
            test_empty_pieces();
            test_high_keys();
        }
    });
}
