// Two historical GUP/COW races, explored on a real pl_kernel (issue 8's race
// corpus; the scenario forms are examples/races/dirty_cow.pin and
// examples/races/cve_2020_29374_vmsplice_fork.pin), and the era rules they
// rest on, tested directly.
//
// - Dirty COW (CVE-2016-5195), era v4.8: faultin_page() dropped FOLL_WRITE
//   after a write fault that broke COW (VM_FAULT_WRITE) on a VMA without
//   VM_WRITE; a MADV_DONTNEED at __get_user_pages()'s cond_resched() then
//   made the read lookup return the page-cache page, and access_process_vm()
//   wrote the file (fixed by 19be0eaffa3a, v4.9).
// - CVE-2020-29374, eras before v5.8: do_wp_page() reused an anonymous page
//   only one PTE mapped (reuse_swap_page()), whatever other references it
//   had, and a R/O GUP never broke COW: a child's vmsplice()d copy of a page
//   shows the parent's later writes once the child unmapped it.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "base/sync/sched_point.h"
#include "explore/explorer.h"
#include "explore/schedule.h"
#include "gup/foll_flags.h"
#include "pinlab/kapi.h"
#include "explore_race_bound.h"
#include "point_hook.h"
#include "test_kernel.h"

namespace pl::explore {
namespace {

constexpr unsigned long kPg = 4096;

std::string boot_config(const char* era) {
    return std::string("era=") + era + " ram=64M hugetlb_2m=0 hugetlb_1g=0";
}

// ---- Dirty COW ------------------------------------------------------------------------
//
// Set-up: a file "root:x:0" mapped read-only and private. Thread 0 writes
// "EVIL" through /proc/PID/mem (access_process_vm(FOLL_FORCE|FOLL_WRITE));
// thread 1 MADV_DONTNEEDs the page `zaps` times (the exploit's madvise()
// loop: with one call, uniformly random scheduling runs the zap long before
// the write's third lookup; the bounded search needs only one). The file
// must keep its bytes.
TestFn dirty_cow_test(const char* era, int zaps = 1) {
    const std::string cfg = boot_config(era);
    return [cfg, zaps] {
        struct Shared {
            pl_kernel* k = nullptr;
            task_struct* t = nullptr;
            pl_file* f = nullptr;
            unsigned long addr = 0;
            long wrote = 0;
            int madv = 0;
        };
        auto s = std::make_shared<Shared>();
        s->k = pl_kernel_new(cfg.c_str());
        if (!s->k) throw std::runtime_error(pl_last_error());
        s->t = pl_task_new(s->k);
        s->f = pl_file_new(s->k, "ext4", kPg);
        if (!s->t || !s->f || pl_pwrite(s->f, "root:x:0", 8, 0) != 8)
            throw std::runtime_error(std::string("set-up: ") + pl_last_error());
        const long a = pl_mmap(s->t, 0, kPg, PROT_READ, MAP_PRIVATE, s->f, 0);
        if (a <= 0) throw std::runtime_error(std::string("mmap: ") + pl_last_error());
        s->addr = static_cast<unsigned long>(a);
        Execution e;
        e.kernel = s->k;
        e.threads.push_back([s] {
            pl_set_current(s->t);
            char evil[] = "EVIL";
            s->wrote = pl_access_process_vm(s->t, s->addr, evil, 4, FOLL_FORCE | FOLL_WRITE);
        });
        e.threads.push_back([s, zaps] {
            pl_set_current(s->t);
            for (int i = 0; i < zaps; ++i) s->madv |= pl_madvise(s->t, s->addr, kPg, MADV_DONTNEED);
        });
        e.check = [s]() -> std::optional<std::string> {
            if (s->wrote != 4) return "mem_write returned " + std::to_string(s->wrote);
            if (s->madv != 0) return "madvise returned " + std::to_string(s->madv);
            char buf[9] = {};
            if (pl_pread(s->f, buf, 8, 0) != 8) return std::string("pread failed");
            if (std::string(buf) != "root:x:0") return "the file now reads \"" + std::string(buf) + "\"";
            return std::nullopt;
        };
        e.teardown = [s] {
            pl_exit(s->t);
            pl_file_put(s->f);
            pl_kernel_free(s->k);
        };
        return e;
    };
}

// ---- CVE-2020-29374 ------------------------------------------------------------------
//
// Set-up: the parent writes "public!!" to an anonymous page and forks.
// Thread 0 (the child) vmsplice()s the page into a pipe, drops its mapping
// and reads the pipe; thread 1 (the parent) writes "SECRET!!". The child
// must read what it spliced. cow.c's child munmap()s the page; the race
// drops the PTE with MADV_DONTNEED, the same zap of the child's PTE: the
// model's munmap() passes ~1,570 interleaving points (VMA and page-table
// teardown), MADV_DONTNEED ~50, which keeps bound 2 exhaustible.
TestFn vmsplice_fork_test(const char* era) {
    const std::string cfg = boot_config(era);
    return [cfg] {
        struct Shared {
            pl_kernel* k = nullptr;
            task_struct* parent = nullptr;
            task_struct* child = nullptr;
            pl_pipe* pipe = nullptr;
            unsigned long addr = 0;
            long spliced = 0;
            std::string got;
            long wrote = 0;
        };
        auto s = std::make_shared<Shared>();
        s->k = pl_kernel_new(cfg.c_str());
        if (!s->k) throw std::runtime_error(pl_last_error());
        s->parent = pl_task_new(s->k);
        const long a = pl_mmap(s->parent, 0, kPg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, nullptr, 0);
        if (a <= 0 || pl_write(s->parent, static_cast<unsigned long>(a), "public!!", 8) != 8)
            throw std::runtime_error(std::string("set-up: ") + pl_last_error());
        s->addr = static_cast<unsigned long>(a);
        s->child = pl_fork(s->parent);
        s->pipe = pl_pipe_new(s->k);
        if (!s->child || !s->pipe) throw std::runtime_error(std::string("fork/pipe: ") + pl_last_error());
        Execution e;
        e.kernel = s->k;
        e.threads.push_back([s] {
            pl_set_current(s->child);
            s->spliced = pl_vmsplice(s->child, s->pipe, s->addr, kPg);
            (void)pl_madvise(s->child, s->addr, kPg, MADV_DONTNEED);
            char buf[9] = {};
            if (pl_pipe_read(s->pipe, buf, 8) == 8) s->got = buf;
        });
        e.threads.push_back([s] {
            pl_set_current(s->parent);
            s->wrote = pl_write(s->parent, s->addr, "SECRET!!", 8);
        });
        e.check = [s]() -> std::optional<std::string> {
            if (s->spliced != static_cast<long>(kPg)) return "vmsplice returned " + std::to_string(s->spliced);
            if (s->wrote != 8) return "the parent's write returned " + std::to_string(s->wrote);
            if (s->got != "public!!") return "the child read \"" + s->got + "\" from the pipe";
            return std::nullopt;
        };
        e.teardown = [s] {
            pl_pipe_free(s->pipe);
            pl_exit(s->child);
            pl_exit(s->parent);
            pl_kernel_free(s->k);
        };
        return e;
    };
}

ExploreOptions race_options(StrategyKind k, int bound = 2) {
    ExploreOptions o;
    o.strategy = k;
    o.seed = 1;
    o.bound = bound;
    o.max_executions = 20000;
    o.max_seconds = 60;
    return o;
}

// The buggy era: found by bounded search and by random or PCT, shrunk, and the
// shrunk schedule replays to the same violation.
void expect_found_and_replayed(const char* what, const TestFn& test, StrategyKind k) {
    {
        ExploreResult r = explore(race_options(k), test);
        ASSERT_TRUE(r.found) << what << ", " << to_string(k) << ": " << r.summary();
        const RunRecord* f = r.failure();
        ASSERT_NE(f, nullptr);
        EXPECT_EQ(f->violation.kind, ViolationKind::Check) << f->violation.message;
        const std::string schedule = to_string(f->schedule);
        RunRecord again = replay(test, schedule);
        EXPECT_TRUE(again.violation) << what << ": " << schedule << " did not fail again";
        EXPECT_EQ(again.violation.kind, f->violation.kind) << again.violation.message;
        EXPECT_EQ(again.violation.message, f->violation.message);
        std::printf("[ %s ] %s: first violation after %llu executions, %.3f s; shrunk to %s (%zu choices, %d "
                    "preemption(s), %llu steps): %s\n",
                    to_string(k), what, static_cast<unsigned long long>(r.executions), r.seconds, schedule.c_str(),
                    f->schedule.choices.size(), f->preemptions, static_cast<unsigned long long>(f->steps),
                    f->violation.message.c_str());
    }
}

// The fixed kernel: every schedule with at most 2 preemptions (1 under
// ASan: explore_race_bound.h), no violation.
void expect_exhausted_clean(const char* what, const TestFn& test) {
    ExploreOptions o = race_options(StrategyKind::Bounded, test::kExhaustBound);
    o.max_executions = 0;
    o.max_seconds = 120;  // a guard only
    ExploreResult r = explore(o, test);
    EXPECT_FALSE(r.found) << what << ": " << r.summary()
                          << (r.failure() ? "\n" + to_string(r.failure()->schedule) : std::string());
    EXPECT_TRUE(r.exhausted) << what << ": " << r.summary();
    EXPECT_EQ(r.bound_reached, test::kExhaustBound) << r.summary();
    std::printf("[ bounded ] %s: %s\n", what, r.summary().c_str());
}

TEST(ExploreRaceDirtyCow, V48WriteReachesThePageCacheAndReplays) {
    expect_found_and_replayed("dirty cow v4.8", dirty_cow_test("v4.8"), StrategyKind::Bounded);
    // Uniform random choices rarely let the zapper wait for the writer's
    // third lookup (and which seeds do depends on the build's interleaving
    // points); PCT's priorities do, with one zap or many.
    expect_found_and_replayed("dirty cow v4.8", dirty_cow_test("v4.8"), StrategyKind::Pct);
    expect_found_and_replayed("dirty cow v4.8, 8 zaps", dirty_cow_test("v4.8", 8), StrategyKind::Pct);
}

TEST(ExploreRaceDirtyCow, CurrentHasNoViolationAtBound2) {
    expect_exhausted_clean("dirty cow current", dirty_cow_test("current"));
}

TEST(ExploreRaceVmspliceFork, V55ChildReadsTheParentsSecretAndReplays) {
    expect_found_and_replayed("CVE-2020-29374 v5.5", vmsplice_fork_test("v5.5"), StrategyKind::Bounded);
    expect_found_and_replayed("CVE-2020-29374 v5.5", vmsplice_fork_test("v5.5"), StrategyKind::Random);
}

TEST(ExploreRaceVmspliceFork, CurrentHasNoViolationAtBound2) {
    expect_exhausted_clean("CVE-2020-29374 current", vmsplice_fork_test("current"));
}

}  // namespace
}  // namespace pl::explore

// ---- the era rules themselves, without the explorer --------------------------------------

namespace pl::test {
namespace {

class ExploreRaceCowRules : public KernelTest {
protected:
    void boot_era(const char* era) { reboot(("era=" + std::string(era) + " ram=64M hugetlb_2m=0 hugetlb_1g=0").c_str()); }
};

// access_process_vm() (mm/memory.c __access_remote_vm()): bytes copied, 0
// where GUP refuses the first page, -EINVAL for the C API's own misuse.
TEST_F(ExploreRaceCowRules, AccessProcessVmResultsAndErrors) {
    boot_era("current");
    // Two pages and, above them, a hole of one.
    const unsigned long rw = map(3 * kPage);
    ASSERT_EQ(pl_munmap(t, rw + 2 * kPage, kPage), 0);
    put_str(t, rw, "hello");
    char buf[16] = {};
    // A read across nothing special: the bytes.
    EXPECT_EQ(pl_access_process_vm(t, rw, buf, 6, FOLL_FORCE), 6);
    EXPECT_STREQ(buf, "hello");
    // A write spanning two pages: both copied (one GUP per page).
    const std::string across(10, 'x');
    EXPECT_EQ(pl_access_process_vm(t, rw + kPage - 5, const_cast<char*>(across.data()), 10, FOLL_FORCE | FOLL_WRITE), 10);
    EXPECT_EQ(get_str(t, rw + kPage - 5, 10), across);
    // Nothing mapped at addr: 0 bytes (upstream returns 0; /proc/PID/mem -EIO).
    EXPECT_EQ(pl_access_process_vm(t, rw + 2 * kPage, buf, 4, FOLL_FORCE), 0);
    // A copy running off the end of the mapping stops there.
    EXPECT_EQ(pl_access_process_vm(t, rw + 2 * kPage - 3, buf, 8, FOLL_FORCE), 3);
    // Without FOLL_FORCE a read-only mapping cannot be written
    // (check_vma_flags()); with it, the write breaks COW (the mapping's own
    // anonymous copy) and the file keeps its bytes.
    pl_file* f = file("ext4", kPage);
    ASSERT_EQ(pl_pwrite(f, "root:x:0", 8, 0), 8);
    const unsigned long ro = map(t, kPage, PROT_READ, MAP_PRIVATE, f);
    char evil[] = "EVIL";
    EXPECT_EQ(pl_access_process_vm(t, ro, evil, 4, FOLL_WRITE), 0);
    EXPECT_EQ(pl_access_process_vm(t, ro, evil, 4, FOLL_FORCE | FOLL_WRITE), 4);
    EXPECT_EQ(get_str(t, ro, 8), "EVIL:x:0");
    EXPECT_TRUE(PageAnon(pg(t, ro)));
    char file_bytes[9] = {};
    EXPECT_EQ(pl_pread(f, file_bytes, 8, 0), 8);
    EXPECT_STREQ(file_bytes, "root:x:0");
    // A shared read-only mapping is never FOLL_FORCE-written (no COW).
    const unsigned long shared_ro = map(t, kPage, PROT_READ, MAP_SHARED, f);
    EXPECT_EQ(pl_access_process_vm(t, shared_ro, evil, 4, FOLL_FORCE | FOLL_WRITE), 0);
    // The C API's own checks.
    EXPECT_EQ(pl_access_process_vm(nullptr, rw, buf, 4, FOLL_FORCE), -EINVAL);
    EXPECT_EQ(pl_access_process_vm(t, rw, nullptr, 4, FOLL_FORCE), -EINVAL);
    EXPECT_EQ(pl_access_process_vm(t, rw, buf, 4, FOLL_PIN), -EINVAL);
    EXPECT_EQ(pl_access_process_vm(t, rw, buf, 4, FOLL_GET), -EINVAL);
    EXPECT_EQ(pl_access_process_vm(t, rw, nullptr, 0, FOLL_FORCE), 0);
    // Every reference GUP took was put.
    EXPECT_EQ(pl_pin_balance(k, nullptr), 0);
}

// The same FOLL_FORCE write in every era, without a race: the file is never
// written (v4.8's read retry still finds the COW copy when nothing zaps it).
TEST_F(ExploreRaceCowRules, ForceWriteBreaksCowInEveryEra) {
    for (const char* era : {"v4.8", "v5.5", "v5.10", "current"}) {
        SCOPED_TRACE(era);
        boot_era(era);
        pl_file* f = file("ext4", kPage);
        ASSERT_EQ(pl_pwrite(f, "root:x:0", 8, 0), 8);
        const unsigned long ro = map(t, kPage, PROT_READ, MAP_PRIVATE, f);
        char evil[] = "EVIL";
        EXPECT_EQ(pl_access_process_vm(t, ro, evil, 4, FOLL_FORCE | FOLL_WRITE), 4);
        EXPECT_EQ(get_str(t, ro, 8), "EVIL:x:0");
        char file_bytes[9] = {};
        EXPECT_EQ(pl_pread(f, file_bytes, 8, 0), 8);
        EXPECT_STREQ(file_bytes, "root:x:0");
        // The COW copy stays read-only for the process (no VM_WRITE).
        EXPECT_EQ(pl_write(t, ro, "x", 1), -EFAULT);
    }
}

// v4.8's write-follows-writable-entries-only rule is for PTEs: a FOLL_FORCE
// write to a read-only private hugetlb or THP mapping completes (breaking
// COW) instead of refaulting forever, and the process's copy changes.
TEST_F(ExploreRaceCowRules, V48ForceWriteToReadOnlyHugeMappingsCompletes) {
    reboot("era=v4.8 ram=64M hugetlb_2m=2 hugetlb_1g=0 thp=always");
    const unsigned long huge = 2UL << 20;
    const unsigned long h = map(t, huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB);
    const unsigned long thp = map(t, 2 * huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS);
    const unsigned long aligned = (thp + huge - 1) & ~(huge - 1);
    for (unsigned long a : {h, aligned}) {
        put_str(t, a, "public!!");
        ASSERT_EQ(pl_mprotect(t, a, huge, PROT_READ), 0);
        char evil[] = "EVIL";
        EXPECT_EQ(pl_access_process_vm(t, a, evil, 4, FOLL_FORCE | FOLL_WRITE), 4);
        EXPECT_EQ(get_str(t, a), "EVILic!!");
    }
}


// Dirty COW without the explorer: MADV_DONTNEED at each of the FOLL_FORCE
// write's cond_resched() points in __get_user_pages() in turn. In v4.8 the
// third (after the write fault that reused the COW copy and dropped
// FOLL_WRITE) makes the read lookup fault in the page-cache page, and the
// write lands in the file; in later eras FOLL_WRITE stays and no point does.
TEST_F(ExploreRaceCowRules, DirtyCowZapAtCondReschedWritesTheFileOnlyInV48) {
    for (const char* era : {"v4.8", "v5.3", "v5.10", "current"}) {
        const bool buggy = std::string(era) == "v4.8";
        int corrupted_at = 0;
        for (int nth = 1; nth <= 4; ++nth) {
            SCOPED_TRACE(std::string(era) + ", MADV_DONTNEED at cond_resched() #" + std::to_string(nth));
            boot_era(era);
            pl_file* f = file("ext4", kPage);
            ASSERT_EQ(pl_pwrite(f, "root:x:0", 8, 0), 8);
            const unsigned long ro = map(t, kPage, PROT_READ, MAP_PRIVATE, f);
            char evil[] = "EVIL";
            long wrote;
            {
                test::PointHook hook(sync::Point::Resched, nullptr, nth, [&] { EXPECT_EQ(pl_madvise(t, ro, kPage, MADV_DONTNEED), 0); });
                wrote = pl_access_process_vm(t, ro, evil, 4, FOLL_FORCE | FOLL_WRITE);
            }
            EXPECT_EQ(wrote, 4);
            char file_bytes[9] = {};
            ASSERT_EQ(pl_pread(f, file_bytes, 8, 0), 8);
            if (std::string(file_bytes) != "root:x:0") {
                EXPECT_EQ(std::string(file_bytes), "EVIL:x:0");
                EXPECT_TRUE(buggy) << "the file was written";
                if (!corrupted_at) corrupted_at = nth;
            }
        }
        if (buggy) {
            EXPECT_EQ(corrupted_at, 3) << era;
        }
    }
}

// do_wp_page()'s reuse rule. Before v5.8 (reuse_swap_page()): an anonymous
// page that only the faulting PTE maps is reused in place, even with a GUP
// reference held elsewhere. Since v5.9 (09854ba94c6a; the model from v5.8,
// whose GUP-side workaround it does not model separately): only with no
// reference but the mapping's (wp_can_reuse_anon_folio()), else copied.
TEST_F(ExploreRaceCowRules, WriteFaultReusesByMapcountBeforeV58ByRefcountSince) {
    const struct {
        const char* era;
        bool reused;
    } rows[] = {{"v4.8", true}, {"v5.3", true}, {"v5.5", true}, {"v5.8", false}, {"v5.10", false}, {"current", false}};
    for (const auto& row : rows) {
        SCOPED_TRACE(row.era);
        boot_era(row.era);
        const unsigned long a = map(kPage);
        put_str(t, a, "public!!");
        task_struct* child = pl_fork(t);
        ASSERT_NE(child, nullptr);
        // The child's R/O GUP reference (vmsplice()), then it unmaps the page:
        // the parent's PTE is the page's only mapping, its refcount 2.
        page* ref = nullptr;
        pl_set_current(child);
        ASSERT_EQ(get_user_pages_fast(a, 1, 0, &ref), 1);
        pl_set_current(t);
        ASSERT_EQ(pl_munmap(child, a, kPage), 0);
        EXPECT_EQ(page_mapcount(reinterpret_cast<Page*>(ref)), 1);
        put_str(t, a, "SECRET!!");
        EXPECT_EQ(pg(t, a) == ref, row.reused);
        char seen[9] = {};
        ASSERT_EQ(pl_page_read(ref, 0, seen, 8), 0);
        EXPECT_EQ(std::string(seen), row.reused ? "SECRET!!" : "public!!");
        put_page(ref);
        pl_exit(child);
    }
}

// A page mapped twice (parent and child after fork) is copied in every era:
// the mapcount rule and the refcount rule agree there.
TEST_F(ExploreRaceCowRules, WriteFaultCopiesASharedPageInEveryEra) {
    for (const char* era : {"v4.8", "v5.5", "current"}) {
        SCOPED_TRACE(era);
        boot_era(era);
        const unsigned long a = map(kPage);
        put_str(t, a, "public!!");
        task_struct* child = pl_fork(t);
        ASSERT_NE(child, nullptr);
        page* before = pg(t, a);
        ASSERT_EQ(pg(child, a), before);
        put_str(t, a, "SECRET!!");
        EXPECT_NE(pg(t, a), before);
        EXPECT_EQ(get_str(child, a), "public!!");
        pl_exit(child);
    }
}

// Before v5.8 a R/O pin of a page shared with a child does not unshare it
// (gup_must_unshare(): no PageAnonExclusive, no FAULT_FLAG_UNSHARE); since
// then (the model: v5.8) the pin gets the parent's own copy.
TEST_F(ExploreRaceCowRules, ReadOnlyPinUnsharesOnlySinceV58) {
    for (const char* era : {"v5.5", "current"}) {
        SCOPED_TRACE(era);
        const bool old = std::string(era) == "v5.5";
        boot_era(era);
        const unsigned long a = map(kPage);
        put_str(t, a, "public!!");
        task_struct* child = pl_fork(t);
        ASSERT_NE(child, nullptr);
        page* shared = pg(child, a);
        page* pinned = nullptr;
        pl_set_current(t);
        ASSERT_EQ(pin_user_pages_unlocked(a, 1, &pinned, 0), 1);
        EXPECT_EQ(pinned == shared, old);
        EXPECT_EQ(pg(t, a) == shared, old);
        unpin_user_page(pinned);
        pl_exit(child);
    }
}

}  // namespace
}  // namespace pl::test
