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
#include <sys/mman.h>

#include <memory>
#include <stdexcept>
#include <string>

#include "base/sync/atomic.h"
#include "explore/explorer.h"
#include "gup/foll_flags.h"
#include "pinlab/kapi.h"

namespace {

using namespace pl::explore;

TestFn counter_test(bool fetch_add) {
    return [fetch_add] {
        auto v = std::make_shared<pl::sync::Atomic<int>>(0);
        Execution e;
        for (int i = 0; i < 2; ++i)
            e.threads.push_back([v, fetch_add] {
                if (fetch_add) v->fetch_add(1);
                else v->store(v->load() + 1);
            });
        e.check = [v]() -> std::optional<std::string> {
            if (v->load() != 2) return "lost update";
            return std::nullopt;
        };
        return e;
    };
}

// The same execution as tests/unit/explore_test.cpp's gup_fast_vs_fork_test.
TestFn gup_fast_vs_fork_test() {
    return [] {
        struct Shared {
            pl_kernel* k = nullptr;
            task_struct* t = nullptr;
            unsigned long addr = 0;
        };
        auto s = std::make_shared<Shared>();
        s->k = pl_kernel_new("ram=64M");
        if (!s->k) throw std::runtime_error(pl_last_error());
        s->t = pl_task_new(s->k);
        long a = pl_mmap(s->t, 0, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, nullptr, 0);
        if (a <= 0 || pl_memset(s->t, static_cast<unsigned long>(a), 0x5a, 2 * 4096) != 2 * 4096)
            throw std::runtime_error(std::string("set-up: ") + pl_last_error());
        s->addr = static_cast<unsigned long>(a);
        Execution e;
        e.kernel = s->k;
        e.threads.push_back([s] {
            pl_set_current(s->t);
            for (int i = 0; i < 2; ++i) {
                page* pages[2] = {};
                int n = ::pin_user_pages_fast(s->addr, 2, pl::FOLL_WRITE, pages);
                if (n > 0) unpin_user_pages(pages, static_cast<unsigned long>(n));
            }
        });
        e.threads.push_back([s] {
            pl_set_current(s->t);
            task_struct* c = pl_fork(s->t);
            if (!c) return;
            const uint64_t v = 0x1234;
            (void)pl_write(s->t, s->addr + 8, &v, sizeof v);
            pl_exit(c);
        });
        e.teardown = [s] { pl_kernel_free(s->k); };
        return e;
    };
}

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

void BM_ExploreFetchAddCounter(benchmark::State& state) { run(state, counter_test(true), false); }
void BM_ExploreLostUpdateCounter(benchmark::State& state) { run(state, counter_test(false), true); }
void BM_ExploreGupFastVsFork(benchmark::State& state) { run(state, gup_fast_vs_fork_test(), false); }

// Wall-clock time: the calling thread mostly waits for the model threads.
BENCHMARK(BM_ExploreFetchAddCounter)->UseRealTime();
BENCHMARK(BM_ExploreLostUpdateCounter)->UseRealTime();
BENCHMARK(BM_ExploreGupFastVsFork)->UseRealTime();

}  // namespace
