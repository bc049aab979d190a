// The chunked layout's construction (csrc/chunked.cpp). Internal header.
#pragma once

#include <cstddef>
#include <cstdint>

#include "weightless.h"

namespace wl {
namespace detail {

// Builds a version-3 filter; options are checked and values fit value_bits (build_filter).
Filter build_chunked(const uint64_t* keys, const uint32_t* values, size_t n, const BuildOptions& options);

}  // namespace detail
}  // namespace wl
