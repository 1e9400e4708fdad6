// pinlab — micro-benchmarks of the pin hot paths (issue 7): pin_user_pages_fast
// + unpin_user_pages over 4 KiB, THP and hugetlb backings, unpin batching by
// folio, get_user_pages_fast + put_page, the try_grab_folio()/gup_put_folio()
// primitive alone, and several threads pinning one shared mapping (gup_test
// -j). Per-page costs are reported as items per second (one item = one
// 4 KiB page). Every mapping is pre-faulted from "user space" first, as
// gup_test does (one zero byte written per page), so GUP-fast finds every
// page present and the timed loop never faults.
#include <benchmark/benchmark.h>

#include <memory>
#include <mutex>
#include <vector>

#include "gup/foll_flags.h"
#include "gup/pin_accounting.h"
#include "kernel/kernel.h"
#include "mm/internal.h"
#include "pinlab/kapi.h"

namespace {

constexpr unsigned long kPage = 4096;
constexpr unsigned long kPmd = 2UL << 20;
constexpr unsigned long kLen = 64UL << 20;  // 16384 pages, 32 PMDs
constexpr long kLenPages = static_cast<long>(kLen / kPage);

enum class Backing { Small, Thp, Hugetlb };

// One booted kernel with one task and one pre-faulted 64 MiB mapping.
class PinMachine {
public:
    explicit PinMachine(Backing b) {
        k_ = pl_kernel_new("ram=4G hugetlb_2m=40 hugetlb_1g=0 thp=madvise");
        if (!k_) return;
        t_ = pl_task_new(k_);
        int flags = MAP_PRIVATE | MAP_ANONYMOUS;
        if (b == Backing::Hugetlb) flags |= MAP_HUGETLB;
        // A whole number of PMDs: the model aligns it to 2 MiB
        // (thp_get_unmapped_area()), so every PMD can hold a THP.
        const long a = pl_mmap(t_, 0, kLen, PROT_READ | PROT_WRITE, flags, nullptr, 0);
        if (a < 0 || (a & static_cast<long>(kPmd - 1))) return;
        addr_ = static_cast<unsigned long>(a);
        if (b == Backing::Thp) pl_madvise(t_, addr_, kLen, MADV_HUGEPAGE);
        if (b == Backing::Small) pl_madvise(t_, addr_, kLen, MADV_NOHUGEPAGE);
        const char zero = 0;
        for (unsigned long off = 0; off < kLen; off += kPage)
            if (pl_write(t_, addr_ + off, &zero, 1) != 1) return;
        // The backing must be what was asked for, or the numbers mean nothing.
        for (unsigned long off = 0; off < kLen; off += kPage) {
            page* p = pl_virt_to_page(t_, addr_ + off);
            if (!p || (PageCompound(p) != 0) != (b != Backing::Small)) return;
        }
        ready_ = true;
    }
    ~PinMachine() {
        if (k_) pl_kernel_free(k_);
    }
    PinMachine(const PinMachine&) = delete;
    PinMachine& operator=(const PinMachine&) = delete;

    // Tells the benchmark why it cannot run; true when it can.
    bool usable(benchmark::State& state) const {
        if (!ready_) state.SkipWithError("setting up the pre-faulted mapping failed");
        return ready_;
    }
    pl_kernel* k() const { return k_; }
    task_struct* t() const { return t_; }
    unsigned long addr() const { return addr_; }
    pl::Kernel& kern() const { return *reinterpret_cast<pl::Kernel*>(k_); }

private:
    pl_kernel* k_ = nullptr;
    task_struct* t_ = nullptr;
    unsigned long addr_ = 0;
    bool ready_ = false;
};

// Sets the calling thread's current task for the scope (the non-remote GUP
// calls use pl_current()'s mm).
class CurrentTask {
public:
    explicit CurrentTask(task_struct* t) { pl_set_current(t); }
    ~CurrentTask() { pl_set_current(nullptr); }
    CurrentTask(const CurrentTask&) = delete;
    CurrentTask& operator=(const CurrentTask&) = delete;
};

// Pins `n` pages from `addr` in one call; false (and the benchmark skipped) on
// a short or failed pin.
bool pin_all(benchmark::State& state, unsigned long addr, long n, std::vector<page*>& pages) {
    const int got = pin_user_pages_fast(addr, static_cast<int>(n), pl::FOLL_WRITE, pages.data());
    if (got == n) return true;
    if (got > 0) unpin_user_pages(pages.data(), static_cast<unsigned long>(got));
    state.SkipWithError("pin_user_pages_fast came up short");
    return false;
}

// The pre-fault every benchmark here (and gup_test) does: one zero byte
// stored per 4 KiB page of a fresh 64 MiB MADV_NOHUGEPAGE mapping, i.e.
// do_anonymous_page() plus a store that changes no byte (the unmap is
// untimed).
void BM_PreFaultZeroStore(benchmark::State& state) {
    pl_kernel* k = pl_kernel_new("ram=4G hugetlb_2m=0 hugetlb_1g=0 thp=madvise");
    task_struct* t = pl_task_new(k);
    const char zero = 0;
    for (auto _ : state) {
        const long a = pl_mmap(t, 0, kLen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, nullptr, 0);
        if (a < 0) {
            state.SkipWithError("mmap failed");
            break;
        }
        const auto addr = static_cast<unsigned long>(a);
        pl_madvise(t, addr, kLen, MADV_NOHUGEPAGE);
        for (unsigned long off = 0; off < kLen; off += kPage) pl_write(t, addr + off, &zero, 1);
        state.PauseTiming();
        pl_munmap(t, addr, kLen);
        state.ResumeTiming();
    }
    state.SetItemsProcessed(state.iterations() * kLenPages);
    pl_kernel_free(k);
}
BENCHMARK(BM_PreFaultZeroStore)->Unit(benchmark::kMillisecond);

// pin_user_pages_fast(FOLL_WRITE) of range(0) pages + unpin_user_pages() of
// the array: gup_test's PIN_FAST_BENCHMARK with -n range(0), on one backing.
void pin_unpin(benchmark::State& state, Backing b) {
    PinMachine m(b);
    if (!m.usable(state)) return;
    CurrentTask cur(m.t());
    const long n = state.range(0);
    std::vector<page*> pages(static_cast<size_t>(n));
    for (auto _ : state) {
        if (!pin_all(state, m.addr(), n, pages)) break;
        unpin_user_pages(pages.data(), static_cast<unsigned long>(n));
    }
    state.SetItemsProcessed(state.iterations() * n);
}

void BM_PinUnpin4K(benchmark::State& state) { pin_unpin(state, Backing::Small); }
BENCHMARK(BM_PinUnpin4K)->Arg(1)->Arg(512)->Arg(kLenPages);

// The same on 2 MiB folios: the cost per 4 KiB page (the fast path takes one
// reference per subpage, grouped per folio).
void BM_PinUnpinThp(benchmark::State& state) { pin_unpin(state, Backing::Thp); }
BENCHMARK(BM_PinUnpinThp)->Arg(1)->Arg(512)->Arg(kLenPages);

void BM_PinUnpinHugetlb(benchmark::State& state) { pin_unpin(state, Backing::Hugetlb); }
BENCHMARK(BM_PinUnpinHugetlb)->Arg(1)->Arg(512)->Arg(kLenPages);

// Unpinning alone, 16384 pages: range(0) 0 = 16384 small folios, 1 = 32 THP
// folios; range(1) 0 = one unpin_user_pages() of the array (runs of pages of
// one folio are released together, as upstream's gup_folio_next() batches
// them), 1 = unpin_user_page() per page. The pin is untimed.
void BM_Unpin(benchmark::State& state) {
    PinMachine m(state.range(0) ? Backing::Thp : Backing::Small);
    if (!m.usable(state)) return;
    CurrentTask cur(m.t());
    const bool per_page = state.range(1) != 0;
    std::vector<page*> pages(static_cast<size_t>(kLenPages));
    for (auto _ : state) {
        state.PauseTiming();
        const bool ok = pin_all(state, m.addr(), kLenPages, pages);
        state.ResumeTiming();
        if (!ok) break;
        if (per_page) {
            for (page* p : pages) unpin_user_page(p);
        } else {
            unpin_user_pages(pages.data(), pages.size());
        }
    }
    state.SetItemsProcessed(state.iterations() * kLenPages);
}
BENCHMARK(BM_Unpin)->ArgNames({"thp", "per_page"})->Args({0, 0})->Args({1, 0})->Args({0, 1})->Args({1, 1});

// get_user_pages_fast(FOLL_WRITE) of range(0) pages + put_page() per page:
// gup_test's GUP_FAST_BENCHMARK (FOLL_GET references, one put per page).
void BM_GupFastPutPage(benchmark::State& state) {
    PinMachine m(Backing::Small);
    if (!m.usable(state)) return;
    CurrentTask cur(m.t());
    const long n = state.range(0);
    std::vector<page*> pages(static_cast<size_t>(n));
    for (auto _ : state) {
        const int got = get_user_pages_fast(m.addr(), static_cast<int>(n), pl::FOLL_WRITE, pages.data());
        for (int i = 0; i < got; ++i) put_page(pages[static_cast<size_t>(i)]);
        if (got != n) {
            state.SkipWithError("get_user_pages_fast came up short");
            break;
        }
    }
    state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_GupFastPutPage)->Arg(1)->Arg(512)->Arg(kLenPages);

// The reference primitive alone: try_grab_folio(FOLL_PIN) + gup_put_folio()
// of one reference on one folio (range(0) 0: a small folio, where a pin is
// GUP_PIN_COUNTING_BIAS on _refcount; 1: a THP, where it is +1 _refcount and
// +1 _pincount). No page-table walk. This is the slow path's primitive
// (follow_page_mask() → try_grab_folio()); GUP-fast grabs through its own
// try_grab_folio_fast() (grab_fast(), local to src/gup/gup_fast.cpp) and
// releases through gup_put_folio() too.
void BM_GrabPutFolio(benchmark::State& state) {
    PinMachine m(state.range(0) ? Backing::Thp : Backing::Small);
    if (!m.usable(state)) return;
    CurrentTask cur(m.t());
    pl::Kernel& k = m.kern();
    pl::Folio* f = pl::page_folio(reinterpret_cast<pl::Page*>(pl_virt_to_page(m.t(), m.addr())));
    for (auto _ : state) {
        if (!pl::try_grab_folio(k, f, 1, pl::FOLL_PIN).ok()) {
            state.SkipWithError("try_grab_folio failed");
            break;
        }
        pl::gup_put_folio(k, f, 1, pl::FOLL_PIN);
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_GrabPutFolio)->ArgName("thp")->Arg(0)->Arg(1);

// Several threads pinning the one mapping of one task, as gup_test -j does:
// each thread sets the same current task and pins the whole 64 MiB in calls
// of 512 pages, then unpins its array. The threads contend on the same
// folios' reference counts. Real time, so items/s is the threads' combined
// rate.
PinMachine* shared_machine() {
    // Built once by whichever thread comes first and kept for the process's
    // life: Google Benchmark's threads reach the loop at different times and
    // runs with 1 and 2 threads share it (frees nothing: a benchmark binary).
    static PinMachine* m = nullptr;
    static std::once_flag once;
    std::call_once(once, [] { m = new PinMachine(Backing::Small); });
    return m;
}

void BM_PinSharedMappingThreads(benchmark::State& state) {
    PinMachine* m = shared_machine();
    if (!m->usable(state)) return;
    CurrentTask cur(m->t());
    constexpr long kPerCall = 512;
    std::vector<page*> pages(static_cast<size_t>(kLenPages));
    for (auto _ : state) {
        long done = 0;
        while (done < kLenPages) {
            const unsigned long a = m->addr() + static_cast<unsigned long>(done) * kPage;
            const int got = pin_user_pages_fast(a, static_cast<int>(kPerCall), pl::FOLL_WRITE, pages.data() + done);
            if (got > 0) done += got;
            if (got != kPerCall) break;
        }
        unpin_user_pages(pages.data(), static_cast<unsigned long>(done));
        if (done != kLenPages) {
            state.SkipWithError("pin_user_pages_fast came up short");
            break;
        }
    }
    state.SetItemsProcessed(state.iterations() * kLenPages);
}
BENCHMARK(BM_PinSharedMappingThreads)->Threads(1)->Threads(2)->UseRealTime();

}  // namespace
