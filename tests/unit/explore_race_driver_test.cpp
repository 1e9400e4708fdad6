// The explorer's driver-side race corpus (issue 8; examples/races/): three
// races between a driver holding pages for DMA and an mm operation, each
// explored on a pl_kernel from C++ as ExploreModel does (explore_test.cpp).
// For each: in its buggy configuration (a historical era, or an arch without
// the special-entry bits) the explorer finds a schedule that breaks the fixed
// kernel's promise, shrinks it, and replay() of the shrunk schedule breaks it
// the same way; in the fixed configuration the preemption-bounded search
// (bound 2) exhausts its space without a violation.
//
//  1. TTM bo move vs GUP (seed 003): pin_user_pages_fast() + device write
//     through the pin + unpin, racing ttm_bo_move(VRAM). The promise: a pin
//     of a bo page is refused, or the device's write reaches the bo.
//  2. videobuf2 USERPTR frames vs munmap (seed 000): a capture DMA through a
//     frame vector racing munmap() of the VM_PFNMAP buffer and a new mapping
//     of the process. The promise: the DMA never lands in memory the buffer
//     no longer owns.
//  3. io_uring buffer registration vs fork (cow.c's "fork() with an iouring
//     fixed buffer"; 70e806e4e645): the parent must read, after its own
//     store, what a READ_FIXED into the registered buffer brought in.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "explore/explorer.h"
#include "explore/schedule.h"
#include "gup/foll_flags.h"
#include "explore_race_bound.h"
#include "pinlab/kapi.h"

namespace pl::explore {
namespace {

constexpr unsigned long kPage = 4096;
constexpr unsigned long kHuge = 2UL << 20;
constexpr unsigned long kBoAddr = 0x40000000;  // 2 MiB aligned: a PMD leaf can map the bo

std::string read_task(task_struct* t, unsigned long addr, unsigned long len) {
    std::string s(len, '\0');
    if (pl_read(t, addr, s.data(), len) != static_cast<long>(len)) return "<read failed: " + std::string(pl_last_error()) + ">";
    return s;
}

// pl_kernel_check() and the kernel log, but for the report kind `allowed`
// (nullptr: none): what ExploreResult's `kernel` check does, with the one
// report a buggy configuration raises on every schedule set aside.
std::optional<std::string> kernel_ok(pl_kernel* k, const char* allowed) {
    if (pl_kernel_check(k) != 0) return std::string("pl_kernel_check: ") + pl_last_error();
    const int others = pl_warning_count(k, nullptr) - (allowed ? pl_warning_count(k, allowed) : 0);
    if (others > 0) return std::string("kernel log: ") + pl_dmesg(k);
    return std::nullopt;
}

ExploreOptions bounded(int bound, uint64_t max_executions) {
    ExploreOptions o;
    o.strategy = StrategyKind::Bounded;
    o.bound = bound;
    o.max_executions = max_executions;
    return o;
}

// Explores the buggy configuration: a violation of kind Check is found, it
// names `what`, and the shrunk schedule replays to the same violation.
void expect_found_and_replayed(const char* name, const TestFn& test, const char* what) {
    ExploreResult r = explore(bounded(2, 5000), test);
    ASSERT_TRUE(r.found) << name << ": " << r.summary();
    const RunRecord& f = *r.failure();
    EXPECT_EQ(f.violation.kind, ViolationKind::Check) << name << ": " << f.violation.message;
    EXPECT_NE(f.violation.message.find(what), std::string::npos) << name << ": " << f.violation.message;
    const std::string sched = to_string(f.schedule);
    RunRecord again = replay(test, sched);
    EXPECT_EQ(again.violation.kind, f.violation.kind) << name << " replay of " << sched << ": " << again.violation.message;
    EXPECT_EQ(again.violation.message, f.violation.message) << name;
    EXPECT_EQ(again.steps, f.steps) << name;
    std::printf("[ %s ] first violation after %llu executions, %.3f s; shrunk to %s (%zu choices, %d preemptions, "
                "%llu steps): %s\n",
                name, static_cast<unsigned long long>(r.executions), r.seconds, sched.c_str(),
                f.schedule.choices.size(), f.preemptions, static_cast<unsigned long long>(f.steps),
                f.violation.message.c_str());
}

// Explores the fixed configuration: every schedule with at most `bound`
// preemptions runs, none violates.
void expect_exhausted_clean(const char* name, const TestFn& test, int bound = test::kExhaustBound) {
    ExploreResult r = explore(bounded(bound, 0), test);
    EXPECT_FALSE(r.found) << name << ": " << r.summary();
    EXPECT_TRUE(r.exhausted) << name << ": " << r.summary();
    EXPECT_EQ(r.bound_reached, bound) << name;
    EXPECT_GT(r.executions, 1u) << name << ": the threads never interleaved";
    std::printf("[ %s ] bound %d exhausted: %llu executions, %.2f s, no violation\n", name, bound,
                static_cast<unsigned long long>(r.executions), r.seconds);
}

// ---- 1. TTM bo move vs GUP (seed 003) ---------------------------------------------

// Thread 0: pin_user_pages_fast(FOLL_WRITE) of the bo's first page through
// the user mapping; if it pins, the device writes "dma" through the pin and
// the driver unpins. Thread 1: ttm_bo_move() to VRAM (ttm_bo_unmap_virtual(),
// copy, ttm_pool_free() of the old pages with __free_pages(), which drops only
// TTM's own reference). The promise: either GUP refused (-EFAULT: VM_PFNMAP,
// special or devmap entries, no struct page in VRAM) or the device's bytes
// are in the bo afterwards. Where GUP can reach TTM's pages and the move runs
// between the pin and the DMA, the move copies the old contents, frees the
// page the pin holds (pinned_page_moved) and the DMA lands in a page no bo
// owns. A PMD leaf GUP-fast takes without pmd_special is reported as
// "pfnmap_gup" on every schedule: allowed here, it is not the race.
TestFn ttm_move_vs_pin(std::string config, unsigned long size, unsigned flags) {
    return [config, size, flags] {
        struct Shared {
            pl_kernel* k = nullptr;
            task_struct* t = nullptr;
            pl_file* bo = nullptr;
            int pinned = 0;
            int moved = 0;
        };
        auto s = std::make_shared<Shared>();
        s->k = pl_kernel_new(config.c_str());
        if (!s->k) throw std::runtime_error(pl_last_error());
        s->t = pl_task_new(s->k);
        s->bo = pl_ttm_bo_create(s->k, size, PL_TTM_PL_SYSTEM, flags);
        if (!s->bo) throw std::runtime_error(std::string("ttm_bo_create: ") + pl_last_error());
        long a = pl_mmap(s->t, kBoAddr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, s->bo, 0);
        if (a != static_cast<long>(kBoAddr) || pl_write(s->t, kBoAddr, "bo", 2) != 2)
            throw std::runtime_error(std::string("set-up: ") + pl_last_error());
        Execution e;
        e.threads.push_back([s] {
            pl_set_current(s->t);
            page* p = nullptr;
            s->pinned = ::pin_user_pages_fast(kBoAddr, 1, FOLL_WRITE, &p);
            if (s->pinned == 1) {
                (void)pl_page_write(p, 0, "dma", 3);  // the device, through the pin
                unpin_user_pages(&p, 1);
            }
        });
        e.threads.push_back([s] { s->moved = pl_ttm_bo_move(s->bo, PL_TTM_PL_VRAM); });
        e.check = [s]() -> std::optional<std::string> {
            if (s->moved != 0) return "ttm_bo_move: " + std::to_string(s->moved);
            if (pl_warning_count(s->k, "pinned_page_moved") > 0)
                return std::string("pinned_page_moved: the move freed a page the pin held: ") + pl_dmesg(s->k);
            if (s->pinned == 1) {
                char got[4] = {};
                (void)pl_ttm_bo_read(s->bo, 0, got, 3);
                if (std::string(got) != "dma")
                    return "the device wrote through the pin but the bo holds \"" + std::string(got) + "\"";
            } else if (s->pinned != -EFAULT) {
                return "pin_user_pages_fast: " + std::to_string(s->pinned);
            }
            return kernel_ok(s->k, "pfnmap_gup");
        };
        e.teardown = [s] {
            pl_ttm_bo_put(s->bo);  // the test's reference; the mapping's goes with the task
            pl_kernel_free(s->k);
        };
        return e;
    };
}

constexpr const char* kSmall = "ram=64M hugetlb_2m=0 hugetlb_1g=0";

// Without pmd_special (before v6.12's vmf_insert_pfn_pmd() marking, or an
// arch without CONFIG_ARCH_SUPPORTS_PMD_PFNMAP) GUP-fast takes the page of a
// huge PFN leaf (003_ttm_huge_pfn_dev_only.pin).
TEST(ExploreRaceTtmMove, HugeLeafWithoutPmdSpecialLosesTheDma) {
    expect_found_and_replayed("ttm huge, pmd_special=off",
                              ttm_move_vs_pin(std::string(kSmall) + " arch.pmd_special=off", kHuge, 0),
                              "pinned_page_moved");
}

// TTM's VM_MIXEDMAP era (v5.11) on an arch without pte_special: the pages
// are inserted with insert_page() and slow GUP pins them legitimately
// (003_ttm_mixedmap_pte_no_pte_special.pin); the move still frees them.
TEST(ExploreRaceTtmMove, MixedmapWithoutPteSpecialLosesTheDma) {
    expect_found_and_replayed("ttm mixedmap, pte_special=off",
                              ttm_move_vs_pin(std::string(kSmall) + " arch.pte_special=off", kPage,
                                              PL_TTM_MIXEDMAP | PL_TTM_NO_HUGE),
                              "pinned_page_moved");
}

// Today's defaults, the pages mapped by PTEs: VM_MIXEDMAP (TTM's v5.11
// mode) with pte_special, and VM_PFNMAP (TTM since 2021): vm_normal_page()
// sees the special PTE, check_vma_flags() refuses VM_PFNMAP, so the pin is
// -EFAULT on every schedule.
TEST(ExploreRaceTtmMove, DefaultsRefuseAPtePinOnEverySchedule) {
    expect_exhausted_clean("ttm mixedmap, defaults",
                           ttm_move_vs_pin(kSmall, kPage, PL_TTM_MIXEDMAP | PL_TTM_NO_HUGE));
    expect_exhausted_clean("ttm pfnmap PTEs, defaults", ttm_move_vs_pin(kSmall, kPage, PL_TTM_NO_HUGE));
}

// Today's defaults with the huge leaf: special (pmd_special), refused by
// GUP-fast and by check_vma_flags(). The move of 2 MiB copies 512 pages, an
// interleaving point each (a load of each frame's contents), so the bounded
// space is out of a unit test's reach (bound 1 alone: 4,662 executions, ~94 s
// in Debug): a random sample of it here, the exhaustive bound-2 check on the
// PTE-mapped bos above.
TEST(ExploreRaceTtmMove, DefaultsRefuseAHugePinOnSampledSchedules) {
    ExploreOptions o;
    o.strategy = StrategyKind::Random;
    o.seed = 1;
    o.max_executions = 150;
    ExploreResult r = explore(o, ttm_move_vs_pin(kSmall, kHuge, 0));
    EXPECT_FALSE(r.found) << r.summary();
    EXPECT_EQ(r.executions, 150u) << r.summary();
    std::printf("[ ttm huge, defaults ] random, %llu executions, %.2f s, no violation\n",
                static_cast<unsigned long long>(r.executions), r.seconds);
}

// ---- 2. videobuf2 USERPTR raw PFNs vs munmap (seed 000) ------------------------

// Set-up: a one-page TTM bo (VM_IO|VM_PFNMAP, special PTEs), mapped, its
// creator's reference dropped so that the mapping holds the last one, queued
// as a capture buffer: up to v6.0 get_vaddr_frames() falls back to
// follow_pfn() and keeps raw PFNs with no reference; from v6.1 (6647e76ab623
// "v4l2: don't fall back to follow_pfn() if pin_user_pages_fast() fails") it
// refuses with -EFAULT. Thread 0: the device completes the buffer by DMA,
// the driver dequeues it and releases the frames (REQBUFS 0:
// vb2_destroy_framevec(), which has nothing to put for PFNs). Thread 1:
// munmap() of the buffer (the bo is released and TTM frees its page) and a
// new anonymous mapping written with "secret!!". The promise: the new
// mapping keeps "secret!!".
TestFn vb2_pfns_vs_munmap(std::string config) {
    return [config] {
        struct Shared {
            pl_kernel* k = nullptr;
            task_struct* t = nullptr;
            pl_vb2_queue* q = nullptr;
            unsigned long dev = 0;
            unsigned long fresh = 0;
            int queued = 0;
            std::string error;
        };
        auto s = std::make_shared<Shared>();
        s->k = pl_kernel_new(config.c_str());
        if (!s->k) throw std::runtime_error(pl_last_error());
        s->t = pl_task_new(s->k);
        pl_file* bo = pl_ttm_bo_create(s->k, kPage, PL_TTM_PL_SYSTEM, PL_TTM_NO_HUGE);
        long a = bo ? pl_mmap(s->t, 0, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, bo, 0) : -1;
        if (bo) pl_ttm_bo_put(bo);  // the mapping holds the bo now
        if (a <= 0 || pl_write(s->t, static_cast<unsigned long>(a), "frame", 5) != 5)
            throw std::runtime_error(std::string("set-up: ") + pl_last_error());
        s->dev = static_cast<unsigned long>(a);
        s->q = pl_vb2_queue_new(s->t, PL_VB2_VMALLOC, PL_VB2_CAPTURE, kPage, 0);
        if (!s->q || pl_vb2_reqbufs(s->q, 1) != 1) throw std::runtime_error(std::string("vb2: ") + pl_last_error());
        s->queued = pl_vb2_qbuf(s->q, 0, s->dev, kPage);
        Execution e;
        e.threads.push_back([s] {
            pl_set_current(s->t);
            if (s->queued != 0) return;
            char data[8] = {'d', 'm', 'a', '-', 'd', 'a', 't', 'a'};
            if (pl_vb2_device_dma(s->q, data, sizeof data) != sizeof data) s->error += "device dma failed; ";
            if (pl_vb2_dqbuf(s->q, nullptr) != 0) s->error += "dqbuf failed; ";
            if (pl_vb2_reqbufs(s->q, 0) != 0) s->error += "reqbufs 0 failed; ";
        });
        e.threads.push_back([s] {
            pl_set_current(s->t);
            if (pl_munmap(s->t, s->dev, kPage) != 0) s->error += "munmap failed; ";
            long b = pl_mmap(s->t, 0, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, nullptr, 0);
            if (b <= 0 || pl_write(s->t, static_cast<unsigned long>(b), "secret!!", 8) != 8) {
                s->error += "new mapping failed; ";
                return;
            }
            s->fresh = static_cast<unsigned long>(b);
        });
        e.check = [s]() -> std::optional<std::string> {
            if (!s->error.empty()) return s->error;
            if (s->queued != 0 && s->queued != -EFAULT) return "qbuf: " + std::to_string(s->queued);
            const std::string got = read_task(s->t, s->fresh, 8);
            if (got != "secret!!") return "DMA into a freed and reused frame: the new mapping holds \"" + got + "\"";
            return kernel_ok(s->k, nullptr);
        };
        e.teardown = [s] {
            pl_vb2_queue_free(s->q);
            pl_kernel_free(s->k);
        };
        return e;
    };
}

TEST(ExploreRaceVb2Userptr, RawPfnsUpToV6_0ReachAReusedFrame) {
    for (const char* era : {"era=v4.8", "era=v5.10", "era=v6.0"}) {
        SCOPED_TRACE(era);
        expect_found_and_replayed(era, vb2_pfns_vs_munmap(std::string(kSmall) + " " + era), "freed and reused");
    }
}

TEST(ExploreRaceVb2Userptr, RefusedFromV6_1OnEverySchedule) {
    expect_exhausted_clean("vb2 userptr, current", vb2_pfns_vs_munmap(kSmall));
}

// ---- 3. io_uring buffer registration vs fork -------------------------------------

// Set-up: an anonymous page the parent wrote, a tmpfs file holding
// "file-data", an io_uring. Thread 0: fork(). Thread 1:
// IORING_REGISTER_BUFFERS of the page (FOLL_WRITE|FOLL_LONGTERM pins). After
// both: the parent stores "parent!!!", then IORING_OP_READ_FIXED reads the
// file into the registered buffer, and the parent must read "file-data".
// Before v5.9 (70e806e4e645, "mm: Do early cow for pinned pages during fork()
// for ptes") fork shared the pinned page COW: the parent's store moved the
// parent to a copy and the read landed in the page the child kept.
TestFn io_uring_register_vs_fork(std::string config) {
    return [config] {
        struct Shared {
            pl_kernel* k = nullptr;
            task_struct* t = nullptr;
            task_struct* child = nullptr;
            pl_io_uring* ring = nullptr;
            pl_file* f = nullptr;
            unsigned long addr = 0;
            int registered = 0;
        };
        auto s = std::make_shared<Shared>();
        s->k = pl_kernel_new(config.c_str());
        if (!s->k) throw std::runtime_error(pl_last_error());
        s->t = pl_task_new(s->k);
        pl_task_set_cap_ipc_lock(s->t, 1);  // no RLIMIT_MEMLOCK charge in the way
        long a = pl_mmap(s->t, 0, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, nullptr, 0);
        s->f = pl_file_new(s->k, "tmpfs", kPage);
        if (a <= 0 || !s->f || pl_write(s->t, static_cast<unsigned long>(a), "anon-page", 9) != 9 ||
            pl_pwrite(s->f, "file-data", 9, 0) != 9)
            throw std::runtime_error(std::string("set-up: ") + pl_last_error());
        s->addr = static_cast<unsigned long>(a);
        s->ring = pl_io_uring_setup(s->t, 4);
        if (!s->ring) throw std::runtime_error(std::string("io_uring_setup: ") + pl_last_error());
        Execution e;
        e.threads.push_back([s] {
            pl_set_current(s->t);
            s->child = pl_fork(s->t);
        });
        e.threads.push_back([s] {
            pl_set_current(s->t);
            iovec iov{reinterpret_cast<void*>(s->addr), kPage};
            s->registered = pl_io_uring_register_buffers(s->ring, &iov, 1);
        });
        e.check = [s]() -> std::optional<std::string> {
            if (!s->child) return std::string("fork failed: ") + pl_last_error();
            if (s->registered != 0) return "io_uring_register_buffers: " + std::to_string(s->registered);
            pl_set_current(s->t);
            if (pl_write(s->t, s->addr, "parent!!!", 9) != 9) return std::string("parent store failed");
            const long n = pl_io_uring_read_fixed(s->ring, s->f, 0, s->addr, 9, 0);
            if (n != 9) return "io_uring_read_fixed: " + std::to_string(n);
            const std::string got = read_task(s->t, s->addr, 9);
            if (got != "file-data")
                return "incoherent: READ_FIXED into the registered buffer, the parent reads \"" + got + "\"";
            return kernel_ok(s->k, nullptr);
        };
        e.teardown = [s] {
            if (s->ring) pl_io_uring_exit(s->ring);
            if (s->f) pl_file_put(s->f);
            pl_kernel_free(s->k);
        };
        return e;
    };
}

TEST(ExploreRaceIoUringFork, V5_8ForkSharesThePinnedPage) {
    expect_found_and_replayed("io_uring vs fork, v5.8",
                              io_uring_register_vs_fork(std::string(kSmall) + " era=v5.8"), "incoherent");
}

// v5.10: copy_present_page() gives the child the copy of a maybe-pinned page.
TEST(ExploreRaceIoUringFork, V5_10EarlyCowKeepsTheParentCoherentOnEverySchedule) {
    expect_exhausted_clean("io_uring vs fork, v5.10", io_uring_register_vs_fork(std::string(kSmall) + " era=v5.10"));
}

// Today: the same through folio_try_dup_anon_rmap() -EBUSY (PageAnonExclusive).
TEST(ExploreRaceIoUringFork, CurrentEarlyCowKeepsTheParentCoherentOnEverySchedule) {
    expect_exhausted_clean("io_uring vs fork, current", io_uring_register_vs_fork(kSmall));
}

}  // namespace
}  // namespace pl::explore
