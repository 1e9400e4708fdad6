// The kernel's own tools/testing/selftests/mm/gup_longterm.c, case by case, as
// model tests (spec §6, "tools/testing/selftests/mm/gup_longterm.c").
//
// Each gtest is one line of the selftest's output: "<case> ... with <backing>",
// its name that text with every run of other characters than letters and
// digits turned into '_'. The setup is the selftest's do_test(): a one-page
// file (one huge page for hugetlb), ftruncate() + fallocate(), mmap() R/W,
// memset() to fault it in, and for the R/O cases mprotect(PROT_READ); then
// the pin as mm/gup_test.c's PIN_LONGTERM_TEST_START does it (FOLL_LONGTERM
// [|FOLL_WRITE], pin_user_pages() under mmap_read_lock or
// pin_user_pages_fast(), looping until everything is pinned, unpinning all on
// an error) or as io_uring's fixed-buffer registration does it
// (io_pin_pages(), modelled in selftest_kernel_side.h until the io_uring
// driver exists).
//
// Expected, as upstream: should_work = !shared || !rw || fs is tmpfs/shmem or
// hugetlbfs (fs_supports_writable_longterm_pinning()); the failing cases fail
// with -EFAULT on the slow path, the fast path and io_uring alike
// (check_vma_flags(): vma_needs_dirty_tracking() for FOLL_WRITE|FOLL_LONGTERM
// pins of shared file mappings).
#include <memory>
#include <string>
#include <vector>

#include "fs/file.h"
#include "fs/inode.h"
#include "selftest_kernel_side.h"

namespace pl::test {
namespace {

using selftest::identifier;
using selftest::io_pin_pages;
using selftest::pin_longterm_test_start;
using selftest::Pins;

// ---- backings: run_with_memfd / _tmpfile / _local_tmpfile / _memfd_hugetlb ------------

// The statfs() magic the selftest switches on (fs_is_unknown() /
// fs_supports_writable_longterm_pinning()).
enum class FsMagic { Tmpfs, Hugetlbfs, Ext4, Xfs, Btrfs };

bool fs_supports_writable_longterm_pinning(FsMagic m) { return m == FsMagic::Tmpfs || m == FsMagic::Hugetlbfs; }

struct Backing {
    const char* with;  // the selftest's "... with <this>"
    const char* fs;    // pl_file_new()'s file system
    FsMagic magic;
    unsigned long size;  // pagesize, or the huge page size
};

constexpr unsigned long k2M = 2UL << 20;
constexpr unsigned long k1G = 1UL << 30;

// tmpfile() lands on $TMPDIR's file system and mkstemp() in the CWD on the
// selftest's: each is run on every file system the selftest knows.
const Backing kBackings[] = {
    {"memfd", "memfd", FsMagic::Tmpfs, kPage},
    {"tmpfile (tmpfs)", "tmpfs", FsMagic::Tmpfs, kPage},
    {"tmpfile (ext4)", "ext4", FsMagic::Ext4, kPage},
    {"tmpfile (xfs)", "xfs", FsMagic::Xfs, kPage},
    {"tmpfile (btrfs)", "btrfs", FsMagic::Btrfs, kPage},
    {"local tmpfile (ext4)", "ext4", FsMagic::Ext4, kPage},
    {"local tmpfile (xfs)", "xfs", FsMagic::Xfs, kPage},
    {"local tmpfile (btrfs)", "btrfs", FsMagic::Btrfs, kPage},
    {"memfd hugetlb (2048 kB)", "memfd-hugetlb", FsMagic::Hugetlbfs, k2M},
    {"memfd hugetlb (1048576 kB)", "memfd-hugetlb", FsMagic::Hugetlbfs, k1G},
};

// ---- the ten test_cases[] -------------------------------------------------------------

enum class Type { Ro, RoFast, Rw, RwFast, Iouring };

struct Case {
    const char* desc;
    Type type;
    bool shared;
};

const Case kCases[] = {
    {"R/W longterm GUP pin in MAP_SHARED file mapping", Type::Rw, true},
    {"R/W longterm GUP-fast pin in MAP_SHARED file mapping", Type::RwFast, true},
    {"R/O longterm GUP pin in MAP_SHARED file mapping", Type::Ro, true},
    {"R/O longterm GUP-fast pin in MAP_SHARED file mapping", Type::RoFast, true},
    {"R/W longterm GUP pin in MAP_PRIVATE file mapping", Type::Rw, false},
    {"R/W longterm GUP-fast pin in MAP_PRIVATE file mapping", Type::RwFast, false},
    {"R/O longterm GUP pin in MAP_PRIVATE file mapping", Type::Ro, false},
    {"R/O longterm GUP-fast pin in MAP_PRIVATE file mapping", Type::RoFast, false},
    {"io_uring fixed buffer with MAP_SHARED file mapping", Type::Iouring, true},
    {"io_uring fixed buffer with MAP_PRIVATE file mapping", Type::Iouring, false},
};

struct Param {
    const Case* c;
    const Backing* b;
    std::string message() const { return std::string(c->desc) + " ... with " + b->with; }
};

std::vector<Param> all_params() {
    std::vector<Param> v;
    for (const Case& c : kCases)
        for (const Backing& b : kBackings) v.push_back({&c, &b});
    return v;
}

class SelftestGupLongterm : public KernelTest, public ::testing::WithParamInterface<Param> {
protected:
    void SetUp() override {
        const Backing& b = *GetParam().b;
        // Enough huge pages of the size under test for the file's page and a
        // private mapping's COW copy; a 1 GiB pool needs a machine above 2 GiB.
        if (b.size == k1G) boot("ram=2304M hugetlb_2m=0 hugetlb_1g=2");
        else boot("ram=512M hugetlb_2m=4 hugetlb_1g=0");
        pl_set_current(t);
    }

    unsigned long stat(const char* name) { return pl_vmstat(k, name); }

    // memfd_create()/tmpfile()/mkstemp(): a new, empty file.
    pl_file* create_file(const Backing& b) {
        pl_file* f = file(b.fs, 0);
        if (f && b.size == k1G) {
            // memfd_create(MFD_HUGETLB | MFD_HUGE_1GB): the C API's
            // "memfd-hugetlb" is 2 MiB; pick the other hstate on the new inode.
            reinterpret_cast<File*>(f)->inode->huge_size = HugeSize::Size1G;
        }
        return f;
    }

    // What a successful long-term pin must hold (gup_test.c
    // verify_dma_pinned() and more): every page dma-pinned, exactly the page
    // the process maps there (the pin is coherent with the page tables), an
    // anonymous COW copy in private mappings (a R/W pin writes, a R/O one
    // unshares: gup_must_unshare()), the file's own page in shared ones.
    void check_pinned(unsigned long mem, const std::vector<page*>& pages, bool shared, bool hugetlb) {
        for (size_t i = 0; i < pages.size(); i++) {
            SCOPED_TRACE("page " + std::to_string(i));
            ASSERT_NE(pages[i], nullptr);
            ASSERT_TRUE(folio_maybe_dma_pinned(::page_folio(pages[i]))) << "gup_test verify_dma_pinned()";
            ASSERT_EQ(pages[i], pg(t, mem + i * kPage)) << "the pin is the mapped page";
            ASSERT_EQ(PageAnon(pages[i]) != 0, !shared)
                << (shared ? "MAP_SHARED: the page-cache page itself" : "MAP_PRIVATE: an anonymous COW copy");
            ASSERT_EQ(PageHuge(pages[i]) != 0, hugetlb);
        }
        if (!shared && !pages.empty()) {
            EXPECT_TRUE(PageAnonExclusive(hugetlb ? ::folio_page(::page_folio(pages[0]), 0) : pages[0]))
                << "§7: only PageAnonExclusive anonymous pages are pinned";
        }
    }

    void expect_pins_balanced() {
        EXPECT_EQ(stat("nr_foll_pin_acquired"), stat("nr_foll_pin_released")) << "§5: pins balance at rest";
    }
};

TEST_P(SelftestGupLongterm, Case) {
    const Case& c = *GetParam().c;
    const Backing& b = *GetParam().b;
    SCOPED_TRACE(GetParam().message());
    const bool hugetlb = b.magic == FsMagic::Hugetlbfs;
    const unsigned long size = b.size;

    // do_test(): ftruncate(), fallocate(), mmap(), memset().
    pl_file* f = create_file(b);
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(pl_ftruncate(f, size), 0) << pl_last_error();
    int fa = pl_fallocate(f, 0, 0, size);
    if (fa == -EOPNOTSUPP) GTEST_SKIP() << "fallocate() not supported by filesystem";
    ASSERT_EQ(fa, 0) << pl_last_error();
    long m = pl_mmap(t, 0, size, PROT_READ | PROT_WRITE, c.shared ? MAP_SHARED : MAP_PRIVATE, f, 0);
    ASSERT_GT(m, 0) << "mmap() failed: " << pl_last_error();
    const unsigned long mem = static_cast<unsigned long>(m);
    // "Fault in the page such that GUP-fast can pin it directly."
    ASSERT_EQ(pl_memset(t, mem, 0, size), static_cast<long>(size));

    const bool rw = c.type == Type::Rw || c.type == Type::RwFast || c.type == Type::Iouring;
    const bool fast = c.type == Type::RoFast || c.type == Type::RwFast;
    if (c.type == Type::Ro || c.type == Type::RoFast) {
        // "Cover more cases regarding unsharing decisions when long-term R/O
        // pinning by mapping the page R/O."
        ASSERT_EQ(pl_mprotect(t, mem, size, PROT_READ), 0);
        ASSERT_FALSE(pte::write(entry(t, mem))) << "precondition: mapped R/O";
    }
    // Precondition: the memset() faulted the whole range in, at the expected
    // level (one huge entry for hugetlb).
    ASSERT_NE(entry(t, mem), 0u);
    ASSERT_NE(entry(t, mem + size - kPage), 0u);
    if (hugetlb) {
        ASSERT_EQ(level(t, mem), size == k1G ? PtLevel::Pud : PtLevel::Pmd);
    }

    // R/O pinning or pinning in a private mapping is always expected to work;
    // R/W pinning of shared file mappings only on tmpfs/shmem and hugetlbfs.
    const bool should_work = !c.shared || !rw || fs_supports_writable_longterm_pinning(b.magic);
    auto outstanding = [&] { return stat("nr_foll_pin_acquired") - stat("nr_foll_pin_released"); };
    const unsigned long outstanding_before = outstanding();

    // GUP-fast really ran locklessly where upstream's walk can take the
    // pages (spec §4): not for R/O long-term pins of page-cache pages, which
    // gup_must_unshare() without a VMA sends to the slow path, nor where the
    // pin fails.
    const bool lockless = (fast || c.type == Type::Iouring) && should_work && (!c.shared || rw);
    const unsigned long fast_before = stat("gup_fast_pages");

    Pins pins;
    std::vector<page*>& pages = pins.pages;
    int ret = c.type == Type::Iouring ? io_pin_pages(mem, size, pages)
                                      : pin_longterm_test_start(t, mem, size, rw, fast, pages);
    if (should_work) {
        ASSERT_EQ(ret, 0) << "should have worked";
        ASSERT_EQ(pages.size(), size / kPage);
        // (GUP-fast may count a pin it then drops again, as upstream's
        // gup_fast_pte_range() does when gup_must_unshare() sends it to the
        // slow path: only the net count is fixed.)
        EXPECT_EQ(outstanding() - outstanding_before, size / kPage) << "§5: counted per subpage";
        check_pinned(mem, pages, c.shared, hugetlb);
        EXPECT_EQ(stat("gup_fast_pages") - fast_before, lockless ? size / kPage : 0)
            << (lockless ? "GUP-fast pinned everything without the mmap_lock" : "no page came from the lockless walk");
        // PIN_LONGTERM_TEST_STOP / io_uring_unregister_buffers().
        selftest::pin_longterm_test_stop(pages);
        Folio* folio = folio_at(t, mem);
        ASSERT_NE(folio, nullptr);
        if (hugetlb) {
            EXPECT_FALSE(folio_maybe_dma_pinned(reinterpret_cast<struct folio*>(folio)))
                << "large folios: _pincount is exact";
        }
    } else {
        // "Only new kernels return EFAULT" (io_uring); gup_test passes the
        // pin's -EFAULT through.
        EXPECT_EQ(ret, -EFAULT) << "should have failed with -EFAULT";
        EXPECT_TRUE(pages.empty());
        EXPECT_FALSE(folio_maybe_dma_pinned(reinterpret_cast<struct folio*>(folio_at(t, mem))))
            << "nothing stays pinned after a failed pin";
    }
    EXPECT_FALSE(mm().mmap_lock.is_locked());
    expect_pins_balanced();
    ASSERT_EQ(pl_munmap(t, mem, size), 0);
}

// 1 GiB hugetlb: the model materialises every 4 KiB frame a test writes, so
// each of these cases writes (and frees) 1-2 GiB of host memory and takes
// seconds in a debug build. One runs always (GUP-fast on a PUD leaf); the
// others are registered DISABLED_ and run with --gtest_also_run_disabled_tests.
std::string test_name(const Param& p) {
    std::string name = identifier(p.message());
    const bool smoke = p.c->type == Type::RwFast && p.c->shared;
    if (p.b->size == k1G && !smoke) name = "DISABLED_" + name;
    return name;
}

INSTANTIATE_TEST_SUITE_P(Matrix, SelftestGupLongterm, ::testing::ValuesIn(all_params()),
                         [](const ::testing::TestParamInfo<Param>& p) { return test_name(p.param); });

}  // namespace
}  // namespace pl::test
