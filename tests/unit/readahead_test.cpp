// mmap read-around (src/mm/filemap.cpp): a major read fault on a disk file
// reads a window of pages into the page cache, as upstream's filemap_fault()
// -> do_sync_mmap_readahead() -> page_cache_ra_order() does; which window
// (read-around, MADV_SEQUENTIAL, VM_EXEC, MADV_RANDOM, read_ahead_kb), the
// EOF clip, the PG_readahead marker (skipped by fault-around's
// next_uptodate_folio(), cleared by do_async_mmap_readahead()), shmem's lack
// of readahead (shmem_fault()), and GUP faults taking the same path.
#include <sys/mman.h>

#include <cstring>
#include <string>
#include <vector>

#include "fs/file.h"
#include "fs/inode.h"
#include "test_kernel.h"

namespace pl::test {
namespace {

// A PMD-aligned address for MAP_FIXED mappings.
constexpr unsigned long kBase = 0x40000000UL;
constexpr unsigned long kNone = ~0UL;

class Readahead : public KernelTest {
protected:
    // The page-cache folio at file index `index`, or null (no reference kept).
    Folio* cached(pl_file* f, pgoff_t index) {
        Folio* folio = reinterpret_cast<File*>(f)->inode->mapping.get_folio(index);
        if (folio) kern().mem->folio_put(folio);  // the cache keeps its own
        return folio;
    }
    // The cached indices of [0, pages), and which of them carry PG_readahead.
    std::vector<pgoff_t> cached_set(pl_file* f, unsigned long pages, std::vector<pgoff_t>* marked) {
        std::vector<pgoff_t> out;
        for (pgoff_t i = 0; i < pages; ++i) {
            Folio* folio = cached(f, i);
            if (!folio) continue;
            out.push_back(i);
            EXPECT_TRUE(folio->test(PG_uptodate)) << "index " << i;
            EXPECT_EQ(folio->nr_pages(), 1UL) << "read-around reads order-0 folios (ra->order 0)";
            if (folio->test(PG_readahead)) marked->push_back(i);
        }
        return out;
    }
    static std::vector<pgoff_t> range(pgoff_t lo, pgoff_t hi) {
        std::vector<pgoff_t> v;
        for (pgoff_t i = lo; i < hi; ++i) v.push_back(i);
        return v;
    }
    bool mapped(unsigned long addr) { return pte::present(entry(t, addr)); }
    void read_fault(unsigned long addr) {
        char c = 1;
        ASSERT_EQ(pl_read(t, addr, &c, 1), 1) << pl_last_error();
        EXPECT_EQ(c, 0) << "a hole reads as zeroes";
    }
};

// ---- which pages one major fault reads: do_sync_mmap_readahead() ----
struct WindowRow {
    const char* what;
    const char* config;         // extra kernel config
    const char* fs;
    int prot;
    int advice;                 // -1: none
    unsigned long vma_pages;    // mapping at offset 0
    unsigned long file_pages;
    unsigned long fault;        // faulting page
    pgoff_t lo, hi;             // cached afterwards: [lo, hi)
    pgoff_t marker;             // the PG_readahead page, or kNone
};

TEST_F(Readahead, WindowPerUpstreamDoSyncMmapReadahead) {
    const WindowRow rows[] = {
        // mmap read-around: ra->start = max(0, pgoff - ra_pages / 2),
        // ra->size = ra_pages (read_ahead_kb 128: 32), ra->async_size =
        // ra_pages / 4; the marker at start + size - async_size
        // (page_cache_ra_order(): mark = index + ra->size - ra->async_size).
        {"read-around centred on the page", "", "ext4", PROT_READ, -1, 256, 256, 128, 112, 144, 136},
        {"read-around starts at 0", "", "ext4", PROT_READ, -1, 256, 256, 4, 0, 32, 24},
        {"xfs reads around too", "", "xfs", PROT_READ, -1, 256, 256, 128, 112, 144, 136},
        {"btrfs reads around too", "", "btrfs", PROT_READ, -1, 256, 256, 128, 112, 144, 136},
        // page_cache_ra_order(): limit = (i_size - 1) >> PAGE_SHIFT; the
        // marker only if its page was allocated.
        {"clipped to EOF, marker inside", "", "ext4", PROT_READ, -1, 40, 40, 30, 14, 40, 38},
        {"clipped to EOF, marker beyond", "", "ext4", PROT_READ, -1, 20, 20, 10, 0, 20, kNone},
        // ra_pages = read_ahead_kb >> (PAGE_SHIFT - 10).
        {"readahead_kb=64: 16 pages", "readahead_kb=64", "ext4", PROT_READ, -1, 256, 256, 128, 120, 136, 132},
        {"readahead_kb=0: just the page", "readahead_kb=0", "ext4", PROT_READ, -1, 256, 256, 128, 128, 129, kNone},
        // (vm_flags & (VM_RAND_READ | VM_EXEC)) == VM_RAND_READ: no readahead.
        {"MADV_RANDOM: just the page", "", "ext4", PROT_READ, MADV_RANDOM, 256, 256, 128, 128, 129, kNone},
        // VM_SEQ_READ: page_cache_sync_ra(ra_pages). At index 0 the initial
        // window (size ra_pages, async_size half); elsewhere, with nothing
        // cached before it, do_page_cache_ra(ra_pages, 0): no marker.
        {"MADV_SEQUENTIAL at 0", "", "ext4", PROT_READ, MADV_SEQUENTIAL, 256, 256, 0, 0, 32, 16},
        {"MADV_SEQUENTIAL elsewhere", "", "ext4", PROT_READ, MADV_SEQUENTIAL, 256, 256, 128, 128, 160, kNone},
        // VM_EXEC: from the page (exec_folio_order() 0), at most ra_pages,
        // not past the VMA; async_size 0. MADV_RANDOM does not stop it.
        {"VM_EXEC: from the page", "", "ext4", PROT_READ | PROT_EXEC, -1, 256, 256, 128, 128, 160, kNone},
        {"VM_EXEC: clipped to the VMA", "", "ext4", PROT_READ | PROT_EXEC, -1, 16, 256, 10, 10, 16, kNone},
        {"VM_EXEC ignores MADV_RANDOM", "", "ext4", PROT_READ | PROT_EXEC, MADV_RANDOM, 256, 256, 128, 128, 160, kNone},
        // shmem_fault() -> shmem_get_folio_gfp(SGP_CACHE): just the page.
        {"tmpfs: no readahead", "", "tmpfs", PROT_READ, -1, 256, 256, 128, 128, 129, kNone},
        {"memfd: no readahead", "", "memfd", PROT_READ, -1, 256, 256, 128, 128, 129, kNone},
    };
    for (const WindowRow& r : rows) {
        SCOPED_TRACE(r.what);
        // Fault-around off, so that only ->fault decides what is cached and
        // nothing else is mapped.
        reboot((std::string("ram=512M hugetlb_2m=0 hugetlb_1g=0 fault_around_bytes=4K ") + r.config).c_str());
        pl_file* f = file(r.fs, r.file_pages * kPage);
        const unsigned long a = map(t, r.vma_pages * kPage, r.prot, MAP_PRIVATE | MAP_FIXED, f, 0, kBase);
        if (r.advice >= 0) {
            ASSERT_EQ(pl_madvise(t, a, r.vma_pages * kPage, r.advice), 0);
        }
        read_fault(a + r.fault * kPage);
        std::vector<pgoff_t> marked;
        EXPECT_EQ(cached_set(f, r.file_pages, &marked), range(r.lo, r.hi));
        EXPECT_EQ(marked, r.marker == kNone ? std::vector<pgoff_t>{} : std::vector<pgoff_t>{r.marker});
        EXPECT_TRUE(mapped(a + r.fault * kPage));
        if (r.fault > 0) {
            EXPECT_FALSE(mapped(a + (r.fault - 1) * kPage)) << "fault-around is off";
        }
    }
}

// page_cache_ra_order() passes over cached pages and puts no marker on a
// page that was cached already (ra_alloc_folio() marks only new folios).
TEST_F(Readahead, CachedPagesAreKeptAndNotMarked) {
    pl_file* f = file("ext4", 256 * kPage);
    ASSERT_EQ(pl_pwrite(f, "data", 4, 136 * kPage), 4);  // the marker's page
    ASSERT_EQ(pl_pwrite(f, "more", 4, 120 * kPage), 4);
    Folio* before = cached(f, 120);
    ASSERT_NE(before, nullptr);
    const unsigned long a = map(t, 256 * kPage, PROT_READ, MAP_PRIVATE | MAP_FIXED, f, 0, kBase);
    read_fault(a + 128 * kPage);
    std::vector<pgoff_t> marked;
    EXPECT_EQ(cached_set(f, 256, &marked), range(112, 144));
    EXPECT_TRUE(marked.empty());
    EXPECT_EQ(cached(f, 120), before) << "a cached page is not read again";
    EXPECT_EQ(get_str(t, a + 120 * kPage), "more");
    EXPECT_EQ(get_str(t, a + 136 * kPage), "data");
}

// Fault-around after read-around: do_read_fault() retries the fault
// (VM_FAULT_RETRY after the I/O) and do_fault_around() maps the window's
// uptodate folios, but next_uptodate_folio() skips the PG_readahead one; its
// own fault clears the marker (do_async_mmap_readahead() ->
// page_cache_async_ra(): folio_clear_readahead()) and maps it.
TEST_F(Readahead, FaultAroundSkipsTheMarkerUntilItsOwnFault) {
    pl_file* f = file("ext4", 256 * kPage);
    const unsigned long a = map(t, 256 * kPage, PROT_READ, MAP_SHARED | MAP_FIXED, f, 0, kBase);
    read_fault(a + 128 * kPage);
    for (pgoff_t i = 128; i < 144; ++i) EXPECT_EQ(mapped(a + i * kPage), i != 136) << "page " << i;
    EXPECT_FALSE(mapped(a + 127 * kPage)) << "outside the fault-around window";
    ASSERT_NE(cached(f, 136), nullptr);
    EXPECT_TRUE(cached(f, 136)->test(PG_readahead));
    read_fault(a + 136 * kPage);
    EXPECT_TRUE(mapped(a + 136 * kPage));
    EXPECT_FALSE(cached(f, 136)->test(PG_readahead));
    // A minor fault on a cached neighbour reads nothing new: fault-around
    // maps [112, 127], and 111 stays uncached.
    read_fault(a + 120 * kPage);
    EXPECT_TRUE(mapped(a + 112 * kPage));
    EXPECT_EQ(cached(f, 111), nullptr);
}

// The pages read are the disk's: data blocks come back with their bytes,
// holes as zero-filled uptodate folios.
TEST_F(Readahead, ReadsDataBlocksAndHoles) {
    pl_file* f = file("ext4", 64 * kPage);
    // A block on disk that the page cache does not hold (as after eviction).
    uint8_t block[PAGE_SIZE] = {};
    std::memcpy(block, "block9", 7);
    reinterpret_cast<File*>(f)->inode->disk.write_page(9, block);
    ASSERT_EQ(cached(f, 9), nullptr);
    const unsigned long a = map(t, 64 * kPage, PROT_READ, MAP_PRIVATE | MAP_FIXED, f, 0, kBase);
    read_fault(a + 20 * kPage);
    std::vector<pgoff_t> marked;
    EXPECT_EQ(cached_set(f, 64, &marked), range(4, 36));
    EXPECT_EQ(marked, std::vector<pgoff_t>{28});
    // Page 9 lies outside the fault-around window [16, 31]: read-around
    // alone cached it, with the disk's bytes; its own fault finds that folio.
    EXPECT_FALSE(mapped(a + 9 * kPage));
    Folio* nine = cached(f, 9);
    ASSERT_NE(nine, nullptr);
    EXPECT_EQ(get_str(t, a + 9 * kPage), "block9");
    EXPECT_EQ(folio_at(t, a + 9 * kPage), nine);
    EXPECT_EQ(get_str(t, a + 30 * kPage), "");
}

// GUP faults go through handle_mm_fault() -> filemap_fault() as well:
// process_vm_readv() from the mapping reads around the page.
TEST_F(Readahead, GupFaultReadsAround) {
    pl_file* f = file("xfs", 256 * kPage);
    const unsigned long a = map(t, 256 * kPage, PROT_READ, MAP_PRIVATE | MAP_FIXED, f, 0, kBase);
    task_struct* b = pl_task_new(k);
    ASSERT_NE(b, nullptr);
    const unsigned long buf = map(b, kPage);
    ASSERT_EQ(pl_process_vm_readv(b, t, buf, a + 128 * kPage, 8), 8);
    std::vector<pgoff_t> marked;
    EXPECT_EQ(cached_set(f, 256, &marked), range(112, 144));
    EXPECT_EQ(marked, std::vector<pgoff_t>{136});
    EXPECT_TRUE(mapped(a + 128 * kPage));
    EXPECT_TRUE(mapped(a + 143 * kPage));
    EXPECT_FALSE(mapped(a + 136 * kPage));
}

// The hints are VMA flags (madvise_vma_behavior()): MADV_RANDOM sets
// VM_RAND_READ and clears VM_SEQ_READ, MADV_SEQUENTIAL the other way round,
// MADV_NORMAL clears both; a part of a VMA is split off.
TEST_F(Readahead, MadviseSetsReadHintFlags) {
    pl_file* f = file("ext4", 64 * kPage);
    const unsigned long a = map(t, 64 * kPage, PROT_READ, MAP_PRIVATE | MAP_FIXED, f, 0, kBase);
    ASSERT_EQ(pl_madvise(t, a + 16 * kPage, 16 * kPage, MADV_RANDOM), 0);
    Vma* v = mm().vma_lookup(a + 16 * kPage);
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(v->start, a + 16 * kPage);
    EXPECT_EQ(v->end, a + 32 * kPage);
    EXPECT_TRUE(v->flags & VM_RAND_READ);
    EXPECT_FALSE(mm().vma_lookup(a)->flags & VM_RAND_READ);
    ASSERT_EQ(pl_madvise(t, a + 16 * kPage, 16 * kPage, MADV_SEQUENTIAL), 0);
    v = mm().vma_lookup(a + 16 * kPage);
    EXPECT_TRUE(v->flags & VM_SEQ_READ);
    EXPECT_FALSE(v->flags & VM_RAND_READ);
    ASSERT_EQ(pl_madvise(t, a + 16 * kPage, 16 * kPage, MADV_NORMAL), 0);
    v = mm().vma_lookup(a + 16 * kPage);
    EXPECT_FALSE(v->flags & (VM_SEQ_READ | VM_RAND_READ));
    // vma_modify_flags() merges the parts back (shown on an anonymous
    // mapping: the model merges no file VMAs, see docs/FIDELITY.md).
    const unsigned long b = map(t, 64 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
                                nullptr, 0, kBase + 0x10000000UL);
    ASSERT_EQ(pl_madvise(t, b + 16 * kPage, 16 * kPage, MADV_RANDOM), 0);
    EXPECT_EQ(mm().vma_lookup(b + 16 * kPage)->start, b + 16 * kPage);
    ASSERT_EQ(pl_madvise(t, b + 16 * kPage, 16 * kPage, MADV_NORMAL), 0);
    v = mm().vma_lookup(b + 16 * kPage);
    EXPECT_EQ(v->start, b);
    EXPECT_EQ(v->end, b + 64 * kPage);
}

}  // namespace
}  // namespace pl::test
