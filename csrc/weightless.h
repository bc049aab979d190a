// weightless: a static retrieval structure (Bloomier filter) for sparse weight maps.
//
// A filter stores a map key -> value for n distinct 64-bit keys, with r-bit values in a table
// of t-bit cells (r <= t). Querying a key XORs a hashed mask with `arity` table cells:
//
//     word = mask(key) ^ X[h0(key)] ^ X[h1(key)] ^ X[h2(key)] [^ X[h3(key)]]
//
// A stored key reads back its value with the top t - r bits zero. Any other key reads an
// effectively random t-bit word and is reported absent unless those top bits happen to be zero
// (a false positive, probability 2^(r - t)).
//
// Two layouts. The default (format version 3, "chunked") cuts the sorted keys into chunks of
// about chunk_keys consecutive keys (default 1024); a chunk covers a contiguous key range and has
// its own table of about 1.03 cells per key, and each key's `arity` cells are uniform over its
// chunk's table. The chunk's linear system over GF(2) is solved by lazy Gaussian elimination
// (Genuzio, Ottaviano and Vigna, SEA 2016), which succeeds at ~1.03 cells per key with 4 cells
// per key where peeling needs ~1.23 (docs/RETRIEVAL.md has the measurements). A decoder walking
// positions in order reads one chunk's table (a few kB, in L1) at a time.
//
// The older layout (format version 2, "fuse", still built on request and read) splits the key
// space into pieces: contiguous key ranges holding about the same number of
// keys, each with its own table and hash seed, built independently. Inside a piece the table is
// a spatially coupled "binary fuse" layout (Graf & Lemire 2022): the key's cells lie in `arity`
// consecutive segments, which lets peeling succeed at ~1.125 cells per key. The first segment
// is not hashed at random over the whole table, as in a binary fuse filter, but within a slice
// that follows the key's rank: the piece's key range is cut into blocks, and block b's keys
// start in the b-th slice of the table, sized by the block's key count. So a decoder that walks
// the positions of a layer in order walks the table forward with a working set of a few
// segments, in cache however large the piece (docs/DECODE.md has the measurements).
//
// The serialized form is specified bit-exactly in docs/FORMAT.md.
//
// Errors: bad arguments and malformed bytes throw std::invalid_argument (ValueError in Python);
// a construction that fails every bounded retry throws std::runtime_error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace wl {

constexpr uint32_t kFormatVersion = 3;      // the chunked layout, written by default
constexpr uint32_t kFuseFormatVersion = 2;  // the fuse layout; version 1 files (no blocks) are still read
constexpr uint32_t kMaxValueBits = 16;
constexpr uint32_t kMaxCellBits = 32;
constexpr uint32_t kMaxSegmentLengthLog2 = 16;  // offsets inside a segment come from 16-bit hash fields

struct BuildOptions {
    uint32_t value_bits = 4;   // r, 1..16
    uint32_t cell_bits = 8;    // t, r..32
    uint32_t arity = 4;        // cells per key: 3 or 4
    uint32_t format_version = kFormatVersion;  // 3: chunked layout; 2: fuse layout (pieces, blocks)
    uint64_t chunk_keys = 0;   // chunked layout: target keys per chunk, 0 = kDefaultChunkKeys
    uint64_t seed = 0;         // the whole build is a deterministic function of keys, values, options
    uint64_t piece_keys = 0;   // target keys per piece; 0 = the measured default (kDefaultPieceKeys)
    uint64_t block_keys = 0;   // target keys per block; 0 = the measured default (kDefaultBlockKeys)
    unsigned threads = 1;      // pieces are built concurrently; output is identical for any count
};

// Pieces bound the work of one construction attempt and let pieces build on separate threads;
// blocks keep the decoder's working set small. Both measured in docs/DECODE.md.
constexpr uint64_t kDefaultChunkKeys = 1024;
constexpr uint64_t kMaxChunkKeys = 32768;    // a chunk's table stays below 2^16 cells
constexpr uint32_t kMaxChunkAttempts = 16;   // seeds tried per chunk (the attempt is stored in 4 bits at most)
constexpr uint64_t kDefaultPieceKeys = uint64_t(1) << 20;
constexpr uint64_t kDefaultBlockKeys = uint64_t(1) << 13;

struct Piece {
    uint64_t first_key = 0;          // the piece holds keys in [first_key, next piece's first_key)
    uint64_t hash_seed = 0;          // seed of this piece's hash functions
    uint32_t num_keys = 0;
    uint32_t segment_count = 0;      // S: segments in which a key's first cell may lie
    uint32_t segment_length_log2 = 0;// L = 2^this; the table has (S + arity - 1) * L cells
    uint64_t cell_offset = 0;        // index of the piece's first cell in Filter::cells
    // Key K lies in block min((K - first_key) >> block_log2, B - 1); block b's keys have their
    // first cell in [block_starts[b], block_starts[b + 1]). B + 1 entries: 0, ..., S * L, with
    // block_starts[B - 1] < S * L. Empty for a piece without keys.
    uint32_t block_log2 = 63;
    std::vector<uint32_t> block_starts;

    uint32_t segment_length() const { return uint32_t(1) << segment_length_log2; }
    uint32_t num_blocks() const { return block_starts.empty() ? 0 : uint32_t(block_starts.size() - 1); }
};

// A chunk of the chunked layout: keys in [first_key, next chunk's first_key), the last chunk to
// 2^64 - 1. Only first_key and attempt are stored; the rest follows from the header.
struct Chunk {
    uint64_t first_key = 0;
    uint64_t hash_seed = 0;      // chunk_hash_seed(seed, index, attempt)
    uint64_t cell_offset = 0;    // index of the chunk's first cell in Filter::cells
    uint32_t num_keys = 0;
    uint32_t num_cells = 0;      // chunk_num_cells(num_keys, arity, attempt), below 2^16
    uint32_t attempt = 0;        // the seed that solved the chunk, < kMaxChunkAttempts
};

// Cells of a chunk of k keys built at `attempt` (docs/FORMAT.md, "Chunk sizes").
uint32_t chunk_num_cells(uint32_t k, uint32_t arity, uint32_t attempt);

struct Filter {
    uint32_t version = kFormatVersion;  // the layout: 3 chunked (chunks), 1 or 2 fuse (pieces)
    uint32_t value_bits = 0;
    uint32_t cell_bits = 0;
    uint32_t arity = 3;
    uint64_t seed = 0;
    uint64_t num_keys = 0;
    uint32_t chunk_keys = 0;         // version 3: target keys per chunk
    std::vector<Chunk> chunks;       // version 3: ceil(num_keys / chunk_keys) chunks, sorted by first_key
    std::vector<Piece> pieces;       // versions 1, 2: at least one; sorted by first_key, pieces[0].first_key == 0
    std::vector<uint32_t> cells;     // all pieces' tables, one t-bit cell per element
};

// Number of cells of a piece's table.
uint64_t piece_num_cells(const Piece& piece, uint32_t arity);

// Builds a filter. keys must be distinct; values[i] < 2^value_bits.
Filter build_filter(const uint64_t* keys, const uint32_t* values, size_t n, const BuildOptions& options);

// The raw t-bit word of each key.
void query_raw(const Filter& filter, const uint64_t* keys, size_t n, uint32_t* words);

// The value of each key, or -1 where the key is detected as absent.
void query_values(const Filter& filter, const uint64_t* keys, size_t n, int32_t* values);

// Values (or -1) of every key in [begin, end), written to out[0 .. end - begin). Equivalent to
// query_values on the keys begin, begin + 1, ...
void decode_range(const Filter& filter, uint64_t begin, uint64_t end, int32_t* out);

// Decodes the weights of a layer at every position in [begin, end): codebook[v] where the
// position reads a value v < codebook_size, 0 elsewhere (absent, or a false positive that names
// no cluster). Splits the range over `threads` threads; the output does not depend on the count.
void decode_weights(const Filter& filter, uint64_t begin, uint64_t end, const float* codebook,
                    uint32_t codebook_size, float* out, unsigned threads = 1);

// Number of positions in [begin, end) that decode to a cluster (read a value < codebook_size):
// the kept weights plus the false positives, counted without materializing the layer.
uint64_t count_decoded(const Filter& filter, uint64_t begin, uint64_t end, uint32_t codebook_size,
                       unsigned threads = 1);

// The decoders above (decode_range, decode_weights, count_decoded) have a scalar reference
// implementation and SIMD kernels (AVX2 and AVX-512F+BW on x86-64, chosen at run time; NEON on
// AArch64). Every kernel is byte-identical to the scalar reference; they differ in speed only.
//
// set_isa (below) or the environment variable WEIGHTLESS_ISA = scalar | avx2 | avx512 | neon
// forces one. The variable is read once, at the first decode call (or active_isa); an unknown
// name, or one this build or CPU cannot run, makes every decode call (and active_isa) throw
// std::invalid_argument until set_isa chooses.

// The instruction sets this build can run on this CPU, "scalar" first, the default last.
std::vector<std::string> supported_isas();

// The instruction set the decoders use now: the last set_isa, else WEIGHTLESS_ISA if set and not
// empty, else the last of supported_isas().
const char* active_isa();

// Makes the decoders use the named instruction set (case-insensitive) from now on, in every
// thread; null or "" means the fastest supported one. Returns the name now active. Throws
// std::invalid_argument (and changes nothing) for a name this build or CPU cannot run.
const char* set_isa(const char* name);

// Serialized size in bytes, and the serialized form itself (docs/FORMAT.md).
size_t serialized_size(const Filter& filter);
std::vector<uint8_t> serialize(const Filter& filter);

// Parses and validates a serialized filter; never reads outside [data, data + size) and checks
// every size against the buffer before allocating.
Filter deserialize(const uint8_t* data, size_t size);

// CRC-32 (IEEE 802.3, reflected, as zlib.crc32), used by the format's checksum.
uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc = 0);

}  // namespace wl
