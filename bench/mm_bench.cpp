// pinlab — micro-benchmarks of the mm substrate's hot paths: the fault path,
// copy-on-write, fork of a large address space, the lockless page-table walk
// GUP-fast will use, and frame allocation. Per-page costs are reported as
// items per second (one item = one 4 KiB page).
#include <benchmark/benchmark.h>

#include <cstring>

#include "base/sync/rcu.h"
#include "gup/foll_flags.h"
#include "kernel/kernel.h"
#include "kernel/task.h"
#include "mm/internal.h"
#include "pinlab/kapi.h"

namespace {

constexpr unsigned long kPage = 4096;

struct Machine {
    explicit Machine(const char* cfg = "ram=8G hugetlb_2m=0 hugetlb_1g=0 thp=never") : k(pl_kernel_new(cfg)) {
        t = pl_task_new(k);
    }
    ~Machine() { pl_kernel_free(k); }
    unsigned long map(unsigned long len) {
        return static_cast<unsigned long>(
            pl_mmap(t, 0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, nullptr, 0));
    }
    void touch(unsigned long a, unsigned long len) {
        for (unsigned long off = 0; off < len; off += kPage) pl_write(t, a + off, "x", 1);
    }
    pl_kernel* k;
    task_struct* t;
};

// An anonymous write fault per page (allocation, rmap, PTE install).
void BM_AnonWriteFault(benchmark::State& state) {
    const unsigned long len = static_cast<unsigned long>(state.range(0)) << 20;
    Machine m;
    for (auto _ : state) {
        unsigned long a = m.map(len);
        m.touch(a, len);
        state.PauseTiming();
        pl_munmap(m.t, a, len);
        state.ResumeTiming();
    }
    state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(len / kPage));
}
BENCHMARK(BM_AnonWriteFault)->Arg(16)->Arg(64)->Unit(benchmark::kMillisecond);

// A write to a page shared with a child after fork: wp_page_copy().
void BM_CopyOnWrite(benchmark::State& state) {
    const unsigned long len = 16UL << 20;
    Machine m;
    unsigned long a = m.map(len);
    m.touch(a, len);
    for (auto _ : state) {
        state.PauseTiming();
        task_struct* c = pl_fork(m.t);
        state.ResumeTiming();
        m.touch(a, len);
        state.PauseTiming();
        pl_exit(c);
        state.ResumeTiming();
    }
    state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(len / kPage));
}
BENCHMARK(BM_CopyOnWrite)->Unit(benchmark::kMillisecond);

// fork() of a populated address space (copy_page_range()); with Arg(1) every
// page looks pinned, so fork copies each one (the early-COW path); Arg(2) is
// the same with real pins, pin_user_pages_fast(FOLL_WRITE) of the whole range
// (copy_present_page() for each pinned anonymous page, as upstream).
void BM_ForkLargeMm(benchmark::State& state) {
    const unsigned long len = 64UL << 20;
    Machine m;
    unsigned long a = m.map(len);
    m.touch(a, len);
    pl::Kernel& k = *reinterpret_cast<pl::Kernel*>(m.k);
    pl::MmStruct& mm = *reinterpret_cast<pl::Task*>(m.t)->mm;
    std::vector<pl::Folio*> pinned;
    std::vector<page*> pins;
    if (state.range(0) == 2) {
        pl_set_current(m.t);
        pins.resize(len / kPage);
        if (pin_user_pages_fast(a, static_cast<int>(pins.size()), pl::FOLL_WRITE, pins.data()) !=
            static_cast<int>(pins.size()))
            state.SkipWithError("pin_user_pages_fast came up short");
    } else if (state.range(0)) {
        mm.set_flag(pl::MMF_HAS_PINNED);
        for (unsigned long off = 0; off < len; off += kPage) {
            auto* f = pl::page_folio(reinterpret_cast<pl::Page*>(pl_virt_to_page(m.t, a + off)));
            f->ref_add(pl::GUP_PIN_COUNTING_BIAS);
            k.ref_note(f, pl::GUP_PIN_COUNTING_BIAS);
            pinned.push_back(f);
        }
    }
    for (auto _ : state) {
        task_struct* c = pl_fork(m.t);
        state.PauseTiming();
        pl_exit(c);
        state.ResumeTiming();
    }
    for (pl::Folio* f : pinned) {
        k.ref_note(f, -pl::GUP_PIN_COUNTING_BIAS);
        f->ref_sub_and_test(pl::GUP_PIN_COUNTING_BIAS);
    }
    if (!pins.empty()) {
        unpin_user_pages(pins.data(), pins.size());
        pl_set_current(nullptr);
    }
    state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(len / kPage));
}
BENCHMARK(BM_ForkLargeMm)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond);

// The lockless walk GUP-fast performs: an RCU section and one leaf lookup per
// page, with no lock and no allocation.
void BM_LocklessWalk(benchmark::State& state) {
    const unsigned long len = 64UL << 20;
    Machine m;
    unsigned long a = m.map(len);
    m.touch(a, len);
    pl::MmStruct& mm = *reinterpret_cast<pl::Task*>(m.t)->mm;
    for (auto _ : state) {
        pl::sync::RcuReadGuard g;
        uint64_t sum = 0;
        for (unsigned long off = 0; off < len; off += kPage) sum += mm.pgtable.find_leaf(a + off).entry;
        benchmark::DoNotOptimize(sum);
    }
    state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(len / kPage));
}
BENCHMARK(BM_LocklessWalk)->Unit(benchmark::kMillisecond);

// The buddy allocator's order-0 fast path.
void BM_AllocFreeOrder0(benchmark::State& state) {
    Machine m;
    pl::PhysMem& mem = *reinterpret_cast<pl::Kernel*>(m.k)->mem;
    for (auto _ : state) {
        auto f = mem.alloc_folio(0, pl::GFP_HIGHUSER_MOVABLE);
        mem.folio_put(*f);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AllocFreeOrder0);

}  // namespace
