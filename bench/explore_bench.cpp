// pinlab — the concurrency explorer's speed (issue 8): executions per second
// of run_execution() under the random strategy for
//  - two threads each doing one fetch_add on a shared counter (no race),
//  - two threads each doing a load and a store (the lost update: about half
//    the executions fail the check, which costs nothing extra),
//  - one pl_kernel: pin_user_pages_fast + unpin twice racing fork + a COW
//    write + the child's exit (~3,000 interleaving points per execution).
// One benchmark iteration is one execution (set-up, the serialised threads,
// the check and the teardown); items per second = executions per second.
//   build/<dir>/bench/pinlab_mm_bench --benchmark_filter=Explore --benchmark_repetitions=5
// (items_per_second is executions per second of wall-clock time)
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>

#include "explore/explorer.h"
#include "explore_workloads.h"  // tests/unit: the same executions as the unit tests

namespace {

using namespace pl::explore;

void run(benchmark::State& state, const TestFn& test, bool violations_expected) {
    RandomStrategy strategy(1);
    uint64_t failed = 0, steps = 0;
    for (auto _ : state) {
        (void)strategy.next_execution();
        RunRecord r = run_execution(test, strategy, {});
        steps += r.steps;
        if (r.violation) {
            ++failed;
            if (!violations_expected || r.violation.kind != ViolationKind::Check) {
                state.SkipWithError(("unexpected violation: " + r.violation.message).c_str());
                break;
            }
        }
    }
    state.SetItemsProcessed(state.iterations());
    state.counters["steps/exec"] = state.iterations() ? double(steps) / double(state.iterations()) : 0;
    state.counters["failed"] = double(failed);
}

void BM_ExploreFetchAddCounter(benchmark::State& state) { run(state, counter_test(Inc::FetchAdd), false); }
void BM_ExploreLostUpdateCounter(benchmark::State& state) { run(state, counter_test(Inc::LoadStore), true); }
void BM_ExploreGupFastVsFork(benchmark::State& state) { run(state, gup_fast_vs_fork_test(), false); }

// Wall-clock time: the calling thread mostly waits for the model threads.
BENCHMARK(BM_ExploreFetchAddCounter)->UseRealTime();
BENCHMARK(BM_ExploreLostUpdateCounter)->UseRealTime();
BENCHMARK(BM_ExploreGupFastVsFork)->UseRealTime();

}  // namespace
