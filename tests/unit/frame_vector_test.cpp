// Frame vectors (spec §9, seed 000): get_vaddr_frames()/put_vaddr_frames()
// per era and the vector helpers. Rows cite the upstream version of
// mm/frame_vector.c or drivers/media/common/videobuf2/frame_vector.c whose
// rule they check (the era mapping is in docs/FIDELITY.md, "Frame vectors").
#include <cstdlib>
#include <vector>

#include "gup/foll_flags.h"
#include "gup/frame_vector.h"
#include "mm/physmem.h"
#include "test_kernel.h"

namespace pl::test {
namespace {

// A quarter of RAM in ZONE_MOVABLE: anonymous folios are born there, so a
// FOLL_LONGTERM pin shows itself by migrating them out (spec §6).
constexpr const char* kBase = "ram=512M movable=128M hugetlb_2m=4 hugetlb_1g=0";

class FrameVector : public KernelTest {
protected:
    void SetUp() override {
        boot(kBase);
        pl_set_current(t);
    }
    void reboot_era(const char* era) {
        const std::string c = std::string(kBase) + " era=" + era;
        reboot(c.c_str());
        pl_set_current(t);
    }
    unsigned long stat(const char* n) { return pl_vmstat(k, n); }
    std::string dmesg() { return pl_dmesg(k); }
    bool logged(const std::string& what) { return dmesg().find(what) != std::string::npos; }
    unsigned long anon(unsigned long n, int prot = PROT_READ | PROT_WRITE) {
        unsigned long a = map(n * kPage, PROT_READ | PROT_WRITE);
        EXPECT_EQ(pl_memset(t, a, 0x3c, n * kPage), static_cast<long>(n * kPage));
        if (prot != (PROT_READ | PROT_WRITE)) {
            EXPECT_EQ(pl_mprotect(t, a, n * kPage, prot), 0);
        }
        return a;
    }
    unsigned long device(const char* dev, unsigned long n) {
        pl_file* d = pl_dev_open(k, dev);
        EXPECT_NE(d, nullptr) << pl_last_error();
        files.push_back(d);
        return map(t, n * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, d);
    }
    // The PFN the page tables map at addr.
    unsigned long mapped_pfn(unsigned long addr) { return pte::pfn(entry(t, addr)); }
    void expect_pins_balanced() {
        EXPECT_EQ(stat("nr_foll_pin_acquired"), stat("nr_foll_pin_released")) << "§5: pins balance at rest";
    }
};

// ---- normal memory: which reference each era takes ------------------------------------------

enum class Ref { Get, Pin, PinLongterm };

struct AnonRow {
    const char* era;
    Ref ref;
    const char* why;
};

TEST_F(FrameVector, AnonRangeReferencePerEra) {
    constexpr unsigned kN = 4;
    const AnonRow rows[] = {
        {"v4.8", Ref::Get, "v4.2 mm/frame_vector.c: get_user_pages_locked() takes FOLL_GET references"},
        {"v5.5", Ref::Get, "v5.5: still get_user_pages_locked(); released with put_page()/put_user_pages()"},
        {"v5.8", Ref::Pin, "v5.8 55a650c35fea: pin_user_pages_locked() — FOLL_PIN, but not FOLL_LONGTERM"},
        {"v5.11", Ref::Pin, "v5.11: unchanged; seed 000 ('Unfortunately current pup_locked doesn't support "
                            "FOLL_LONGTERM') lands in v5.12"},
        {"v5.16", Ref::PinLongterm, "v5.12 04769cb1c45a (seed 000): pin_user_pages_fast(FOLL_FORCE|FOLL_WRITE|"
                                    "FOLL_LONGTERM)"},
        {"v6.4", Ref::PinLongterm, "v6.2: pin_user_pages_fast(FOLL_LONGTERM | FOLL_WRITE if write)"},
        {"current", Ref::PinLongterm, "037dd1308c6d: the same"},
    };
    for (const AnonRow& r : rows) {
        SCOPED_TRACE(r.why);
        reboot_era(r.era);
        unsigned long a = anon(kN);
        std::vector<page*> before(kN);
        std::vector<int> refs(kN);
        for (unsigned i = 0; i < kN; i++) {
            before[i] = pg(t, a + i * kPage);
            refs[i] = page_ref_count(before[i]);
        }
        frame_vector* vec = frame_vector_create(kN);
        ASSERT_NE(vec, nullptr);
        ASSERT_EQ(get_vaddr_frames(a, kN, true, vec), static_cast<int>(kN));
        EXPECT_TRUE(vec->got_ref);
        EXPECT_FALSE(vec->is_pfns);
        EXPECT_EQ(frame_vector_count(vec), kN);
        page** pages = frame_vector_pages(vec);
        ASSERT_FALSE(IS_ERR(pages));
        for (unsigned i = 0; i < kN; i++) {
            EXPECT_EQ(pages[i], pg(t, a + i * kPage)) << "page " << i << " is what the process maps";
            const bool pinned = folio_maybe_dma_pinned(page_folio(pages[i]));
            EXPECT_EQ(pinned, r.ref != Ref::Get) << "page " << i;
            if (r.ref == Ref::Get) {
                EXPECT_EQ(page_ref_count(pages[i]), refs[i] + 1) << "one GET reference";
            }
            // §6: only a long-term pin moves the page out of ZONE_MOVABLE.
            const bool moved = pages[i] != before[i];
            EXPECT_EQ(moved, r.ref == Ref::PinLongterm) << "page " << i;
        }
        const unsigned long acquired = stat("nr_foll_pin_acquired") - stat("nr_foll_pin_released");
        EXPECT_EQ(acquired, r.ref == Ref::Get ? 0UL : kN);
        put_vaddr_frames(vec);
        EXPECT_EQ(frame_vector_count(vec), 0u);
        EXPECT_FALSE(vec->got_ref);
        expect_pins_balanced();
        for (unsigned i = 0; i < kN; i++)
            EXPECT_EQ(page_ref_count(pg(t, a + i * kPage)), page_mapcount(pg(t, a + i * kPage)))
                << "only the mapping's reference is left";
        frame_vector_destroy(vec);
        EXPECT_EQ(dmesg(), "");
    }
}

TEST_F(FrameVector, PutReleasesExactlyWhatAPartialGetTook) {
    // §9 / §1: fewer frames than asked (the range runs into a hole): the
    // count is what was taken, and exactly that is released.
    for (const char* era : {"v5.5", "v5.10", "current"}) {
        SCOPED_TRACE(era);
        reboot_era(era);
        unsigned long a = anon(4);
        ASSERT_EQ(pl_munmap(t, a + 2 * kPage, 2 * kPage), 0);
        frame_vector* vec = frame_vector_create(4);
        const int ref0 = page_ref_count(pg(t, a));
        ASSERT_EQ(get_vaddr_frames(a, 4, true, vec), 2);
        EXPECT_EQ(frame_vector_count(vec), 2u);
        put_vaddr_frames(vec);
        EXPECT_EQ(page_ref_count(pg(t, a)), ref0);
        expect_pins_balanced();
        // Nothing mapped at all: no frame, -EFAULT (v4.2..current: "if (!ret) ret = -EFAULT").
        EXPECT_EQ(get_vaddr_frames(a + 2 * kPage, 2, true, vec), -EFAULT);
        EXPECT_EQ(frame_vector_count(vec), 0u);
        frame_vector_destroy(vec);
    }
}

// ---- VM_IO|VM_PFNMAP: the racy follow_pfn() era and its end ----------------------------------

struct PfnRow {
    const char* era;
    bool pfns;        // follow_pfn(): raw PFNs, no reference
    bool warns;       // WARN_ONCE("get_vaddr_frames() cannot follow VM_IO mapping")
    const char* why;
};

TEST_F(FrameVector, PfnmapDevicePerEra) {
    allow_reports("warn");  // the VM_IO era's WARN, checked below
    constexpr unsigned kN = 4;
    const PfnRow rows[] = {
        {"v4.8", true, false, "v4.2: a VM_IO|VM_PFNMAP VMA is walked with follow_pfn()"},
        {"v5.10", true, false, "v5.10: the same under pin_user_pages_locked()"},
        {"v6.0", true, false, "v5.12-v6.0: pin_user_pages_fast() takes nothing (special PTEs), then follow_pfn()"},
        {"v6.4", false, true, "v6.1 6647e76ab623: no fallback, WARN_ONCE; -EFAULT"},
        {"v6.5", false, true, "v6.5: the WARN_ONCE is still there"},
        {"current", false, false, "v6.6 735de5caf79e: the WARN_ONCE became a comment"},
    };
    for (const PfnRow& r : rows) {
        SCOPED_TRACE(r.why);
        reboot_era(r.era);
        unsigned long a = device("pfnmap", kN);
        frame_vector* vec = frame_vector_create(kN);
        const int ref = page_ref_count(pl_pfn_to_page(k, mapped_pfn(a)));
        const int ret = get_vaddr_frames(a, kN, true, vec);
        if (r.pfns) {
            ASSERT_EQ(ret, static_cast<int>(kN));
            EXPECT_TRUE(vec->is_pfns);
            EXPECT_FALSE(vec->got_ref) << "no reference on anything: the device may reuse the frames";
            unsigned long* pfns = frame_vector_pfns(vec);
            for (unsigned i = 0; i < kN; i++) EXPECT_EQ(pfns[i], mapped_pfn(a + i * kPage)) << "frame " << i;
            EXPECT_EQ(page_ref_count(pl_pfn_to_page(k, pfns[0])), ref) << "follow_pfn() takes nothing";
            // The device's frames are RAM: they have a struct page.
            ASSERT_EQ(frame_vector_to_pages(vec), 0);
            EXPECT_FALSE(vec->is_pfns);
            EXPECT_EQ(frame_vector_pages(vec)[0], pl_pfn_to_page(k, mapped_pfn(a)));
        } else {
            EXPECT_EQ(ret, -EFAULT);
            EXPECT_EQ(frame_vector_count(vec), 0u);
        }
        EXPECT_EQ(logged("get_vaddr_frames: get_vaddr_frames() cannot follow VM_IO mapping"), r.warns) << dmesg();
        put_vaddr_frames(vec);
        EXPECT_EQ(page_ref_count(pl_pfn_to_page(k, mapped_pfn(a))), ref) << "put released nothing it did not take";
        EXPECT_EQ(frame_vector_count(vec), 0u);
        frame_vector_destroy(vec);
        expect_pins_balanced();
    }
}

TEST_F(FrameVector, PfnVectorOfIoMemoryCannotBecomePages) {
    // frame_vector_to_pages(): "if (!pfn_valid(nums[i])) return -EINVAL" —
    // device I/O memory has no struct page.
    reboot_era("v5.10");
    constexpr unsigned kN = 2;
    unsigned long a = device("pfnmap", kN);
    auto io = kern().mem->iomem_alloc(kN);
    ASSERT_TRUE(static_cast<bool>(io)) << "I/O memory";
    {
        // What a driver's mmap of MMIO does: remap_pfn_range() of the BAR.
        sync::WriteGuard g(mm().mmap_lock);
        Vma* vma = mm().vma_lookup(a);
        ASSERT_NE(vma, nullptr);
        zap_vma_range(*vma, a, a + kN * kPage);
        ASSERT_TRUE(static_cast<bool>(remap_pfn_range(*vma, a, *io, kN * kPage)));
    }
    frame_vector* vec = frame_vector_create(kN);
    ASSERT_EQ(get_vaddr_frames(a, kN, false, vec), static_cast<int>(kN));
    ASSERT_TRUE(vec->is_pfns);
    EXPECT_EQ(frame_vector_pfns(vec)[0], static_cast<unsigned long>(*io));
    EXPECT_EQ(frame_vector_to_pages(vec), -EINVAL);
    EXPECT_TRUE(vec->is_pfns) << "left as it was";
    page** pages = frame_vector_pages(vec);
    ASSERT_TRUE(IS_ERR(pages));
    EXPECT_EQ(PTR_ERR(pages), -EINVAL);
    put_vaddr_frames(vec);  // got_ref is false: nothing to convert or release
    EXPECT_EQ(frame_vector_count(vec), 0u);
    frame_vector_destroy(vec);
    ASSERT_EQ(pl_munmap(t, a, kN * kPage), 0);
    kern().mem->iomem_free(*io, kN);
    EXPECT_EQ(dmesg(), "");
}

// ---- VMA checks of the old versions and the flags each era passes -----------------------------

struct FsdaxRow {
    const char* era;
    int expect;
    const char* why;
};

TEST_F(FrameVector, FsdaxPerEra) {
    const FsdaxRow rows[] = {
        {"v4.8", 2, "before v4.15 nothing stopped a long-lived GET on fsdax blocks"},
        {"v5.10", -EOPNOTSUPP, "v4.15: 'if (vma_is_fsdax(vma)) return -EOPNOTSUPP'"},
        {"current", -EOPNOTSUPP, "FOLL_LONGTERM: check_vma_flags() refuses fsdax (spec §3)"},
    };
    for (const FsdaxRow& r : rows) {
        SCOPED_TRACE(r.why);
        reboot_era(r.era);
        pl_file* f = file("fsdax", 2 * kPage);
        unsigned long a = map(t, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, f);
        ASSERT_EQ(pl_memset(t, a, 1, 2 * kPage), static_cast<long>(2 * kPage));
        frame_vector* vec = frame_vector_create(2);
        EXPECT_EQ(get_vaddr_frames(a, 2, true, vec), r.expect);
        put_vaddr_frames(vec);
        frame_vector_destroy(vec);
        expect_pins_balanced();
    }
}

TEST_F(FrameVector, WriteArgumentPerEra) {
    // What `write` becomes: v4.9-v5.11 callers passed gup_flags (videobuf2:
    // FOLL_FORCE, plus FOLL_WRITE for a writable buffer); v5.12-v6.1 had no
    // parameter and always asked FOLL_FORCE|FOLL_WRITE; v6.2 "bool write"
    // without FOLL_FORCE. check_vma_flags() lets a forced write through only
    // in a COW mapping (spec §3).
    struct Row {
        const char* era;
        bool write;
        bool shared;  // a R/O shared tmpfs mapping instead of a R/O private anonymous one
        int expect;
        const char* why;
    };
    const Row rows[] = {
        {"v5.10", true, false, 2, "FOLL_FORCE|FOLL_WRITE: a forced write into a R/O private mapping (COW)"},
        {"v5.10", true, true, -EFAULT, "FOLL_FORCE|FOLL_WRITE on a R/O shared mapping: refused"},
        {"v5.10", false, true, 2, "FOLL_FORCE alone: a read"},
        {"v6.0", false, true, -EFAULT, "v5.12-v6.1 ignore `write`: a R/O shared buffer could not be used at all"},
        {"current", true, false, -EFAULT, "v6.2: FOLL_WRITE without FOLL_FORCE on a R/O VMA"},
        {"current", false, true, 2, "v6.2: write == false is a R/O longterm pin"},
        {"current", false, false, 2, "v6.2: likewise for anonymous memory"},
    };
    for (const Row& r : rows) {
        SCOPED_TRACE(r.why);
        reboot_era(r.era);
        unsigned long a = 0;
        if (r.shared) {
            pl_file* f = file("tmpfs", 2 * kPage);
            ASSERT_EQ(pl_pwrite(f, "data", 4, 0), 4);
            ASSERT_EQ(pl_pwrite(f, "data", 4, kPage), 4);
            a = map(t, 2 * kPage, PROT_READ, MAP_SHARED, f);
        } else {
            a = anon(2, PROT_READ);
        }
        frame_vector* vec = frame_vector_create(2);
        const int ret = get_vaddr_frames(a, 2, r.write, vec);
        EXPECT_EQ(ret, r.expect);
        if (ret > 0) {
            EXPECT_EQ(frame_vector_pages(vec)[0], pg(t, a)) << "the page the process maps";
        }
        put_vaddr_frames(vec);
        frame_vector_destroy(vec);
        expect_pins_balanced();
    }
}

// ---- the vector helpers -----------------------------------------------------------------------

TEST_F(FrameVector, PagesAndPfnsRoundTripAndPutStillReleases) {
    unsigned long a = anon(3);
    frame_vector* vec = frame_vector_create(3);
    ASSERT_EQ(get_vaddr_frames(a, 3, true, vec), 3);
    std::vector<page*> pages(frame_vector_pages(vec), frame_vector_pages(vec) + 3);
    unsigned long* pfns = frame_vector_pfns(vec);  // converts in place
    EXPECT_TRUE(vec->is_pfns);
    for (unsigned i = 0; i < 3; i++) EXPECT_EQ(pfns[i], page_to_pfn(pages[i]));
    // put_vaddr_frames(): "frame_vector_pages() might needed to do a
    // conversion" — the PFNs become pages again and the pins are dropped.
    put_vaddr_frames(vec);
    EXPECT_FALSE(vec->is_pfns);
    EXPECT_FALSE(vec->got_ref);
    for (unsigned i = 0; i < 3; i++) EXPECT_FALSE(folio_maybe_dma_pinned(page_folio(pages[i])));
    expect_pins_balanced();
    frame_vector_destroy(vec);
}

TEST_F(FrameVector, BadArgumentsAreRefusedNotFollowed) {
    expect_reports("warn");  // each bad argument WARNs
    // frame_vector_create(): WARN_ON_ONCE(nr_frames == 0) and the overflow guard.
    EXPECT_EQ(frame_vector_create(0), nullptr);
    EXPECT_EQ(frame_vector_create(0x7fffffffu), nullptr);
    EXPECT_TRUE(logged("frame_vector_create")) << dmesg();
    // A vector the API did not make.
    auto* fake = static_cast<frame_vector*>(std::calloc(1, sizeof(frame_vector) + 2 * sizeof(void*)));
    ASSERT_NE(fake, nullptr);
    fake->nr_allocated = 2;
    unsigned long a = anon(2);
    EXPECT_EQ(get_vaddr_frames(a, 2, true, fake), -EINVAL);
    EXPECT_NE(std::string(pl_last_error()).find("frame_vector_create"), std::string::npos) << pl_last_error();
    EXPECT_EQ(frame_vector_count(fake), 0u);
    EXPECT_TRUE(IS_ERR(frame_vector_pages(fake)));
    EXPECT_EQ(frame_vector_pfns(nullptr), nullptr);
    put_vaddr_frames(fake);
    frame_vector_destroy(fake);  // not ours: ignored
    EXPECT_EQ(fake->nr_allocated, 2u);
    EXPECT_EQ(fake->ptrs[0], nullptr) << "never written";
    std::free(fake);
    // nr_frames beyond nr_allocated: WARN_ON_ONCE and clamp.
    frame_vector* vec = frame_vector_create(1);
    EXPECT_EQ(get_vaddr_frames(a, 2, true, vec), 1);
    EXPECT_TRUE(logged("nr_frames 2 > nr_allocated 1")) << dmesg();
    EXPECT_EQ(get_vaddr_frames(a, 0, true, vec), 0) << "nr_frames == 0 → 0";
    put_vaddr_frames(vec);
    frame_vector_destroy(vec);
    expect_pins_balanced();
}

TEST_F(FrameVector, DestroyWithoutPutWarnsAndLeaks) {
    expect_reports("warn");  // frame_vector_destroy() WARNs
    // frame_vector_destroy(): VM_BUG_ON(vec->nr_frames > 0). The pins stay
    // (as upstream without CONFIG_DEBUG_VM); the test drops them itself.
    unsigned long a = anon(1);
    frame_vector* vec = frame_vector_create(1);
    ASSERT_EQ(get_vaddr_frames(a, 1, true, vec), 1);
    page* p = frame_vector_pages(vec)[0];
    frame_vector_destroy(vec);
    EXPECT_TRUE(logged("frame_vector_destroy: frame vector still holds 1 frames")) << dmesg();
    EXPECT_TRUE(folio_maybe_dma_pinned(page_folio(p)));
    unpin_user_page(p);
    expect_pins_balanced();
}

TEST(FrameVectorEras, ImplementationPerEra) {
    // docs/FIDELITY.md "Frame vectors": one implementation per era.
    EXPECT_EQ(frame_vector_impl(Era::v4_8), FrameVectorImpl::GupLocked);
    EXPECT_EQ(frame_vector_impl(Era::v5_5), FrameVectorImpl::GupLocked);
    EXPECT_EQ(frame_vector_impl(Era::v5_8), FrameVectorImpl::PinLocked);
    EXPECT_EQ(frame_vector_impl(Era::v5_11), FrameVectorImpl::PinLocked);
    EXPECT_EQ(frame_vector_impl(Era::v5_16), FrameVectorImpl::PinFastFallback);
    EXPECT_EQ(frame_vector_impl(Era::v6_0), FrameVectorImpl::PinFastFallback);
    EXPECT_EQ(frame_vector_impl(Era::v6_4), FrameVectorImpl::PinFast);
    EXPECT_EQ(frame_vector_impl(Era::current), FrameVectorImpl::PinFast);
    EXPECT_EQ(frame_vector_gup_flags(Era::v6_0, false), FOLL_FORCE | FOLL_WRITE | FOLL_LONGTERM);
    EXPECT_EQ(frame_vector_gup_flags(Era::current, false), FOLL_LONGTERM);
    EXPECT_EQ(frame_vector_gup_flags(Era::current, true), FOLL_LONGTERM | FOLL_WRITE);
    EXPECT_EQ(frame_vector_gup_flags(Era::v5_10, true), FOLL_FORCE | FOLL_WRITE);
}

}  // namespace
}  // namespace pl::test
