// pinlab unit tests — how far the race tests (explore_race_*_test.cpp) search
// the fixed configurations exhaustively.
#pragma once

namespace pl::test {

// Preemption bound 2 (the race corpus's promise, examples/races) in normal
// builds. Under AddressSanitizer an execution costs ~5x more and bound 2 is
// ~10x the schedules of bound 1: there the fixed configurations are
// exhausted at bound 1 (every execution still checked for leaks and
// errors), and `pinlab explore --check-expected examples/races` in the
// release build proves bound 2.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr int kExhaustBound = 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr int kExhaustBound = 1;
#else
inline constexpr int kExhaustBound = 2;
#endif
#else
inline constexpr int kExhaustBound = 2;
#endif

}  // namespace pl::test
