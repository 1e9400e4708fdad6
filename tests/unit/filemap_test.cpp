// White-box tests of the page cache and the file systems at the file level:
// pread/pwrite, EOF, fsync and the backing store, truncation, hole
// punching, fallocate, secretmem's refusals, cache refcounts, leaks, and the
// filemap fault's mmap_lock drop.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>
#include <memory>
#include <vector>

#include "fs/file.h"
#include "fs/fs.h"
#include "fs/inode.h"
#include "kernel/kernel.h"
#include "mm/internal.h"
#include "mm/mm_struct.h"
#include "mm/mmap.h"
#include "mm/uaccess.h"
#include "kernel/task.h"

#include <sys/mman.h>

namespace pl {

void exit_task_mm(Task* t);  // kernel/exit.cpp

namespace {

constexpr int KEEP_SIZE = 1;
constexpr int PUNCH_HOLE = 2;

std::unique_ptr<Kernel> make_kernel(const char* text = "ram=256M") {
    auto cfg = Config::parse(text);
    EXPECT_TRUE(cfg.ok()) << Config::last_error();
    auto k = Kernel::create(*cfg);
    EXPECT_TRUE(k.ok());
    return std::move(*k);
}

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7 + (i >> 12));
    return v;
}

File* create(Kernel& k, FsKind fs, uint64_t size) {
    auto f = file_create(k, fs, size);
    EXPECT_TRUE(f.ok()) << fs_traits(fs).name;
    return f.ok() ? *f : nullptr;
}

uint64_t write_all(File& f, const std::vector<uint8_t>& data, uint64_t off) {
    auto r = file_pwrite(f, data.data(), data.size(), off);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : 0;
}

std::vector<uint8_t> read_all(File& f, uint64_t len, uint64_t off) {
    std::vector<uint8_t> out(len, 0xee);
    auto r = file_pread(f, out.data(), len, off);
    EXPECT_TRUE(r.ok());
    out.resize(r.ok() ? *r : 0);
    return out;
}

std::vector<uint8_t> read_disk(File& f, uint64_t len, uint64_t off) {
    std::vector<uint8_t> out(len, 0xee);
    auto r = file_read_disk(f, out.data(), len, off);
    EXPECT_TRUE(r.ok());
    out.resize(r.ok() ? *r : 0);
    return out;
}

Folio* cached(Inode& inode, pgoff_t index) {
    sync::SpinGuard g(inode.mapping.i_pages_lock);
    return inode.mapping.peek_folio_locked(index);
}

bool all_zero(const std::vector<uint8_t>& v) {
    for (uint8_t b : v)
        if (b) return false;
    return true;
}

const FsKind kPageCacheKinds[] = {FsKind::Ext4, FsKind::Xfs, FsKind::Btrfs, FsKind::Tmpfs, FsKind::Memfd};
const FsKind kWritableKinds[] = {FsKind::Ext4, FsKind::Xfs,   FsKind::Btrfs,
                                 FsKind::Tmpfs, FsKind::Memfd, FsKind::Fsdax};

TEST(Filemap, CreateEveryKind) {
    auto k = make_kernel();
    uint64_t base = k->mem->nr_allocated_pages();
    for (FsKind fs : {FsKind::Ext4, FsKind::Xfs, FsKind::Btrfs, FsKind::Tmpfs, FsKind::Memfd, FsKind::MemfdHugetlb,
                      FsKind::Hugetlbfs, FsKind::Fsdax, FsKind::Secretmem}) {
        File* f = create(*k, fs, 5000);
        ASSERT_NE(f, nullptr);
        EXPECT_EQ(f->refs(), 1);
        EXPECT_EQ(f->inode->fs, fs);
        EXPECT_EQ(f->name.rfind(std::string(fs_traits(fs).name) + ":", 0), 0u) << f->name;
        if (fs_traits(fs).hugetlb) {
            EXPECT_EQ(f->inode->size.load(), PMD_SIZE);
            EXPECT_EQ(f->inode->page_size(), PMD_SIZE);
        } else {
            EXPECT_EQ(f->inode->size.load(), 5000u);
            EXPECT_EQ(f->inode->page_size(), PAGE_SIZE);
        }
        f->put();
    }
    EXPECT_FALSE(file_create(*k, FsKind::Device, 0).ok());
    EXPECT_TRUE(k->inodes().empty());
    EXPECT_EQ(k->mem->nr_allocated_pages(), base);
}

TEST(Filemap, WriteReadRoundTrip) {
    auto k = make_kernel();
    for (FsKind fs : kWritableKinds) {
        SCOPED_TRACE(fs_traits(fs).name);
        uint64_t base = k->mem->nr_allocated_pages();
        File* f = create(*k, fs, 0);
        ASSERT_NE(f, nullptr);
        auto data = pattern(3 * PAGE_SIZE + 123, 1);
        EXPECT_EQ(write_all(*f, data, 1000), data.size());
        EXPECT_EQ(f->inode->size.load(), 1000 + data.size());
        EXPECT_EQ(read_all(*f, data.size(), 1000), data);
        // The bytes before the write read as zero.
        EXPECT_TRUE(all_zero(read_all(*f, 1000, 0)));
        // Overwrite in the middle.
        auto small = pattern(10, 99);
        EXPECT_EQ(write_all(*f, small, PAGE_SIZE + 5), 10u);
        auto whole = read_all(*f, f->inode->size.load(), 0);
        ASSERT_EQ(whole.size(), 1000 + data.size());
        EXPECT_EQ(0, std::memcmp(whole.data() + PAGE_SIZE + 5, small.data(), 10));
        EXPECT_EQ(whole[PAGE_SIZE + 4], data[PAGE_SIZE + 4 - 1000]);
        f->put();
        EXPECT_EQ(k->mem->nr_allocated_pages(), base);
    }
}

TEST(Filemap, ReadsPastEof) {
    auto k = make_kernel();
    for (FsKind fs : kWritableKinds) {
        SCOPED_TRACE(fs_traits(fs).name);
        File* f = create(*k, fs, 0);
        ASSERT_NE(f, nullptr);
        auto data = pattern(6000, 3);
        write_all(*f, data, 0);
        // Straddling EOF: the bytes up to EOF.
        auto tail = read_all(*f, 4096, 5000);
        ASSERT_EQ(tail.size(), 1000u);
        EXPECT_EQ(0, std::memcmp(tail.data(), data.data() + 5000, 1000));
        // At and after EOF: nothing.
        EXPECT_EQ(read_all(*f, 100, 6000).size(), 0u);
        EXPECT_EQ(read_all(*f, 100, 1 << 20).size(), 0u);
        f->put();
    }
}

TEST(Filemap, HolesReadZeroWithoutAllocatingOnShmem) {
    auto k = make_kernel();
    File* f = create(*k, FsKind::Tmpfs, 8 * PAGE_SIZE);
    ASSERT_NE(f, nullptr);
    uint64_t before = k->mem->nr_allocated_pages();
    EXPECT_TRUE(all_zero(read_all(*f, 8 * PAGE_SIZE, 0)));
    EXPECT_EQ(f->inode->mapping.nrpages.load(), 0u);
    EXPECT_EQ(k->mem->nr_allocated_pages(), before);
    f->put();
}

TEST(Filemap, CacheFolioState) {
    auto k = make_kernel();
    for (FsKind fs : kPageCacheKinds) {
        SCOPED_TRACE(fs_traits(fs).name);
        File* f = create(*k, fs, 0);
        ASSERT_NE(f, nullptr);
        write_all(*f, pattern(2 * PAGE_SIZE, 5), 0);
        Inode& inode = *f->inode;
        EXPECT_EQ(inode.mapping.nrpages.load(), 2u);
        for (pgoff_t i = 0; i < 2; ++i) {
            Folio* folio = cached(inode, i);
            ASSERT_NE(folio, nullptr);
            EXPECT_EQ(folio->ref_count(), 1);  // the page cache's reference only
            EXPECT_EQ(folio->order(), 0u);
            EXPECT_EQ(folio->mapping(), &inode.mapping);
            EXPECT_EQ(folio->index(), i);
            EXPECT_TRUE(folio->test(PG_uptodate));
            EXPECT_EQ(folio->test(PG_swapbacked), fs_traits(fs).shmem);
            EXPECT_TRUE(folio->is_dirty());
            EXPECT_FALSE(folio->is_locked());
        }
        // get_folio() takes a reference.
        Folio* g = inode.mapping.get_folio(1);
        ASSERT_EQ(g, cached(inode, 1));
        EXPECT_EQ(g->ref_count(), 2);
        k->mem->folio_put(g);
        EXPECT_EQ(inode.mapping.get_folio(7), nullptr);
        f->put();
    }
}

TEST(Filemap, FsyncWritesBackToDisk) {
    auto k = make_kernel();
    for (FsKind fs : {FsKind::Ext4, FsKind::Xfs, FsKind::Btrfs}) {
        SCOPED_TRACE(fs_traits(fs).name);
        int64_t dirty0 = k->vmstat.get(Vmstat::nr_dirty);
        int64_t written0 = k->vmstat.get(Vmstat::nr_written);
        File* f = create(*k, fs, 0);
        ASSERT_NE(f, nullptr);
        auto data = pattern(2 * PAGE_SIZE + 10, 7);
        write_all(*f, data, 0);
        EXPECT_EQ(k->vmstat.get(Vmstat::nr_dirty), dirty0 + 3);
        // Before fsync the disk holds nothing (zeros).
        EXPECT_TRUE(all_zero(read_disk(*f, data.size(), 0)));
        ASSERT_TRUE(file_fsync(*f).ok());
        EXPECT_EQ(read_disk(*f, data.size(), 0), data);
        EXPECT_EQ(k->vmstat.get(Vmstat::nr_dirty), dirty0);
        EXPECT_EQ(k->vmstat.get(Vmstat::nr_writeback), 0);
        EXPECT_EQ(k->vmstat.get(Vmstat::nr_written), written0 + 3);
        for (pgoff_t i = 0; i < 3; ++i) {
            Folio* folio = cached(*f->inode, i);
            ASSERT_NE(folio, nullptr);
            EXPECT_FALSE(folio->is_dirty());
            EXPECT_FALSE(folio->is_writeback());
        }
        // A new write dirties one page; the disk keeps the old bytes until fsync.
        auto upd = pattern(16, 200);
        write_all(*f, upd, PAGE_SIZE);
        EXPECT_EQ(k->vmstat.get(Vmstat::nr_dirty), dirty0 + 1);
        EXPECT_EQ(read_disk(*f, data.size(), 0), data);
        ASSERT_TRUE(file_fsync(*f).ok());
        EXPECT_EQ(k->vmstat.get(Vmstat::nr_written), written0 + 4);
        auto disk = read_disk(*f, 16, PAGE_SIZE);
        EXPECT_EQ(disk, upd);
        // Past EOF the disk reads nothing.
        EXPECT_EQ(read_disk(*f, 10, data.size()).size(), 0u);
        f->put();
        EXPECT_EQ(k->vmstat.get(Vmstat::nr_dirty), dirty0);
    }
}

TEST(Filemap, DirtyAccountingDroppedWithTheFile) {
    auto k = make_kernel();
    int64_t dirty0 = k->vmstat.get(Vmstat::nr_dirty);
    int64_t files0 = k->vmstat.get(Vmstat::nr_file_pages);
    File* f = create(*k, FsKind::Ext4, 0);
    write_all(*f, pattern(5 * PAGE_SIZE, 1), 0);
    EXPECT_EQ(k->vmstat.get(Vmstat::nr_dirty), dirty0 + 5);
    EXPECT_EQ(k->vmstat.get(Vmstat::nr_file_pages), files0 + 5);
    f->put();
    EXPECT_EQ(k->vmstat.get(Vmstat::nr_dirty), dirty0);
    EXPECT_EQ(k->vmstat.get(Vmstat::nr_file_pages), files0);
}

TEST(Filemap, MemoryFileSystemsHaveNothingToWriteBack) {
    auto k = make_kernel();
    for (FsKind fs : {FsKind::Tmpfs, FsKind::Memfd, FsKind::Secretmem, FsKind::Hugetlbfs}) {
        File* f = create(*k, fs, PAGE_SIZE);
        // shmem and hugetlbfs fsync succeed doing nothing; secretmem has no
        // ->fsync at all, so vfs_fsync() fails with EINVAL.
        Status s = file_fsync(*f);
        if (fs == FsKind::Secretmem) EXPECT_EQ(s.negative_errno(), -EINVAL);
        else EXPECT_TRUE(s.ok());
        char b;
        auto r = file_read_disk(*f, &b, 1, 0);
        ASSERT_FALSE(r.ok());
        EXPECT_EQ(r.error(), Error(EOPNOTSUPP));
        f->put();
    }
    int64_t dirty0 = k->vmstat.get(Vmstat::nr_dirty);
    File* f = create(*k, FsKind::Tmpfs, 0);
    write_all(*f, pattern(PAGE_SIZE, 1), 0);
    EXPECT_EQ(k->vmstat.get(Vmstat::nr_dirty), dirty0);  // shmem does no dirty accounting
    f->put();
}

TEST(Filemap, DiskReadsFromBackingStore) {
    auto k = make_kernel();
    File* f = create(*k, FsKind::Ext4, 2 * PAGE_SIZE);
    auto block = pattern(PAGE_SIZE, 42);
    f->inode->disk.write_page(1, block.data());
    EXPECT_EQ(read_all(*f, PAGE_SIZE, PAGE_SIZE), block);
    EXPECT_TRUE(all_zero(read_all(*f, PAGE_SIZE, 0)));  // a hole
    // Both pages are now cached, clean.
    ASSERT_NE(cached(*f->inode, 0), nullptr);
    ASSERT_NE(cached(*f->inode, 1), nullptr);
    EXPECT_FALSE(cached(*f->inode, 1)->is_dirty());
    // filemap_get_or_read on a cached page returns it with a reference.
    Folio* folio = nullptr;
    ASSERT_EQ(filemap_get_or_read(*f->inode, 1, &folio), 0u);
    EXPECT_EQ(folio, cached(*f->inode, 1));
    EXPECT_EQ(folio->ref_count(), 2);
    k->mem->folio_put(folio);
    // Beyond EOF: SIGBUS.
    EXPECT_EQ(filemap_get_or_read(*f->inode, 2, &folio), VM_FAULT_SIGBUS);
    f->put();
}

TEST(Filemap, TruncateDropsFoliosAndZeroesTail) {
    auto k = make_kernel();
    for (FsKind fs : kWritableKinds) {
        SCOPED_TRACE(fs_traits(fs).name);
        uint64_t base = k->mem->nr_allocated_pages();
        File* f = create(*k, fs, 0);
        auto data = pattern(4 * PAGE_SIZE, 9);
        write_all(*f, data, 0);
        if (fs_traits(fs).writeback) {
            ASSERT_TRUE(file_fsync(*f).ok());
        }
        uint64_t newsize = PAGE_SIZE + 100;
        ASSERT_TRUE(file_truncate(*f, newsize).ok());
        EXPECT_EQ(f->inode->size.load(), newsize);
        if (!fs_traits(fs).dax) {
            EXPECT_EQ(f->inode->mapping.nrpages.load(), 2u);
            EXPECT_EQ(cached(*f->inode, 2), nullptr);
            EXPECT_EQ(cached(*f->inode, 3), nullptr);
        } else {
            sync::SpinGuard g(f->inode->dax_lock);
            EXPECT_EQ(f->inode->dax_blocks.size(), 2u);
        }
        // Growing again: the tail of the partial page and the rest read zero.
        ASSERT_TRUE(file_truncate(*f, 4 * PAGE_SIZE).ok());
        auto back = read_all(*f, 4 * PAGE_SIZE, 0);
        ASSERT_EQ(back.size(), 4 * PAGE_SIZE);
        EXPECT_EQ(0, std::memcmp(back.data(), data.data(), newsize));
        EXPECT_TRUE(all_zero(std::vector<uint8_t>(back.begin() + newsize, back.end())));
        if (fs_traits(fs).writeback) {
            // The disk lost the blocks beyond EOF; the partial one is zeroed
            // once written back.
            ASSERT_TRUE(file_fsync(*f).ok());
            auto disk = read_disk(*f, 4 * PAGE_SIZE, 0);
            EXPECT_EQ(0, std::memcmp(disk.data(), data.data(), newsize));
            EXPECT_TRUE(all_zero(std::vector<uint8_t>(disk.begin() + newsize, disk.end())));
            if (!fs_traits(fs).dax) {
                EXPECT_FALSE(f->inode->disk.has_block(2));
                EXPECT_FALSE(f->inode->disk.has_block(3));
            }
        }
        ASSERT_TRUE(file_truncate(*f, 0).ok());
        EXPECT_EQ(f->inode->mapping.nrpages.load(), 0u);
        f->put();
        EXPECT_EQ(k->mem->nr_allocated_pages(), base);
    }
}

TEST(Filemap, TruncatedPinnedFolioStaysAlive) {
    auto k = make_kernel();
    uint64_t base = k->mem->nr_allocated_pages();
    File* f = create(*k, FsKind::Ext4, 0);
    write_all(*f, pattern(2 * PAGE_SIZE, 4), 0);
    Folio* folio = cached(*f->inode, 1);
    ASSERT_NE(folio, nullptr);
    folio->ref_add(GUP_PIN_COUNTING_BIAS);  // as pin_user_pages() would
    int64_t dirty0 = k->vmstat.get(Vmstat::nr_dirty);
    ASSERT_TRUE(file_truncate(*f, PAGE_SIZE).ok());
    EXPECT_EQ(cached(*f->inode, 1), nullptr);
    EXPECT_EQ(folio->mapping(), nullptr);
    EXPECT_EQ(folio->ref_count(), GUP_PIN_COUNTING_BIAS);
    EXPECT_EQ(k->vmstat.get(Vmstat::nr_dirty), dirty0 - 1);
    // unpin_user_pages_dirty_lock(): dirtying a truncated folio sets the flag only.
    folio_mark_dirty(folio);
    EXPECT_TRUE(folio->is_dirty());
    EXPECT_EQ(k->vmstat.get(Vmstat::nr_dirty), dirty0 - 1);
    f->put();
    EXPECT_EQ(k->mem->nr_allocated_pages(), base + 1);  // only the pinned page remains
    k->mem->folio_put_refs(folio, GUP_PIN_COUNTING_BIAS);
    EXPECT_EQ(k->mem->nr_allocated_pages(), base);
}

TEST(Filemap, PinnedFolioIsWrittenBack) {
    auto k = make_kernel();
    File* f = create(*k, FsKind::Xfs, 0);
    write_all(*f, pattern(PAGE_SIZE, 4), 0);
    Folio* folio = cached(*f->inode, 0);
    folio->ref_add(GUP_PIN_COUNTING_BIAS);
    ASSERT_TRUE(file_fsync(*f).ok());
    EXPECT_FALSE(folio->is_dirty());
    EXPECT_EQ(read_disk(*f, PAGE_SIZE, 0), pattern(PAGE_SIZE, 4));
    k->mem->folio_put_refs(folio, GUP_PIN_COUNTING_BIAS);
    f->put();
}

TEST(Filemap, PunchHoleZeroesRangeKeepsSize) {
    auto k = make_kernel();
    for (FsKind fs : kWritableKinds) {
        SCOPED_TRACE(fs_traits(fs).name);
        uint64_t base = k->mem->nr_allocated_pages();
        File* f = create(*k, fs, 0);
        auto data = pattern(4 * PAGE_SIZE, 11);
        write_all(*f, data, 0);
        if (fs_traits(fs).writeback) {
            ASSERT_TRUE(file_fsync(*f).ok());
        }
        uint64_t off = 1000, end = 3 * PAGE_SIZE + 100;
        ASSERT_TRUE(file_fallocate(*f, PUNCH_HOLE | KEEP_SIZE, off, end - off).ok());
        EXPECT_EQ(f->inode->size.load(), 4 * PAGE_SIZE);
        if (!fs_traits(fs).dax) {
            // Whole pages 1 and 2 left the cache; the edges stayed.
            EXPECT_NE(cached(*f->inode, 0), nullptr);
            EXPECT_EQ(cached(*f->inode, 1), nullptr);
            EXPECT_EQ(cached(*f->inode, 2), nullptr);
            EXPECT_NE(cached(*f->inode, 3), nullptr);
            if (fs_traits(fs).writeback) {
                EXPECT_TRUE(f->inode->disk.has_block(0));
                EXPECT_FALSE(f->inode->disk.has_block(1));
                EXPECT_FALSE(f->inode->disk.has_block(2));
                EXPECT_TRUE(f->inode->disk.has_block(3));
            }
        } else {
            sync::SpinGuard g(f->inode->dax_lock);
            EXPECT_EQ(f->inode->dax_blocks.count(1), 0u);
            EXPECT_EQ(f->inode->dax_blocks.count(2), 0u);
        }
        auto back = read_all(*f, 4 * PAGE_SIZE, 0);
        ASSERT_EQ(back.size(), 4 * PAGE_SIZE);
        for (uint64_t i = 0; i < back.size(); ++i) {
            uint8_t want = (i >= off && i < end) ? 0 : data[i];
            ASSERT_EQ(back[i], want) << "byte " << i;
        }
        if (fs_traits(fs).writeback) {
            ASSERT_TRUE(file_fsync(*f).ok());
            EXPECT_EQ(read_disk(*f, 4 * PAGE_SIZE, 0), back);
        }
        // A hole inside one page.
        ASSERT_TRUE(file_fallocate(*f, PUNCH_HOLE | KEEP_SIZE, 10, 20).ok());
        auto head = read_all(*f, 40, 0);
        for (int i = 0; i < 40; ++i) ASSERT_EQ(head[i], (i >= 10 && i < 30) ? 0 : data[i]) << i;
        // Beyond EOF: nothing to do.
        EXPECT_TRUE(file_fallocate(*f, PUNCH_HOLE | KEEP_SIZE, 8 * PAGE_SIZE, PAGE_SIZE).ok());
        EXPECT_EQ(f->inode->size.load(), 4 * PAGE_SIZE);
        f->put();
        EXPECT_EQ(k->mem->nr_allocated_pages(), base);
    }
}

TEST(Filemap, FallocateModes) {
    auto k = make_kernel();
    for (FsKind fs : kWritableKinds) {
        SCOPED_TRACE(fs_traits(fs).name);
        File* f = create(*k, fs, 100);
        ASSERT_TRUE(file_fallocate(*f, 0, 0, 3 * PAGE_SIZE).ok());
        EXPECT_EQ(f->inode->size.load(), 3 * PAGE_SIZE);
        ASSERT_TRUE(file_fallocate(*f, 0, 0, PAGE_SIZE).ok());
        EXPECT_EQ(f->inode->size.load(), 3 * PAGE_SIZE);  // never shrinks
        if (fs_traits(fs).shmem) {
            EXPECT_EQ(f->inode->mapping.nrpages.load(), 3u);  // preallocated
        }
        for (int mode : {KEEP_SIZE, PUNCH_HOLE, 0x10, 0x20 | KEEP_SIZE}) {
            Status s = file_fallocate(*f, mode, 0, PAGE_SIZE);
            ASSERT_FALSE(s.ok()) << mode;
            EXPECT_EQ(s.error(), Error(EOPNOTSUPP)) << mode;
        }
        Status s = file_fallocate(*f, 0, 0, 0);
        ASSERT_FALSE(s.ok());
        EXPECT_EQ(s.error(), Error(EINVAL));
        f->put();
    }
}

TEST(Filemap, SecretmemRefusesReadWriteFallocate) {
    auto k = make_kernel();
    File* f = create(*k, FsKind::Secretmem, 0);
    char buf[16] = {};
    auto r = file_pread(*f, buf, sizeof buf, 0);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error(), Error(EINVAL));
    auto w = file_pwrite(*f, buf, sizeof buf, 0);
    ASSERT_FALSE(w.ok());
    EXPECT_EQ(w.error(), Error(EINVAL));
    Status s = file_fallocate(*f, 0, 0, PAGE_SIZE);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error(), Error(EOPNOTSUPP));
    // ftruncate() sets the size while no page exists.
    ASSERT_TRUE(file_truncate(*f, 2 * PAGE_SIZE).ok());
    EXPECT_EQ(f->inode->size.load(), 2 * PAGE_SIZE);
    // A page (as a fault would create it): unmovable, PG_secretmem; then the
    // size is fixed.
    Folio* folio = nullptr;
    ASSERT_EQ(filemap_get_or_read(*f->inode, 1, &folio), 0u);
    EXPECT_TRUE(folio->test(PG_secretmem));
    EXPECT_FALSE(folio->test(PG_swapbacked));
    EXPECT_EQ(folio->ref_count(), 2);
    k->mem->folio_put(folio);
    s = file_truncate(*f, PAGE_SIZE);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error(), Error(EINVAL));
    f->put();
}

TEST(Filemap, HugetlbReadAndRefusedWrite) {
    auto k = make_kernel("ram=256M hugetlb_2m=4");
    File* f = create(*k, FsKind::Hugetlbfs, 1);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->inode->size.load(), PMD_SIZE);
    char buf[64];
    auto w = file_pwrite(*f, buf, sizeof buf, 0);
    ASSERT_FALSE(w.ok());
    EXPECT_EQ(w.error(), Error(EINVAL));
    EXPECT_TRUE(all_zero(read_all(*f, 64, PAGE_SIZE * 3 + 5)));  // a hole
    Status s = file_truncate(*f, PMD_SIZE + PAGE_SIZE);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error(), Error(EINVAL));
    ASSERT_GT(k->mem->hugetlb_stats(HugeSize::Size2M).free, 0u);
    {
        ASSERT_TRUE(file_fallocate(*f, 0, 0, PMD_SIZE).ok());
        Folio* folio = f->inode->mapping.get_folio(5);
        ASSERT_NE(folio, nullptr);
        EXPECT_TRUE(folio->is_hugetlb());
        // Bytes in the huge folio are read through the cache.
        uint8_t v = 0x5a;
        ASSERT_TRUE(k->mem->write_frame(k->mem->page_to_pfn(folio->page(5)), 7, &v, 1).ok());
        k->mem->folio_put(folio);
        auto got = read_all(*f, 1, 5 * PAGE_SIZE + 7);
        ASSERT_EQ(got.size(), 1u);
        EXPECT_EQ(got[0], 0x5a);
        // A punched partial range reads zero.
        ASSERT_TRUE(file_fallocate(*f, PUNCH_HOLE | KEEP_SIZE, 5 * PAGE_SIZE, PAGE_SIZE).ok());
        EXPECT_EQ(read_all(*f, 1, 5 * PAGE_SIZE + 7)[0], 0);
        ASSERT_TRUE(file_truncate(*f, 0).ok());
        EXPECT_EQ(f->inode->mapping.nrpages.load(), 0u);
    }
    f->put();
    EXPECT_EQ(k->mem->hugetlb_stats(HugeSize::Size2M).free, k->mem->hugetlb_stats(HugeSize::Size2M).nr);
}

TEST(Filemap, FsdaxBlocksAndTeardown) {
    auto k = make_kernel();
    ZoneStats dev0 = k->mem->zone_stats(ZoneId::Device);
    uint64_t base = k->mem->nr_allocated_pages();
    File* f = create(*k, FsKind::Fsdax, 0);
    auto data = pattern(3 * PAGE_SIZE, 13);
    write_all(*f, data, 0);
    EXPECT_EQ(f->inode->mapping.nrpages.load(), 0u);  // no page cache
    ASSERT_NE(f->inode->dax_pgmap, nullptr);
    EXPECT_EQ(f->inode->dax_pgmap->type, PgmapType::Fsdax);
    // The medium holds the data without any fsync.
    EXPECT_EQ(read_disk(*f, data.size(), 0), data);
    Folio* folio = nullptr;
    ASSERT_EQ(filemap_get_or_read(*f->inode, 1, &folio), 0u);
    EXPECT_TRUE(folio->is_zone_device());
    EXPECT_EQ(folio->mapping(), &f->inode->mapping);
    EXPECT_EQ(folio->index(), 1u);
    EXPECT_EQ(folio->ref_count(), 2);  // the file's and ours
    k->mem->folio_put(folio);
    EXPECT_TRUE(file_fsync(*f).ok());
    // A file larger than one pgmap (512 pages) still gets blocks.
    auto big = pattern(600 * PAGE_SIZE, 17);
    EXPECT_EQ(write_all(*f, big, 0), big.size());
    EXPECT_EQ(read_all(*f, big.size(), 0), big);
    f->put();
    EXPECT_EQ(k->mem->nr_allocated_pages(), base);
    EXPECT_EQ(k->mem->zone_stats(ZoneId::Device).present_pages, dev0.present_pages);
}

// ---------------------------------------------------------------------------
// Faults at the vm_operations level (no page tables involved)
// ---------------------------------------------------------------------------

struct FaultEnv {
    std::unique_ptr<Kernel> k = make_kernel();
    std::unique_ptr<MmStruct> mm = std::make_unique<MmStruct>(*k);
    Vma vma;
    File* f = nullptr;

    void map(FsKind fs, uint64_t size, vm_flags_t flags) {
        f = create(*k, fs, size);
        vma.mm = mm.get();
        vma.start = 0x10000000;
        vma.end = vma.start + page_align_up(size);
        vma.flags = flags;
        vma.file = f;
        ASSERT_TRUE(f->fops->mmap(*f, vma).ok());
    }
    vm_fault_t fault(pgoff_t pgoff, unsigned flags, Page** page) {
        VmFault vmf;
        vmf.vma = &vma;
        vmf.address = vma.addr_of(pgoff);
        vmf.real_address = vmf.address;
        vmf.flags = flags;
        vmf.pgoff = pgoff;
        vm_fault_t r = vma.ops->fault(vmf);
        *page = vmf.page;
        return r;
    }
    ~FaultEnv() {
        if (f) f->put();
    }
};

constexpr vm_flags_t kSharedRW = VM_READ | VM_WRITE | VM_SHARED | VM_MAYREAD | VM_MAYWRITE | VM_MAYSHARE | VM_SOFTDIRTY;

TEST(FilemapFault, MajorFaultDropsMmapLockAndRetries) {
    FaultEnv e;
    e.map(FsKind::Ext4, 4 * PAGE_SIZE, kSharedRW);
    ASSERT_STREQ(e.vma.ops->name(), "ext4_file_vm_ops");
    int64_t maj0 = e.k->vmstat.get(Vmstat::pgmajfault);
    mmap_read_lock(*e.mm);
    Page* page = nullptr;
    vm_fault_t r = e.fault(2, FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE, &page);
    EXPECT_EQ(r, VM_FAULT_RETRY | VM_FAULT_MAJOR);
    EXPECT_EQ(page, nullptr);
    EXPECT_EQ(e.mm->mmap_lock.readers(), 0u);  // dropped for the I/O
    EXPECT_EQ(e.k->vmstat.get(Vmstat::pgmajfault), maj0 + 1);
    EXPECT_NE(cached(*e.f->inode, 2), nullptr);  // read into the cache
    EXPECT_EQ(e.f->refs(), 1);                    // the file pin was dropped
    // The retry finds it cached: a minor fault, lock kept, +1 reference.
    mmap_read_lock(*e.mm);
    r = e.fault(2, FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_TRIED, &page);
    EXPECT_EQ(r, 0u);
    ASSERT_NE(page, nullptr);
    EXPECT_EQ(e.mm->mmap_lock.readers(), 1u);
    Folio* folio = page_folio(page);
    EXPECT_EQ(folio, cached(*e.f->inode, 2));
    EXPECT_EQ(folio->ref_count(), 2);
    e.k->mem->folio_put(folio);
    mmap_read_unlock(*e.mm);
}

TEST(FilemapFault, RetryNowaitKeepsLock) {
    FaultEnv e;
    e.map(FsKind::Xfs, 2 * PAGE_SIZE, kSharedRW);
    mmap_read_lock(*e.mm);
    Page* page = nullptr;
    vm_fault_t r = e.fault(0, FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_RETRY_NOWAIT, &page);
    EXPECT_TRUE(r & VM_FAULT_RETRY);
    EXPECT_EQ(e.mm->mmap_lock.readers(), 1u);
    EXPECT_NE(cached(*e.f->inode, 0), nullptr);  // the read was started (and, here, finished)
    r = e.fault(0, FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_RETRY_NOWAIT, &page);
    EXPECT_EQ(r, 0u);
    ASSERT_NE(page, nullptr);
    e.k->mem->folio_put(page_folio(page));
    mmap_read_unlock(*e.mm);
}

TEST(FilemapFault, SynchronousWithoutAllowRetry) {
    FaultEnv e;
    e.map(FsKind::Btrfs, 2 * PAGE_SIZE, kSharedRW);
    mmap_read_lock(*e.mm);
    Page* page = nullptr;
    vm_fault_t r = e.fault(1, 0, &page);
    EXPECT_FALSE(r & (VM_FAULT_RETRY | VM_FAULT_ERROR));
    ASSERT_NE(page, nullptr);
    EXPECT_EQ(e.mm->mmap_lock.readers(), 1u);
    e.k->mem->folio_put(page_folio(page));
    // Beyond EOF.
    EXPECT_EQ(e.fault(2, FAULT_FLAG_ALLOW_RETRY, &page), VM_FAULT_SIGBUS);
    EXPECT_EQ(e.mm->mmap_lock.readers(), 1u);
    mmap_read_unlock(*e.mm);
}

TEST(FilemapFault, PageMkwriteDirtiesAndChecksTruncation) {
    FaultEnv e;
    e.map(FsKind::Ext4, 2 * PAGE_SIZE, kSharedRW);
    ASSERT_TRUE(e.vma.ops->has_page_mkwrite());
    mmap_read_lock(*e.mm);
    Page* page = nullptr;
    EXPECT_EQ(e.fault(1, 0, &page), VM_FAULT_MAJOR);  // read synchronously
    ASSERT_NE(page, nullptr);
    Folio* folio = page_folio(page);
    EXPECT_FALSE(folio->is_dirty());
    VmFault vmf;
    vmf.vma = &e.vma;
    vmf.pgoff = 1;
    vmf.flags = FAULT_FLAG_WRITE | FAULT_FLAG_MKWRITE;
    vmf.page = page;
    EXPECT_EQ(e.vma.ops->page_mkwrite(vmf), 0u);
    EXPECT_TRUE(folio->is_dirty());
    EXPECT_FALSE(folio->is_locked());
    mmap_read_unlock(*e.mm);
    ASSERT_TRUE(file_truncate(*e.f, PAGE_SIZE).ok());
    mmap_read_lock(*e.mm);
    EXPECT_EQ(e.vma.ops->page_mkwrite(vmf), VM_FAULT_NOPAGE);
    mmap_read_unlock(*e.mm);
    e.k->mem->folio_put(folio);
}

TEST(FilemapFault, ShmemFaultAllocatesMovableZeroedPage) {
    FaultEnv e;
    e.map(FsKind::Memfd, 3 * PAGE_SIZE, kSharedRW);
    ASSERT_EQ(e.vma.ops, &shmem_vm_ops());
    EXPECT_FALSE(e.vma.ops->has_page_mkwrite());
    mmap_read_lock(*e.mm);
    Page* page = nullptr;
    ASSERT_EQ(e.fault(2, FAULT_FLAG_ALLOW_RETRY, &page), 0u);
    EXPECT_EQ(e.mm->mmap_lock.readers(), 1u);  // shmem never drops the lock
    Folio* folio = page_folio(page);
    EXPECT_TRUE(folio->test(PG_swapbacked));
    EXPECT_EQ(folio->ref_count(), 2);
    EXPECT_EQ(e.fault(3, 0, &page), VM_FAULT_SIGBUS);
    mmap_read_unlock(*e.mm);
    e.k->mem->folio_put(folio);
}

TEST(FilemapFault, SecretmemMmapRules) {
    FaultEnv e;
    e.f = create(*e.k, FsKind::Secretmem, PAGE_SIZE);
    e.vma.mm = e.mm.get();
    e.vma.start = 0x10000000;
    e.vma.end = e.vma.start + PAGE_SIZE;
    e.vma.file = e.f;
    e.vma.flags = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE;  // private
    Status s = e.f->fops->mmap(*e.f, e.vma);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error(), Error(EINVAL));
    e.vma.flags = kSharedRW;
    ASSERT_TRUE(e.f->fops->mmap(*e.f, e.vma).ok());
    EXPECT_TRUE(e.vma.flags & VM_LOCKED);
    EXPECT_TRUE(e.vma.flags & VM_DONTDUMP);
    EXPECT_TRUE(e.vma.is_secretmem());
    mmap_read_lock(*e.mm);
    Page* page = nullptr;
    ASSERT_EQ(e.fault(0, 0, &page), 0u);
    EXPECT_TRUE(page_folio(page)->test(PG_secretmem));
    e.k->mem->folio_put(page_folio(page));
    mmap_read_unlock(*e.mm);
}

TEST(FilemapFault, DaxFaultReturnsDevicePage) {
    FaultEnv e;
    e.map(FsKind::Fsdax, 2 * PAGE_SIZE, kSharedRW);
    EXPECT_TRUE(e.vma.is_dax());
    mmap_read_lock(*e.mm);
    Page* page = nullptr;
    ASSERT_EQ(e.fault(1, FAULT_FLAG_ALLOW_RETRY, &page), 0u);
    EXPECT_EQ(e.mm->mmap_lock.readers(), 1u);
    Folio* folio = page_folio(page);
    EXPECT_TRUE(folio->is_zone_device());
    EXPECT_EQ(folio->mapping(), &e.f->inode->mapping);
    EXPECT_EQ(folio->index(), 1u);
    EXPECT_EQ(folio->ref_count(), 2);
    mmap_read_unlock(*e.mm);
    e.k->mem->folio_put(folio);
}

// ---------------------------------------------------------------------------
// VMA predicates
// ---------------------------------------------------------------------------

TEST(VmaFile, WritenotifyAndPageProt) {
    FaultEnv e;
    e.map(FsKind::Ext4, PAGE_SIZE, kSharedRW);
    EXPECT_TRUE(e.vma.wants_writenotify());
    EXPECT_TRUE(e.vma.needs_dirty_tracking());
    EXPECT_FALSE(e.vma.page_prot() & pte::WRITE);
    EXPECT_FALSE(e.vma.is_shmem());

    FaultEnv s;
    s.map(FsKind::Tmpfs, PAGE_SIZE, kSharedRW);
    EXPECT_TRUE(s.vma.is_shmem());
    EXPECT_FALSE(s.vma.wants_writenotify());
    EXPECT_FALSE(s.vma.needs_dirty_tracking());
    EXPECT_TRUE(s.vma.page_prot() & pte::WRITE);
    // Soft-dirty tracking armed (clear_refs cleared VM_SOFTDIRTY).
    s.vma.flags &= ~VM_SOFTDIRTY;
    EXPECT_TRUE(s.vma.wants_writenotify());
    EXPECT_FALSE(s.vma.needs_dirty_tracking());
    EXPECT_FALSE(s.vma.page_prot() & pte::WRITE);
    // Private writable: read-only PTEs (COW), no dirty tracking.
    s.vma.flags = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_SOFTDIRTY;
    EXPECT_FALSE(s.vma.wants_writenotify());
    EXPECT_FALSE(s.vma.page_prot() & pte::WRITE);
    // PROT_NONE.
    s.vma.flags = VM_MAYREAD | VM_SOFTDIRTY;
    EXPECT_TRUE(s.vma.page_prot() & pte::PROTNONE);
    EXPECT_EQ(s.vma.huge_page_size(), PAGE_SIZE);
}

TEST(VmaFile, ShmemZeroSetup) {
    auto k = make_kernel();
    uint64_t base = k->mem->nr_allocated_pages();
    auto mm = std::make_unique<MmStruct>(*k);
    Vma vma;
    vma.mm = mm.get();
    vma.start = 0x20000000;
    vma.end = vma.start + 5 * PAGE_SIZE;
    vma.flags = kSharedRW;
    ASSERT_TRUE(shmem_zero_setup(vma).ok());
    ASSERT_NE(vma.file, nullptr);
    EXPECT_EQ(vma.file->inode->fs, FsKind::Tmpfs);
    EXPECT_EQ(vma.file->inode->size.load(), 5 * PAGE_SIZE);
    EXPECT_EQ(vma.ops, &shmem_vm_ops());
    EXPECT_TRUE(vma.is_shmem());
    {
        sync::ReadGuard g(vma.file->inode->mapping.i_mmap_rwsem);
        ASSERT_EQ(vma.file->inode->mapping.i_mmap.size(), 1u);
        EXPECT_EQ(vma.file->inode->mapping.i_mmap[0], &vma);
    }
    VmFault vmf;
    vmf.vma = &vma;
    vmf.pgoff = 4;
    mmap_read_lock(*mm);
    ASSERT_EQ(vma.ops->fault(vmf), 0u);
    mmap_read_unlock(*mm);
    k->mem->folio_put(page_folio(vmf.page));
    vma.file->inode->mapping.unlink_vma(&vma);
    vma.file->put();
    EXPECT_EQ(k->mem->nr_allocated_pages(), base);
    EXPECT_TRUE(k->inodes().empty());
}


// Readers, writers, truncation, hole punching and fsync at once: no crash,
// no leak, and the dirty count returns to where it started.
TEST(FilemapConcurrent, Operations) {
    auto k = make_kernel();
    for (FsKind fs : {FsKind::Ext4, FsKind::Tmpfs, FsKind::Fsdax}) {
        SCOPED_TRACE(fs_traits(fs).name);
        uint64_t base = k->mem->nr_allocated_pages();
        int64_t dirty0 = k->vmstat.get(Vmstat::nr_dirty);
        File* f = create(*k, fs, 0);
        std::vector<std::thread> threads;
        for (int id = 0; id < 4; ++id) {
            threads.emplace_back([&, id] {
                std::vector<uint8_t> buf(3 * PAGE_SIZE, static_cast<uint8_t>(id + 1));
                for (int i = 0; i < 150; ++i) {
                    uint64_t off = static_cast<uint64_t>((i * 7 + id * 13) % 16) * 1000;
                    switch ((i + id) % 5) {
                    case 0: (void)file_pwrite(*f, buf.data(), buf.size(), off); break;
                    case 1: (void)file_pread(*f, buf.data(), buf.size(), off); break;
                    case 2: (void)file_truncate(*f, off); break;
                    case 3: (void)file_fallocate(*f, PUNCH_HOLE | KEEP_SIZE, off, 5000); break;
                    case 4: (void)file_fsync(*f); break;
                    }
                }
            });
        }
        for (auto& t : threads) t.join();
        // The cache never holds a folio beyond EOF, nor extra references.
        {
            sync::SpinGuard g(f->inode->mapping.i_pages_lock);
            for (auto& [index, folio] : f->inode->mapping.i_pages) {
                EXPECT_LT(index, (f->inode->size.load() + PAGE_SIZE - 1) / PAGE_SIZE);
                EXPECT_EQ(folio->ref_count(), 1);
            }
        }
        f->put();
        EXPECT_EQ(k->mem->nr_allocated_pages(), base);
        EXPECT_EQ(k->vmstat.get(Vmstat::nr_dirty), dirty0);
    }
}

// ---------------------------------------------------------------------------
// Through real mappings (mmap, the fault handler, rmap)
// ---------------------------------------------------------------------------

pte::entry_t leaf_at(MmStruct& mm, vaddr_t addr) {
    sync::SpinGuard g(mm.page_table_lock);
    auto leaf = mm.pgtable.find_leaf(addr);
    return leaf.slot ? leaf.entry : 0;
}

TEST(FilemapMapped, SharedWritesFsyncAndTruncate) {
    auto k = make_kernel();
    auto t = k->task_new();
    ASSERT_TRUE(t.ok());
    MmStruct& mm = *(*t)->mm;
    File* f = create(*k, FsKind::Ext4, 2 * PAGE_SIZE);
    Inode& inode = *f->inode;
    auto addr = do_mmap(mm, 0, 2 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
    ASSERT_TRUE(addr.ok());
    int64_t dirty0 = k->vmstat.get(Vmstat::nr_dirty);
    int64_t maj0 = k->vmstat.get(Vmstat::pgmajfault);
    ASSERT_TRUE(memset_user(mm, *addr, 0xab, PAGE_SIZE).ok());
    EXPECT_GE(k->vmstat.get(Vmstat::pgmajfault), maj0 + 1);
    Folio* folio = cached(inode, 0);
    ASSERT_NE(folio, nullptr);
    EXPECT_TRUE(folio->is_dirty());
    EXPECT_EQ(folio->ref_count(), 2);  // cache + one PTE
    EXPECT_EQ(folio->mapcount(), 1);
    EXPECT_EQ(k->vmstat.get(Vmstat::nr_dirty), dirty0 + 1);
    EXPECT_TRUE(pte::write(leaf_at(mm, *addr)));
    // fsync: written back, cleaned, write-protected.
    ASSERT_TRUE(file_fsync(*f).ok());
    EXPECT_EQ(read_disk(*f, PAGE_SIZE, 0), std::vector<uint8_t>(PAGE_SIZE, 0xab));
    EXPECT_FALSE(folio->is_dirty());
    EXPECT_FALSE(pte::write(leaf_at(mm, *addr)));
    EXPECT_EQ(k->vmstat.get(Vmstat::nr_dirty), dirty0);
    // The next store faults (page_mkwrite) and dirties the folio again.
    ASSERT_TRUE(memset_user(mm, *addr, 0xcd, 16).ok());
    EXPECT_TRUE(folio->is_dirty());
    EXPECT_TRUE(pte::write(leaf_at(mm, *addr)));
    EXPECT_EQ(read_disk(*f, 1, 0)[0], 0xab);
    EXPECT_EQ(read_all(*f, 1, 0)[0], 0xcd);
    // Truncation unmaps and drops the pages; an access is then SIGBUS.
    ASSERT_TRUE(file_truncate(*f, 0).ok());
    EXPECT_EQ(leaf_at(mm, *addr), 0u);
    EXPECT_EQ(inode.mapping.nrpages.load(), 0u);
    uint8_t b;
    EXPECT_FALSE(access_user(mm, *addr, &b, 1, Access::Read).ok());
    f->put();  // the VMA keeps the file until the task exits
}

TEST(FilemapMapped, PrivateCowSurvivesPunchButNotTruncate) {
    auto k = make_kernel();
    auto t = k->task_new();
    MmStruct& mm = *(*t)->mm;
    File* f = create(*k, FsKind::Tmpfs, 0);
    write_all(*f, pattern(2 * PAGE_SIZE, 1), 0);
    auto addr = do_mmap(mm, 0, 2 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE, f, 0);
    ASSERT_TRUE(addr.ok());
    // Page 0: a private COW copy; page 1: the file's page, read-only.
    ASSERT_TRUE(memset_user(mm, *addr, 0x11, 8).ok());
    uint8_t b = 0;
    ASSERT_TRUE(access_user(mm, *addr + PAGE_SIZE, &b, 1, Access::Read).ok());
    ASSERT_TRUE(file_fallocate(*f, PUNCH_HOLE | KEEP_SIZE, 0, 2 * PAGE_SIZE).ok());
    EXPECT_NE(leaf_at(mm, *addr), 0u);              // the COW copy stays
    EXPECT_EQ(leaf_at(mm, *addr + PAGE_SIZE), 0u);  // the file page went
    ASSERT_TRUE(access_user(mm, *addr, &b, 1, Access::Read).ok());
    EXPECT_EQ(b, 0x11);
    ASSERT_TRUE(file_truncate(*f, 0).ok());
    EXPECT_EQ(leaf_at(mm, *addr), 0u);  // even_cows
    f->put();
}

TEST(FilemapMapped, SharedAnonymousIsShmem) {
    auto k = make_kernel();
    auto t = k->task_new();
    MmStruct& mm = *(*t)->mm;
    auto addr = do_mmap(mm, 0, 3 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, nullptr, 0);
    ASSERT_TRUE(addr.ok());
    ASSERT_TRUE(memset_user(mm, *addr + 2 * PAGE_SIZE, 0x77, PAGE_SIZE).ok());
    {
        sync::ReadGuard g(mm.mmap_lock);
        Vma* v = mm.vma_lookup(*addr);
        ASSERT_NE(v, nullptr);
        EXPECT_TRUE(v->is_shmem());
        ASSERT_NE(v->file, nullptr);
        Folio* folio = cached(*v->file->inode, 2);
        ASSERT_NE(folio, nullptr);
        EXPECT_TRUE(folio->test(PG_swapbacked));
        EXPECT_TRUE(pte::write(leaf_at(mm, *addr + 2 * PAGE_SIZE)));
    }
}

// Stores through a shared mapping race with truncation, hole punching and
// fsync: no crash, and no page is leaked once the task is gone.
TEST(FilemapConcurrent, FaultsAndTruncation) {
    for (FsKind fs : {FsKind::Ext4, FsKind::Memfd, FsKind::Fsdax}) {
        SCOPED_TRACE(fs_traits(fs).name);
        auto k = make_kernel();
        uint64_t base = k->mem->nr_allocated_pages();
        {
            auto t = k->task_new();
            MmStruct& mm = *(*t)->mm;
            File* f = create(*k, fs, 8 * PAGE_SIZE);
            auto addr = do_mmap(mm, 0, 8 * PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
            ASSERT_TRUE(addr.ok());
            std::vector<std::thread> threads;
            for (int id = 0; id < 2; ++id) {
                threads.emplace_back([&, id] {
                    for (int i = 0; i < 300; ++i) {
                        vaddr_t a = *addr + static_cast<uint64_t>((i * 5 + id) % 8) * PAGE_SIZE;
                        (void)memset_user(mm, a, id + 1, 64);  // SIGBUS beyond EOF is fine
                    }
                });
            }
            threads.emplace_back([&] {
                for (int i = 0; i < 100; ++i) {
                    switch (i % 4) {
                    case 0: (void)file_truncate(*f, static_cast<uint64_t>(i % 8) * PAGE_SIZE + 100); break;
                    case 1: (void)file_truncate(*f, 8 * PAGE_SIZE); break;
                    case 2: (void)file_fallocate(*f, PUNCH_HOLE | KEEP_SIZE, PAGE_SIZE, 3 * PAGE_SIZE); break;
                    case 3: (void)file_fsync(*f); break;
                    }
                }
            });
            for (auto& th : threads) th.join();
            f->put();
        }
        // Every task exits with the kernel's teardown below; do it here by hand.
        for (Task* t : k->tasks()) {
            exit_task_mm(t);
            k->task_free(t);
        }
        EXPECT_TRUE(k->inodes().empty());
        EXPECT_EQ(k->mem->nr_allocated_pages(), base);
    }
}

}  // namespace
}  // namespace pl
