// Fuzzes the .wl version 3 reader (csrc/model/container.h) through the C API (weightless_c.h):
// wl_open_buffer_ex, every accessor, and wl_decode_tensor of every tensor, every codec.
//
// Each input is opened as it is and again with its checksums fixed (each payload's in the
// directory, and the directory + metadata's in the trailer), so mutations of the directory and
// of the payloads get past the CRC-32s to the checks behind them. A tensor whose output fits the harness's
// budget is decoded into a buffer with guard bytes on both sides (and decoded again under the
// scalar reference for byte-identical output); a larger one must be refused for a small buffer
// without allocating. Statuses must be documented codes with a non-empty one-line message.
#include <cstring>
#include <string>

#include "fuzz_common.h"
#include "weightless_c.h"

namespace {

using wl_fuzz::Bytes;

constexpr size_t kBudget = size_t(1) << 18;  // bytes of decoded output per tensor (keeps runs fast)
constexpr size_t kGuard = 16;

void check_message(int status, const char* err) {
    WL_FUZZ_REQUIRE(status >= WL_OK && status <= WL_ERR_INTERNAL);
    WL_FUZZ_REQUIRE(status != WL_ERR_INTERNAL && status != WL_ERR_MEMORY);
    const size_t len = std::strlen(err);
    WL_FUZZ_REQUIRE((status == WL_OK) == (len == 0));
    WL_FUZZ_REQUIRE(std::memchr(err, '\n', len) == nullptr);
}

void decode_all(const wl_model* m, unsigned threads) {
    char err[256];
    const size_t count = wl_tensor_count(m);
    for (size_t i = 0; i < count; ++i) {
        const char* name = wl_tensor_name(m, i);
        WL_FUZZ_REQUIRE(name != nullptr && wl_tensor_dtype(m, i) != nullptr);
        size_t found = SIZE_MAX;
        WL_FUZZ_REQUIRE(wl_find_tensor(m, name, &found) == WL_OK && found == i);
        const size_t ndim = wl_tensor_ndim(m, i);
        const uint64_t* shape = wl_tensor_shape(m, i);
        WL_FUZZ_REQUIRE((ndim == 0) == (shape == nullptr));
        uint64_t dims = 0;
        for (size_t d = 0; d < ndim; ++d) dims += shape[d] != 0;  // reads every dimension
        (void)dims;
        const size_t need = wl_tensor_nbytes(m, i);
        const size_t item = wl_tensor_itemsize(m, i);
        WL_FUZZ_REQUIRE(item == 1 || item == 2 || item == 4 || item == 8);
        if (need > kBudget) {
            // Too large to decode here: a small buffer must be refused before any work.
            unsigned char small[8];
            int status = wl_decode_tensor(m, i, small, sizeof small, threads, err, sizeof err);
            check_message(status, err);
            WL_FUZZ_REQUIRE(status == WL_ERR_ARGUMENT || status == WL_ERR_UNSUPPORTED);
            continue;
        }
        Bytes buf(need + 2 * kGuard, 0xA5);
        int status = wl_decode_tensor(m, i, buf.data() + kGuard, need, threads, err, sizeof err);
        check_message(status, err);
        for (size_t g = 0; g < kGuard; ++g) WL_FUZZ_REQUIRE(buf[g] == 0xA5 && buf[kGuard + need + g] == 0xA5);
        const int kind = wl_tensor_kind(m, i);
        WL_FUZZ_REQUIRE(kind >= WL_KIND_RAW && kind <= WL_KIND_FLOAT16);
        if (status != WL_OK || kind != WL_KIND_ENCODED) continue;
        Bytes ref(need + 1);
        wl_fuzz::set_isa("scalar");
        status = wl_decode_tensor(m, i, ref.data() + 1, need, 1, err, sizeof err);  // unaligned on purpose
        wl_fuzz::set_isa(nullptr);
        WL_FUZZ_REQUIRE(status == WL_OK);
        WL_FUZZ_REQUIRE(need == 0 || std::memcmp(ref.data() + 1, buf.data() + kGuard, need) == 0);
    }
    // Out-of-range indices are refused.
    WL_FUZZ_REQUIRE(wl_tensor_name(m, count) == nullptr && wl_tensor_kind(m, count) == -1);
    WL_FUZZ_REQUIRE(wl_decode_tensor(m, count, nullptr, 0, 1, err, sizeof err) == WL_ERR_ARGUMENT);
}

void open_and_decode(const uint8_t* data, size_t size, unsigned threads) {
    char err[256];
    wl_model* m = nullptr;
    int status = wl_open_buffer_ex(data, size, &m, err, sizeof err);
    check_message(status, err);
    WL_FUZZ_REQUIRE((status == WL_OK) == (m != nullptr));
    if (!m) return;
    decode_all(m, threads);
    wl_close(m);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const unsigned threads = size % 7 == 0 ? 2 : 1;
    open_and_decode(data, size, threads);
    if (size >= 24) {
        Bytes fixed(data, data + size);
        wl_fuzz::fix_container_crcs(fixed);
        open_and_decode(fixed.data(), fixed.size(), threads);
    }
    return 0;
}
