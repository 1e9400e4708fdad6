// O_DIRECT (src/drivers/direct_io.cpp): iomap_dio_rw()'s alignment rules,
// the page-cache flush and invalidation around the I/O, the pins of
// iov_iter_extract_pages() and their release by bio_release_pages(), and the
// classic races of an I/O in flight: fork (cow.c: the parent keeps the
// pinned page), munmap (the data lands in the orphaned page), stores into a
// buffer being written.
#include "test_kernel.h"

#include <atomic>
#include <thread>

namespace pl::test {
namespace {

class DirectIo : public KernelTest {
protected:
    unsigned long stat(const char* n) { return pl_vmstat(k, n); }
    std::string disk(pl_file* f, unsigned long off, unsigned long len) {
        std::string s(len, '\0');
        long r = pl_file_read_disk(f, s.data(), len, off);
        EXPECT_GE(r, 0);
        s.resize(r < 0 ? 0 : static_cast<size_t>(r));
        return s;
    }
    std::string mem(task_struct* task, unsigned long a, unsigned long len) {
        std::string s(len, '\0');
        EXPECT_EQ(pl_read(task, a, s.data(), len), static_cast<long>(len));
        return s;
    }
    void fill(task_struct* task, unsigned long a, char c, unsigned long len) {
        ASSERT_EQ(pl_memset(task, a, c, len), static_cast<long>(len));
    }
    // An ext4 file of `len` bytes of `c` on disk.
    pl_file* disk_file(char c, unsigned long len) {
        pl_file* f = file("ext4", len);
        std::string s(len, c);
        EXPECT_EQ(pl_pwrite(f, s.data(), len, 0), static_cast<long>(len));
        EXPECT_EQ(pl_fsync(f), 0);
        return f;
    }
};

// A synchronous round trip: pins taken and released once per page
// (nr_foll_pin_acquired/released), data on disk without fsync, read back
// into a cleared buffer.
TEST_F(DirectIo, WriteThenReadRoundTrip) {
    pl_file* f = file("ext4", 0);
    unsigned long buf = map(3 * kPage);
    fill(t, buf, 'w', 3 * kPage);
    const unsigned long acq = stat("nr_foll_pin_acquired"), rel = stat("nr_foll_pin_released");
    EXPECT_EQ(pl_direct_write(t, f, buf + 512, 2 * kPage, 0, nullptr), static_cast<long>(2 * kPage));
    // [buf+512, buf+512+8K) spans three pages.
    EXPECT_EQ(stat("nr_foll_pin_acquired") - acq, 3UL);
    EXPECT_EQ(stat("nr_foll_pin_released") - rel, 3UL);
    EXPECT_EQ(pl_file_size(f), 2 * kPage) << "a write past EOF extends the file";
    EXPECT_EQ(disk(f, 0, 2 * kPage), std::string(2 * kPage, 'w')) << "the device wrote the disk directly";
    fill(t, buf, 0, 3 * kPage);
    EXPECT_EQ(pl_direct_read(t, f, buf, 2 * kPage, 0, nullptr), static_cast<long>(2 * kPage));
    EXPECT_EQ(mem(t, buf, 2 * kPage), std::string(2 * kPage, 'w'));
    EXPECT_EQ(pl_pin_balance(k, "direct_io"), 0);
    EXPECT_EQ(stat("nr_foll_pin_acquired"), stat("nr_foll_pin_released"));
}

// iomap_dio_bio_iter(): offset, length and memory aligned to the logical
// block size (512), else -EINVAL; only files with ->direct_IO (the model's
// disk file systems) take O_DIRECT.
TEST_F(DirectIo, AlignmentAndFileChecks) {
    pl_file* f = disk_file('a', 4 * kPage);
    unsigned long buf = map(2 * kPage);
    struct Row {
        const char* why;
        unsigned long addr_off, len, off;
        long want;
    } rows[] = {
        {"all page aligned", 0, kPage, 0, static_cast<long>(kPage)},
        {"512-aligned address, length and offset", 512, 1024, 1536, 1024},
        {"unaligned file offset", 0, 512, 100, -EINVAL},
        {"unaligned length", 0, 100, 0, -EINVAL},
        {"unaligned buffer address", 8, 512, 0, -EINVAL},
        {"zero length", 0, 0, 0, 0},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(r.why);
        EXPECT_EQ(pl_direct_read(t, f, buf + r.addr_off, r.len, r.off, nullptr), r.want);
        EXPECT_EQ(pl_direct_write(t, f, buf + r.addr_off, r.len, r.off, nullptr), r.want);
    }
    // tmpfs/memfd take O_DIRECT (buffered) since v6.6: ConformRegressions.ShmemODirectIsBufferedSinceV6_6.
    for (const char* fs : {"hugetlbfs", "fsdax"}) {
        SCOPED_TRACE(fs);
        pl_file* m = file(fs, 2UL << 20);
        EXPECT_EQ(pl_direct_read(t, m, buf, kPage, 0, nullptr), -EINVAL);
    }
    EXPECT_EQ(pl_direct_read(nullptr, f, buf, kPage, 0, nullptr), -EINVAL);
    EXPECT_EQ(pl_direct_read(t, nullptr, buf, kPage, 0, nullptr), -EBADF);
    EXPECT_EQ(pl_dio_complete(nullptr), -EINVAL);
    EXPECT_EQ(pl_pin_balance(k, "direct_io"), 0);
}

// Reads stop at EOF (iomap_dio_complete() clamps to dio->i_size); at or past
// EOF they return 0 without pinning anything.
TEST_F(DirectIo, ReadClampedToEof) {
    pl_file* f = disk_file('e', 1000);
    unsigned long buf = map(kPage);
    EXPECT_EQ(pl_direct_read(t, f, buf, kPage, 0, nullptr), 1000);
    EXPECT_EQ(mem(t, buf, 1000), std::string(1000, 'e'));
    const unsigned long acq = stat("nr_foll_pin_acquired");
    EXPECT_EQ(pl_direct_read(t, f, buf, 512, 1024, nullptr), 0);
    EXPECT_EQ(stat("nr_foll_pin_acquired"), acq);
}

// Coherence with the page cache: a read first writes back dirty cached data
// (kiocb_write_and_wait()); a write drops the cached pages of the range and
// zaps their mappings (kiocb_invalidate_pages(), then
// kiocb_invalidate_post_direct_write()), so buffered reads and mmap see it.
TEST_F(DirectIo, PageCacheFlushedAndInvalidated) {
    pl_file* f = disk_file('o', 2 * kPage);
    ASSERT_EQ(pl_pwrite(f, "cached", 6, 0), 6);  // dirty in the page cache only
    ASSERT_EQ(disk(f, 0, 6), "oooooo");
    unsigned long buf = map(2 * kPage);
    EXPECT_EQ(pl_direct_read(t, f, buf, kPage, 0, nullptr), static_cast<long>(kPage));
    EXPECT_EQ(mem(t, buf, 6), "cached");
    unsigned long m = map(t, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    EXPECT_EQ(mem(t, m, 6), "cached");
    fill(t, buf, 'N', kPage);
    EXPECT_EQ(pl_direct_write(t, f, buf, kPage, 0, nullptr), static_cast<long>(kPage));
    EXPECT_EQ(pl_virt_to_page(t, m), nullptr) << "the mapping of the written range was zapped";
    char c[4] = {};
    ASSERT_EQ(pl_pread(f, c, 3, 0), 3);
    EXPECT_STREQ(c, "NNN");
    EXPECT_EQ(mem(t, m, 3), "NNN");
    EXPECT_EQ(mem(t, m + kPage, 3), "ooo") << "outside the range";
}

// cow.c's rule for a read in flight across fork(): the pinned anonymous page
// stays with the parent (fork copies it for the child at once), so the DMA
// lands in the parent only; the child keeps what the buffer held at fork.
TEST_F(DirectIo, ForkWhileReadInFlight) {
    pl_file* f = disk_file('D', kPage);
    unsigned long buf = map(kPage);
    fill(t, buf, 'p', kPage);
    pl_dio* dio = nullptr;
    ASSERT_EQ(pl_direct_read(t, f, buf, kPage, 0, &dio), static_cast<long>(kPage));
    ASSERT_NE(dio, nullptr);
    page* pinned = pg(t, buf);
    EXPECT_TRUE(folio_maybe_dma_pinned(page_folio(pinned)));
    EXPECT_EQ(mem(t, buf, 4), "pppp") << "nothing moved before completion";
    task_struct* child = pl_fork(t);
    ASSERT_NE(child, nullptr) << pl_last_error();
    EXPECT_EQ(pg(t, buf), pinned) << "the parent keeps the pinned page";
    EXPECT_NE(pg(child, buf), pinned) << "the child got a copy at fork";
    EXPECT_EQ(pl_dio_complete(dio), static_cast<long>(kPage));
    EXPECT_EQ(mem(t, buf, kPage), std::string(kPage, 'D'));
    EXPECT_EQ(mem(child, buf, kPage), std::string(kPage, 'p'));
    EXPECT_EQ(pl_dio_complete(dio), -EINVAL) << "completed once";
    EXPECT_EQ(pl_pin_balance(k, "direct_io"), 0);
}

// Before v6.3 bio_iov_iter_get_pages() took GET references
// (iov_iter_get_pages(), get_user_pages_fast()), which fork() does not see:
// the buffer page is COW-shared with the child, a store by the parent moves
// the parent to a copy, and the DMA lands in the page the child kept. The
// read "succeeds", the parent loses the data and the child receives it.
TEST_F(DirectIo, ForkWhileReadInFlightBeforeV6_3LosesTheData) {
    reboot("era=v6.0 ram=512M hugetlb_2m=0 hugetlb_1g=0");
    pl_file* f = disk_file('D', kPage);
    unsigned long buf = map(kPage);
    fill(t, buf, 'p', kPage);
    const unsigned long acq = stat("nr_foll_pin_acquired");
    pl_dio* dio = nullptr;
    ASSERT_EQ(pl_direct_read(t, f, buf, kPage, 0, &dio), static_cast<long>(kPage));
    EXPECT_EQ(stat("nr_foll_pin_acquired"), acq) << "FOLL_GET, not FOLL_PIN";
    page* held = pg(t, buf);
    task_struct* child = pl_fork(t);
    ASSERT_NE(child, nullptr);
    EXPECT_EQ(pg(child, buf), held) << "not seen as pinned: shared with the child";
    fill(t, buf, 'q', 1);  // the parent's store COWs it away from the I/O
    EXPECT_NE(pg(t, buf), held);
    EXPECT_EQ(pl_dio_complete(dio), static_cast<long>(kPage));
    EXPECT_EQ(mem(t, buf, 2), "qp") << "the parent never sees the data it read";
    EXPECT_EQ(mem(child, buf, 2), "DD") << "the child does";
}

// munmap while a read is in flight: the pins keep the pages (no crash, no
// report), the data lands in the orphaned page, and completion frees them.
TEST_F(DirectIo, MunmapWhileReadInFlight) {
    pl_file* f = disk_file('X', 2 * kPage);
    unsigned long buf = map(2 * kPage);
    fill(t, buf, 0, 2 * kPage);
    pl_dio* dio = nullptr;
    ASSERT_EQ(pl_direct_read(t, f, buf, 2 * kPage, 0, &dio), static_cast<long>(2 * kPage));
    page* orphan = pg(t, buf);
    get_page(orphan);  // the test's own look at the page after completion
    const unsigned long allocated = pl_nr_allocated_pages(k);
    ASSERT_EQ(pl_munmap(t, buf, 2 * kPage), 0);
    EXPECT_EQ(pl_nr_allocated_pages(k), allocated) << "pinned pages outlive the mapping";
    EXPECT_EQ(pl_dio_complete(dio), static_cast<long>(2 * kPage));
    char c[2] = {};
    ASSERT_EQ(pl_page_read(orphan, 100, c, 1), 0);
    EXPECT_EQ(c[0], 'X');
    put_page(orphan);
    EXPECT_EQ(pl_nr_allocated_pages(k), allocated - 2) << "both pages freed after completion";
    EXPECT_EQ(pl_pin_balance(k, "direct_io"), 0);
}

// A write in flight reads the buffer when the device runs: stores made after
// submission reach the disk (the pin keeps the same page; no COW on store).
TEST_F(DirectIo, StoreIntoBufferWhileWriteInFlight) {
    pl_file* f = disk_file('0', kPage);
    unsigned long buf = map(kPage);
    fill(t, buf, 'a', kPage);
    pl_dio* dio = nullptr;
    ASSERT_EQ(pl_direct_write(t, f, buf, kPage, 0, &dio), static_cast<long>(kPage));
    page* pinned = pg(t, buf);
    EXPECT_EQ(disk(f, 0, 2), "00");
    fill(t, buf, 'b', 512);
    EXPECT_EQ(pg(t, buf), pinned);
    EXPECT_EQ(pl_dio_complete(dio), static_cast<long>(kPage));
    EXPECT_EQ(disk(f, 0, 1024), std::string(512, 'b') + std::string(512, 'a'));
}

// Reading into a shared file mapping pins its page-cache page (FOLL_WRITE,
// not long-term: allowed) and releases it dirty (bio_release_pages()), so the
// data reaches that file's disk at the next writeback.
TEST_F(DirectIo, ReadIntoSharedFileMappingDirtiesIt) {
    pl_file* src = disk_file('S', kPage);
    pl_file* dst = disk_file('-', kPage);
    unsigned long m = map(t, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, dst);
    EXPECT_EQ(mem(t, m, 1), "-");
    ASSERT_EQ(pl_fsync(dst), 0);
    EXPECT_EQ(pl_direct_read(t, src, m, kPage, 0, nullptr), static_cast<long>(kPage));
    EXPECT_TRUE(PageDirty(pg(t, m)));
    ASSERT_EQ(pl_fsync(dst), 0);
    EXPECT_EQ(disk(dst, 0, 4), "SSSS");
}

// Writeback cleans a page while the read into it is in flight (it writes
// what the page holds then); completion dirties it again (bio_release_pages()
// after bio_check_pages_dirty()), so the DMA'd data is not lost.
TEST_F(DirectIo, WritebackDuringReadDoesNotLoseTheData) {
    pl_file* src = disk_file('S', kPage);
    pl_file* dst = disk_file('-', kPage);
    unsigned long m = map(t, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, dst);
    EXPECT_EQ(mem(t, m, 1), "-");
    pl_dio* dio = nullptr;
    ASSERT_EQ(pl_direct_read(t, src, m, kPage, 0, &dio), static_cast<long>(kPage));
    page* p = pg(t, m);
    EXPECT_TRUE(PageDirty(p)) << "bio_set_pages_dirty() at submission";
    ASSERT_EQ(pl_fsync(dst), 0);
    EXPECT_FALSE(PageDirty(p));
    EXPECT_EQ(disk(dst, 0, 1), "-");
    EXPECT_EQ(pl_dio_complete(dio), static_cast<long>(kPage));
    EXPECT_TRUE(PageDirty(p)) << "dirtied again at completion";
    ASSERT_EQ(pl_fsync(dst), 0);
    EXPECT_EQ(disk(dst, 0, 4), "SSSS");
}

// Writing a file from a shared mapping of the very range being written: the
// pinned page-cache folio is dropped from the cache by the invalidation
// (invalidate_inode_pages2_range() ignores the pin), the device reads it
// anyway, and the mapping refaults the same bytes from the disk.
TEST_F(DirectIo, WriteFromMappingOfTheSameRange) {
    pl_file* f = disk_file('s', 2 * kPage);
    unsigned long m = map(t, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    fill(t, m + kPage, 'M', kPage);  // dirty in the page cache only
    page* cached = pg(t, m + kPage);
    get_page(cached);
    EXPECT_EQ(pl_direct_write(t, f, m + kPage, kPage, kPage, nullptr), static_cast<long>(kPage));
    EXPECT_EQ(pl_virt_to_page(t, m + kPage), nullptr) << "zapped";
    EXPECT_EQ(disk(f, kPage, 2), "MM");
    EXPECT_EQ(mem(t, m + kPage, 2), "MM");
    EXPECT_NE(pg(t, m + kPage), cached) << "refaulted into a new page-cache folio";
    put_page(cached);
    EXPECT_EQ(pl_pin_balance(k, "direct_io"), 0);
}

// GUP refuses VM_IO|VM_PFNMAP memory and unmapped memory: -EFAULT, no pin.
TEST_F(DirectIo, UnpinnableBufferIsEfault) {
    pl_file* f = disk_file('q', kPage);
    pl_file* dev = pl_dev_open(k, "pfnmap");
    ASSERT_NE(dev, nullptr);
    files.push_back(dev);
    unsigned long p = map(t, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, dev);
    EXPECT_EQ(pl_direct_read(t, f, p, kPage, 0, nullptr), -EFAULT);
    EXPECT_EQ(pl_direct_write(t, f, p, kPage, 0, nullptr), -EFAULT);
    unsigned long a = map(2 * kPage);
    ASSERT_EQ(pl_munmap(t, a + kPage, kPage), 0);
    EXPECT_EQ(pl_direct_read(t, f, a + kPage, 512, 0, nullptr), -EFAULT);
    EXPECT_EQ(pl_direct_read(t, f, a, 2 * kPage, 0, nullptr), -EFAULT) << "short pin: the model fails it whole";
    EXPECT_EQ(pl_pin_balance(k, "direct_io"), 0);
    EXPECT_EQ(stat("nr_foll_pin_acquired"), stat("nr_foll_pin_released"));
}

// The task exits while its read is in flight: the I/O still completes into
// pages that nobody maps any more.
TEST_F(DirectIo, TaskExitWhileInFlight) {
    pl_file* f = disk_file('z', kPage);
    task_struct* t2 = pl_task_new(k);
    unsigned long buf = map(t2, kPage);
    pl_dio* dio = nullptr;
    ASSERT_EQ(pl_direct_read(t2, f, buf, kPage, 0, &dio), static_cast<long>(kPage));
    pl_exit(t2);
    EXPECT_EQ(pl_dio_complete(dio), static_cast<long>(kPage));
    EXPECT_EQ(pl_pin_balance(k, "direct_io"), 0);
}


// Direct I/O racing buffered I/O and mmap faults on the same file, and fork
// of the task whose buffers are pinned: every I/O returns its full length,
// what a direct write put on disk is what the direct read returns, and no
// pin or frame is left over.
class DirectIoConcurrent : public DirectIo {};

TEST_F(DirectIoConcurrent, DirectBufferedMmapAndFork) {
    pl_file* f = disk_file('.', 16 * kPage);
    const unsigned long wbuf = map(2 * kPage), rbuf = map(2 * kPage);
    const unsigned long m = map(t, 16 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    std::atomic<bool> failed{false};
    std::atomic<bool> done{false};
    std::thread direct([&] {
        for (int i = 0; i < 60; ++i) {
            const char c = static_cast<char>('a' + i % 26);
            if (pl_memset(t, wbuf, c, 2 * kPage) != static_cast<long>(2 * kPage)) failed = true;
            if (pl_direct_write(t, f, wbuf, 2 * kPage, 0, nullptr) != static_cast<long>(2 * kPage)) failed = true;
            if (pl_direct_read(t, f, rbuf, 2 * kPage, 0, nullptr) != static_cast<long>(2 * kPage)) failed = true;
            char got[2] = {};
            if (pl_read(t, rbuf + kPage + 7, got, 1) != 1 || got[0] != c) failed = true;
        }
        done = true;
    });
    std::thread buffered([&] {
        char b[64];
        for (int i = 0; !done.load(); ++i) {
            if (pl_pwrite(f, "buffered", 8, 8 * kPage + (i % 4) * kPage) != 8) failed = true;
            if (pl_pread(f, b, 64, 8 * kPage) != 64) failed = true;
            if (pl_read(t, m + (i % 16) * kPage, b, 16) != 16) failed = true;  // faults, also on the DIO range
        }
    });
    std::thread forker([&] {
        while (!done.load()) {
            task_struct* c = pl_fork(t);
            if (!c) {
                failed = true;
                continue;
            }
            pl_exit(c);
        }
    });
    direct.join();
    buffered.join();
    forker.join();
    EXPECT_FALSE(failed.load()) << pl_last_error();
    EXPECT_EQ(pl_pin_balance(k, "direct_io"), 0);
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), pl_vmstat(k, "nr_foll_pin_released"));
}


// __iomap_dio_rw() maps a write one extent at a time (ext4_iomap_begin():
// a run of allocated blocks, or a hole it allocates for that hole only) and
// iomap_dio_bio_iter() pins each extent's part of the buffer with a
// bio_iov_iter_get_pages() -> pin_user_pages_fast() call of its own. A
// buffer 2K off the file's page alignment puts user page 1 in both halves
// of an 8K write at offset 0: pinned once when one extent covers the range,
// twice when file block 0 is a hole and block 1 is written (two extents).
// Found by pinlab conform (examples/conform/regress_dio_unshare_split.pin).
TEST_F(DirectIo, WritePinsPerExtent) {
    struct Row {
        const char* what;
        bool block0, block1;  // written on disk before the O_DIRECT write
        unsigned long pins;   // held while it is in flight
    };
    const Row rows[] = {
        {"both holes: one extent", false, false, 3},
        {"both written: one extent", true, true, 3},
        {"hole then written: two extents", false, true, 4},
        {"written then hole: two extents", true, false, 4},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(r.what);
        pl_file* f = file("ext4", 2 * kPage);
        const std::string old(kPage, 'o');
        if (r.block0) {
            ASSERT_EQ(pl_pwrite(f, old.data(), kPage, 0), static_cast<long>(kPage));
        }
        if (r.block1) {
            ASSERT_EQ(pl_pwrite(f, old.data(), kPage, kPage), static_cast<long>(kPage));
        }
        ASSERT_EQ(pl_fsync(f), 0);
        const unsigned long buf = map(3 * kPage);
        fill(t, buf, 'n', 3 * kPage);
        const unsigned long acq = stat("nr_foll_pin_acquired"), rel = stat("nr_foll_pin_released");
        pl_dio* dio = nullptr;
        ASSERT_EQ(pl_direct_write(t, f, buf + 2048, 2 * kPage, 0, &dio), static_cast<long>(2 * kPage));
        ASSERT_NE(dio, nullptr);
        EXPECT_EQ(stat("nr_foll_pin_acquired") - acq, r.pins);
        EXPECT_EQ(pl_pin_balance(k, "direct_io"), static_cast<long>(r.pins));
        EXPECT_TRUE(folio_maybe_dma_pinned(page_folio(pg(t, buf + kPage))));
        EXPECT_EQ(pl_dio_complete(dio), static_cast<long>(2 * kPage));
        EXPECT_EQ(stat("nr_foll_pin_released") - rel, r.pins) << "every pin of the straddling page released";
        EXPECT_EQ(pl_pin_balance(k, "direct_io"), 0);
        EXPECT_EQ(disk(f, 0, 2 * kPage), std::string(2 * kPage, 'n'));
        ASSERT_EQ(pl_munmap(t, buf, 3 * kPage), 0);
    }
}

}  // namespace
}  // namespace pl::test
