// A minimal, strict JSON reader; see json_min.h.
#include "json_min.h"

#include <cstdlib>
#include <cstring>

namespace wl {
namespace json {

const Value* Value::get(const std::string& key) const {
    if (type != Type::Object) return nullptr;
    for (const auto& m : members)
        if (m.first == key) return &m.second;
    return nullptr;
}

bool valid_utf8(const unsigned char* s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
        else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
        else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
        else return false;
        if (n - i < len) return false;
        for (size_t k = 1; k < len; ++k) {
            if ((s[i + k] & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

namespace {

class Parser {
public:
    Parser(const char* d, size_t n, const Limits& l) : p_(d), n_(n), lim_(l) {}

    bool run(Value* out, std::string* err) {
        if (n_ > lim_.max_size) return fail("input too large", err);
        if (!valid_utf8(reinterpret_cast<const unsigned char*>(p_), n_)) return fail("invalid UTF-8", err);
        ws();
        if (!value(out, 0)) return fail(msg_, err);
        ws();
        if (i_ != n_) return fail("trailing characters", err);
        return true;
    }

private:
    const char* p_;
    size_t n_, i_ = 0, nodes_ = 0;
    Limits lim_;
    const char* msg_ = "";

    bool fail(const char* what, std::string* err) {
        if (err) *err = std::string(what) + " at byte " + std::to_string(i_);
        return false;
    }
    bool bad(const char* what) {
        msg_ = what;
        return false;
    }
    void ws() {
        while (i_ < n_ && (p_[i_] == ' ' || p_[i_] == '\t' || p_[i_] == '\n' || p_[i_] == '\r')) ++i_;
    }
    bool literal(const char* word) {
        size_t len = std::strlen(word);
        if (n_ - i_ < len || std::memcmp(p_ + i_, word, len) != 0) return bad("invalid literal");
        i_ += len;
        return true;
    }

    bool value(Value* v, size_t depth) {
        if (++nodes_ > lim_.max_nodes) return bad("too many values");
        if (i_ >= n_) return bad("unexpected end of input");
        char c = p_[i_];
        switch (c) {
            case '{': return object(v, depth + 1);
            case '[': return array(v, depth + 1);
            case '"': v->type = Type::String; return string(&v->string);
            case 't': v->type = Type::Bool; v->boolean = true; return literal("true");
            case 'f': v->type = Type::Bool; v->boolean = false; return literal("false");
            case 'n': v->type = Type::Null; return literal("null");
            default:
                if (c == '-' || (c >= '0' && c <= '9')) return number(v);
                return bad("unexpected character");
        }
    }

    bool object(Value* v, size_t depth) {
        if (depth > lim_.max_depth) return bad("nesting too deep");
        v->type = Type::Object;
        ++i_;  // '{'
        ws();
        if (i_ < n_ && p_[i_] == '}') {
            ++i_;
            return true;
        }
        for (;;) {
            ws();
            if (i_ >= n_ || p_[i_] != '"') return bad("expected a string key");
            std::string key;
            if (!string(&key)) return false;
            for (const auto& m : v->members)
                if (m.first == key) return bad("duplicate key");
            ws();
            if (i_ >= n_ || p_[i_] != ':') return bad("expected ':'");
            ++i_;
            ws();
            v->members.emplace_back(std::move(key), Value());
            if (!value(&v->members.back().second, depth)) return false;
            ws();
            if (i_ >= n_) return bad("unexpected end of input");
            if (p_[i_] == ',') {
                ++i_;
                continue;
            }
            if (p_[i_] == '}') {
                ++i_;
                return true;
            }
            return bad("expected ',' or '}'");
        }
    }

    bool array(Value* v, size_t depth) {
        if (depth > lim_.max_depth) return bad("nesting too deep");
        v->type = Type::Array;
        ++i_;  // '['
        ws();
        if (i_ < n_ && p_[i_] == ']') {
            ++i_;
            return true;
        }
        for (;;) {
            ws();
            v->items.emplace_back();
            if (!value(&v->items.back(), depth)) return false;
            ws();
            if (i_ >= n_) return bad("unexpected end of input");
            if (p_[i_] == ',') {
                ++i_;
                continue;
            }
            if (p_[i_] == ']') {
                ++i_;
                return true;
            }
            return bad("expected ',' or ']'");
        }
    }

    bool hex4(uint32_t* out) {
        if (n_ - i_ < 4) return bad("truncated \\u escape");
        uint32_t x = 0;
        for (int k = 0; k < 4; ++k) {
            char c = p_[i_++];
            x <<= 4;
            if (c >= '0' && c <= '9') x |= uint32_t(c - '0');
            else if (c >= 'a' && c <= 'f') x |= uint32_t(c - 'a' + 10);
            else if (c >= 'A' && c <= 'F') x |= uint32_t(c - 'A' + 10);
            else return bad("bad \\u escape");
        }
        *out = x;
        return true;
    }

    static void put_utf8(std::string* s, uint32_t cp) {
        if (cp < 0x80) {
            s->push_back(char(cp));
        } else if (cp < 0x800) {
            s->push_back(char(0xC0 | (cp >> 6)));
            s->push_back(char(0x80 | (cp & 0x3F)));
        } else if (cp < 0x10000) {
            s->push_back(char(0xE0 | (cp >> 12)));
            s->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
            s->push_back(char(0x80 | (cp & 0x3F)));
        } else {
            s->push_back(char(0xF0 | (cp >> 18)));
            s->push_back(char(0x80 | ((cp >> 12) & 0x3F)));
            s->push_back(char(0x80 | ((cp >> 6) & 0x3F)));
            s->push_back(char(0x80 | (cp & 0x3F)));
        }
    }

    bool string(std::string* s) {
        ++i_;  // opening quote
        for (;;) {
            if (i_ >= n_) return bad("unterminated string");
            unsigned char c = static_cast<unsigned char>(p_[i_]);
            if (c == '"') {
                ++i_;
                return true;
            }
            if (c < 0x20) return bad("control character in string");
            if (c != '\\') {
                s->push_back(char(c));  // UTF-8 was validated up front
                ++i_;
                continue;
            }
            if (++i_ >= n_) return bad("unterminated string");
            char e = p_[i_++];
            switch (e) {
                case '"': s->push_back('"'); break;
                case '\\': s->push_back('\\'); break;
                case '/': s->push_back('/'); break;
                case 'b': s->push_back('\b'); break;
                case 'f': s->push_back('\f'); break;
                case 'n': s->push_back('\n'); break;
                case 'r': s->push_back('\r'); break;
                case 't': s->push_back('\t'); break;
                case 'u': {
                    uint32_t cp;
                    if (!hex4(&cp)) return false;
                    if (cp >= 0xDC00 && cp <= 0xDFFF) return bad("lone low surrogate");
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        uint32_t lo;
                        if (n_ - i_ < 2 || p_[i_] != '\\' || p_[i_ + 1] != 'u') return bad("lone high surrogate");
                        i_ += 2;
                        if (!hex4(&lo)) return false;
                        if (lo < 0xDC00 || lo > 0xDFFF) return bad("bad surrogate pair");
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    }
                    put_utf8(s, cp);
                    break;
                }
                default: return bad("bad escape");
            }
        }
    }

    bool number(Value* v) {
        v->type = Type::Number;
        size_t start = i_;
        bool neg = false;
        if (p_[i_] == '-') {
            neg = true;
            ++i_;
        }
        if (i_ >= n_ || p_[i_] < '0' || p_[i_] > '9') return bad("bad number");
        if (p_[i_] == '0' && i_ + 1 < n_ && p_[i_ + 1] >= '0' && p_[i_ + 1] <= '9') return bad("leading zero");
        uint64_t mag = 0;
        bool overflow = false;
        while (i_ < n_ && p_[i_] >= '0' && p_[i_] <= '9') {
            unsigned d = unsigned(p_[i_++] - '0');
            if (mag > (UINT64_MAX - d) / 10) overflow = true;
            else mag = mag * 10 + d;
        }
        bool integer = true;
        if (i_ < n_ && p_[i_] == '.') {
            integer = false;
            ++i_;
            if (i_ >= n_ || p_[i_] < '0' || p_[i_] > '9') return bad("bad fraction");
            while (i_ < n_ && p_[i_] >= '0' && p_[i_] <= '9') ++i_;
        }
        if (i_ < n_ && (p_[i_] == 'e' || p_[i_] == 'E')) {
            integer = false;
            ++i_;
            if (i_ < n_ && (p_[i_] == '+' || p_[i_] == '-')) ++i_;
            if (i_ >= n_ || p_[i_] < '0' || p_[i_] > '9') return bad("bad exponent");
            while (i_ < n_ && p_[i_] >= '0' && p_[i_] <= '9') ++i_;
        }
        // strtod needs a terminated copy; numbers are short.
        if (i_ - start > 400) return bad("number too long");
        std::string text(p_ + start, i_ - start);
        v->number = std::strtod(text.c_str(), nullptr);  // may be +-inf for huge literals: still a number
        v->is_integer = integer;
        if (integer && !overflow) {
            if (!neg || mag == 0) {  // -0 is the integer 0
                v->is_u64 = true;
                v->u64 = mag;
            } else if (mag <= uint64_t(INT64_MAX) + 1) {
                v->is_i64 = true;
                v->i64 = mag == uint64_t(INT64_MAX) + 1 ? INT64_MIN : -int64_t(mag);
            }
        }
        return true;
    }
};

}  // namespace

bool parse(const char* data, size_t size, Value* out, std::string* error, const Limits& limits) {
    *out = Value();
    return Parser(data, size, limits).run(out, error);
}

}  // namespace json
}  // namespace wl
