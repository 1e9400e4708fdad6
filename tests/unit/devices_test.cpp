// Drivers' mmap entry points: remap_pfn_range (pfnmap device), vm_insert_page
// (mixedmap device), and vmf_insert_pfn_pmd/vmf_insert_mixed from a driver's
// fault handlers, under the architecture switches seed 003 argued about.
#include "test_kernel.h"

#include "fs/file.h"
#include "fs/inode.h"

namespace pl::test {
namespace {

using namespace pte;

class Devices : public KernelTest {};

TEST_F(Devices, PfnmapIsIoPfnmapWithSpecialEntries) {
    pl_file* d = pl_dev_open(k, "pfnmap");
    ASSERT_NE(d, nullptr) << pl_last_error();
    files.push_back(d);
    unsigned long a = map(t, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, d);
    vm_area_struct* v = vma_lookup(pl_task_mm(t), a);
    ASSERT_NE(v, nullptr);
    EXPECT_EQ(pl_vma_flags(v) & (VM_IO | VM_PFNMAP), VM_IO | VM_PFNMAP);
    EXPECT_TRUE(special(entry(t, a)));
    EXPECT_EQ(pg(t, a), nullptr) << "no struct page a GUP user could take";
    put_str(t, a + kPage, "ring");
    EXPECT_EQ(get_str(t, a + kPage), "ring");
    task_struct* c = pl_fork(t);
    EXPECT_EQ(get_str(c, a + kPage), "ring") << "PFNMAP entries are copied at fork";
    EXPECT_EQ(pl_mmap(t, 0, 1UL << 30, PROT_READ, MAP_SHARED, d, 0), -EINVAL) << "beyond the device";
}

TEST_F(Devices, PfnmapWithoutPteSpecialIsRecognisedByLayout) {
    reboot("ram=256M hugetlb_2m=0 arch.pte_special=off");
    pl_file* d = pl_dev_open(k, "pfnmap");
    files.push_back(d);
    unsigned long a = map(t, 2 * kPage, PROT_READ | PROT_WRITE, MAP_PRIVATE, d);
    EXPECT_FALSE(special(entry(t, a)));
    EXPECT_EQ(pg(t, a), nullptr) << "vm_normal_page(): the linear pfn of a VM_PFNMAP COW mapping";
    put_str(t, a, "cow");  // a private PFNMAP mapping COWs into a normal anonymous page
    EXPECT_NE(pg(t, a), nullptr);
    EXPECT_TRUE(PageAnon(pg(t, a)));
    EXPECT_EQ(get_str(t, a), "cow");
}

TEST_F(Devices, MixedmapInsertsNormalReferencedPages) {
    pl_file* d = pl_dev_open(k, "mixedmap");
    ASSERT_NE(d, nullptr);
    files.push_back(d);
    unsigned long a = map(t, 2 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED, d);
    vm_area_struct* v = vma_lookup(pl_task_mm(t), a);
    EXPECT_NE(pl_vma_flags(v) & VM_MIXEDMAP, 0u);
    EXPECT_FALSE(special(entry(t, a)));
    page* p = pg(t, a);
    ASSERT_NE(p, nullptr) << "vm_insert_page() pages are reachable by GUP";
    EXPECT_EQ(page_mapcount(p), 1);
    put_str(t, a, "dev");
    char buf[4] = {};
    ASSERT_EQ(pl_page_read(p, 0, buf, 4), 0);
    EXPECT_STREQ(buf, "dev");
}

// A TTM-like driver: the buffer lives in I/O memory (no struct page) and is
// mapped by ->huge_fault with vmf_insert_pfn_pmd(), or by ->fault with
// vmf_insert_mixed(), in a VM_MIXEDMAP VMA.
struct IomemBo {
    Kernel* k;
    pfn_t base;
    unsigned pfn_flags;
};

class BoVmOps final : public VmOperations {
public:
    const char* name() const override { return "test-bo"; }
    vm_fault_t fault(VmFault& vmf) const override {
        auto* bo = static_cast<IomemBo*>(vmf.vma->private_data);
        return vmf_insert_mixed(*vmf.vma, vmf.address, bo->base + vmf.pgoff, bo->pfn_flags);
    }
    bool has_huge_fault() const override { return true; }
    vm_fault_t huge_fault(VmFault& vmf, unsigned order) const override {
        if (order != PMD_ORDER) return VM_FAULT_FALLBACK;
        auto* bo = static_cast<IomemBo*>(vmf.vma->private_data);
        return vmf_insert_pfn_pmd(*vmf.vma, vmf.address, bo->base + vmf.pgoff, bo->pfn_flags,
                                  vmf.flags & FAULT_FLAG_WRITE);
    }
};
const BoVmOps kBoOps;

class BoFops final : public FileOperations {
public:
    Status mmap(File& f, Vma& vma) const override {
        vma.flags |= VM_MIXEDMAP | VM_DONTEXPAND;
        vma.ops = &kBoOps;
        vma.private_data = f.private_data;
        return ok_status();
    }
};
const BoFops kBoFops;

class HugePfn : public KernelTest {
protected:
    pl_file* open_bo(unsigned pfn_flags) {
        auto base = kern().mem->iomem_alloc(512);
        EXPECT_TRUE(base.ok());
        bo = {&kern(), *base, pfn_flags};
        Inode* inode = kern().inode_new(FsKind::Device);
        auto* f = new File(inode, &kBoFops, "test-bo");
        f->private_data = &bo;
        files.push_back(reinterpret_cast<pl_file*>(f));
        return reinterpret_cast<pl_file*>(f);
    }
    unsigned long map_bo(pl_file* f) {
        // A 2 MiB-aligned address so that the PMD fits.
        unsigned long hole = map(4UL << 20, PROT_NONE);
        unsigned long at = (hole + (2UL << 20) - 1) & ~((2UL << 20) - 1);
        return map(t, 2UL << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, f, 0, at);
    }
    void TearDown() override {
        KernelTest::TearDown();
    }
    IomemBo bo{};
};

TEST_F(HugePfn, PmdEntryIsSpecialWherePmdSpecialExists) {
    pl_file* f = open_bo(PFN_DEV);
    unsigned long a = map_bo(f);
    put_str(t, a + 5 * kPage, "vram");
    EXPECT_EQ(level(t, a), PtLevel::Pmd);
    EXPECT_TRUE(special(entry(t, a)));
    EXPECT_EQ(get_str(t, a + 5 * kPage), "vram");
    EXPECT_EQ(pg(t, a), nullptr);
}

TEST_F(HugePfn, BeforePmdSpecialTheEntryIsNeitherSpecialNorDevmap) {
    reboot("ram=256M hugetlb_2m=0 arch.pmd_special=off arch.pte_devmap=off");
    pl_file* f = open_bo(PFN_DEV);
    unsigned long a = map_bo(f);
    put_str(t, a, "x");
    entry_t e = entry(t, a);
    EXPECT_EQ(level(t, a), PtLevel::Pmd);
    EXPECT_FALSE(special(e));
    EXPECT_FALSE(devmap(e)) << "only the VMA says this is not normal memory (seed 003)";
}

TEST_F(HugePfn, PfnDevPfnMapGivesDevmapOnDevmapArches) {
    reboot("ram=256M hugetlb_2m=0 arch.pte_devmap=on");
    pl_file* f = open_bo(PFN_DEV | PFN_MAP);
    unsigned long a = map_bo(f);
    put_str(t, a, "x");
    EXPECT_TRUE(devmap(entry(t, a)));
    EXPECT_FALSE(special(entry(t, a)));
}

TEST_F(HugePfn, MixedPtesAreSpecialOnlyWithPteSpecial) {
    pl_file* f = open_bo(PFN_DEV);
    unsigned long a = map_bo(f);
    // Split the PMD range into PTEs by mapping only part of it.
    ASSERT_EQ(pl_munmap(t, a + kPage, (2UL << 20) - kPage), 0);
    put_str(t, a, "pte");
    EXPECT_EQ(level(t, a), PtLevel::Pte);
    EXPECT_TRUE(special(entry(t, a)));
    EXPECT_EQ(get_str(t, a), "pte");
}

}  // namespace
}  // namespace pl::test
