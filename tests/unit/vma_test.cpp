// VMA layout: mmap, munmap, mprotect, madvise and mremap as they split and
// move VMAs, in the manner of tools/testing/vma (diagrams show pages).
#include "test_kernel.h"

#include "mm/mmap.h"

namespace pl::test {
namespace {

using namespace pte;

class VmaLayout : public KernelTest {
protected:
    // "[start,end) flags" per VMA, for messages.
    std::vector<std::pair<unsigned long, unsigned long>> layout() {
        std::vector<std::pair<unsigned long, unsigned long>> out;
        mm().for_each_vma([&](Vma& v) { out.emplace_back(v.start, v.end); });
        return out;
    }
    Vma* vma(unsigned long a) { return mm().vma_lookup(a); }
};

//  mmap 4 pages:        [ 0 1 2 3 ]
//  munmap page 1:       [ 0 ] . [ 2 3 ]
TEST_F(VmaLayout, MunmapInTheMiddleSplits) {
    unsigned long a = map(4 * kPage);
    for (int i = 0; i < 4; ++i) put_str(t, a + i * kPage, "p" + std::to_string(i));
    ASSERT_EQ(pl_munmap(t, a + kPage, kPage), 0);
    auto l = layout();
    ASSERT_EQ(l.size(), 2u);
    EXPECT_EQ(l[0], std::make_pair(a, a + kPage));
    EXPECT_EQ(l[1], std::make_pair(a + 2 * kPage, a + 4 * kPage));
    EXPECT_EQ(vma(a + 2 * kPage)->pgoff, (a >> PAGE_SHIFT) + 2) << "the upper part keeps its linear index";
    EXPECT_EQ(get_str(t, a), "p0");
    EXPECT_EQ(get_str(t, a + 3 * kPage), "p3");
    EXPECT_EQ(get_str(t, a + kPage), "<EFAULT>");
}

//  mprotect(page 1..2, R):  [ 0 rw ][ 1 2 r ][ 3 rw ]
TEST_F(VmaLayout, MprotectSplitsIntoThree) {
    unsigned long a = map(4 * kPage);
    ASSERT_EQ(pl_mprotect(t, a + kPage, 2 * kPage, PROT_READ), 0);
    auto l = layout();
    ASSERT_EQ(l.size(), 3u);
    EXPECT_EQ(vma(a + kPage)->flags & (VM_READ | VM_WRITE), VM_READ);
    EXPECT_EQ(vma(a)->flags & (VM_READ | VM_WRITE), VM_READ | VM_WRITE);
}

TEST_F(VmaLayout, MprotectOverAHoleChangesWhatPrecedesIt) {
    unsigned long a = map(4 * kPage);
    ASSERT_EQ(pl_munmap(t, a + 2 * kPage, kPage), 0);
    EXPECT_EQ(pl_mprotect(t, a, 4 * kPage, PROT_READ), -ENOMEM);
    EXPECT_EQ(vma(a)->flags & VM_WRITE, 0u);
    EXPECT_NE(vma(a + 3 * kPage)->flags & VM_WRITE, 0u);
    EXPECT_EQ(pl_mprotect(t, a + 2 * kPage, kPage, PROT_READ), -ENOMEM);
}

TEST_F(VmaLayout, MmapArgumentErrors) {
    EXPECT_EQ(pl_mmap(t, 0, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, nullptr, 0), -EINVAL);
    EXPECT_EQ(pl_mmap(t, 0, kPage, PROT_READ, MAP_ANONYMOUS, nullptr, 0), -EINVAL) << "neither shared nor private";
    EXPECT_EQ(pl_mmap(t, 0x10001, kPage, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, nullptr, 0), -EINVAL);
    EXPECT_EQ(pl_mmap(t, 0, kPage, PROT_READ, MAP_PRIVATE, nullptr, 0), -EBADF) << "file mapping without a file";
    pl_file* f = file("ext4", kPage);
    EXPECT_EQ(pl_mmap(t, 0, kPage, PROT_READ, MAP_PRIVATE, f, 123), -EINVAL) << "unaligned offset";
    EXPECT_EQ(pl_mmap(t, 0, kPage, PROT_READ, MAP_PRIVATE | MAP_HUGETLB, f, 0), -EINVAL);
    EXPECT_EQ(pl_mmap(t, 0, ~0UL - 100, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, nullptr, 0), -ENOMEM);
    EXPECT_EQ(pl_munmap(t, 0x10001, kPage), -EINVAL);
    EXPECT_EQ(pl_munmap(t, 0x10000, 0), -EINVAL);
}

TEST_F(VmaLayout, FixedReplacesAndNoReplaceRefuses) {
    unsigned long a = map(4 * kPage);
    put_str(t, a + kPage, "old");
    long b = pl_mmap(t, a + kPage, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, nullptr, 0);
    ASSERT_EQ(b, static_cast<long>(a + kPage));
    EXPECT_EQ(get_str(t, a + kPage), "") << "MAP_FIXED replaced the old page";
    EXPECT_EQ(layout().size(), 3u);
    EXPECT_EQ(pl_mmap(t, a, kPage, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | 0x100000 /* MAP_FIXED_NOREPLACE */,
                      nullptr, 0),
              -EEXIST);
}

TEST_F(VmaLayout, MadviseDontneedZapsPrivateCopies) {
    unsigned long a = map(2 * kPage);
    put_str(t, a, "gone");
    ASSERT_EQ(pl_madvise(t, a, 2 * kPage, MADV_DONTNEED), 0);
    EXPECT_EQ(entry(t, a), 0u);
    EXPECT_EQ(get_str(t, a), "");
    pl_file* f = file("tmpfs", 2 * kPage);
    unsigned long s = map(t, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    put_str(t, s, "kept");
    ASSERT_EQ(pl_madvise(t, s, kPage, MADV_DONTNEED), 0);
    EXPECT_EQ(get_str(t, s), "kept") << "shared data lives in the page cache";
}

TEST_F(VmaLayout, MadviseErrors) {
    unsigned long a = map(2 * kPage);
    EXPECT_EQ(pl_madvise(t, a + 1, kPage, MADV_DONTNEED), -EINVAL);
    EXPECT_EQ(pl_madvise(t, a, kPage, 12345), -EINVAL);
    EXPECT_EQ(pl_madvise(t, a, 4 * kPage, MADV_DONTNEED), -ENOMEM) << "a hole after the VMA";
    pl_file* f = file("tmpfs", kPage);
    unsigned long s = map(t, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
    EXPECT_EQ(pl_madvise(t, s, kPage, MADV_WIPEONFORK), -EINVAL);
    pl_file* d = pl_dev_open(k, "pfnmap");
    ASSERT_NE(d, nullptr);
    files.push_back(d);
    unsigned long p = map(t, kPage, PROT_READ | PROT_WRITE, MAP_SHARED, d);
    EXPECT_EQ(pl_madvise(t, p, kPage, MADV_POPULATE_READ), -EINVAL);
    EXPECT_EQ(pl_madvise(t, p, kPage, MADV_DONTNEED), -EINVAL);
    EXPECT_EQ(pl_madvise(t, p, kPage, MADV_DOFORK), -EINVAL);
    unsigned long r = map(kPage, PROT_READ);
    EXPECT_EQ(pl_madvise(t, r, kPage, MADV_POPULATE_WRITE), -EINVAL);
    EXPECT_EQ(pl_madvise(t, r, kPage, MADV_POPULATE_READ), 0);
}

TEST_F(VmaLayout, DontforkAndWipeonfork) {
    unsigned long a = map(kPage), b = map(kPage);
    put_str(t, a, "not inherited");
    put_str(t, b, "wiped");
    ASSERT_EQ(pl_madvise(t, a, kPage, MADV_DONTFORK), 0);
    ASSERT_EQ(pl_madvise(t, b, kPage, MADV_WIPEONFORK), 0);
    task_struct* c = pl_fork(t);
    EXPECT_EQ(get_str(c, a), "<EFAULT>");
    EXPECT_EQ(get_str(c, b), "");
    EXPECT_EQ(get_str(t, b), "wiped");
}

TEST_F(VmaLayout, MremapMovesPagesWithTheirData) {
    unsigned long a = map(4 * kPage);
    for (int i = 0; i < 4; ++i) put_str(t, a + i * kPage, "m" + std::to_string(i));
    page* p2 = pg(t, a + 2 * kPage);
    // Block growth in place so the mapping has to move.
    map(t, kPage, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, nullptr, 0, a + 4 * kPage);
    long b = pl_mremap(t, a, 4 * kPage, 8 * kPage, 1 /* MREMAP_MAYMOVE */, 0);
    ASSERT_GT(b, 0) << pl_last_error();
    ASSERT_NE(static_cast<unsigned long>(b), a);
    for (int i = 0; i < 4; ++i) EXPECT_EQ(get_str(t, b + i * kPage), "m" + std::to_string(i));
    EXPECT_EQ(pg(t, b + 2 * kPage), p2) << "moved, not copied";
    EXPECT_EQ(get_str(t, a), "<EFAULT>");
    EXPECT_EQ(get_str(t, b + 6 * kPage), "");
    EXPECT_EQ(pl_mremap(t, b, 4 * kPage, 2 * kPage, 0, 0), b) << "shrinking stays in place";
    EXPECT_EQ(pl_mremap(t, 0x20000, kPage, kPage, 0, 0), -EFAULT);
    EXPECT_EQ(pl_mremap(t, b, kPage, kPage, 2 /* FIXED without MAYMOVE */, 0), -EINVAL);
}

TEST_F(VmaLayout, PartialMremapOfAThp) {
    unsigned long a = map(2UL << 20);
    put_str(t, a, "low");
    put_str(t, a + (1UL << 20), "high");
    Folio* f = folio_at(t, a);
    ASSERT_EQ(f->order(), PMD_ORDER);
    long b = pl_mremap(t, a + (1UL << 20), 1UL << 20, 1UL << 20, 1, 0);
    ASSERT_GT(b, 0) << pl_last_error();
    EXPECT_EQ(folio_at(t, b), f) << "half the THP now lives elsewhere";
    EXPECT_EQ(get_str(t, b), "high");
    EXPECT_EQ(get_str(t, a), "low");
    task_struct* c = pl_fork(t);
    put_str(c, b, "child");
    EXPECT_EQ(get_str(t, b), "high");
}

TEST_F(VmaLayout, UnmappedAreaIsTopDownAndAvoidsUsedSpace) {
    unsigned long a = map(kPage), b = map(kPage);
    EXPECT_LT(b, a);
    unsigned long h = map(4UL << 20);
    EXPECT_EQ(h % (2UL << 20), 0u);
}

}  // namespace
}  // namespace pl::test
