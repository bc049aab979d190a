// The C++ tests' tiny harness: check() counts, report() prints "N passed, N failed" (a line CI
// reads) and gives the exit code. No framework, so the tests cross-compile with nothing else.
#pragma once

#include <cstdio>
#include <string>

namespace wl_test {

inline int passed = 0, failed = 0;

inline void check(bool ok, const std::string& what) {
    if (ok) {
        ++passed;
    } else {
        ++failed;
        std::printf("FAIL: %s\n", what.c_str());
    }
}

// Runs the test body, counting an escaped exception as a failure.
template <typename Body>
int run_tests(Body&& body) {
    try {
        body();
    } catch (const std::exception& e) {
        std::printf("FAIL: unexpected exception: %s\n", e.what());
        ++failed;
    }
    std::printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

}  // namespace wl_test
