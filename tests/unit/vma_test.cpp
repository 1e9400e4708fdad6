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
    // __mmap_region() -> vma_merge_new_range(): the new anonymous page joins
    // both halves the unmap left (same flags, linear pgoff, one anon_vma).
    EXPECT_EQ(layout().size(), 1u);
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

// New private anonymous ranges and their neighbours: __mmap_region() ->
// vma_merge_new_range() (mm/vma.c). Each row maps `first` top-down, then
// `second` (which lands right below it), and counts the VMAs. A merge needs
// is_mergeable_vma() (same flags but VM_SOFTDIRTY, no file),
// is_mergeable_anon_vma() (the new range has no anon_vma: the neighbour's
// must not come from fork) and a linear vm_pgoff.
//
//   first            second               result
//   [ 4K rw ]        [ 4K rw ]       ->   [ 8K rw ]          one VMA
//   [ 4K rw ]        [ 4K r  ]       ->   [ r ][ rw ]        flags differ
//   [ 4K rw shared ] [ 4K rw ]       ->   [ rw ][ shared ]   a file (shmem)
TEST_F(VmaLayout, NewAnonymousMmapMergesWithItsNeighbour) {
    struct Row {
        const char* why;
        int first_prot, first_flags, second_prot;
        bool write_first;  // the first VMA gets an anon_vma (case 2 of is_mergeable_anon_vma())
        size_t want_vmas;
    };
    const int rw = PROT_READ | PROT_WRITE, priv = MAP_PRIVATE | MAP_ANONYMOUS;
    const Row rows[] = {
        {"both without an anon_vma: one VMA", rw, priv, rw, false, 1},
        {"the neighbour's anon_vma is its own (singular chain): one VMA", rw, priv, rw, true, 1},
        {"is_mergeable_vma(): flags differ", rw, priv, PROT_READ, false, 2},
        {"is_mergeable_vma(): the neighbour has a file (shared anon is shmem)", rw, MAP_SHARED | MAP_ANONYMOUS, rw,
         false, 2},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(r.why);
        reboot("ram=64M hugetlb_2m=0 hugetlb_1g=0");
        const unsigned long a = map(t, kPage, r.first_prot, r.first_flags);
        if (r.write_first) put_str(t, a, "first");
        const unsigned long b = map(kPage, r.second_prot);
        ASSERT_EQ(b + kPage, a) << "top-down: the second lands right below the first";
        EXPECT_EQ(layout().size(), r.want_vmas);
        if (r.want_vmas != 1) continue;
        Vma* v = vma(b);
        EXPECT_EQ(v->start, b);
        EXPECT_EQ(v->end, a + kPage);
        EXPECT_EQ(v->pgoff, b >> PAGE_SHIFT) << "the VMA grew down: vm_pgoff follows vm_start";
        EXPECT_NE(v->flags & VM_SOFTDIRTY, 0u) << "__mmap_complete() marks the result soft-dirty";
        if (r.write_first) {
            EXPECT_NE(v->anon_vma, nullptr);
            EXPECT_EQ(get_str(t, a), "first");
        }
        put_str(t, b, "second");
        EXPECT_EQ(get_str(t, b), "second");
    }
}

// The repro of examples/conform/regress_anon_mmap_merge_fork.pin: one half of
// the merged VMA maps the zero page, the other an anonymous page (and so the
// VMA's anon_vma); copy_page_range() copies every PTE of a VMA with an
// anon_vma (vma_needs_copy()), the zero-page one included. Separate VMAs would
// leave the zero page behind.
TEST_F(VmaLayout, ForkCopiesTheZeroPageOfAMergedVma) {
    const unsigned long m0 = map(kPage);
    const unsigned long m1 = map(kPage);
    EXPECT_EQ(get_str(t, m1), "");
    put_str(t, m0, "anon");
    ASSERT_EQ(vma(m0), vma(m1));
    task_struct* c = pl_fork(t);
    ASSERT_NE(c, nullptr);
    EXPECT_NE(entry(c, m1), 0u) << "the zero-page PTE was copied";
    EXPECT_TRUE(is_zero_page(pg(c, m1)));
    EXPECT_EQ(get_str(c, m0), "anon");
}

// vma_is_fork_child(): a VMA that got its anon_vma at fork (a non-singular
// anon_vma_chain upstream) takes no new range in; the parent's VMA does. The
// child's new mapping keeps no anon_vma, so a second fork leaves its zero
// page behind. A hole between VMAs with different anon_vmas joins only the
// lower one (can_vma_merge_right()).
TEST_F(VmaLayout, ForkChildVmaDoesNotTakeANewRangeIn) {
    const unsigned long a = map(kPage);
    put_str(t, a, "parent");
    task_struct* c = pl_fork(t);
    ASSERT_NE(c, nullptr);
    ASSERT_NE(mm(c).vma_lookup(a)->anon_vma, nullptr);
    const unsigned long cb = map(c, kPage);
    ASSERT_EQ(cb + kPage, a);
    EXPECT_NE(mm(c).vma_lookup(cb), mm(c).vma_lookup(a)) << "the child's new mapping stays its own VMA";
    EXPECT_EQ(mm(c).vma_lookup(cb)->anon_vma, nullptr);
    EXPECT_EQ(get_str(c, cb), "");
    task_struct* g = pl_fork(c);
    ASSERT_NE(g, nullptr);
    EXPECT_EQ(entry(g, cb), 0u) << "vma_needs_copy(): no anon_vma";
    const unsigned long pb = map(kPage);
    ASSERT_EQ(pb + kPage, a);
    EXPECT_EQ(vma(pb), vma(a)) << "the parent's anon_vma chain is singular: merged";

    //  [ y: anon_vma 2 ][ hole ][ x: anon_vma 1 ]  --MAP_FIXED hole-->  [ y + hole ][ x ]
    reboot("ram=64M hugetlb_2m=0 hugetlb_1g=0");
    const unsigned long x = map(kPage);
    put_str(t, x, "x");
    const unsigned long guard = map(kPage, PROT_READ);
    const unsigned long y = map(kPage);
    put_str(t, y, "y");
    ASSERT_EQ(y + kPage, guard);
    ASSERT_EQ(guard + kPage, x);
    ASSERT_NE(vma(x)->anon_vma, vma(y)->anon_vma);
    ASSERT_EQ(pl_munmap(t, guard, kPage), 0);
    ASSERT_EQ(pl_mmap(t, guard, kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, nullptr, 0),
              static_cast<long>(guard));
    EXPECT_EQ(layout().size(), 2u);
    EXPECT_EQ(vma(guard), vma(y));
    EXPECT_NE(vma(guard), vma(x));
    EXPECT_EQ(get_str(t, x), "x");
    EXPECT_EQ(get_str(t, y), "y");
}

TEST_F(VmaLayout, UnmappedAreaIsTopDownAndAvoidsUsedSpace) {
    unsigned long a = map(kPage), b = map(kPage);
    EXPECT_LT(b, a);
    unsigned long h = map(4UL << 20);
    EXPECT_EQ(h % (2UL << 20), 0u);
}

}  // namespace
}  // namespace pl::test
