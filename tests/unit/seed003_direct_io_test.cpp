// Seed 003's experiment, end to end: "allocate a nicely aligned bo in system
// memory, mmap it 2M-aligned, do some direct io from a filesystem into that
// mmap, ... before the gup completes free the mmap and bo" (Daniel Vetter).
// O_DIRECT (src/drivers/direct_io) pins the user buffer with
// pin_user_pages_fast(); whether that reaches the bo's pages is decided by the
// mapping mode (VM_PFNMAP or VM_MIXEDMAP) and the arch's entry bits, as the
// Ttm.Seed003Matrix rows say; here the question is what the I/O does.
//
//   ext4 file  --O_DIRECT read-->  user VA, MAP_SHARED of a TTM bo (2 MiB aligned)
//                                  [ PMD leaf or 512 PTEs -> bo's system pages ]
#include <array>
#include <string>

#include "test_kernel.h"

namespace pl::test {
namespace {

constexpr unsigned long kPmd = 2UL << 20;

enum class Dio { Efault, Lands };

struct Row {
    const char* config;
    unsigned flags;  // PL_TTM_*
    Dio dio;
    int pfnmap_gup;  // reports expected from the pin
    const char* rule;
};

// clang-format off
const Row kRows[] = {
    {"", 0, Dio::Efault, 0,
     "VM_PFNMAP, pmd_special leaf (today): GUP-fast stops, check_vma_flags() refuses VM_PFNMAP|VM_IO"},
    {"", PL_TTM_NO_HUGE | PL_TTM_MIXEDMAP, Dio::Efault, 0,
     "VM_MIXEDMAP with pte_special: vmf_insert_mixed() makes special PTEs; vm_normal_page() gives nothing"},
    {"arch.pte_special=off", PL_TTM_NO_HUGE | PL_TTM_MIXEDMAP, Dio::Lands, 0,
     "VM_MIXEDMAP without pte_special: insert_page() maps normal refcounted pages; 'mixed maps pointing at "
     "struct page won't stop gup' (Vetter): the direct I/O works, legitimately"},
    {"arch.pte_special=off", PL_TTM_NO_HUGE, Dio::Efault, 0, "VM_PFNMAP stops the slow path whatever the arch"},
    {"arch.pmd_special=off", 0, Dio::Lands, 1,
     "seed 003: a PFN_DEV PMD leaf that is neither special nor devmap looks like a THP to GUP-fast, "
     "which pins the bo's page: 'If it works, you have a problem, and a bad one'"},
    {"arch.pmd_special=off arch.pte_devmap=on", PL_TTM_PFN_MAP, Dio::Efault, 0,
     "Hellstrom's PFN_DEV|PFN_MAP: a devmap leaf without a pgmap, GUP-fast backs off; VM_PFNMAP stops the rest"},
};
// clang-format on

class Seed003DirectIo : public KernelTest {
protected:
    pl_file* bo(unsigned flags) {
        pl_file* f = pl_ttm_bo_create(k, kPmd, PL_TTM_PL_SYSTEM, flags);
        EXPECT_NE(f, nullptr) << pl_last_error();
        return f;
    }
    unsigned long map_bo(pl_file* f) {
        long hole = pl_mmap(t, 0, 2 * kPmd, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, nullptr, 0);
        EXPECT_GT(hole, 0) << pl_last_error();
        unsigned long at = (static_cast<unsigned long>(hole) + kPmd - 1) & ~(kPmd - 1);
        return map(t, kPmd, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, f, 0, at);
    }
    // An ext4 file whose first page holds `s` on disk.
    pl_file* source(const std::string& s) {
        pl_file* f = file("ext4", kPmd);
        EXPECT_EQ(pl_pwrite(f, s.c_str(), s.size() + 1, 0), static_cast<long>(s.size() + 1));
        EXPECT_EQ(pl_fsync(f), 0);
        return f;
    }
    // Vetter's setup: seed 003's bad config (a PFN_DEV PMD leaf GUP-fast
    // takes), a system bo mapped 2 MiB-aligned and touched, and an O_DIRECT
    // read of `data` into its first page left in flight.
    struct InFlight {
        pl_file* bo = nullptr;
        unsigned long addr = 0;
        pl_dio* dio = nullptr;
        unsigned long allocated_before = 0;  // frames before the bo existed
    };
    InFlight read_into_bo_in_flight(const std::string& data) {
        reboot("ram=512M hugetlb_2m=0 arch.pmd_special=off");
        expect_reports("pfnmap_gup", 1);
        InFlight r;
        pl_file* src = source(data);
        r.allocated_before = pl_nr_allocated_pages(k);
        r.bo = bo(0);
        r.addr = map_bo(r.bo);
        put_str(t, r.addr, "bo");
        EXPECT_EQ(pl_direct_read(t, src, r.addr, kPage, 0, &r.dio), static_cast<long>(kPage));
        return r;
    }
    std::string bo_str(pl_file* f, unsigned long off) {
        std::array<char, 32> buf{};
        EXPECT_EQ(pl_ttm_bo_read(f, off, buf.data(), buf.size() - 1), static_cast<long>(buf.size() - 1));
        return std::string(buf.data());
    }
};

// O_DIRECT read into the bo's mapping, per row: refused, or the bytes land in
// the bo (the device's view) and the CPU's.
TEST_F(Seed003DirectIo, ReadIntoBoMapping) {
    for (const Row& r : kRows) {
        SCOPED_TRACE(std::string("[") + r.config + "] " + r.rule);
        reboot((std::string("ram=512M hugetlb_2m=0 ") + r.config).c_str());
        if (r.pfnmap_gup) expect_reports("pfnmap_gup", r.pfnmap_gup);
        pl_file* src = source("from disk");
        pl_file* f = bo(r.flags);
        files.push_back(f);
        const unsigned long a = map_bo(f);
        put_str(t, a, "bo");  // fault the mapping in
        const unsigned long acquired = pl_vmstat(k, "nr_foll_pin_acquired");
        const long got = pl_direct_read(t, src, a, kPage, 0, nullptr);
        if (r.dio == Dio::Efault) {
            EXPECT_EQ(got, -EFAULT);
            EXPECT_EQ(bo_str(f, 0), "bo");
            EXPECT_EQ(pl_vmstat(k, "nr_foll_pin_acquired"), acquired) << "nothing pinned";
        } else {
            EXPECT_EQ(got, static_cast<long>(kPage)) << pl_last_error();
            EXPECT_EQ(bo_str(f, 0), "from disk") << "the DMA landed in the bo's page";
            EXPECT_EQ(get_str(t, a), "from disk");
            EXPECT_EQ(pl_pin_balance(k, "direct_io"), 0);
        }
        EXPECT_EQ(pl_warning_count(k, "pfnmap_gup"), r.pfnmap_gup) << pl_dmesg(k);
    }
}

// The thread's recipe: the bo and its mapping go while the direct I/O is in
// flight. TTM frees with __free_pages(), dropping only its own reference, so
// the pin keeps the frame and the "device" writes into a page no bo owns; the
// tracker reports the free of a pinned page. Completion then releases the
// frame: nothing leaks, nothing is written into memory someone else owns.
TEST_F(Seed003DirectIo, BoFreedWhileReadInFlight) {
    const InFlight io = read_into_bo_in_flight("late dma");
    expect_reports("pinned_page_moved", 1);
    ASSERT_NE(io.dio, nullptr);
    pl_file* f = io.bo;
    pl_dio* dio = io.dio;
    const unsigned long a = io.addr, before = io.allocated_before;
    page* pinned = pl_pfn_to_page(k, pl_ttm_bo_pfn(f, 0));  // a PFN mapping: no page through the VA
    EXPECT_TRUE(pinned && page_maybe_dma_pinned(pinned)) << "the bo's own page is pinned";
    ASSERT_EQ(pl_munmap(t, a, kPmd), 0);
    pl_ttm_bo_put(f);  // the last reference: ttm_bo_release()
    EXPECT_EQ(pl_warning_count(k, "pinned_page_moved"), 1) << pl_dmesg(k);
    EXPECT_NE(std::string(pl_dmesg(k)).find("direct_io"), std::string::npos) << "names the pin's owner";
    EXPECT_EQ(pl_nr_allocated_pages(k) - before, kPmd / kPage) << "the pin keeps the bo's folio";
    EXPECT_EQ(pl_dio_complete(dio), static_cast<long>(kPage));
    // The data went into the orphaned frame, which the completion released.
    EXPECT_EQ(pl_nr_allocated_pages(k), before) << "freed with the last pin";
    EXPECT_EQ(pl_pin_balance(k, "direct_io"), 0);
}

// Waiting for the I/O before freeing ("If you wait until the direct io is
// complete, then I think nothing bad can be observed"): no report.
TEST_F(Seed003DirectIo, BoFreedAfterCompletionIsClean) {
    const InFlight io = read_into_bo_in_flight("on time");
    ASSERT_NE(io.dio, nullptr);
    pl_file* f = io.bo;
    const unsigned long a = io.addr, before = io.allocated_before;
    EXPECT_EQ(pl_dio_complete(io.dio), static_cast<long>(kPage));
    std::array<char, 8> buf{};
    ASSERT_EQ(pl_ttm_bo_read(f, 0, buf.data(), buf.size()), static_cast<long>(buf.size()));
    EXPECT_STREQ(buf.data(), "on time");
    ASSERT_EQ(pl_munmap(t, a, kPmd), 0);
    pl_ttm_bo_put(f);
    EXPECT_EQ(pl_warning_count(k, "pinned_page_moved"), 0) << pl_dmesg(k);
    EXPECT_EQ(pl_nr_allocated_pages(k), before);
}

}  // namespace
}  // namespace pl::test
