// Read fault-around (src/mm/fault_around.cpp): a read fault on a file mapping
// also maps the cached neighbours of the faulting page, as upstream's
// do_read_fault() -> do_fault_around() -> ->map_pages (filemap_map_pages())
// does. The window (do_fault_around()), what is skipped
// (next_uptodate_folio(), filemap_map_folio_range()), the PTE bits and
// references (set_pte_range()), the uffd and config switches
// (should_fault_around(), fault_around_bytes_set()) and fault-around under GUP.
#include <sys/mman.h>

#include <string>
#include <vector>

#include "fs/file.h"
#include "fs/inode.h"
#include "mm/fault_around.h"
#include "test_kernel.h"

namespace pl::test {
namespace {

constexpr unsigned long kPmd = 2UL << 20;
// A PMD-aligned address for MAP_FIXED mappings, so that page-table indices
// are known.
constexpr unsigned long kBase = 0x40000000UL;

class FaultAround : public KernelTest {
protected:
    // A tmpfs (or other) file of `pages` pages whose page cache holds every
    // page (pwrite fills it), each page starting with its index.
    pl_file* cached_file(const char* fs, unsigned long pages) {
        pl_file* f = file(fs, pages * kPage);
        for (unsigned long i = 0; i < pages; ++i) {
            const std::string s = "page" + std::to_string(i);
            EXPECT_EQ(pl_pwrite(f, s.c_str(), s.size(), i * kPage), static_cast<long>(s.size()));
        }
        return f;
    }
    // The page-cache folio at file index `index`, or null (no reference kept).
    Folio* cached(pl_file* f, pgoff_t index) {
        Folio* folio = reinterpret_cast<File*>(f)->inode->mapping.get_folio(index);
        if (folio) kern().mem->folio_put(folio);  // the cache keeps its own
        return folio;
    }
    bool mapped(unsigned long addr) { return pte::present(entry(t, addr)); }
    void read_fault(unsigned long addr) {
        char c = 0;
        ASSERT_EQ(pl_read(t, addr, &c, 1), 1) << pl_last_error();
    }
    Vma& vma_at(unsigned long addr) {
        Vma* v = mm().vma_lookup(addr);
        EXPECT_NE(v, nullptr);
        return *v;
    }
};

// ---- the window: do_fault_around() ----
// from = max(ALIGN_DOWN(pte_off, nr), pte_off - min(pte_off, vma_off)),
// to = min(from + nr, PTRS_PER_PTE, pte_off + vma_pages - vma_off) - 1, and
// filemap_map_pages() clips the end to EOF.
struct WindowRow {
    const char* what;
    const char* config;        // extra kernel config
    unsigned long vma_addr;    // MAP_FIXED address
    unsigned long vma_pages;
    unsigned long file_pages;  // i_size, every page cached
    unsigned long file_off;    // mmap offset, pages
    unsigned long fault;       // faulting page, index within the VMA
    unsigned long first, last; // VMA pages mapped afterwards (inclusive)
};

TEST_F(FaultAround, WindowPerUpstreamDoFaultAround) {
    const WindowRow rows[] = {
        // ALIGN_DOWN(pte_off, 16): the 64 KiB block holding the address.
        {"aligned 16-page window", "", kBase, 64, 64, 0, 5, 0, 15},
        {"next aligned window", "", kBase, 64, 64, 0, 20, 16, 31},
        // pte_off - min(pte_off, vma_off): never before vm_start; the window
        // then runs nr pages from there (to = from + nr - 1).
        {"start clipped to vm_start", "", kBase + 3 * kPage, 64, 64, 0, 0, 0, 15},
        // pte_off + vma_pages - vma_off: never past vm_end.
        {"end clipped to vm_end", "", kBase, 20, 64, 0, 18, 16, 19},
        // PTRS_PER_PTE: never past the page table (PMD) of the address.
        {"end clipped to the PMD", "", kBase + kPmd - 12 * kPage, 64, 64, 0, 0, 0, 11},
        {"first window of the next PMD", "", kBase + kPmd - 12 * kPage, 64, 64, 0, 12, 12, 27},
        // filemap_map_pages(): end_pgoff = min(end_pgoff, file_end). (The
        // model caches nothing past EOF, so this row shows the outcome, not
        // which of the two checks gave it.)
        {"end clipped to EOF", "", kBase, 32, 10, 0, 2, 0, 9},
        // The window is aligned by virtual address, not by file offset.
        {"vm_pgoff does not move the window", "", kBase, 32, 64, 4, 1, 0, 15},
        // fault_around_bytes_set(): rounddown_pow_of_two(val) >> PAGE_SHIFT.
        {"fault_around_bytes=32K", "fault_around_bytes=32K", kBase, 64, 64, 0, 10, 8, 15},
        {"fault_around_bytes=48K rounds down to 32K", "fault_around_bytes=48K", kBase, 64, 64, 0, 10, 8, 15},
        // should_fault_around(): fault_around_pages > 1, else only ->fault.
        {"fault_around_bytes=4K: off", "fault_around_bytes=4K", kBase, 64, 64, 0, 5, 5, 5},
        {"fault_around_bytes=2M: a whole table", "fault_around_bytes=2M", kBase, 600, 600, 0, 5, 0, 511},
    };
    for (const WindowRow& r : rows) {
        SCOPED_TRACE(r.what);
        reboot((std::string("ram=512M hugetlb_2m=0 hugetlb_1g=0 ") + r.config).c_str());
        pl_file* f = cached_file("tmpfs", r.file_pages);
        unsigned long a = map(t, r.vma_pages * kPage, PROT_READ, MAP_PRIVATE | MAP_FIXED, f, r.file_off * kPage,
                              r.vma_addr);
        ASSERT_EQ(a, r.vma_addr);
        read_fault(a + r.fault * kPage);
        for (unsigned long i = 0; i < r.vma_pages; ++i) {
            const bool want = i >= r.first && i <= r.last;
            ASSERT_EQ(mapped(a + i * kPage), want) << "VMA page " << i;
            if (want) {
                EXPECT_EQ(folio_at(t, a + i * kPage), cached(f, r.file_off + i)) << "VMA page " << i;
            }
        }
    }
}

// ---- what a prefaulted PTE is: set_pte_range(), filemap_map_folio_range() ----

// MAP_PRIVATE: the page-cache page itself, read-only (a write must COW), one
// PTE reference and one mapcount per page, counted in MM_SHMEMPAGES.
TEST_F(FaultAround, PrivateMappingMapsCachePagesReadOnly) {
    pl_file* f = cached_file("tmpfs", 16);
    unsigned long a = map(t, 16 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE, f);
    read_fault(a + 7 * kPage);
    for (unsigned long i = 0; i < 16; ++i) {
        SCOPED_TRACE(i);
        const pte::entry_t e = entry(t, a + i * kPage);
        ASSERT_TRUE(pte::present(e));
        EXPECT_FALSE(pte::write(e));
        Folio* folio = cached(f, i);
        ASSERT_EQ(folio_at(t, a + i * kPage), folio);
        EXPECT_FALSE(folio->is_anon());
        EXPECT_EQ(folio_ref_count(reinterpret_cast<struct folio*>(folio)), 2);  // cache + PTE
        EXPECT_EQ(folio_mapcount(reinterpret_cast<struct folio*>(folio)), 1);
    }
    EXPECT_EQ(mm().rss_shmem.load(), 16);
    // A write to a prefaulted page still faults and COWs (do_wp_page): the
    // file keeps its bytes and its page loses the PTE's reference.
    put_str(t, a + 3 * kPage, "mine");
    EXPECT_TRUE(PageAnon(pg(t, a + 3 * kPage)));
    EXPECT_NE(folio_at(t, a + 3 * kPage), cached(f, 3));
    EXPECT_EQ(folio_ref_count(reinterpret_cast<struct folio*>(cached(f, 3))), 1);
    char buf[8] = {};
    ASSERT_EQ(pl_pread(f, buf, 5, 3 * kPage), 5);
    EXPECT_EQ(std::string(buf), "page3");
}

// MAP_SHARED of a file with ->page_mkwrite (ext4): vm_page_prot is read-only
// (vma_wants_writenotify()), so prefaulted PTEs are too and the first write
// still goes through page_mkwrite and dirties the folio (wp_page_shared()).
TEST_F(FaultAround, SharedMappingWithPageMkwriteStaysReadOnly) {
    pl_file* f = cached_file("ext4", 16);
    ASSERT_EQ(pl_fsync(f), 0);  // clean pages, so that the write must dirty one
    unsigned long a = map(t, 16 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    read_fault(a);
    const pte::entry_t e = entry(t, a + 9 * kPage);
    ASSERT_TRUE(pte::present(e));
    EXPECT_FALSE(pte::write(e));
    EXPECT_FALSE(cached(f, 9)->is_dirty());
    EXPECT_EQ(mm().rss_file.load(), 16);
    put_str(t, a + 9 * kPage, "dirty");
    EXPECT_TRUE(pte::write(entry(t, a + 9 * kPage)));
    EXPECT_EQ(folio_at(t, a + 9 * kPage), cached(f, 9));  // shared: no copy
    EXPECT_TRUE(cached(f, 9)->is_dirty());
}

// MAP_SHARED tmpfs: no page_mkwrite nor dirty accounting, so vm_page_prot is
// writable and set_pte_range() uses it as is, also for prefaulted pages; a
// dirty folio gets a dirty PTE (pte_write && folio_test_dirty).
TEST_F(FaultAround, SharedShmemPtesFollowVmPageProt) {
    pl_file* f = cached_file("tmpfs", 16);
    unsigned long a = map(t, 16 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    read_fault(a);
    for (unsigned long i = 1; i < 16; ++i) {
        SCOPED_TRACE(i);
        const pte::entry_t e = entry(t, a + i * kPage);
        ASSERT_TRUE(pte::present(e));
        EXPECT_EQ(pte::write(e), pte::write(vma_at(a).page_prot()));
        EXPECT_EQ(pte::dirty(e), pte::write(e) && cached(f, i)->is_dirty());
    }
}

// ---- what is skipped: next_uptodate_folio(), filemap_map_folio_range() ----
TEST_F(FaultAround, SkipsHolesLockedNotUptodateHwpoisonedAndMappedPages) {
    pl_file* f = file("tmpfs", 16 * kPage);
    for (unsigned long i = 0; i < 16; ++i) {
        if (i != 3) {
            ASSERT_EQ(pl_pwrite(f, "x", 1, i * kPage), 1);  // page 3: a hole
        }
    }
    unsigned long a = map(t, 16 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE, f);
    put_str(t, a + 6 * kPage, "anon");  // page 6: already mapped (a COW copy)
    Folio* anon6 = folio_at(t, a + 6 * kPage);
    Folio* locked4 = cached(f, 4);
    Folio* stale8 = cached(f, 8);
    Folio* poisoned7 = cached(f, 7);
    ASSERT_TRUE(locked4->trylock());  // folio_test_locked / folio_trylock
    stale8->clear(PG_uptodate);       // !folio_test_uptodate
    poisoned7->set(PG_hwpoison);      // PageHWPoison
    read_fault(a);
    locked4->unlock();
    stale8->set(PG_uptodate);
    poisoned7->clear(PG_hwpoison);
    for (unsigned long i = 0; i < 16; ++i) {
        SCOPED_TRACE(i);
        const bool skipped = i == 3 || i == 4 || i == 7 || i == 8;
        if (i == 6) {
            EXPECT_EQ(folio_at(t, a + i * kPage), anon6);  // left as it was
            continue;
        }
        EXPECT_EQ(mapped(a + i * kPage), !skipped);
    }
    EXPECT_EQ(cached(f, 3), nullptr);  // fault-around never allocates
    EXPECT_EQ(folio_ref_count(reinterpret_cast<struct folio*>(locked4)), 1);
    EXPECT_EQ(folio_ref_count(reinterpret_cast<struct folio*>(stale8)), 1);
    EXPECT_EQ(folio_ref_count(reinterpret_cast<struct folio*>(poisoned7)), 1);
    // Each is mapped by its own fault later.
    read_fault(a + 4 * kPage);
    EXPECT_EQ(folio_at(t, a + 4 * kPage), locked4);
}

// conform repro (memfd): the faulting page is not cached, its neighbour is.
// Fault-around maps the neighbour (the cache page, not a copy), then ->fault
// brings in and maps the faulting page (do_read_fault()).
TEST_F(FaultAround, UncachedFaultingPageStillGoesThroughFault) {
    pl_file* f = file("memfd", 2 * kPage);
    unsigned long a = map(t, 2 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE, f);
    put_str(t, a + kPage, "A1#");  // do_cow_fault(): page 1 enters the cache
    ASSERT_NE(cached(f, 1), nullptr);
    ASSERT_EQ(cached(f, 0), nullptr);
    ASSERT_EQ(pl_madvise(t, a, 2 * kPage, MADV_DONTNEED), 0);
    ASSERT_FALSE(mapped(a + kPage));
    read_fault(a);
    EXPECT_EQ(folio_at(t, a), cached(f, 0));
    EXPECT_EQ(folio_at(t, a + kPage), cached(f, 1));
    EXPECT_FALSE(PageAnon(pg(t, a + kPage)));
    EXPECT_EQ(get_str(t, a + kPage), "");  // the file's page: zeros, not the dropped copy
}

// ---- should_fault_around() ----

// uffd_disable_fault_around(): VM_UFFD_WP VMAs fault page by page.
TEST_F(FaultAround, UffdWpDisablesFaultAround) {
    pl_file* f = cached_file("tmpfs", 16);
    unsigned long a = map(t, 16 * kPage, PROT_READ, MAP_PRIVATE, f);
    mmap_write_lock(mm());
    vma_at(a).flags |= VM_UFFD_WP;
    mmap_write_unlock(mm());
    EXPECT_FALSE(should_fault_around(vma_at(a)));
    read_fault(a + 5 * kPage);
    for (unsigned long i = 0; i < 16; ++i) EXPECT_EQ(mapped(a + i * kPage), i == 5) << i;
}

// Only backers with ->map_pages: filemap (ext4/xfs/btrfs) and shmem
// (tmpfs, memfd, MAP_SHARED|MAP_ANONYMOUS) have it; hugetlbfs does not.
TEST_F(FaultAround, OnlyPageCacheBackersHaveMapPages) {
    reboot("ram=512M hugetlb_2m=4 hugetlb_1g=0");
    struct Row {
        const char* fs;  // nullptr: MAP_SHARED|MAP_ANONYMOUS
        bool want;
    } rows[] = {{"ext4", true}, {"xfs", true}, {"btrfs", true}, {"tmpfs", true},
                {"memfd", true}, {nullptr, true}, {"hugetlbfs", false}};
    for (const Row& r : rows) {
        SCOPED_TRACE(r.fs ? r.fs : "shared anon");
        unsigned long a = r.fs ? map(t, kPmd, PROT_READ, MAP_SHARED, file(r.fs, kPmd))
                               : map(t, kPmd, PROT_READ, MAP_SHARED | MAP_ANONYMOUS);
        EXPECT_EQ(should_fault_around(vma_at(a)), r.want);
    }
    // Anonymous private memory never reaches do_read_fault().
    unsigned long anon = map(kPage);
    EXPECT_FALSE(should_fault_around(vma_at(anon)));
}

// ---- under GUP: faultin_page() -> handle_mm_fault() maps around too ----
TEST_F(FaultAround, GupReadFaultMapsAround) {
    pl_file* f = cached_file("tmpfs", 16);
    unsigned long a = map(t, 16 * kPage, PROT_READ, MAP_SHARED, f);
    pl_set_current(t);
    struct page* p[1] = {};
    mmap_read_lock(mm());
    ASSERT_EQ(::pin_user_pages(a + 2 * kPage, 1, 0, p), 1);
    mmap_read_unlock(mm());
    for (unsigned long i = 0; i < 16; ++i) EXPECT_TRUE(mapped(a + i * kPage)) << i;
    Folio* pinned = cached(f, 2);
    EXPECT_EQ(reinterpret_cast<Folio*>(page_folio(p[0])), pinned);
    EXPECT_EQ(folio_ref_count(reinterpret_cast<struct folio*>(pinned)), 2 + GUP_PIN_COUNTING_BIAS);
    EXPECT_EQ(folio_ref_count(reinterpret_cast<struct folio*>(cached(f, 3))), 2);
    unpin_user_page(p[0]);
}

// ---- the config key: fault_around_bytes_set() ----
TEST(FaultAroundConfig, KeyFollowsDebugfsRules) {
    struct Row {
        const char* text;
        bool ok;
        unsigned long pages;
    } rows[] = {
        {"", true, 16},                               // default 65536
        {"fault_around_bytes=4096", true, 1},         // one page: off
        {"fault_around_bytes=0", true, 1},            // max(..., 1UL)
        {"fault_around_bytes=12K", true, 2},          // rounddown_pow_of_two
        {"fault_around_bytes=2M", true, 512},         // PTRS_PER_PTE pages
        {"fault_around_bytes=2052K", false, 0},       // val / PAGE_SIZE > PTRS_PER_PTE: -EINVAL
        {"fault_around_bytes=lots", false, 0},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(r.text);
        auto c = Config::parse(r.text);
        ASSERT_EQ(c.ok(), r.ok) << Config::last_error();
        if (!r.ok) continue;
        EXPECT_EQ(fault_around_pages(*c), r.pages);
        auto again = Config::parse(c->to_string());
        ASSERT_TRUE(again.ok()) << Config::last_error();
        EXPECT_EQ(again->fault_around_bytes, c->fault_around_bytes);
    }
}

}  // namespace
}  // namespace pl::test
