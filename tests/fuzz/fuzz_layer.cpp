// Fuzzes the decode of one encoded layer (docs/FORMAT.md, "Encoded layer blob") through the C
// API: the input's first byte picks the tensor's dtype, the rest is the layer blob.
//
// The harness fixes the checksums the fuzzer cannot forge (the filter's CRC-32 where the blob's
// header places the filter, then the blob's own CRC-32), wraps the blob in a well-formed .wl
// container whose header entry agrees with the blob (shape, kept, clusters, cell_bits, false
// positives, as far as they can be read), and decodes it with wl_decode_tensor under the default
// instruction set and the scalar reference. Outputs within the budget are checked for guard
// bytes and byte-identity; larger ones must be refused for a small buffer.
#include <cstring>
#include <stdexcept>
#include <string>

#include "fuzz_common.h"
#include "weightless_c.h"

namespace {

using wl_fuzz::Bytes;
using wl_fuzz::get_le;
using wl_fuzz::put_le;

constexpr size_t kLayerHeader = 28;
constexpr size_t kBudget = size_t(1) << 18;  // bytes of decoded output (keeps runs fast)
constexpr size_t kGuard = 16;
const char* const kDtypes[] = {"float32", "float16", "float64"};

Bytes container(const Bytes& blob, const std::string& entry) {
    std::string header = "{\"tensors\":[" + entry + "]}";
    while ((16 + header.size()) % 8) header.push_back(' ');
    const size_t padded = (blob.size() + 7) / 8 * 8;
    Bytes out(16 + header.size() + padded + 4, 0);
    std::memcpy(out.data(), "WLMF", 4);
    put_le(out.data() + 4, 1, 2);
    put_le(out.data() + 8, header.size(), 8);
    std::memcpy(out.data() + 16, header.data(), header.size());
    if (!blob.empty()) std::memcpy(out.data() + 16 + header.size(), blob.data(), blob.size());
    wl_fuzz::fix_crc(out.data(), out.size());
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const char* dtype = kDtypes[data[0] % 3];
    const unsigned threads = (data[0] >> 2) % 3 == 2 ? 2 : 1;
    Bytes blob(data + 1, data + size);

    // Header fields as the blob states them; a filter that fits gets its CRC fixed.
    uint64_t ndim = 0, clusters = 0, fp = 0, kept = 0, cell_bits = 8;
    std::string shape = "[]";
    if (blob.size() >= kLayerHeader + 4) {
        ndim = blob[6];
        clusters = get_le(blob.data() + 8, 4);
        fp = get_le(blob.data() + 12, 8);
        const uint64_t filter_len = get_le(blob.data() + 20, 8);
        const uint64_t filter_at = kLayerHeader + 8 * ndim + 4 * clusters;
        if (ndim <= 32 && filter_at + 4 <= blob.size()) {
            shape = "[";
            for (uint64_t d = 0; d < ndim; ++d)
                shape += (d ? "," : "") + std::to_string(get_le(blob.data() + kLayerHeader + 8 * d, 8));
            shape += "]";
            if (filter_len <= blob.size() - filter_at - 4) {
                wl_fuzz::fix_crc(blob.data() + filter_at, size_t(filter_len));
                try {
                    wl::Filter f = wl::deserialize(blob.data() + filter_at, size_t(filter_len));
                    kept = f.num_keys;
                    cell_bits = f.cell_bits;
                } catch (const std::invalid_argument&) {
                }
            }
        }
        wl_fuzz::fix_crc(blob.data(), blob.size());
    }
    const std::string entry = std::string("{\"name\":\"w\",\"kind\":\"encoded\",\"dtype\":\"") + dtype +
                              "\",\"shape\":" + shape + ",\"offset\":0,\"length\":" + std::to_string(blob.size()) +
                              ",\"crc32\":" + std::to_string(wl::crc32(blob.data(), blob.size())) +
                              ",\"options\":{},\"kept\":" + std::to_string(kept) + ",\"clusters\":" +
                              std::to_string(clusters) + ",\"cell_bits\":" + std::to_string(cell_bits) +
                              ",\"false_positives\":" + std::to_string(fp) + "}";
    const Bytes file = container(blob, entry);

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
