// The race corpus of issue 8, GUP-fast part: three protections of the
// lockless walk (mm/gup.c gup_fast()) that the configuration can switch off,
// each explored on a real pl_kernel. With the protection off the explorer
// must find the race and replay its shrunk schedule to the same violation;
// with it on, every schedule with at most two preemptions must pass.
// The scenario forms are examples/races/gup_fast_vs_{fork,munmap}.pin and
// examples/races/longterm_pin_vs_migration.pin.
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "base/config.h"
#include "base/sync/rcu.h"
#include "base/sync/sched_point.h"
#include "explore/explorer.h"
#include "gup/foll_flags.h"
#include "gup/gup_fast.h"
#include "pinlab/kapi.h"
#include "explore_race_bound.h"
#include "point_hook.h"
#include "test_kernel.h"

namespace pl::explore {
namespace {

constexpr unsigned long kPg = 4096;
constexpr const char* kBase = "ram=64M hugetlb_2m=0 hugetlb_1g=0";

// One kernel, one task, one faulted-in anonymous page; what the threads
// leave for the check.
struct Machine {
    pl_kernel* k = nullptr;
    task_struct* t = nullptr;
    task_struct* child = nullptr;
    unsigned long addr = 0;
    page* pinned = nullptr;
    std::string error;  // written by one model thread at a time (serialised)

    explicit Machine(const std::string& config) {
        k = pl_kernel_new((std::string(kBase) + " " + config).c_str());
        if (!k) throw std::runtime_error(pl_last_error());
        t = pl_task_new(k);
        long a = pl_mmap(t, 0, kPg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, nullptr, 0);
        if (a <= 0 || pl_memset(t, static_cast<unsigned long>(a), 0x5a, kPg) != long(kPg))
            throw std::runtime_error(std::string("set-up: ") + pl_last_error());
        addr = static_cast<unsigned long>(a);
    }
    // Thread body: pin the page with pin_user_pages_fast().
    void pin(unsigned flags) {
        pl_set_current(t);
        page* p[1] = {};
        int n = ::pin_user_pages_fast(addr, 1, flags, p);
        if (n == 1) pinned = p[0];
        else if (n != -EFAULT) error += "pin_user_pages_fast returned " + std::to_string(n) + "; ";
    }
    // After the join: the parent writes its page, and what a device reads
    // through the pin must be what the parent reads (pin coherence, the
    // promise of FOLL_LONGTERM|FOLL_WRITE pins: mm/gup.c's FOLL_PIN rules).
    std::optional<std::string> coherent() {
        if (!error.empty()) return error;
        if (!pinned) return "no pin";
        const uint64_t v = 0x0123456789abcdefULL;
        if (pl_write(t, addr, &v, sizeof v) != long(sizeof v)) return std::string("parent write: ") + pl_last_error();
        uint64_t mine = 0, dev = 0;
        if (pl_read(t, addr, &mine, sizeof mine) != long(sizeof mine)) return "parent read failed";
        if (pl_page_read(pinned, 0, &dev, sizeof dev) != 0) return "device read failed";
        if (mine != dev) {
            char m[160];
            std::snprintf(m, sizeof m, "pin incoherent: the parent reads %#llx, the device reads %#llx through its pin",
                          static_cast<unsigned long long>(mine), static_cast<unsigned long long>(dev));
            return std::string(m);
        }
        return std::nullopt;
    }
    // Releases what the threads left (unpin, the child), always.
    void release() {
        if (pinned) unpin_user_page(pinned);
        pinned = nullptr;
        if (child) pl_exit(child);
        child = nullptr;
    }
};

// Check then release, so that the kernel check after it sees no pin.
template <typename Fn>
std::function<std::optional<std::string>()> checked(std::shared_ptr<Machine> m, Fn fn) {
    return [m, fn]() -> std::optional<std::string> {
        std::optional<std::string> r = fn(*m);
        m->release();
        return r;
    };
}

// 1. pin_user_pages_fast(FOLL_WRITE|FOLL_LONGTERM) vs fork().
TestFn fork_test(bool seqcount) {
    return [seqcount] {
        auto m = std::make_shared<Machine>(std::string("gup.fast_fork_seqcount=") + (seqcount ? "on" : "off"));
        Execution e;
        e.kernel = m->k;
        e.threads.push_back([m] { m->pin(FOLL_WRITE | FOLL_LONGTERM); });
        e.threads.push_back([m] {
            pl_set_current(m->t);
            m->child = pl_fork(m->t);
            if (!m->child) m->error += std::string("fork: ") + pl_last_error() + "; ";
        });
        e.check = checked(m, [](Machine& mm) { return mm.coherent(); });
        e.teardown = [m] {
            m->release();
            pl_kernel_free(m->k);
        };
        return e;
    };
}

// 2. GUP-fast vs munmap() freeing the page's PTE table. The outcome of the
// call does not matter (before the unmap it gets the page, after it -EFAULT); reading
// a freed table is the violation (a WARN, so a kernel violation).
TestFn munmap_test(bool rcu) {
    return [rcu] {
        auto m = std::make_shared<Machine>(std::string("mm.pt_free_rcu=") + (rcu ? "on" : "off"));
        Execution e;
        e.kernel = m->k;
        e.threads.push_back([m] {
            // A GET reference: a pin still held when munmap runs would be
            // the tracker's "leak" report, another story.
            pl_set_current(m->t);
            page* p[1] = {};
            int n = ::get_user_pages_fast(m->addr, 1, FOLL_WRITE, p);
            if (n == 1) put_page(p[0]);
            else if (n != -EFAULT) m->error += "get_user_pages_fast returned " + std::to_string(n) + "; ";
        });
        e.threads.push_back([m] {
            pl_set_current(m->t);
            if (pl_munmap(m->t, m->addr, kPg) != 0) m->error += std::string("munmap: ") + pl_last_error() + "; ";
        });
        e.check = checked(m, [](Machine& mm) -> std::optional<std::string> {
            if (!mm.error.empty()) return mm.error;
            return std::nullopt;
        });
        e.teardown = [m] {
            m->release();
            pl_kernel_free(m->k);
        };
        return e;
    };
}

// 3. pin_user_pages_fast(FOLL_LONGTERM|FOLL_WRITE) vs migration of the page.
TestFn migrate_test(bool recheck) {
    return [recheck] {
        auto m = std::make_shared<Machine>(std::string("gup.fast_pte_recheck=") + (recheck ? "on" : "off"));
        Execution e;
        e.kernel = m->k;
        e.threads.push_back([m] { m->pin(FOLL_WRITE | FOLL_LONGTERM); });
        e.threads.push_back([m] {
            pl_set_current(m->t);
            int r = pl_migrate_page(m->t, m->addr);
            if (r != 0 && r != -EBUSY && r != -EAGAIN) m->error += "migrate: " + std::to_string(r) + "; ";
        });
        e.check = checked(m, [](Machine& mm) { return mm.coherent(); });
        e.teardown = [m] {
            m->release();
            pl_kernel_free(m->k);
        };
        return e;
    };
}

ExploreOptions opts(StrategyKind k, uint64_t budget) {
    ExploreOptions o;
    o.strategy = k;
    o.seed = 1;
    o.bound = 2;
    o.pct_depth = 2;
    o.max_executions = budget;
    o.max_seconds = 60;  // a guard: each is found in well under that
    return o;
}

// (a) With the protection off: found, and the shrunk schedule replays to the
// same kind of violation.
void expect_found(const char* name, const TestFn& test, StrategyKind k, uint64_t budget, const char* what,
                  int pct_depth = 2) {
    ExploreOptions o = opts(k, budget);
    o.pct_depth = pct_depth;
    ExploreResult r = explore(o, test);
    ASSERT_TRUE(r.found) << name << " " << to_string(k) << ": " << r.summary();
    const RunRecord* f = r.failure();
    ASSERT_NE(f, nullptr);
    EXPECT_NE(f->violation.message.find(what), std::string::npos) << name << ": " << f->violation.message;
    EXPECT_GE(f->preemptions, 1) << "a race needs a preemption: " << f->violation.message;
    RunRecord again = replay(test, to_string(f->schedule));
    EXPECT_EQ(again.violation.kind, f->violation.kind)
        << name << ": replay of " << to_string(f->schedule) << ": " << again.violation.message;
    std::printf("[ %s, %s ] found after %llu executions, %.3f s; shrunk to %d preemptions, %llu steps, "
                "%zu choices: %s\n  %s\n",
                name, to_string(k), static_cast<unsigned long long>(r.executions), r.seconds, f->preemptions,
                static_cast<unsigned long long>(f->steps), f->schedule.choices.size(), to_string(f->schedule).c_str(),
                f->violation.message.c_str());
}

// (b) With it on: every schedule of at most two preemptions passes.
void expect_exhausted(const char* name, const TestFn& test) {
    ExploreOptions o = opts(StrategyKind::Bounded, 0);
    o.bound = test::kExhaustBound;  // 2; 1 under ASan (explore_race_bound.h)
    o.max_seconds = 120;  // a guard only: the space is a few thousand schedules
    ExploreResult r = explore(o, test);
    EXPECT_FALSE(r.found) << name << ": " << r.summary() << "\n"
                          << (r.failure() ? r.failure()->violation.message : std::string());
    EXPECT_TRUE(r.exhausted) << name << ": " << r.summary();
    EXPECT_EQ(r.bound_reached, test::kExhaustBound) << name << ": " << r.summary();
    std::printf("[ %s, bounded ] exhausted at bound %d: %llu executions, %.2f s\n", name, test::kExhaustBound,
                static_cast<unsigned long long>(r.executions), r.seconds);
}

// ---- 1. fork's write_protect_seq (57efa1fe5957, v5.11) -------------------------------

// Without it, GUP-fast pins the page between fork's folio_try_dup_anon_rmap()
// (not pinned yet: shared with the child) and its write-protect of the PTE;
// the parent's next write COWs away from the pinned page.
TEST(ExploreRaceFastFork, FoundWithoutWriteProtectSeq) {
    expect_found("gup_fast_vs_fork", fork_test(false), StrategyKind::Bounded, 20000, "pin incoherent");
    expect_found("gup_fast_vs_fork", fork_test(false), StrategyKind::Random, 20000, "pin incoherent");
}

TEST(ExploreRaceFastFork, NoneWithWriteProtectSeqAtBound2) { expect_exhausted("gup_fast_vs_fork", fork_test(true)); }

// ---- 2. page tables freed after a grace period (MMU_GATHER_RCU_TABLE_FREE) ----------

TEST(ExploreRaceFastMunmap, UseAfterFreeWithoutRcuTableFree) {
    expect_found("gup_fast_vs_munmap", munmap_test(false), StrategyKind::Bounded, 20000, "use-after-free of a page table");
    // Random does not find this one: the walker must stay between two of its
    // steps while munmap takes all of its own (p ~ 2^-steps); PCT's priority
    // change point is exactly that schedule.
    expect_found("gup_fast_vs_munmap", munmap_test(false), StrategyKind::Pct, 20000, "use-after-free of a page table");
}

TEST(ExploreRaceFastMunmap, NoneWithRcuTableFreeAtBound2) { expect_exhausted("gup_fast_vs_munmap", munmap_test(true)); }

// ---- 3. gup_fast_pte_range()'s recheck against migration -------------------------------

TEST(ExploreRaceFastMigrate, PinOnAMovedPageWithoutPteRecheck) {
    // Two preemptions: the walker stops after reading the PTE, migration
    // runs past its reference test, the walker grabs. Random does not find
    // it in 20000 executions; PCT with depth 3 (two change points) does.
    expect_found("longterm_pin_vs_migration", migrate_test(false), StrategyKind::Bounded, 20000, "pinned_page_moved");
    expect_found("longterm_pin_vs_migration", migrate_test(false), StrategyKind::Pct, 20000, "pinned_page_moved", 3);
}

TEST(ExploreRaceFastMigrate, NoneWithPteRecheckAtBound2) {
    expect_exhausted("longterm_pin_vs_migration", migrate_test(true));
}

}  // namespace
}  // namespace pl::explore

// ---- each switch's effect, deterministically, on one thread -------------------------------

namespace pl {
namespace {

using test::kPage;


class GupFastProtectionTest : public test::KernelTest {
protected:
    static constexpr const char* kBase = "ram=64M hugetlb_2m=0 hugetlb_1g=0 ";
    unsigned long one_page() {
        unsigned long a = map(kPage);
        put_str(t, a, "data");
        return a;
    }
    unsigned long fast(unsigned long a, unsigned flags, Page** p) { return gup_fast(mm(), a, 1, flags, p); }
};

// gup_fast(): a FOLL_PIN walk does not start while write_protect_seq is odd
// (raw_read_seqcount() & 1: fork's copy_page_range() is running), and gives
// back what it took when the count moved; a FOLL_GET walk never looks.
// gup.fast_fork_seqcount=off is the kernel before 57efa1fe5957: it pins.
TEST_F(GupFastProtectionTest, ForkSeqcountOddStopsOnlyAPinAndOnlyWhenOn) {
    for (bool on : {true, false}) {
        reboot((std::string(kBase) + "gup.fast_fork_seqcount=" + (on ? "on" : "off")).c_str());
        const unsigned long a = one_page();
        Page* p[1] = {};
        mm().write_protect_seq.write_begin();  // fork is copying
        const unsigned long pinned = fast(a, FOLL_PIN | FOLL_WRITE, p);
        const unsigned long got = fast(a, FOLL_GET | FOLL_WRITE, p + 0);
        mm().write_protect_seq.write_end();
        EXPECT_EQ(pinned, on ? 0u : 1u) << (on ? "on" : "off");
        EXPECT_EQ(got, 1u) << "FOLL_GET ignores write_protect_seq";
        if (got) put_page(reinterpret_cast<page*>(p[0]));
        if (pinned) unpin_user_page(reinterpret_cast<page*>(p[0]));
    }
}

// The switch's default follows the era: fork has had write_protect_seq
// since v5.11; an explicit value wins in every era.
TEST(GupFastProtectionConfig, ForkSeqcountDefaultFollowsTheEra) {
    const struct {
        const char* config;
        bool want;
    } rows[] = {
        {"", true},
        {"era=v5.11", true},
        {"era=v5.10", false},
        {"era=v4.8", false},
        {"era=v5.10 gup.fast_fork_seqcount=on", true},
        {"gup.fast_fork_seqcount=off era=current", false},
    };
    for (const auto& r : rows) {
        auto c = Config::parse(r.config);
        ASSERT_TRUE(c) << r.config << ": " << Config::last_error();
        EXPECT_EQ(c->gup_fast_fork_seqcount, r.want) << r.config;
        EXPECT_EQ(c->mm_pt_free_rcu, true) << r.config;
        EXPECT_EQ(c->gup_fast_pte_recheck, true) << r.config;
    }
    // Stable keys: listed by `pinlab config-keys`, round-tripped by to_string().
    std::string keys;
    for (const auto& line : Config::describe_keys()) keys += line + "\n";
    for (const char* key : {"gup.fast_fork_seqcount  on", "mm.pt_free_rcu  on", "gup.fast_pte_recheck  on"})
        EXPECT_NE(keys.find(key), std::string::npos) << key;
    auto off = Config::parse("gup.fast_fork_seqcount=off mm.pt_free_rcu=off gup.fast_pte_recheck=off");
    ASSERT_TRUE(off);
    auto again = Config::parse(off->to_string());
    ASSERT_TRUE(again) << Config::last_error();
    EXPECT_FALSE(again->gup_fast_fork_seqcount || again->mm_pt_free_rcu || again->gup_fast_pte_recheck);
    EXPECT_FALSE(Config::parse("mm.pt_free_rcu=maybe"));
}

// free_pgtables() after munmap of a page alone in its PMD range frees its
// PTE table: through call_rcu() (tlb_remove_table() with
// MMU_GATHER_RCU_TABLE_FREE), or with mm.pt_free_rcu=off at once, into the
// mm's quarantine, poisoned.
TEST_F(GupFastProtectionTest, MunmapFreesTheTableThroughRcuOrIntoTheQuarantine) {
    for (bool on : {true, false}) {
        reboot((std::string(kBase) + "mm.pt_free_rcu=" + (on ? "on" : "off")).c_str());
        const unsigned long a = one_page();
        PtTable* table = PageTable::table_of(sync::load(*mm().pgtable.pmd_slot(a, false)));
        ASSERT_EQ(pl_munmap(t, a, kPage), 0) << pl_last_error();
        EXPECT_EQ(mm().pgtable.pmd_slot(a, false) && *mm().pgtable.pmd_slot(a, false), false)
            << "the PMD entry is cleared (free_pgtables(): nothing else in the PMD range)";
        if (on) {
            EXPECT_EQ(mm().pgtable.nr_quarantined(), 0u);
        } else {
            EXPECT_GE(mm().pgtable.nr_quarantined(), 1u);
            EXPECT_EQ(sync::peek(table->e[0]), PageTable::kPoison);
            EXPECT_EQ(sync::peek(table->e[pt_index(a, PtLevel::Pte)]), PageTable::kPoison);
        }
    }
}

// The lockless walk against munmap at the instant after it read the PMD
// entry and before it reads the PTE: with the grace period it reads the
// (zapped, still allocated) table and finds nothing; without it, it reads
// the freed table and WARNs, and treats the entry as not present.
TEST_F(GupFastProtectionTest, WalkThatReadsAFreedTableWarns) {
    for (bool on : {true, false}) {
        reboot((std::string(kBase) + "mm.pt_free_rcu=" + (on ? "on" : "off")).c_str());
        if (!on) expect_reports("warn", 1);
        const unsigned long a = one_page();
        const pte::entry_t* slot = mm().pgtable.pte_slot(a, false);
        ASSERT_NE(slot, nullptr);
        sync::rcu_barrier();  // no batch of callbacks comes due inside the walk's read section
        Page* p[1] = {};
        unsigned long n = 0;
        {
            test::PointHook munmap_now(sync::Point::AtomicLoad, slot, 1, [&] { EXPECT_EQ(pl_munmap(t, a, kPage), 0); });
            n = fast(a, FOLL_PIN | FOLL_WRITE, p);
            EXPECT_TRUE(munmap_now.fired());
        }
        EXPECT_EQ(n, 0u);
        const std::string log = pl_dmesg(k);
        EXPECT_EQ(log.find("use-after-free of a page table") != std::string::npos, !on) << log;
    }
}

// gup_fast_pte_range(): a PTE that changed between the walk's read and its
// recheck after the grab (here write-protected, as fork or migration would)
// makes the walk give the folio back. gup.fast_pte_recheck=off keeps it.
TEST_F(GupFastProtectionTest, PteRecheckBacksOffWhenThePteChanged) {
    for (bool on : {true, false}) {
        reboot((std::string(kBase) + "gup.fast_pte_recheck=" + (on ? "on" : "off")).c_str());
        const unsigned long a = one_page();
        pte::entry_t* slot = mm().pgtable.pte_slot(a, false);
        const pte::entry_t* pmd = mm().pgtable.pmd_slot(a, false);
        ASSERT_TRUE(slot && pmd);
        const pte::entry_t orig = sync::load(*slot);
        Folio* folio = folio_at(t, a);
        const int refs = folio->ref_count();
        Page* p[1] = {};
        unsigned long n = 0;
        {
            // The second read of the PMD entry is the recheck, after the grab.
            test::PointHook wrprotect(sync::Point::AtomicLoad, pmd, 2, [&] { sync::store(*slot, pte::wrprotect(orig)); });
            n = fast(a, FOLL_PIN | FOLL_WRITE, p);
            EXPECT_TRUE(wrprotect.fired());
        }
        sync::store(*slot, orig);
        EXPECT_EQ(n, on ? 0u : 1u) << (on ? "on" : "off");
        EXPECT_EQ(folio->ref_count(), on ? refs : refs + GUP_PIN_COUNTING_BIAS);
        if (n) unpin_user_page(reinterpret_cast<page*>(p[0]));
    }
}

// Serially the recheck changes nothing: a pin first makes migration fail
// (try_to_migrate(): folio_try_share_anon_rmap() sees the pin), a migration
// first leaves the pin on the new page. Either way the process and the
// device agree, and the old folio goes.
TEST_F(GupFastProtectionTest, PteRecheckOffChangesNothingSerially) {
    for (bool on : {true, false}) {
        reboot((std::string(kBase) + "gup.fast_pte_recheck=" + (on ? "on" : "off")).c_str());
        pl_set_current(t);
        unsigned long a = one_page();
        page* p[1] = {};
        ASSERT_EQ(::pin_user_pages_fast(a, 1, FOLL_WRITE | FOLL_LONGTERM, p), 1);
        EXPECT_EQ(pl_migrate_page(t, a), -EBUSY);
        EXPECT_EQ(pl_virt_to_page(t, a), p[0]);
        unpin_user_page(p[0]);
        const page* before = pl_virt_to_page(t, a);
        ASSERT_EQ(pl_migrate_page(t, a), 0) << pl_last_error();
        EXPECT_NE(pl_virt_to_page(t, a), before);
        ASSERT_EQ(::pin_user_pages_fast(a, 1, FOLL_WRITE | FOLL_LONGTERM, p), 1);
        EXPECT_EQ(pl_virt_to_page(t, a), p[0]);
        char dev[5] = {};
        ASSERT_EQ(pl_page_read(p[0], 0, dev, 4), 0);
        EXPECT_STREQ(dev, "data");
        unpin_user_page(p[0]);
    }
}

}  // namespace
}  // namespace pl
