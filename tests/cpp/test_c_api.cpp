// Tests of the C API (csrc/weightless_c.h) over the .wl v3 reader (csrc/model/container.h).
//
//   wl_test_c_api DATA_DIR                               golden files + malformed inputs
//   wl_test_c_api --check-npy FILE.npy MODEL.wl TENSOR   a .npy written by wl-decode
//
// DATA_DIR holds NAME.wl and NAME.expected.bin written by tests/data/make_golden.py with the
// Python package: every tensor must decode to exactly those bytes (also on AArch64 under qemu).
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <cmath>

#include "codecs/exact.h"
#include "model/container.h"
#include "weightless.h"
#include "check.h"
#include "weightless_c.h"

namespace {

using wl_test::check;
using wl_test::failed;
using wl_test::passed;

// The condition is evaluated before the message, which may show state the condition set.
#define CHECK(cond, ...)        \
    do {                        \
        bool ok_ = (cond);      \
        check(ok_, __VA_ARGS__); \
    } while (0)

using Bytes = std::vector<uint8_t>;

bool read_all(const std::string& path, Bytes* out) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return false;
    out->assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    return true;
}

void put_le(uint8_t* p, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; ++i) p[i] = uint8_t(v >> (8 * i));
}

int open_buf(const Bytes& b, wl_model** m, std::string* msg = nullptr) {
    char err[512];
    int status = wl_open_buffer_ex(b.data(), b.size(), m, err, sizeof err);
    if (msg) *msg = err;
    return status;
}

int open_status_file(const std::string& path, std::string* msg) {
    char err[512];
    wl_model* m = nullptr;
    int status = wl_open_file_ex(path.c_str(), &m, err, sizeof err);
    *msg = err;
    wl_close(m);
    return status;
}

// ---------------------------------------------------------------- golden files

void test_golden(const std::string& dir, const std::string& name) {
    const std::string path = dir + "/" + name + ".wl";
    Bytes file, expected;
    CHECK(read_all(path, &file), "read " + path);
    CHECK(read_all(dir + "/" + name + ".expected.bin", &expected), "read " + name + ".expected.bin");
    char err[512];
    wl_model* from_file = wl_open_file(path.c_str(), err, sizeof err);
    CHECK(from_file != nullptr, name + ": wl_open_file: " + err);
    wl_model* from_buffer = wl_open_buffer(file.data(), file.size(), err, sizeof err);
    CHECK(from_buffer != nullptr, name + ": wl_open_buffer: " + err);
    if (!from_file || !from_buffer) return;
    file.assign(file.size(), 0);  // the model owns a copy
    CHECK(wl_tensor_count(from_file) > 0 && wl_tensor_count(from_file) == wl_tensor_count(from_buffer),
          name + ": tensor count");
    size_t at = 0;
    for (size_t i = 0; i < wl_tensor_count(from_file); ++i) {
        const std::string tname = wl_tensor_name(from_file, i);
        const std::string where = name + "/" + tname;
        size_t nbytes = wl_tensor_nbytes(from_file, i);
        CHECK(nbytes == wl_tensor_numel(from_file, i) * wl_tensor_itemsize(from_file, i), where + ": nbytes");
        CHECK(at + nbytes <= expected.size(), where + ": expected data too short");
        if (at + nbytes > expected.size()) return;
        size_t found = SIZE_MAX;
        CHECK(wl_find_tensor(from_file, tname.c_str(), &found) == WL_OK && found == i, where + ": wl_find_tensor");
        for (wl_model* m : {from_file, from_buffer}) {
            for (unsigned threads : {1u, 3u, 0u}) {
                // One spare byte at the front: also decode into a misaligned buffer.
                for (size_t shift : {size_t(0), size_t(1)}) {
                    Bytes out(nbytes + shift + 8, 0xAB);
                    int status = wl_decode_tensor(m, i, out.data() + shift, nbytes + 8, threads, err, sizeof err);
                    CHECK(status == WL_OK, where + ": decode: " + err);
                    CHECK(std::memcmp(out.data() + shift, expected.data() + at, nbytes) == 0,
                          where + ": decoded bytes differ (threads " + std::to_string(threads) + ", shift " +
                              std::to_string(shift) + ")");
                    CHECK(out[shift + nbytes] == 0xAB, where + ": wrote past the tensor");
                }
            }
        }
        if (nbytes > 0) {
            Bytes small(nbytes - 1);
            CHECK(wl_decode_tensor(from_file, i, small.data(), small.size(), 1, err, sizeof err) == WL_ERR_ARGUMENT,
                  where + ": a buffer one byte short is refused");
        }
        at += nbytes;
    }
    CHECK(at == expected.size(), name + ": expected data has trailing bytes");
    CHECK(wl_decode_tensor(from_file, wl_tensor_count(from_file), nullptr, 0, 1, err, sizeof err) == WL_ERR_ARGUMENT,
          name + ": index out of range");
    CHECK(wl_tensor_name(from_file, 999) == nullptr && wl_tensor_kind(from_file, 999) == -1, name + ": bad index");
    wl_close(from_file);
    wl_close(from_buffer);
}

void test_basic_metadata(const std::string& dir) {
    char err[256];
    wl_model* m = wl_open_file((dir + "/basic.wl").c_str(), err, sizeof err);
    CHECK(m != nullptr, "basic.wl opens");
    if (!m) return;
    size_t i;
    CHECK(wl_find_tensor(m, "fc1.weight", &i) == WL_OK, "fc1.weight present");
    CHECK(wl_tensor_kind(m, i) == WL_KIND_ENCODED && std::strcmp(wl_tensor_dtype(m, i), "float32") == 0 &&
              wl_tensor_ndim(m, i) == 2 && wl_tensor_shape(m, i)[0] == 64 && wl_tensor_shape(m, i)[1] == 48,
          "fc1.weight: encoded float32 [64, 48]");
    CHECK(wl_find_tensor(m, "scalar", &i) == WL_OK && wl_tensor_ndim(m, i) == 0 && wl_tensor_shape(m, i) == nullptr &&
              wl_tensor_numel(m, i) == 1 && std::strcmp(wl_tensor_dtype(m, i), "float64") == 0,
          "scalar: float64 []");
    CHECK(wl_find_tensor(m, "empty", &i) == WL_OK && wl_tensor_numel(m, i) == 0 && wl_tensor_nbytes(m, i) == 0,
          "empty: no elements");
    char buf[1];
    CHECK(wl_decode_tensor(m, i, nullptr, 0, 1, err, sizeof err) == WL_OK, "empty tensor decodes into NULL");
    (void)buf;
    // A name with JSON escapes and non-ASCII characters (raw UTF-8 and a surrogate pair).
    const char* odd = "na\xC3\xAFve \"q\" \\/\t\xE2\x98\x83\xF0\x9F\x98\x80";
    CHECK(wl_find_tensor(m, odd, &i) == WL_OK && wl_tensor_kind(m, i) == WL_KIND_RAW, "escaped name found");
    CHECK(wl_find_tensor(m, "nope", &i) == WL_ERR_ARGUMENT, "unknown name");
    const char* kinds[] = {"bool", "int8", "uint16", "float16", "int64", "uint64"};
    for (const char* dtype : kinds) {
        bool seen = false;
        for (size_t k = 0; k < wl_tensor_count(m); ++k) seen = seen || std::strcmp(wl_tensor_dtype(m, k), dtype) == 0;
        CHECK(seen, std::string("basic.wl has a ") + dtype + " tensor");
    }
    wl_close(m);
    wl_close(nullptr);
}

// ---------------------------------------------------------------- malformed files

void test_malformed_golden(const std::string& dir) {
    Bytes good;
    read_all(dir + "/basic.wl", &good);
    wl_model* m = nullptr;
    std::string msg;
    CHECK(open_buf(good, &m) == WL_OK, "basic.wl opens from a buffer");
    wl_close(m);

    // Truncations anywhere: the trailer's magic, its lengths or the directory CRC catch each.
    for (size_t len : {size_t(0), size_t(1), size_t(3), size_t(4), size_t(7), size_t(8), size_t(23), size_t(40),
                       size_t(200), good.size() / 2, good.size() - 5, good.size() - 4, good.size() - 1}) {
        Bytes cut(good.begin(), good.begin() + len);
        int status = open_buf(cut, &m, &msg);
        CHECK(status == WL_ERR_FORMAT && m == nullptr && !msg.empty(),
              "truncated to " + std::to_string(len) + " bytes: " + msg);
    }
    Bytes longer = good;
    longer.push_back(0);
    CHECK(open_buf(longer, &m) == WL_ERR_FORMAT, "a trailing byte");

    // One flipped bit in the directory, metadata or trailer: their CRC-32 (or a length) catches it.
    for (size_t back : {size_t(1), size_t(5), size_t(9), size_t(13), size_t(20), size_t(60), size_t(300)}) {
        Bytes bad = good;
        bad[bad.size() - back] ^= 0x10;
        CHECK(open_buf(bad, &m, &msg) == WL_ERR_FORMAT && m == nullptr,
              "bit flip " + std::to_string(back) + " bytes from the end: " + msg);
    }
    Bytes magic = good;
    magic[0] = 'X';
    CHECK(open_buf(magic, &m, &msg) == WL_ERR_FORMAT && msg.find("bad magic") != std::string::npos, "wrong magic");
    for (size_t at : {size_t(4), size_t(5), size_t(6), size_t(7)}) {  // version, then flags
        Bytes b = good;
        b[at] ^= 0x04;
        CHECK(open_buf(b, &m, &msg) == WL_ERR_UNSUPPORTED, "preamble byte " + std::to_string(at) + ": " + msg);
    }

    // A version 1 file: unsupported, with a message saying what to do.
    CHECK(open_status_file(dir + "/v1_basic.wl", &msg) == WL_ERR_UNSUPPORTED && msg.find("version 1") != std::string::npos,
          "v1_basic.wl is refused as unsupported: " + msg);

    // A corrupted payload: opens (the directory is intact), and that tensor alone fails to decode.
    Bytes blob = good;
    blob[8 + 100] ^= 0x01;  // inside the first payload, fc1.weight's
    CHECK(open_buf(blob, &m, &msg) == WL_OK, "a corrupted payload opens: " + msg);
    if (m) {
        char err[512];
        size_t fc1 = 0, bias = 0;
        wl_find_tensor(m, "fc1.weight", &fc1);
        Bytes out(wl_tensor_nbytes(m, fc1));
        int status = wl_decode_tensor(m, fc1, out.data(), out.size(), 1, err, sizeof err);
        CHECK(status == WL_ERR_FORMAT && std::strstr(err, "checksum") != nullptr,
              std::string("corrupted payload is refused: ") + err);
        wl_find_tensor(m, "fc1.bias", &bias);
        Bytes out2(wl_tensor_nbytes(m, bias));
        CHECK(wl_decode_tensor(m, bias, out2.data(), out2.size(), 1, err, sizeof err) == WL_OK, "other tensors decode");
        wl_close(m);
    }

    // Files that cannot be opened.
    char err[512];
    int status = wl_open_file_ex(dir.c_str(), &m, err, sizeof err);
    CHECK(status == WL_ERR_IO && m == nullptr && std::strstr(err, "directory") != nullptr,
          std::string("a directory: ") + err);
    status = wl_open_file_ex((dir + "/no_such_file.wl").c_str(), &m, err, sizeof err);
    CHECK(status == WL_ERR_IO && m == nullptr, std::string("a missing file: ") + err);
    status = wl_open_file_ex((dir + "/make_golden.py").c_str(), &m, err, sizeof err);
    CHECK(status == WL_ERR_FORMAT && m == nullptr, std::string("not a .wl file: ") + err);
    CHECK(wl_open_file(nullptr, err, sizeof err) == nullptr, "NULL path");
    CHECK(wl_open_buffer(nullptr, 0, nullptr, 0) == nullptr, "empty buffer, no error buffer");
    CHECK(wl_open_buffer_ex(good.data(), good.size(), nullptr, err, sizeof err) == WL_ERR_ARGUMENT, "NULL out");
    char tiny[8];
    wl_open_file((dir + "/no_such_file.wl").c_str(), tiny, sizeof tiny);
    CHECK(std::strlen(tiny) == 7, "messages are truncated to errlen");
}

// ---------------------------------------------------------------- hand-built containers

void put_varint(Bytes& out, uint64_t v) {
    while (v >= 0x80) out.push_back(uint8_t(v | 0x80)), v >>= 7;
    out.push_back(uint8_t(v));
}

// One directory record as FORMAT.md lays it out, whatever its fields say.
struct Record {
    std::string name;
    uint8_t dtype, codec;
    std::vector<uint64_t> shape;
    Bytes payload;
    int64_t length = -1;  // the payload's unless set
    int64_t crc = -1;     // the payload's unless set
};

Bytes build(const std::vector<Record>& records, const std::string& metadata = "") {
    Bytes out = {'W', 'L', 'M', 'F', 3, 0, 0, 0}, dir;
    put_varint(dir, records.size());
    for (const Record& r : records) {
        out.insert(out.end(), r.payload.begin(), r.payload.end());
        put_varint(dir, r.name.size());
        dir.insert(dir.end(), r.name.begin(), r.name.end());
        dir.push_back(r.dtype), dir.push_back(r.codec), dir.push_back(uint8_t(r.shape.size()));
        for (uint64_t d : r.shape) put_varint(dir, d);
        put_varint(dir, r.length >= 0 ? uint64_t(r.length) : r.payload.size());
        Bytes crc(4);
        put_le(crc.data(), r.crc >= 0 ? uint64_t(r.crc) : wl::crc32(r.payload.data(), r.payload.size()), 4);
        dir.insert(dir.end(), crc.begin(), crc.end());
    }
    Bytes meta(metadata.begin(), metadata.end()), both = dir;
    both.insert(both.end(), meta.begin(), meta.end());
    out.insert(out.end(), both.begin(), both.end());
    Bytes trailer(16);
    put_le(trailer.data(), dir.size(), 4);
    put_le(trailer.data() + 4, meta.size(), 4);
    put_le(trailer.data() + 8, wl::crc32(both.data(), both.size()), 4);
    std::memcpy(trailer.data() + 12, "WLMF", 4);
    out.insert(out.end(), trailer.begin(), trailer.end());
    return out;
}

constexpr uint8_t kInt32 = 3, kBool = 0, kFloat32 = 11, kFloat64 = 12;

// A small bloomier payload built with the core library (FORMAT.md, "Bloomier payload").
Bytes bloomier(uint64_t n, const std::vector<float>& codebook, const Bytes& outliers = {},
               const std::vector<uint64_t>& shape = {10, 7}) {
    std::vector<uint64_t> keys;
    std::vector<uint32_t> values;
    for (uint64_t p = 0; p < n; p += 3) keys.push_back(p), values.push_back(uint32_t(p % codebook.size()));
    wl::BuildOptions o;
    o.value_bits = 2;
    o.cell_bits = 9;
    wl::Filter f = wl::build_filter(keys.data(), values.data(), keys.size(), o);
    Bytes fb = wl::serialize(f);
    uint64_t fp = wl::count_decoded(f, 0, n, uint32_t(codebook.size())) - keys.size();
    return wl::model::bloomier_payload(codebook.data(), codebook.size(), fp, fb.data(), fb.size(), outliers.data(),
                                       outliers.size(), shape);
}

int open_status(const Bytes& b, std::string* msg = nullptr) {
    wl_model* m = nullptr;
    int status = open_buf(b, &m, msg);
    wl_close(m);
    return status;
}

// Opens (must succeed) and decodes tensor 0; returns the decode status.
int decode_status(const Bytes& b, std::string* msg, Bytes* out = nullptr) {
    wl_model* m = nullptr;
    if (open_buf(b, &m, msg) != WL_OK) return -1;
    Bytes buf(wl_tensor_nbytes(m, 0) + 1);
    char err[512];
    int status = wl_decode_tensor(m, 0, buf.data(), buf.size(), 2, err, sizeof err);
    *msg = err;
    if (out) *out = Bytes(buf.begin(), buf.end() - 1);
    wl_close(m);
    return status;
}

// Exact payloads in a v3 file are headless (FORMAT.md, "Payloads"): exact_headless strips the
// codec's magic, ndim, shape and CRC-32; exact_full rebuilds them, byte for byte; the reader
// decodes the rebuilt payload and refuses a malformed headless one, naming the tensor.
void test_headless_exact() {
    std::string msg;
    const uint64_t positions[] = {0, 5, 6, 11};
    const uint32_t codes[] = {1, 0, 1, 1};
    const float book[] = {-0.5f, 2.0f};
    const std::vector<uint64_t> shape = {3, 4};
    const Bytes full = wl::exact_encode(positions, codes, 4, shape.data(), 2, book, 2);
    const Bytes headless = wl::model::exact_headless(full.data(), full.size(), shape);
    CHECK(headless.size() == full.size() - 11, "headless: 4 + 1 + 2 + 4 bytes fewer");
    CHECK(headless[0] == full[4] && headless[1] == full[6] && headless[2] == full[7], "version, modes, ways kept");
    CHECK(wl::model::exact_full(headless.data(), headless.size(), shape) == full, "exact_full rebuilds it exactly");
    for (const std::vector<uint64_t>& s : {std::vector<uint64_t>{}, {0}, {300, 200}, {1, 1, 1, 1, 129}}) {
        uint64_t numel = 1;
        for (uint64_t d : s) numel *= d;
        const uint64_t pos[] = {0};
        const uint32_t code[] = {0};
        const Bytes f = wl::exact_encode(pos, code, numel ? 1 : 0, s.data(), s.size(), book, 1);
        CHECK(wl::model::exact_full(wl::model::exact_headless(f.data(), f.size(), s).data(),
                                    wl::model::exact_headless(f.data(), f.size(), s).size(), s) == f,
              "round trip, ndim " + std::to_string(s.size()));
    }
    bool refused = false;
    try {
        wl::model::exact_headless(full.data(), full.size(), {4, 3});
    } catch (const std::invalid_argument&) {
        refused = true;
    }
    CHECK(refused, "exact_headless checks the shape");

    Bytes out;
    CHECK(decode_status(build({Record{"e", kFloat32, 2, shape, headless}}), &msg, &out) == WL_OK && out.size() == 48,
          "headless exact tensor: " + msg);
    bool ok = out.size() == 48;
    for (size_t i = 0; ok && i < 12; ++i) {
        float v;
        std::memcpy(&v, out.data() + 4 * i, 4);
        ok = v == (i == 5 ? -0.5f : i == 0 || i == 6 || i == 11 ? 2.0f : 0.0f);
    }
    CHECK(ok, "it decodes to its weights");
    CHECK(decode_status(build({Record{"e", kFloat32, 2, shape, full}}), &msg) == WL_ERR_FORMAT,
          "a full WLEX payload is not a v3 exact payload: " + msg);
    struct Bad {
        std::vector<uint64_t> shape;
        Bytes payload;
        const char* what;
    };
    Bytes extra = headless, cut(headless.begin(), headless.end() - 1), version = headless, modes = headless;
    extra.push_back(0);
    version[0] = 2, modes[1] = 0x13;
    const std::vector<Bad> bad = {
        {{1, 3}, headless, "kept weights for 3 positions"},
        {shape, extra, "bytes after the code stream"},
        {shape, cut, "truncated"},
        {shape, version, "version 2"},
        {shape, modes, "modes"},
        {shape, {}, "truncated"},
        {std::vector<uint64_t>(33, 1), headless, "32 dimensions"},
    };
    for (const Bad& b : bad) {
        const int status = decode_status(build({Record{"bad\n", kFloat32, 2, b.shape, b.payload}}), &msg);
        CHECK(status == WL_ERR_FORMAT && msg.find("tensor 'bad\\x0a'") != std::string::npos &&
                  msg.find(b.what) != std::string::npos,
              std::string("headless exact payload, ") + b.what + ": " + msg);
        wl::model::Writer w;
        refused = false;
        try {
            w.append("bad", kFloat32, 2, b.shape, b.payload.data(), b.payload.size());
        } catch (const std::invalid_argument& e) {
            refused = std::string(e.what()).find(b.what) != std::string::npos;
        }
        CHECK(refused, std::string("the writer refuses it too: ") + b.what);
    }
}

void test_built() {
    std::string msg;
    const Bytes ints = {1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0};
    const Record a{"a", kInt32, 0, {3}, ints};
    CHECK(open_status(build({a}), &msg) == WL_OK, "hand-built container opens: " + msg);
    CHECK(open_status(build({})) == WL_OK, "a container without tensors opens");
    CHECK(open_status(build({a}, "{\"anything\": [1]}")) == WL_OK, "metadata is skipped");

    // The writer makes the same bytes as the spec's layout.
    wl::model::Writer w;
    w.append("a", kInt32, 0, {3}, ints.data(), ints.size());
    const char meta[] = "{\"anything\": [1]}";
    w.finish(reinterpret_cast<const uint8_t*>(meta), std::strlen(meta));
    CHECK(w.image() == build({a}, meta), "Writer output follows FORMAT.md");

    struct Case {
        std::vector<Record> records;
        const char* what;
    };
    std::vector<Case> bad = {
        {{Record{"a", kInt32, 0, {4}, ints}}, "length does not match the shape"},
        {{Record{"a", 13, 0, {3}, ints}}, "unknown dtype"},
        {{Record{"a", kInt32, 4, {3}, ints}}, "unknown codec"},
        {{Record{"a", kInt32, 2, {3}, ints}}, "exact int32"},
        {{a, a}, "duplicate names"},
        {{Record{"a", kInt32, 0, std::vector<uint64_t>(65, 1), ints}}, "more than 64 dimensions"},
        {{Record{"a", kInt32, 0, {uint64_t(1) << 32, uint64_t(1) << 32, 3}, ints}}, "element count overflows"},
        {{Record{"\xC3\x28", kInt32, 0, {3}, ints}}, "invalid UTF-8 name"},
        {{Record{std::string("a\0b", 3), kInt32, 0, {3}, ints}}, "NUL in a name"},
        {{Record{"a", kInt32, 0, {3}, ints, 1000}}, "length past the payload area"},
        {{Record{"a", kInt32, 0, {3}, ints, 12}, Record{"b", kInt32, 0, {0}, ints, 0}}, "bytes left in the area"},
    };
    for (const Case& c : bad) {
        int status = open_status(build(c.records), &msg);
        CHECK(status == WL_ERR_FORMAT, std::string(c.what) + ": status " + std::to_string(status) + " " + msg);
    }
    CHECK(decode_status(build({Record{"a", kInt32, 0, {3}, ints, -1, 12345}}), &msg) == WL_ERR_FORMAT &&
              msg.find("checksum") != std::string::npos,
          "payload CRC mismatch at decode: " + msg);
    CHECK(decode_status(build({Record{"b", kBool, 0, {3}, {0, 1, 1}}}), &msg) == WL_OK, "bool 0/1");
    CHECK(decode_status(build({Record{"b", kBool, 0, {3}, {0, 2, 1}}}), &msg) == WL_ERR_FORMAT, "bool byte 2: " + msg);

    // Bloomier payloads: decode, widen to float64, and each inconsistency is refused.
    const std::vector<float> codebook = {-1.5f, 0.25f, 2.0f};
    const Bytes layer = bloomier(70, codebook);
    Bytes out, out64;
    CHECK(decode_status(build({Record{"w", kFloat32, 1, {10, 7}, layer}}), &msg, &out) == WL_OK, "bloomier: " + msg);
    bool ok = out.size() == 280;
    for (uint64_t p = 0; ok && p < 70; p += 3) {
        float v;
        std::memcpy(&v, out.data() + 4 * p, 4);
        ok = v == codebook[p % 3];
    }
    CHECK(ok, "bloomier payload decodes its kept weights");
    CHECK(decode_status(build({Record{"w", kFloat64, 1, {10, 7}, layer}}), &msg, &out64) == WL_OK &&
              out64.size() == 560,
          "float64 bloomier tensor");
    bool same = out64.size() == 560 && out.size() == 280;
    for (size_t i = 0; same && i < 70; ++i) {
        float f;
        double d;
        std::memcpy(&f, out.data() + 4 * i, 4);
        std::memcpy(&d, out64.data() + 8 * i, 8);
        same = d == double(f);
    }
    CHECK(same, "float64 is the float32 result widened");
    CHECK(decode_status(build({Record{"w", kFloat32, 1, {3, 3}, layer}}), &msg) == WL_ERR_FORMAT,
          "more kept weights than positions: " + msg);
    Bytes l = layer;
    l[3] = 0x00;  // codebook[0]'s low bytes ... made NaN
    l[2] = 0x00, l[4] = 0xC0, l[5] = 0x7F;
    CHECK(decode_status(build({Record{"w", kFloat32, 1, {10, 7}, l}}), &msg) == WL_ERR_FORMAT, "NaN codebook: " + msg);
    for (size_t cut : {size_t(1), size_t(5), size_t(20), layer.size() - 1}) {
        Bytes c(layer.begin(), layer.begin() + cut);
        CHECK(decode_status(build({Record{"w", kFloat32, 1, {10, 7}, c}}), &msg) == WL_ERR_FORMAT,
              "truncated bloomier payload (" + std::to_string(cut) + "): " + msg);
    }
    // Outliers: an exact payload whose kept weights overwrite the filter's values.
    const uint64_t positions[] = {1, 2, 69};
    const uint32_t codes[] = {0, 1, 0};
    const uint64_t shape[] = {10, 7};
    const float big[] = {100.0f, -50.0f};
    const Bytes ex = wl::exact_encode(positions, codes, 3, shape, 2, big, 2);
    CHECK(decode_status(build({Record{"w", kFloat32, 1, {10, 7}, bloomier(70, codebook, ex)}}), &msg, &out64) == WL_OK,
          "bloomier payload with outliers: " + msg);
    bool overlay = out64.size() == 280;
    for (size_t i = 0; overlay && i < 70; ++i) {
        float v, base;
        std::memcpy(&v, out64.data() + 4 * i, 4);
        std::memcpy(&base, out.data() + 4 * i, 4);
        overlay = v == (i == 1 || i == 69 ? 100.0f : i == 2 ? -50.0f : base);
    }
    CHECK(overlay, "outliers overwrite the filter's values at their positions only");
    // The outliers are stored headless (their shape is the record's): a payload is built only
    // from outliers of the tensor's shape.
    const uint64_t other[] = {7, 10};
    const Bytes wrong = wl::exact_encode(positions, codes, 3, other, 2, big, 2);
    bool refused = false;
    try {
        bloomier(70, codebook, wrong);
    } catch (const std::invalid_argument& e) {
        refused = std::string(e.what()).find("shape") != std::string::npos;
    }
    CHECK(refused, "outliers of another shape are not written");
    const Bytes with = bloomier(70, codebook, ex), without = bloomier(70, codebook);
    CHECK(with.size() == without.size() + ex.size() - 11, "the outliers are stored without magic, ndim, shape, CRC");
    // Headless outliers whose kept count exceeds the tensor's: refused, naming the tensor.
    CHECK(decode_status(build({Record{"w", kFloat32, 1, {10, 7}, with}}), &msg) == WL_OK, msg);
    CHECK(decode_status(build({Record{"small", kFloat32, 1, {4, 1}, with}}), &msg) == WL_ERR_FORMAT &&
              msg.find("'small'") != std::string::npos,
          "outliers of a larger tensor: " + msg);
    // float16 payloads: 2 bytes per element, widened exactly.
    const Bytes halves = {0x00, 0x3C, 0x01, 0x00, 0x00, 0xFC};  // 1.0, the smallest subnormal, -inf
    CHECK(decode_status(build({Record{"h", kFloat32, 3, {3}, halves}}), &msg, &out) == WL_OK && out.size() == 12,
          "float16 payload: " + msg);
    float f3[3];
    if (out.size() == 12) std::memcpy(f3, out.data(), 12);
    CHECK(out.size() == 12 && f3[0] == 1.0f && f3[1] == std::ldexp(1.0f, -24) && f3[2] == -INFINITY,
          "float16 values widen exactly");
    CHECK(open_status(build({Record{"h", kFloat32, 3, {4}, halves}})) == WL_ERR_FORMAT, "float16 length");
    CHECK(open_status(build({Record{"h", kInt32, 3, {3}, halves}})) == WL_ERR_FORMAT, "float16 of an int32");
}

// ---------------------------------------------------------------- .npy written by wl-decode

int check_npy(const char* npy, const char* model, const char* tensor) {
    Bytes f;
    if (!read_all(npy, &f)) {
        std::printf("FAIL: cannot read %s\n", npy);
        return 1;
    }
    char err[512];
    wl_model* m = wl_open_file(model, err, sizeof err);
    size_t i;
    if (!m || wl_find_tensor(m, tensor, &i) != WL_OK) {
        std::printf("FAIL: %s\n", m ? "no such tensor" : err);
        return 1;
    }
    Bytes expected(wl_tensor_nbytes(m, i));
    CHECK(wl_decode_tensor(m, i, expected.data(), expected.size(), 1, err, sizeof err) == WL_OK, err);
    CHECK(f.size() >= 10 && std::memcmp(f.data(), "\x93NUMPY\x01\x00", 8) == 0, "npy: magic and version 1.0");
    size_t hlen = f.size() >= 10 ? f[8] | (f[9] << 8) : 0;
    CHECK((10 + hlen) % 64 == 0 && 10 + hlen <= f.size(), "npy: header length aligned to 64");
    if (10 + hlen <= f.size()) {
        std::string header(f.begin() + 10, f.begin() + 10 + hlen);
        CHECK(header.back() == '\n', "npy: header ends in a newline");
        CHECK(header.find("'descr': '<f4'") != std::string::npos, "npy: descr");
        CHECK(header.find("'fortran_order': False") != std::string::npos, "npy: C order");
        CHECK(header.find("'shape': (64, 48)") != std::string::npos, "npy: shape");
        CHECK(f.size() == 10 + hlen + expected.size(), "npy: size " + std::to_string(f.size()));
        CHECK(f.size() == 10 + hlen + expected.size() &&
                  std::memcmp(f.data() + 10 + hlen, expected.data(), expected.size()) == 0,
              "npy: data equals the decoded tensor");
    }
    wl_close(m);
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 5 && std::strcmp(argv[1], "--check-npy") == 0) return check_npy(argv[2], argv[3], argv[4]);
    if (argc != 2) {
        std::fprintf(stderr, "usage: wl_test_c_api DATA_DIR | --check-npy FILE.npy MODEL.wl TENSOR\n");
        return 2;
    }
    const std::string dir = argv[1];
    return wl_test::run_tests([&] {
        for (const char* name : {"basic", "dtypes", "structures", "chunked", "bfloat16", "exact", "outliers", "float16"})
            test_golden(dir, name);
        test_basic_metadata(dir);
        test_malformed_golden(dir);
        test_built();
        test_headless_exact();
    });
}
