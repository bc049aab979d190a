// Tests of the C API (csrc/weightless_c.h) and the JSON reader (csrc/json_min.h).
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

#include "json_min.h"
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

void fix_file_crc(Bytes& b) { put_le(b.data() + b.size() - 4, wl::crc32(b.data(), b.size() - 4), 4); }

int open_buf(const Bytes& b, wl_model** m, std::string* msg = nullptr) {
    char err[512];
    int status = wl_open_buffer_ex(b.data(), b.size(), m, err, sizeof err);
    if (msg) *msg = err;
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

    // Truncations anywhere: the header length, the CRC or the layout catches each.
    for (size_t len : {size_t(0), size_t(1), size_t(3), size_t(4), size_t(15), size_t(16), size_t(17), size_t(40),
                       size_t(200), good.size() / 2, good.size() - 5, good.size() - 4, good.size() - 1}) {
        Bytes cut(good.begin(), good.begin() + len);
        int status = open_buf(cut, &m, &msg);
        CHECK(status == WL_ERR_FORMAT && m == nullptr && !msg.empty(),
              "truncated to " + std::to_string(len) + " bytes: " + msg);
    }
    Bytes longer = good;
    longer.push_back(0);
    CHECK(open_buf(longer, &m) == WL_ERR_FORMAT, "a trailing byte");

    // One flipped bit anywhere: the file CRC-32 catches it.
    for (size_t pos : {size_t(0), size_t(5), size_t(9), size_t(20), size_t(100), good.size() / 2, good.size() - 10,
                       good.size() - 1}) {
        Bytes bad = good;
        bad[pos] ^= 0x10;
        int status = open_buf(bad, &m, &msg);
        // In the version field the version check comes first (as in the reference reader).
        int want = pos == 4 || pos == 5 ? WL_ERR_UNSUPPORTED : WL_ERR_FORMAT;
        CHECK(status == want && m == nullptr, "bit flip at " + std::to_string(pos) + ": " + msg);
    }
    Bytes magic = good;
    magic[0] = 'X';
    CHECK(open_buf(magic, &m, &msg) == WL_ERR_FORMAT && msg.find("bad magic") != std::string::npos, "wrong magic");
    Bytes version = good;
    version[4] = 2;
    fix_file_crc(version);
    CHECK(open_buf(version, &m, &msg) == WL_ERR_UNSUPPORTED, "version 2: " + msg);
    Bytes reserved = good;
    reserved[6] = 1;
    fix_file_crc(reserved);
    CHECK(open_buf(reserved, &m) == WL_ERR_FORMAT, "reserved field");
    Bytes hlen = good;
    put_le(hlen.data() + 8, uint64_t(1) << 62, 8);
    fix_file_crc(hlen);
    CHECK(open_buf(hlen, &m) == WL_ERR_FORMAT, "huge header length");

    // A corrupted blob with a recomputed file CRC: opens, and that tensor alone fails to decode.
    m = nullptr;
    CHECK(open_buf(good, &m) == WL_OK, "reopen");
    size_t fc1 = 0;
    wl_find_tensor(m, "fc1.weight", &fc1);
    size_t data_start = 16 + size_t(good[8] | (good[9] << 8) | (good[10] << 16));
    (void)data_start;
    wl_close(m);
    // The fc1.weight blob is the first one: flip a byte in its middle.
    Bytes blob = good;
    size_t header_len = size_t(good[8]) | size_t(good[9]) << 8 | size_t(good[10]) << 16;
    blob[16 + header_len + 100] ^= 0x01;
    fix_file_crc(blob);
    CHECK(open_buf(blob, &m, &msg) == WL_OK, "corrupted blob with a fixed file CRC opens: " + msg);
    if (m) {
        char err[512];
        Bytes out(wl_tensor_nbytes(m, fc1));
        int status = wl_decode_tensor(m, fc1, out.data(), out.size(), 1, err, sizeof err);
        CHECK(status == WL_ERR_FORMAT && std::strstr(err, "checksum") != nullptr,
              std::string("corrupted blob is refused: ") + err);
        size_t bias;
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

struct Blob {
    std::string entry_json;  // the entry without offset/length/crc32, e.g. "\"name\":\"a\",..."
    Bytes data;
};

// A container the way the writer lays it out, with `extra` spliced into the header object.
Bytes build(const std::vector<Blob>& blobs, const std::string& extra = "", bool fix_offsets = true) {
    std::string header = "{\"weightless_version\":\"test\"" + extra + ",\"tensors\":[";
    uint64_t offset = 0;
    Bytes data;
    for (size_t i = 0; i < blobs.size(); ++i) {
        const Blob& b = blobs[i];
        if (i) header += ",";
        header += "{" + b.entry_json;
        if (fix_offsets)
            header += ",\"offset\":" + std::to_string(offset) + ",\"length\":" + std::to_string(b.data.size()) +
                      ",\"crc32\":" + std::to_string(wl::crc32(b.data.data(), b.data.size()));
        header += "}";
        data.insert(data.end(), b.data.begin(), b.data.end());
        while (data.size() % 8) data.push_back(0);
        offset = data.size();
    }
    header += "]}";
    while ((16 + header.size()) % 8) header += ' ';
    Bytes out(16 + header.size() + data.size() + 4, 0);
    std::memcpy(out.data(), "WLMF", 4);
    put_le(out.data() + 4, 1, 2);
    put_le(out.data() + 8, header.size(), 8);
    std::memcpy(out.data() + 16, header.data(), header.size());
    if (!data.empty()) std::memcpy(out.data() + 16 + header.size(), data.data(), data.size());
    fix_file_crc(out);
    return out;
}

Blob raw(const std::string& name, const std::string& dtype, const std::string& shape, Bytes data) {
    return {"\"name\":\"" + name + "\",\"kind\":\"raw\",\"dtype\":\"" + dtype + "\",\"shape\":" + shape, std::move(data)};
}

// A small encoded layer built with the core library, serialized per FORMAT.md (WLLY).
Bytes layer_bytes(const std::vector<uint64_t>& shape, const std::vector<float>& codebook, uint64_t* kept_out,
                  uint32_t* cell_bits_out, uint64_t* fp_out) {
    uint64_t n = 1;
    for (uint64_t d : shape) n *= d;
    std::vector<uint64_t> keys;
    std::vector<uint32_t> values;
    for (uint64_t p = 0; p < n; p += 3) {
        keys.push_back(p);
        values.push_back(uint32_t(p % codebook.size()));
    }
    wl::BuildOptions o;
    o.value_bits = 2;
    o.cell_bits = 9;
    wl::Filter f = wl::build_filter(keys.data(), values.data(), keys.size(), o);
    Bytes fb = wl::serialize(f);
    uint64_t fp = wl::count_decoded(f, 0, n, uint32_t(codebook.size())) - keys.size();
    Bytes b(28 + 8 * shape.size() + 4 * codebook.size());
    std::memcpy(b.data(), "WLLY", 4);
    put_le(b.data() + 4, 1, 2);
    b[6] = uint8_t(shape.size());
    put_le(b.data() + 8, codebook.size(), 4);
    put_le(b.data() + 12, fp, 8);
    put_le(b.data() + 20, fb.size(), 8);
    size_t at = 28;
    for (uint64_t d : shape) put_le(b.data() + at, d, 8), at += 8;
    for (float c : codebook) {
        uint32_t bits;
        std::memcpy(&bits, &c, 4);
        put_le(b.data() + at, bits, 4), at += 4;
    }
    b.insert(b.end(), fb.begin(), fb.end());
    b.resize(b.size() + 4);
    put_le(b.data() + b.size() - 4, wl::crc32(b.data(), b.size() - 4), 4);
    *kept_out = keys.size();
    *cell_bits_out = 9;
    *fp_out = fp;
    return b;
}

std::string encoded_entry(const std::string& name, const std::string& dtype, const std::string& shape, uint64_t kept,
                          uint64_t clusters, uint32_t cell_bits, uint64_t fp) {
    return "\"name\":\"" + name + "\",\"kind\":\"encoded\",\"dtype\":\"" + dtype + "\",\"shape\":" + shape +
           ",\"options\":{\"sparsity\":0.9,\"threshold\":null,\"init\":\"density\",\"seed\":-1},\"kept\":" +
           std::to_string(kept) + ",\"clusters\":" + std::to_string(clusters) + ",\"cell_bits\":" +
           std::to_string(cell_bits) + ",\"false_positives\":" + std::to_string(fp);
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

void test_built() {
    std::string msg;
    Bytes ints = {1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0};
    CHECK(open_status(build({raw("a", "int32", "[3]", ints)}), &msg) == WL_OK, "hand-built container opens: " + msg);
    CHECK(open_status(build({})) == WL_OK, "a container without tensors opens");

    // Header problems: each one is a format error at open.
    struct Case {
        std::vector<Blob> blobs;
        std::string extra;
        const char* what;
    };
    std::vector<Case> bad = {
        {{raw("a", "int32", "[4]", ints)}, "", "length does not match the shape"},
        {{raw("a", "int33", "[3]", ints)}, "", "unknown dtype"},
        {{raw("a", "int32", "[3]", ints), raw("a", "int32", "[3]", ints)}, "", "duplicate names"},
        {{raw("a", "int32", "[-3]", ints)}, "", "negative dimension"},
        {{raw("a", "int32", "[3.0]", ints)}, "", "non-integer dimension"},
        {{raw("a", "int32", "3", ints)}, "", "shape not an array"},
        {{raw("a", "int32", "[3,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"
                            "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]",
              ints)},
         "", "more than 64 dimensions"},
        {{raw("a", "int32", "[18446744073709551616]", ints)}, "", "dimension beyond 64 bits"},
        {{raw("a", "int32", "[4294967296,4294967296,4294967296]", ints)}, "", "element count overflows"},
        {{{"\"name\":\"a\",\"kind\":\"packed\",\"dtype\":\"int32\",\"shape\":[3]", ints}}, "", "unknown kind"},
        {{{"\"kind\":\"raw\",\"dtype\":\"int32\",\"shape\":[3]", ints}}, "", "no name"},
        {{{"\"name\":\"a\",\"kind\":\"encoded\",\"dtype\":\"int32\",\"shape\":[3]", ints}}, "", "encoded int32"},
        {{raw("a", "int32", "[3]", ints)}, ",\"x\":NaN", "NaN in the header"},
        {{raw("a", "int32", "[3]", ints)}, ",\"weightless_version\":\"again\"", "duplicate key"},
        {{raw("a", "int32", "[3]", ints)}, ",\"bad\":\"\xC3\x28\"", "invalid UTF-8"},
        {{raw("a", "int32", "[3]", ints)}, ",\"deep\":" + std::string(100, '[') + std::string(100, ']'), "deep nesting"},
    };
    for (const Case& c : bad) {
        int status = open_status(build(c.blobs, c.extra), &msg);
        CHECK(status == WL_ERR_FORMAT, std::string(c.what) + ": status " + std::to_string(status) + " " + msg);
    }
    CHECK(open_status(build({raw("a", "int32", "[3]", ints)}, ",\"unknown\":{\"x\":[1,2.5e3,true,null]}")) == WL_OK,
          "unknown header keys are ignored");

    // Offsets, lengths and CRCs written by hand.
    auto entry = [&](const std::string& tail) {
        return build({{"\"name\":\"a\",\"kind\":\"raw\",\"dtype\":\"int32\",\"shape\":[3]," + tail, ints}}, "", false);
    };
    uint32_t crc = wl::crc32(ints.data(), ints.size());
    CHECK(open_status(entry("\"offset\":0,\"length\":12,\"crc32\":" + std::to_string(crc))) == WL_OK, "offsets by hand");
    CHECK(open_status(entry("\"offset\":8,\"length\":12,\"crc32\":" + std::to_string(crc))) == WL_ERR_FORMAT, "wrong offset");
    CHECK(open_status(entry("\"offset\":0,\"length\":12,\"crc32\":4294967296")) == WL_ERR_FORMAT, "crc32 out of range");
    CHECK(open_status(entry("\"offset\":0,\"length\":12")) == WL_ERR_FORMAT, "missing crc32");
    CHECK(open_status(entry("\"offset\":0,\"length\":12,\"crc32\":-1")) == WL_ERR_FORMAT, "negative crc32");
    CHECK(decode_status(entry("\"offset\":0,\"length\":12,\"crc32\":" + std::to_string(crc ^ 1)), &msg) == WL_ERR_FORMAT,
          "blob CRC mismatch at decode: " + msg);

    // bool bytes must be 0 or 1.
    CHECK(decode_status(build({raw("b", "bool", "[3]", {0, 1, 1})}), &msg) == WL_OK, "bool 0/1");
    CHECK(decode_status(build({raw("b", "bool", "[3]", {0, 2, 1})}), &msg) == WL_ERR_FORMAT, "bool byte 2: " + msg);

    // Encoded layers built here: decode, and each inconsistency is refused.
    uint64_t kept, fp;
    uint32_t t;
    const std::vector<float> codebook = {-1.5f, 0.25f, 2.0f};
    Bytes layer = layer_bytes({10, 7}, codebook, &kept, &t, &fp);
    auto enc = [&](const std::string& dtype, const std::string& shape, uint64_t k, uint64_t c, uint32_t cb, uint64_t f,
                   const Bytes& data) { return build({{encoded_entry("w", dtype, shape, k, c, cb, f), data}}); };
    Bytes out;
    CHECK(decode_status(enc("float32", "[10,7]", kept, 3, t, fp, layer), &msg, &out) == WL_OK, "encoded layer: " + msg);
    if (out.size() == 70 * 4) {
        bool ok = true;
        for (uint64_t p = 0; p < 70; p += 3) {
            float v;
            std::memcpy(&v, out.data() + 4 * p, 4);
            ok = ok && v == codebook[p % 3];
        }
        CHECK(ok, "encoded layer decodes its kept weights");
    }
    Bytes out64;
    CHECK(decode_status(enc("float64", "[10,7]", kept, 3, t, fp, layer), &msg, &out64) == WL_OK && out64.size() == 560,
          "float64 encoded layer");
    bool same = true;
    for (size_t i = 0; i < 70 && out64.size() == 560 && out.size() == 280; ++i) {
        float f;
        double d;
        std::memcpy(&f, out.data() + 4 * i, 4);
        std::memcpy(&d, out64.data() + 8 * i, 8);
        same = same && d == double(f);
    }
    CHECK(same, "float64 is the float32 result widened");
    CHECK(decode_status(enc("float32", "[7,10]", kept, 3, t, fp, layer), &msg) == WL_ERR_FORMAT, "shape mismatch: " + msg);
    CHECK(decode_status(enc("float32", "[10,7]", kept - 1, 3, t, fp, layer), &msg) == WL_ERR_FORMAT, "kept mismatch");
    CHECK(decode_status(enc("float32", "[10,7]", kept, 2, t, fp, layer), &msg) == WL_ERR_FORMAT, "clusters mismatch");
    CHECK(decode_status(enc("float32", "[10,7]", kept, 3, t + 1, fp, layer), &msg) == WL_ERR_FORMAT, "cell_bits mismatch");
    CHECK(decode_status(enc("float32", "[10,7]", kept, 3, t, fp + 1, layer), &msg) == WL_ERR_FORMAT, "fp mismatch");
    CHECK(open_status(enc("float32", "[10,7]", 60, 3, t, 20, layer)) == WL_ERR_FORMAT, "kept + fp > size at open");
    CHECK(open_status(enc("float32", "[10,7]", kept, 3, 33, fp, layer)) == WL_ERR_FORMAT, "cell_bits 33 at open");

    // Corruptions inside the layer blob (its CRC-32 recomputed so the later checks are reached).
    auto relayer = [&](Bytes b) {
        put_le(b.data() + b.size() - 4, wl::crc32(b.data(), b.size() - 4), 4);
        return b;
    };
    Bytes l = layer;
    l[0] = 'X';
    CHECK(decode_status(enc("float32", "[10,7]", kept, 3, t, fp, relayer(l)), &msg) == WL_ERR_FORMAT, "layer magic");
    l = layer;
    l[4] = 9;
    CHECK(decode_status(enc("float32", "[10,7]", kept, 3, t, fp, relayer(l)), &msg) == WL_ERR_UNSUPPORTED,
          "layer version: " + msg);
    l = layer;
    l[7] = 1;
    CHECK(decode_status(enc("float32", "[10,7]", kept, 3, t, fp, relayer(l)), &msg) == WL_ERR_FORMAT, "layer reserved");
    l = layer;
    put_le(l.data() + 20, uint64_t(1) << 63, 8);
    CHECK(decode_status(enc("float32", "[10,7]", kept, 3, t, fp, relayer(l)), &msg) == WL_ERR_FORMAT, "huge filter length");
    l = layer;
    l[28 + 16] ^= 0x01;  // codebook[0]
    CHECK(decode_status(enc("float32", "[10,7]", kept, 3, t, fp, l), &msg) == WL_ERR_FORMAT, "layer CRC: " + msg);
    l = layer;
    put_le(l.data() + 28 + 16, 0x7FC00000u, 4);  // codebook[0] = NaN
    CHECK(decode_status(enc("float32", "[10,7]", kept, 3, t, fp, relayer(l)), &msg) == WL_ERR_FORMAT, "NaN codebook");
    l = layer;
    l[28 + 16 + 12 + 6] = 5;  // the filter's arity
    CHECK(decode_status(enc("float32", "[10,7]", kept, 3, t, fp, relayer(l)), &msg) == WL_ERR_FORMAT,
          "filter validation: " + msg);
    for (size_t cut : {size_t(10), size_t(30), layer.size() - 1}) {
        Bytes c(layer.begin(), layer.begin() + cut);
        CHECK(decode_status(enc("float32", "[10,7]", kept, 3, t, fp, c), &msg) == WL_ERR_FORMAT,
              "truncated layer blob (" + std::to_string(cut) + "): " + msg);
    }
}

// ---------------------------------------------------------------- JSON reader

bool parses(const std::string& s, wl::json::Value* v = nullptr) {
    wl::json::Value tmp;
    std::string err;
    return wl::json::parse(s.data(), s.size(), v ? v : &tmp, &err);
}

void test_json() {
    using wl::json::Type;
    wl::json::Value v;
    CHECK(parses(" {\"a\":[1,-2,3.5,1e3,-0,true,false,null,\"x\"],\"b\":{}} ", &v), "json: nested document");
    const wl::json::Value* a = v.get("a");
    CHECK(a && a->type == Type::Array && a->items.size() == 9, "json: array");
    if (a && a->items.size() == 9) {
        CHECK(a->items[0].is_u64 && a->items[0].u64 == 1, "json: integer");
        CHECK(a->items[1].is_i64 && a->items[1].i64 == -2 && !a->items[1].is_u64, "json: negative integer");
        CHECK(!a->items[2].is_integer && a->items[2].number == 3.5, "json: fraction");
        CHECK(!a->items[3].is_integer && a->items[3].number == 1000.0, "json: exponent");
        CHECK(a->items[4].is_u64 && a->items[4].u64 == 0, "json: -0");
        CHECK(a->items[5].type == Type::Bool && a->items[5].boolean, "json: true");
        CHECK(a->items[7].type == Type::Null, "json: null");
        CHECK(a->items[8].type == Type::String && a->items[8].string == "x", "json: string");
    }
    CHECK(parses("18446744073709551615", &v) && v.is_u64 && v.u64 == UINT64_MAX, "json: u64 max");
    CHECK(parses("18446744073709551616", &v) && v.is_integer && !v.is_u64 && !v.is_i64, "json: beyond u64");
    CHECK(parses("-9223372036854775808", &v) && v.is_i64 && v.i64 == INT64_MIN, "json: i64 min");
    CHECK(parses("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0041\\u00e9\\u20ac\\ud83d\\ude00\"", &v) &&
              v.string == "\" \\ / \b \f \n \r \t A\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80",
          "json: escapes");
    CHECK(parses("\"\xE2\x98\x83\"", &v) && v.string == "\xE2\x98\x83", "json: raw UTF-8");
    const char* invalid[] = {
        "",           " ",         "{",           "}",            "[1,]",          "{\"a\":1,}",   "{\"a\" 1}",
        "{a:1}",      "01",        "1.",          ".5",           "1e",            "+1",           "-",
        "NaN",        "Infinity",  "-Infinity",   "tru",          "nul",           "\"abc",        "\"\\x\"",
        "\"\\u12\"",  "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"a\tb\"",  "[1] 2",        "{\"a\":1,\"a\":2}",
        "'a'",        "[1 2]",     "\"\xC0\xAF\"", "\"\xED\xA0\x80\"", "\"\xF4\x90\x80\x80\"", "\"\xE2\x98\"",
    };
    for (const char* s : invalid) CHECK(!parses(s), std::string("json: rejects <") + s + ">");
    CHECK(!parses(std::string("[1]\0", 4)), "json: rejects a NUL after the value");
    std::string deep(64, '['), deeper(65, '[');
    CHECK(parses(deep + std::string(64, ']')), "json: depth 64");
    CHECK(!parses(deeper + std::string(65, ']')), "json: depth 65 rejected");
    CHECK(!parses(std::string(100000, '[')), "json: very deep input rejected without recursion blow-up");
    wl::json::Limits small;
    small.max_nodes = 3;
    std::string err;
    CHECK(!wl::json::parse("[1,2,3]", 7, &v, &err, small) && err.find("too many") != std::string::npos,
          "json: node limit");
    small = wl::json::Limits();
    small.max_size = 4;
    CHECK(!wl::json::parse("[1,2]", 5, &v, &err, small), "json: size limit");
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
        test_json();
        for (const char* name : {"basic", "dtypes", "structures", "v1_basic", "chunked", "bfloat16", "exact"})
            test_golden(dir, name);
        test_basic_metadata(dir);
        test_malformed_golden(dir);
        test_built();
    });
}
