// Exact codec: a pruned, clustered tensor (kept positions -> cluster codes, plus the codebook)
// stored losslessly in close to its information content, log2 C(N, n) + n * H0(codes) bits.
//
// The kept positions are coded as gaps (zeros before each kept weight, in row-major order),
// each kept weight's code right after its gap. Gaps of 16 or more are a bucket symbol (exponent
// and two mantissa bits) plus raw low bits. Gaps (with their raw bits) and codes are two
// static-model rANS streams (64-bit state, 32-bit words, 1, 2 or 4 interleaved states each), so
// that a decoder's dependency chains overlap. Each symbol is coded with a frequency table
// chosen by a small context:
//   gap tables:  one, or three chosen by the previous gap's symbol (0, 1..3, 4 and up);
//   code tables: mode 0 one; modes 1-3 use the code of the previous kept weight of the same row:
//                mode 1 only when it is the left neighbour (K + 1 tables), mode 2 wherever it is
//                (K + 1), mode 3 its code when it is the left neighbour and else only which half
//                of the codebook it is in (K + 3).
// Each table has its own scale 2^b (b <= 12) and is stored in a few bits (Exp-Golomb codes);
// the encoder chooses b per table, and tries every mode, keeping the smallest payload. The byte
// format is specified in docs/FORMAT.md ("Exact codec payload"); it does not depend on the
// host's endianness or word size. Measurements: docs/EXACT.md.
//
// Plain functions over byte buffers, no Python: the C API and the pybind11 module both call
// them. Every malformed, truncated or corrupted input throws std::invalid_argument; the decoder
// never reads outside its input and allocates, besides its bookkeeping, at most 262 tables of
// at most 2^12 slots (the output buffer is the caller's, sized from exact_info()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace wl {

constexpr uint32_t kExactVersion = 1;
constexpr uint32_t kExactMaxNdim = 32;
constexpr uint32_t kExactMaxClusters = 4096;      // codes < 4096 (the tables' 12-bit scale)
constexpr uint32_t kExactMaxContextClusters = 256;  // code contexts (modes 1-3) need K <= 256

constexpr uint64_t kExactTwoWaysFrom = 1024;
constexpr uint64_t kExactFourWaysFrom = uint64_t(1) << 15;

struct ExactOptions {
    // -1: try every mode and keep the smallest payload; otherwise force that mode.
    int gap_mode = -1;   // 0 or 1
    int code_mode = -1;  // 0..3
    // rANS states per stream: 1, 2 or 4 (faster decoding, 16 bytes more per extra state);
    // 0: by the number of kept weights (kExactTwoWaysFrom, kExactFourWaysFrom).
    int ways = 0;
};

// What a payload's header declares; read (and the whole payload checked) by exact_info().
struct ExactInfo {
    std::vector<uint64_t> shape;  // row-major; the 2-D view is (shape[0], size / shape[0])
    uint64_t size = 0;            // product of shape (1 for a 0-D tensor)
    uint64_t kept = 0;            // n, the number of kept (nonzero-coded) positions
    std::vector<float> codebook;  // K centroids; kept weight i decodes as codebook[code_i]
    uint32_t gap_mode = 0;
    uint32_t code_mode = 0;
};

// Encodes kept positions (strictly increasing, < product of shape) with their codes (< K =
// codebook_size). Throws std::invalid_argument on inputs that break those rules.
std::vector<uint8_t> exact_encode(const uint64_t* positions, const uint32_t* codes, size_t n,
                                  const uint64_t* shape, size_t ndim, const float* codebook,
                                  size_t codebook_size, const ExactOptions& options = {});

// Parses and checks the header, tables and checksum (not the symbol streams).
ExactInfo exact_info(const uint8_t* data, size_t size);

// Decodes into out[0, info.size): codebook[code] at kept positions, 0.0f elsewhere.
// out_size must equal info.size.
void exact_decode_weights(const uint8_t* data, size_t size, float* out, uint64_t out_size);

// Decodes the kept positions and codes (each array of info.kept entries).
void exact_decode_sparse(const uint8_t* data, size_t size, uint64_t* positions, uint32_t* codes,
                         uint64_t kept);

}  // namespace wl
