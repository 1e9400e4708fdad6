// RDMA memory registration (src/drivers/ib_umem.cpp): ib_umem_get()'s
// pinned_vm accounting against RLIMIT_MEMLOCK, its long-term pins (GUP's
// rules for FOLL_LONGTERM decide what may be registered), RDMA WRITE and
// READ through the pinned pages, and ib_umem_release()'s dirtying unpin.
#include "test_kernel.h"

namespace pl::test {
namespace {

constexpr int kRw = PL_IB_ACCESS_LOCAL_WRITE | PL_IB_ACCESS_REMOTE_WRITE | PL_IB_ACCESS_REMOTE_READ;

class IbUmem : public KernelTest {
protected:
    unsigned long stat(const char* n) { return pl_vmstat(k, n); }
    pl_ib_umem* get(task_struct* task, unsigned long a, unsigned long len, int access, int* err = nullptr) {
        return pl_ib_umem_get(task, a, len, access, err);
    }
};

// Registration charges mm->pinned_vm with every page the range touches,
// pins each once, and release gives both back; the device's RDMA WRITE is
// what the process then reads.
TEST_F(IbUmem, RegisterWriteReadRelease) {
    unsigned long a = map(8 * kPage);
    ASSERT_EQ(pl_memset(t, a, 'u', 8 * kPage), static_cast<long>(8 * kPage));
    const unsigned long acq = stat("nr_foll_pin_acquired"), rel = stat("nr_foll_pin_released");
    int err = 1;
    // 100 bytes into the first page to 100 bytes into the last: 8 pages.
    pl_ib_umem* u = get(t, a + 100, 7 * kPage, kRw, &err);
    ASSERT_NE(u, nullptr) << pl_last_error();
    EXPECT_EQ(err, 0);
    EXPECT_EQ(pl_task_pinned_vm(t), 8UL) << "ib_umem_num_pages()";
    EXPECT_EQ(stat("nr_foll_pin_acquired") - acq, 8UL);
    EXPECT_EQ(pl_pin_balance(k, "ib_umem"), 8);
    EXPECT_GE(pl_ib_umem_nents(u), 1UL);
    EXPECT_LE(pl_ib_umem_nents(u), 8UL);
    EXPECT_EQ(pl_ib_umem_dma_write(u, 0, "rdma", 4), 4);
    EXPECT_EQ(get_str(t, a + 100, 4), "rdma");
    char out[5] = {};
    ASSERT_EQ(pl_memset(t, a + 100 + kPage, 'Z', 4), 4);
    EXPECT_EQ(pl_ib_umem_dma_read(u, kPage, out, 4), 4);
    EXPECT_STREQ(out, "ZZZZ");
    EXPECT_EQ(pl_ib_umem_dma_write(u, 7 * kPage - 2, "xyz", 3), -EINVAL) << "past the region";
    pl_ib_umem_release(u);
    EXPECT_EQ(pl_task_pinned_vm(t), 0UL);
    EXPECT_EQ(stat("nr_foll_pin_released") - rel, 8UL);
    EXPECT_EQ(pl_pin_balance(k, "ib_umem"), 0);
    EXPECT_EQ(pl_ib_umem_nents(u), 0UL) << "stale handle";
    EXPECT_EQ(pl_ib_umem_dma_write(u, 0, "x", 1), -EINVAL);
    pl_ib_umem_release(u);  // refused, no crash
}

// RLIMIT_MEMLOCK: pinned_vm may not pass it without CAP_IPC_LOCK (-ENOMEM,
// nothing charged or pinned); with the capability it is charged anyway; a
// zero limit without the capability is -EPERM (can_do_mlock()).
TEST_F(IbUmem, PinnedVmAgainstMemlock) {
    unsigned long a = map(8 * kPage);
    ASSERT_EQ(pl_task_set_rlimit_memlock(t, 4 * kPage), 0);
    int err = 0;
    EXPECT_EQ(get(t, a, 8 * kPage, kRw, &err), nullptr);
    EXPECT_EQ(err, -ENOMEM);
    EXPECT_EQ(pl_task_pinned_vm(t), 0UL);
    EXPECT_EQ(pl_pin_balance(k, "ib_umem"), 0);
    pl_ib_umem* small = get(t, a, 4 * kPage, kRw, &err);
    ASSERT_NE(small, nullptr) << "exactly at the limit";
    EXPECT_EQ(get(t, a + 4 * kPage, kPage, kRw, &err), nullptr);
    EXPECT_EQ(err, -ENOMEM) << "the limit covers all regions of the mm";
    ASSERT_EQ(pl_task_set_cap_ipc_lock(t, 1), 0);
    pl_ib_umem* big = get(t, a, 8 * kPage, kRw, &err);
    ASSERT_NE(big, nullptr);
    EXPECT_EQ(pl_task_pinned_vm(t), 12UL) << "charged even with CAP_IPC_LOCK";
    pl_ib_umem_release(big);
    pl_ib_umem_release(small);
    EXPECT_EQ(pl_task_pinned_vm(t), 0UL);
    ASSERT_EQ(pl_task_set_cap_ipc_lock(t, 0), 0);
    ASSERT_EQ(pl_task_set_rlimit_memlock(t, 0), 0);
    EXPECT_EQ(get(t, a, kPage, kRw, &err), nullptr);
    EXPECT_EQ(err, -EPERM);
}

// Argument checks of ib_umem_get(), before anything is charged.
TEST_F(IbUmem, ArgumentErrors) {
    unsigned long a = map(kPage);
    struct Row {
        const char* why;
        unsigned long addr, size;
        int access;
        int want;
    } rows[] = {
        {"size 0", a, 0, kRw, -EINVAL},
        {"wrapping range", ~0UL - kPage, 2 * kPage, kRw, -EINVAL},
        {"IB_ACCESS_ON_DEMAND (ODP) does not pin", a, kPage, kRw | PL_IB_ACCESS_ON_DEMAND, -EOPNOTSUPP},
        {"unmapped", a + 16 * kPage, kPage, kRw, -EFAULT},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(r.why);
        int err = 0;
        EXPECT_EQ(get(t, r.addr, r.size, r.access, &err), nullptr);
        EXPECT_EQ(err, r.want);
        EXPECT_EQ(pl_task_pinned_vm(t), 0UL);
    }
    int err = 0;
    EXPECT_EQ(pl_ib_umem_get(nullptr, a, kPage, kRw, &err), nullptr);
    EXPECT_EQ(err, -EINVAL);
    EXPECT_EQ(pl_pin_balance(k, "ib_umem"), 0);
}

// A region registered without write access is pinned without FOLL_WRITE,
// is not dirtied at release, and the device may not write it.
TEST_F(IbUmem, ReadOnlyRegion) {
    pl_file* f = file("ext4", kPage);
    ASSERT_EQ(pl_pwrite(f, "file", 4, 0), 4);
    ASSERT_EQ(pl_fsync(f), 0);
    unsigned long m = map(t, kPage, PROT_READ, MAP_SHARED, f);
    pl_ib_umem* u = get(t, m, kPage, PL_IB_ACCESS_REMOTE_READ);
    ASSERT_NE(u, nullptr) << pl_last_error();
    char out[5] = {};
    EXPECT_EQ(pl_ib_umem_dma_read(u, 0, out, 4), 4);
    EXPECT_STREQ(out, "file");
    EXPECT_EQ(pl_ib_umem_dma_write(u, 0, "x", 1), -EFAULT);
    pl_ib_umem_release(u);
    EXPECT_FALSE(PageDirty(pg(t, m))) << "released clean";
}

// Long-term pins follow GUP's rules: a writable region of a dirty-tracked
// shared file mapping is refused (check_vma_flags(): -EFAULT), any fsdax
// region too (-EOPNOTSUPP), shmem is fine,
// and movable-zone anonymous pages are migrated out before being pinned
// (check_and_migrate_movable_pages()), the process seeing the same data.
TEST_F(IbUmem, LongtermRules) {
    reboot("ram=512M movable=128M hugetlb_2m=0 hugetlb_1g=0");
    pl_file* ext4 = file("ext4", kPage);
    unsigned long e = map(t, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, ext4);
    int err = 0;
    EXPECT_EQ(get(t, e, kPage, kRw, &err), nullptr);
    EXPECT_EQ(err, -EFAULT);
    EXPECT_EQ(pl_task_pinned_vm(t), 0UL) << "unwound";
    // check_vma_flags(): no long-term pins of fsdax mappings at all.
    pl_file* dax = file("fsdax", 2UL << 20);
    unsigned long d = map(t, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, dax);
    EXPECT_EQ(get(t, d, kPage, PL_IB_ACCESS_REMOTE_READ, &err), nullptr);
    EXPECT_EQ(err, -EOPNOTSUPP);
    EXPECT_EQ(pl_task_pinned_vm(t), 0UL);
    pl_file* memfd = file("memfd", kPage);
    unsigned long s = map(t, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, memfd);
    pl_ib_umem* us = get(t, s, kPage, kRw, &err);
    EXPECT_NE(us, nullptr) << err;
    unsigned long a = map(kPage);
    put_str(t, a, "moved");
    page* before = pg(t, a);
    ASSERT_EQ(page_folio(reinterpret_cast<Page*>(before))->zone(), ZoneId::Movable) << "precondition";
    pl_ib_umem* ua = get(t, a, kPage, kRw, &err);
    ASSERT_NE(ua, nullptr) << err;
    page* after = pg(t, a);
    EXPECT_NE(after, before);
    EXPECT_NE(page_folio(reinterpret_cast<Page*>(after))->zone(), ZoneId::Movable);
    EXPECT_EQ(get_str(t, a), "moved");
    EXPECT_EQ(pl_ib_umem_dma_write(ua, 0, "DMA", 4), 4);
    EXPECT_EQ(get_str(t, a), "DMA") << "the device and the process share the pinned page";
    pl_ib_umem_release(ua);
    if (us) pl_ib_umem_release(us);
    EXPECT_EQ(pl_pin_balance(k, "ib_umem"), 0);
}

// fork() after registration: the pinned anonymous page stays with the
// parent, so RDMA WRITEs reach the parent only (cow.c's rule).
TEST_F(IbUmem, ForkKeepsRegisteredPagesWithParent) {
    unsigned long a = map(2 * kPage);
    put_str(t, a, "before");
    pl_ib_umem* u = get(t, a, 2 * kPage, kRw);
    ASSERT_NE(u, nullptr);
    task_struct* child = pl_fork(t);
    ASSERT_NE(child, nullptr);
    EXPECT_EQ(pl_ib_umem_dma_write(u, 0, "after", 6), 6);
    EXPECT_EQ(get_str(t, a), "after");
    EXPECT_EQ(get_str(child, a), "before");
    pl_ib_umem_release(u);
}

// The owner exits with the region registered: exit_files() closes the
// uverbs fd, whose cleanup releases the MR (unpinned, dirtied, uncharged),
// so nothing leaks; the handle is still freed afterwards, and the device
// can no longer reach the memory.
TEST_F(IbUmem, OwnerExitReleasesTheRegion) {
    task_struct* t2 = pl_task_new(k);
    unsigned long a = map(t2, 2 * kPage);
    pl_ib_umem* u = get(t2, a, 2 * kPage, kRw);
    ASSERT_NE(u, nullptr);
    EXPECT_EQ(pl_pin_balance(k, "ib_umem"), 2);
    pl_exit(t2);
    EXPECT_EQ(pl_pin_balance(k, "ib_umem"), 0);
    EXPECT_EQ(pl_warning_count(k, "leak"), 0) << pl_dmesg(k);
    EXPECT_EQ(pl_ib_umem_dma_write(u, 0, "late", 4), -EFAULT);
    pl_ib_umem_release(u);
    EXPECT_EQ(pl_pin_balance(k, "ib_umem"), 0);
}

}  // namespace
}  // namespace pl::test
