// pinlab conform --random N --seed S — the two host-independent parts of the
// randomized differential mode: a generator of random scenarios made only of
// operations the host kernel can also run (so `conform` compares every
// observation), and a delta-debugging shrinker for the ones that disagree.
//
// Neither touches the host or the model: the generator writes .pin text
// (docs/SCENARIOS.md), the shrinker asks a caller-supplied predicate whether
// a candidate text still fails (the caller parses and runs it on both sides).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace pl::oracle {

// A random scenario (8..30 statements after the `config` line), a function of
// (seed, index) only: the same pair gives the same text on every run and
// machine (a local std::mt19937_64, no global state). Biased towards what
// finds pinning bugs: a few anonymous/shmem/memfd/file/hugetlb mappings
// (some 2M-aligned THP candidates), pins through the doors the host has
// (io_uring fixed buffers, vmsplice, O_DIRECT, process_vm_readv/writev),
// fork, copy-on-write writes in parent and child, mprotect, madvise, munmap
// and mremap of pinned ranges, and observations kept in variables (`vN =
// read ...`, `page T:ADDR mapped|anon`, `same_frame`, the FOLL_PIN counter
// balance) so that `conform` compares them.
std::string random_scenario(uint64_t seed, uint64_t index);

// Whether `text` expands and parses as a scenario (every matrix expansion);
// false with the located diagnostic in *why (may be null).
bool scenario_text_parses(const std::string& text, std::string* why);

// Delta debugging (Zeller's ddmin) of a failing scenario: first over its
// statement lines, then single lines until none can go, then numbers
// (`VAR+N` offsets to VAR, sizes and offsets towards 4K) and `at ADDR`
// hints. The `scenario`, `config` and `matrix` lines are never removed. A
// number is never shrunk so far that a kept line reaches past the end of a
// mapping the text sizes (`m0 = mmap 4K` with `read m0+8K`): there the
// model's and the host's layouts differ, and the shrunk text would fail for
// another reason. A candidate is kept only if still_fails(candidate) is true
// (a candidate that does not parse must make it return false); `text` itself
// is assumed to fail and is not re-run. still_fails is called at most
// max_tries times (never twice on one text); *tries_used (may be null) gets
// the number of calls. Returns the smallest failing text found (comment and
// blank lines dropped if that still fails), without a header: the caller
// adds one (seed, index, tries).
std::string shrink_scenario(const std::string& text, const std::function<bool(const std::string&)>& still_fails,
                            int max_tries, int* tries_used);

}  // namespace pl::oracle
