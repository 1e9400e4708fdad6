// Model bugs found by comparing scenarios with the host kernel (Linux 6.18,
// examples/conform): each test pins down what the real kernel did.
#include "test_kernel.h"

#include <sys/uio.h>

#include <string>

namespace pl::test {
namespace {

class ConformRegressions : public KernelTest {};

// io_account_mem() charges a registered buffer to user->locked_vm AND to
// ctx->mm_account->pinned_vm (VmPin in /proc/PID/status), and
// io_unaccount_mem() returns both at unregistration. Host: VmPin grows by
// 4 kB per registered small page (examples/conform/01_doors_over_backings.pin).
TEST_F(ConformRegressions, IoUringRegisterChargesPinnedVm) {
    unsigned long buf = map(3 * kPage);
    ASSERT_EQ(pl_memset(t, buf, 'a', 3 * kPage), static_cast<long>(3 * kPage));
    pl_io_uring* ring = pl_io_uring_setup(t, 4);
    ASSERT_NE(ring, nullptr) << pl_last_error();
    // The ring's own pages (io_create_region(): rings and SQEs, a page each).
    const unsigned long ring_pages = pl_task_locked_vm(t, 1);
    EXPECT_EQ(ring_pages, 2UL);
    iovec iov{reinterpret_cast<void*>(buf), 3 * kPage};
    ASSERT_EQ(pl_io_uring_register_buffers(ring, &iov, 1), 0) << pl_last_error();
    EXPECT_EQ(pl_task_pinned_vm(t), 3UL) << "mm->pinned_vm";
    EXPECT_EQ(pl_task_locked_vm(t, 1), ring_pages + 3) << "user->locked_vm";
    EXPECT_EQ(pl_task_locked_vm(t, 0), 0UL) << "mm->locked_vm is vfio's, not io_uring's";
    ASSERT_EQ(pl_io_uring_unregister_buffers(ring), 0);
    EXPECT_EQ(pl_task_pinned_vm(t), 0UL);
    EXPECT_EQ(pl_task_locked_vm(t, 1), ring_pages);
    // A refused registration (RLIMIT_MEMLOCK) charges neither counter.
    ASSERT_EQ(pl_task_set_rlimit_memlock(t, kPage), 0);
    EXPECT_EQ(pl_io_uring_register_buffers(ring, &iov, 1), -ENOMEM);
    EXPECT_EQ(pl_task_pinned_vm(t), 0UL);
    pl_io_uring_exit(ring);
}

// tmpfs/memfd accept O_DIRECT since v6.6 (shmem_file_open() sets
// FMODE_CAN_ODIRECT) and serve it buffered: no pins, no alignment rule,
// short at EOF and at a fault. Each row is what the host returned for a
// 4 KiB tmpfs file holding "TTTT...".
TEST_F(ConformRegressions, ShmemODirectIsBufferedSinceV6_6) {
    for (const char* fs : {"tmpfs", "memfd"}) {
        SCOPED_TRACE(fs);
        pl_file* f = file(fs, kPage);
        const std::string content(kPage, 'T');
        ASSERT_EQ(pl_pwrite(f, content.data(), kPage, 0), static_cast<long>(kPage));
        unsigned long buf = map(2 * kPage);
        unsigned long ro = map(kPage, PROT_READ);
        unsigned long hole = map(2 * kPage);  // last, so that no later mmap fills the hole
        ASSERT_EQ(pl_munmap(t, hole + kPage, kPage), 0);
        const unsigned long acq = pl_vmstat(k, "nr_foll_pin_acquired");
        struct Row {
            const char* why;
            bool read;
            unsigned long addr, len, off;
            long want;
        };
        const Row rows[] = {
            {"unaligned buffer and length (shmem_file_read_iter: buffered)", true, buf + 1, 100, 0, 100},
            {"unaligned file offset", true, buf, kPage, 3, static_cast<long>(kPage - 3)},
            {"read at EOF", true, buf, kPage, 2 * kPage, 0},
            {"read 8K of a 4K file: short at EOF", true, buf, 2 * kPage, 0, static_cast<long>(kPage)},
            {"read into a read-only mapping: copy_to_user() faults", true, ro, kPage, 0, -EFAULT},
            {"write from a read-only mapping", false, ro, kPage, 0, static_cast<long>(kPage)},
            {"read into a buffer ending in a hole: short", true, hole, 2 * kPage, 0, static_cast<long>(kPage)},
            {"write from a buffer ending in a hole: short", false, hole, 2 * kPage, 0, static_cast<long>(kPage)},
        };
        for (const Row& r : rows) {
            SCOPED_TRACE(r.why);
            EXPECT_EQ(r.read ? pl_direct_read(t, f, r.addr, r.len, r.off, nullptr)
                             : pl_direct_write(t, f, r.addr, r.len, r.off, nullptr),
                      r.want);
        }
        EXPECT_EQ(get_str(t, buf, 4), "TTTT") << "the file's bytes reached memory";
        EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), acq) << "buffered: nothing pinned";
    }
    // Era v6.5 (before "tmpfs: trivial support for direct IO"): open(O_DIRECT) is -EINVAL.
    reboot("era=v6.5 ram=64M hugetlb_2m=0 hugetlb_1g=0");
    pl_file* f = file("tmpfs", kPage);
    unsigned long buf = map(kPage);
    EXPECT_EQ(pl_direct_read(t, f, buf, kPage, 0, nullptr), -EINVAL);
}

// iomap_dio_bio_iter() submits what it could pin before the next extraction
// fails: the I/O returns -EFAULT but the first page's data has moved. Host
// (ext4): an 8K read into a buffer whose second page is unmapped returns
// -EFAULT with the file's bytes in the first page; an 8K write returns
// -EFAULT with the first 4K on disk and i_size unchanged; one pin taken and
// released either way.
TEST_F(ConformRegressions, DirectIoShortPinMovesTheFirstPart) {
    pl_file* f = file("ext4", 0);
    const std::string c(2 * kPage, 'C');
    ASSERT_EQ(pl_pwrite(f, c.data(), kPage, 0), static_cast<long>(kPage));
    ASSERT_EQ(pl_fsync(f), 0);
    unsigned long buf = map(2 * kPage);
    ASSERT_EQ(pl_memset(t, buf, 'A', 2 * kPage), static_cast<long>(2 * kPage));
    ASSERT_EQ(pl_munmap(t, buf + kPage, kPage), 0);
    const unsigned long acq = pl_vmstat(k, "nr_foll_pin_acquired"), rel = pl_vmstat(k, "nr_foll_pin_released");
    EXPECT_EQ(pl_direct_read(t, f, buf, 2 * kPage, 0, nullptr), -EFAULT);
    EXPECT_EQ(get_str(t, buf, 4), "CCCC") << "the first bio's data landed";
    EXPECT_EQ(pl_memset(t, buf, 'A', kPage), static_cast<long>(kPage));
    EXPECT_EQ(pl_direct_write(t, f, buf, 2 * kPage, 0, nullptr), -EFAULT);
    std::string disk(4, '\0');
    ASSERT_EQ(pl_file_read_disk(f, disk.data(), 4, 0), 4);
    EXPECT_EQ(disk, "AAAA") << "the first bio reached the disk";
    EXPECT_EQ(pl_file_size(f), kPage) << "a failed write does not extend the file";
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired") - acq, 2UL);
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_released") - rel, 2UL);
    EXPECT_EQ(pl_pin_balance(k, "direct_io"), 0);
}

// btrfs_direct_write() falls back to a buffered write for inodes with data
// checksums (all of them by default): no pins, no alignment rule. Reads
// still pin. Host (btrfs on loop, Linux 6.18): a 4K O_DIRECT write takes no
// pin, a 4K O_DIRECT read one.
TEST_F(ConformRegressions, BtrfsODirectWriteIsBuffered) {
    pl_file* f = file("btrfs", kPage);
    unsigned long buf = map(kPage);
    ASSERT_EQ(pl_memset(t, buf, 'b', kPage), static_cast<long>(kPage));
    const unsigned long acq = pl_vmstat(k, "nr_foll_pin_acquired");
    EXPECT_EQ(pl_direct_write(t, f, buf, kPage, 0, nullptr), static_cast<long>(kPage));
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), acq) << "buffered: no pin";
    EXPECT_EQ(pl_direct_write(t, f, buf + 1, 100, 3, nullptr), 100L) << "buffered: no alignment rule";
    std::string disk(4, '\0');
    ASSERT_EQ(pl_file_read_disk(f, disk.data(), 4, 0), 4);
    EXPECT_EQ(disk, "bbbb") << "flushed before returning";
    ASSERT_EQ(pl_memset(t, buf, 0, kPage), static_cast<long>(kPage));
    EXPECT_EQ(pl_direct_read(t, f, buf, kPage, 0, nullptr), static_cast<long>(kPage));
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired") - acq, 1UL) << "reads still pin";
    EXPECT_EQ(get_str(t, buf, 4), "bbbb");
    // ext4 still pins its writes.
    pl_file* e = file("ext4", kPage);
    EXPECT_EQ(pl_direct_write(t, e, buf, kPage, 0, nullptr), static_cast<long>(kPage));
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired") - acq, 2UL);
}

// iomap_dio_hole_iter(): the bytes of a hole are zeroed in the user buffer by
// a copy, without GUP; only pages that data blocks land in are pinned. Host
// (ext4, Linux 6.18): an 8K O_DIRECT read of a sparse 8K file takes no pin;
// with the first block written, one.
TEST_F(ConformRegressions, DirectIoReadOfHoleZeroesWithoutPins) {
    pl_file* f = file("ext4", 2 * kPage);
    unsigned long buf = map(2 * kPage);
    ASSERT_EQ(pl_memset(t, buf, 'A', 2 * kPage), static_cast<long>(2 * kPage));
    unsigned long acq = pl_vmstat(k, "nr_foll_pin_acquired");
    EXPECT_EQ(pl_direct_read(t, f, buf, 2 * kPage, 0, nullptr), static_cast<long>(2 * kPage));
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), acq) << "all holes: no pin";
    EXPECT_EQ(get_str(t, buf, 4), "") << "zeroed";
    ASSERT_EQ(pl_pwrite(f, "CCCC", 4, 0), 4);
    ASSERT_EQ(pl_memset(t, buf, 'A', 2 * kPage), static_cast<long>(2 * kPage));
    acq = pl_vmstat(k, "nr_foll_pin_acquired");
    EXPECT_EQ(pl_direct_read(t, f, buf, 2 * kPage, 0, nullptr), static_cast<long>(2 * kPage));
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired") - acq, 1UL) << "the written block's page only";
    EXPECT_EQ(get_str(t, buf, 4), "CCCC");
    EXPECT_EQ(get_str(t, buf + kPage, 4), "") << "the hole's page zeroed";
    // A hole zeroed into a read-only buffer faults: -EFAULT, nothing pinned.
    pl_file* g = file("ext4", kPage);
    unsigned long ro = map(kPage, PROT_READ);
    acq = pl_vmstat(k, "nr_foll_pin_acquired");
    EXPECT_EQ(pl_direct_read(t, g, ro, kPage, 0, nullptr), -EFAULT);
    EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), acq);
    EXPECT_EQ(pl_pin_balance(k, "direct_io"), 0);
}

}  // namespace
}  // namespace pl::test
