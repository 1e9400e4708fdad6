// pinlab — micro-benchmarks of FOLL_LONGTERM pins (issue 7): pin_user_pages(
// FOLL_WRITE | FOLL_LONGTERM) of range(0) MiB of 4 KiB anonymous pages under
// mmap_read_lock, as gup_test's PIN_LONGTERM_BENCHMARK does,
//  * BM_LongtermPinMigrate: the pages sit in ZONE_MOVABLE, so the call pins
//    them, finds them unpinnable, drops every pin, migrates them out
//    (check_and_migrate_movable_pages() → migrate_pages()) and pins again;
//  * BM_LongtermPinPinnable: the same pages once they are outside it, the
//    plain longterm pin (one round, nothing to migrate).
// Only the pin is timed; the unpin, the fresh mapping and its pre-fault (one
// zero byte stored per page, as gup_test does) are not. Per-page costs are
// items per second (one item = one 4 KiB page); the migrated_pages counter
// (pgmigrate_success per iteration) says the first one really migrates and
// the second one does not.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "gup/foll_flags.h"
#include "pinlab/kapi.h"

namespace {

constexpr unsigned long kPage = 4096;
constexpr unsigned long kMiB = 1UL << 20;

// A kernel sized as `pinlab bench` sizes it (4 GiB + twice the buffer), with
// a ZONE_MOVABLE of the buffer + 1 GiB, where anonymous memory goes first,
// and ZONE_NORMAL keeping room for every migration target.
class LongtermMachine {
public:
    explicit LongtermMachine(unsigned long mib) : len_(mib * kMiB) {
        const std::string cfg = "ram=" + std::to_string(4096 + 2 * mib) + "M movable=" + std::to_string(mib + 1024) +
                                "M hugetlb_2m=0 hugetlb_1g=0 thp=never";
        k_ = pl_kernel_new(cfg.c_str());
        if (k_) t_ = pl_task_new(k_);
        pages_.resize(len_ / kPage);
    }
    ~LongtermMachine() {
        if (addr_) pl_munmap(t_, addr_, len_);
        if (k_) pl_kernel_free(k_);
    }
    LongtermMachine(const LongtermMachine&) = delete;
    LongtermMachine& operator=(const LongtermMachine&) = delete;

    // A fresh mapping, every page faulted in (so in ZONE_MOVABLE).
    bool map_fresh() {
        if (!t_) return false;
        if (addr_) pl_munmap(t_, addr_, len_);
        addr_ = 0;
        const long a = pl_mmap(t_, 0, len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, nullptr, 0);
        if (a < 0) return false;
        addr_ = static_cast<unsigned long>(a);
        const char zero = 0;
        for (unsigned long off = 0; off < len_; off += kPage)
            if (pl_write(t_, addr_ + off, &zero, 1) != 1) return false;
        return true;
    }
    // pin_user_pages(FOLL_WRITE | FOLL_LONGTERM) of the whole mapping.
    long pin() {
        pl_set_current(t_);
        mmap_read_lock(pl_task_mm(t_));
        const long n = pin_user_pages(addr_, pages_.size(), pl::FOLL_WRITE | pl::FOLL_LONGTERM, pages_.data());
        mmap_read_unlock(pl_task_mm(t_));
        pl_set_current(nullptr);
        return n;
    }
    void unpin(long n) {
        if (n > 0) unpin_user_pages(pages_.data(), static_cast<unsigned long>(n));
    }
    long nr_pages() const { return static_cast<long>(pages_.size()); }
    unsigned long migrated() const { return k_ ? pl_vmstat(k_, "pgmigrate_success") : 0; }

private:
    unsigned long len_;
    pl_kernel* k_ = nullptr;
    task_struct* t_ = nullptr;
    unsigned long addr_ = 0;
    std::vector<page*> pages_;
};

void longterm_pin(benchmark::State& state, bool from_movable) {
    LongtermMachine m(static_cast<unsigned long>(state.range(0)));
    if (!m.map_fresh()) {
        state.SkipWithError("setting up the pre-faulted mapping failed");
        return;
    }
    if (!from_movable) m.unpin(m.pin());  // moved out once, untimed
    const unsigned long migrated0 = m.migrated();
    for (auto _ : state) {
        const long n = m.pin();
        state.PauseTiming();
        m.unpin(n);
        if (n != m.nr_pages()) {
            state.SkipWithError("pin_user_pages(FOLL_LONGTERM) came up short");
            break;
        }
        if (from_movable && !m.map_fresh()) {
            state.SkipWithError("re-faulting the mapping failed");
            break;
        }
        state.ResumeTiming();
    }
    state.SetItemsProcessed(state.iterations() * m.nr_pages());
    state.counters["migrated_pages"] = benchmark::Counter(static_cast<double>(m.migrated() - migrated0),
                                                          benchmark::Counter::kAvgIterations);
}

void BM_LongtermPinMigrate(benchmark::State& state) { longterm_pin(state, true); }
void BM_LongtermPinPinnable(benchmark::State& state) { longterm_pin(state, false); }

// 64 MiB and 1 GiB, as issue 7's target names them. The migrating case
// re-faults the whole mapping between iterations, so its iteration count is
// fixed to keep the untimed part bounded.
BENCHMARK(BM_LongtermPinMigrate)->Arg(64)->Iterations(20)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LongtermPinMigrate)->Arg(1024)->Iterations(3)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LongtermPinPinnable)->Arg(64)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_LongtermPinPinnable)->Arg(1024)->Iterations(5)->Unit(benchmark::kMillisecond);

}  // namespace
