// Faults, COW and fork, white-box (upstream mm/memory.c behaviour).
#include "test_kernel.h"

#include "mm/mmap.h"

namespace pl::test {
namespace {

using namespace pte;

class Fault : public KernelTest {};

TEST_F(Fault, AnonReadMapsTheZeroPageReadOnlyAndSpecial) {
    unsigned long a = map(kPage);
    EXPECT_EQ(get_str(t, a), "");
    entry_t e = entry(t, a);
    ASSERT_TRUE(present(e));
    EXPECT_FALSE(write(e));
    EXPECT_TRUE(special(e));  // arch.pte_special=on: vm_normal_page() says "no page"
    page* p = pg(t, a);
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(is_zero_page(p));
}

TEST_F(Fault, ZeroPageIsNotSpecialWithoutPteSpecial) {
    reboot("ram=256M hugetlb_2m=0 arch.pte_special=off");
    unsigned long a = map(kPage);
    EXPECT_EQ(get_str(t, a), "");
    EXPECT_FALSE(special(entry(t, a)));
    EXPECT_TRUE(is_zero_page(pg(t, a)));  // recognised by its pfn instead
}

TEST_F(Fault, AnonWriteGivesAnExclusiveWritablePage) {
    unsigned long a = map(kPage);
    put_str(t, a, "hello");
    entry_t e = entry(t, a);
    EXPECT_TRUE(write(e) && dirty(e) && soft_dirty(e));
    page* p = pg(t, a);
    EXPECT_TRUE(PageAnon(p));
    EXPECT_TRUE(PageAnonExclusive(p));
    EXPECT_EQ(page_ref_count(p), 1);
    EXPECT_EQ(page_mapcount(p), 1);
    EXPECT_EQ(get_str(t, a), "hello");
}

//  parent:  [ A ]  PAE, rw          fork          parent: [ A ] r/o  ─┐ refcount 2
//                                    ───►          child:  [ A ] r/o  ─┘ mapcount 2
TEST_F(Fault, ForkSharesAnonPagesReadOnlyAndWritesCopy) {
    unsigned long a = map(kPage);
    put_str(t, a, "parent");
    task_struct* c = pl_fork(t);
    ASSERT_NE(c, nullptr);
    page* p = pg(t, a);
    ASSERT_EQ(p, pg(c, a));
    EXPECT_FALSE(PageAnonExclusive(p));
    EXPECT_EQ(page_ref_count(p), 2);
    EXPECT_EQ(page_mapcount(p), 2);
    EXPECT_FALSE(write(entry(t, a)));
    EXPECT_FALSE(write(entry(c, a)));

    put_str(c, a, "child");  // the child copies
    EXPECT_NE(pg(c, a), p);
    EXPECT_TRUE(PageAnonExclusive(pg(c, a)));
    EXPECT_EQ(page_ref_count(p), 1);
    EXPECT_EQ(get_str(t, a), "parent");
    EXPECT_EQ(get_str(c, a), "child");

    // The parent is the sole user now: its write reuses the page in place.
    put_str(t, a, "parent again");
    EXPECT_EQ(pg(t, a), p);
    EXPECT_TRUE(PageAnonExclusive(p));
    EXPECT_EQ(pl_vmstat(k, "cow_copies"), 1u);
}

TEST_F(Fault, ForkCopiesPossiblyPinnedExclusivePagesForTheChild) {
    unsigned long a = map(kPage);
    put_str(t, a, "pinned");
    Folio* f = folio_at(t, a);
    // A FOLL_PIN as pin_user_pages() takes it on a small folio (issue 3 does this for real).
    mm().set_flag(MMF_HAS_PINNED);
    f->ref_add(GUP_PIN_COUNTING_BIAS);
    kern().ref_note(f, GUP_PIN_COUNTING_BIAS);

    task_struct* c = pl_fork(t);
    ASSERT_NE(c, nullptr);
    EXPECT_NE(pg(c, a), pg(t, a)) << "a possibly pinned page must not be shared with the child";
    EXPECT_TRUE(PageAnonExclusive(pg(t, a)));
    EXPECT_TRUE(write(entry(t, a))) << "the parent keeps writing to the pinned page without a fault";
    EXPECT_TRUE(PageAnonExclusive(pg(c, a)));
    EXPECT_EQ(get_str(c, a), "pinned");
    EXPECT_EQ(pl_vmstat(k, "fork_pinned_copies"), 1u);
    // The parent's write goes to the pinned page: the "device" sees it.
    put_str(t, a, "after");
    char buf[8] = {};
    ASSERT_EQ(pl_page_read(pg(t, a), 0, buf, 6), 0);
    EXPECT_STREQ(buf, "after");

    kern().ref_note(f, -GUP_PIN_COUNTING_BIAS);
    f->ref_sub_and_test(GUP_PIN_COUNTING_BIAS);
}

TEST_F(Fault, WithoutHasPinnedTheRefcountHeuristicIsNotConsulted) {
    unsigned long a = map(kPage);
    put_str(t, a, "x");
    Folio* f = folio_at(t, a);
    f->ref_add(GUP_PIN_COUNTING_BIAS);  // looks pinned, but the mm never pinned
    kern().ref_note(f, GUP_PIN_COUNTING_BIAS);
    task_struct* c = pl_fork(t);
    EXPECT_EQ(pg(c, a), pg(t, a));
    kern().ref_note(f, -GUP_PIN_COUNTING_BIAS);
    f->ref_sub_and_test(GUP_PIN_COUNTING_BIAS);
}

TEST_F(Fault, UnshareMakesTheMappingExclusiveButKeepsItReadOnly) {
    unsigned long a = map(kPage);
    put_str(t, a, "shared");
    task_struct* c = pl_fork(t);
    page* shared = pg(t, a);
    {
        sync::ReadGuard g(mm().mmap_lock);
        Vma* v = mm().vma_lookup(a);
        EXPECT_EQ(handle_mm_fault(*v, a, FAULT_FLAG_UNSHARE), 0u);
    }
    EXPECT_NE(pg(t, a), shared);
    EXPECT_TRUE(PageAnonExclusive(pg(t, a)));
    EXPECT_FALSE(write(entry(t, a))) << "FAULT_FLAG_UNSHARE never maps writable";
    EXPECT_EQ(get_str(t, a), "shared");
    EXPECT_EQ(get_str(c, a), "shared");
}

TEST_F(Fault, PrivateFileMappingReadsThePageCacheAndCopiesOnWrite) {
    pl_file* f = file("ext4", 4 * kPage);
    ASSERT_EQ(pl_pwrite(f, "file", 5, 0), 5);
    unsigned long a = map(t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE, f);
    EXPECT_EQ(get_str(t, a), "file");
    page* cache = pg(t, a);
    EXPECT_FALSE(PageAnon(cache));
    ASSERT_EQ(pl_pwrite(f, "FILE", 5, 0), 5);
    EXPECT_EQ(get_str(t, a), "FILE") << "until COW a private mapping sees the file";
    put_str(t, a, "mine");
    EXPECT_TRUE(PageAnon(pg(t, a)));
    ASSERT_EQ(pl_pwrite(f, "new!", 5, 0), 5);
    EXPECT_EQ(get_str(t, a), "mine");
    char buf[8] = {};
    ASSERT_EQ(pl_pread(f, buf, 5, 0), 5);
    EXPECT_STREQ(buf, "new!");
}

TEST_F(Fault, SharedExt4MappingIsWriteNotifiedAndCleanedByWriteback) {
    pl_file* f = file("ext4", 2 * kPage);
    unsigned long a = map(t, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    EXPECT_EQ(get_str(t, a), "");
    EXPECT_FALSE(write(entry(t, a))) << "page_mkwrite file systems start read-only";
    put_str(t, a, "dirty");
    EXPECT_TRUE(write(entry(t, a)));
    EXPECT_TRUE(PageDirty(pg(t, a)));
    ASSERT_EQ(pl_fsync(f), 0);
    EXPECT_FALSE(PageDirty(pg(t, a)));
    EXPECT_FALSE(write(entry(t, a))) << "writeback write-protects (folio_mkclean)";
    char buf[8] = {};
    ASSERT_EQ(pl_file_read_disk(f, buf, 6, 0), 6);
    EXPECT_STREQ(buf, "dirty");
    put_str(t, a, "again");
    EXPECT_TRUE(PageDirty(pg(t, a)));
}

TEST_F(Fault, SharedShmemMappingIsWritableAtOnce) {
    pl_file* f = file("memfd", 2 * kPage);
    unsigned long a = map(t, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    EXPECT_EQ(get_str(t, a), "");
    EXPECT_TRUE(write(entry(t, a))) << "shmem has no page_mkwrite: no write notification";
}

TEST_F(Fault, SoftDirtyClearingWriteProtectsAndTheNextWriteReusesThePage) {
    unsigned long a = map(kPage);
    put_str(t, a, "x");
    page* p = pg(t, a);
    ASSERT_EQ(pl_clear_refs(t, 4), 0);
    EXPECT_FALSE(write(entry(t, a)));
    EXPECT_FALSE(soft_dirty(entry(t, a)));
    put_str(t, a, "y");
    EXPECT_EQ(pg(t, a), p) << "an exclusive page is reused, never copied";
    EXPECT_TRUE(soft_dirty(entry(t, a)));
}

TEST_F(Fault, MprotectUpgradesExclusivePagesWithoutAFault) {
    unsigned long a = map(kPage);
    put_str(t, a, "x");
    ASSERT_EQ(pl_mprotect(t, a, kPage, PROT_READ), 0);
    EXPECT_FALSE(write(entry(t, a)));
    EXPECT_EQ(pl_write(t, a, "z", 1), -EFAULT);
    ASSERT_EQ(pl_mprotect(t, a, kPage, PROT_READ | PROT_WRITE), 0);
    EXPECT_TRUE(write(entry(t, a))) << "can_change_pte_writable(): PageAnonExclusive";
    ASSERT_EQ(pl_mprotect(t, a, kPage, PROT_NONE), 0);
    EXPECT_TRUE(entry(t, a) & PROTNONE);
    EXPECT_EQ(get_str(t, a), "<EFAULT>");
    ASSERT_EQ(pl_mprotect(t, a, kPage, PROT_READ), 0);
    EXPECT_EQ(get_str(t, a), "x");
}

TEST_F(Fault, AccessErrors) {
    char c = 0;
    EXPECT_EQ(pl_read(t, 0x1000, &c, 1), -EFAULT);
    unsigned long a = map(kPage, PROT_READ);
    EXPECT_EQ(pl_write(t, a, "x", 1), -EFAULT);
    EXPECT_EQ(pl_read(t, a, &c, 1), 1);
    // A write spanning into an unmapped page fails.
    unsigned long b = map(kPage);
    std::vector<char> big(2 * kPage, 'q');
    EXPECT_EQ(pl_write(t, b, big.data(), big.size()), -EFAULT);
}

TEST_F(Fault, FileFaultDropsTheMmapLockForIoAndRetries) {
    pl_file* g = file("ext4", 8 * kPage);
    ASSERT_EQ(pl_pwrite(g, "cold", 5, 0), 5);
    unsigned long b = map(t, 8 * kPage, PROT_READ, MAP_SHARED, g);
    uint64_t before = pl_vmstat(k, "pgmajfault");
    {
        // Page 1 is in no cache: with ALLOW_RETRY the handler drops the
        // mmap_lock to "read" it and returns VM_FAULT_RETRY.
        MmStruct& m = mm();
        m.mmap_lock.down_read();
        Vma* v = m.vma_lookup(b + kPage);
        vm_fault_t r = handle_mm_fault(*v, b + kPage, FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE);
        EXPECT_TRUE(r & VM_FAULT_RETRY) << "a page-cache miss with ALLOW_RETRY retries";
        if (r & VM_FAULT_RETRY) EXPECT_FALSE(m.mmap_lock.is_locked()) << "VM_FAULT_RETRY means the lock was dropped";
        else m.mmap_lock.up_read();
        // With TRIED the second attempt completes under the lock.
        m.mmap_lock.down_read();
        v = m.vma_lookup(b + 2 * kPage);
        r = handle_mm_fault(*v, b + 2 * kPage, FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_TRIED);
        EXPECT_EQ(r & (VM_FAULT_RETRY | VM_FAULT_ERROR), 0u);
        EXPECT_TRUE(m.mmap_lock.is_locked());
        m.mmap_lock.up_read();
    }
    EXPECT_GT(pl_vmstat(k, "pgmajfault"), before);
    EXPECT_EQ(get_str(t, b), "cold");
    EXPECT_EQ(get_str(t, b + kPage), "");
}

TEST_F(Fault, HwpoisonedPageGivesSigbus) {
    unsigned long a = map(kPage);
    put_str(t, a, "x");
    ASSERT_EQ(pl_memory_failure(k, page_to_pfn(pg(t, a))), 0);
    EXPECT_EQ(get_str(t, a), "<EFAULT>");
    ++baseline;  // a poisoned frame never returns to the allocator

}

}  // namespace
}  // namespace pl::test

namespace pl::test {
namespace {

class OutOfMemory : public KernelTest {
protected:
    void SetUp() override { boot("ram=64M hugetlb_2m=0 thp=never"); }
};

TEST_F(OutOfMemory, CpuWriteGetsEnomemAndMemoryComesBack) {
    unsigned long len = 128UL << 20;  // twice the RAM
    unsigned long a = map(len);
    long r = 0;
    unsigned long touched = 0;
    for (; touched < len; touched += kPage) {
        r = pl_write(t, a + touched, "x", 1);
        if (r < 0) break;
    }
    EXPECT_EQ(r, -ENOMEM) << "running out of simulated RAM is an error, not a crash";
    EXPECT_GT(touched, 8UL << 20);
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
    ASSERT_EQ(pl_munmap(t, a, len), 0);
    // Everything is free again: the same writes now succeed.
    unsigned long b = map(8UL << 20);
    for (unsigned long off = 0; off < (8UL << 20); off += kPage) ASSERT_EQ(pl_write(t, b + off, "y", 1), 1);
}

TEST_F(OutOfMemory, ForkThatMustCopyPinnedPagesFailsCleanly) {
    unsigned long a = map(kPage);
    put_str(t, a, "pinned");
    Folio* f = folio_at(t, a);
    mm().set_flag(MMF_HAS_PINNED);
    f->ref_add(GUP_PIN_COUNTING_BIAS);
    kern().ref_note(f, GUP_PIN_COUNTING_BIAS);
    // Eat the rest of memory.
    unsigned long len = 128UL << 20;
    unsigned long b = map(len);
    for (unsigned long off = 0; off < len; off += kPage)
        if (pl_write(t, b + off, "x", 1) < 0) break;
    task_struct* c = pl_fork(t);
    EXPECT_EQ(c, nullptr) << "the pinned page could not be copied for the child";
    EXPECT_NE(std::string(pl_last_error()).find("ENOMEM"), std::string::npos) << pl_last_error();
    EXPECT_EQ(get_str(t, a), "pinned");
    EXPECT_EQ(kern().tasks().size(), 1u) << "the half-built child is gone";
    EXPECT_EQ(pl_kernel_check(k), 0) << pl_last_error();
    kern().ref_note(f, -GUP_PIN_COUNTING_BIAS);
    f->ref_sub_and_test(GUP_PIN_COUNTING_BIAS);
}

}  // namespace
}  // namespace pl::test
