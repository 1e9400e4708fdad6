// pinlab tests — memory footprint of the model (issue 7): "at most 64 bytes
// of metadata per simulated 4 KiB frame". Upstream a frame costs its struct
// page (64 bytes, the vmemmap) and nothing else; its page tables are frames
// themselves and its contents are the frame. The model keeps struct page in
// one MAP_NORESERVE array (src/mm/physmem.h), its page tables as heap-allocated
// 4 KiB tables (src/mm/page_table.h) and a frame's bytes in a buffer attached
// on the first write that changes them (PhysMem::write_frame()).
#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "mm/physmem.h"
#include "test_kernel.h"

namespace pl::test {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

// Resident set size of this process, from /proc/self/statm.
long rss_bytes() {
    FILE* f = std::fopen("/proc/self/statm", "r");
    if (!f) return -1;
    unsigned long size = 0, resident = 0;
    const int n = std::fscanf(f, "%lu %lu", &size, &resident);
    std::fclose(f);
    if (n != 2) return -1;
    return static_cast<long>(resident) * sysconf(_SC_PAGESIZE);
}

// Bytes malloc() has handed out and not had back (arena chunks in use plus
// mmap()ed chunks).
long heap_bytes() {
    const struct mallinfo2 mi = mallinfo2();
    return static_cast<long>(mi.uordblks + mi.hblkhd);
}

constexpr unsigned long kLen = 64UL << 20;
constexpr long kFrames = static_cast<long>(kLen / kPage);
// The target: struct page's size upstream (and the model's, see the
// static_assert in src/mm/page.h).
constexpr long kTargetPerFrame = 64;
// Slack, in bytes per frame, for what is not per frame but lands in the
// measurement: the VMA and anon_vma, the malloc arena's own growth, the
// partly used 4 KiB pages of the struct page array at either end of the
// allocated pfn range, and, for the RSS figure, the allocator's pages the
// measurement itself touches. 16 bytes per frame is 256 KiB over 64 MiB.
constexpr long kSlackPerFrame = 16;

class MemoryFootprint : public KernelTest {};

// Fault 64 MiB of 4 KiB anonymous pages as gup_test's pre-fault does (one
// zero byte written per page: do_anonymous_page() then a store), and measure
// what the process grew by per frame. Page tables are subtracted: upstream
// they are frames, not per-frame metadata (pte_alloc(): one table frame per
// 512 PTEs).
TEST_F(MemoryFootprint, AnonFaultMetadataPerFrameAtMost64Bytes) {
    if (kSanitized) GTEST_SKIP() << "sanitizer allocators and shadow memory make RSS and mallinfo2 meaningless";
    ASSERT_EQ(sizeof(Page), static_cast<size_t>(kTargetPerFrame));
    const unsigned long a = map(kLen);
    ASSERT_EQ(pl_madvise(t, a, kLen, MADV_NOHUGEPAGE), 0) << pl_last_error();
    PhysMem& mem = *kern().mem;

    const uint64_t tables0 = mm().pgtable.nr_tables();
    const uint64_t buffers0 = mem.nr_data_buffers();
    const unsigned long frames0 = pl_nr_allocated_pages(k);
    const long heap0 = heap_bytes();
    const long rss0 = rss_bytes();
    ASSERT_GT(rss0, 0);

    const char zero = 0;
    for (unsigned long off = 0; off < kLen; off += kPage)
        ASSERT_EQ(pl_write(t, a + off, &zero, 1), 1) << pl_last_error();

    const long rss1 = rss_bytes();
    const long heap1 = heap_bytes();
    const unsigned long frames = pl_nr_allocated_pages(k) - frames0;
    const uint64_t tables = mm().pgtable.nr_tables() - tables0;
    const uint64_t buffers = mem.nr_data_buffers() - buffers0;

    // Every page is a present 4 KiB anonymous page of its own.
    for (unsigned long off = 0; off < kLen; off += kPage) {
        page* p = pg(t, a + off);
        ASSERT_NE(p, nullptr) << off;
        ASSERT_FALSE(PageCompound(p)) << off;
    }
    // One frame per page (the PTE tables are heap memory, not frames).
    EXPECT_EQ(frames, static_cast<unsigned long>(kFrames));
    // Writing zeros into a zero-filled frame changes nothing: no contents
    // buffer (PhysMem::write_frame()).
    EXPECT_EQ(buffers, 0u);

    const long table_bytes = static_cast<long>(tables * sizeof(PtTable));
    // The struct page array is counted as sizeof(Page) per frame; what the
    // heap grew by besides the page tables is per-frame metadata too.
    const long heap_per_frame = (heap1 - heap0 - table_bytes) / kFrames;
    const long metadata_per_frame = static_cast<long>(sizeof(Page)) + heap_per_frame;
    // RSS sees both the struct page array's touched pages and the heap. A
    // table is a 4 KiB-aligned allocation: glibc's memalign() carves it from a
    // larger chunk and frees the leading fragment, so each table makes about
    // two pages resident (the fragment is reused by later allocations).
    const long rss_per_frame = (rss1 - rss0 - 2 * table_bytes) / kFrames;

    RecordProperty("frames", std::to_string(kFrames));
    RecordProperty("page_table_bytes", std::to_string(table_bytes));
    RecordProperty("heap_growth_bytes", std::to_string(heap1 - heap0));
    RecordProperty("rss_growth_bytes", std::to_string(rss1 - rss0));
    RecordProperty("metadata_bytes_per_frame", std::to_string(metadata_per_frame));
    RecordProperty("rss_bytes_per_frame", std::to_string(rss_per_frame));
    std::printf("[ footprint] %ld frames: page tables %ld B, heap +%ld B, RSS +%ld B; "
                "metadata %ld B/frame (struct page %zu + heap %ld), RSS %ld B/frame after page tables (x2)\n",
                kFrames, table_bytes, heap1 - heap0, rss1 - rss0, metadata_per_frame, sizeof(Page), heap_per_frame,
                rss_per_frame);

    EXPECT_LE(metadata_per_frame, kTargetPerFrame + kSlackPerFrame)
        << "heap grew by " << heap1 - heap0 << " bytes for " << kFrames << " frames (" << table_bytes
        << " of them page tables)";
    EXPECT_LE(rss_per_frame, kTargetPerFrame + kSlackPerFrame)
        << "RSS grew by " << rss1 - rss0 << " bytes for " << kFrames << " frames (" << table_bytes
        << " of them page tables)";
}

// PhysMem::write_frame(): a frame without a contents buffer reads as zero, so
// storing zeros into it is a no-op and attaches no buffer. Once a frame has
// a buffer, zeros are stored like any other bytes.
TEST_F(MemoryFootprint, ZeroWriteToBufferlessFrameAllocatesNothing) {
    PhysMem& mem = *kern().mem;
    auto f = mem.alloc_folio(0, GFP_HIGHUSER_MOVABLE);
    ASSERT_TRUE(f.ok());
    Folio* folio = *f;
    const pfn_t pfn = mem.page_to_pfn(folio->head());
    const uint64_t before = mem.nr_data_buffers();

    std::vector<uint8_t> zeros(PAGE_SIZE, 0);
    ASSERT_TRUE(mem.write_frame(pfn, 0, zeros.data(), PAGE_SIZE).ok());
    ASSERT_TRUE(mem.write_frame(pfn, 17, zeros.data(), 1).ok());
    ASSERT_TRUE(mem.write_frame(pfn, 4000, zeros.data(), 96).ok());
    EXPECT_EQ(mem.nr_data_buffers(), before);
    EXPECT_EQ(folio->head()->data, nullptr);
    uint8_t b = 0xff;
    ASSERT_TRUE(mem.read_frame(pfn, 17, &b, 1).ok());
    EXPECT_EQ(b, 0);

    // A non-zero byte anywhere in the write materialises the buffer.
    std::vector<uint8_t> mostly_zero(64, 0);
    mostly_zero[63] = 0x5a;
    ASSERT_TRUE(mem.write_frame(pfn, 128, mostly_zero.data(), 64).ok());
    EXPECT_EQ(mem.nr_data_buffers(), before + 1);
    ASSERT_TRUE(mem.read_frame(pfn, 191, &b, 1).ok());
    EXPECT_EQ(b, 0x5a);
    // Zeros over existing contents take effect (the buffer stays).
    ASSERT_TRUE(mem.write_frame(pfn, 191, zeros.data(), 1).ok());
    ASSERT_TRUE(mem.read_frame(pfn, 191, &b, 1).ok());
    EXPECT_EQ(b, 0);
    EXPECT_EQ(mem.nr_data_buffers(), before + 1);

    // The shared zero page still refuses every write, zeros included.
    EXPECT_EQ(mem.write_frame(mem.page_to_pfn(mem.zero_folio()->head()), 0, zeros.data(), 1).negative_errno(),
              -EPERM);
    mem.folio_put(folio);
    EXPECT_EQ(mem.nr_data_buffers(), before);
}

// The same through the CPU's view: a zero byte stored into a freshly faulted
// anonymous page (do_anonymous_page() hands out a zeroed frame) leaves it
// without contents; a non-zero byte gives it a buffer, and the page reads
// back what was written either way.
TEST_F(MemoryFootprint, UserZeroStoreKeepsFrameBufferless) {
    PhysMem& mem = *kern().mem;
    const unsigned long a = map(4 * kPage);
    const uint64_t before = mem.nr_data_buffers();
    const char zero = 0, x = 'x';
    ASSERT_EQ(pl_write(t, a, &zero, 1), 1);
    ASSERT_EQ(pl_write(t, a + kPage + 100, &zero, 1), 1);
    EXPECT_NE(pg(t, a), nullptr);  // the write fault did populate the page
    EXPECT_EQ(mem.nr_data_buffers(), before);
    ASSERT_EQ(pl_write(t, a + 2 * kPage + 5, &x, 1), 1);
    EXPECT_EQ(mem.nr_data_buffers(), before + 1);
    char got[3] = {1, 1, 0};
    ASSERT_EQ(pl_read(t, a, &got[0], 1), 1);
    ASSERT_EQ(pl_read(t, a + 2 * kPage + 5, &got[1], 1), 1);
    EXPECT_EQ(got[0], 0);
    EXPECT_EQ(got[1], 'x');
}

}  // namespace
}  // namespace pl::test
