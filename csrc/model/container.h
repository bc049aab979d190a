// The .wl model container, version 3 (docs/FORMAT.md, "The model container, version 3"): the
// one reader and writer of the format. The Python package (weightless/container.py, through
// the pybind11 module), the C API (csrc/c_api.cpp) and wl-decode all go through this file, so
// the checks exist once.
//
//   preamble "WLMF" u16 version u16 flags | payloads, back to back | directory | metadata | trailer
//
// The directory (names, dtypes, codecs, shapes, payload lengths and CRC-32s; offsets implied)
// and the optional metadata (UTF-8 JSON, written and read only by Python; this side checks its
// CRC and otherwise skips it) sit behind the payloads, so a writer streams payloads out as
// they are produced and writes the small directory last. A reader reads the fixed-size trailer
// first, then the directory, and checks every length against the file before it allocates.
//
// Errors: FormatError (malformed, truncated, corrupted) and UnsupportedError (a valid file of
// another version, or unknown flags), both std::invalid_argument; IoError for files that cannot
// be read or written. Messages are one line, without the file's name (callers add it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "weightless.h"

namespace wl::model {

constexpr uint16_t kVersion = 3;
constexpr size_t kPreambleSize = 8;   // magic, u16 version, u16 flags
constexpr size_t kTrailerSize = 16;   // u32 directory length, u32 metadata length, u32 CRC-32, magic
constexpr size_t kMaxNdim = 64;       // numpy's limit
constexpr uint32_t kMaxClusters = uint32_t(1) << 16;  // a bloomier codebook (value_bits <= 16)

// Codec ids of the directory (u8).
enum Codec : uint8_t { kRaw = 0, kBloomier = 1, kExact = 2, kFloat16 = 3 };
constexpr uint8_t kNumCodecs = 4;

// Dtype ids of the directory (u8), in this order: bool int8 int16 int32 int64 uint8 uint16
// uint32 uint64 float16 bfloat16 float32 float64 (numpy / ml_dtypes names).
constexpr uint8_t kNumDtypes = 13;
const char* dtype_name(uint8_t dtype);   // nullptr for an unknown id
size_t dtype_itemsize(uint8_t dtype);    // 0 for an unknown id
bool dtype_is_float(uint8_t dtype);      // float16, bfloat16, float32, float64
int dtype_id(const std::string& name);   // -1 for an unknown name
const char* codec_name(uint8_t codec);   // "raw", "bloomier", "exact", "float16"; nullptr if unknown
// A tensor name for an error message: 'quoted', with control characters, ' and \ escaped.
std::string quoted(const std::string& name);

struct FormatError : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};
struct UnsupportedError : std::invalid_argument {
    using std::invalid_argument::invalid_argument;
};
struct IoError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Entry {
    std::string name;             // valid UTF-8, unique in the file
    uint8_t dtype = 0;            // what the tensor decodes to
    uint8_t codec = kRaw;
    std::vector<uint64_t> shape;  // at most kMaxNdim dimensions; [] is a scalar
    uint64_t numel = 1;           // product of shape; below 2^62 (checked)
    uint64_t offset = 0;          // of the payload, from the start of the file
    uint64_t length = 0;          // of the payload
    uint32_t crc32 = 0;           // of the payload
};

// Random access to the bytes of a .wl file or image; read() is safe from several threads.
class Source {
public:
    virtual ~Source() = default;
    virtual uint64_t size() const = 0;
    // Reads exactly n bytes at offset (the caller keeps offset + n <= size()); IoError on failure.
    virtual void read(uint64_t offset, void* out, size_t n) const = 0;
    // The whole image when it is in memory (then payloads are not copied); else nullptr.
    virtual const uint8_t* data() const { return nullptr; }
};
std::shared_ptr<const Source> memory_source(std::vector<uint8_t> bytes);
std::shared_ptr<const Source> file_source(const std::string& path);  // IoError: missing, a directory, ...

// Parses and checks the trailer, the directory and the directory + metadata CRC-32 on
// construction; payloads are read (and their CRC-32 checked) on demand.
class Reader {
public:
    explicit Reader(std::shared_ptr<const Source> source);

    uint16_t version() const { return kVersion; }
    const std::vector<Entry>& entries() const { return entries_; }
    size_t find(const std::string& name) const;  // index, or entries().size() if there is none
    uint64_t metadata_length() const { return metadata_length_; }
    std::vector<uint8_t> metadata() const;       // the JSON bytes (empty if the writer omitted them)
    // Payload i, its CRC-32 checked (FormatError on mismatch).
    std::vector<uint8_t> payload(size_t i) const;
    // Bytes decode() writes: numel * itemsize (the caller checks it against its memory limit).
    uint64_t decoded_bytes(size_t i) const;
    // Decodes tensor i into out (C order, its dtype, the host's byte order = little-endian);
    // out_bytes >= decoded_bytes(i). Every codec; threads only matter for bloomier (0 = all
    // hardware threads; the result does not depend on it). FormatError for a bad payload.
    void decode(size_t i, void* out, size_t out_bytes, unsigned threads) const;

private:
    std::shared_ptr<const Source> source_;
    std::vector<Entry> entries_;
    uint64_t metadata_offset_ = 0, metadata_length_ = 0;
};

// Writes a version-3 file: payloads as they come, then the directory, metadata and trailer.
// Every entry is checked as a reader would check it (std::invalid_argument otherwise). The
// file is written where asked; atomic replacement (temp file + rename) is the caller's.
class Writer {
public:
    Writer();                                 // into memory (image())
    explicit Writer(const std::string& path);  // into a new file (IoError if it cannot be created)
    ~Writer();
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;

    void append(const std::string& name, uint8_t dtype, uint8_t codec, const std::vector<uint64_t>& shape,
                const uint8_t* payload, size_t length);
    // Writes the directory, the metadata (may be empty) and the trailer, and closes the file.
    void finish(const uint8_t* metadata, size_t length);
    uint64_t bytes_written() const { return written_; }
    const std::vector<uint8_t>& image() const { return image_; }

private:
    void emit(const void* data, size_t n);
    std::FILE* file_ = nullptr;
    std::string path_;
    std::vector<uint8_t> image_;
    std::vector<uint8_t> directory_;
    std::vector<std::string> names_;
    uint64_t count_ = 0, written_ = 0;
    bool finished_ = false;
};

// Exact payloads in a version-3 file are stored headless (docs/FORMAT.md, "Payloads"): the
// exact codec's payload (csrc/codecs/exact.h, "WLEX") without its magic, ndim, shape and CRC-32,
// which the directory already holds (the tensor's shape, and a CRC-32 of every payload). The
// rest (version, modes, ways, n, K, codebook, tables, streams) is kept byte for byte, so the
// reader rebuilds the codec's own payload and decodes it with the codec's own decoder.
//
// exact_headless: checks a full exact payload (exact_info) and that its shape is `shape`, and
// strips it; std::invalid_argument otherwise. exact_full: checks the headless framing against
// the tensor's shape (the version, modes and ways, n <= numel, K's limits, every length within
// the payload, nothing left over) before it allocates, then rebuilds the full payload (magic,
// ndim, the shape's varints, the CRC-32 recomputed); FormatError otherwise. The tables and
// streams are the codec's to check (exact_info, the decoders). For every full payload f of
// shape s, exact_full(exact_headless(f, s), s) == f.
std::vector<uint8_t> exact_headless(const uint8_t* full, size_t size, const std::vector<uint64_t>& shape);
std::vector<uint8_t> exact_full(const uint8_t* headless, size_t size, const std::vector<uint64_t>& shape);

// The bloomier payload (docs/FORMAT.md): varint clusters c, varint false_positives, c float32
// centroids, varint filter length F, F bytes of a WLBF filter, then optionally a headless exact
// payload of the same shape whose kept weights overwrite the filter's values (the outliers).
struct BloomierPayload {
    std::vector<float> codebook;
    uint64_t false_positives = 0;
    const uint8_t* filter = nullptr;  // into the payload
    size_t filter_size = 0;
    std::vector<uint8_t> outliers;    // the outliers' full exact payload (rebuilt); empty if there are none
};
// Splits and checks a payload against the tensor's shape: the framing, a finite codebook of at
// most 2^value_bits entries, the filter's own validation, kept + false positives <= numel, and
// the outliers' headless exact payload (exact_full, exact_info). FormatError otherwise.
BloomierPayload parse_bloomier(const uint8_t* data, size_t size, const std::vector<uint64_t>& shape);
// Builds a payload; `outliers` (outliers_size 0: none) is a full exact payload of `shape`,
// stored headless (exact_headless; std::invalid_argument if it is not one).
std::vector<uint8_t> bloomier_payload(const float* codebook, size_t clusters, uint64_t false_positives,
                                      const uint8_t* filter, size_t filter_size, const uint8_t* outliers,
                                      size_t outliers_size, const std::vector<uint64_t>& shape);

// float32 -> IEEE half / bfloat16 bits, round to nearest even (as numpy / ml_dtypes); NaN stays
// a quiet NaN. And half -> float32 (exact).
uint16_t float_to_half(float value);
uint16_t float_to_bfloat16(float value);
float half_to_float(uint16_t bits);

}  // namespace wl::model
