// Construction speed and space: wl_bench [n] [piece_keys] [arity] [trials] [threads]
// Prints ns/key, cells/key and the construction attempts used, for random 64-bit keys.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "weightless.h"

int main(int argc, char** argv) {
    size_t n = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 1000000;
    uint64_t piece_keys = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 0;
    uint32_t arity = argc > 3 ? uint32_t(std::atoi(argv[3])) : 3;
    int trials = argc > 4 ? std::atoi(argv[4]) : 5;
    std::mt19937_64 rng(42);
    std::vector<uint64_t> keys(n);
    std::vector<uint32_t> values(n);
    for (size_t i = 0; i < n; ++i) {
        keys[i] = rng();
        values[i] = uint32_t(rng()) & 15;
    }
    wl::BuildOptions o;
    o.value_bits = 4;
    o.cell_bits = 8;
    o.arity = arity;
    o.piece_keys = piece_keys;
    o.threads = argc > 5 ? unsigned(std::atoi(argv[5])) : 1;
    for (int trial = 0; trial < trials; ++trial) {
        o.seed = uint64_t(trial);
        auto t0 = std::chrono::steady_clock::now();
        wl::Filter f = wl::build_filter(keys.data(), values.data(), n, o);
        double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("n=%zu pieces=%zu arity=%u  %.1f ns/key  cells/key %.4f  bytes*8/(n*t) %.4f\n", n,
                    f.pieces.size(), arity, s * 1e9 / double(n), double(f.cells.size()) / double(n),
                    double(wl::serialized_size(f)) * 8 / (double(n) * 8));
    }
}
