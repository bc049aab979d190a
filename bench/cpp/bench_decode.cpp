// Decode speed: wl_bench_decode [rows] [cols] [density] [cell_bits] [clusters] [piece_keys] [arity] [reps] [block_keys]
// Builds a layer whose positions are kept with probability `density` (defaults: VGG-16 FC-6,
// 25088 x 4096 at 4%, t = 12, 32 clusters), then times decode_weights on every supported ISA
// with 1 and 2 threads: into a fresh buffer (page faults included, as a Python caller pays; like
// numpy's allocator it asks for transparent huge pages) and into a buffer already written once.
// Prints the best of `reps`. WEIGHTLESS_ISA=avx2 (say) times that ISA only.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "weightless.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace {

struct FreeDeleter {
    void operator()(float* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<float[], FreeDeleter>;

// n floats, not yet touched, in 2 MB aligned memory marked for huge pages (numpy does the same
// for arrays of 4 MB and more).
Buffer fresh_buffer(uint64_t n) {
    const size_t align = size_t(1) << 21, bytes = (n * sizeof(float) + align - 1) / align * align;
    Buffer b(static_cast<float*>(std::aligned_alloc(align, bytes)));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(b.get(), bytes, MADV_HUGEPAGE);
#endif
    return b;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    uint64_t rows = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 25088;
    uint64_t cols = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 4096;
    double density = argc > 3 ? std::atof(argv[3]) : 0.04;
    uint32_t cell_bits = argc > 4 ? uint32_t(std::atoi(argv[4])) : 12;
    uint32_t clusters = argc > 5 ? uint32_t(std::atoi(argv[5])) : 32;
    uint64_t piece_keys = argc > 6 ? std::strtoull(argv[6], nullptr, 10) : 0;
    uint32_t arity = argc > 7 ? uint32_t(std::atoi(argv[7])) : 3;
    int reps = argc > 8 ? std::atoi(argv[8]) : 5;
    uint64_t block_keys = argc > 9 ? std::strtoull(argv[9], nullptr, 10) : 0;
    const uint64_t n = rows * cols;

    std::mt19937_64 rng(1);
    std::vector<uint64_t> keys;
    std::vector<uint32_t> values;
    const uint64_t threshold = uint64_t(density * 18446744073709551616.0);
    for (uint64_t i = 0; i < n; ++i)
        if (rng() < threshold) {
            keys.push_back(i);
            values.push_back(uint32_t(rng() % clusters));
        }
    uint32_t value_bits = 1;
    while ((1u << value_bits) < clusters) ++value_bits;
    wl::BuildOptions o;
    o.value_bits = value_bits;
    o.cell_bits = cell_bits;
    o.arity = arity;
    o.piece_keys = piece_keys;
    o.block_keys = block_keys;
    o.threads = 2;
    auto t0 = std::chrono::steady_clock::now();
    wl::Filter f = wl::build_filter(keys.data(), values.data(), keys.size(), o);
    std::printf("%llu x %llu = %llu positions, %zu keys (%.2f%%), r=%u t=%u arity=%u, %zu pieces, %.1f MB of cells "
                "in memory (%.2f MB serialized), built in %.2f s\n",
                (unsigned long long)rows, (unsigned long long)cols, (unsigned long long)n, keys.size(),
                100.0 * double(keys.size()) / double(n), value_bits, cell_bits, arity, f.pieces.size(),
                double(f.cells.size()) * 4 / 1e6, double(wl::serialized_size(f)) / 1e6, seconds_since(t0));

    std::vector<float> book(clusters);
    for (uint32_t i = 0; i < clusters; ++i) book[i] = 0.01f * float(i) - 0.1f;

    // The floor: allocate and write n floats.
    double fill = 1e9;
    for (int rep = 0; rep < reps; ++rep) {
        t0 = std::chrono::steady_clock::now();
        Buffer out = fresh_buffer(n);
        std::fill(out.get(), out.get() + n, 1.0f);
        fill = std::min(fill, seconds_since(t0));
    }
    std::printf("allocate + fill %llu floats: %.2f ms\n", (unsigned long long)n, fill * 1e3);

    Buffer warm = fresh_buffer(n);
    std::memset(warm.get(), 0, n * sizeof(float));
    std::vector<float> reference;
    std::vector<std::string> isas = wl::supported_isas();
    if (const char* only = std::getenv("WEIGHTLESS_ISA")) isas = {only};  // just that one
    for (const std::string& isa : isas) {
        setenv("WEIGHTLESS_ISA", isa.c_str(), 1);
        for (unsigned threads : {1u, 2u}) {
            double fresh = 1e9, written = 1e9;
            for (int rep = 0; rep < reps; ++rep) {
                t0 = std::chrono::steady_clock::now();
                Buffer out = fresh_buffer(n);
                wl::decode_weights(f, 0, n, book.data(), clusters, out.get(), threads);
                fresh = std::min(fresh, seconds_since(t0));
                t0 = std::chrono::steady_clock::now();
                wl::decode_weights(f, 0, n, book.data(), clusters, warm.get(), threads);
                written = std::min(written, seconds_since(t0));
            }
            if (reference.empty()) reference.assign(warm.get(), warm.get() + n);
            bool same = std::memcmp(reference.data(), warm.get(), n * sizeof(float)) == 0;
            std::printf("%-6s threads=%u  fresh buffer %8.2f ms (%.2f ns/position)  written buffer %8.2f ms (%.2f ns/position)%s\n",
                        isa.c_str(), threads, fresh * 1e3, fresh * 1e9 / double(n), written * 1e3,
                        written * 1e9 / double(n), same ? "" : "  MISMATCH");
        }
    }
    unsetenv("WEIGHTLESS_ISA");
}
