// Fuzzes the exact codec's reader and decoders (csrc/codecs/exact.h, docs/FORMAT.md "Exact
// codec payload"): the input is a payload whose trailing CRC-32 the harness repairs (the fuzzer
// cannot forge it), so mutations reach the header, the tables and the rANS streams behind it.
//
// Accepted payloads within the output budget are decoded both ways, which must agree: the dense
// decode is codebook[code] at exactly the positions the sparse decode lists (strictly
// increasing, inside the tensor) and zero elsewhere; guard bytes around the output stay intact.
// Anything malformed must be std::invalid_argument, nothing else.
#include <cstring>
#include <stdexcept>
#include <vector>

#include "codecs/exact.h"
#include "fuzz_common.h"

namespace {

constexpr uint64_t kBudget = uint64_t(1) << 18;  // decoded positions per input (keeps runs fast)
constexpr size_t kGuard = 16;

void check(const uint8_t* data, size_t size) {
    wl::ExactInfo info;
    try {
        info = wl::exact_info(data, size);
    } catch (const std::invalid_argument&) {
        return;
    }
    if (info.kept > info.size) wl_fuzz::violated("more kept positions than the tensor has");
    if (info.size > kBudget) return;
    std::vector<float> out(info.size + 2 * kGuard, 7.0f);
    std::vector<uint64_t> positions(info.kept);
    std::vector<uint32_t> codes(info.kept);
    bool dense_ok = true, sparse_ok = true;
    try {
        wl::exact_decode_weights(data, size, out.data() + kGuard, info.size);
    } catch (const std::invalid_argument&) {
        dense_ok = false;
    }
    try {
        wl::exact_decode_sparse(data, size, positions.data(), codes.data(), info.kept);
    } catch (const std::invalid_argument&) {
        sparse_ok = false;
    }
    for (size_t i = 0; i < kGuard; ++i)
        if (out[i] != 7.0f || out[kGuard + info.size + i] != 7.0f) wl_fuzz::violated("decode wrote outside its output");
    if (dense_ok != sparse_ok) wl_fuzz::violated("one decoder accepted what the other refused");
    if (!dense_ok) return;
    std::vector<float> expected(info.size, 0.0f);
    for (uint64_t i = 0; i < info.kept; ++i) {
        if (positions[i] >= info.size || (i && positions[i] <= positions[i - 1]))
            wl_fuzz::violated("kept positions not strictly increasing inside the tensor");
        if (codes[i] >= info.codebook.size()) wl_fuzz::violated("a code past the codebook");
        expected[positions[i]] = info.codebook[codes[i]];
    }
    if (info.size && std::memcmp(expected.data(), out.data() + kGuard, info.size * sizeof(float)) != 0)
        wl_fuzz::violated("the dense and the sparse decodes differ");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::vector<uint8_t> payload(data, data + size);
    wl_fuzz::fix_crc(payload.data(), payload.size());
    check(payload.data(), payload.size());
    return 0;
}
