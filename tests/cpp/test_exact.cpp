// The exact codec (csrc/codecs/exact.h): bit-exact round trips over densities, cluster counts,
// shapes and every forced mode; every truncation and single-bit flip of a small payload
// rejected with std::invalid_argument; malformed encoder inputs rejected.
#include <cmath>
#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "check.h"
#include "codecs/exact.h"

using wl_test::check;

namespace {

struct Tensor {
    std::vector<uint64_t> shape, positions;
    std::vector<uint32_t> codes;
    std::vector<float> codebook;
};

Tensor make(std::vector<uint64_t> shape, double density, uint32_t k, uint64_t seed, bool structured = false) {
    Tensor t;
    t.shape = shape;
    uint64_t size = 1;
    for (auto d : shape) size *= d;
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<double> u(0, 1);
    uint64_t cols = shape.size() > 1 ? size / shape[0] : size;
    for (uint64_t p = 0; p < size; ++p) {
        double d = density;
        if (structured) d = (p % cols) % 7 == 0 ? 0.0 : std::min(1.0, density * 7 / 6 * ((p / cols) % 3 + 1) / 2);
        if (u(rng) < d) {
            t.positions.push_back(p);
            // skewed codes: geometric-ish over k
            uint32_t c = 0;
            while (c + 1 < k && u(rng) < 0.6) ++c;
            t.codes.push_back(c);
        }
    }
    for (uint32_t i = 0; i < k; ++i) t.codebook.push_back(float(i) - float(k) / 2 + 0.25f);
    return t;
}

std::vector<uint8_t> enc(const Tensor& t, int gm = -1, int cm = -1, int ways = 0) {
    wl::ExactOptions o;
    o.ways = ways;
    o.gap_mode = gm;
    o.code_mode = cm;
    return wl::exact_encode(t.positions.data(), t.codes.data(), t.positions.size(), t.shape.data(), t.shape.size(),
                            t.codebook.data(), t.codebook.size(), o);
}

bool round_trips(const Tensor& t, const std::vector<uint8_t>& bytes) {
    wl::ExactInfo info = wl::exact_info(bytes.data(), bytes.size());
    if (info.shape != t.shape || info.kept != t.positions.size() || info.codebook != t.codebook) return false;
    std::vector<uint64_t> pos(info.kept);
    std::vector<uint32_t> codes(info.kept);
    wl::exact_decode_sparse(bytes.data(), bytes.size(), pos.data(), codes.data(), info.kept);
    if (pos != t.positions || codes != t.codes) return false;
    std::vector<float> out(info.size, -1.0f);
    wl::exact_decode_weights(bytes.data(), bytes.size(), out.data(), out.size());
    std::vector<float> want(info.size, 0.0f);
    for (size_t i = 0; i < t.positions.size(); ++i) want[t.positions[i]] = t.codebook[t.codes[i]];
    return out == want;
}

template <typename Fn>
bool throws_invalid(Fn fn) {
    try {
        fn();
    } catch (const std::invalid_argument&) {
        return true;
    } catch (...) {
        return false;
    }
    return false;
}

bool rejects(const std::vector<uint8_t>& b) {
    return throws_invalid([&] {
        wl::ExactInfo info = wl::exact_info(b.data(), b.size());
        std::vector<float> out(info.size);
        wl::exact_decode_weights(b.data(), b.size(), out.data(), out.size());
    });
}

uint32_t crc32(const uint8_t* p, size_t n) {  // zlib's, bit by bit
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; ++i) {
        c ^= p[i];
        for (int k = 0; k < 8; ++k) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    }
    return ~c;
}

// The payload with stream `which` (0 gap, 1 code) cut to its W initial states, CRC repaired
// (docs/FORMAT.md layout: ... T, tables, G, gap stream, C, code stream, CRC).
std::vector<uint8_t> cut_stream(const std::vector<uint8_t>& b, int which) {
    size_t at = 8;
    auto varint = [&] {
        uint64_t v = 0;
        for (unsigned shift = 0;; shift += 7) {
            uint8_t x = b[at++];
            v |= uint64_t(x & 0x7f) << shift;
            if (!(x & 0x80)) return v;
        }
    };
    const unsigned ways = 1u << b[7];
    for (unsigned d = 0; d < b[5]; ++d) varint();
    varint();
    at += 4 * varint();
    at += varint();
    std::vector<uint8_t> out(b.begin(), b.begin() + long(at));
    for (int s = 0; s < 2; ++s) {
        uint64_t len = varint();
        uint64_t keep = s == which ? 8 * ways : len;
        for (uint64_t v = keep;; v >>= 7) {  // varint
            out.push_back(uint8_t((v & 0x7f) | (v >= 0x80 ? 0x80 : 0)));
            if (v < 0x80) break;
        }
        out.insert(out.end(), b.begin() + long(at), b.begin() + long(at + keep));
        at += len;
    }
    uint32_t c = crc32(out.data(), out.size());
    for (int k = 0; k < 4; ++k) out.push_back(uint8_t(c >> (8 * k)));
    return out;
}

}  // namespace

int main() {
    return wl_test::run_tests([] {
        const std::vector<std::vector<uint64_t>> shapes = {{1}, {7}, {1000}, {30, 40}, {3, 5, 7}, {2, 3, 4, 5}, {}};
        const double densities[] = {0.0, 0.001, 0.01, 0.08, 0.3, 0.5, 0.9, 1.0};
        const uint32_t ks[] = {1, 2, 16, 256};
        uint64_t seed = 1;
        for (const auto& shape : shapes)
            for (double d : densities)
                for (uint32_t k : ks)
                    for (bool structured : {false, true}) {
                        Tensor t = make(shape, d, k, seed++, structured);
                        check(round_trips(t, enc(t)), "round trip, density " + std::to_string(d) + ", k " +
                                                          std::to_string(k) + ", ndim " + std::to_string(shape.size()));
                    }
        // Every forced mode, on a layer where each context is used.
        Tensor t = make({60, 50}, 0.3, 16, 99, true);
        for (int gm = 0; gm <= 1; ++gm)
            for (int cm = 0; cm <= 3; ++cm)
                for (int ways : {1, 2, 4})
                    check(round_trips(t, enc(t, gm, cm, ways)),
                          "forced modes " + std::to_string(gm) + "/" + std::to_string(cm) + ", ways " + std::to_string(ways));
        for (int ways : {1, 2, 4}) {  // fewer kept weights than states
            Tensor few = make({20}, 0.15, 3, 3);
            check(round_trips(few, enc(few, -1, -1, ways)), "ways " + std::to_string(ways) + " with few weights");
        }
        // One kept element; an all-zero tensor; a single cluster at full density costs no stream bits per weight.
        Tensor one;
        one.shape = {1000};
        one.positions = {999};
        one.codes = {0};
        one.codebook = {0.5f};
        check(round_trips(one, enc(one)), "one element at the end");
        Tensor zero = make({100, 100}, 0.0, 4, 5);
        check(round_trips(zero, enc(zero)), "all-zero");
        Tensor full = make({1000, 1000}, 1.0, 1, 6);
        check(enc(full, -1, -1, 1).size() < 48 && round_trips(full, enc(full)), "full density, one cluster: a few bytes");
        // Larger gaps than 2^32 (raw bits split over two reads), a 2^40-position tensor.
        Tensor huge;
        huge.shape = {uint64_t(1) << 20, uint64_t(1) << 20};
        huge.positions = {3, (uint64_t(1) << 35) + 12345, (uint64_t(1) << 40) - 1};
        huge.codes = {1, 0, 1};
        huge.codebook = {-1.0f, 1.0f};
        {
            auto b = enc(huge);
            wl::ExactInfo info = wl::exact_info(b.data(), b.size());
            std::vector<uint64_t> pos(3);
            std::vector<uint32_t> codes(3);
            wl::exact_decode_sparse(b.data(), b.size(), pos.data(), codes.data(), 3);
            check(info.size == uint64_t(1) << 40 && pos == huge.positions && codes == huge.codes, "gaps past 2^32");
        }

        // Every truncation and every single-bit flip of a small payload is rejected.
        Tensor small = make({12, 20}, 0.3, 5, 7, true);
        auto b = enc(small, 1, 3, 2);
        bool all = true;
        for (size_t len = 0; len < b.size(); ++len) {
            std::vector<uint8_t> cut(b.begin(), b.begin() + long(len));
            all = all && rejects(cut);
        }
        check(all, "every truncation rejected");
        all = true;
        for (size_t i = 0; i < b.size() * 8; ++i) {
            auto flipped = b;
            flipped[i / 8] ^= uint8_t(1u << (i % 8));
            all = all && rejects(flipped);
        }
        check(all, "every bit flip rejected");
        auto extra = b;
        extra.push_back(0);
        check(rejects(extra), "trailing byte rejected");
        check(throws_invalid([&] {
                  std::vector<float> out(3);
                  wl::exact_decode_weights(b.data(), b.size(), out.data(), out.size());
              }),
              "output of the wrong size rejected");

        // Streams far shorter than their weights need (here: nothing but the states): rejected.
        // The decoder reads a chunk's words without end checks once the stream's tail is copied
        // ahead of zeros (csrc/codecs/exact.cpp), and checks after each chunk: run under ASan
        // (docs/HARDENING.md), a missing check would read past the copy.
        for (int gm = 0; gm <= 1; ++gm)
            for (int cm : {0, 3}) {
                Tensor dense = make({300, 400}, 0.5, 16, 21);  // streams of 20-70 KB
                auto full_payload = enc(dense, gm, cm, 2);
                check(round_trips(dense, full_payload), "a layer to cut");
                check(rejects(cut_stream(full_payload, 0)) && rejects(cut_stream(full_payload, 1)),
                      "streams cut to their states rejected, modes " + std::to_string(gm) + "/" + std::to_string(cm));
                check(round_trips(dense, cut_stream(full_payload, 2)), "cut_stream itself keeps a payload intact");
            }

        // Encoder input checks.
        Tensor bad = small;
        std::swap(bad.positions[0], bad.positions[1]);
        check(throws_invalid([&] { enc(bad); }), "unsorted positions rejected");
        bad = small;
        bad.codes[0] = 5;
        check(throws_invalid([&] { enc(bad); }), "code out of range rejected");
        bad = small;
        bad.positions.back() = 240;
        check(throws_invalid([&] { enc(bad); }), "position out of range rejected");
        Tensor many = make({100}, 0.5, 300, 8);
        check(round_trips(many, enc(many)), "300 clusters (no code contexts)");
        check(throws_invalid([&] { enc(many, -1, 1); }), "code contexts with 300 clusters rejected");

        // Deterministic output; the payload stays near the information bound on an i.i.d. mask.
        Tensor iid = make({300, 784}, 0.08, 16, 11);
        check(enc(iid) == enc(iid), "deterministic");
        double n = double(iid.positions.size()), size = 300.0 * 784;
        double bound = (std::lgamma(size + 1) - std::lgamma(n + 1) - std::lgamma(size - n + 1)) / std::log(2.0);
        std::vector<double> counts(16);
        for (auto c : iid.codes) counts[c] += 1;
        for (double c : counts)
            if (c > 0) bound -= c * std::log2(c / n);
        double bits = 8.0 * double(enc(iid).size());
        check(bits <= 1.03 * bound + 8 * (64 + 4 * 16 + 3 * 40), "within 1.03 x the information bound");
        std::printf("i.i.d. 8%% of 300x784, 16 clusters: %.0f bytes, bound %.0f bytes (%.4f)\n", bits / 8,
                    bound / 8, bits / bound);
    });
}
