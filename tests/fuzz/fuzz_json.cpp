// Fuzzes the strict JSON reader of the C API (csrc/json_min.h) with its default limits: it must
// return true or false, never crash, hang or read outside the input; an accepted document's
// values are walked to make sure the tree is consistent.
#include <string>

#include "fuzz_common.h"
#include "json_min.h"

namespace {

size_t walk(const wl::json::Value& v, size_t depth) {
    WL_FUZZ_REQUIRE(depth <= 65);
    size_t n = 1;
    switch (v.type) {
        case wl::json::Type::Array:
            for (const auto& item : v.items) n += walk(item, depth + 1);
            break;
        case wl::json::Type::Object:
            for (const auto& m : v.members) {
                WL_FUZZ_REQUIRE(v.get(m.first) == &m.second);  // keys are unique
                n += walk(m.second, depth + 1);
            }
            break;
        case wl::json::Type::Number:
            WL_FUZZ_REQUIRE(!(v.is_u64 && v.is_i64));
            WL_FUZZ_REQUIRE(!v.is_u64 || v.is_integer);
            break;
        case wl::json::Type::String:
            WL_FUZZ_REQUIRE(wl::json::valid_utf8(reinterpret_cast<const unsigned char*>(v.string.data()),
                                                 v.string.size()));
            break;
        default: break;
    }
    return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    wl::json::Value v;
    std::string err;
    if (wl::json::parse(reinterpret_cast<const char*>(data), size, &v, &err)) {
        WL_FUZZ_REQUIRE(walk(v, 0) <= size);
    } else {
        WL_FUZZ_REQUIRE(!err.empty());
    }
    return 0;
}
