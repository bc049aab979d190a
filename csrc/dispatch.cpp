// The one place that chooses the decoders' instruction set (weightless.h, decode.h).
#include <cctype>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "decode.h"
#include "weightless.h"

namespace wl {
namespace {

struct Isa {
    const char* name;
    const detail::Kernels* kernels;  // nullptr: the scalar reference
};

const char* const kKnownIsas[] = {"scalar", "avx2", "avx512", "neon"};

// Also checks that the OS saves the YMM (ZMM) registers.
bool cpu_supports(const char* feature) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    return std::string(feature) == "avx2" ? __builtin_cpu_supports("avx2") : __builtin_cpu_supports("avx512f");
#else
    (void)feature;
    return false;
#endif
}

// Usable ISAs, slowest first. The CPU does not change while we run: computed once.
const std::vector<Isa>& usable() {
    static const std::vector<Isa> isas = [] {
        std::vector<Isa> v{{"scalar", nullptr}};
        if (const detail::Kernels* k = detail::avx2_kernels())
            if (cpu_supports("avx2")) v.push_back({"avx2", k});
        if (const detail::Kernels* k = detail::avx512_kernels())
            if (cpu_supports("avx512f")) v.push_back({"avx512", k});
        if (const detail::Kernels* k = detail::neon_kernels()) v.push_back({"neon", k});  // baseline on AArch64
        return v;
    }();
    return isas;
}

std::string joined(const std::vector<Isa>& isas) {
    std::string s;
    for (const Isa& i : isas) s += (s.empty() ? "" : ", ") + std::string(i.name);
    return s;
}

// The ISA the decoders use now; the environment is read on every call, so a test or a user can
// change it between calls.
const Isa& active() {
    const std::vector<Isa>& isas = usable();
    const char* env = std::getenv("WEIGHTLESS_ISA");
    if (env == nullptr || *env == '\0') return isas.back();
    std::string want(env);
    for (char& c : want) c = char(std::tolower(static_cast<unsigned char>(c)));
    for (const Isa& i : isas)
        if (want == i.name) return i;
    bool known = false;
    for (const char* k : kKnownIsas) known |= want == k;
    throw std::invalid_argument("WEIGHTLESS_ISA=" + std::string(env) +
                                (known ? " is not supported by this build on this CPU" : " is not an instruction set") +
                                "; supported here: " + joined(isas) + " (or unset it for the fastest)");
}

}  // namespace

std::vector<std::string> supported_isas() {
    std::vector<std::string> names;
    for (const Isa& i : usable()) names.emplace_back(i.name);
    return names;
}

const char* active_isa() { return active().name; }

namespace detail {
const Kernels* active_kernels() { return active().kernels; }
}  // namespace detail

}  // namespace wl
