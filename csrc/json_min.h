// A minimal, strict JSON reader (RFC 8259) for the .wl container header (docs/FORMAT.md).
//
// Accepts exactly: objects, arrays, strings (escapes \" \\ \/ \b \f \n \r \t \uXXXX with
// surrogate pairs), numbers, true, false, null, and JSON whitespace. The input must be valid
// UTF-8. Rejects: duplicate object keys, NaN/Infinity, leading zeros, lone surrogates, raw control
// characters in strings, trailing garbage, nesting deeper than max_depth, more than max_nodes
// values. Never throws; never reads outside [data, data + size).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace wl {
namespace json {

enum class Type { Null, Bool, Number, String, Array, Object };

struct Value {
    Type type = Type::Null;
    bool boolean = false;
    // Numbers: is_integer when the literal has no fraction or exponent. An integer that fits in
    // 64 bits sets is_u64 (value in u64) or is_i64 (negative, value in i64); number is always set.
    bool is_integer = false, is_u64 = false, is_i64 = false;
    uint64_t u64 = 0;
    int64_t i64 = 0;
    double number = 0.0;  // from strtod: fractions assume the C locale's decimal point (integers are exact)
    std::string string;                                   // String (UTF-8)
    std::vector<Value> items;                             // Array
    std::vector<std::pair<std::string, Value>> members;   // Object, in input order, keys unique

    // The member named key of an object, or nullptr.
    const Value* get(const std::string& key) const;
};

// A parsed value takes ~112 bytes (more while vectors grow) for as little as 2 bytes of input, so
// max_nodes, not max_size, bounds the memory a hostile header can make the parser use: 2^20
// values (~60,000 tensor entries) cost at most ~250 MB.
struct Limits {
    size_t max_depth = 64;
    size_t max_nodes = size_t(1) << 20;
    size_t max_size = size_t(1) << 28;  // bytes of input
};

// Parses one JSON value surrounded by optional whitespace. Returns false and sets *error
// ("... at byte N") on any error.
bool parse(const char* data, size_t size, Value* out, std::string* error, const Limits& limits = Limits());

// True if [data, data + size) is valid UTF-8 (no overlongs, surrogates or code points > U+10FFFF).
bool valid_utf8(const unsigned char* data, size_t size);

}  // namespace json
}  // namespace wl
