// The pin engine under contention (issue 3, "Concurrency tests"): threads
// pinning and unpinning through every entry point while others fork, munmap,
// mprotect, zap, split THPs, collapse, migrate and compact the same address
// space. While a pin is held its page must stay put and stay coherent with the
// pinning process (spec §7, the COW rules of PageAnonExclusive); afterwards
// every invariant holds and nr_foll_pin_acquired == nr_foll_pin_released.
// These suites also run under TSan: iteration counts are bounded, seeds fixed.
//
// Each test keeps a *stable* region (never unmapped or zapped: only forks,
// mprotect, THP splits/collapses, migration and compaction touch it, none of
// which may take a pinned page away from its process) and a *chaos* region
// (munmap/mmap and MADV_DONTNEED as well). The stable region's pinned pages
// are checked while pinned; the chaos region only has to keep its books.
#include "test_kernel.h"

#include <atomic>
#include <chrono>
#include <functional>
#include <optional>
#include <random>
#include <thread>

#include "base/sync/rcu.h"
#include "base/sync/sched_point.h"
#include "gup/foll_flags.h"
#include "gup/longterm_pinnable.h"
#include "mm/mm_struct.h"

namespace pl::test {
namespace {

// Bytes of each page reserved for one writer (offsets never overlap):
//  [kPinOff + 256 * tid, +16): pinner `tid`'s DMA and CPU tokens;
//  [kChildOff, +8): what every fork child writes into its copy;
//  [kTagOff, +8): the parent's tag (page index), never rewritten.
constexpr unsigned kPinOff = 0;
constexpr unsigned kChildOff = 4000;
constexpr unsigned kTagOff = 4080;
constexpr int kMaxBatch = 64;
constexpr uint64_t kFill = 0x5a5a5a5a5a5a5a5aULL;  // what map_region() fills pages with

struct Region {
    unsigned long start = 0;
    unsigned long pages = 0;
    unsigned long addr(unsigned long i) const { return start + i * kPage; }
    unsigned long len() const { return pages * kPage; }
};

enum class Api : uint8_t { PinFast, PinUnlocked, GetFast };

// Widens race windows: installed on a thread through the model's
// interleaving points (src/base/sync/sched_point.h, every atomic access, lock
// and seqcount read announces itself there), it gives up the CPU now and then
// so that the other threads run inside this one's critical windows.
class Jitter : public sync::Scheduler {
public:
    explicit Jitter(unsigned seed) : rng_(seed) { sync::set_thread_scheduler(this); }
    ~Jitter() override { sync::set_thread_scheduler(nullptr); }
    Jitter(const Jitter&) = delete;
    Jitter& operator=(const Jitter&) = delete;
    void at_point(sync::Point, const void*) override {
        const unsigned r = rng_() % 1024;
        if (r == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
        else if (r < 32) std::this_thread::yield();
    }
    void blocked(const void*) override { std::this_thread::yield(); }

private:
    std::minstd_rand rng_;
};

class GupPinConcurrent : public KernelTest {
protected:
    enum class Jittered : uint8_t { No, Yes };
    // Runs every function on its own thread (under a Jitter seeded from
    // `seed` and its index, unless told not to) and joins them all.
    static void run_all(const std::vector<std::function<void()>>& fns, unsigned seed = 0,
                        Jittered jittered = Jittered::Yes) {
        std::vector<std::thread> ts;
        ts.reserve(fns.size());
        for (size_t i = 0; i < fns.size(); ++i)
            ts.emplace_back([&fn = fns[i], i, seed, jittered] {
                std::optional<Jitter> j;
                if (jittered == Jittered::Yes) j.emplace(seed * 16 + static_cast<unsigned>(i) + 1);
                fn();
            });
        for (auto& th : ts) th.join();
    }

    Region map_region(unsigned long pages) {
        Region r{map(pages * kPage), pages};
        EXPECT_EQ(pl_memset(t, r.start, 0x5a, r.len()), static_cast<long>(r.len())) << pl_last_error();
        for (unsigned long i = 0; i < r.pages; ++i) write_u64(t, r.addr(i) + kTagOff, i);
        return r;
    }

    void write_u64(task_struct* task, unsigned long addr, uint64_t v) {
        EXPECT_EQ(pl_write(task, addr, &v, sizeof v), 8) << pl_last_error();
    }
    static long read_u64(task_struct* task, unsigned long addr, uint64_t* v) {
        return pl_read(task, addr, v, sizeof *v);
    }

    static std::string describe(page* p) {
        if (!p) return "none";
        return "pfn " + std::to_string(page_to_pfn(p)) + " ref " + std::to_string(page_ref_count(p)) + " map " +
               std::to_string(page_mapcount(p)) + (PageAnonExclusive(p) ? " exclusive" : " shared");
    }

    // The page mapped at addr, waiting out a migration entry (a migration
    // attempt that must fail on a pinned page still unmaps it for a moment).
    page* mapped_page(unsigned long addr) {
        for (int i = 0; i < 100000; ++i) {
            if (page* p = pl_virt_to_page(t, addr)) return p;
            std::this_thread::yield();
        }
        return nullptr;
    }

    // The level of the leaf mapping addr, read as GUP-fast reads it (page
    // tables of a busy mm are freed under us: only RCU keeps them alive).
    PtLevel leaf_level(unsigned long addr) {
        sync::RcuReadGuard g;
        return mm().pgtable.find_leaf(addr).level;
    }

    // PageAnonExclusive as it applies to the mapping of `p` at addr: the head
    // page's flag while the folio is PMD-mapped, the page's own once PTE-mapped.
    bool mapped_exclusive(unsigned long addr, page* p) {
        Page* pp = reinterpret_cast<Page*>(p);
        for (int i = 0; i < 1000; ++i) {
            PtLevel before = leaf_level(addr);
            bool ex = before == PtLevel::Pmd ? pl::PageAnonExclusive(pl::page_folio(pp)->head())
                                             : pl::PageAnonExclusive(pp);
            if (leaf_level(addr) == before) return ex;
        }
        return false;
    }

    // Everything a pin of a page of the stable region promises, checked while
    // the pin is held (spec §7): the page stays mapped at addr, exclusive to
    // this process, and coherent both ways with what the CPU sees there.
    void check_pinned_stable_page(int tid, unsigned long addr, page* p, uint64_t token, bool try_migrate) {
        if (page* q = mapped_page(addr); q != p) {
            ADD_FAILURE() << "a pinned page left its mapping at " << std::hex << addr << ": pinned " << describe(p)
                          << ", mapped " << describe(q) << ", entry " << pl_pte_describe(t, addr);
        }
        EXPECT_TRUE(mapped_exclusive(addr, p)) << "a pinned anonymous page is not PageAnonExclusive at " << std::hex
                                               << addr;
        // DMA → CPU: what the device writes through the pin, the process reads.
        const unsigned off = kPinOff + 256 * static_cast<unsigned>(tid);
        ASSERT_EQ(pl_page_write(p, off, &token, sizeof token), 0);
        uint64_t seen = 0;
        ASSERT_EQ(read_u64(t, addr + off, &seen), 8) << pl_last_error();
        EXPECT_EQ(seen, token) << "the process does not see the DMA write at " << std::hex << addr;
        // CPU → DMA: a store through the PTE lands in the pinned frame (never
        // in a COW copy). The VMA may be read-only right now (mprotect).
        const uint64_t token2 = ~token;
        long w = pl_write(t, addr + off + 8, &token2, sizeof token2);
        if (w == 8) {
            uint64_t dma = 0;
            ASSERT_EQ(pl_page_read(p, off + 8, &dma, sizeof dma), 0);
            EXPECT_EQ(dma, token2) << "the CPU store went elsewhere than the pinned frame at " << std::hex << addr;
        } else {
            EXPECT_EQ(w, -EFAULT) << pl_last_error();
        }
        if (try_migrate) {
            // migrate_folio(): a pinned folio cannot move (-EBUSY; -EAGAIN
            // when another migration holds its lock; -ENOMEM for no target).
            int r = pl_migrate_page(t, addr);
            EXPECT_TRUE(r == -EBUSY || r == -EAGAIN || r == -ENOMEM) << "migrating a pinned page gave " << r;
            EXPECT_EQ(mapped_page(addr), p) << "a pinned page moved at " << std::hex << addr;
        }
    }

    // One pinner: `iters` random pins of random ranges through the fast,
    // unlocked and GET entry points, each checked and released again.
    void pinner(int tid, unsigned seed, int iters, Region stable, Region chaos, int max_batch) {
        pl_set_current(t);
        std::mt19937 rng(seed);
        std::vector<page*> pages(kMaxBatch);
        for (int it = 0; it < iters; ++it) {
            const bool in_stable = rng() % 2 == 0;
            const Region& r = in_stable ? stable : chaos;
            const unsigned long n = 1 + rng() % std::min<unsigned long>(static_cast<unsigned long>(max_batch), r.pages);
            const unsigned long first = rng() % (r.pages - n + 1);
            const unsigned long start = r.addr(first);
            const Api api = static_cast<Api>(rng() % 3);
            unsigned flags = (rng() % 2) ? FOLL_WRITE : 0;
            if (api != Api::GetFast && rng() % 3 == 0) flags |= FOLL_LONGTERM;
            std::fill(pages.begin(), pages.end(), nullptr);
            long got = 0;
            switch (api) {
                case Api::PinFast: got = ::pin_user_pages_fast(start, static_cast<int>(n), flags, pages.data()); break;
                case Api::PinUnlocked: got = ::pin_user_pages_unlocked(start, n, pages.data(), flags); break;
                case Api::GetFast: got = ::get_user_pages_fast(start, static_cast<int>(n), flags, pages.data()); break;
            }
            const bool pin = api != Api::GetFast;
            // __gup_longterm_locked(): a folio in ZONE_MOVABLE that another
            // thread holds pinned cannot be migrated out of it (-ENOMEM; after
            // a GUP-fast prefix, gup_fast_fallback() returns the prefix).
            const bool may_fall_short = movable_ && (flags & FOLL_LONGTERM);
            if (may_fall_short && got == -ENOMEM) continue;
            if (in_stable && !(flags & FOLL_WRITE) && !may_fall_short) {
                // The stable region is always mapped and readable: a read
                // pin or GET of it never fails, however busy the mm is.
                EXPECT_EQ(got, static_cast<long>(n)) << "api " << int(api) << " flags " << flags << ": "
                                                     << pl_last_error();
            } else if (got <= 0) {
                // Unmapped (chaos) or read-only at the moment (FOLL_WRITE).
                EXPECT_TRUE(got == -EFAULT || (got == 0 && pin)) << "api " << int(api) << " gave " << got;
            }
            if (got <= 0) continue;
            EXPECT_LE(got, static_cast<long>(n));
            for (long i = 0; i < got; ++i) {
                ASSERT_NE(pages[i], nullptr);
                if (pin) {
                    // The shared zero page (a R/O pin of a hole) is never pinned.
                    EXPECT_TRUE(folio_maybe_dma_pinned(page_folio(pages[i])) || is_zero_page(pages[i]));
                    // check_and_migrate_movable_pages(): never a long-term pin in ZONE_MOVABLE.
                    if (flags & FOLL_LONGTERM) {
                        const Folio* f = pl::page_folio(reinterpret_cast<Page*>(pages[i]));
                        EXPECT_TRUE(folio_is_longterm_pinnable(*kern().mem, f)) << describe(pages[i]);
                    }
                } else {
                    EXPECT_GT(page_ref_count(pages[i]), 0);
                }
            }
            if (pin && in_stable) {
                // Check the first page and one more of the batch.
                const uint64_t base = (static_cast<uint64_t>(tid + 1) << 48) | (static_cast<uint64_t>(it) << 16);
                check_pinned_stable_page(tid, start, pages[0], base, rng() % 4 == 0);
                unsigned long j = rng() % static_cast<unsigned long>(got);
                if (j) check_pinned_stable_page(tid, start + j * kPage, pages[j], base | j, false);
            }
            if (!pin) {
                for (long i = 0; i < got; ++i) put_page(pages[i]);
                continue;
            }
            switch (rng() % 3) {
                case 0: unpin_user_pages(pages.data(), static_cast<unsigned long>(got)); break;
                case 1: unpin_user_pages_dirty_lock(pages.data(), static_cast<unsigned long>(got), rng() % 2); break;
                default:
                    for (long i = 0; i < got; ++i) unpin_user_page(pages[i]);
                    break;
            }
        }
    }

    // fork() of the busy mm: each child writes its own copy of the stable
    // region, and neither the write nor the child's exit may reach the parent.
    void forker(unsigned seed, int iters, Region stable) {
        std::mt19937 rng(seed);
        for (int it = 0; it < iters; ++it) {
            task_struct* c = pl_fork(t);
            if (!c) {
                ADD_FAILURE() << "fork failed: " << pl_last_error();
                continue;
            }
            for (int w = 0; w < 4; ++w) {
                unsigned long i = rng() % stable.pages;
                uint64_t mark = 0xc0000000u + static_cast<uint64_t>(it);
                long r = pl_write(c, stable.addr(i) + kChildOff, &mark, sizeof mark);
                if (r != 8) {
                    EXPECT_EQ(r, -EFAULT) << "the child's write: " << pl_last_error();  // read-only now
                    continue;
                }
                uint64_t v = 0;
                EXPECT_EQ(read_u64(c, stable.addr(i) + kChildOff, &v), 8);
                EXPECT_EQ(v, mark) << "the child does not see its own write";
                EXPECT_EQ(read_u64(t, stable.addr(i) + kChildOff, &v), 8);
                EXPECT_EQ(v, kFill) << "the child's write reached the parent at page " << i;
                EXPECT_EQ(read_u64(c, stable.addr(i) + kTagOff, &v), 8);
                EXPECT_EQ(v, i) << "the child sees the wrong page";
            }
            pl_exit(c);
        }
    }

    // mprotect() R/O and back over all or part of `r` (splitting its VMA and
    // any THP across the boundary); ends read-write.
    void protector(unsigned seed, int iters, Region r) {
        std::mt19937 rng(seed);
        for (int it = 0; it < iters; ++it) {
            unsigned long first = rng() % r.pages;
            unsigned long n = 1 + rng() % (r.pages - first);
            EXPECT_EQ(pl_mprotect(t, r.addr(first), n * kPage, PROT_READ), 0) << pl_last_error();
            std::this_thread::yield();
            EXPECT_EQ(pl_mprotect(t, r.addr(first), n * kPage, PROT_READ | PROT_WRITE), 0) << pl_last_error();
        }
        EXPECT_EQ(pl_mprotect(t, r.start, r.len(), PROT_READ | PROT_WRITE), 0) << pl_last_error();
    }

    // munmap() part of the chaos region and map it again (MAP_FIXED), or
    // zap part of it with MADV_DONTNEED, and touch it again.
    void unmapper(unsigned seed, int iters, Region r, unsigned long max_pages) {
        std::mt19937 rng(seed);
        for (int it = 0; it < iters; ++it) {
            unsigned long n = 1 + rng() % std::min(max_pages, r.pages);
            unsigned long first = rng() % (r.pages - n + 1);
            unsigned long a = r.addr(first);
            if (rng() % 2) {
                EXPECT_EQ(pl_munmap(t, a, n * kPage), 0) << pl_last_error();
                EXPECT_EQ(pl_mmap(t, a, n * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                                  nullptr, 0),
                          static_cast<long>(a))
                    << pl_last_error();
            } else {
                EXPECT_EQ(pl_madvise(t, a, n * kPage, MADV_DONTNEED), 0) << pl_last_error();
            }
            EXPECT_EQ(pl_memset(t, a, 0x33, kPage), static_cast<long>(kPage)) << pl_last_error();
        }
    }

    // pl_migrate_page() of random pages of both regions; compaction now and then.
    void migrator(unsigned seed, int iters, Region stable, Region chaos, int compact_every) {
        std::mt19937 rng(seed);
        for (int it = 0; it < iters; ++it) {
            const Region& r = rng() % 2 ? stable : chaos;
            int res = pl_migrate_page(t, r.addr(rng() % r.pages));
            EXPECT_TRUE(res == 0 || res == -EBUSY || res == -EAGAIN || res == -EFAULT || res == -ENOMEM)
                << "pl_migrate_page gave " << res;
            if (compact_every && it % compact_every == compact_every - 1) {
                EXPECT_GE(pl_compact_memory(k), 0);
            }
        }
    }

    bool movable_ = false;  // the kernel has a ZONE_MOVABLE: long-term pins migrate

    // After the storm: the books balance and the parent's own data survived.
    void check_quiescent(Region stable) {
        EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
        EXPECT_GT(pl_vmstat(k, "nr_foll_pin_acquired"), 0u);
        EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"));
        for (unsigned long i = 0; i < stable.pages; ++i) {
            uint64_t v = ~0ULL;
            EXPECT_EQ(read_u64(t, stable.addr(i) + kTagOff, &v), 8);
            EXPECT_EQ(v, i) << "the parent's page " << i << " lost its contents";
            EXPECT_EQ(read_u64(t, stable.addr(i) + kChildOff, &v), 8);
            EXPECT_EQ(v, kFill) << "a child's write reached the parent's page " << i;
        }
    }
};

// Base pages: pinners (fast, unlocked, GET; R/O, R/W, longterm) against
// fork, mprotect, munmap/mmap, MADV_DONTNEED, migration and compaction.
TEST_F(GupPinConcurrent, BasePagesAgainstForkMprotectUnmapAndMigration) {
    reboot("ram=128M hugetlb_2m=0 hugetlb_1g=0 thp=never");
    const Region stable = map_region(32);
    const Region chaos = map_region(32);
    run_all({
        [&] { pinner(0, 11, 400, stable, chaos, 8); },
        [&] { pinner(1, 12, 400, stable, chaos, 8); },
        [&] { forker(13, 30, stable); },
        [&] { protector(14, 50, stable); },
        [&] { unmapper(15, 80, chaos, 4); },
        [&] { migrator(16, 150, stable, chaos, 50); },
    });
    check_quiescent(stable);
}

// The same with a ZONE_MOVABLE, where the anonymous pages start: every
// FOLL_LONGTERM pin first migrates its folios out of it
// (check_and_migrate_movable_pages()), racing the other pinners, whose pins
// make that migration fail (-ENOMEM), and everything else.
TEST_F(GupPinConcurrent, LongtermPinsMigrateOutOfZoneMovableUnderContention) {
    reboot("ram=128M movable=64M hugetlb_2m=0 hugetlb_1g=0 thp=never");
    movable_ = true;
    const Region stable = map_region(32);
    const Region chaos = map_region(32);
    ASSERT_EQ(folio_at(t, stable.start)->zone(), ZoneId::Movable);
    run_all({
        [&] { pinner(0, 51, 300, stable, chaos, 8); },
        [&] { pinner(1, 52, 300, stable, chaos, 8); },
        [&] { forker(53, 20, stable); },
        [&] { unmapper(54, 50, chaos, 4); },
        [&] { migrator(55, 100, stable, chaos, 0); },
    });
    check_quiescent(stable);
    // Only a long-term pin moves a page out of ZONE_MOVABLE (pl_migrate_page()
    // allocates movable targets).
    unsigned long moved_out = 0;
    for (unsigned long i = 0; i < stable.pages; ++i) moved_out += folio_at(t, stable.addr(i))->zone() == ZoneId::Normal;
    EXPECT_GT(moved_out, 0u);
}

// THPs (thp=always): PMD-mapped folios pinned in batches while their PMDs
// are split (split_huge_pmd, mprotect of part of a THP, MADV_DONTNEED of one
// subpage), collapsed again (MADV_COLLAPSE), migrated and forked.
TEST_F(GupPinConcurrent, ThpsAgainstSplitCollapseForkAndMigration) {
    reboot("ram=128M hugetlb_2m=0 hugetlb_1g=0 thp=always");
    const unsigned long huge = PMD_SIZE / kPage;
    const Region stable = map_region(huge);
    const Region chaos = map_region(huge);
    ASSERT_EQ(level(t, stable.start), PtLevel::Pmd);
    ASSERT_EQ(level(t, chaos.start), PtLevel::Pmd);
    auto splitter = [&](unsigned seed, int iters) {
        std::mt19937 rng(seed);
        for (int it = 0; it < iters; ++it) {
            const Region& r = rng() % 2 ? stable : chaos;
            switch (rng() % 3) {
                case 0: {  // the internal split_huge_pmd(), under the mmap_lock for read
                    unsigned long a = r.addr(rng() % r.pages);
                    sync::ReadGuard g(mm().mmap_lock);
                    if (Vma* v = mm().vma_lookup(a)) split_huge_pmd(*v, a);
                    break;
                }
                case 1:  // MADV_COLLAPSE: refused (-EAGAIN) while any page is pinned
                    (void)pl_madvise(t, r.start, r.len(), MADV_COLLAPSE);
                    break;
                default: {  // MADV_DONTNEED of one subpage of the chaos THP (-ENOMEM: unmapped now)
                    int res = pl_madvise(t, chaos.addr(rng() % chaos.pages), kPage, MADV_DONTNEED);
                    EXPECT_TRUE(res == 0 || res == -ENOMEM) << res;
                    break;
                }
            }
        }
    };
    run_all({
        [&] { pinner(0, 21, 60, stable, chaos, kMaxBatch); },
        [&] { pinner(1, 22, 60, stable, chaos, kMaxBatch); },
        [&] { forker(23, 6, stable); },
        [&] { protector(24, 8, stable); },
        [&] { splitter(25, 20); },
        [&] { unmapper(26, 6, chaos, huge); },
        [&] { migrator(27, 20, stable, chaos, 10); },
    });
    check_quiescent(stable);
}

// khugepaged's rule (collapse_huge_page(): the PMD is cleared and GUP-fast
// synchronised with before the reference counts are checked): a collapse
// either sees a pin taken by the lockless walk and gives up (-EAGAIN), or the
// walk sees the PMD change and backs out. A pinned page is never replaced
// under its pin. Each round collapses a fresh range of small folios (each
// checked separately, so a pin of a page already checked would be missed)
// while two threads pin and check random pages of it through GUP-fast.
TEST_F(GupPinConcurrent, CollapseNeverReplacesAPinnedPage) {
    reboot("ram=128M hugetlb_2m=0 hugetlb_1g=0 thp=madvise");
    constexpr int kRounds = 8;      // rounds at least
    constexpr int kMaxRounds = 40;  // until one collapse went through
    constexpr int kPinners = 2;
    std::atomic<unsigned long> cur{0};
    std::atomic<int> round{-1};
    std::atomic<int> collapsed{-1};
    std::atomic<int> done{0};
    std::atomic<bool> finished{false};
    int collapses = 0;
    auto fast_pinner = [&](int tid, unsigned seed) {
        pl_set_current(t);
        std::mt19937 rng(seed);
        for (int r = 0;; ++r) {
            while (round.load() < r && !finished.load()) std::this_thread::yield();
            if (round.load() < r) break;
            const Region reg{cur.load(), PMD_SIZE / kPage};
            // Until this round's collapse is over (bounded all the same).
            for (int it = 0; it < 100000 && collapsed.load() < r; ++it) {
                // The first pages: a collapse that checked each page once,
                // in order, while the walk could still pin them would miss a
                // pin taken there during the copy of the rest.
                unsigned long a = reg.addr(rng() % 32);
                page* p = nullptr;
                int got = ::pin_user_pages_fast(a, 1, FOLL_WRITE, &p);
                EXPECT_EQ(got, 1) << pl_last_error();
                if (got != 1) continue;
                // The check waits for the mmap_lock, i.e. for a collapse under way.
                check_pinned_stable_page(tid, a, p, (static_cast<uint64_t>(tid + 1) << 32) | static_cast<uint64_t>(it),
                                         false);
                unpin_user_page(p);
                // Unpinned for a while: a collapse may start, and the next pin
                // may land in the middle of it.
                std::this_thread::sleep_for(std::chrono::microseconds(rng() % 10000));
            }
            done.fetch_add(1);
        }
    };
    auto collapser = [&] {
        std::mt19937 rng(43);
        for (int r = 0; r < kRounds || (collapses == 0 && r < kMaxRounds); ++r) {
            const Region reg = map_region(PMD_SIZE / kPage);  // small folios (thp=madvise)
            EXPECT_EQ(leaf_level(reg.start), PtLevel::Pte);
            cur.store(reg.start);
            round.store(r);
            std::this_thread::sleep_for(std::chrono::microseconds(rng() % 500));
            int res = pl_madvise(t, reg.start, reg.len(), MADV_COLLAPSE);
            EXPECT_TRUE(res == 0 || res == -EAGAIN) << res;
            collapses += res == 0;
            collapsed.store(r);
            while (done.load() < kPinners * (r + 1)) std::this_thread::yield();
            for (unsigned long i = 0; i < reg.pages; ++i) {
                uint64_t v = ~0ULL;
                EXPECT_EQ(read_u64(t, reg.addr(i) + kTagOff, &v), 8);
                EXPECT_EQ(v, i) << "page " << i << " lost its contents in round " << r;
            }
            EXPECT_EQ(pl_munmap(t, reg.start, reg.len()), 0);
        }
        finished.store(true);
    };
    // No Jitter: the pinners' pauses already place pins inside collapses.
    run_all({[&] { fast_pinner(0, 41); }, [&] { fast_pinner(1, 42); }, collapser}, 0, Jittered::No);
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"));
    RecordProperty("collapses", collapses);
    EXPECT_GT(collapses, 0) << "no collapse ever ran: the test checked nothing";
}

// do_wp_page() decides between reusing and copying under the PTE lock, and
// the reference a copy holds is visible to that decision: a write fault that
// is about to copy a shared page, an unsharing R/O pin of the same page and
// the exit of the child that shared it, all at once, never leave the pin on a
// page the process no longer maps (the unshare must not reuse the page the
// copy is about to replace).
TEST_F(GupPinConcurrent, CopyOnWriteNeverReplacesAPageAnUnsharePinned) {
    reboot("ram=128M hugetlb_2m=0 hugetlb_1g=0 thp=never");
    const Region r = map_region(8);
    for (int round = 0; round < 150; ++round) {
        const unsigned long a = r.addr(static_cast<unsigned long>(round) % r.pages);
        task_struct* c = pl_fork(t);  // the page is shared (R/O) now
        ASSERT_NE(c, nullptr) << pl_last_error();
        std::atomic<int> ready{0};
        auto start = [&] {
            ready.fetch_add(1);
            while (ready.load() < 3) std::this_thread::yield();
        };
        page* p = nullptr;
        int got = 0;
        run_all({
            [&] {
                start();
                const uint64_t v = static_cast<uint64_t>(round);
                EXPECT_EQ(pl_write(t, a + kPinOff + 512, &v, sizeof v), 8);
            },
            [&] {
                pl_set_current(t);
                start();
                got = ::pin_user_pages_fast(a, 1, 0, &p);
            },
            [&] {
                start();
                pl_exit(c);
            },
        }, static_cast<unsigned>(round));
        ASSERT_EQ(got, 1) << pl_last_error();
        check_pinned_stable_page(0, a, p, 0xabc000000ULL + static_cast<uint64_t>(round), false);
        unpin_user_page(p);
    }
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"));
}

// The COW guarantee under contention (spec §7): a page pinned R/W before a
// fork is never shared with the child. Several threads each pin their own
// page, fork, and check that the child got a copy while the parent's PTE
// still maps the pinned frame — while the others fork and pin too, and the
// THP behind the range is migrated, split and collapsed.
TEST_F(GupPinConcurrent, PagesPinnedBeforeForkStayWithTheParent) {
    reboot("ram=128M hugetlb_2m=0 hugetlb_1g=0 thp=always");
    const Region stable = map_region(PMD_SIZE / kPage);  // one THP, split and collapsed under us
    constexpr int kThreads = 3;
    auto pin_fork_check = [&](int tid, unsigned seed, int iters) {
        pl_set_current(t);
        std::mt19937 rng(seed);
        for (int it = 0; it < iters; ++it) {
            // Pages of this thread only: tid, tid + kThreads, ...
            unsigned long i = static_cast<unsigned long>(tid) +
                              kThreads * (rng() % (stable.pages / kThreads));
            unsigned long a = stable.addr(i);
            page* p = nullptr;
            unsigned flags = FOLL_WRITE | ((rng() % 2) ? FOLL_LONGTERM : 0);
            int got = (rng() % 2) ? ::pin_user_pages_fast(a, 1, flags, &p)
                                  : static_cast<int>(::pin_user_pages_unlocked(a, 1, &p, flags));
            ASSERT_EQ(got, 1) << pl_last_error();
            task_struct* c = pl_fork(t);
            ASSERT_NE(c, nullptr) << pl_last_error();
            EXPECT_NE(pl_virt_to_page(c, a), p) << "the child maps the parent's pinned page";
            const uint64_t mine = 0x1000000ULL * static_cast<uint64_t>(tid + 1) + static_cast<uint64_t>(it);
            const uint64_t childs = ~mine;
            const unsigned off = kPinOff + 256 * static_cast<unsigned>(tid);
            write_u64(t, a + off, mine);
            write_u64(c, a + off, childs);
            uint64_t v = 0;
            ASSERT_EQ(pl_page_read(p, off, &v, sizeof v), 0);
            EXPECT_EQ(v, mine) << "the parent's store missed its pinned frame";
            EXPECT_EQ(read_u64(c, a + off, &v), 8);
            EXPECT_EQ(v, childs) << "the child's store was lost";
            EXPECT_EQ(read_u64(t, a + off, &v), 8);
            EXPECT_EQ(v, mine) << "the child's store reached the parent";
            EXPECT_EQ(mapped_page(a), p);
            pl_exit(c);
            unpin_user_pages_dirty_lock(&p, 1, true);
        }
    };
    run_all({
        [&] { pin_fork_check(0, 31, 5); },
        [&] { pin_fork_check(1, 32, 5); },
        [&] { pin_fork_check(2, 33, 5); },
        [&] { migrator(34, 30, stable, stable, 0); },
        [&] {
            // Split the THP and collapse it back while the others pin.
            for (int it = 0; it < 10; ++it) {
                {
                    sync::ReadGuard g(mm().mmap_lock);
                    if (Vma* v = mm().vma_lookup(stable.start)) split_huge_pmd(*v, stable.start);
                }
                (void)pl_madvise(t, stable.start, stable.len(), MADV_COLLAPSE);
            }
        },
    });
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"));
    EXPECT_GT(pl_vmstat(k, "fork_pinned_copies"), 0u) << "fork never had to copy a pinned page";
    for (unsigned long i = 0; i < stable.pages; ++i) {
        uint64_t v = ~0ULL;
        EXPECT_EQ(read_u64(t, stable.addr(i) + kTagOff, &v), 8);
        EXPECT_EQ(v, i);
    }
}

}  // namespace
}  // namespace pl::test
