// The one place that chooses the decoders' instruction set (weightless.h, decode.h).
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <mutex>
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
    if (std::string(feature) == "avx2") return __builtin_cpu_supports("avx2");
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
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
            if (cpu_supports("avx512")) v.push_back({"avx512", k});  // F and BW
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

// The ISA named `name` (case-insensitive; null or empty: the fastest). `what` names the source
// in the error: "WEIGHTLESS_ISA=" or "set_isa: ".
const Isa& lookup(const char* name, const std::string& what) {
    const std::vector<Isa>& isas = usable();
    if (name == nullptr || *name == '\0') return isas.back();
    std::string want(name);
    for (char& c : want) c = char(std::tolower(static_cast<unsigned char>(c)));
    for (const Isa& i : isas)
        if (want == i.name) return i;
    bool known = false;
    for (const char* k : kKnownIsas) known |= want == k;
    throw std::invalid_argument(what + std::string(name) +
                                (known ? " is not supported by this build on this CPU" : " is not an instruction set") +
                                "; supported here: " + joined(isas) + " (or unset it for the fastest)");
}

// The selection: read from WEIGHTLESS_ISA at the first decode call, once, or made by set_isa.
// A bad WEIGHTLESS_ISA is remembered as its error, thrown by every decode call until set_isa.
std::atomic<const Isa*> g_selected{nullptr};
std::mutex g_mutex;
bool g_environment_read = false;
std::string g_environment_error;

const Isa& active() {
    if (const Isa* s = g_selected.load(std::memory_order_acquire)) return *s;
    std::lock_guard<std::mutex> lock(g_mutex);
    if (!g_environment_read) {
        g_environment_read = true;
        try {
            g_selected.store(&lookup(std::getenv("WEIGHTLESS_ISA"), "WEIGHTLESS_ISA="), std::memory_order_release);
        } catch (const std::invalid_argument& e) {
            g_environment_error = e.what();
        }
    }
    if (const Isa* s = g_selected.load(std::memory_order_acquire)) return *s;
    throw std::invalid_argument(g_environment_error);
}

}  // namespace

const char* set_isa(const char* name) {
    const Isa& isa = lookup(name, "set_isa: ");
    std::lock_guard<std::mutex> lock(g_mutex);
    g_environment_read = true;
    g_selected.store(&isa, std::memory_order_release);
    return isa.name;
}

std::vector<std::string> supported_isas() {
    std::vector<std::string> names;
    for (const Isa& i : usable()) names.emplace_back(i.name);
    return names;
}

const char* active_isa() { return active().name; }

namespace detail {
const Kernels* active_kernels() { return active().kernels; }

void reread_isa_environment() {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_environment_read = false;
    g_environment_error.clear();
    g_selected.store(nullptr, std::memory_order_release);
}
}  // namespace detail

}  // namespace wl
