// Decode time of exact codec payloads, C++ only (no Python): best of 3000 decodes of each file
// into one reused float32 buffer (memset included). Payloads come from ExactLayer.to_bytes().
//
//     wl_bench_exact fc1.wlex [more.wlex ...]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <vector>

#include "codecs/exact.h"

int main(int argc, char** argv) {
    for (int a = 1; a < argc; ++a) {
        std::ifstream f(argv[a], std::ios::binary);
        std::vector<uint8_t> b((std::istreambuf_iterator<char>(f)), {});
        wl::ExactInfo info = wl::exact_info(b.data(), b.size());
        std::vector<float> out(info.size);
        double best = 1e30;
        for (int r = 0; r < 3000; ++r) {
            auto t = std::chrono::steady_clock::now();
            wl::exact_decode_weights(b.data(), b.size(), out.data(), out.size());
            double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t).count();
            if (us < best) best = us;
        }
        std::printf("%s: %.1f us (%.2f ns per kept weight, modes %u/%u)\n", argv[a], best,
                    info.kept ? best * 1000 / double(info.kept) : 0.0, info.gap_mode, info.code_mode);
    }
}
