// TTM-like buffer objects (src/drivers/ttm_bo, ttm_bo_vm) and the seed 003
// question: can GUP reach the pages behind a TTM PFN mapping?
//
//   user VA (MAP_SHARED)   |<------------ 2 MiB, 2 MiB-aligned ------------>|
//   page tables            [ PMD leaf: vmf_insert_pfn_pmd(pfn, PFN_DEV[|PFN_MAP]) ]
//                          or 512 x [ PTE: vmf_insert_pfn() / vmf_insert_mixed() ]
//   bo backing             [ system: one order-9 folio, TTM's own reference ]
//                          [ VRAM: iomem pfns, no struct page               ]
//
// GUP-fast looks only at the entry bits: special stops it, devmap sends it
// to get_dev_pagemap() (NULL for TTM: back off), anything else is taken for
// a normal THP and its page grabbed: the hazard the thread found. The slow
// path has the VMA: check_vma_flags() refuses VM_PFNMAP|VM_IO; in
// VM_MIXEDMAP, vm_normal_page() gives no page for a special PTE (-EFAULT from
// follow_pfn_pte()), but follow_huge_pmd() takes pmd_page() of any non-devmap
// huge leaf: the slow path's version of the hazard.
#include <array>
#include <atomic>
#include <string>
#include <thread>

#include "drivers/ttm_bo.h"
#include "gup/foll_flags.h"
#include "mm/physmem.h"
#include "test_kernel.h"

namespace pl::test {
namespace {

constexpr unsigned long kPmd = 2UL << 20;
constexpr unsigned long kPud = 1UL << 30;

class Ttm : public KernelTest {
protected:
    pl_file* bo(unsigned long size, int placement, unsigned flags) {
        pl_file* f = pl_ttm_bo_create(k, size, placement, flags);
        EXPECT_NE(f, nullptr) << pl_last_error();
        if (f) files.push_back(f);
        return f;
    }
    // A MAP_SHARED mapping of the bo at an address aligned to `align`.
    unsigned long map_bo(pl_file* f, unsigned long len, unsigned long align = kPmd, unsigned long off = 0) {
        long hole = pl_mmap(t, 0, len + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, nullptr, 0);
        EXPECT_GT(hole, 0) << pl_last_error();
        unsigned long at = (static_cast<unsigned long>(hole) + align - 1) & ~(align - 1);
        return map(t, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, f, off, at);
    }
    // Drops the bo's file from the fixture's list and puts it (the bo goes
    // once nothing maps it any more).
    void put_bo(pl_file* f) {
        files.erase(std::find(files.begin(), files.end(), f));
        pl_ttm_bo_put(f);
    }
    unsigned long fast_pages() { return pl_vmstat(k, "gup_fast_pages"); }
    int reports(const char* kind) { return pl_warning_count(k, kind); }
    std::string bo_str(pl_file* f, unsigned long off) {
        std::array<char, 32> buf{};
        EXPECT_EQ(pl_ttm_bo_read(f, off, buf.data(), buf.size() - 1), static_cast<long>(buf.size() - 1));
        return std::string(buf.data());
    }
};

// ---- the seed 003 matrix -----------------------------------------------------------------

enum class Leaf { Pte, Pmd, Pud };

// What GUP does with the bo's mapping, as the thread concluded:
// What the lockless walk does with the entry.
enum class Fast {
    Stops,   // special, devmap without pgmap, or no PTE level (no pte_special)
    Grabs,   // takes the bo's page: the hazard; "pfnmap_gup" reported
    NoPage,  // looks like a normal leaf but the pfn has no struct page (VRAM):
             // stops, counted in vmstat gup_fast_no_page
};
// What the slow path (mmap_lock, VMA, follow_page_mask) does.
enum class Slow {
    Efault,   // check_vma_flags() (VM_PFNMAP|VM_IO), or no page: follow_pfn_pte()
    Pins,     // a normal, refcounted page (vmf_insert_mixed() → insert_page())
    PinsPfn,  // follow_huge_pmd() takes pmd_page() of a VM_MIXEDMAP PFN leaf:
              // the hazard again, "pfnmap_gup" reported
};

struct Row {
    const char* config;
    Leaf leaf;
    int placement;
    unsigned flags;  // PL_TTM_*
    Fast fast;
    Slow slow;
    const char* rule;  // the upstream rule that decides the row
};

const char* kBase = "ram=512M hugetlb_2m=0 ";

// clang-format off
const Row kRows[] = {
    // --- PTEs (PL_TTM_NO_HUGE) ---
    {"", Leaf::Pte, PL_TTM_PL_SYSTEM, PL_TTM_NO_HUGE, Fast::Stops, Slow::Efault,
     "vmf_insert_pfn() makes pte_special PTEs: gup_fast_pte_range() stops; check_vma_flags() refuses VM_PFNMAP"},
    {"", Leaf::Pte, PL_TTM_PL_SYSTEM, PL_TTM_NO_HUGE | PL_TTM_MIXEDMAP, Fast::Stops, Slow::Efault,
     "with pte_special __vm_insert_mixed() goes through insert_pfn() (special, Vetter #13): fast stops; "
     "slow: vm_normal_page() NULL, follow_pfn_pte()"},
    {"arch.pte_special=off", Leaf::Pte, PL_TTM_PL_SYSTEM, PL_TTM_NO_HUGE, Fast::Stops, Slow::Efault,
     "no pte_special: GUP-fast has no PTE level at all; check_vma_flags() refuses VM_PFNMAP"},
    {"arch.pte_special=off", Leaf::Pte, PL_TTM_PL_SYSTEM, PL_TTM_NO_HUGE | PL_TTM_MIXEDMAP, Fast::Stops, Slow::Pins,
     "no pte_special: __vm_insert_mixed() uses insert_page() for a valid pfn, a normal refcounted page that "
     "slow GUP returns ('mixed maps pointing at struct page won't stop gup', Vetter #4)"},
    {"arch.pte_special=off", Leaf::Pte, PL_TTM_PL_VRAM, PL_TTM_NO_HUGE | PL_TTM_MIXEDMAP, Fast::Stops, Slow::Efault,
     "VM_MIXEDMAP without pte_special: vm_normal_page() is NULL for a pfn without struct page"},
    {"", Leaf::Pte, PL_TTM_PL_VRAM, PL_TTM_NO_HUGE, Fast::Stops, Slow::Efault,
     "special PTE of iomem in VM_PFNMAP|VM_IO"},
    // --- PMD leaves, system memory ---
    {"", Leaf::Pmd, PL_TTM_PL_SYSTEM, 0, Fast::Stops, Slow::Efault,
     "pmd_special (v6.12+): vmf_insert_pfn_pmd() marks the leaf special, gup_fast_pmd_leaf() refuses it; "
     "check_vma_flags() refuses VM_PFNMAP"},
    {"", Leaf::Pmd, PL_TTM_PL_SYSTEM, PL_TTM_MIXEDMAP, Fast::Stops, Slow::PinsPfn,
     "pmd_special stops GUP-fast, but VM_MIXEDMAP passes check_vma_flags() and follow_huge_pmd() takes "
     "pmd_page() special or not: why TTM went VM_PFNMAP (Vetter #22)"},
    {"arch.pmd_special=off", Leaf::Pmd, PL_TTM_PL_SYSTEM, 0, Fast::Grabs, Slow::Efault,
     "seed 003: PFN_DEV alone, no pmd_special, no devmap: gup_fast_pmd_leaf() takes pmd_page()"},
    {"arch.pmd_special=off", Leaf::Pmd, PL_TTM_PL_SYSTEM, PL_TTM_MIXEDMAP, Fast::Grabs, Slow::PinsPfn,
     "seed 003 with VM_MIXEDMAP (TTM in v5.11): both paths take the bo's page"},
    {"arch.pmd_special=off arch.pte_devmap=on", Leaf::Pmd, PL_TTM_PL_SYSTEM, 0, Fast::Grabs, Slow::Efault,
     "Hellstrom #21: 'Without the | PFN_MAP, it typically succeeds' (pfn_t_devmap() false: a plain leaf)"},
    {"arch.pmd_special=off arch.pte_devmap=on", Leaf::Pmd, PL_TTM_PL_SYSTEM, PL_TTM_PFN_MAP, Fast::Stops, Slow::Efault,
     "Hellstrom #16/#21: PFN_DEV|PFN_MAP makes pmd_devmap(); get_dev_pagemap() is NULL so "
     "gup_fast_devmap_pmd_leaf() backs off: 'with it, fast gup never succeeds'"},
    {"arch.pmd_special=off arch.pte_devmap=on", Leaf::Pmd, PL_TTM_PL_SYSTEM, PL_TTM_MIXEDMAP | PL_TTM_PFN_MAP,
     Fast::Stops, Slow::Efault,
     "the same in VM_MIXEDMAP: the slow path's follow_devmap_pmd() has no pgmap either (-EFAULT)"},
    {"arch.pmd_special=off", Leaf::Pmd, PL_TTM_PL_SYSTEM, PL_TTM_PFN_MAP, Fast::Grabs, Slow::Efault,
     "PFN_MAP is no help without CONFIG_ARCH_HAS_PTE_DEVMAP: pfn_t_devmap() is false"},
    {"arch.pmd_special=off", Leaf::Pmd, PL_TTM_PL_SYSTEM, PL_TTM_MIXEDMAP | PL_TTM_PFN_MAP, Fast::Grabs,
     Slow::PinsPfn, "as above, VM_MIXEDMAP"},
    // --- huge leaves of VRAM: nothing to take, whatever the bits ---
    {"arch.pmd_special=off", Leaf::Pmd, PL_TTM_PL_VRAM, 0, Fast::NoPage, Slow::Efault,
     "seed 003, iomem: the leaf looks like a THP but pfn_to_page() has nothing behind it"},
    {"arch.pmd_special=off", Leaf::Pmd, PL_TTM_PL_VRAM, PL_TTM_MIXEDMAP, Fast::NoPage, Slow::Efault,
     "iomem in VM_MIXEDMAP: no struct page for follow_huge_pmd() either"},
    {"", Leaf::Pmd, PL_TTM_PL_VRAM, 0, Fast::Stops, Slow::Efault, "pmd_special leaf of iomem"},
    {"arch.pmd_special=off arch.pte_devmap=on", Leaf::Pmd, PL_TTM_PL_VRAM, PL_TTM_PFN_MAP, Fast::Stops, Slow::Efault,
     "devmap leaf of iomem: no pgmap, back off"},
    {"arch.pmd_special=off", Leaf::Pud, PL_TTM_PL_VRAM, 0, Fast::NoPage, Slow::Efault,
     "vmf_insert_pfn_pud() without pud_special: gup_fast_pud_leaf() meets a pfn with no struct page"},
    {"", Leaf::Pud, PL_TTM_PL_VRAM, PL_TTM_MIXEDMAP, Fast::Stops, Slow::Efault, "special PUD leaf (pud_special, v6.12+)"},
    {"arch.pmd_special=off arch.pte_devmap=on", Leaf::Pud, PL_TTM_PL_VRAM, PL_TTM_PFN_MAP, Fast::Stops, Slow::Efault,
     "pud_devmap() leaf: gup_fast_devmap_pud_leaf() backs off"},
};
// clang-format on

std::string describe(const Row& r) {
    static const char* kLeaf[] = {"PTE", "PMD", "PUD"};
    return std::string(kLeaf[static_cast<int>(r.leaf)]) + (r.placement == PL_TTM_PL_VRAM ? " VRAM" : " system") +
           ((r.flags & PL_TTM_MIXEDMAP) ? " VM_MIXEDMAP" : " VM_PFNMAP") +
           ((r.flags & PL_TTM_PFN_MAP) ? " PFN_DEV|PFN_MAP" : "") + " [" + r.config + "]: " + r.rule;
}

TEST_F(Ttm, Seed003Matrix) {
    for (const Row& r : kRows) {
        SCOPED_TRACE(describe(r));
        reboot((std::string(kBase) + r.config).c_str());
        pl_set_current(t);
        const unsigned long span = r.leaf == Leaf::Pud ? kPud : kPmd;
        pl_file* f = bo(span, r.placement, r.flags);
        ASSERT_NE(f, nullptr);
        const unsigned long a = map_bo(f, span, span);
        const unsigned long at = a + 3 * kPage;  // a page inside the leaf
        put_str(t, at, "ttm");
        const PtLevel want = r.leaf == Leaf::Pte ? PtLevel::Pte : r.leaf == Leaf::Pmd ? PtLevel::Pmd : PtLevel::Pud;
        ASSERT_EQ(level(t, at), want);
        const pfn_t pfn = pl_ttm_bo_pfn(f, 3);
        Page* bo_page = kern().mem->pfn_to_page(pfn);
        ASSERT_EQ(bo_page == nullptr, r.placement == PL_TTM_PL_VRAM);

        std::array<page*, 1> pages{};
        int want_reports = 0;
        const unsigned long nopage0 = pl_vmstat(k, "gup_fast_no_page");

        // 1. get_user_pages_fast_only(): the lockless walk and nothing else
        //    (Hellstrom's probe in ttm_bo_vm_insert_huge()).
        int got = get_user_pages_fast_only(at, 1, 0, pages.data());
        if (r.fast == Fast::Grabs) {
            ASSERT_EQ(got, 1) << "'Fast gup succeeded. Bad.'";
            EXPECT_EQ(reinterpret_cast<Page*>(pages[0]), bo_page) << "the bo's own page";
            ++want_reports;
            put_page(pages[0]);
        } else {
            EXPECT_EQ(got, 0) << "'Fast gup failed. Good.'";
        }
        EXPECT_EQ(reports("pfnmap_gup"), want_reports);
        EXPECT_EQ(pl_vmstat(k, "gup_fast_no_page") - nopage0, r.fast == Fast::NoPage ? 1u : 0u)
            << "gup_fast_no_page counts leaves that look normal but have no struct page";

        // 2. pin_user_pages_fast(): the walk, then the slow path for the rest.
        const unsigned long fast1 = fast_pages();
        got = pin_user_pages_fast(at, 1, FOLL_WRITE, pages.data());
        if (r.fast == Fast::Grabs || r.slow != Slow::Efault) {
            ASSERT_EQ(got, 1);
            EXPECT_EQ(reinterpret_cast<Page*>(pages[0]), bo_page);
            EXPECT_EQ(fast_pages() - fast1, r.fast == Fast::Grabs ? 1u : 0u) << "which path took it";
            if (r.fast == Fast::Grabs || r.slow == Slow::PinsPfn) ++want_reports;
            unpin_user_page(pages[0]);
        } else {
            EXPECT_EQ(got, -EFAULT);
            EXPECT_EQ(fast_pages(), fast1);
        }
        EXPECT_EQ(reports("pfnmap_gup"), want_reports);

        // 3. pin_user_pages_unlocked(): the slow path alone.
        const long slow = pin_user_pages_unlocked(at, 1, pages.data(), FOLL_WRITE);
        if (r.slow == Slow::Efault) {
            EXPECT_EQ(slow, -EFAULT) << "check_vma_flags() (VM_PFNMAP|VM_IO), or follow_pfn_pte()";
        } else {
            ASSERT_EQ(slow, 1);
            EXPECT_EQ(reinterpret_cast<Page*>(pages[0]), bo_page);
            if (r.slow == Slow::PinsPfn) ++want_reports;
            unpin_user_page(pages[0]);
        }
        EXPECT_EQ(reports("pfnmap_gup"), want_reports);
        expect_reports("pfnmap_gup", want_reports);
        EXPECT_EQ(get_str(t, at), "ttm") << "the CPU mapping still works";
    }
}

// ---- mapping layout ----------------------------------------------------------------------

// ttm_bo_vm_insert_huge() needs the VMA, the file offset and the pfn aligned;
// otherwise (and past the last whole 2 MiB of the bo) PTEs.
TEST_F(Ttm, HugeLeavesOnlyWhereAlignedAndContiguous) {
    pl_set_current(t);
    pl_file* f = bo(kPmd + 2 * kPage, PL_TTM_PL_SYSTEM, 0);
    const unsigned long a = map_bo(f, kPmd + 2 * kPage);
    put_str(t, a, "head");
    put_str(t, a + kPmd + kPage, "tail");
    EXPECT_EQ(level(t, a), PtLevel::Pmd);
    EXPECT_EQ(level(t, a + kPmd + kPage), PtLevel::Pte) << "the order-1 tail chunk";
    EXPECT_EQ(bo_str(f, 0), "head");
    EXPECT_EQ(bo_str(f, kPmd + kPage), "tail");
    // The same bo mapped at an address that is not 2 MiB-aligned: PTEs only.
    const unsigned long b = map_bo(f, kPmd, kPmd) + kPage;
    ASSERT_EQ(pl_munmap(t, b - kPage, kPmd), 0);
    const unsigned long c = map(t, kPmd, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, f, 0, b);
    EXPECT_EQ(get_str(t, c), "head");
    EXPECT_EQ(level(t, c), PtLevel::Pte);
    // With PL_TTM_NO_HUGE, never a huge leaf.
    pl_file* g = bo(kPmd, PL_TTM_PL_SYSTEM, PL_TTM_NO_HUGE);
    const unsigned long d = map_bo(g, kPmd);
    put_str(t, d, "x");
    EXPECT_EQ(level(t, d), PtLevel::Pte);
}

// System chunks are at most 2 MiB, so a 1 GiB system bo mapped 1 GiB-aligned
// gets PMD leaves, never a PUD (the leaf would span 512 folios); VRAM is one
// aligned range and gets the PUD.
TEST_F(Ttm, PudLeavesOnlyForVram) {
    reboot("ram=2G hugetlb_2m=0 hugetlb_1g=0");
    pl_set_current(t);
    for (int placement : {PL_TTM_PL_SYSTEM, PL_TTM_PL_VRAM}) {
        SCOPED_TRACE(placement);
        pl_file* f = bo(kPud, placement, 0);
        const unsigned long a = map_bo(f, kPud, kPud);
        put_str(t, a + kPud - kPage, "end");
        EXPECT_EQ(level(t, a + kPud - kPage), placement == PL_TTM_PL_VRAM ? PtLevel::Pud : PtLevel::Pmd);
        EXPECT_EQ(bo_str(f, kPud - kPage), "end");
        ASSERT_EQ(pl_munmap(t, a, kPud), 0);
    }
}

// FOLL_LONGTERM alone is no protection: a TTM page is neither movable nor in
// ZONE_MOVABLE, so folio_is_longterm_pinnable() lets GUP-fast keep it. A
// writable long-term pin backs off since v6.5: gup_fast_folio_allowed()
// finds no folio->mapping to prove the memory needs no dirty tracking, and
// the slow path then refuses VM_PFNMAP.
TEST_F(Ttm, LongtermPinsOfTheHazard) {
    struct Case {
        const char* era;
        unsigned flags;
        bool fast_grabs;
    } cases[] = {
        {"current", FOLL_LONGTERM, true},
        {"current", FOLL_WRITE | FOLL_LONGTERM, false},
        {"v6.4", FOLL_WRITE | FOLL_LONGTERM, true},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(std::string(c.era) + " flags " + std::to_string(c.flags));
        reboot((std::string("ram=512M hugetlb_2m=0 arch.pmd_special=off era=") + c.era).c_str());
        pl_set_current(t);
        pl_file* f = bo(kPmd, PL_TTM_PL_SYSTEM, 0);
        const unsigned long a = map_bo(f, kPmd);
        put_str(t, a, "x");
        std::array<page*, 1> pages{};
        const int got = pin_user_pages_fast(a, 1, c.flags, pages.data());
        if (c.fast_grabs) {
            ASSERT_EQ(got, 1);
            EXPECT_EQ(fast_pages(), 1u);
            EXPECT_EQ(reports("pfnmap_gup"), 1);
            expect_reports("pfnmap_gup", 1);
            unpin_user_page(pages[0]);
        } else {
            EXPECT_EQ(got, -EFAULT);
            EXPECT_EQ(fast_pages(), 0u);
            EXPECT_EQ(reports("pfnmap_gup"), 0);
        }
    }
}

// ttm_bo_mmap_obj(): is_cow_mapping() → -EINVAL (the outcome of the thread);
// and the mapping must lie inside the bo.
TEST_F(Ttm, PrivateMappingsAndOverlongMappingsAreRefused) {
    pl_file* f = bo(4 * kPage, PL_TTM_PL_SYSTEM, 0);
    EXPECT_EQ(pl_mmap(t, 0, 4 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE, f, 0), -EINVAL);
    EXPECT_EQ(pl_mmap(t, 0, 8 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0), -EINVAL);
    EXPECT_EQ(pl_mmap(t, 0, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f, 3 * kPage), -EINVAL);
    EXPECT_GT(pl_mmap(t, 0, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f, 2 * kPage), 0);
}

// The C API refuses what is not a live bo, and bad arguments.
TEST_F(Ttm, CApiRefusesBadArguments) {
    EXPECT_EQ(pl_ttm_bo_create(nullptr, kPage, PL_TTM_PL_SYSTEM, 0), nullptr);
    EXPECT_EQ(pl_ttm_bo_create(k, 0, PL_TTM_PL_SYSTEM, 0), nullptr);
    EXPECT_EQ(pl_ttm_bo_create(k, kPage, 7, 0), nullptr);
    EXPECT_EQ(pl_ttm_bo_create(k, kPage, PL_TTM_PL_SYSTEM, 0x100), nullptr);
    EXPECT_NE(std::string(pl_last_error()).find("pl_ttm_bo_create"), std::string::npos);
    pl_file* plain = file("ext4", kPage);
    EXPECT_EQ(pl_ttm_bo_move(nullptr, PL_TTM_PL_VRAM), -EINVAL);
    EXPECT_EQ(pl_ttm_bo_move(plain, PL_TTM_PL_VRAM), -EINVAL) << "not a bo";
    EXPECT_EQ(pl_ttm_bo_placement(plain), -EINVAL);
    EXPECT_EQ(pl_ttm_bo_pfn(plain, 0), ~0UL);
    char c = 0;
    EXPECT_EQ(pl_ttm_bo_read(plain, 0, &c, 1), -EINVAL);
    pl_file* f = bo(kPage, PL_TTM_PL_SYSTEM, 0);
    EXPECT_EQ(pl_ttm_bo_move(f, 9), -EINVAL);
    EXPECT_EQ(pl_ttm_bo_read(f, kPage, &c, 1), -EINVAL) << "past the end";
    EXPECT_EQ(pl_ttm_bo_write(f, kPage - 1, "ab", 2), -EINVAL);
    EXPECT_EQ(pl_ttm_bo_pfn(f, 1), ~0UL);
    EXPECT_EQ(pl_ttm_bo_placement(f), PL_TTM_PL_SYSTEM);
}

// ---- moves ------------------------------------------------------------------------------

// ttm_bo_handle_move_mem(): ttm_bo_unmap_virtual() zaps the user mapping,
// the contents are copied, the old backing freed; the next CPU access
// faults the new placement in.
TEST_F(Ttm, MoveWhileMappedRefaultsToTheNewPlacement) {
    for (unsigned flags : {0u, PL_TTM_MIXEDMAP, PL_TTM_NO_HUGE}) {
        SCOPED_TRACE(flags);
        reboot("ram=512M hugetlb_2m=0");
        pl_set_current(t);
        const unsigned long before = pl_nr_allocated_pages(k);
        pl_file* f = bo(kPmd, PL_TTM_PL_SYSTEM, flags);
        EXPECT_EQ(pl_nr_allocated_pages(k) - before, kPmd / kPage) << "system pages allocated";
        const unsigned long a = map_bo(f, kPmd);
        put_str(t, a + 7 * kPage, "moved");
        const pfn_t old_pfn = pl_ttm_bo_pfn(f, 7);
        EXPECT_EQ(pte::pfn(entry(t, a + 7 * kPage)) + ((flags & PL_TTM_NO_HUGE) ? 0 : 7), old_pfn);

        ASSERT_EQ(pl_ttm_bo_move(f, PL_TTM_PL_VRAM), 0);
        EXPECT_EQ(pl_ttm_bo_placement(f), PL_TTM_PL_VRAM);
        EXPECT_EQ(entry(t, a + 7 * kPage), 0u) << "ttm_bo_unmap_virtual() zapped the mapping";
        EXPECT_EQ(pl_nr_allocated_pages(k), before) << "the old system pages were freed";
        const pfn_t vram = pl_ttm_bo_pfn(f, 7);
        EXPECT_TRUE(kern().mem->is_iomem(vram));
        EXPECT_EQ(get_str(t, a + 7 * kPage), "moved") << "refault finds the copy";
        const pte::entry_t e = entry(t, a + 7 * kPage);
        EXPECT_EQ(pte::pfn(e) + ((flags & PL_TTM_NO_HUGE) ? 0 : 7), vram);

        // And back: the device wrote meanwhile.
        ASSERT_EQ(pl_ttm_bo_write(f, 9 * kPage, "gpu", 4), 4);
        ASSERT_EQ(pl_ttm_bo_move(f, PL_TTM_PL_SYSTEM), 0);
        EXPECT_EQ(pl_nr_allocated_pages(k) - before, kPmd / kPage);
        EXPECT_EQ(get_str(t, a + 9 * kPage), "gpu");
        EXPECT_EQ(get_str(t, a + 7 * kPage), "moved");
        const pfn_t now = pl_ttm_bo_pfn(f, 7);
        EXPECT_EQ(pl_ttm_bo_move(f, PL_TTM_PL_SYSTEM), 0);
        EXPECT_EQ(pl_ttm_bo_pfn(f, 7), now) << "a move to the current placement does nothing";
        EXPECT_NE(entry(t, a + 7 * kPage), 0u) << "and leaves the mapping alone";
    }
}

// Seed 003, Vetter #20's recipe: a huge PFN leaf of system memory without
// pmd_special; GUP-fast pins it (the hazard); the bo goes away before the
// "direct I/O" completes. TTM only drops its own reference (__free_pages()),
// so the pin keeps the frame: the device writes into a page that no longer
// belongs to any bo, and the frame is freed when the pin goes.
TEST_F(Ttm, BoFreedWhilePinnedKeepsTheFrameUntilUnpin) {
    reboot("ram=512M hugetlb_2m=0 arch.pmd_special=off");
    pl_set_current(t);
    const unsigned long before = pl_nr_allocated_pages(k);
    pl_file* f = bo(kPmd, PL_TTM_PL_SYSTEM, 0);
    const unsigned long a = map_bo(f, kPmd);
    put_str(t, a, "bo");
    std::array<page*, 2> pages{};
    ASSERT_EQ(pin_user_pages_fast(a, 2, FOLL_WRITE, pages.data()), 2);
    expect_reports("pfnmap_gup", 1);
    ASSERT_EQ(pl_munmap(t, a, kPmd), 0);
    put_bo(f);  // ttm_bo_release()
    expect_reports("pinned_page_moved", 1);
    EXPECT_EQ(reports("pinned_page_moved"), 1);
    EXPECT_NE(std::string(pl_dmesg(k)).find("ttm_bo_release"), std::string::npos) << pl_dmesg(k);
    EXPECT_EQ(pl_nr_allocated_pages(k) - before, kPmd / kPage) << "the pin keeps the whole folio";
    EXPECT_EQ(pl_page_write(pages[1], 0, "dma", 4), 0) << "the device still writes into the old frame";
    unpin_user_pages(pages.data(), 2);
    EXPECT_EQ(pl_nr_allocated_pages(k), before) << "freed with the last pin";
}

// The same with a GET (get_user_pages_fast_only()): the tracker reports only
// PINs, but the reference keeps the frame just the same.
TEST_F(Ttm, BoFreedWhileGetHeldKeepsTheFrameUntilPut) {
    reboot("ram=512M hugetlb_2m=0 arch.pmd_special=off");
    pl_set_current(t);
    const unsigned long before = pl_nr_allocated_pages(k);
    pl_file* f = bo(kPmd, PL_TTM_PL_SYSTEM, PL_TTM_MIXEDMAP);
    const unsigned long a = map_bo(f, kPmd);
    put_str(t, a, "bo");
    std::array<page*, 1> pages{};
    ASSERT_EQ(get_user_pages_fast_only(a, 1, 0, pages.data()), 1);
    expect_reports("pfnmap_gup", 1);
    ASSERT_EQ(pl_munmap(t, a, kPmd), 0);
    put_bo(f);
    EXPECT_EQ(reports("pinned_page_moved"), 0) << "a GET is not a pin";
    EXPECT_EQ(pl_nr_allocated_pages(k) - before, kPmd / kPage);
    char buf[3] = {};
    EXPECT_EQ(pl_page_read(pages[0], 0, buf, 3), 0);
    EXPECT_STREQ(buf, "bo") << "the stale frame still holds the bo's old bytes";
    put_page(pages[0]);
    EXPECT_EQ(pl_nr_allocated_pages(k), before);
}

// A move (eviction to VRAM) while a pin is held: the pin holder keeps the
// old frame; what the device writes there never reaches the bo.
TEST_F(Ttm, BoMovedWhilePinnedLosesTheDevicesWrites) {
    reboot("ram=512M hugetlb_2m=0 arch.pmd_special=off");
    pl_set_current(t);
    pl_file* f = bo(kPmd, PL_TTM_PL_SYSTEM, 0);
    const unsigned long a = map_bo(f, kPmd);
    put_str(t, a + kPage, "before");
    std::array<page*, 1> pages{};
    ASSERT_EQ(pin_user_pages_fast(a + kPage, 1, FOLL_WRITE, pages.data()), 1);
    expect_reports("pfnmap_gup", 1);
    ASSERT_EQ(pl_ttm_bo_move(f, PL_TTM_PL_VRAM), 0);
    expect_reports("pinned_page_moved", 1);
    EXPECT_NE(std::string(pl_dmesg(k)).find("moved to VRAM"), std::string::npos) << pl_dmesg(k);
    ASSERT_EQ(pl_page_write(pages[0], 0, "after", 6), 0);  // DMA into the pinned page
    EXPECT_EQ(bo_str(f, kPage), "before") << "the bo never sees the device's write";
    EXPECT_EQ(get_str(t, a + kPage), "before") << "nor does the CPU mapping (refaulted to VRAM)";
    unpin_user_page(pages[0]);
}

// Without pte_special, VM_MIXEDMAP maps system pages as normal refcounted
// pages: slow GUP pins them legitimately (no pfnmap_gup), and a move still
// leaves the pin holder on the old frame.
TEST_F(Ttm, MixedmapWithoutPteSpecialSlowPinThenMove) {
    reboot("ram=512M hugetlb_2m=0 arch.pte_special=off");
    pl_set_current(t);
    const unsigned long before = pl_nr_allocated_pages(k);
    pl_file* f = bo(4 * kPage, PL_TTM_PL_SYSTEM, PL_TTM_MIXEDMAP);
    const unsigned long a = map_bo(f, 4 * kPage);
    put_str(t, a, "mixed");
    page* p = pg(t, a);
    ASSERT_NE(p, nullptr) << "insert_page(): a normal page";
    EXPECT_EQ(page_mapcount(p), 1);
    std::array<page*, 1> pages{};
    ASSERT_EQ(pin_user_pages_fast(a, 1, FOLL_WRITE, pages.data()), 1);
    EXPECT_EQ(pages[0], p);
    EXPECT_EQ(fast_pages(), 0u) << "no GUP-fast PTE level without pte_special";
    ASSERT_EQ(pl_ttm_bo_move(f, PL_TTM_PL_VRAM), 0);
    expect_reports("pinned_page_moved", 1);
    EXPECT_EQ(page_mapcount(pages[0]), 0) << "unmapped by ttm_bo_unmap_virtual()";
    EXPECT_EQ(pl_nr_allocated_pages(k) - before, 4u) << "only the pinned page's chunk (one order-2 folio) survives";
    EXPECT_EQ(get_str(t, a), "mixed");
    EXPECT_EQ(pg(t, a), nullptr) << "VRAM has no struct page";
    unpin_user_page(pages[0]);
    EXPECT_EQ(pl_nr_allocated_pages(k), before);
}

// Device (kernel-mapping) access and CPU access see the same bytes, in both
// placements.
TEST_F(Ttm, DeviceAndCpuSeeTheSameContents) {
    pl_set_current(t);
    for (int placement : {PL_TTM_PL_SYSTEM, PL_TTM_PL_VRAM}) {
        SCOPED_TRACE(placement);
        pl_file* f = bo(3 * kPage, placement, 0);
        const unsigned long a = map_bo(f, 3 * kPage);
        ASSERT_EQ(pl_ttm_bo_write(f, kPage - 2, "span", 5), 5) << "crosses a page boundary";
        EXPECT_EQ(get_str(t, a + kPage - 2), "span");
        put_str(t, a + 2 * kPage, "cpu");
        EXPECT_EQ(bo_str(f, 2 * kPage), "cpu");
        EXPECT_EQ(pg(t, a) == nullptr, true) << "PFN entries: no page for pl_virt_to_page()";
    }
}

// Moves racing with CPU stores through the mapping: a store either lands
// before ttm_bo_unmap_virtual() (and is copied) or faults afterwards and
// waits for the bo's resv, then finds the new placement. No store is lost.
class TtmConcurrent : public Ttm {};

TEST_F(TtmConcurrent, MovesRaceWithCpuStores) {
    pl_set_current(t);
    pl_file* f = bo(kPmd, PL_TTM_PL_SYSTEM, 0);
    const unsigned long a = map_bo(f, kPmd);
    constexpr int kStores = 300;
    std::atomic<bool> failed{false};
    std::thread writer([&] {
        pl_set_current(t);
        for (int i = 0; i < kStores; ++i) {
            const std::string v = std::to_string(i);
            if (pl_write(t, a + (i % 8) * kPage, v.c_str(), v.size() + 1) != static_cast<long>(v.size() + 1))
                failed = true;
        }
    });
    std::thread mover([&] {
        for (int i = 0; i < 30; ++i)
            if (pl_ttm_bo_move(f, (i % 2) ? PL_TTM_PL_SYSTEM : PL_TTM_PL_VRAM) != 0) failed = true;
    });
    writer.join();
    mover.join();
    EXPECT_FALSE(failed.load());
    for (int slot = 0; slot < 8; ++slot) {
        const int last = kStores - 8 + ((slot - (kStores - 8)) % 8 + 8) % 8;
        EXPECT_EQ(bo_str(f, slot * kPage), std::to_string(last)) << "slot " << slot;
        EXPECT_EQ(get_str(t, a + slot * kPage), std::to_string(last));
    }
}

}  // namespace
}  // namespace pl::test
