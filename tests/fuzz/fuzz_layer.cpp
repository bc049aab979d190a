// Fuzzes the decode of one bloomier payload (docs/FORMAT.md, "Bloomier payload"), outliers
// section included, through the C API. The input's first byte picks the tensor's dtype and the
// threads, the next two its shape (rows, columns), the rest is the payload.
//
// The harness fixes the checksum the fuzzer cannot forge (the filter's CRC-32 where the
// payload's framing places it; the outliers section is a headless exact payload, without a
// CRC-32 of its own, so mutations of it reach the exact codec's checks), wraps the payload in a well-formed .wl v3 container, and
// decodes it with wl_decode_tensor under the default instruction set and the scalar reference.
// Outputs within the budget are checked for guard bytes and byte-identity; larger ones must be
// refused for a small buffer.
#include <cstring>
#include <string>

#include "fuzz_common.h"
#include "weightless_c.h"

namespace {

using wl_fuzz::Bytes;

constexpr size_t kBudget = size_t(1) << 18;  // bytes of decoded output (keeps runs fast)
constexpr size_t kGuard = 16;
constexpr uint8_t kDtypes[] = {11, 9, 12, 10};  // float32, float16, float64, bfloat16

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 3) return 0;
    const uint8_t dtype = kDtypes[data[0] % 4];
    const unsigned threads = (data[0] >> 2) % 3 == 2 ? 2 : 1;
    const std::vector<uint64_t> shape = (data[0] >> 4) & 1 ? std::vector<uint64_t>{uint64_t(data[1]) * 256 + data[2]}
                                                             : std::vector<uint64_t>{data[1], data[2]};
    Bytes payload(data + 3, data + size);
    // clusters, false positives, codebook, filter length: then the filter, whose CRC is fixed.
    size_t at = 0;
    uint64_t clusters, fp, filter_len;
    if (wl_fuzz::get_varint(payload.data(), payload.size(), &at, &clusters) &&
        wl_fuzz::get_varint(payload.data(), payload.size(), &at, &fp) && clusters <= (payload.size() - at) / 4) {
        at += size_t(4 * clusters);
        if (wl_fuzz::get_varint(payload.data(), payload.size(), &at, &filter_len) && filter_len <= payload.size() - at)
            wl_fuzz::fix_crc(payload.data() + at, size_t(filter_len));
    }
    const Bytes file = wl_fuzz::container_v3(dtype, 1, shape, payload);

    char err[256];
    wl_model* m = nullptr;
    int status = wl_open_buffer_ex(file.data(), file.size(), &m, err, sizeof err);
    WL_FUZZ_REQUIRE(status == WL_OK || status == WL_ERR_FORMAT);
    if (!m) return 0;
    WL_FUZZ_REQUIRE(wl_tensor_count(m) == 1);
    const size_t need = wl_tensor_nbytes(m, 0);
    if (need > kBudget) {
        unsigned char small[8];
        status = wl_decode_tensor(m, 0, small, sizeof small, threads, err, sizeof err);
        WL_FUZZ_REQUIRE(status == WL_ERR_ARGUMENT || status == WL_ERR_UNSUPPORTED);
        WL_FUZZ_REQUIRE(err[0] != '\0');
        wl_close(m);
        return 0;
    }
    Bytes out(need + 2 * kGuard, 0x5A);
    status = wl_decode_tensor(m, 0, out.data() + kGuard, need, threads, err, sizeof err);
    WL_FUZZ_REQUIRE(status == WL_OK || status == WL_ERR_FORMAT || status == WL_ERR_UNSUPPORTED);
    WL_FUZZ_REQUIRE((status == WL_OK) == (err[0] == '\0'));
    for (size_t g = 0; g < kGuard; ++g) WL_FUZZ_REQUIRE(out[g] == 0x5A && out[kGuard + need + g] == 0x5A);
    if (status == WL_OK) {
        Bytes ref(need + 1);
        wl_fuzz::set_isa("scalar");
        status = wl_decode_tensor(m, 0, ref.data() + 1, need, 1, err, sizeof err);
        wl_fuzz::set_isa(nullptr);
        WL_FUZZ_REQUIRE(status == WL_OK);
        WL_FUZZ_REQUIRE(need == 0 || std::memcmp(ref.data() + 1, out.data() + kGuard, need) == 0);
    }
    wl_close(m);
    return 0;
}
